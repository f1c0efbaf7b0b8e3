/**
 * Nothing outlives the lab: not after a normal run, not after kill -9 in the middle of one.
 * Scenarios are running (namespaces up, rules applied, samples blocked in the kernel) when
 * the lab process is killed; the kernel must take everything with the namespaces' init.
 */
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { labEnv } from '../src/lab/exec';
import { missingTools } from '../src/lab/preflight';
import { ensureTestUser, isRoot, leftovers, settledLeftovers, spawnCli } from './support/lab';

/** Long scenarios, several at once: all of them hold namespaces, rules and programs. */
const LONG = ['half-open-idle', 'drop-with-traffic', 'keepalive-detects', 'write-timeout-buffer-full', 'connect-no-timeout', 'l4-idle-silent-drop'];

async function killMidRun(as: 'self' | 'user', ids = LONG, underWay = (left: string[]) => left.filter((l) => l.includes('samples/python/')).length >= 8): Promise<string[]> {
  assert.deepEqual(leftovers(), [], 'the machine is clean before the test');
  // The supervisor's worker is a grandchild of the namespace's init, blocked in connect(); one
  // scenario holds a topology (hosts, bridges, veths, a balancer's NAT rules).
  const child = spawnCli(['run', ...ids, '--jobs', String(ids.length)], as);
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  // Wait until the runs are well under way: the programs exist inside the namespaces.
  const deadline = Date.now() + 15_000;
  while (!underWay(leftovers())) {
    if (Date.now() > deadline || child.exitCode !== null) assert.fail(`the scenarios did not get going: ${stderr.slice(-1000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const during = leftovers();
  assert.ok(during.some((l) => /unshare/.test(l)), 'namespaces were up when the lab was killed');
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  return settledLeftovers(3000);
}

describe('cleanup after kill -9', () => {
  before(() => {
    if (isRoot) ensureTestUser();
  });

  test('as root: no process, namespace or rule survives the lab', { skip: isRoot ? false : 'needs root: the rootless case runs below' }, async () => {
    assert.deepEqual(await killMidRun('self'), []);
  });

  test('as an unprivileged user: no process or namespace survives the lab', async () => {
    assert.deepEqual(await killMidRun(isRoot ? 'user' : 'self'), []);
  });

  // Two real nginx processes (proxy and upstream, each on its host) and curl waiting for its 504.
  const nginxUnderWay = (left: string[]) => left.filter((l) => /nginx -p /.test(l)).length >= 2 && left.some((l) => /curl /.test(l));
  test('nginx between hosts, killed mid-request: no nginx, curl or namespace survives', { skip: missingTools(['nginx', 'curl'], labEnv().PATH ?? '').length ? 'nginx or curl is not installed (apt-get install nginx curl)' : false }, async () => {
    assert.deepEqual(await killMidRun(isRoot ? 'user' : 'self', ['nginx-read-timeout'], nginxUnderWay), []);
  });
});
