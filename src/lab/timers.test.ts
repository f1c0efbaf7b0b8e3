import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dataTimeout, humanDuration, keepaliveTimeout, LINUX_DEFAULTS, modelTimeout, synTimeout } from './timers';

test('SYN retries without linear timeouts: SYNs at 0,1,3,7,15,31,63 s and ETIMEDOUT at 127 s', () => {
  const s = synTimeout({ synRetries: 6, synLinearTimeouts: null });
  assert.deepEqual(s.sends, [0, 1, 3, 7, 15, 31, 63]);
  assert.equal(s.failAt, 127);
});

test('kernels before 3.7 (5 retries) fail at 63 s', () => {
  assert.equal(synTimeout({ synRetries: 5, synLinearTimeouts: null }).failAt, 63);
});

test('tcp_syn_linear_timeouts=4: five 1 s intervals, then doubling, 11 SYNs, failure after 127 s', () => {
  const s = synTimeout({ synRetries: 6, synLinearTimeouts: 4 });
  assert.deepEqual(s.sends, [0, 1, 2, 3, 4, 5, 7, 11, 19, 35, 67]);
  // The model time is still 127 s; the timer that notices it fires at 131 s (measured on 6.18: 134.5 s).
  assert.equal(s.failAt, 131);
});

test('tcp_syn_retries=1 fails at 3 s with or without linear timeouts', () => {
  assert.equal(synTimeout({ synRetries: 1, synLinearTimeouts: 4 }).failAt, 3);
  assert.equal(synTimeout({ synRetries: 1, synLinearTimeouts: null }).failAt, 3);
});

test('tcp_retries2=15 with the 200 ms floor is the classic 924.6 s model time', () => {
  assert.equal(+modelTimeout(15, 0.2).toFixed(1), 924.6);
  // On loopback the retransmissions start 0.41 s late and the last RTO is capped at 120 s.
  assert.equal(Math.round(dataTimeout(15).failAt), 929);
});

test('tcp_retries2=3 on loopback: retransmissions at 0.41, 0.82, 1.64, 3.27 s, failure at 6.5 s (measured 6.6-6.8)', () => {
  const s = dataTimeout(3);
  assert.deepEqual(s.sends.map((x) => +x.toFixed(2)), [0, 0.41, 0.82, 1.64, 3.27]);
  assert.equal(+s.failAt.toFixed(2), 6.53);
});

test('TCP_USER_TIMEOUT=2000 fails 2 s after the first retransmission (measured 2.42 s)', () => {
  assert.equal(+dataTimeout(15, { userTimeoutMs: 2000 }).failAt.toFixed(2), 2.41);
});

test('default keepalive: 7200 + 9 x 75 s', () => {
  assert.equal(keepaliveTimeout(LINUX_DEFAULTS), 7875);
  assert.equal(keepaliveTimeout({ keepaliveTime: 2, keepaliveIntvl: 1, keepaliveProbes: 2 }), 4);
});

test('durations read the way a person says them', () => {
  assert.equal(humanDuration(3.05), '3.05 s');
  assert.equal(humanDuration(924.6), '924.6 s (15 min 25 s)');
  assert.equal(humanDuration(7875), '7875 s (2 h 11 min)');
  assert.equal(humanDuration(Infinity), 'forever');
});
