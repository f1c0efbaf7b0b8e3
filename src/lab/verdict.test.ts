import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { AppEvent } from './appEvents';
import type { Check } from './scenarios/types';
import { LINUX_DEFAULTS } from './timers';
import { evaluate } from './verdict';

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
  assert.equal(evaluate(timeout, events, LINUX_DEFAULTS, opts(103.7)).verdict, 'pending');
  const late = evaluate(timeout, events, LINUX_DEFAULTS, opts(104));
  assert.equal(late.verdict, 'fail');
  assert.match(late.checks[0]!.reason!, /nothing within 3\.50 s/);
});

test('a quiet check passes only after its whole window, and fails on the first noise', () => {
  const quiet: Check[] = [{ kind: 'quiet', proc: 'client', types: ['error', 'eof'], for: 4, from: { proc: 'lab', type: 'fault' } }];
  const base = [ev(101, 'lab', 'fault')];
  assert.equal(evaluate(quiet, base, LINUX_DEFAULTS, opts(104)).verdict, 'pending');
  assert.equal(evaluate(quiet, base, LINUX_DEFAULTS, opts(105.5)).verdict, 'pass');
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
