// Spike for issue 4: package a throwaway extension, install it into code-server, and
// drive the workbench in headless Chromium. Run: node --import tsx test/e2e/spike.ts
// Prints each step's time; screenshots go to test-output/e2e/.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import {
  activityItem,
  findTools,
  installVsix,
  openWorkbench,
  processTree,
  runCommand,
  startCodeServer,
  terminalText,
  type CodeServer,
  type PwPage,
  type Workbench,
} from './codeServer';

const execFileP = promisify(execFile);
const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const shots = join(repo, 'test-output', 'e2e');

const timings: [string, number][] = [];
async function step<T>(name: string, fn: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  try {
    return await fn();
  } finally {
    const ms = Math.round(performance.now() - t0);
    timings.push([name, ms]);
    console.log(`[${String(ms).padStart(6)} ms] ${name}`);
  }
}

// The throwaway extension. probeFile is where its node-pty probe writes what it found.
function writeExtension(dir: string, probeFile: string): void {
  mkdirSync(join(dir, 'media'), { recursive: true });
  const manifest = {
    name: 'spike',
    displayName: 'Spike',
    description: 'Throwaway extension for the e2e spike',
    publisher: 'tcplab-spike',
    version: '0.0.1',
    license: 'MIT',
    engines: { vscode: '^1.90.0' },
    main: './extension.js',
    extensionKind: ['workspace'],
    activationEvents: ['onView:spike.tree', 'onCommand:spike.hello'],
    contributes: {
      commands: [
        { command: 'spike.hello', title: 'Spike: Hello' },
        { command: 'spike.ptyProbe', title: 'Spike: Probe node-pty' },
        { command: 'spike.ptyTerminal', title: 'Spike: PTY Terminal' },
      ],
      viewsContainers: {
        activitybar: [{ id: 'spikeLab', title: 'Spike Lab', icon: 'media/icon.svg' }],
      },
      views: { spikeLab: [{ id: 'spike.tree', name: 'Spike Tree' }] },
    },
  };
  writeFileSync(join(dir, 'package.json'), JSON.stringify(manifest, null, 2));
  writeFileSync(join(dir, 'README.md'), '# Spike\n\nThrowaway extension for the e2e spike.\n');
  writeFileSync(join(dir, 'LICENSE'), 'MIT\n');
  writeFileSync(
    join(dir, 'media', 'icon.svg'),
    '<svg xmlns="http://www.w3.org/2000/svg" width="24" height="24" viewBox="0 0 24 24">' +
      '<circle cx="12" cy="12" r="9" fill="none" stroke="currentColor" stroke-width="2"/></svg>\n',
  );
  // The candidates for node-pty: VS Code's own (bundled in code-server) and the repo's
  // (built by this repo's npm install against the system Node 20).
  const repoPty = join(repo, 'node_modules', 'node-pty');
  const src = `'use strict';
const vscode = require('vscode');
const fs = require('fs');
const path = require('path');
const PROBE_FILE = ${JSON.stringify(probeFile)};
const REPO_PTY = ${JSON.stringify(repoPty)};

function candidates() {
  return [
    ['bundled', path.join(vscode.env.appRoot, 'node_modules', 'node-pty')],
    ['repo', REPO_PTY],
    ['bare', 'node-pty'],
  ];
}

function runPty(pty) {
  return new Promise((resolve) => {
    let out = '';
    const p = pty.spawn('/bin/sh', ['-c', 'echo pty-ok; tty'], { name: 'xterm', cols: 80, rows: 24, cwd: '/', env: process.env });
    const timer = setTimeout(() => { try { p.kill(); } catch {} resolve({ out, timeout: true }); }, 5000);
    p.onData((d) => { out += d; });
    p.onExit((e) => { clearTimeout(timer); resolve({ out, exit: e.exitCode }); });
  });
}

async function probe() {
  const result = {
    node: process.version, modules: process.versions.modules, napi: process.versions.napi,
    execPath: process.execPath, appRoot: vscode.env.appRoot, attempts: [],
  };
  for (const [name, p] of candidates()) {
    const a = { name, path: p };
    try {
      a.resolved = require.resolve(p);
      const pty = require(p);
      a.loaded = true;
      Object.assign(a, await runPty(pty));
    } catch (e) {
      a.error = String(e && e.message || e).split('\\n')[0];
    }
    result.attempts.push(a);
  }
  fs.writeFileSync(PROBE_FILE, JSON.stringify(result, null, 2));
  vscode.window.showInformationMessage('Spike probe written');
}

// A terminal backed by node-pty through a Pseudoterminal, as the product will do.
function ptyTerminal() {
  let pty;
  for (const [, p] of candidates()) { try { pty = require(p); break; } catch {} }
  if (!pty) { vscode.window.showErrorMessage('Spike: no node-pty'); return; }
  const write = new vscode.EventEmitter();
  const close = new vscode.EventEmitter();
  let proc;
  const term = vscode.window.createTerminal({ name: 'Spike PTY', pty: {
    onDidWrite: write.event,
    onDidClose: close.event,
    open: (dim) => {
      proc = pty.spawn('/bin/bash', ['--norc', '--noprofile', '-i'], {
        name: 'xterm-256color', cols: dim ? dim.columns : 80, rows: dim ? dim.rows : 24,
        cwd: '/', env: { ...process.env, PS1: 'spike$ ' },
      });
      proc.onData((d) => write.fire(d));
      proc.onExit(() => close.fire());
    },
    close: () => { try { proc && proc.kill(); } catch {} },
    handleInput: (d) => proc && proc.write(d),
    setDimensions: (d) => proc && proc.resize(d.columns, d.rows),
  } });
  term.show();
}

exports.activate = (ctx) => {
  ctx.subscriptions.push(
    vscode.commands.registerCommand('spike.hello', () => vscode.window.showInformationMessage('Hello from the spike')),
    vscode.commands.registerCommand('spike.ptyProbe', probe),
    vscode.commands.registerCommand('spike.ptyTerminal', ptyTerminal),
    vscode.window.createTreeView('spike.tree', { treeDataProvider: {
      getChildren: (e) => e ? [] : ['alpha', 'beta'],
      getTreeItem: (s) => new vscode.TreeItem(s),
    } }),
  );
};
exports.deactivate = () => {};
`;
  writeFileSync(join(dir, 'extension.js'), src);
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function readTerminalUntil(page: PwPage, re: RegExp): Promise<string> {
  return waitFor(`terminal text ${re}`, async () => {
    const t = await terminalText(page);
    return re.test(t) ? t : undefined;
  });
}

async function main(): Promise<void> {
  const tools = findTools();
  if ('missing' in tools) {
    console.log(`skip: ${tools.missing}`);
    return;
  }
  mkdirSync(shots, { recursive: true });
  // Extra settings for experiments, e.g. '{"terminal.integrated.gpuAcceleration":"auto"}'.
  const settings = JSON.parse(process.env.SPIKE_SETTINGS ?? '{}') as Record<string, unknown>;
  const tmp = mkdtempSync(join(tmpdir(), 'tcplab-e2e-spike-'));
  const extDir = join(tmp, 'ext');
  const dataDir = join(tmp, 'data');
  const extensionsDir = join(tmp, 'extensions');
  const workspace = join(tmp, 'ws');
  const probeFile = join(tmp, 'probe.json');
  mkdirSync(workspace);
  writeFileSync(join(workspace, 'hello.txt'), 'hello\n');
  let server: CodeServer | undefined;
  let wb: Workbench | undefined;
  try {
    writeExtension(extDir, probeFile);
    const vsix = join(tmp, 'spike.vsix');
    await step('vsce package', async () => {
      await execFileP(
        tools.node,
        [tools.vsce, 'package', '--no-dependencies', '--allow-missing-repository', '--skip-license', '-o', vsix],
        { cwd: extDir, timeout: 120_000 },
      );
    });
    const inst = await step('install vsix', () => installVsix(vsix, { dataDir, extensionsDir }));
    console.log(`  ${inst.trim().replace(/\n/g, '\n  ')}`);
    server = await step('start code-server', () => startCodeServer({ dataDir, extensionsDir, workspace, settings }));
    console.log(`  url ${server.url}`);
    wb = await step('open workbench', () => openWorkbench(server!.url));
    const page = wb.page;
    page.on('pageerror', (e) => console.log(`  pageerror: ${e.message}`));
    await step('extension registered (activity-bar icon shows)', () =>
      activityItem(page, 'Spike Lab').waitFor({ state: 'visible', timeout: 30_000 }),
    );
    await page.screenshot({ path: join(shots, '01-workbench.png') });

    await step('command palette: Spike: Hello + notification', async () => {
      await runCommand(page, 'Spike: Hello');
      await page
        .locator('.notifications-toasts .notification-toast')
        .filter({ hasText: 'Hello from the spike' })
        .waitFor({ state: 'visible', timeout: 15_000 });
    });
    await page.screenshot({ path: join(shots, '02-notification.png') });

    await step('activity bar: open Spike Lab, tree rows visible', async () => {
      await activityItem(page, 'Spike Lab').click({ timeout: 10_000 });
      await page
        .locator('.pane-body .monaco-list-row')
        .filter({ hasText: 'alpha' })
        .waitFor({ state: 'visible', timeout: 15_000 });
    });
    await page.screenshot({ path: join(shots, '03-tree.png') });

    const termText = await step('terminal: create, echo hi, read back', async () => {
      await runCommand(page, 'Terminal: Create New Terminal');
      await page.locator('.terminal-wrapper.active .xterm-rows').waitFor({ state: 'attached', timeout: 15_000 });
      // The shell prints its prompt first; typing before it shows can be lost to line editing.
      await waitFor('shell prompt', async () => ((await terminalText(page)).trim() ? true : undefined));
      await page.keyboard.type('echo hi\n');
      return readTerminalUntil(page, /^hi$/m);
    });
    console.log(`  terminal text:\n${termText.replace(/\n+$/, '').replace(/^/gm, '    | ')}`);
    await page.screenshot({ path: join(shots, '04-terminal.png') });

    const probe = await step('node-pty probe in the extension host', async () => {
      await runCommand(page, 'Spike: Probe node-pty');
      return waitFor('probe file', async () =>
        existsSync(probeFile) ? (JSON.parse(readFileSync(probeFile, 'utf8')) as unknown) : undefined,
      );
    });
    console.log(`  probe: ${JSON.stringify(probe, null, 2).replace(/\n/g, '\n  ')}`);

    const ptyText = await step('Pseudoterminal + node-pty: echo via-pty, read back', async () => {
      await runCommand(page, 'Spike: PTY Terminal');
      await readTerminalUntil(page, /spike\$/);
      await page.keyboard.type('echo via-$((40+2))\n');
      return readTerminalUntil(page, /^via-42$/m);
    });
    console.log(`  pty terminal text:\n${ptyText.replace(/\n+$/, '').replace(/^/gm, '    | ')}`);
    await page.screenshot({ path: join(shots, '05-pty-terminal.png') });
  } catch (e) {
    if (wb) await wb.page.screenshot({ path: join(shots, 'failure.png') }).catch(() => undefined);
    if (server) console.log(`code-server output:\n${server.output()}`);
    throw e;
  } finally {
    if (wb) await step('close browser', () => wb!.close());
    if (server) {
      const pid = server.pid;
      const before = processTree(pid).length;
      await step('stop code-server', () => server!.stop());
      const left = processTree(pid).filter((p) => {
        try {
          process.kill(p, 0);
          return true;
        } catch {
          return false;
        }
      });
      console.log(`  process tree before stop: ${before}, alive after: ${left.length}`);
      // Anything still holding the temp dir in its argv was started by this run.
      const { stdout } = await execFileP('ps', ['-eo', 'pid,args']);
      const strays = stdout.split('\n').filter((l) => l.includes(tmp));
      console.log(`  processes mentioning ${tmp}: ${strays.length}`);
      for (const s of strays) console.log(`    ${s}`);
    }
    rmSync(tmp, { recursive: true, force: true });
    console.log('timings (ms):');
    for (const [n, ms] of timings) console.log(`  ${String(ms).padStart(6)}  ${n}`);
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
