/** Where the lab cannot run, it says why and what to do, once, before running anything. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cliArgv, ensureTestUser, isRoot, ROOT, runCli, settledLeftovers } from './support/lab';

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

test('a rootless probe refused by the kernel leaves no unshare behind (the --map-auto helper)', { skip: !isRoot && 'needs root to forbid user namespaces for the test user' }, async () => {
  // unshare --map-auto forks a helper that waits for the parent to create the user namespace
  // and then runs newuidmap; when the kernel refuses the namespace, the parent exits and that
  // helper would wait forever, adopted by init. Forbid user namespaces for tcplab-test inside a
  // user namespace of ours with an identity map (its uid and sub-ids stay valid there).
  ensureTestUser();
  const holder = spawn('unshare', ['--user', 'sleep', '600'], { stdio: 'ignore' });
  try {
    const mine = readlinkSync('/proc/self/ns/user');
    for (let i = 0; i < 100 && readlinkSync(`/proc/${holder.pid}/ns/user`) === mine; i++) await new Promise((r) => setTimeout(r, 20));
    writeFileSync(`/proc/${holder.pid}/uid_map`, '0 0 4294967295\n');
    writeFileSync(`/proc/${holder.pid}/gid_map`, '0 0 4294967295\n');
    const inside = ['nsenter', '--target', String(holder.pid), '--user', '--preserve-credentials', '--'];
    execFileSync(inside[0]!, [...inside.slice(1), 'sysctl', '-q', '-w', 'user.max_user_namespaces=0']);
    const argv = [...inside, ...cliArgv(['run', 'connect-refused', '--mode', 'rootless'], 'user')];
    const run = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', cwd: '/' });
    assert.equal(run.status, 2, run.stderr);
    assert.match(run.stderr, /cannot create a user namespace/);
    assert.deepEqual(await settledLeftovers(), [], 'nothing of the refused probe is left');
  } finally {
    holder.kill('SIGKILL');
  }
});
