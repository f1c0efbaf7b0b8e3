/**
 * Section C for real, on several hosts (network namespaces joined by bridges), as root and as
 * an unprivileged user: the errno each scenario must show is written here from SCENARIOS.md,
 * and the seed's table (only "through the VIP, no keepalive, idle past the timeout" fails) is
 * checked cell by cell from the probes' own events. Both legs of a proxied connection and the
 * balancer's flow table must reach the stream, and nothing may be left once the runs end.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ensureTestUser, isRoot, runCli, runJson, settledLeftovers } from './support/lab';
import { becameEstablished } from './support/transitions';

type Expect = { errno?: [string, number]; outcome?: string; seconds?: [number, number] };
const SPEC: Record<string, Expect> = {
  'l4-idle-reset': { errno: ['ECONNRESET', 104], seconds: [4.95, 5.6] },
  'l4-idle-keepalive': { outcome: 'response', seconds: [4.95, 5.6] },
  'l4-idle-silent-drop': { errno: ['ETIMEDOUT', 110] },
  'l4-idle-pool-eviction': { outcome: 'response', seconds: [4.95, 5.6] },
  'l4-sleep-matrix': { errno: ['ECONNRESET', 104] },
  'relay-host-kill': { outcome: 'eof', seconds: [0, 0.5] },
};

/** The seed's idle timeout, scaled: 4 s in the matrix. */
const MATRIX_IDLE = 4;

interface Json {
  id: string;
  verdict: string;
  mode: string;
  measured: { errno: { name: string; number: number } | null; outcome: string | null; seconds: number | null };
  checks: { says: string; status: string; reason?: string }[];
  applied: { id: string; command: string; packets: number | null }[];
}

type Ev = { scenario: string; t: number; source: string; type: string; proc: string; at?: string; conn?: string; [k: string]: unknown };

async function runSection(as: 'self' | 'user', mode: string, t: { diagnostic(m: string): void }): Promise<void> {
  const run = await runJson<Json, Ev>(['--section', 'middlebox'], as);
  t.diagnostic(`${mode}: ${run.summary}`);
  const { results, events } = run;
  assert.deepEqual(results.map((r) => r.id).sort(), Object.keys(SPEC).sort(), 'the run covers exactly section C');

  const problems: string[] = [];
  for (const r of results) {
    const spec = SPEC[r.id]!;
    if (r.mode !== mode) problems.push(`${r.id}: ran in ${r.mode} mode, not ${mode}`);
    if (r.verdict !== 'pass') problems.push(`${r.id}: ${r.checks.filter((c) => c.status !== 'pass').map((c) => `${c.says}: ${c.reason ?? c.status}`).join('; ')}`);
    if (spec.errno && (r.measured.errno?.name !== spec.errno[0] || r.measured.errno.number !== spec.errno[1])) problems.push(`${r.id}: measured ${JSON.stringify(r.measured.errno)}, expected ${spec.errno.join(' ')}`);
    if (spec.outcome && r.measured.outcome !== spec.outcome) problems.push(`${r.id}: outcome ${r.measured.outcome}, expected ${spec.outcome}`);
    const s = r.measured.seconds;
    if (spec.seconds && (s === null || s < spec.seconds[0] || s > spec.seconds[1])) problems.push(`${r.id}: ${s} s, outside ${spec.seconds.join('-')} s`);
  }
  assert.deepEqual(problems, []);

  // The balancer's own rule counted the packet of the forgotten flow it reset.
  const reset = results.find((r) => r.id === 'l4-idle-reset')!;
  const forgotten = reset.applied.find((a) => a.id === 'forgotten-flows');
  assert.ok(forgotten && forgotten.packets! >= 1, `the balancer reset a packet of a forgotten flow: ${JSON.stringify(reset.applied)}`);

  // The seed's table, cell by cell, from what each probe got.
  const cells = events.filter((e) => e.scenario === 'l4-sleep-matrix' && e.type === 'probe');
  assert.equal(cells.length, 40, '10 idle times x (VIP, direct) x (keepalive off, on)');
  const failed = cells.filter((e) => !e.ok).map((e) => `${e.target}/${e.keepalive ? 'on' : 'off'}/${e.sleep}/${e.name}`).sort();
  const expected = cells.filter((e) => e.target === 'vip' && !e.keepalive && (e.sleep as number) > MATRIX_IDLE).map((e) => `vip/off/${e.sleep}/ECONNRESET`).sort();
  assert.equal(expected.length, 2, 'two idle times lie past the timeout');
  assert.deepEqual(failed, expected, 'only "through the VIP, no keepalive, idle past the timeout" fails');

  // The balancer's view: the reset scenario's VIP flow appears, then is forgotten at its timeout.
  const mine = events.filter((e) => e.scenario === 'l4-idle-reset');
  const client = mine.find((e) => e.proc === 'client' && e.type === 'response')!;
  const vipFlow = mine.find((e) => e.source === 'conntrack' && e.type === 'flow-new' && String(e.flow).endsWith('>198.18.0.10:80'));
  assert.ok(vipFlow, 'the balancer\'s conntrack table showed the flow through the VIP');
  const gone = mine.find((e) => e.source === 'conntrack' && e.type === 'flow-gone' && e.flow === vipFlow.flow);
  assert.ok(gone, 'the balancer forgot the flow');
  const idle = gone.t - client.t;
  assert.ok(idle >= 2.9 && idle <= 3.6, `forgotten ${idle.toFixed(2)} s after the last reply (timeout 3 s, polled every 0.2 s)`);
  // Keepalive refreshes the flow about once a second.
  const refreshes = events.filter((e) => e.scenario === 'l4-idle-keepalive' && e.type === 'flow-refresh').length;
  assert.ok(refreshes >= 3, `keepalive probes refreshed the flow ${refreshes} times`);

  // Both legs of the relayed connection, each at its own host.
  const legs = events.filter((e) => e.scenario === 'relay-host-kill' && becameEstablished(e)).map((e) => `${e.at} ${e.conn}`);
  const shape = legs.map((l) => l.replace(/:\d{4,5}(?=>|$)/g, (m) => (m === ':7000' || m === ':7001' ? m : ':*')));
  assert.deepEqual(shape.sort(), [
    'client 198.18.0.2:*>198.18.0.1:7001',
    'relay 198.18.0.1:7001>198.18.0.2:*',
    'relay 198.18.1.1:*>198.18.1.2:7000',
    'server 198.18.1.2:7000>198.18.1.1:*',
  ], 'four sockets on three hosts');
  // And packets at both ends of the balancer: the client's leg and the server's.
  const hosts = new Set(events.filter((e) => e.scenario === 'l4-idle-reset' && e.source === 'packet').map((e) => e.at));
  assert.ok(hosts.has('client') && (hosts.has('server1') || hosts.has('server2')), `packets seen at ${[...hosts].join(', ')}`);

  assert.equal(run.code, 0, 'exit status 0 when every verdict passes');
  assert.deepEqual(await settledLeftovers(), [], 'nothing left behind');
}

describe('section C on several hosts, run for real', () => {
  before(() => {
    if (isRoot) ensureTestUser();
  });
  after(async () => assert.deepEqual(await settledLeftovers(), []));

  test('as root', { skip: isRoot ? false : 'needs root: the rootless case runs below' }, async (t) => {
    await runSection('self', 'root', t);
  });

  test('as an unprivileged user (rootless namespaces)', async (t) => {
    await runSection(isRoot ? 'user' : 'self', 'rootless', t);
  });

  test('the balancer built with nft when the run uses nft', async () => {
    const run = await runCli(['run', 'l4-idle-reset', '--firewall', 'nft', '--json'], isRoot ? 'user' : 'self');
    const [r] = JSON.parse(run.stdout) as Json[];
    assert.equal(r?.verdict, 'pass', run.stderr.slice(-1500));
    assert.equal(r.measured.errno?.name, 'ECONNRESET');
    const forgotten = r.applied.find((a) => a.id === 'forgotten-flows');
    assert.match(forgotten?.command ?? '', /^lb: nft add rule ip tcplab_lb input .*ct state invalid counter reject with tcp reset$/);
    assert.ok(forgotten!.packets! >= 1, 'the nft rule counted the reset packet');
    assert.match(r.applied.find((a) => a.id === 'vip')?.command ?? '', /dnat to numgen inc mod 2 map '\{ 0 : 198\.18\.1\.2 \. 7000, 1 : 198\.18\.1\.3 \. 7000 \}'/);
  });
});
