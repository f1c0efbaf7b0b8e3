// The extension in a real VS Code: code-server from the npm registry (test/e2e/setup.sh), the
// built .vsix installed as a user would, the workbench in headless Chromium. Runs scenarios from
// the TCP Lab view and reads the verdicts, the session view and the programs' terminals; then
// ends a lab in each way a window can go (cancel, reload, a killed extension host, the server
// stopped) and checks that nothing of the lab is left. Screenshots: test-output/e2e/.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import {
  activityItem, e2eFolders, findTools, installVsix, openWorkbench, processTree, runCommand, startCodeServer, terminalText,
  type CodeServer, type PwPage, type Workbench,
} from './e2e/codeServer';
import { extensionHostPid, row, runFromView, showLogLine, toast, waitFor } from './e2e/view';
import { ensureTestUser, isRoot, ROOT, settledLeftovers, TEST_USER, testUserIds } from './support/lab';

const tools = findTools();
const skip = 'missing' in tools ? `VS Code (code-server) is not installed: ${tools.missing}` : false;

const timings: string[] = [];
async function step<T>(name: string, fn: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  try {
    return await fn();
  } finally {
    timings.push(`${(performance.now() - t0).toFixed(0).padStart(6)} ms  ${name}`);
  }
}

/** Lab namespaces (their init `cat`) under a process tree: what a running lab holds. */
function labInits(root: number): number[] {
  return processTree(root).filter((pid) => {
    try { return /^unshare\0.*--net\0.*\0cat\0$/.test(readFileSync(`/proc/${pid}/cmdline`, 'utf8')); } catch { return false; }
  });
}

/**
 * A closed window's extension host lives on for the reconnection grace time (3 h by default in
 * code-server, so that a browser can come back); then it is shut down as in a desktop window.
 */
const GRACE = 5;

/** The uid and gid of the unprivileged test user, created on first use. */
function testUser(): { uid: number; gid: number } {
  ensureTestUser();
  return testUserIds();
}

test('as root: run from the view, verdicts, terminals, nothing left behind', { skip: skip || (!isRoot && 'needs root (the root half of the suite)'), timeout: 15 * 60_000 }, () => endToEnd('root'));

// The extension's default: an unprivileged editor, the lab in a rootless user namespace.
test(`as an unprivileged user (${TEST_USER}): the same, rootless`, { skip: skip || (!isRoot && 'needs root to create the test user and start code-server as it'), timeout: 15 * 60_000 }, () => endToEnd('user'));

async function endToEnd(as: 'root' | 'user'): Promise<void> {
  const shots = join(ROOT, 'test-output', 'e2e', as);
  mkdirSync(shots, { recursive: true });
  const shot = (page: PwPage, name: string) => page.screenshot({ path: join(shots, `${name}.png`) }).then(() => undefined, () => undefined);
  const user = as === 'user' ? testUser() : undefined;
  const { root, dataDir, extensionsDir, workspace } = e2eFolders('tcplab-e2e-');
  let server: CodeServer | undefined;
  let wb: Workbench | undefined;
  try {
    const vsix = join(root, 'tcp-lab.vsix');
    await step('build and package the .vsix', async () => {
      // The bundles of this checkout, not whatever dist/ held.
      execFileSync(process.execPath, [join(ROOT, 'esbuild.mjs')], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
      execFileSync(process.execPath, [join(ROOT, 'scripts', 'package.mjs'), '--out', vsix], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
    });
    await step('install the .vsix', () => installVsix(vsix, { dataDir, extensionsDir }));
    // tcp_syn_retries=6 (the kernel's default) matters only to the long runs below.
    const settings = { 'tcpLab.timers': { 'net.ipv4.tcp_syn_retries': 6 } };
    server = await step('start code-server', () => startCodeServer({ dataDir, extensionsDir, workspace, settings, reconnectionGraceSeconds: GRACE, ...(user ? { user } : {}) }));
    wb = await step('open the workbench', () => openWorkbench(server!.url));
    let page = wb.page;
    const consoleLines: string[] = [];
    page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') consoleLines.push(`${m.type()}: ${m.text().slice(0, 300)}`); });

    await step('open the TCP Lab view (activates the extension)', async () => {
      await activityItem(page, 'TCP Lab').waitFor({ state: 'visible', timeout: 30_000 });
      await activityItem(page, 'TCP Lab').click();
      await row(page, 'A. Connect phase').waitFor({ state: 'visible', timeout: 30_000 });
      await row(page, 'connect-refused').waitFor({ state: 'visible', timeout: 10_000 });
    });
    await shot(page, '01-catalog');

    // The activation, as the extension logs it in its output channel ("activated in N ms").
    const activation = await step('read the activation time from the TCP Lab log', async () => {
      const line = await showLogLine(page, 'activated in');
      // Monaco renders spaces as no-break spaces.
      return ((await line.textContent()) ?? '').replace(/\u00a0/g, ' ');
    });
    const m = /activated in ([\d.]+) ms \(Node (v[\d.]+), (root|unprivileged)/.exec(activation);
    assert.ok(m, `the log says how long activation took: ${activation}`);
    assert.equal(m[3], as === 'root' ? 'root' : 'unprivileged');
    timings.push(`${Number(m[1]).toFixed(0).padStart(6)} ms  activate() itself (extension host on Node ${m[2]})`);

    // connect-refused: nothing listens, the client's connect() gets ECONNREFUSED at once.
    await step('run connect-refused from the view', async () => {
      await runFromView(page, 'connect-refused', 'A. Connect phase');
      await toast(page, 'PASS connect-refused: ECONNREFUSED (111)').waitFor({ state: 'visible', timeout: 30_000 });
    });
    await row(page, 'verdict: PASS connect-refused: ECONNREFUSED (111)').waitFor({ state: 'visible', timeout: 10_000 });
    await row(page, `namespace${as === 'root' ? 'root' : 'rootless'}, init pid`).waitFor({ state: 'visible', timeout: 5_000 });
    await shot(page, '02-connect-refused');
    const refusedClient = await terminalText(page);
    assert.match(refusedClient, /client error connect: ECONNREFUSED \(111\) Connection refused/, `client terminal:\n${refusedClient}`);

    // keepalive-detects: a silent peer; the keepalive probes go unanswered, recv() gets ETIMEDOUT.
    await step('run keepalive-detects from the view', async () => {
      await runFromView(page, 'keepalive-detects', 'B. Established phase');
      await toast(page, /waiting for/).waitFor({ state: 'visible', timeout: 15_000 });
      await shot(page, '03-keepalive-progress');
      await toast(page, 'PASS keepalive-detects: ETIMEDOUT (110)').waitFor({ state: 'visible', timeout: 60_000 });
    });
    await row(page, 'verdict: PASS keepalive-detects: ETIMEDOUT (110)').waitFor({ state: 'visible', timeout: 10_000 });
    await shot(page, '04-keepalive-detects');
    const keepaliveClient = await terminalText(page);
    assert.match(keepaliveClient, /client connected 127\.0\.0\.1:\d+ -> 127\.0\.0\.1:7000/, keepaliveClient);
    assert.match(keepaliveClient, /client error recv: ETIMEDOUT \(110\) Connection timed out/, keepaliveClient);
    // The server's terminal, from its row in the session view: its side got the client's RST.
    await page.locator('.pane-body .monaco-list-row').filter({ hasText: /^serverpid \d+/ }).first().click();
    await waitFor('the server terminal', async () => /server listening on 127\.0\.0\.1:7000/.test(await terminalText(page)), 10_000);
    const keepaliveServer = await terminalText(page);
    assert.match(keepaliveServer, /server #1 error recv: ECONNRESET \(104\)/, keepaliveServer);
    await shot(page, '05-server-terminal');

    // l4-idle-reset: three hosts behind a balancer; the session view lists them with their programs.
    await step('run l4-idle-reset (several hosts) from the view', async () => {
      await runFromView(page, 'l4-idle-reset', 'C. Middleboxes');
      await row(page, /^clientclient, direct; netns held by pid \d+/).waitFor({ state: 'visible', timeout: 15_000 });
      await row(page, /^lbnetns held by pid \d+/).waitFor({ state: 'visible', timeout: 5_000 });
      await shot(page, '06-l4-idle-reset-hosts');
      await toast(page, 'PASS l4-idle-reset: ECONNRESET (104)').waitFor({ state: 'visible', timeout: 30_000 });
    });
    const lbClient = await terminalText(page);
    assert.match(lbClient, /client connected 198\.18\.0\.2:\d+ -> 198\.18\.0\.10:80/, lbClient);
    assert.match(lbClient, /client error recv: ECONNRESET \(104\)/, lbClient);
    assert.deepEqual(await settledLeftovers(), [], 'a finished lab leaves nothing');

    await step('manual mode: start a lab, apply a fault from the view, lift it', async () => {
      await runCommand(page, 'TCP Lab: Start a Manual Lab…', 20_000, 'Manual lab: what the client does');
      const pickRow = (text: string) => page.locator('.quick-input-widget .monaco-list-row').filter({ hasText: text }).first();
      await pickRow('a request every second').click();
      await page.locator('.pane-body .monaco-list-row').filter({ hasText: /^clientpid \d+, running/ }).first().waitFor({ state: 'visible', timeout: 20_000 });
      // The live socket panel (a webview) on the lab: ss's own text, the connection in it.
      await runCommand(page, 'TCP Lab: Show Live Sockets');
      const raw = async () => {
        for (const f of page.frames()) {
          const text = await f.evaluate<string | null>(`document.getElementById('raw')?.textContent ?? null`).catch(() => null);
          if (text !== null) return text;
        }
        return '';
      };
      const shows = async () => /^ESTAB .*127\.0\.0\.1:7000/m.test(await raw());
      // code-server serves a webview through a service worker; in headless Chromium its inner
      // frame sometimes never loads (seen in 3 of 6 runs, the webview's outer frame present and
      // empty). VS Code's own remedy is Developer: Reload Webviews; once, then it must show.
      await waitFor('the socket panel', shows, 15_000).catch(async () => {
        await runCommand(page, 'Developer: Reload Webviews');
      });
      await waitFor('the socket panel showing the lab\'s connection', shows, 20_000).catch(async (e) => {
        const frames = await Promise.all(page.frames().map(async (f) => `${f.url().slice(0, 120)} ${await f.evaluate<string>('document.body ? document.body.innerText.slice(0, 200) : ""').catch((x) => String(x).slice(0, 100))}`));
        throw new Error(`${e instanceof Error ? e.message : e}; frames:\n${frames.join('\n')}\nconsole:\n${consoleLines.slice(-20).join('\n')}`);
      });
      const text = await raw();
      assert.match(text, /^State\s+Recv-Q\s+Send-Q\s+Local Address:Port\s+Peer Address:Port/m, `ss's own header:\n${text}`);
      assert.match(text, /^LISTEN .*127\.0\.0\.1:7000/m, text);
      await shot(page, '06-socket-panel');
      await page.locator('.pane-header[aria-label^="Lab Session"]').hover();
      await page.locator('.pane-header .action-label[aria-label^="Apply a Fault"]').first().click();
      await pickRow('DROP what the server sends').click();
      // The rule's row, with the kernel's counter of the replies it dropped.
      const rule = page.locator('.pane-body .monaco-list-row').filter({ hasText: /--sport 7000 -j DROP[1-9]\d* packets/ }).first();
      await rule.waitFor({ state: 'visible', timeout: 20_000 });
      await shot(page, '06b-manual-fault');

      await rule.hover();
      await rule.locator('.actions .action-label[aria-label^="Lift a Fault"]').click();
      await page.locator('.pane-body .monaco-list-row').filter({ hasText: /--sport 7000 -j DROP.*\(removed\)/ }).first().waitFor({ state: 'visible', timeout: 10_000 });
      // The stalled request goes through once the rule is gone: the client's terminal says so.
      await waitFor('a response after the fault was lifted', async () => (await terminalText(page)).split('\n').filter((l) => /client response #\d+/.test(l)).length >= 3, 15_000);
      await runCommand(page, 'TCP Lab: Stop the Lab');
      await toast(page, 'manual lab stopped; the lab is torn down').waitFor({ state: 'visible', timeout: 15_000 });
      assert.deepEqual(await settledLeftovers(), [], 'a stopped manual lab leaves nothing');
    });

    // A lab that lasts: connect-timeout-drop-syn with the kernel's default SYN retries (about
    // 130 s), from the user's 'tcpLab.timers' setting over the scenario's tcp_syn_retries=1. The
    // countdown proves the setting is in force before the lab is ended early.
    const long = async (how: string) => {
      await runFromView(page, 'connect-timeout-drop-syn', 'A. Connect phase');
      await toast(page, /waiting for client error in connect\(\) ETIMEDOUT \(110\): .*(gives up in \d{3} s|expected 1\d\d)/).waitFor({ state: 'visible', timeout: 15_000 });
      await waitFor(`a lab namespace before ${how}`, () => labInits(server!.pid).length > 0, 10_000);
    };

    await step('cancel a long wait from its progress notification', async () => {
      await long('cancelling');
      await shot(page, '07-countdown');
      await toast(page, /waiting for/).locator('.monaco-button').filter({ hasText: 'Cancel' }).first().click();
      await toast(page, 'connect-timeout-drop-syn cancelled; the lab is torn down').waitFor({ state: 'visible', timeout: 15_000 });
      assert.deepEqual(await settledLeftovers(), [], 'a cancelled lab leaves nothing');
    });

    await step('reload the window mid-scenario', async () => {
      await long('reloading');
      await runCommand(page, 'Developer: Reload Window');
      assert.deepEqual(await settledLeftovers(10_000), [], 'a reload (deactivate) leaves nothing');
      await activityItem(page, 'TCP Lab').waitFor({ state: 'visible', timeout: 60_000 });
    });

    await step('close the window mid-scenario', async () => {
      await long('closing the window');
      const host = extensionHostPid(server!);
      await wb!.close();
      // The extension host ends once the grace time is over; its lab goes with it.
      await waitFor('the closed window\'s extension host to end', () => host === undefined || !existsSync(`/proc/${host}`), (GRACE + 30) * 1000);
      assert.deepEqual(await settledLeftovers(10_000), [], 'a closed window leaves nothing');
      wb = await openWorkbench(server!.url);
      page = wb.page;
      await activityItem(page, 'TCP Lab').waitFor({ state: 'visible', timeout: 60_000 });
    });

    await step('kill -9 the extension host mid-scenario', async () => {
      // The workbench may restore the TCP Lab container by itself: a click on an open one would close it.
      const catalog = row(page, 'A. Connect phase');
      await catalog.waitFor({ state: 'visible', timeout: 10_000 }).catch(() => activityItem(page, 'TCP Lab').click());
      await catalog.waitFor({ state: 'visible', timeout: 30_000 });
      await long('killing the extension host');
      const host = extensionHostPid(server!);
      assert.ok(host, 'the extension host is a child of code-server');
      process.kill(host, 'SIGKILL');
      assert.deepEqual(await settledLeftovers(10_000), [], 'a killed extension host leaves nothing');
    });
    await shot(page, '08-after-kill');

    console.log(`${as}:\n${timings.splice(0).join('\n')}`);
  } catch (e) {
    if (wb) await shot(wb.page, 'failure');
    if (server) console.log(server.output().slice(-3000));
    // The extension's own log says what went wrong inside it.
    const logs = execFileSync('find', [dataDir, '-name', '*TCP Lab.log'], { encoding: 'utf8' }).trim().split('\n').filter(Boolean);
    for (const f of logs) console.log(`${f}:\n${readFileSync(f, 'utf8').split('\n').slice(-40).join('\n')}`);
    throw e;
  } finally {
    await wb?.close().catch(() => undefined);
    await server?.stop();
    rmSync(root, { recursive: true, force: true });
  }
}
