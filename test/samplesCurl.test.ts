// curl.py's `wait:S` step: the lab's "go on" (SIGUSR1, a trigger's `resume`) ends it, or, with no
// word from the lab, S seconds do; either way the sample says which, and keeps running. No
// network needed: a run of only wait steps sends no request.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { AppEvent } from '../src/lab/appEvents';
import { labEnv } from '../src/lab/exec';
import { ROOT } from './support/lab';

const CURL_PY = join(ROOT, 'samples', 'python', 'curl.py');

/** Runs curl.py with `steps`; `onStart` gets its pid once it has said `start`. Resolves with its exit code and events. */
function run(steps: string, onStart: (pid: number) => void = () => undefined, url = 'http://127.0.0.1:9/'): Promise<{ code: number | null; events: AppEvent[] }> {
  const p = spawn('python3', [CURL_PY, '--url', url, '--steps', steps, '--json'], { stdio: ['ignore', 'pipe', 'inherit'], env: labEnv() });
  let out = '';
  let started = false;
  p.stdout.setEncoding('utf8').on('data', (d: string) => {
    out += d;
    if (!started && /"type": ?"start"/.test(out)) {
      started = true;
      onStart(p.pid!);
    }
  });
  return new Promise((resolve) => p.on('close', (code) => resolve({ code, events: out.split('\n').filter(Boolean).map((l) => JSON.parse(l) as AppEvent) })));
}

test('wait:S goes on when the lab says go (SIGUSR1), and says so', async () => {
  const { code, events } = await run('wait:10,wait:10', (pid) => {
    setTimeout(() => process.kill(pid, 'SIGUSR1'), 300);
    setTimeout(() => process.kill(pid, 'SIGUSR1'), 600);
  });
  assert.equal(code, 0, 'SIGUSR1 does not end the sample');
  const resumed = events.filter((e) => e.type === 'resumed');
  assert.deepEqual(resumed.map((e) => e.by), ['lab', 'lab'], 'one go for each wait');
  assert.ok((resumed[0]!.waited as number) >= 0.2 && (resumed[0]!.waited as number) < 5, `the first wait lasted until the signal: ${resumed[0]!.waited} s`);
});

test('a go that comes before its wait step is kept for it', async () => {
  // The signal comes during the sleep, before the wait step begins.
  const { code, events } = await run('sleep:0.5,wait:10', (pid) => process.kill(pid, 'SIGUSR1'));
  assert.equal(code, 0);
  const [resumed] = events.filter((e) => e.type === 'resumed');
  assert.equal(resumed?.by, 'lab');
  assert.ok((resumed!.waited as number) < 0.1, `the wait ended at once: ${resumed!.waited} s`);
});

test('with no word from the lab, wait:S ends after S seconds and says it went on alone', async () => {
  const { code, events } = await run('wait:0.4');
  assert.equal(code, 0);
  const [resumed] = events.filter((e) => e.type === 'resumed');
  assert.equal(resumed?.by, 'timeout');
  assert.ok((resumed!.waited as number) >= 0.39 && (resumed!.waited as number) < 2, `waited ${resumed!.waited} s`);
});

test('a bad wait step is refused with the steps listed', async () => {
  const p = spawn('python3', [CURL_PY, '--url', 'http://127.0.0.1:9/', '--steps', 'wait', '--json'], { stdio: ['ignore', 'ignore', 'pipe'], env: labEnv() });
  let err = '';
  p.stderr.setEncoding('utf8').on('data', (d: string) => { err += d; });
  const code = await new Promise((r) => p.on('close', r));
  assert.equal(code, 2);
  assert.match(err, /'wait': steps are get, sleep:S, wait:S, upload:BYTES/);
});

test('a malformed URL: the request is said once, then curl\'s own error (exit 3)', async () => {
  const { events } = await run('get', undefined, 'http://[::1/');
  assert.deepEqual(events.filter((e) => e.type === 'request' || e.type === 'error').map((e) => e.type), ['request', 'error']);
  assert.equal(events.find((e) => e.type === 'error')?.curl, 3, 'curl exit 3: a malformed URL');
});
