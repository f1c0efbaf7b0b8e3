/**
 * A user's own program as a scenario's client: it reports nothing to the lab, so strace reads
 * its failing calls, and the scenario's own checks judge it. Real curl and Python, in the lab's
 * namespace, as root and as an unprivileged user.
 */
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ensureTestUser, isRoot, runCli } from './support/lab';
import { missingTools } from '../src/lab/preflight';
import { labEnv } from '../src/lab/exec';

const have = (tool: string) => missingTools([tool], labEnv().PATH ?? '').length === 0;

interface Result {
  verdict: string;
  measured: { errno: { name: string; number: number } | null; seconds: number | null };
  observed: { notes: string[] };
}

async function runOwn(id: string, command: string[], as: 'self' | 'user'): Promise<Result> {
  const run = await runCli(['run', id, '--json', '--', ...command], as);
  let results: Result[];
  try {
    results = JSON.parse(run.stdout) as Result[];
  } catch {
    assert.fail(`no JSON (exit ${run.code}): ${run.stderr.slice(-1500)}`);
  }
  assert.equal(results.length, 1);
  return results[0]!;
}

const modes = isRoot ? (['self', 'user'] as const) : (['self'] as const);

describe('run <id> -- COMMAND: your own client, judged through strace', { skip: have('strace') ? false : 'strace is not installed (apt-get install strace): the own-client path cannot read errno' }, () => {
  before(() => {
    if (isRoot) ensureTestUser();
  });

  for (const as of modes) {
    const who = as === 'user' ? 'unprivileged' : isRoot ? 'root' : 'this user';
    test(`curl against nothing listening: ECONNREFUSED from its non-blocking connect (${who})`, { skip: have('curl') ? false : 'curl is not installed' }, async () => {
      const r = await runOwn('connect-refused', ['curl', '-sS', 'http://{host}:{port}/'], as);
      assert.equal(r.verdict, 'pass');
      assert.deepEqual(r.measured.errno, { name: 'ECONNREFUSED', number: 111 });
      assert.ok(r.observed.notes.some((n) => n.includes('curl -sS http://127.0.0.1:7000/')), `the note names the command with its address filled in: ${r.observed.notes}`);
    });

    test(`a blocking Python connect whose SYNs are dropped: ETIMEDOUT at about 3 s (${who})`, async () => {
      const r = await runOwn('connect-timeout-drop-syn', ['python3', '-c', 'import socket; socket.create_connection(("{host}", {port}))'], as);
      assert.equal(r.verdict, 'pass');
      assert.deepEqual(r.measured.errno, { name: 'ETIMEDOUT', number: 110 });
      assert.ok(r.measured.seconds !== null && r.measured.seconds > 2.9 && r.measured.seconds < 3.6, `${r.measured.seconds} s`);
    });
  }

  test('the command needs exactly one scenario', async () => {
    const r = await runCli(['run', '--all', '--', 'curl', 'http://127.0.0.1:7000/']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /one scenario/);
  });
});
