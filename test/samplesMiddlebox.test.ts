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

/**
 * A sandbox whose loopback has the VIP: VIP:80 is DNATed to VIP:7000, where server.py listens
 * (`--mode http --keep-alive-header 2`); VIP:7000 itself is the direct path. With
 * nf_conntrack_tcp_loose=0 a mid-stream packet of a forgotten flow is INVALID, and only the
 * VIP path answers those (`forgotten`): RST, or nothing.
 */
async function withMiddlebox(forgotten: 'REJECT' | 'DROP', body: (run: (argv: string[]) => Promise<{ code: number | null; events: AppEvent[] }>) => Promise<void>): Promise<void> {
  const sb = await Sandbox.create({ log: silentLogger, label: `middlebox-${forgotten}` });
  try {
    await sb.exec(['ip', 'addr', 'add', `${VIP}/32`, 'dev', 'lo']);
    await sb.exec(['sysctl', '-q', '-w', `net.netfilter.nf_conntrack_tcp_timeout_established=${T}`, 'net.netfilter.nf_conntrack_tcp_loose=0']);
    await sb.exec(['iptables', '-t', 'nat', '-A', 'OUTPUT', '-d', VIP, '-p', 'tcp', '--dport', '80', '-j', 'DNAT', '--to-destination', `${VIP}:7000`]);
    await sb.exec(['iptables', '-A', 'INPUT', '-d', VIP, '-p', 'tcp', '--dport', '80', '-m', 'conntrack', '--ctstate', 'INVALID', '-j', forgotten,
      ...(forgotten === 'REJECT' ? ['--reject-with', 'tcp-reset'] : [])]);
    const argv = sb.enter(['python3', join(SAMPLES, 'server.py'), '--port', '7000', '--mode', 'http', '--reply-writes', 'one', '--keep-alive-header', '2', '--json']);
    const server = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'inherit'], env: labEnv() });
    await new Promise<void>((resolve, reject) => {
      let seen = '';
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
    await body(run);
  } finally {
    await sb.dispose(); // the server dies with the namespace
  }
}

test('a pool that honours Keep-Alive: timeout=2 reconnects before the VIP forgets the flow; one that ignores it gets ECONNRESET', { timeout: 60_000 }, async () => {
  await withMiddlebox('REJECT', async (run) => {
    const steps = ['--host', VIP, '--port', '80', '--proto', 'http', '--steps', 'connect,request,sleep:5,request'];
    const [honour, ignore] = await Promise.all([
      run([join(SAMPLES, 'client.py'), ...steps, '--pool', 'honour']),
      run([join(SAMPLES, 'client.py'), ...steps]),
    ]);

    assert.equal(honour.code, 0);
    assert.deepEqual(ofType(honour.events, 'error'), []);
    assert.equal(ofType(honour.events, 'response').length, 2);
    const evictions = ofType(honour.events, 'pool-evict');
    assert.equal(evictions.length, 1);
    assert.equal(evictions[0]!.timeout, 2);
    assert.equal(evictions[0]!.limit, 1); // 2 s advertised minus the default 1 s margin
    assert.ok((evictions[0]!.idle as number) >= 5, `idle ${evictions[0]!.idle}`);
    const connected = ofType(honour.events, 'connected');
    assert.equal(connected.length, 2);
    assert.notEqual(connected[0]!.local, connected[1]!.local, 'the second request went on a new connection');

    assert.equal(ignore.code, 1);
    assert.equal(ofType(ignore.events, 'response').length, 1);
    const errors = ofType(ignore.events, 'error');
    assert.deepEqual(errors.map((e) => [e.op, e.name, e.errno]), [['recv', 'ECONNRESET', 104]]);
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
