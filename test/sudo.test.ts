/**
 * The editor's sudo path, for real: an unprivileged user types their password once, sudo
 * (with PAM) starts the privileged lab helper as root, and scenarios run there. The password
 * must reach sudo's stdin and nothing else: every process's argv and environment, the files
 * the run leaves, the log lines and every protocol message are searched for it.
 *
 * The rootless sandbox works on this machine, so the driver calls the privileged API
 * directly; one test also runs it in a user namespace where no further user namespace may be
 * made, where `sudoNeeded()` says yes as it would on such a host.
 */
import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { ensureTestUser, isRoot, leftovers, settledLeftovers, TEST_USER, testUserIds } from './support/lab';
import {
  alive, ancestry, descendants, Driver, DROP_IN, fileLeaks, installSudo, NoUserNamespaces, processLeaks,
  restorePassword, setPassword, stageBundles, uidOf, writeSudoers, type Said,
} from './support/sudoHost';
import { decodeLine, encodeMessage } from '../src/lab/helperProtocol';

const password = `Tcp-Lab-${randomBytes(12).toString('hex')}`;
const since = Date.now() - 1000;
let bundles: { helper: string; driver: string };
let shadowBefore: string | undefined;

const home = () => `/home/${TEST_USER}`;

/**
 * Nothing anywhere holds the password: processes, the files of this test's time, the driver's
 * words. `deep` adds root's home (the helper's HOME), a quarter of a million cached files here.
 */
function assertNoLeak(where: string, driver?: Driver, deep = false): void {
  const procs = processLeaks(password);
  assert.deepEqual(procs.leaks, [], `${where}: the password is in a process's argv or environment`);
  const files = fileLeaks(password, since, [tmpdir(), '/var/log', '/run/sudo', '/var/lib/sudo', ...(deep ? ['/root'] : [])], [home()]);
  assert.deepEqual(files.leaks, [], `${where}: the password is in a file`);
  if (driver) {
    assert.ok(!driver.stdout.includes(password), `${where}: the password is in the driver's messages or logs`);
    assert.ok(!driver.stderr.includes(password), `${where}: the password is on the driver's stderr`);
  }
}

describe('the sudo path: one privileged helper per editor session', { skip: isRoot ? false : 'needs root: it sets up a user with a password and a sudoers rule' }, () => {
  before(async () => {
    installSudo();
    ensureTestUser();
    shadowBefore = setPassword(password);
    writeSudoers(`${TEST_USER} ALL=(root) ALL`);
    bundles = await stageBundles();
  });

  afterEach(() => Driver.killAll());

  after(() => {
    rmSync(DROP_IN, { force: true });
    if (shadowBefore !== undefined) restorePassword(shadowBefore);
  });

  test('connect-refused through the helper: pass with ECONNREFUSED, and the password is nowhere', async (t) => {
    const d = new Driver(bundles.driver, [bundles.helper]);
    d.send(password);
    const started = await d.next(['started', 'error']);
    assert.equal(started.type, 'started', String(started.message));
    const helper = started.helperPid as number;
    assert.equal(started.uid, 0);
    assert.equal(uidOf(helper), 0, 'the helper runs as root');
    assert.equal(uidOf(d.child.pid!), Number(execFileSync('id', ['-u', TEST_USER], { encoding: 'utf8' })), 'the driver runs as the user');
    assert.ok(ancestry(helper, d.child.pid!).length >= 2, 'sudo stands between the driver and the helper');
    assertNoLeak('helper idle', d);

    d.send(JSON.stringify({ run: 'connect-refused' }));
    const client = await d.next(['process']);
    assert.equal(client.name, 'client');
    const result = await d.next(['result', 'run-error']);
    assert.equal(result.type, 'result', String(result.message));
    assert.equal(result.verdict, 'pass', JSON.stringify(result));
    assert.deepEqual(result.errno, { name: 'ECONNREFUSED', number: 111 });
    assert.equal(result.mode, 'root');
    assert.ok(alive(helper), 'one helper for the session: it outlives the run');
    assertNoLeak('after the run', d);

    d.send(JSON.stringify({ quit: true }));
    const closed = await d.next(['closed']);
    const logs = closed.logs as string[];
    assert.ok(logs.some((l) => l.includes('$ unshare --net --pid')), 'the engine\'s commands reach the editor\'s log');
    assert.ok(logs.some((l) => l.includes('"type":"result"')), 'the protocol messages were in the collected log (trace)');
    assert.equal(await d.exited(), 0);
    assertNoLeak('after the session', d, true);
    for (let i = 0; i < 100 && alive(helper); i++) await new Promise((r) => setTimeout(r, 50));
    assert.ok(!alive(helper), 'the helper exits with the session');
    t.diagnostic(`helper ready after ${(started.startSeconds as number).toFixed(2)} s (sudo + PAM + node); connect-refused through it ${(result.driverSeconds as number).toFixed(2)} s (run ${(result.wallSeconds as number).toFixed(2)} s + teardown)`);
  });

  test('a wrong password fails fast and clearly, without echoing it', async (t) => {
    const wrong = `Tcp-Lab-${randomBytes(12).toString('hex')}`;
    const d = new Driver(bundles.driver, [bundles.helper]);
    d.send(wrong);
    const said = await d.next(['started', 'error']);
    assert.equal(said.type, 'error');
    assert.match(String(said.message), /^sudo refused the password/);
    // pam_unix delays a failure by about 2 s; sudo is not left to ask twice more.
    assert.ok((said.seconds as number) < 6, `${said.seconds} s`);
    assert.equal(await d.exited(), 1);
    for (const secret of [wrong, password]) assert.ok(!d.stdout.includes(secret) && !d.stderr.includes(secret));
    assert.deepEqual(processLeaks(wrong).leaks, []);
    t.diagnostic(`refused after ${(said.seconds as number).toFixed(2)} s: ${String(said.message).split('\n')[0]}`);
  });

  test('a user sudo does not allow is told so, with what to do', async () => {
    rmSync(DROP_IN, { force: true });
    try {
      const d = new Driver(bundles.driver, [bundles.helper]);
      d.send(password);
      const said = await d.next(['started', 'error']);
      assert.equal(said.type, 'error');
      assert.match(String(said.message), new RegExp(`^sudo does not let ${TEST_USER} run the lab helper as root`));
      assert.match(String(said.message), /user namespaces/, 'the hint names the other way out');
      assert.ok(!d.stdout.includes(password));
      assert.equal(await d.exited(), 1);
    } finally {
      writeSudoers(`${TEST_USER} ALL=(root) ALL`);
    }
  });

  test('where sudo asks for no password (NOPASSWD), none reaches the helper', async () => {
    writeSudoers(`${TEST_USER} ALL=(root) NOPASSWD: ALL`);
    try {
      const d = new Driver(bundles.driver, [bundles.helper]);
      d.send(password);
      const started = await d.next(['started', 'error']);
      assert.equal(started.type, 'started', String(started.message));
      d.send(JSON.stringify({ quit: true }));
      const logs = (await d.next(['closed'])).logs as string[];
      // The helper answers a stray line with an error: there is none, so no line came before ours.
      assert.deepEqual(logs.filter((l) => /"type":"error"/.test(l)), []);
      assert.equal(await d.exited(), 0);
      assertNoLeak('NOPASSWD', d);
    } finally {
      writeSudoers(`${TEST_USER} ALL=(root) ALL`);
    }
  });

  test('a manual lab through the helper: a rule applied by hand, its counters read live, then stopped', async (t) => {
    const d = new Driver(bundles.driver, [bundles.helper]);
    d.send(password);
    assert.equal((await d.next(['started', 'error'])).type, 'started');
    const drop = { apply: { id: 'drop-to-server', action: 'drop', direction: 'to-port' } };
    d.send(JSON.stringify({ run: 'manual', manual: 'requests', perform: [drop], stopAfter: 2.5 }));
    assert.equal((await d.next(['performed', 'run-error'])).type, 'performed');
    const counters = new Map((await d.next(['counters'])).counters as [string, { packets: number }][]);
    // The client's request each second, and its retransmissions, meet the DROP in the namespace.
    assert.ok((counters.get('drop-to-server')?.packets ?? 0) > 0, JSON.stringify([...counters]));
    const result = await d.next(['result', 'run-error']);
    assert.equal(result.type, 'result', String(result.message));
    assert.equal(result.faults, 1, 'the hand-made fault is on the timeline');
    assert.match(String(result.error), /cancelled/, 'stopped by the user, as LabSession.stop does');
    d.send(JSON.stringify({ quit: true }));
    await d.next(['closed']);
    assert.equal(await d.exited(), 0);
    assertNoLeak('manual lab', d);
    t.diagnostic(`${counters.get('drop-to-server')?.packets} packets dropped in 2.5 s, read through the helper`);
  });

  test('kill -9 of the editor mid-run: the root helper exits and nothing of the lab is left', async (t) => {
    const d = new Driver(bundles.driver, [bundles.helper]);
    d.send(password);
    const started = await d.next(['started', 'error']);
    assert.equal(started.type, 'started', String(started.message));
    const helper = started.helperPid as number;
    const chain = ancestry(helper, d.child.pid!);
    // The manual lab runs until it is stopped: still going whenever the kill comes.
    d.send(JSON.stringify({ run: 'manual', manual: 'idle' }));
    await d.next(['process']);
    await d.next(['process']);
    // Mid-run: the namespace, the programs and the run's folder exist. None holds the password.
    const runDirs = () => readdirSync(tmpdir()).filter((n) => n.startsWith(`tcp-lab-${helper}-`));
    assert.equal(runDirs().length, 1, 'the run folder exists (and was searched)');
    assertNoLeak('mid-run', d);
    const lab = descendants(helper);
    const labLines = () => leftovers().filter((l) => lab.includes(Number(/^process: (\d+)/.exec(l)?.[1])) || l.includes(`tcp-lab-${helper}-`));
    assert.ok(labLines().some((l) => l.includes('samples/python/client.py')), 'the run is going when the editor dies');
    // The programs run as the user who ran sudo, not as root: only the lab's own commands are root.
    const programs = lab.filter((pid) => { try { return /^[^\0]*python[\d.]*\0[^\0]*samples\/python\/(client|server)\.py\0/.test(readFileSync(`/proc/${pid}/cmdline`, 'utf8')); } catch { return false; } });
    assert.equal(programs.length, 2, 'the server and the client, found under the helper');
    assert.deepEqual(programs.map(uidOf), [testUserIds().uid, testUserIds().uid], 'the samples run as the test user');

    d.child.kill('SIGKILL');
    await d.exited();
    const t0 = Date.now();
    for (let i = 0; i < 300 && chain.some(alive); i++) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(chain.filter(alive), [], 'the helper and sudo exit once the pipe closes');
    const exitMs = Date.now() - t0;
    // Other suites may run labs on this machine meanwhile: what counts is this lab's processes.
    const left = await settledLeftovers(5000);
    assert.deepEqual(lab.filter(alive), [], 'no process of the lab survives');
    assert.deepEqual(labLines(), [], `no lab process, namespace or rule of this run is left (all leftovers: ${left.join('; ')})`);
    assert.deepEqual(runDirs(), [], 'the helper tore the run down (its folder is gone) before exiting');
    t.diagnostic(`helper and sudo gone ${exitMs} ms after the driver was killed`);
  });

  test('where user namespaces are refused, sudoNeeded() says so and the helper runs the lab', async (t) => {
    const onHost = new Driver(bundles.driver, ['--sudo-needed']);
    assert.deepEqual(await onHost.next(['sudo-needed', 'error']), { type: 'sudo-needed', needed: false });
    const ns = await NoUserNamespaces.start();
    try {
      const probe = new Driver(bundles.driver, ['--sudo-needed'], ns.prefix());
      assert.deepEqual(await probe.next(['sudo-needed', 'error']), { type: 'sudo-needed', needed: true });
      const d = new Driver(bundles.driver, [bundles.helper], ns.prefix());
      d.send(password);
      const started = await d.next(['started', 'error']);
      assert.equal(started.type, 'started', String(started.message));
      d.send(JSON.stringify({ run: 'connect-refused' }));
      const result = await d.next(['result', 'run-error']);
      assert.equal(result.verdict, 'pass', JSON.stringify(result));
      assert.deepEqual(result.errno, { name: 'ECONNREFUSED', number: 111 });
      d.send(JSON.stringify({ quit: true }));
      await d.next(['closed']);
      assert.equal(await d.exited(), 0);
      assertNoLeak('no user namespaces', d);
      t.diagnostic(`no-userns host: helper ready in ${(started.startSeconds as number).toFixed(2)} s, connect-refused ${(result.driverSeconds as number).toFixed(2)} s`);
    } finally {
      ns.dispose();
    }
  });

  test('the helper refuses bad messages, naming the field, and never echoes a stray line', async () => {
    // As root without sudo: the protocol is the same either way.
    const child = spawn(process.execPath, [bundles.helper], { stdio: ['pipe', 'pipe', 'pipe'] });
    const said: Said[] = [];
    let partial = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      const lines = (partial + d).split('\n');
      partial = lines.pop()!;
      for (const l of lines) said.push(decodeLine(l) as Said);
    });
    const next = async (): Promise<Said> => {
      for (let i = 0; i < 200 && said.length === 0; i++) await new Promise((r) => setTimeout(r, 25));
      const m = said.shift();
      assert.ok(m, 'the helper answered');
      return m;
    };
    assert.equal((await next()).type, 'ready');
    const send = (m: unknown) => child.stdin.write(typeof m === 'string' ? `${m}\n` : encodeMessage(m as never));
    const cases: [unknown, string | undefined][] = [
      [password, 'message'],
      [{ type: 'run', runId: 'a', scenario: 'no-such-scenario' }, 'scenario'],
      [{ type: 'run', runId: 'a b', scenario: 'connect-refused' }, 'runId'],
      [{ type: 'run', runId: 'a', scenario: 'connect-refused', options: { pollInterval: 'fast' } }, 'options.pollInterval'],
      [{ type: 'run', runId: 'a', scenario: 'connect-refused', options: { firewall: 'pf' } }, 'options.firewall'],
      [{ type: 'run', runId: 'a', scenario: 'connect-refused', options: { clientCommand: ['curl', 7] } }, 'options.clientCommand[1]'],
      [{ type: 'run', runId: 'a', scenario: 'connect-refused', options: { sysctls: { 'kernel.panic': 1 } } }, 'options.sysctls.kernel.panic'],
      [{ type: 'run', runId: 'a', scenario: 'connect-refused', options: { mode: 'rootless' } }, 'options.mode'],
      [{ type: 'kill', runId: 'a', proc: 1, signal: 'SIGSEGV' }, 'signal'],
      [{ type: 'resize', runId: 'a', proc: 1, cols: 0, rows: 30 }, 'cols'],
      [{ type: 'perform', runId: 'a', seq: 1, actions: [{ apply: { id: 'x', action: 'explode', direction: 'to-port' } }] }, 'actions[0].apply.action'],
      [{ type: 'perform', runId: 'a', seq: 1, actions: [{ kill: 'server', signal: 'SIGSEGV' }] }, 'actions[0].signal'],
      [{ type: 'run', runId: 'a', scenario: 'connect-refused', manual: 'idle' }, 'manual'],
      [{ type: 'reboot' }, 'type'],
    ];
    for (const [message, field] of cases) {
      send(message);
      const reply = await next();
      assert.equal(reply.type, 'error', JSON.stringify(message));
      assert.equal(reply.field, field, `${JSON.stringify(message)}: ${reply.message}`);
      assert.ok(!JSON.stringify(reply).includes(password), 'a stray line is never echoed');
    }
    child.stdin.end();
    const code = await new Promise((r) => child.once('exit', r));
    assert.equal(code, 0, 'stdin closed: the helper exits');
  });
});
