// The Python samples against a middlebox that forgets idle flows (SCENARIOS.md section C), in
// one namespace on loopback: conntrack with a short established timeout, DNAT from a VIP port
// to the server, and a REJECT (or DROP) for packets of flows conntrack no longer knows, the
// recipe DESIGN.md verified across namespaces. Real kernel, real programs, their JSON events.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { AppEvent } from '../src/lab/appEvents';
import { labEnv } from '../src/lab/exec';
import { silentLogger } from '../src/lab/log';
import { Sandbox } from '../src/lab/sandbox';
import { ROOT } from './support/lab';

const SAMPLES = join(ROOT, 'samples', 'python');
const VIP = '198.18.0.1';
/** The middlebox's idle timeout, seconds (nf_conntrack_tcp_timeout_established). */
const T = 3;

const lines = (stdout: string): AppEvent[] => stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as AppEvent);
const ofType = (events: AppEvent[], type: string) => events.filter((e) => e.type === type);

type Run = (argv: string[]) => Promise<{ code: number | null; events: AppEvent[] }>;

/**
 * A sandbox whose loopback has the VIP: VIP:80 is DNATed to VIP:7000, where server.py listens
 * (`--mode http --keep-alive-header 2`); VIP:7000 itself is the direct path. With
 * nf_conntrack_tcp_loose=0 a mid-stream packet of a forgotten flow is INVALID, and only the
 * VIP path answers those (`forgotten`): RST, or nothing. `serverEvents()` is what the server
 * has printed so far.
 */
async function withMiddlebox(forgotten: 'REJECT' | 'DROP', body: (run: Run, serverEvents: () => AppEvent[]) => Promise<void>): Promise<void> {
  const sb = await Sandbox.create({ log: silentLogger, label: `middlebox-${forgotten}` });
  try {
    await sb.exec(['ip', 'addr', 'add', `${VIP}/32`, 'dev', 'lo']);
    await sb.exec(['sysctl', '-q', '-w', `net.netfilter.nf_conntrack_tcp_timeout_established=${T}`, 'net.netfilter.nf_conntrack_tcp_loose=0']);
    await sb.exec(['iptables', '-t', 'nat', '-A', 'OUTPUT', '-d', VIP, '-p', 'tcp', '--dport', '80', '-j', 'DNAT', '--to-destination', `${VIP}:7000`]);
    await sb.exec(['iptables', '-A', 'INPUT', '-d', VIP, '-p', 'tcp', '--dport', '80', '-m', 'conntrack', '--ctstate', 'INVALID', '-j', forgotten,
      ...(forgotten === 'REJECT' ? ['--reject-with', 'tcp-reset'] : [])]);
    const argv = sb.enter(['python3', join(SAMPLES, 'server.py'), '--port', '7000', '--mode', 'http', '--reply-writes', 'one', '--keep-alive-header', '2', '--json']);
    const server = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'inherit'], env: labEnv() });
    let seen = '';
    await new Promise<void>((resolve, reject) => {
      server.stdout.setEncoding('utf8').on('data', (d: string) => {
        seen += d;
        if (seen.includes('"type":"listening"')) resolve();
      });
      server.once('exit', (code) => reject(new Error(`server.py exited ${code} before listening`)));
    });
    server.removeAllListeners('exit');
    const run = async (args: string[]) => {
      const r = await sb.exec(['python3', ...args, '--json'], { allowFailure: true, timeoutMs: 30_000 });
      return { code: r.code, events: lines(r.stdout) };
    };
    await body(run, () => lines(seen.slice(0, seen.lastIndexOf('\n') + 1)));
  } finally {
    await sb.dispose(); // the server dies with the namespace
  }
}

test('a pool that honours Keep-Alive: timeout=2 closes the idle connection after 1 s, while the VIP still knows it: the server sees the FIN; one that ignores it gets ECONNRESET', { timeout: 60_000 }, async () => {
  await withMiddlebox('REJECT', async (run, serverEvents) => {
    const steps = ['--host', VIP, '--port', '80', '--proto', 'http', '--steps', 'connect,request,sleep:5,request'];
    const [honour, ignore] = await Promise.all([
      run([join(SAMPLES, 'client.py'), ...steps, '--pool', 'honour']),
      run([join(SAMPLES, 'client.py'), ...steps]),
    ]);
    const server = serverEvents();
    /** The server's events about the connection whose client end is `local`. */
    const serverSide = (local: unknown) => {
      const accepted = server.find((e) => e.type === 'accepted' && e.peer === local);
      assert.ok(accepted, `the server accepted no connection from ${String(local)}`);
      return server.filter((e) => e.conn === accepted.conn);
    };

    assert.equal(honour.code, 0);
    assert.deepEqual(ofType(honour.events, 'error'), []);
    const responses = ofType(honour.events, 'response');
    assert.equal(responses.length, 2);
    const firstReply = responses[0]!.t;
    const since = (e: AppEvent) => Math.round((e.t - firstReply) * 1000) / 1000;

    // Evicted while idle, 2 s advertised minus the default 1 s margin after the first reply;
    // not at the second request (5 s), and only once.
    const evictions = ofType(honour.events, 'pool-evict');
    assert.equal(evictions.length, 1);
    const [evict] = evictions;
    assert.deepEqual([evict!.timeout, evict!.limit], [2, 1]);
    assert.ok(since(evict!) >= 0.95 && since(evict!) <= 1.5, `pool-evict ${since(evict!)} s after the first reply`);
    assert.ok((evict!.idle as number) >= 0.95 && (evict!.idle as number) <= 1.5, `idle ${evict!.idle}`);
    const closed = ofType(honour.events, 'closed');
    assert.deepEqual(closed.map((e) => e.how), ['fin']);
    assert.ok(closed[0]!.t >= evict!.t && closed[0]!.t - evict!.t < 0.05, `closed ${since(closed[0]!)} s, pool-evict ${since(evict!)} s`);

    // The new connection is made for the second request, after the sleep.
    const connected = ofType(honour.events, 'connected');
    assert.equal(connected.length, 2);
    assert.notEqual(connected[0]!.local, connected[1]!.local, 'the second request went on a new connection');
    const reconnect = ofType(honour.events, 'connect-start')[1]!;
    assert.ok(since(reconnect) >= 5 && since(reconnect) < 5.5, `second connect-start ${since(reconnect)} s after the first reply`);

    // The FIN crossed the VIP while it still knew the flow: the server read EOF then, and no RST.
    const first = serverSide(connected[0]!.local);
    const eof = first.filter((e) => e.type === 'eof');
    assert.equal(eof.length, 1, `server events of the first connection: ${JSON.stringify(first.map((e) => e.type))}`);
    assert.ok(since(eof[0]!) >= 0.95 && since(eof[0]!) <= 1.5, `server eof ${since(eof[0]!)} s after the first reply`);
    assert.deepEqual(first.filter((e) => e.type === 'error'), []);
    assert.equal(ofType(serverSide(connected[1]!.local), 'error').length, 0);

    assert.equal(ignore.code, 1);
    assert.equal(ofType(ignore.events, 'response').length, 1);
    const errors = ofType(ignore.events, 'error');
    assert.deepEqual(errors.map((e) => [e.op, e.name, e.errno]), [['recv', 'ECONNRESET', 104]]);
    // The VIP reset the request: the server never heard of it, and still holds its end.
    const ignored = serverSide(ofType(ignore.events, 'connected')[0]!.local);
    assert.deepEqual(ignored.map((e) => e.type).filter((t) => ['eof', 'error', 'closed'].includes(t)), []);
  });
});

test('sleep matrix: only the VIP without keepalive, idle longer than T, fails (ECONNRESET); all cells run at once', { timeout: 60_000 }, async () => {
  await withMiddlebox('REJECT', async (run) => {
    const { code, events } = await run([join(SAMPLES, 'probes.py'), '--target', `vip=${VIP}:80`, '--target', `direct=${VIP}:7000`,
      '--proto', 'http', '--sleeps', '1,4', '--keepalive', '1,1,3', '--user-timeout', '2000']);
    assert.equal(code, 0);
    const probes = ofType(events, 'probe');
    assert.equal(probes.length, 8);
    const failed = probes.filter((p) => !p.ok).map((p) => [p.target, p.keepalive, p.sleep, p.stage, p.op, p.name, p.errno]);
    assert.deepEqual(failed, [['vip', false, 4, 'second', 'recv', 'ECONNRESET', 104]]);
    // The same failure as a generic error event, tagged with its cell.
    assert.deepEqual(ofType(events, 'error').map((e) => [e.op, e.name, e.target, e.keepalive, e.sleep]), [['recv', 'ECONNRESET', 'vip', false, 4]]);
    for (const p of probes) assert.ok((p.idle as number) >= (p.sleep as number), `idle ${p.idle} < sleep ${p.sleep}`);
    const done = ofType(events, 'done')[0]!;
    assert.deepEqual([done.cells, done.ok, done.failed, done.setup_failed], [8, 7, 1, 0]);
    // Parallel cells: the longest sleep and a little, not the sum of the sleeps (20 s).
    assert.ok((done.took as number) >= 4 && (done.took as number) < 5.5, `matrix took ${done.took} s`);
  });
});

test('sleep matrix behind a middlebox that drops forgotten flows: ETIMEDOUT once TCP_USER_TIMEOUT runs out', { timeout: 60_000 }, async () => {
  await withMiddlebox('DROP', async (run) => {
    const { code, events } = await run([join(SAMPLES, 'probes.py'), '--target', `vip=${VIP}:80`, '--proto', 'http', '--sleeps', '4', '--user-timeout', '1000']);
    assert.equal(code, 0);
    const [probe] = ofType(events, 'probe');
    assert.deepEqual([probe!.ok, probe!.stage, probe!.op, probe!.name, probe!.errno], [false, 'second', 'recv', 'ETIMEDOUT', 110]);
    // No RST: the retransmissions go unanswered until the 1 s user timeout, checked when a
    // retransmission timer fires.
    assert.ok((probe!.took as number) >= 1 && (probe!.took as number) < 2.5, `took ${probe!.took} s`);
  });
});
