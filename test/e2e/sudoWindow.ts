// What test/vscodeSudo.test.ts does in a window: code-server run by the unprivileged test user
// with the .vsix installed by that user, the password box as a person meets it, the root
// helper and its sudo among the window's processes, and the TCP Lab log level set by hand.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { basename, join } from 'node:path';
import {
  activityItem, e2eFolders, installVsix, openWorkbench, processTree, runCommand, startCodeServer,
  type CodeServer, type PwPage, type Workbench,
} from './codeServer';
import { quickInput, row } from './view';

export const BOX_TITLE = 'TCP Lab needs root on this host';
/** The box's prompt with `tcpLab.mode: "sudo"`, and where the host forbids user namespaces (`auto`). */
export const PROMPT = {
  sudo: 'Your sudo password starts one lab helper (root) for this window. It goes to sudo once and is not stored.',
  auto: 'This host does not allow unprivileged user namespaces. Your sudo password starts one lab helper (root) for this window; it goes to sudo once and is not stored.',
};

/** The .vsix of this checkout: the bundles rebuilt, then packaged as a user gets it. */
export function buildVsix(root: string, out: string): void {
  execFileSync(process.execPath, [join(root, 'esbuild.mjs')], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
  execFileSync(process.execPath, [join(root, 'scripts', 'package.mjs'), '--out', out], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
}

export interface UserWindow {
  /** The run's folder (data, extensions, workspace): everything code-server writes is below it. */
  root: string;
  dataDir: string;
  server: CodeServer;
  wb: Workbench | undefined;
  /** The extension's log file ("TCP Lab.log" of the first extension host). */
  logText(): string;
  /** Closes the browser, stops code-server, removes the folder. */
  dispose(): Promise<void>;
}

/**
 * The .vsix installed by `user` into a fresh folder, code-server started as them (under
 * `prefix` if given) with `settings`, the workbench open on the TCP Lab view.
 */
export async function openAsUser(o: {
  vsix: string;
  user: { uid: number; gid: number };
  settings: Record<string, unknown>;
  graceSeconds: number;
  prefix?: readonly string[];
  step: <T>(name: string, fn: () => Promise<T>) => Promise<T>;
}): Promise<UserWindow> {
  const { root, dataDir, extensionsDir, workspace } = e2eFolders('tcplab-e2e-sudo-');
  let server: CodeServer | undefined;
  let wb: Workbench | undefined;
  const logFiles = () => existsSync(dataDir)
    ? execFileSync('find', [dataDir, '-name', '*TCP Lab.log'], { encoding: 'utf8' }).trim().split('\n').filter(Boolean).sort()
    : [];
  const w: UserWindow = {
    root,
    dataDir,
    get server() { return server!; },
    get wb() { return wb; },
    set wb(v) { wb = v; },
    logText: () => { const f = logFiles()[0]; return f ? readFileSync(f, 'utf8') : ''; },
    dispose: async () => {
      await wb?.close().catch(() => undefined);
      wb = undefined;
      await server?.stop();
      server = undefined;
      rmSync(root, { recursive: true, force: true });
    },
  };
  try {
    await o.step('install the .vsix as the user', () => installVsix(o.vsix, { dataDir, extensionsDir, user: o.user }));
    server = await o.step('start code-server as the user', () => startCodeServer({
      dataDir, extensionsDir, workspace, user: o.user, reconnectionGraceSeconds: o.graceSeconds, settings: o.settings,
      ...(o.prefix ? { prefix: o.prefix } : {}),
    }));
    wb = await o.step('open the workbench', () => openWorkbench(server!.url));
    const page = wb.page;
    await o.step('open the TCP Lab view (activates the extension)', async () => {
      await activityItem(page, 'TCP Lab').waitFor({ state: 'visible', timeout: 30_000 });
      await activityItem(page, 'TCP Lab').click();
      await row(page, 'A. Connect phase').waitFor({ state: 'visible', timeout: 30_000 });
    });
    return w;
  } catch (e) {
    if (server) console.log(server.output().slice(-3000));
    await w.dispose();
    throw e;
  }
}

/** The root helper and the sudo that started it, among the processes below `root`. */
export function helperProcesses(root: number): { sudo: number[]; helper: number[] } {
  const found = { sudo: [] as number[], helper: [] as number[] };
  for (const pid of processTree(root)) {
    let argv: string[];
    try { argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0'); } catch { continue; }
    if (!argv.some((a) => a.endsWith('/dist/lab-helper.js'))) continue;
    (basename(argv[0] ?? '') === 'sudo' ? found.sudo : found.helper).push(pid);
  }
  return found;
}

/** The password box, once it shows: its title and prompt, and an input that hides what is typed. */
export async function passwordBox(page: PwPage, prompt: string, timeout = 20_000): Promise<void> {
  const box = quickInput(page, BOX_TITLE);
  await box.waitFor({ state: 'visible', timeout });
  assert.ok((await box.innerText()).replace(/\s+/g, ' ').includes(prompt), 'the box says what the password is for');
  const input = await page.evaluate<{ type: string; value: string } | null>(`(() => {
    const i = document.querySelector('.quick-input-widget .quick-input-box input');
    return i ? { type: i.type, value: i.value } : null;
  })()`);
  assert.ok(input, 'the box has an input');
  assert.equal(input.type, 'password', 'what is typed shows as dots');
  assert.equal(input.value, '', 'the box opens empty (nothing of an earlier answer in it)');
}

/** Types into the open password box key by key, as a person does, and presses Enter; returns when (ms). */
export async function answer(page: PwPage, secret: string): Promise<number> {
  await page.keyboard.type(secret, { delay: 5 });
  const t = performance.now();
  await page.keyboard.press('Enter');
  await quickInput(page, BOX_TITLE).waitFor({ state: 'hidden', timeout: 5_000 });
  return t;
}

/** Developer: Set Log Level..., the channel, the level: as a person sets one output channel's level. */
export async function setChannelLogLevel(page: PwPage, channel: string, level: 'Trace' | 'Debug'): Promise<void> {
  // The first pick lists the log channels; in code-server it sometimes comes up without an
  // extension's channel (the list is filled before the channel reached the window): close it
  // and ask again.
  const rows = page.locator('.quick-input-widget .monaco-list-row');
  for (let attempt = 1; ; attempt++) {
    await runCommand(page, 'Developer: Set Log Level...', 20_000, level);
    await page.keyboard.insertText(channel);
    const found = await rows.filter({ hasText: channel }).first().waitFor({ state: 'visible', timeout: 3_000 }).then(() => true, () => false);
    if (found) break;
    await page.keyboard.press('Escape');
    await page.locator('.quick-input-widget').waitFor({ state: 'hidden', timeout: 5_000 });
    if (attempt === 5) throw new Error(`Developer: Set Log Level... did not list the channel ${channel} in 5 tries`);
    await page.waitForTimeout(1_000);
  }
  await rows.filter({ hasText: channel }).first().click();
  // The second pick is the channel's: its placeholder ("<channel>: Select log level") names it.
  await page.waitForFunction(`document.querySelector('.quick-input-widget .quick-input-box input')?.placeholder.includes(${JSON.stringify(`${channel}: `)})`, undefined, { timeout: 5_000 });
  await rows.filter({ hasText: level }).first().click();
  await page.locator('.quick-input-widget').waitFor({ state: 'hidden', timeout: 5_000 });
}
