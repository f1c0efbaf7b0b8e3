import { spawnSync } from 'node:child_process';
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { measureClockOffset, monotonic, offsetSeconds, toMonotonic } from './clock';
import { labEnv } from './exec';
import { missingTools } from './preflight';

const have = (tool: string) => missingTools([tool], labEnv().PATH ?? '').length === 0;

describe('clocks', () => {
  test('capture times to CLOCK_MONOTONIC keep nanoseconds', () => {
    const offset = { wallMs: 1_700_000_000_123, mono: 100, error: 0 };
    assert.ok(Math.abs(toMonotonic(offset, 1_700_000_000, 223_000_001) - 100.100000001) < 1e-9);
    assert.ok(Math.abs(toMonotonic(offset, 1_699_999_999, 0) - 98.877) < 1e-9);
  });

  test('REALTIME - MONOTONIC is measured to well under a millisecond', () => {
    const c = measureClockOffset();
    assert.ok(c.error < 1e-4, `error ${c.error * 1e6} us`);
    const rough = Date.now() / 1000 - monotonic();
    assert.ok(Math.abs(offsetSeconds(c) - rough) < 2e-3, `offset ${offsetSeconds(c)} vs rough ${rough}`);
    const again = offsetSeconds(measureClockOffset());
    assert.ok(Math.abs(again - offsetSeconds(c)) < 2e-4, `two measures agree: ${((again - offsetSeconds(c)) * 1e6).toFixed(0)} us apart`);
  });

  test("the measured offset agrees with Python's time.time() - time.monotonic() to a few µs", (t) => {
    if (!have('python3')) return t.skip('python3 is not installed');
    const ours = measureClockOffset();
    assert.ok(ours.error < 50e-6, `the bracket is tight (±${ours.error * 1e6} µs)`);
    // Python's own best of 2000 reads (time_ns has ns resolution, so this is a fair judge).
    const py = spawnSync('python3', ['-c', [
      'import time', 'best = None',
      'for i in range(2000):',
      '    a = time.monotonic_ns(); r = time.time_ns(); b = time.monotonic_ns()',
      '    if best is None or b - a < best[0]: best = (b - a, r - (a + b) // 2)',
      'print(best[1])',
    ].join('\n')], { encoding: 'utf8' });
    assert.equal(py.status, 0, py.stderr);
    const theirs = BigInt(py.stdout.trim());
    const oursNs = BigInt(ours.wallMs) * 1_000_000n - BigInt(Math.round(ours.mono * 1e9));
    const diffUs = Number(oursNs - theirs) / 1000;
    assert.ok(Math.abs(diffUs) < 20, `offsets differ by ${diffUs} µs`);
  });
});
