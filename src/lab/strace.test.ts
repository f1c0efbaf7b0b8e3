import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monotonic, sleep } from './clock';
import { LabError } from './errors';
import { labEnv } from './exec';
import { silentLogger } from './log';
import { Sandbox } from './sandbox';
import {
  STRACE_MISSING,
  StraceParser,
  StraceTail,
  clockOffset,
  parseSockaddr,
  parseStraceLine,
  straceArgv,
  straceAvailable,
  straceMissingError,
} from './strace';
import type { TimelineEvent } from './timeline';

const fixture = (name: string) => readFileSync(join(__dirname, 'fixtures', name), 'utf8');

/** Feeds lines to a fresh parser (offset 0: event times stay strace's own). */
function parse(lines: string | string[], proc = 'client'): { events: TimelineEvent[]; parser: StraceParser } {
  const parser = new StraceParser(proc, 0);
  const events = (typeof lines === 'string' ? lines.split('\n') : lines).flatMap((l) => parser.line(l));
  return { events, parser };
}

const brief = (e: TimelineEvent) => [e.type, e.op, e.name ?? e.signal].filter((x) => x !== undefined).join(' ');

describe('strace argv', () => {
  test('follows forks, dates calls and their length, names fds, keeps data short, writes to the file', () => {
    const argv = straceArgv('/tmp/run/client.strace', ['curl', '-sS', 'http://127.0.0.1:7000/']);
    assert.deepEqual(argv.slice(0, 8), ['strace', '-f', '-q', '-ttt', '-T', '-y', '-s', '16']);
    assert.deepEqual(argv.slice(argv.indexOf('-o'), argv.indexOf('-o') + 2), ['-o', '/tmp/run/client.strace']);
    assert.deepEqual(argv.slice(argv.indexOf('--')), ['--', 'curl', '-sS', 'http://127.0.0.1:7000/']);
    const trace = argv[argv.indexOf('-e') + 1]!;
    for (const call of ['connect', 'getsockopt', 'recvfrom', 'sendto', 'read', 'write', 'ppoll', 'epoll_pwait', 'execve', 'close']) {
      assert.ok(trace.split(/[=,?]/).includes(call), `${call} is traced`);
    }
    assert.ok(argv.includes('--seccomp-bpf'));
    assert.ok(!straceArgv('/tmp/x', ['true'], { seccompBpf: false }).includes('--seccomp-bpf'));
    assert.ok(straceArgv('/tmp/x', ['true'], { decodeSockets: true }).includes('-yy'));
  });

  test('refuses an output name strace would run as a command, and an empty command', () => {
    for (const bad of ['|cat', '!sh', 'relative.txt', '']) assert.throws(() => straceArgv(bad, ['true']), LabError, bad);
    assert.throws(() => straceArgv('/tmp/x', []), LabError);
  });

  test('a missing strace is said plainly, with the package', () => {
    assert.equal(straceAvailable('/nonexistent'), false);
    const e = straceMissingError();
    assert.equal(e.message, STRACE_MISSING);
    assert.match(e.describe(), /apt-get install strace/);
    assert.match(e.describe(), /sample programs' own events still work/);
  });
});

describe('strace lines', () => {
  // The same program traced with -y (the default) and with -yy: the same events; -yy also knows
  // the local port of sockets the program never asked about.
  for (const [file, yy] of [['strace-python-faults.txt', false], ['strace-python-faults-yy.txt', true]] as const) {
    test(`a real trace of a Python program (${yy ? '-yy' : '-y'}): threads, unfinished/resumed, ERESTARTSYS, signals, exits`, () => {
      const text = fixture(file);
      const { events: all, parser } = parse(text);
      // connect-start as the samples mark it, the blocking connect's at its start (the thread's, first).
      assert.deepEqual(all.filter((e) => e.type === 'connect-start').map((e) => `${e.attempt} ${e.peer}`),
        ['1 127.0.0.1:7101', '2 127.0.0.1:7000', '3 [::1]:7002', '4 127.0.0.1:7000']);
      assert.equal(all[0]!.type, 'connect-start', 'shown when the call starts, 3 s before it returns');
      const events = all.filter((e) => e.type !== 'connect-start');
      assert.deepEqual(events.map(brief), [
        'connected connect',
        'accepted',
        'in-progress connect EINPROGRESS',
        'poll poll',
        'error connect ECONNREFUSED',
        'error recv ECONNRESET',
        'connected connect',
        'accepted',
        'eof recv',
        'error send EPIPE',
        'error connect ETIMEDOUT', // the blocking connect a thread started before all of these
        'error send EPIPE',
        'signal SIGPIPE',
        'exit SIGKILL',
      ]);
      for (const e of events) assert.equal(e.source, 'strace');
      const [, accepted, inProgress, poll, refused, reset, , , eof, , timedOut, childPipe, signal, exit] = events;
      assert.deepEqual(
        { type: refused!.type, op: refused!.op, errno: refused!.errno, name: refused!.name, proc: refused!.proc, conn: refused!.conn, peer: refused!.peer },
        { type: 'error', op: 'connect', errno: 111, name: 'ECONNREFUSED', proc: 'client', conn: '>[::1]:7002', peer: '[::1]:7002' },
        'the outcome of the non-blocking connect comes from SO_ERROR, shaped like a sample\'s error',
      );
      assert.equal(refused!.syscall, 'getsockopt');
      assert.equal(inProgress!.errno, 115);
      assert.deepEqual(poll!.revents, ['POLLOUT', 'POLLERR', 'POLLHUP'], 'EPOLLERR reads as the samples\' POLLERR');
      assert.match(String(accepted!.conn), /^127\.0\.0\.1:7000>127\.0\.0\.1:\d+$/, 'the listener\'s bound address is the local end');
      assert.equal(reset!.syscall, 'recvfrom');
      assert.equal(reset!.fd, 5);
      // Without -yy the local port is known only where the program asked for it (getsockname).
      assert.match(String(reset!.conn), yy ? /^127\.0\.0\.1:\d+>127\.0\.0\.1:7000$/ : /^>127\.0\.0\.1:7000$/);
      assert.match(String(eof!.conn), /^127\.0\.0\.1:\d+>127\.0\.0\.1:7000$/);
      // The resumed connect is dated by its start plus its length: when it returned.
      const start = /^(\d+) (\d+\.\d+) connect\(4<.*htons\(7101\).* <unfinished \.\.\.>$/m.exec(text)!;
      const took = /^\d+ \d+\.\d+ <\.\.\. connect resumed>\) = -1 ETIMEDOUT .* <(\d+\.\d+)>$/m.exec(text)!;
      assert.ok(Math.abs(timedOut!.t - (Number(start[2]) + Number(took[1]))) < 1e-6, `${timedOut!.t}`);
      assert.equal(timedOut!.pid, Number(start[1]), 'the thread that called it');
      assert.equal(childPipe!.syscall, 'write');
      assert.equal(signal!.pid, childPipe!.pid, 'the SIGPIPE of the child that restored SIG_DFL, not the parent\'s ignored one');
      assert.equal(exit!.signal, 'SIGKILL');
      assert.equal(exit!.code, null);
      assert.equal(exit!.pid, Number(/^(\d+) .* execve\(/.exec(text)![1]), 'only the program\'s own exit, not its thread\'s or child\'s');
      assert.deepEqual(
        { unparsed: parser.stats.unparsed, interrupted: parser.stats.interrupted, ignoredSignals: parser.stats.ignoredSignals, otherExits: parser.stats.otherExits },
        { unparsed: 0, interrupted: 1, ignoredSignals: 1, otherExits: 3 },
      );
    });
  }

  test('line shapes: pid forms, unfinished and resumed, errno, ?, extra, duration', () => {
    assert.deepEqual(parseStraceLine('[pid  4242] 1700000000.000100 close(3) = 0 <0.000010>'), {
      kind: 'call', pid: 4242, ts: 1700000000.0001, name: 'close', args: ['3'], result: { ret: '0', duration: 0.00001 },
    });
    const refused = parseStraceLine('17 1700000000.5 connect(3<TCP:[1]>, {sa_family=AF_INET, sin_port=htons(7000), sin_addr=inet_addr("127.0.0.1")}, 16) = -1 ECONNREFUSED (Connection refused) <0.000086>');
    assert.equal(refused?.kind, 'call');
    if (refused?.kind === 'call') {
      assert.equal(refused.args.length, 3);
      assert.deepEqual(refused.result, { ret: '-1', errno: 'ECONNREFUSED', message: 'Connection refused', duration: 0.000086 });
    }
    const poll = parseStraceLine('9 1.000001 poll([{fd=3<TCP:[1.2.3.4:5->6.7.8.9:10]>, events=POLLIN}], 1, -1) = 1 ([{fd=3, revents=POLLIN|POLLERR}]) <0.5>');
    assert.equal(poll?.kind === 'call' && poll.result.extra, '[{fd=3, revents=POLLIN|POLLERR}]');
    assert.equal(poll?.kind === 'call' && poll.args[0], '[{fd=3<TCP:[1.2.3.4:5->6.7.8.9:10]>, events=POLLIN}]');
    const restarted = parseStraceLine('9 1.0 read(3<TCP:[7]>, 0x7f, 100) = ? ERESTARTSYS (To be restarted if SA_RESTART is set) <0.2>');
    assert.equal(restarted?.kind === 'call' && restarted.result.errno, 'ERESTARTSYS');
    assert.equal(restarted?.kind === 'call' && restarted.result.ret, '?');
    const gone = parseStraceLine('9 1.0 <... poll resumed>) = ? <unavailable>');
    assert.deepEqual(gone, { kind: 'resumed', pid: 9, ts: 1, name: 'poll', text: ') = ? <unavailable>' });
    assert.deepEqual(parseStraceLine('9 1.0 connect(3<TCP:[7]>, {sa_family=AF_INET, sin_port=htons(1), sin_addr=inet_addr("1.2.3.4")}, 16 <unfinished ...>'),
      { kind: 'unfinished', pid: 9, ts: 1, name: 'connect', text: '3<TCP:[7]>, {sa_family=AF_INET, sin_port=htons(1), sin_addr=inet_addr("1.2.3.4")}, 16' });
    assert.deepEqual(parseStraceLine('9 2.5 +++ killed by SIGSEGV (core dumped) +++'), { kind: 'exit', pid: 9, ts: 2.5, code: null, signal: 'SIGSEGV' });
    assert.deepEqual(parseStraceLine('2.5 +++ exited with 7 +++'), { kind: 'exit', pid: 0, ts: 2.5, code: 7 }, 'no pid column without -f');
    assert.equal(parseStraceLine('9 1.0 write(1</tmp/a "b" (c>, "x) = 1 \\"", 6) = 6 <0.1>')?.kind, 'call', 'quotes and parentheses inside strings and paths');
    for (const junk of ['', 'strace: Process 12 attached', '9 1.0 connect(3, {sa_family=AF_INET', '9 abc close(3) = 0', '9 1.0 close(3) = ']) {
      assert.equal(parseStraceLine(junk), undefined, junk);
    }
  });

  test('addresses: IPv4, IPv6, a Unix path', () => {
    assert.deepEqual(parseSockaddr('{sa_family=AF_INET, sin_port=htons(7000), sin_addr=inet_addr("127.0.0.1")}'), { family: 'AF_INET', address: '127.0.0.1:7000' });
    assert.deepEqual(parseSockaddr('{sa_family=AF_INET6, sin6_port=htons(443), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "2001:db8::1", &sin6_addr), sin6_scope_id=0}'), { family: 'AF_INET6', address: '[2001:db8::1]:443' });
    assert.deepEqual(parseSockaddr('{sa_family=AF_UNIX, sun_path="/run/nscd/socket"}'), { family: 'AF_UNIX' });
    assert.equal(parseSockaddr('NULL'), undefined);
  });

  const L = (pid: number, t: number, body: string) => `${pid} ${t.toFixed(6)} ${body}`;
  const sock4 = (fd: number, port: number) => `connect(${fd}<TCP:[9${fd}]>, {sa_family=AF_INET, sin_port=htons(${port}), sin_addr=inet_addr("127.0.0.1")}, 16)`;

  test('a non-blocking connect: the outcome from SO_ERROR (name or number), EALREADY, or the next read', () => {
    const viaNumber = parse([
      L(1, 1, 'socket(AF_INET, SOCK_STREAM|SOCK_NONBLOCK, IPPROTO_TCP) = 3 <0.00001>'),
      L(1, 1, `${sock4(3, 7000).replace('<TCP:[93]>', '')} = -1 EINPROGRESS (Operation now in progress) <0.00002>`),
      L(1, 1.1, 'connect(3, {sa_family=AF_INET, sin_port=htons(7000), sin_addr=inet_addr("127.0.0.1")}, 16) = -1 EALREADY (Operation already in progress) <0.00001>'),
      L(1, 2, 'getsockopt(3, SOL_SOCKET, SO_ERROR, [111], [4]) = 0 <0.00001>'),
    ]).events;
    assert.deepEqual(viaNumber.map(brief), ['connect-start', 'in-progress connect EINPROGRESS', 'error connect ECONNREFUSED'], 'asking again (EALREADY) starts nothing');
    assert.equal(viaNumber[0]!.t, 1, 'connect-start is the call\'s start');
    assert.equal(viaNumber[2]!.errno, 111);
    const viaRead = parse([
      L(1, 1, `${sock4(3, 7000)} = -1 EINPROGRESS (Operation now in progress) <0.00002>`),
      L(1, 2, 'read(3<TCP:[93]>, 0x1234, 100) = -1 ECONNREFUSED (Connection refused) <0.00001>'),
    ]).events;
    assert.deepEqual(viaRead.map(brief), ['connect-start', 'in-progress connect EINPROGRESS', 'error connect ECONNREFUSED'], 'a program that never asks SO_ERROR learns it from read()');
    const ok = parse([
      L(1, 1, `${sock4(3, 7000)} = -1 EINPROGRESS (Operation now in progress) <0.00002>`),
      L(1, 2, 'getsockopt(3<TCP:[127.0.0.1:5000->127.0.0.1:7000]>, SOL_SOCKET, SO_ERROR, [0], [4]) = 0 <0.00001>'),
    ]).events;
    assert.deepEqual(ok.map(brief), ['connect-start', 'in-progress connect EINPROGRESS', 'connected connect']);
    assert.equal(ok[2]!.conn, '127.0.0.1:5000>127.0.0.1:7000');
    // SO_SNDTIMEO on a blocking socket: EINPROGRESS after 1 s is the failure the samples report.
    const sndtimeo = parse([L(1, 1, `${sock4(3, 7000)} = -1 EINPROGRESS (Operation now in progress) <1.001>`)]).events;
    assert.deepEqual(sndtimeo.map(brief), ['connect-start', 'error connect EINPROGRESS']);
  });

  test('what is not reported: EAGAIN, EINTR, files, pipes, Unix sockets; UDP apart', () => {
    const { events, parser } = parse([
      L(1, 1, 'execve("/usr/bin/curl", ["curl"], 0x7ffd /* 3 vars */) = 0 <0.0001>'),
      L(1, 1, 'read(3</etc/hosts>, "", 4096) = 0 <0.00001>'),
      L(1, 1, 'write(1<pipe:[55]>, "x", 1) = -1 EPIPE (Broken pipe) <0.00001>'),
      L(1, 1, 'connect(4<UNIX:[77]>, {sa_family=AF_UNIX, sun_path="/run/nscd/socket"}, 110) = -1 ENOENT (No such file or directory) <0.00001>'),
      L(1, 1, 'socket(AF_INET, SOCK_DGRAM|SOCK_CLOEXEC|SOCK_NONBLOCK, IPPROTO_IP) = 5<UDP:[78]> <0.00001>'),
      L(1, 1, 'connect(5<UDP:[78]>, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("10.0.0.2")}, 16) = -1 ENETUNREACH (Network is unreachable) <0.00001>'),
      ...Array.from({ length: 1000 }, (_, i) => L(1, 2 + i / 1e4, 'recvfrom(6<TCP:[127.0.0.1:1->127.0.0.1:2]>, 0x1, 100, 0, NULL, NULL) = -1 EAGAIN (Resource temporarily unavailable) <0.000001>')),
      L(1, 3, 'read(6<TCP:[127.0.0.1:1->127.0.0.1:2]>, 0x1, 100) = ? ERESTARTSYS (To be restarted if SA_RESTART is set) <1.0>'),
      L(1, 4, 'read(6<TCP:[127.0.0.1:1->127.0.0.1:2]>, 0x1, 100) = -1 ETIMEDOUT (Connection timed out) <0.1>'),
      L(1, 5, 'recvfrom(6<TCP:[127.0.0.1:1->127.0.0.1:2]>, 0x1, 100, 0, NULL, NULL) = -1 EAGAIN (Resource temporarily unavailable) <1.000100>'),
    ]);
    assert.deepEqual(events.map(brief), ['udp-error connect ENETUNREACH', 'error recv ETIMEDOUT', 'error recv EAGAIN'], 'an EAGAIN after a 1 s wait is SO_RCVTIMEO expiring');
    assert.equal(parser.stats.wouldBlock, 1000);
    assert.equal(parser.stats.interrupted, 1);
    assert.equal(events[1]!.conn, '127.0.0.1:1>127.0.0.1:2');
    assert.ok(Math.abs(events[1]!.t - 4.1) < 1e-9, 'dated when the call returned');
  });

  test('poll: alarms only, once per change; an orphan resumed line still gives its errno', () => {
    const pollLine = (t: number, revents: string) => L(1, t, `poll([{fd=3<TCP:[127.0.0.1:1->127.0.0.1:2]>, events=POLLIN}], 1, -1) = 1 ([{fd=3, revents=${revents}}]) <0.00001>`);
    const { events, parser } = parse([
      pollLine(1, 'POLLIN'),
      pollLine(2, 'POLLIN|POLLERR|POLLHUP'),
      pollLine(3, 'POLLIN|POLLERR|POLLHUP'),
      pollLine(4, 'POLLIN|POLLERR|POLLHUP|POLLRDHUP'),
      L(2, 5, '<... recvfrom resumed>0x7f, 100, 0, NULL, NULL) = -1 ECONNRESET (Connection reset by peer) <0.5>'),
      L(1, 6, '--- SIGTERM {si_signo=SIGTERM, si_code=SI_USER, si_pid=1, si_uid=0} ---'),
      L(1, 7, '+++ exited with 143 +++'),
    ]);
    assert.deepEqual(events.map(brief), ['poll poll', 'poll poll', 'error recv ECONNRESET', 'signal SIGTERM', 'exit']);
    assert.deepEqual(events[1]!.revents, ['POLLIN', 'POLLERR', 'POLLHUP', 'POLLRDHUP']);
    assert.equal(events[2]!.t, 5, 'no start: the resumed line\'s own time, which is the return');
    assert.equal(events[4]!.code, 143);
    assert.equal(parser.stats.orphanResumed, 1);
  });

  test('fuzz: random, truncated and mutated lines never throw, and events stay well formed', () => {
    let seed = 4242;
    const rand = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
    const real = `${fixture('strace-python-faults.txt')}\n${fixture('strace-python-faults-yy.txt')}`.split('\n');
    const alphabet = '0123456789 .,()[]{}<>"\\=-+?|:_/abcdefghijklmnopqrstuvwxyzAEINOPRSTCK';
    const parser = new StraceParser('client', 0);
    let events = 0;
    for (let i = 0; i < 20000; i++) {
      const base = real[Math.floor(rand() * real.length)]!;
      let line: string;
      const mode = i % 4;
      if (mode === 0) line = base.slice(0, Math.floor(rand() * base.length));
      else if (mode === 1) line = base.slice(Math.floor(rand() * base.length));
      else if (mode === 2) {
        const chars = [...base];
        for (let k = 0; k < 5; k++) chars[Math.floor(rand() * chars.length)] = alphabet[Math.floor(rand() * alphabet.length)]!;
        line = chars.join('');
      } else line = Array.from({ length: Math.floor(rand() * 200) }, () => alphabet[Math.floor(rand() * alphabet.length)]).join('');
      for (const e of parser.line(line)) {
        events++;
        assert.ok(Number.isFinite(e.t), line);
        assert.equal(typeof e.type, 'string');
        if (e.type === 'error') assert.ok(typeof e.op === 'string' && typeof e.name === 'string', line);
      }
    }
    assert.equal(parser.stats.lines, 20000);
    assert.ok(events > 0 && parser.stats.unparsed > 1000, `${events} events, ${parser.stats.unparsed} unparsed`);
  });
});

describe('clock', () => {
  test('REALTIME - MONOTONIC is measured to well under a millisecond', () => {
    const c = clockOffset();
    assert.ok(c.error < 1e-4, `error ${c.error * 1e6} us`);
    const rough = Date.now() / 1000 - monotonic();
    assert.ok(Math.abs(c.offset - rough) < 2e-3, `offset ${c.offset} vs rough ${rough}`);
    const again = clockOffset();
    assert.ok(Math.abs(again.offset - c.offset) < 2e-4, `two measures agree: ${((again.offset - c.offset) * 1e6).toFixed(0)} us apart`);
  });
});

describe('following the file', () => {
  let dir = '';
  before(() => { dir = mkdtempSync(join(tmpdir(), 'strace-tail-test-')); });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('waits for the file, joins a line written in two pieces, skips an overlong line', async () => {
    const file = join(dir, 'pieces.txt');
    const events: TimelineEvent[] = [];
    const tail = new StraceTail({ file, proc: 'client', onEvent: (e) => events.push(e), offset: { offset: 0, error: 0 }, intervalMs: 10, maxLineLength: 4096 }).start();
    await sleep(40);
    writeFileSync(file, '1 1.000000 connect(3<TCP:[5]>, {sa_family=AF_INET, sin_port=htons(7000), ');
    await sleep(40);
    assert.equal(events.length, 0, 'half a line is not parsed');
    appendFileSync(file, 'sin_addr=inet_addr("127.0.0.1")}, 16) = -1 ECONNREFUSED (Connection refused) <0.000050>\n');
    appendFileSync(file, `1 1.5 write(3, "${'x'.repeat(10_000)}`);
    appendFileSync(file, `${'y'.repeat(10_000)}", 20000) = -1 EPIPE (Broken pipe) <0.1>\n1 2.000000 +++ exited with 1 +++\n`);
    await sleep(60);
    assert.deepEqual(events.map(brief), ['connect-start', 'error connect ECONNREFUSED', 'exit'], 'live, before stop()');
    await tail.stop();
    assert.equal(tail.parser.stats.unparsed, 1, 'the overlong line is counted, not kept');
    assert.equal(events[1]!.t, 1.00005);
  });

  test('a million EAGAIN lines: read as they come, counted, in bounded memory', async (t) => {
    const file = join(dir, 'flood.txt');
    const line = '7 1700000000.000001 read(5<TCP:[127.0.0.1:40000->127.0.0.1:7000]>, 0x55d0c0de, 65536) = -1 EAGAIN (Resource temporarily unavailable) <0.000004>\n';
    const block = line.repeat(10_000);
    const events: TimelineEvent[] = [];
    const tail = new StraceTail({ file, proc: 'client', onEvent: (e) => events.push(e), offset: { offset: 0, error: 0 }, intervalMs: 5 }).start();
    const base = process.memoryUsage().heapUsed;
    let peak = 0;
    for (let i = 0; i < 100; i++) {
      appendFileSync(file, block);
      if (i % 10 === 9) await sleep(1);
      peak = Math.max(peak, process.memoryUsage().heapUsed - base);
    }
    appendFileSync(file, '7 1700000001.000000 read(5<TCP:[127.0.0.1:40000->127.0.0.1:7000]>, 0x55d0c0de, 65536) = -1 ECONNRESET (Connection reset by peer) <0.000004>\n');
    while (tail.bytesRead < statSync(file).size) {
      await sleep(20);
      peak = Math.max(peak, process.memoryUsage().heapUsed - base);
    }
    await tail.stop();
    const size = statSync(file).size;
    t.diagnostic(`${(size / 1e6).toFixed(0)} MB of EAGAIN lines followed; heap grew at most ${(peak / 1e6).toFixed(1)} MB`);
    assert.equal(tail.parser.stats.wouldBlock, 1_000_000);
    assert.deepEqual(events.map(brief), ['error recv ECONNRESET']);
    assert.ok(peak < size / 2, `heap grew at most ${(peak / 1e6).toFixed(0)} MB while following a ${(size / 1e6).toFixed(0)} MB file`);
  });
});

// ------------------------------------------------------------------------------------------
// Real strace, real programs, in a lab namespace.

const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const haveCurl = spawnSync('which', ['curl'], { env: labEnv() }).status === 0;
const haveNc = spawnSync('which', ['nc'], { env: labEnv() }).status === 0;

interface Traced {
  events: TimelineEvent[];
  stdout: string;
  stderr: string;
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Monotonic time each event reached onEvent, and when the program exited. */
  arrived: number[];
  exitedAt: number;
}

describe('real strace on real programs, in a lab namespace', { skip: straceAvailable() ? false : STRACE_MISSING }, () => {
  let sandbox: Sandbox | undefined;
  let why = '';
  let dir = '';
  let n = 0;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'strace-test-'));
    try {
      sandbox = await Sandbox.create({ log: silentLogger, label: 'strace-test' });
    } catch (e) {
      why = `no namespace: ${e instanceof Error ? e.message : e}`;
    }
  });
  after(async () => {
    await sandbox?.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  const trace = async (program: readonly string[]): Promise<Traced> => {
    const file = join(dir, `trace-${++n}.txt`);
    const events: TimelineEvent[] = [];
    const arrived: number[] = [];
    const tail = new StraceTail({ file, proc: 'client', onEvent: (e) => { events.push(e); arrived.push(monotonic()); } }).start();
    const argv = sandbox!.enter(straceArgv(file, program));
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: labEnv() });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) =>
      child.on('error', reject).on('close', (c, s) => resolve([c, s])));
    const exitedAt = monotonic();
    await tail.stop();
    return { events, stdout, stderr, code, signal, arrived, exitedAt };
  };
  const python = (...lines: string[]) => trace([PYTHON, '-c', lines.join('\n')]);
  const errors = (r: Traced) => r.events.filter((e) => e.type === 'error');

  test('a blocking connect to a closed port: one error, op connect, ECONNREFUSED (111), as a sample reports it', async (t) => {
    if (!sandbox) return t.skip(why);
    const r = await python(
      'import socket, time',
      's = socket.socket()',
      'try:\n s.connect(("127.0.0.1", 7201))\nexcept OSError as e:\n print(time.monotonic(), e.errno, flush=True)',
    );
    assert.equal(r.code, 0, r.stderr);
    const errs = errors(r);
    assert.equal(errs.length, 1, JSON.stringify(r.events));
    const e = errs[0]!;
    assert.deepEqual({ proc: e.proc, type: e.type, op: e.op, errno: e.errno, name: e.name, source: e.source, peer: e.peer },
      { proc: 'client', type: 'error', op: 'connect', errno: 111, name: 'ECONNREFUSED', source: 'strace', peer: '127.0.0.1:7201' });
    assert.equal(r.events.at(-1)?.type, 'exit');
    assert.equal(r.events.at(-1)?.code, 0);
    // The program's own clock, read right after connect() failed, and strace's date of its return.
    const [own, errno] = r.stdout.trim().split(' ').map(Number);
    assert.equal(errno, 111);
    const skew = e.t - own!;
    t.diagnostic(`strace's return time minus the program's time.monotonic(): ${(skew * 1e3).toFixed(3)} ms`);
    assert.ok(Math.abs(skew) < 0.005, `within 5 ms (${(skew * 1e3).toFixed(3)} ms)`);
  });

  test('a non-blocking connect: EINPROGRESS shown but not the outcome; SO_ERROR gives ECONNREFUSED', async (t) => {
    if (!sandbox) return t.skip(why);
    const r = await python(
      'import select, socket',
      's = socket.socket(); s.setblocking(False)',
      'assert s.connect_ex(("127.0.0.1", 7202)) == 115',
      'select.select([], [s], [], 5)',
      'print(s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))',
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), '111');
    const mine = r.events.filter((e) => e.peer === '127.0.0.1:7202');
    assert.deepEqual(mine.map(brief), ['connect-start', 'in-progress connect EINPROGRESS', 'error connect ECONNREFUSED']);
    assert.ok(!r.events.some((e) => e.type === 'error' && e.name === 'EINPROGRESS'), 'EINPROGRESS is not an error here');
    assert.equal(mine[2]!.syscall, 'getsockopt');
    assert.equal(mine[2]!.errno, 111);
  });

  test('SYNs dropped, TCP_SYNCNT=1: ETIMEDOUT after about 3 s, timed on the lab\'s clock', async (t) => {
    if (!sandbox) return t.skip(why);
    await sandbox.exec(['iptables', '-A', 'OUTPUT', '-p', 'tcp', '--dport', '7203', '-j', 'DROP']);
    const r = await python(
      'import select, socket, time',
      's = socket.socket(); s.setsockopt(socket.IPPROTO_TCP, 7, 1); s.setblocking(False)',
      'start = time.monotonic(); s.connect_ex(("127.0.0.1", 7203))',
      'p = select.poll(); p.register(s, select.POLLOUT); p.poll(10000)',
      'err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR); print(start, time.monotonic(), err, flush=True)',
    );
    assert.equal(r.code, 0, r.stderr);
    const mine = r.events.filter((e) => e.peer === '127.0.0.1:7203');
    assert.deepEqual(mine.map(brief), ['connect-start', 'in-progress connect EINPROGRESS', 'poll poll', 'error connect ETIMEDOUT']);
    const took = mine[3]!.t - mine[0]!.t;
    t.diagnostic(`connect() to ETIMEDOUT: ${took.toFixed(3)} s`);
    assert.ok(took > 2.5 && took < 4, `between 2.5 and 4 s (${took.toFixed(3)} s)`);
    const [start, end] = r.stdout.trim().split(' ').map(Number);
    assert.ok(Math.abs(mine[0]!.t - start!) < 0.005 && Math.abs(mine[3]!.t - end!) < 0.005, 'both ends agree with the program\'s clock within 5 ms');
    assert.equal(mine[3]!.conn, '>127.0.0.1:7203', 'the program never asked its local port: the key is the peer alone');
  });

  test('a reset read gives ECONNRESET; a write after the peer closed gives EPIPE and a fatal SIGPIPE', async (t) => {
    if (!sandbox) return t.skip(why);
    const r = await python(
      'import signal, socket, struct, time',
      'l = socket.socket(); l.bind(("127.0.0.1", 7204)); l.listen()',
      'c = socket.socket(); c.connect(("127.0.0.1", 7204)); print(c.getsockname()[1], flush=True); a, _ = l.accept()',
      'a.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)); a.close(); time.sleep(0.05)',
      'try:\n c.recv(10)\nexcept ConnectionResetError:\n pass',
      'c2 = socket.socket(); c2.connect(("127.0.0.1", 7204)); b, _ = l.accept(); b.close(); time.sleep(0.05)',
      'c2.send(b"x"); time.sleep(0.05)',
      // Python ignores SIGPIPE; most C programs do not: restore the default to see it kill.
      'signal.signal(signal.SIGPIPE, signal.SIG_DFL)',
      'c2.send(b"y")',
    );
    // strace ends the way its program did: it kills itself with the same signal, and so does nsenter.
    assert.ok(r.signal === 'SIGPIPE' || r.code === 141, `killed by SIGPIPE (${r.code} ${r.signal} ${r.stderr})`);
    assert.deepEqual(errors(r).map(brief), ['error recv ECONNRESET', 'error send EPIPE']);
    const [reset, pipe] = errors(r);
    assert.equal(reset!.syscall, 'recvfrom');
    assert.equal(reset!.conn, `127.0.0.1:${r.stdout.trim()}>127.0.0.1:7204`, 'the local port from getsockname(), as curl asks for it');
    assert.equal(pipe!.syscall, 'sendto');
    const tail = r.events.slice(r.events.indexOf(pipe!) + 1);
    assert.deepEqual(tail.map(brief), ['signal SIGPIPE', 'exit SIGPIPE']);
  });

  test('an ignored SIGPIPE is no event: EPIPE alone', async (t) => {
    if (!sandbox) return t.skip(why);
    const r = await python(
      'import socket, time',
      'l = socket.socket(); l.bind(("127.0.0.1", 7205)); l.listen()',
      'c = socket.socket(); c.connect(("127.0.0.1", 7205)); b, _ = l.accept(); b.close(); time.sleep(0.05)',
      'c.send(b"x"); time.sleep(0.05)',
      'try:\n c.send(b"y")\nexcept BrokenPipeError:\n print("EPIPE")',
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'EPIPE');
    assert.deepEqual(errors(r).map(brief), ['error send EPIPE']);
    assert.ok(!r.events.some((e) => e.type === 'signal'), JSON.stringify(r.events.filter((e) => e.type === 'signal')));
  });

  test('SO_RCVTIMEO: the EAGAIN of a blocking recv that waited is an outcome, not noise', async (t) => {
    if (!sandbox) return t.skip(why);
    const r = await python(
      'import socket, struct, time',
      'l = socket.socket(); l.bind(("127.0.0.1", 7210)); l.listen()',
      'c = socket.socket(); c.connect(("127.0.0.1", 7210)); a, _ = l.accept()',
      'c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, 300000))',
      'try:\n c.recv(10)\nexcept BlockingIOError as e:\n print(e.errno)',
    );
    assert.equal(r.stdout.trim(), '11', r.stderr);
    const errs = errors(r);
    assert.deepEqual(errs.map(brief), ['error recv EAGAIN']);
    const connected = r.events.find((e) => e.type === 'connected')!;
    const waited = errs[0]!.t - connected.t;
    assert.ok(waited > 0.29 && waited < 0.5, `after the 0.3 s timeout (${waited.toFixed(3)} s)`);
  });

  test('events arrive while the program still runs', async (t) => {
    if (!sandbox) return t.skip(why);
    const r = await python(
      'import socket, time',
      'try:\n socket.create_connection(("127.0.0.1", 7206))\nexcept OSError:\n pass',
      'time.sleep(1)',
    );
    const i = r.events.findIndex((e) => e.type === 'error');
    assert.ok(i >= 0);
    const early = r.exitedAt - r.arrived[i]!;
    t.diagnostic(`the error reached onEvent ${early.toFixed(3)} s before the program exited`);
    assert.ok(early > 0.8, `followed live (${early.toFixed(3)} s early)`);
  });

  test('a flood of EAGAIN reads is counted, not reported', async (t) => {
    if (!sandbox) return t.skip(why);
    const file = join(dir, 'eagain.txt');
    const events: TimelineEvent[] = [];
    const tail = new StraceTail({ file, proc: 'client', onEvent: (e) => events.push(e) }).start();
    const argv = sandbox.enter(straceArgv(file, [PYTHON, '-c', [
      'import socket',
      'l = socket.socket(); l.bind(("127.0.0.1", 7207)); l.listen()',
      'c = socket.socket(); c.connect(("127.0.0.1", 7207)); c.setblocking(False)',
      'for i in range(20000):',
      ' try: c.recv(10)',
      ' except BlockingIOError: pass',
    ].join('\n')]));
    const code = await new Promise<number | null>((resolve) => spawn(argv[0]!, argv.slice(1), { stdio: 'ignore', env: labEnv() }).on('close', resolve));
    await tail.stop();
    assert.equal(code, 0);
    assert.equal(tail.parser.stats.wouldBlock, 20000);
    assert.deepEqual(events.filter((e) => e.type === 'error'), []);
  });

  test('curl against a closed port: connect ECONNREFUSED, as a sample would report it', { skip: haveCurl ? false : 'curl is not installed' }, async (t) => {
    if (!sandbox) return t.skip(why);
    const r = await trace(['curl', '-sS', '--max-time', '5', 'http://127.0.0.1:7208/']);
    assert.equal(r.code, 7, `curl: ${r.stderr.trim()}`);
    const refused = errors(r).filter((e) => e.op === 'connect');
    assert.equal(refused.length, 1, JSON.stringify(r.events));
    assert.equal(refused[0]!.name, 'ECONNREFUSED');
    assert.equal(refused[0]!.errno, 111);
    assert.equal(refused[0]!.peer, '127.0.0.1:7208');
    t.diagnostic(`curl: ${r.events.map(brief).join(', ')}`);
  });

  test('nc against a closed port: connect ECONNREFUSED', { skip: haveNc ? false : 'nc is not installed' }, async (t) => {
    if (!sandbox) return t.skip(why);
    const r = await trace(['nc', '-z', '127.0.0.1', '7209']);
    assert.ok(errors(r).some((e) => e.op === 'connect' && e.name === 'ECONNREFUSED'), JSON.stringify(r.events));
  });
});
