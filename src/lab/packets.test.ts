import { spawn, spawnSync, type ChildProcessByStdio } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import assert from 'node:assert/strict';
import { before, describe, test, type TestContext } from 'node:test';
import { splitRandomly } from '../../test/support/packetFrames';
import type { AppEvent } from './appEvents';
import { sleep } from './clock';
import { LabError } from './errors';
import { labEnv } from './exec';
import { silentLogger } from './log';
import { LINKTYPE } from './packetDecode';
import { PacketCapture, PcapEventStream, captureArgv, chooseCaptureMethod, validInterface, type CaptureMethod } from './packets';
import { missingTools } from './preflight';
import { Sandbox } from './sandbox';
import { connectionKey, parseSs } from './ss';
import type { TimelineEvent } from './timeline';

const PATH = labEnv().PATH ?? '';
const have = (tool: string) => missingTools([tool], PATH).length === 0;
const SAMPLES = resolve(__dirname, '..', '..', 'samples', 'python');

describe('choosing the capturer', () => {
  const base = { requested: 'auto', mode: 'root', mappedSubIds: false, tcpdump: true, python: true } as const;

  test('tcpdump where it can run, else capture.py with the reason, else an error naming both', () => {
    assert.equal(chooseCaptureMethod(base).method, 'tcpdump');
    assert.equal(chooseCaptureMethod({ ...base, mode: 'rootless', mappedSubIds: true }).method, 'tcpdump');
    const noSubIds = chooseCaptureMethod({ ...base, mode: 'rootless' });
    assert.equal(noSubIds.method, 'af_packet');
    assert.match(noSubIds.note, /setgroups/);
    const noTcpdump = chooseCaptureMethod({ ...base, tcpdump: false });
    assert.equal(noTcpdump.method, 'af_packet');
    assert.match(noTcpdump.note, /tcpdump is not installed \(install it: apt-get install tcpdump\)/);
    assert.equal(chooseCaptureMethod({ ...base, requested: 'af_packet' }).method, 'af_packet');
    assert.throws(() => chooseCaptureMethod({ ...base, tcpdump: false, python: false }),
      (e: unknown) => e instanceof LabError && /tcpdump is not installed .* and python3 is not installed/.test(e.message));
    assert.throws(() => chooseCaptureMethod({ ...base, requested: 'tcpdump', mode: 'rootless' }), LabError);
  });

  test('argv: interface names are checked; -Z root only inside a user namespace', () => {
    for (const bad of ['lo; rm -rf /', '', 'a'.repeat(16), '../x', 'eth 0']) assert.throws(() => validInterface(bad), LabError, bad);
    assert.equal(validInterface('veth-c.1'), 'veth-c.1');
    const root = captureArgv('tcpdump', { interface: 'lo', snaplen: 160, mode: 'root' });
    const rootless = captureArgv('tcpdump', { interface: 'any', snaplen: 160, mode: 'rootless' });
    assert.ok(!root.includes('-Z'));
    assert.deepEqual(rootless.slice(rootless.indexOf('-Z'), rootless.indexOf('-Z') + 2), ['-Z', 'root']);
    assert.deepEqual(root.slice(0, 3), ['tcpdump', '-i', 'lo']);
    const py = captureArgv('af_packet', { interface: 'lo', snaplen: 128, mode: 'rootless', python: '/usr/bin/python3' });
    assert.equal(py[0], '/usr/bin/python3');
    assert.match(py[1]!, /samples\/python\/capture\.py$/);
  });
});

// ---------------------------------------------------------------------------------------
// Real captures in a namespace
// ---------------------------------------------------------------------------------------

/** A sample program inside the sandbox, its JSON events read from stdout. */
class Program {
  readonly events: AppEvent[] = [];
  readonly exited: Promise<number | null>;
  private readonly child: ChildProcessByStdio<null, Readable, Readable>;
  private waiters: { type: string; resolve: (e: AppEvent) => void }[] = [];

  constructor(sandbox: Sandbox, argv: string[]) {
    const full = sandbox.enter(['python3', ...argv, '--json']);
    this.child = spawn(full[0]!, full.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: labEnv() });
    let buffered = '';
    this.child.stdout.setEncoding('utf8').on('data', (d: string) => {
      buffered += d;
      const lines = buffered.split('\n');
      buffered = lines.pop()!;
      for (const line of lines) {
        const e = JSON.parse(line) as AppEvent;
        this.events.push(e);
        this.waiters = this.waiters.filter((w) => (w.type === e.type ? (w.resolve(e), false) : true));
      }
    });
    this.child.stderr.resume();
    this.exited = new Promise((r) => this.child.on('exit', (code) => r(code)));
  }

  waitFor(type: string): Promise<AppEvent> {
    const seen = this.events.find((e) => e.type === type);
    if (seen) return Promise.resolve(seen);
    return new Promise((r) => this.waiters.push({ type, resolve: r }));
  }

  /** SIGTERM to the program (nsenter's child); nsenter then exits with it. */
  async stop(): Promise<void> {
    const pid = this.child.pid!;
    try {
      const first = Number(readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/)[0]);
      process.kill(first > 0 ? first : pid, 'SIGTERM');
    } catch { /* exited already */ }
    await this.exited;
  }
}

const client = (sb: Sandbox, args: string[]) => new Program(sb, [join(SAMPLES, 'client.py'), ...args]);
const server = async (sb: Sandbox, args: string[]) => {
  const p = new Program(sb, [join(SAMPLES, 'server.py'), ...args]);
  await p.waitFor('listening');
  return p;
};

interface Run {
  events: TimelineEvent[];
  pcapBytes: Buffer;
  capture: PacketCapture;
}

/** A fresh sandbox, a capture with `method`, the exchange, then everything stopped. */
async function captured(method: CaptureMethod, body: (sb: Sandbox) => Promise<void>, setup?: (sb: Sandbox) => Promise<void>, iface = 'lo'): Promise<Run> {
  const sb = await Sandbox.create({ log: silentLogger, label: `packets-${method}` });
  try {
    await setup?.(sb);
    const events: TimelineEvent[] = [];
    const chunks: Buffer[] = [];
    const capture = await PacketCapture.start({ sandbox: sb, log: silentLogger, method, interface: iface, onEvent: (e) => events.push(e), onPcap: (c) => chunks.push(Buffer.from(c)) });
    try {
      await body(sb);
      await sleep(50);
    } finally {
      await capture.dispose();
    }
    assert.equal(capture.method, method);
    assert.equal(capture.stats.streamError, undefined);
    return { events, pcapBytes: Buffer.concat(chunks), capture };
  } finally {
    await sb.dispose();
  }
}

const summary = (events: TimelineEvent[], skipAcks = false) =>
  events.filter((e) => !skipAcks || e.type !== 'ack').map((e) => `${e.type}${e.of ? `:${e.of}` : ''} ${e.conn}`);

describe('real captures in a namespace', () => {
  let methods: CaptureMethod[] = [];
  let why = '';
  before(async () => {
    if (!have('python3')) {
      why = 'python3 is not installed (the exchanges are the Python samples)';
      return;
    }
    let sb: Sandbox;
    try {
      sb = await Sandbox.create({ log: silentLogger, label: 'packets-probe' });
    } catch (e) {
      why = `no namespace: ${e instanceof Error ? e.message : e}`;
      return;
    }
    for (const requested of ['tcpdump', 'af_packet'] as const) {
      try {
        chooseCaptureMethod({ requested, mode: sb.mode, mappedSubIds: sb.mappedSubIds, tcpdump: have('tcpdump'), python: true });
        methods.push(requested);
      } catch (e) {
        why = e instanceof Error ? e.message : String(e);
      }
    }
    await sb.dispose();
  });

  /** Runs `fn` for each method that can run here; notes the one that cannot. */
  const eachMethod = async (t: TestContext, fn: (m: CaptureMethod) => Promise<void>) => {
    if (methods.length === 0) return t.skip(why);
    if (methods.length < 2) t.diagnostic(`only ${methods.join(', ')}: ${why}`);
    await Promise.all(methods.map(fn));
  };

  const iptables = (...rule: string[]) => async (sb: Sandbox) => {
    await sb.exec(['iptables', ...rule]);
  };

  test('connect to a closed port: SYN, then RST+ACK from the server side, within the connect() call; on lo and on `any`', async (t) => {
    const runs: Record<string, string[]> = {};
    await eachMethod(t, async (method) => {
      for (const iface of ['lo', 'any']) {
        let app: AppEvent[] = [];
        const { events, capture } = await captured(method, async (sb) => {
          const c = client(sb, ['--port', '7999', '--bind', '127.0.0.1:40001', '--steps', 'connect']);
          await c.exited;
          app = c.events;
        }, undefined, iface);
        assert.deepEqual(summary(events), ['syn 127.0.0.1:40001>127.0.0.1:7999', 'rst 127.0.0.1:7999>127.0.0.1:40001'], `${method} ${iface}`);
        const [syn, rst] = events;
        assert.equal(rst!.flags, 'R.');
        assert.equal(rst!.ack, ((syn!.seq as number) + 1) >>> 0, 'the RST acknowledges the SYN');
        // Same clock: both packets fall inside the connect() call as the client timed it.
        const start = app.find((e) => e.type === 'connect-start')!.t;
        const error = app.find((e) => e.type === 'error')!;
        assert.equal(error.name, 'ECONNREFUSED');
        for (const p of [syn!, rst!]) assert.ok(p.t > start - 0.001 && p.t < error.t + 0.001, `${method}: ${p.type} at ${p.t}, connect ${start}..${error.t}`);
        // tcpdump writes Ethernet for lo and cooked v2 for any; capture.py always cooked v2.
        assert.equal(capture.linktype, iface === 'lo' && method === 'tcpdump' ? LINKTYPE.ETHERNET : LINKTYPE.LINUX_SLL2);
        runs[`${method} ${iface}`] = summary(events);
      }
    });
    for (const key of Object.keys(runs)) assert.deepEqual(runs[key], runs[Object.keys(runs)[0]!], key);
  });

  test('request and close: data and FIN both ways, keys as ss writes them, IPv4 and IPv6; a replay in random chunks gives the same events', async (t) => {
    const perMethod: Record<string, string[]> = {};
    await eachMethod(t, async (method) => {
      for (const [host, bind, listen] of [['127.0.0.1', '127.0.0.1:40002', '127.0.0.1'], ['::1', '[::1]:40002', '::1']] as const) {
        let ssKeys: string[] = [];
        const run = await captured(method, async (sb) => {
          const s = await server(sb, ['--host', listen, '--port', '7002', '--mode', 'echo']);
          const c = client(sb, ['--host', host, '--port', '7002', '--bind', bind, '--steps', 'connect,request,sleep:0.3,close']);
          await c.waitFor('response');
          const ss = await sb.exec(['ss', '-tan']);
          ssKeys = parseSs(ss.stdout).sockets.filter((x) => x.state === 'ESTAB').map(connectionKey).sort();
          assert.equal(await c.exited, 0);
          await sleep(100); // the server's FIN
          await s.stop();
        });
        const { events } = run;
        const client4 = host === '::1' ? '[::1]:40002>[::1]:7002' : '127.0.0.1:40002>127.0.0.1:7002';
        const server4 = host === '::1' ? '[::1]:7002>[::1]:40002' : '127.0.0.1:7002>127.0.0.1:40002';
        assert.deepEqual([...new Set(events.map((e) => e.conn))].sort(), ssKeys, 'the packet keys are the socket keys ss shows');
        const from = (conn: string) => events.filter((e) => e.conn === conn && e.type !== 'ack').map((e) => `${e.type} ${e.len}`);
        assert.deepEqual(from(client4), ['syn 0', 'data 5', 'fin 0'], `${method} ${host}: client`);
        assert.deepEqual(from(server4), ['syn-ack 0', 'data 5', 'fin 0'], `${method} ${host}: server`);
        assert.ok(events.every((e) => e.type !== 'retransmit' && e.type !== 'keepalive'));
        const fins = events.filter((e) => e.type === 'fin');
        assert.deepEqual(fins.map((e) => e.flags), ['F.', 'F.']);
        // The same bytes fed again in random pieces: the same events, to the nanosecond.
        for (let i = 0; i < 20; i++) {
          const again: TimelineEvent[] = [];
          const stream = new PcapEventStream(run.capture.clock, (e) => again.push(e));
          for (const c of splitRandomly(run.pcapBytes, 1 + i * 7)) stream.push(c);
          assert.deepEqual(again, events);
        }
        perMethod[`${method} ${host}`] = summary(events, true).sort();
      }
    });
    for (const host of ['127.0.0.1', '::1']) {
      if (perMethod[`tcpdump ${host}`] && perMethod[`af_packet ${host}`]) {
        assert.deepEqual(perMethod[`af_packet ${host}`], perMethod[`tcpdump ${host}`], `the two methods agree (${host})`);
      }
    }
  });

  test('dropped SYNs: retransmissions of the SYN on the kernel schedule, ±150 ms, then ETIMEDOUT', async (t) => {
    if (!have('iptables')) return t.skip('iptables is not installed (apt-get install iptables)');
    // Linux 6.17+ retransmits the first tcp_syn_linear_timeouts SYNs (default 4) every second
    // before backing off; 0 gives the classic doubling. TCP_SYNCNT=2 bounds the attempt to
    // 1 + 2 + 4 = 7 s either way. Both schedules, with every capture method, in parallel.
    const hasLinear = spawnSync('sysctl', ['-n', 'net.ipv4.tcp_syn_linear_timeouts'], { env: labEnv() }).status === 0;
    const cases: { linear: number | null; expect: number[] }[] = hasLinear
      ? [{ linear: 0, expect: [1, 3] }, { linear: 4, expect: [1, 2, 3, 4, 5] }]
      : [{ linear: null, expect: [1, 3] }];
    await eachMethod(t, async (method) => {
      await Promise.all(cases.map(async ({ linear, expect }) => {
        let error: AppEvent | undefined;
        const { events } = await captured(method, async (sb) => {
          const c = client(sb, ['--port', '7003', '--syncnt', '2', '--steps', 'connect']);
          await c.exited;
          error = c.events.find((e) => e.type === 'error');
        }, async (sb) => {
          if (linear !== null) await sb.exec(['sysctl', '-w', `net.ipv4.tcp_syn_linear_timeouts=${linear}`]);
          await iptables('-A', 'INPUT', '-p', 'tcp', '--dport', '7003', '--syn', '-j', 'DROP')(sb);
        });
        const label = `${method}, linear timeouts ${linear}`;
        assert.deepEqual(events.map((e) => e.type), ['syn', ...expect.map(() => 'retransmit')], label);
        assert.ok(events.slice(1).every((e) => e.of === 'syn' && e.seq === events[0]!.seq && e.conn === events[0]!.conn));
        const at = events.slice(1).map((e) => e.t - events[0]!.t);
        at.forEach((x, i) => assert.ok(Math.abs(x - expect[i]!) < 0.15, `${label}: retransmission ${i + 1} at ${x.toFixed(3)} s, expected ${expect[i]} s`));
        assert.equal(error?.name, 'ETIMEDOUT', label);
        const took = (error!.t as number) - events[0]!.t;
        // The last wait is a long timer: the timer wheel files it at a coarser level, which
        // may fire it up to 1/8 of its length late (7.30 s seen here).
        assert.ok(took > 6.9 && took < 7.7, `${label}: ETIMEDOUT after ${took.toFixed(3)} s`);
      }));
    });
  });

  test('keepalive: probes one below what was sent, a second apart, each answered by an ACK', async (t) => {
    await eachMethod(t, async (method) => {
      const { events } = await captured(method, async (sb) => {
        const s = await server(sb, ['--port', '7004', '--mode', 'echo']);
        const c = client(sb, ['--port', '7004', '--bind', '127.0.0.1:40004', '--keepalive', '1,1,5', '--steps', 'connect,sleep:3.5,close']);
        assert.equal(await c.exited, 0);
        await s.stop();
      });
      const out = '127.0.0.1:40004>127.0.0.1:7004';
      const handshakeAck = events.find((e) => e.type === 'ack' && e.conn === out)!;
      const probes = events.filter((e) => e.type === 'keepalive');
      // One probe per idle second until the client's FIN: three when the 3.5 s sleep ends on
      // time, one more when a loaded machine wakes the client late (CI saw four). None after it.
      const fin = events.find((e) => e.type === 'fin' && e.conn === out);
      assert.ok(fin, `${method}: the client closes`);
      const idle = fin.t - handshakeAck.t;
      assert.ok(probes.length >= 2, `${method}: ${probes.length} probes in ${idle.toFixed(3)} s idle`);
      assert.ok(probes.every((p) => p.t < fin.t), `${method}: a probe after the FIN`);
      assert.ok(fin.t - probes.at(-1)!.t < 1.15, `${method}: ${probes.length} probes in ${idle.toFixed(3)} s idle, the last ${(fin.t - probes.at(-1)!.t).toFixed(3)} s before the FIN`);
      assert.ok(probes.every((p) => p.conn === out && p.len === 0 && p.flags === '.' && p.seq === ((handshakeAck.seq as number) - 1) >>> 0));
      const gaps = [probes[0]!.t - handshakeAck.t, ...probes.slice(1).map((p, i) => p.t - probes[i]!.t)];
      gaps.forEach((g) => assert.ok(Math.abs(g - 1) < 0.15, `${method}: probes ${gaps.map((x) => x.toFixed(3))} s apart, want 1 s`));
      for (const p of probes) {
        const answer = events.find((e) => e.t >= p.t && e.conn === '127.0.0.1:7004>127.0.0.1:40004');
        assert.equal(answer?.type, 'ack', `${method}: the peer answers the probe`);
        assert.equal(answer?.ack, handshakeAck.seq);
      }
      assert.ok(events.every((e) => e.type !== 'retransmit'), 'no retransmission invented from duplicate copies');
    });
  });

  test('ICMP errors: port and host unreachable, IPv4 and IPv6, with the quoted connection', async (t) => {
    if (!have('iptables') || !have('ip6tables')) return t.skip('iptables/ip6tables are not installed (apt-get install iptables)');
    await eachMethod(t, async (method) => {
      const { events } = await captured(method, async (sb) => {
        for (const [host, port, bind] of [['127.0.0.1', '7005', '127.0.0.1:40005'], ['127.0.0.1', '7006', '127.0.0.1:40006'], ['::1', '7005', '[::1]:40007']]) {
          await client(sb, ['--host', host!, '--port', port!, '--bind', bind!, '--steps', 'connect']).exited;
        }
      }, async (sb) => {
        await iptables('-A', 'INPUT', '-p', 'tcp', '--dport', '7005', '-j', 'REJECT', '--reject-with', 'icmp-port-unreachable')(sb);
        await iptables('-A', 'INPUT', '-p', 'tcp', '--dport', '7006', '-j', 'REJECT', '--reject-with', 'icmp-host-unreachable')(sb);
        await sb.exec(['ip6tables', '-A', 'INPUT', '-p', 'tcp', '--dport', '7005', '-j', 'REJECT', '--reject-with', 'icmp6-port-unreachable']);
      });
      const icmp = events.filter((e) => e.type === 'icmp');
      const first = (conn: string) => icmp.find((e) => e.conn === conn);
      for (const [conn, name, type, code] of [
        ['127.0.0.1:40005>127.0.0.1:7005', 'port-unreachable', 3, 3],
        ['127.0.0.1:40006>127.0.0.1:7006', 'host-unreachable', 3, 1],
        ['[::1]:40007>[::1]:7005', 'port-unreachable', 1, 4],
      ] as const) {
        const e = first(conn);
        assert.ok(e, `${method}: an icmp event for ${conn} (saw ${summary(events).join(', ')})`);
        assert.equal(e.icmp, name);
        assert.equal(e.icmpType, type);
        assert.equal(e.code, code);
        const syn = events.find((x) => x.type === 'syn' && x.conn === conn);
        assert.equal(e.seq, syn?.seq, 'the error quotes the SYN');
      }
    });
  });

  test('a receiver that stops reading: zero-window probes, told apart from keepalives', async (t) => {
    await eachMethod(t, async (method) => {
      const { events } = await captured(method, async (sb) => {
        await sb.exec(['python3', '-c', [
          'import socket, time',
          'l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)',
          'l.bind(("127.0.0.1", 7007)); l.listen()',
          'c = socket.socket(); c.connect(("127.0.0.1", 7007)); a, _ = l.accept()',
          'c.setblocking(False)',
          'try:\n    while True: c.send(b"x" * 1000)\nexcept BlockingIOError: pass',
          'time.sleep(1.2)',
        ].join('\n')]);
      });
      const probes = events.filter((e) => e.type === 'window-probe');
      assert.ok(probes.length >= 2, `${method}: ${probes.length} window probes`);
      assert.ok(events.some((e) => e.conn?.startsWith('127.0.0.1:7007>') && e.win === 0), 'the receiver advertised a zero window');
      assert.ok(events.every((e) => e.type !== 'keepalive'));
    });
  });

  test('rootless without sub-id mapping: tcpdump really cannot drop privileges; auto falls back to AF_PACKET', async (t) => {
    if (!have('tcpdump')) return t.skip('tcpdump is not installed: nothing to fall back from');
    if (!have('unshare') || !have('nsenter')) return t.skip('util-linux is not installed');
    // A namespace as plain `unshare --user --map-root-user` makes it: setgroups denied.
    const holder = spawn('unshare', ['--user', '--map-root-user', '--net', '--pid', '--fork', '--kill-child', '--mount-proc', '--mount', 'cat'],
      { stdio: ['pipe', 'pipe', 'pipe'], env: labEnv() }) as ChildProcessByStdio<Writable, Readable, Readable>;
    const up = await new Promise<boolean>((r) => {
      holder.stdout.once('data', () => r(true));
      holder.once('exit', () => r(false));
      holder.stdin.write('x\n');
    });
    if (!up) return t.skip('cannot create a user namespace here');
    t.after(() => holder.stdin.end());
    const pid = Number(readFileSync(`/proc/${holder.pid}/task/${holder.pid}/children`, 'utf8').trim().split(/\s+/)[0]);
    const enter = (argv: readonly string[]) => ['nsenter', '--target', String(pid), '--user', '--preserve-credentials', '--net', '--pid', '--mount', '--', ...argv];
    const run = (argv: string[]) => spawnSync(enter(argv)[0]!, enter(argv).slice(1), { encoding: 'utf8', env: labEnv(), timeout: 10_000 });
    assert.equal(run(['ip', 'link', 'set', 'lo', 'up']).status, 0);
    assert.equal(run(['cat', '/proc/self/setgroups']).stdout.trim(), 'deny');
    const direct = run(['tcpdump', '-i', 'lo', '-w', '-', '-Z', 'root', '-c', '1']);
    assert.notEqual(direct.status, 0);
    assert.match(direct.stderr, /Couldn't change to 'root'.*Operation not permitted/);

    const capture = async (mappedSubIds: boolean) => {
      const events: TimelineEvent[] = [];
      const cap = await PacketCapture.start({ sandbox: { mode: 'rootless', mappedSubIds, enter }, log: silentLogger, onEvent: (e) => events.push(e) });
      run(['python3', join(SAMPLES, 'client.py'), '--port', '7999', '--steps', 'connect']);
      await sleep(50);
      await cap.dispose();
      return { cap, types: events.map((e) => e.type) };
    };
    const honest = await capture(false);
    assert.equal(honest.cap.method, 'af_packet');
    assert.match(honest.cap.note, /setgroups is denied/);
    assert.deepEqual(honest.types, ['syn', 'rst']);
    // Told (wrongly) that sub-ids are mapped: tcpdump is tried, fails, and capture.py takes over.
    const fooled = await capture(true);
    assert.equal(fooled.cap.method, 'af_packet');
    assert.match(fooled.cap.note, /tcpdump failed: .*Operation not permitted/);
    assert.deepEqual(fooled.types, ['syn', 'rst']);
  });

  test('as the unprivileged user: the capture picks its method and sees the exchange', async (t) => {
    if (process.getuid?.() !== 0) return t.skip('run as root to test as another user (this run is unprivileged already)');
    const { ensureTestUser, TEST_USER } = await import('../../test/support/lab');
    ensureTestUser();
    const root = resolve(__dirname, '..', '..');
    const uid = spawnSync('id', ['-u', TEST_USER], { encoding: 'utf8' }).stdout.trim();
    const gid = spawnSync('id', ['-g', TEST_USER], { encoding: 'utf8' }).stdout.trim();
    const as = ['setpriv', `--reuid=${uid}`, `--regid=${gid}`, '--init-groups', '--reset-env', '--'];
    if (spawnSync(as[0]!, [...as.slice(1), 'test', '-r', join(root, 'src', 'lab', 'packets.ts')]).status !== 0) {
      return t.skip(`${TEST_USER} cannot read this checkout (${root})`);
    }
    const script = `
      const { Sandbox } = require(${JSON.stringify(join(root, 'src/lab/sandbox.ts'))});
      const { PacketCapture } = require(${JSON.stringify(join(root, 'src/lab/packets.ts'))});
      const { silentLogger } = require(${JSON.stringify(join(root, 'src/lab/log.ts'))});
      (async () => {
        const sb = await Sandbox.create({ log: silentLogger, label: 'packets-user' });
        const types = [];
        const cap = await PacketCapture.start({ sandbox: sb, log: silentLogger, onEvent: (e) => types.push(e.type) });
        await sb.exec(['python3', ${JSON.stringify(join(SAMPLES, 'client.py'))}, '--port', '7999', '--steps', 'connect'], { allowFailure: true });
        await new Promise((r) => setTimeout(r, 50));
        await cap.dispose();
        console.log(JSON.stringify({ mode: sb.mode, mapped: sb.mappedSubIds, method: cap.method, note: cap.note, types }));
        await sb.dispose();
      })().catch((e) => { console.error(e.message); process.exit(1); });`;
    const r = spawnSync(as[0]!, [...as.slice(1), 'env', 'PATH=/usr/bin:/bin', `HOME=/tmp`, process.execPath, '--import', 'tsx', '-e', script],
      { cwd: root, encoding: 'utf8', timeout: 60_000 });
    if (r.status !== 0 && /user namespace/.test(r.stderr)) return t.skip(`no user namespaces for ${TEST_USER}: ${r.stderr.trim()}`);
    assert.equal(r.status, 0, r.stderr);
    const got = JSON.parse(r.stdout.trim().split('\n').pop()!) as { mode: string; mapped: boolean; method: string; note: string; types: string[] };
    t.diagnostic(`${TEST_USER}: ${got.method} (${got.note})`);
    assert.equal(got.mode, 'rootless');
    assert.equal(got.method, got.mapped && have('tcpdump') ? 'tcpdump' : 'af_packet');
    assert.deepEqual(got.types, ['syn', 'rst']);
  });
});
