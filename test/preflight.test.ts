/** Where the lab cannot run, it says why and what to do, once, before running anything. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { ROOT, runCli } from './support/lab';

test('with user namespaces disabled, a rootless run stops with the reason and the fix', () => {
  // user.max_user_namespaces is per user namespace: set to 0 inside one of our own, it makes
  // the lab's rootless unshare fail exactly as on a host that forbids user namespaces,
  // without touching the host's setting.
  const script = `
    require('fs').writeFileSync('/proc/sys/user/max_user_namespaces', '0');
    const r = require('child_process').spawnSync(process.execPath, [${JSON.stringify(join(ROOT, 'dist', 'cli.js'))}, 'run', 'connect-refused', '--mode', 'rootless'], { encoding: 'utf8' });
    process.stdout.write(JSON.stringify({ code: r.status, stdout: r.stdout, stderr: r.stderr }));`;
  const outer = spawnSync('unshare', ['--user', '--map-root-user', '--', process.execPath, '-e', script], { encoding: 'utf8' });
  assert.equal(outer.status, 0, outer.stderr);
  const run = JSON.parse(outer.stdout) as { code: number; stdout: string; stderr: string };
  assert.equal(run.code, 2);
  assert.match(run.stderr, /cannot create a user namespace/);
  assert.match(run.stderr, /Run the lab as root \(sudo\), or allow them/);
  assert.equal(run.stdout, '', 'no scenario ran');
});

test('a missing program is named with the package that brings it', async () => {
  const run = await runCli(['run', 'connect-refused', '--python', '/nonexistent/python3'], 'self');
  assert.equal(run.code, 2);
  assert.match(run.stderr, /needs \/nonexistent\/python3, not found.*\n.*apt-get install python3/);
});
