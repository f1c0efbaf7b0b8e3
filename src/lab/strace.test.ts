import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monotonic, sleep } from './clock';
import { LabError } from './errors';
import { labEnv } from './exec';
import { silentLogger } from './log';
import { Sandbox } from './sandbox';
import { STRACE_MISSING, StraceTail, straceArgv, straceAvailable, straceMissingError } from './strace';
import type { TimelineEvent } from './timeline';

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

describe('following the file', () => {
  let dir = '';
  before(() => { dir = mkdtempSync(join(tmpdir(), 'strace-tail-test-')); });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('waits for the file, joins a line written in two pieces, skips an overlong line', async () => {
    const file = join(dir, 'pieces.txt');
    const events: TimelineEvent[] = [];
    const tail = new StraceTail({ file, proc: 'client', onEvent: (e) => events.push(e), offset: { wallMs: 0, mono: 0, error: 0 }, intervalMs: 10, maxLineLength: 4096 }).start();
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
    const tail = new StraceTail({ file, proc: 'client', onEvent: (e) => events.push(e), offset: { wallMs: 0, mono: 0, error: 0 }, intervalMs: 5 }).start();
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
