import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { AppEvent } from './appEvents';
import type { Check } from './scenarios/types';
import { LINUX_DEFAULTS } from './timers';
import { computeStat, DELIVERY_GRACE, evaluate } from './verdict';

const ev = (t: number, proc: string, type: string, extra: Partial<AppEvent> = {}): AppEvent => ({ t, proc, type, ...extra });
const timeout: Check[] = [{
  match: { proc: 'client', type: 'error', op: 'connect', errno: 'ETIMEDOUT' },
  from: { proc: 'client', type: 'connect-start' },
  within: [2.9, 3.5],
}];
const opts = (now: number, finished = false, exited: string[] = []) => ({ start: 100, now, finished, exited: new Set(exited) });

test('an errno inside its band passes, with the measured seconds', () => {
  const r = evaluate(timeout, [ev(100.1, 'client', 'connect-start'), ev(103.15, 'client', 'error', { op: 'connect', errno: 110, name: 'ETIMEDOUT' })], LINUX_DEFAULTS, opts(104));
  assert.equal(r.verdict, 'pass');
  assert.equal(r.checks[0]!.seconds!.toFixed(2), '3.05');
});

test('the right errno too early fails and says by how much', () => {
  const r = evaluate(timeout, [ev(100.1, 'client', 'connect-start'), ev(100.2, 'client', 'error', { op: 'connect', errno: 110, name: 'ETIMEDOUT' })], LINUX_DEFAULTS, opts(101));
  assert.equal(r.verdict, 'fail');
  assert.match(r.checks[0]!.reason!, /outside 2\.90-3\.50/);
});

test('a different errno fails once the client has exited, and shows what it got', () => {
  const events = [ev(100.1, 'client', 'connect-start'), ev(100.11, 'client', 'error', { op: 'connect', errno: 111, name: 'ECONNREFUSED' }), ev(100.12, 'client', 'exit')];
  const r = evaluate(timeout, events, LINUX_DEFAULTS, opts(100.5, false, ['client']));
  assert.equal(r.verdict, 'fail');
  assert.equal(r.checks[0]!.observed, 'client error in connect() ECONNREFUSED (111)');
});

test('waiting inside the band is pending, past its end (plus delivery grace) is a failure', () => {
  const events = [ev(100.1, 'client', 'connect-start')];
  assert.equal(evaluate(timeout, events, LINUX_DEFAULTS, opts(102)).verdict, 'pending');
  // The band ends at 103.6; the verdict waits DELIVERY_GRACE more for an event on its way.
  assert.equal(evaluate(timeout, events, LINUX_DEFAULTS, opts(103.6 + DELIVERY_GRACE - 0.05)).verdict, 'pending');
  const late = evaluate(timeout, events, LINUX_DEFAULTS, opts(103.6 + DELIVERY_GRACE + 0.05));
  assert.equal(late.verdict, 'fail');
  assert.match(late.checks[0]!.reason!, /nothing within 3\.50 s/);
});

test('a quiet check passes only after its whole window, and fails on the first noise', () => {
  const quiet: Check[] = [{ kind: 'quiet', proc: 'client', types: ['error', 'eof'], for: 4, from: { proc: 'lab', type: 'fault' } }];
  const base = [ev(101, 'lab', 'fault')];
  assert.equal(evaluate(quiet, base, LINUX_DEFAULTS, opts(104)).verdict, 'pending');
  assert.equal(evaluate(quiet, base, LINUX_DEFAULTS, opts(105 + DELIVERY_GRACE - 0.05)).verdict, 'pending', 'a late event may still break the quiet');
  assert.equal(evaluate(quiet, base, LINUX_DEFAULTS, opts(105 + DELIVERY_GRACE + 0.05)).verdict, 'pass');
  const noisy = evaluate(quiet, [...base, ev(103, 'client', 'eof')], LINUX_DEFAULTS, opts(103.1));
  assert.equal(noisy.verdict, 'fail');
});

test('checks run in order: the second clock starts at the first match', () => {
  const seq: Check[] = [
    { match: { proc: 'client', type: 'eof' }, from: { proc: 'client', type: 'connected' }, within: [0, 0.5] },
    { match: { proc: 'client', type: 'error', errno: 'EPIPE' }, within: [0.15, 0.8] },
  ];
  const events = [ev(100, 'client', 'connected'), ev(100.01, 'client', 'eof'), ev(100.25, 'client', 'error', { errno: 32, name: 'EPIPE', op: 'send' })];
  const r = evaluate(seq, events, LINUX_DEFAULTS, opts(101));
  assert.equal(r.verdict, 'pass');
  assert.equal(r.checks[1]!.seconds!.toFixed(2), '0.24');
});

test('a reconnecting client\'s refused connects do not end the wait for its reconnect', () => {
  const seq: Check[] = [{ match: { proc: 'client', type: 'connected' }, from: { proc: 'lab', type: 'killed' }, within: [0, 3] }];
  const events = [ev(100, 'client', 'connected'), ev(100.2, 'lab', 'killed'), ev(100.3, 'client', 'error', { errno: 111, name: 'ECONNREFUSED' })];
  assert.equal(evaluate(seq, events, LINUX_DEFAULTS, opts(100.5)).verdict, 'pending');
  const r = evaluate(seq, [...events, ev(101, 'client', 'connected')], LINUX_DEFAULTS, opts(101.1));
  assert.equal(r.verdict, 'pass');
});

const responses = (tooks: number[]) => tooks.map((took, i) => ev(100 + i * 0.05, 'client', 'response', { took, n: i + 1 }));
const median: Check[] = [{ kind: 'stat', proc: 'client', type: 'response', field: 'took', stat: 'median', unit: 's', label: 'per request', within: [0.035, 0.12], minSamples: 5 }];

test('a median is judged only once the run is over, then against its band', () => {
  const events = responses([0.0003, 0.041, 0.042, 0.040, 0.044, 0.043]);
  assert.equal(evaluate(median, events, LINUX_DEFAULTS, opts(101)).verdict, 'pending');
  const r = evaluate(median, events, LINUX_DEFAULTS, opts(101, true));
  assert.equal(r.verdict, 'pass');
  assert.equal(r.checks[0]!.seconds, 0.0415);
  assert.equal(r.checks[0]!.observed, '41.5 ms (6 samples)');
});

test('a fast median fails a stall band, and too few samples fail whatever the value', () => {
  const fast = evaluate(median, responses([0.0002, 0.0003, 0.0002, 0.0004, 0.0002]), LINUX_DEFAULTS, opts(101, true));
  assert.equal(fast.verdict, 'fail');
  assert.match(fast.checks[0]!.reason!, /0\.20 ms, expected 35\.0 ms to 120\.0 ms/);
  const few = evaluate(median, responses([0.04, 0.04]), LINUX_DEFAULTS, opts(101, true));
  assert.equal(few.verdict, 'fail');
  assert.match(few.checks[0]!.reason!, /only 2 samples, 5 needed/);
});

test('a peak count: the most the series reached, in sockets', () => {
  const peak: Check[] = [{ kind: 'stat', proc: 'lab', type: 'time-wait', field: 'count', stat: 'max', unit: 'sockets', label: 'TIME-WAIT sockets', within: [5, 5] }];
  const counts = [0, 2, 5, 5, 4].map((count, i) => ev(100 + i, 'lab', 'time-wait', { count }));
  assert.equal(evaluate(peak, counts, LINUX_DEFAULTS, opts(106, true)).verdict, 'pass');
  const over = evaluate(peak, [...counts, ev(106, 'lab', 'time-wait', { count: 6 })], LINUX_DEFAULTS, opts(107, true));
  assert.equal(over.verdict, 'fail');
  assert.equal(over.checks[0]!.reason, '6 sockets, expected exactly 5 sockets');
});

test('percentiles are nearest-rank: p95 of 1..40 ms is 38 ms', () => {
  const values = Array.from({ length: 40 }, (_, i) => (i + 1) / 1000);
  const stat = (s: 'p95' | 'median' | 'max' | 'count') => computeStat(responses(values), { proc: 'client', type: 'response', field: 'took', stat: s, unit: 's', label: '' }).value;
  assert.equal(stat('p95'), 0.038);
  assert.equal(stat('median'), 0.0205);
  assert.equal(stat('max'), 0.04);
  assert.equal(stat('count'), 40);
});
