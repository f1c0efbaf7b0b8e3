import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { StraceParser } from './straceEvents';
import type { TimelineEvent } from './timeline';

const fixture = (name: string) => readFileSync(join(__dirname, 'fixtures', name), 'utf8');

/** Feeds lines to a fresh parser (offset 0: event times stay strace's own). */
function parse(lines: string | string[], proc = 'client'): { events: TimelineEvent[]; parser: StraceParser } {
  const parser = new StraceParser(proc, 0);
  const events = (typeof lines === 'string' ? lines.split('\n') : lines).flatMap((l) => parser.line(l));
  return { events, parser };
}

const brief = (e: TimelineEvent) => [e.type, e.op, e.name ?? e.signal].filter((x) => x !== undefined).join(' ');

describe('strace lines to events', () => {
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
