/**
 * The editor's sudo path end to end, in a real VS Code (code-server) run by the unprivileged
 * test user. With `tcpLab.mode: "sudo"`: the first run asks for the password in a password box,
 * a wrong one is refused in words, the right one starts one root helper (dist/lab-helper.js
 * under `sudo -S`) that runs the window's labs, and the next run asks nothing. The passwords are
 * then searched for in every process's argv and environment, in the files of the run
 * (code-server's data, logs and extensions, Chromium's profile, /tmp), in the TCP Lab output and
 * in the page. Then the window goes, twice: closed (deactivate disposes the helper) and with its
 * extension host killed -9 mid-lab (the helper sees its stdin close); each time the helper, sudo
 * and the lab must be gone. With the default `auto`, on a host that forbids unprivileged user
 * namespaces (code-server in a user namespace that allows no further one, as sudo.test.ts does),
 * the extension finds the rootless lab refused and asks for the password itself.
 * Screenshots: test-output/e2e/sudo/.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findTools, openWorkbench, processTree, runCommand, type PwPage } from './e2e/codeServer';
import {
  answer, BOX_TITLE, buildVsix, helperProcesses, openAsUser, passwordBox, PROMPT, setChannelLogLevel, type UserWindow,
} from './e2e/sudoWindow';
import { extensionHostPid, pageLeaks, pageText, quickInput, row, runFromView, runsLogged, showLogLine, toast, waitFor } from './e2e/view';
import { ensureTestUser, isRoot, ROOT, settledLeftovers, TEST_USER, testUserIds } from './support/lab';
import {
  alive, DROP_IN, fileLeaks, installSudo, NoUserNamespaces, processLeaks, restorePassword, setPassword, uidOf, writeSudoers,
} from './support/sudoHost';

const tools = findTools();
const skip = !isRoot ? 'needs root: it gives the test user a password and a sudoers rule, and starts code-server as that user'
  : 'missing' in tools ? `VS Code (code-server) is not installed: ${tools.missing}` : false;

/** A closed window's extension host waits this long for the window to come back, then ends. */
const GRACE = 5;
const password = `Tcp-Lab-${randomBytes(12).toString('hex')}`;
const wrong = `Tcp-Lab-${randomBytes(12).toString('hex')}`;
const since = Date.now() - 1000;
const shots = join(ROOT, 'test-output', 'e2e', 'sudo');
const shot = (page: PwPage, name: string) => page.screenshot({ path: join(shots, `${name}.png`) }).then(() => undefined, () => undefined);

const timings: string[] = [];
const note = (ms: number, what: string) => timings.push(`${ms.toFixed(0).padStart(6)} ms  ${what}`);
async function step<T>(name: string, fn: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  try {
    return await fn();
  } finally {
    note(performance.now() - t0, name);
  }
}

/** Clicks ▶ on a scenario's row until the extension's log says the run began. */
function runLogged(w: UserWindow, page: PwPage, id: string, section: string): Promise<void> {
  const before = runsLogged(w.logText(), id);
  return runFromView(page, id, section, () => runsLogged(w.logText(), id) > before);
}

/** A failure's message carries the log's last lines: CI's summary shows the message, not the console. */
function withLog(e: unknown, w: UserWindow | undefined): unknown {
  if (e instanceof Error && w) e.message += `\nTCP Lab log, last lines:\n${w.logText().trim().split('\n').slice(-12).join('\n')}`;
  return e;
}

/**
 * Neither password in any process's argv or environment (`read`: processes the search must have
 * read), nor in a file of the run or one written since the test began.
 */
function assertNowhere(where: string, runRoot: string, read: readonly number[]): void {
  for (const [name, secret] of [['password', password], ['wrong password', wrong]] as const) {
    const procs = processLeaks(secret);
    assert.deepEqual(procs.leaks, [], `${where}: the ${name} is in a process's argv or environment`);
    for (const pid of read) assert.ok(procs.read.has(pid) || !alive(pid), `the search read process ${pid}`);
    const files = fileLeaks(secret, since, [tmpdir(), '/var/log', '/run/sudo', '/var/lib/sudo'], [runRoot]);
    assert.deepEqual(files.leaks, [], `${where}: the ${name} is in a file`);
    assert.ok(files.files.some((f) => f.endsWith('TCP Lab.log')), 'the search read the extension\'s log');
    if (secret === password) timings.push(`          ${where}: ${procs.read.size} processes and ${new Set(files.files).size} files searched`);
  }
}

describe('the sudo path in VS Code', { skip }, () => {
  let sudoMissing: string | undefined;
  let dropInBefore: string | undefined;
  let shadowBefore: string | undefined;
  let user: { uid: number; gid: number };
  let build: string;
  let vsix: string;

  before(() => {
    try {
      installSudo();
    } catch (e) {
      sudoMissing = `sudo is missing and could not be installed: ${e instanceof Error ? e.message : e}`;
      return;
    }
    mkdirSync(shots, { recursive: true });
    ensureTestUser();
    user = testUserIds();
    // The password and the rule test/sudo.test.ts uses: the user may run anything as root, with it.
    dropInBefore = existsSync(DROP_IN) ? readFileSync(DROP_IN, 'utf8') : undefined;
    shadowBefore = setPassword(password);
    writeSudoers(`${TEST_USER} ALL=(root) ALL`);
    build = mkdtempSync(join(tmpdir(), 'tcplab-e2e-vsix-'));
    chmodSync(build, 0o755); // the user installs the .vsix from here
    vsix = join(build, 'tcp-lab.vsix');
    const t0 = performance.now();
    buildVsix(ROOT, vsix);
    note(performance.now() - t0, 'build and package the .vsix');
  });

  after(() => {
    if (build) rmSync(build, { recursive: true, force: true });
    if (shadowBefore === undefined) return;
    if (dropInBefore === undefined) rmSync(DROP_IN, { force: true });
    else writeFileSync(DROP_IN, dropInBefore, { mode: 0o440 });
    restorePassword(shadowBefore);
    console.log(`sudo e2e:\n${timings.join('\n')}`);
  });

  test('mode "sudo": a wrong password refused, the right one once per window, the password nowhere, nothing left', { timeout: 10 * 60_000 }, async (t) => {
    if (sudoMissing) return t.skip(sudoMissing);
    let w: UserWindow | undefined;
    try {
      w = await openAsUser({ vsix, user, settings: { 'tcpLab.mode': 'sudo' }, graceSeconds: GRACE, step });
      const srv = w.server;
      let page = w.wb!.page;
      assert.equal(uidOf(srv.pid), user.uid, 'code-server runs as the test user');
      const host = extensionHostPid(srv);
      assert.ok(host, 'the extension host runs');
      assert.equal(uidOf(host), user.uid, 'the extension host is the user\'s');
      // At Trace the lab's trace lines reach the log, every protocol message to and from the
      // helper among them: the searches below read those too.
      await step('set the TCP Lab log to Trace', () => setChannelLogLevel(page, 'TCP Lab', 'Trace'));

      // A wrong password: sudo refuses it (pam_unix waits about 2 s), the run fails in words
      // that say whose password sudo wants, and no helper, sudo or lab is left.
      await step('connect-refused: click ▶ until the password box shows', async () => {
        await runLogged(w!, page, 'connect-refused', 'A. Connect phase');
        await passwordBox(page, PROMPT.sudo);
      });
      await shot(page, '01-password-box');
      const refused = toast(page, /TCP Lab: sudo refused the password/);
      await step('a wrong password: Enter until the refusal shows', async () => {
        await answer(page, wrong);
        await refused.waitFor({ state: 'visible', timeout: 20_000 });
      });
      assert.match(await refused.innerText(), new RegExp(`sudo asks for the password of ${TEST_USER}, the account the editor runs as \\(not root's\\)`), 'the refusal says whose password sudo wants');
      await shot(page, '02-refused');
      await waitFor('sudo to exit after the refusal', () => { const h = helperProcesses(srv.pid); return !h.sudo.length && !h.helper.length; }, 5_000);
      assert.equal(await row(page, /^namespace/).isVisible(), false, 'no lab started');
      assert.equal(await quickInput(page, BOX_TITLE).isVisible(), false, 'the box is not left open');
      assert.deepEqual(await pageLeaks(page, wrong), [], 'the page does not keep the refused password (the box empties itself as it closes)');

      // Again, with the right password: the helper starts as root and runs the lab.
      await step('connect-refused again: the box shows again', async () => {
        await runLogged(w!, page, 'connect-refused', 'A. Connect phase');
        await passwordBox(page, PROMPT.sudo);
      });
      const entered = await answer(page, password);
      await toast(page, 'PASS connect-refused: ECONNREFUSED (111)').waitFor({ state: 'visible', timeout: 60_000 });
      note(performance.now() - entered, 'the right password: Enter until the PASS toast (sudo + PAM + helper + the lab)');
      // Now, before another quick input reuses the box's <input>: the password is not in it.
      assert.deepEqual(await pageLeaks(page, password), [], 'the page does not keep the password once the box closed');
      await row(page, 'verdict: PASS connect-refused: ECONNREFUSED (111)').waitFor({ state: 'visible', timeout: 10_000 });
      await row(page, /^namespaceroot, init pid \d+/).waitFor({ state: 'visible', timeout: 5_000 });
      await shot(page, '03-connect-refused-root');

      const first = helperProcesses(srv.pid);
      assert.equal(first.helper.length, 1, `one lab helper: ${JSON.stringify(first)}`);
      assert.equal(first.sudo.length, 1, `started by one sudo: ${JSON.stringify(first)}`);
      const helper = first.helper[0]!;
      const sudo = first.sudo[0]!;
      assert.equal(uidOf(helper), 0, 'the helper runs as root');
      assert.ok(processTree(host).includes(sudo) && processTree(sudo).includes(helper), 'extension host → sudo → helper');

      // The second run asks nothing: it runs in the same helper. The box would stay open until
      // answered (ignoreFocusOut), so a PASS with the box never seen means it never came.
      await step('reject-tcp-reset: click ▶ until PASS, no password asked', async () => {
        await runLogged(w!, page, 'reject-tcp-reset', 'A. Connect phase');
        const pass = toast(page, 'PASS reject-tcp-reset: ECONNREFUSED (111)');
        await waitFor('the PASS of reject-tcp-reset', async () => {
          assert.equal(await quickInput(page, BOX_TITLE).isVisible(), false, 'the password is asked once per window');
          return pass.isVisible();
        }, 30_000);
      });
      await row(page, /^namespaceroot, init pid \d+/).waitFor({ state: 'visible', timeout: 5_000 });
      assert.deepEqual(helperProcesses(srv.pid), first, 'the same helper ran the second lab');
      await shot(page, '04-reject-tcp-reset-no-box');

      // The TCP Lab output, as a person opens it: the verdicts are there, the passwords are not.
      await step('open the TCP Lab output', () => showLogLine(page, 'PASS reject-tcp-reset'));
      await shot(page, '05-output');
      const output = (await page.locator('.part.panel .view-lines').first().innerText()).replace(/\u00a0/g, ' ');
      for (const secret of [password, wrong]) assert.ok(!output.includes(secret), 'the TCP Lab output does not show a password');

      // The extension's log on disk: the helper's start, the refusal, the messages, no password.
      const log = w.logText();
      const ready = /lab helper ready as root \(pid (\d+)\) in ([\d.]+) s/.exec(log);
      assert.ok(ready, `the log says when the helper was ready:\n${log.slice(-2000)}`);
      assert.equal(Number(ready[1]), helper, 'the log names the helper that runs');
      note(Number(ready[2]) * 1000, 'helper ready as root, from the log (sudo + PAM + node start)');
      assert.equal(log.match(/lab helper ready as root/g)?.length, 1, 'one helper started in this window');
      assert.match(log, /sudo refused the password/, 'the refusal is in the log');
      assert.match(log, /\[debug\] \[lab-helper\] > \{"type":"run"/, 'the log is at Trace: the messages to the helper are in it');
      assert.match(log, /\[debug\] \[lab-helper\] < \{"type":"result"/, 'and the messages from it');

      // The file search finds a copy where there is one: a planted one.
      const canary = join(w.dataDir, 'canary');
      writeFileSync(canary, `-${password}-`);
      assert.deepEqual([...new Set(fileLeaks(password, since, [tmpdir()], [w.root]).leaks)], [canary], 'the file search finds a planted copy');
      rmSync(canary);
      await step('search every process and file for the passwords', async () => assertNowhere('window open', w!.root, [srv.pid, host, sudo, helper]));
      const dom = await page.content();
      assert.ok(dom.includes('PASS reject-tcp-reset'), 'the page\'s DOM was read');
      assert.ok((await pageText(page)).some((p) => p.where.includes('value of input')), 'the inputs\' values were read');
      for (const secret of [password, wrong]) {
        assert.ok(!dom.includes(secret), 'the page\'s DOM holds no password');
        assert.deepEqual(await pageLeaks(page, secret), [], 'no frame, input or webview of the page holds a password');
      }

      // The window closes: after the grace time the extension host deactivates, and the
      // helper is disposed with it.
      await step('close the window: the extension host, sudo and the helper end', async () => {
        await w!.wb!.close();
        w!.wb = undefined;
        await waitFor('the closed window\'s extension host to end', () => !alive(host), (GRACE + 30) * 1000);
        await waitFor('the helper and sudo to end', () => !alive(helper) && !alive(sudo), 10_000);
      });
      assert.deepEqual(await settledLeftovers(10_000), [], 'a closed window leaves no lab namespace, process or rule');

      // A new window is a new extension host: it asks again. Killed -9 mid-lab, its helper
      // sees its stdin close and tears the lab down.
      w.wb = await step('open the workbench again', () => openWorkbench(srv.url));
      page = w.wb.page;
      const host2 = await step('a new extension host', async () => {
        let h: number | undefined;
        await waitFor('a new extension host', () => (h = extensionHostPid(srv)) !== undefined && h !== host, 60_000);
        return h!;
      });
      await step('start a manual lab: the new window asks for the password again', async () => {
        await runCommand(page, 'TCP Lab: Start a Manual Lab…', 30_000, 'Manual lab: what the client does');
        await page.locator('.quick-input-widget .monaco-list-row').filter({ hasText: 'a request every second' }).first().click();
        await passwordBox(page, PROMPT.sudo);
      });
      const entered2 = await answer(page, password);
      await row(page, /^clientpid \d+, running/).waitFor({ state: 'visible', timeout: 60_000 });
      note(performance.now() - entered2, 'new window: Enter until the manual lab\'s client runs');
      await row(page, /^namespaceroot, init pid \d+/).waitFor({ state: 'visible', timeout: 5_000 });
      await shot(page, '06-manual-lab-second-window');
      const second = helperProcesses(srv.pid);
      assert.equal(second.helper.length, 1, `one lab helper in the new window: ${JSON.stringify(second)}`);
      const [helper2, sudo2] = [second.helper[0]!, second.sudo[0]!];
      assert.notEqual(helper2, helper);
      const lab = processTree(helper2);
      assert.ok(lab.length >= 3, `the manual lab runs below the helper (namespace, server, client): ${lab.length} processes`);
      await step('kill -9 the extension host mid-lab: sudo, the helper and the lab end', async () => {
        process.kill(host2, 'SIGKILL');
        await waitFor('the helper, sudo and the lab to end', () => ![helper2, sudo2, ...lab].some(alive), 15_000);
      });
      assert.deepEqual(await settledLeftovers(10_000), [], 'a killed extension host leaves no lab namespace, process or rule');
      await shot(page, '07-after-kill');
      await w.wb.close();
      w.wb = undefined;
      await w.server.stop();
      await step('search every process and file again, everything stopped', async () => assertNowhere('everything stopped', w!.root, []));
    } catch (e) {
      if (w?.wb) await shot(w.wb.page, 'failure');
      if (w) console.log(`${w.server?.output().slice(-3000)}\nTCP Lab log:\n${w.logText().split('\n').slice(-40).join('\n')}`);
      throw withLog(e, w);
    } finally {
      await w?.dispose();
    }
  });

  test('mode "auto" where user namespaces are refused: the extension asks for the password itself', { timeout: 5 * 60_000 }, async (t) => {
    if (sudoMissing) return t.skip(sudoMissing);
    let w: UserWindow | undefined;
    const ns = await NoUserNamespaces.start();
    try {
      w = await openAsUser({ vsix, user, settings: {}, graceSeconds: GRACE, prefix: ns.prefix(), step });
      const srv = w.server;
      const page = w.wb!.page;
      assert.equal(uidOf(srv.pid), user.uid, 'code-server runs as the test user');
      const host = extensionHostPid(srv);
      assert.ok(host, 'the extension host runs');
      assert.equal(readlinkSync(`/proc/${host}/ns/user`), readlinkSync(`/proc/${ns.pid}/ns/user`), 'the extension host is in the namespace that allows no user namespace');
      await step('auto, no user namespaces: click ▶ until the password box shows', async () => {
        await runLogged(w!, page, 'connect-refused', 'A. Connect phase');
        // The rootless probe is refused first: the box's prompt says why root is needed.
        await passwordBox(page, PROMPT.auto, 30_000);
      });
      await shot(page, '08-auto-password-box');
      const entered = await answer(page, password);
      await toast(page, 'PASS connect-refused: ECONNREFUSED (111)').waitFor({ state: 'visible', timeout: 60_000 });
      note(performance.now() - entered, 'auto, no user namespaces: Enter until the PASS toast');
      await row(page, /^namespaceroot, init pid \d+/).waitFor({ state: 'visible', timeout: 5_000 });
      await shot(page, '09-auto-connect-refused-root');
      const { helper, sudo } = helperProcesses(srv.pid);
      assert.equal(helper.length, 1, 'one lab helper');
      assert.equal(uidOf(helper[0]!), 0, 'the helper runs as root');
      assert.deepEqual(await pageLeaks(page, password), [], 'the page does not keep the password');
      assertNowhere('auto, window open', w.root, [srv.pid, host, ...sudo, ...helper]);
      // code-server told to stop (SIGTERM to it alone, a Ctrl-C in its terminal): its extension
      // host goes, and the helper with it. (Its stop() would signal every process below it,
      // sudo and the helper too, as root: that would not show the helper leaving by itself.)
      await step('SIGTERM to code-server: the extension host, sudo and the helper end', async () => {
        process.kill(srv.pid, 'SIGTERM');
        await waitFor('the extension host to end', () => !alive(host), 30_000);
        await waitFor('the helper and sudo to end', () => ![...helper, ...sudo].some(alive), 15_000);
      });
      assert.deepEqual(await settledLeftovers(10_000), [], 'a stopped code-server leaves no lab namespace, process or rule');
    } catch (e) {
      if (w?.wb) await shot(w.wb.page, 'failure-auto');
      if (w) console.log(`${w.server?.output().slice(-3000)}\nTCP Lab log:\n${w.logText().split('\n').slice(-40).join('\n')}`);
      throw withLog(e, w);
    } finally {
      await w?.dispose();
      ns.dispose();
    }
  });
});
