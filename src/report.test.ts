import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ScenarioResult } from './lab/runner';
import { formatFigures, formatForgotten, formatMatrices, formatProbeTable, formatProbeTimeline, formatSeries, headline } from './report';

test('a TIME-WAIT series draws as a rising curve with its peak and when', () => {
  const line = formatSeries([[0.1, 0], [0.3, 4], [0.5, 10]], 1.0, 10);
  assert.equal(line, '▁▁▄▄██████  0 -> peak 10 at 0.50 s, 10 at the end (over 1.0 s)');
});

test('the Nagle cells make one table: rows by writes, columns by connection style', () => {
  const cell = (row: string, column: string, median: number, p95: number, verdict: 'pass' | 'fail' = 'pass') => ({
    verdict,
    matrix: { matrix: 'Nagle', row, column },
    figures: [
      { label: 'per request', stat: 'median', value: median, unit: 's', samples: 40 },
      { label: 'per request', stat: 'p95', value: p95, unit: 's', samples: 40 },
    ],
  }) as unknown as ScenarioResult;
  const table = formatMatrices([
    cell('two writes', 'keep-alive', 0.0412, 0.0441),
    cell('two writes', 'new connection', 0.00019, 0.0003),
    cell('one write', 'keep-alive', 0.00002, 0.00005, 'fail'),
  ]).split('\n');
  assert.equal(table[0], 'Nagle: median per request (95th percentile)');
  assert.match(table[1]!, /^\s+keep-alive\s+new connection$/);
  assert.match(table[2]!, /^  two writes\s+41\.2 ms \(p95 44\.1 ms\)\s+0\.19 ms \(p95 0\.30 ms\)$/);
  assert.match(table[3]!, /^  one write\s+0\.020 ms \(p95 0\.050 ms\) FAIL\s+-$/);
});

test('a single cell is not a matrix', () => {
  assert.equal(formatMatrices([{ verdict: 'pass', matrix: { matrix: 'Nagle', row: 'a', column: 'b' }, figures: [] } as unknown as ScenarioResult]), '');
});

test('figures read by what they measure', () => {
  const f = (label: string, stat: 'median' | 'p95' | 'max' | 'count', value: number, unit: string) => ({ label, stat, value, unit, samples: 40 });
  assert.equal(
    formatFigures([f('answered', 'count', 40, 'requests'), f('per request', 'median', 0.0437, 's'), f('per request', 'p95', 0.0473, 's'), f('TIME-WAIT sockets', 'max', 10, 'sockets')]),
    '40 requests answered; per request: median 43.7 ms, p95 47.3 ms (40 samples); TIME-WAIT sockets: peak 10 sockets',
  );
});

test('a notification line names the errno with its number, when, and what was expected', () => {
  const r = {
    id: 'connect-timeout-drop-syn', verdict: 'pass', checks: [],
    expected: { outcome: 'error', errno: { name: 'ETIMEDOUT', number: 110 }, seconds: [2.91, 3.54], says: '' },
    measured: { outcome: 'error', errno: { name: 'ETIMEDOUT', number: 110 }, seconds: 3.06, says: null },
  } as unknown as ScenarioResult;
  assert.equal(headline(r), 'PASS connect-timeout-drop-syn: ETIMEDOUT (110) after 3.06 s, expected ETIMEDOUT (110) in 2.91-3.54 s');
  const none = { ...r, verdict: 'fail', measured: { outcome: null, errno: null, seconds: null, says: null } } as unknown as ScenarioResult;
  assert.equal(headline(none), 'FAIL connect-timeout-drop-syn: nothing happened, expected ETIMEDOUT (110) in 2.91-3.54 s');
  const broken = { ...r, verdict: 'fail', error: 'unshare: user namespaces are off\n  hint' } as unknown as ScenarioResult;
  assert.equal(headline(broken), 'FAIL connect-timeout-drop-syn: unshare: user namespaces are off');
});

/** Probe cells as probes.py reports them: connected, then one probe event after the second request. */
function cell(target: string, keepalive: boolean, sleep: number, ok: boolean, port: number) {
  const peer = target === 'vip' ? '198.18.0.10:80' : '198.18.1.2:7000';
  const base = { proc: 'probes', target, keepalive, sleep };
  return [
    { ...base, t: 100, type: 'connected', local: `198.18.0.2:${port}`, peer },
    { ...base, t: 100.05 + sleep, type: 'probe', ok, idle: sleep, took: 0.001, ...(ok ? {} : { name: 'ECONNRESET' }) },
  ];
}

const events = [
  ...cell('vip', false, 0, true, 40000),
  ...cell('vip', false, 2, true, 40001),
  ...cell('vip', false, 6, false, 40002),
  ...cell('direct', false, 6, true, 40003),
  ...cell('vip', true, 6, true, 40004),
  // The balancer forgot the VIP flow idle 6 s at 4 s into its idle time (timeout 4 s).
  { t: 104.05, proc: 'lb', type: 'flow-gone', flow: '198.18.0.2:40002>198.18.0.10:80', why: 'timed out in ESTABLISHED' },
];

test('the probes table: a row per idle time, a column per target and keepalive, the errno where it failed', () => {
  const lines = formatProbeTable(events);
  assert.equal(lines[0], 'idle (s)  vip ka off    vip ka on     direct ka off');
  assert.match(lines.find((l) => l.trim().startsWith('6 '))!, /^ +6 +ECONNRESET +ok +ok$/);
  assert.match(lines.find((l) => l.trim().startsWith('2 '))!, /^ +2 +ok +- +-$/, 'a cell not run is a dash');
  assert.deepEqual(formatProbeTable([{ proc: 'client', type: 'response' }]), [], 'no probes, no table');
});

test('the probes timeline: idle bar, the balancer forgetting the flow, then the outcome', () => {
  const lines = formatProbeTimeline(events, 61);
  const failed = lines.find((l) => l.startsWith('vip ka off 6 s'))!;
  const bar = failed.slice(22);
  // 6.001 s over a 6.0 s span at 61 columns: the flow is forgotten 4 s in, the reset at the end.
  assert.equal(bar.indexOf('×'), 40, failed);
  assert.equal(bar.indexOf('✗'), 60, failed);
  assert.match(failed, /✗ ECONNRESET$/);
  assert.ok(!lines.find((l) => l.startsWith('vip ka on 6 s'))!.includes('×'), 'keepalive: never forgotten');
  assert.ok(!lines.some((l) => l.startsWith('vip ka off 0 s')), 'a cell that never idled has no bar');
});

test('what the balancer forgot: each timed-out flow, its DNAT, when from the start', () => {
  const lines = formatForgotten([
    { t: 10, proc: 'lab', type: 'begin', source: 'lab' },
    { t: 13.48, proc: 'lb', type: 'flow-gone', source: 'conntrack', flow: '198.18.0.2:54020>198.18.1.2:7000', to: '198.18.1.2:7000', why: 'timed out in ESTABLISHED' },
    { t: 13.68, proc: 'lb', type: 'flow-gone', source: 'conntrack', flow: '198.18.0.2:59772>198.18.0.10:80', to: '198.18.1.2:7000', why: 'timed out in ESTABLISHED' },
    { t: 14, proc: 'lb', type: 'flow-gone', source: 'conntrack', flow: '198.18.0.2:1>198.18.0.10:80', to: '198.18.1.3:7000', why: 'removed' },
  ]);
  assert.deepEqual(lines, [
    'lb: 198.18.0.2:54020>198.18.1.2:7000, timed out in ESTABLISHED at 3.48 s',
    'lb: 198.18.0.2:59772>198.18.0.10:80, DNAT to 198.18.1.2:7000, timed out in ESTABLISHED at 3.68 s',
  ]);
});
