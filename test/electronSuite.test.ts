/**
 * The extension in a real VS Code desktop (test/electron/). It needs VS Code (downloaded, or
 * TCPLAB_VSCODE_EXECUTABLE), @vscode/test-electron and a display (real, or xvfb-run). Where one
 * is missing the test skips and says which, and how that was found; every probe is bounded.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import { request, type Agent } from 'node:https';
import { createRequire } from 'node:module';
import { delimiter, join } from 'node:path';
import { ROOT } from './support/lab';

/** What `downloadAndUnzipVSCode` asks first, on the same host. */
const UPDATE_URL = 'https://update.code.visualstudio.com/api/update/linux-x64/stable/latest';
const PROBE_MS = 5000;
const RUN_MS = 10 * 60_000;

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

function onPath(name: string): boolean {
  return (process.env.PATH ?? '').split(delimiter).some((dir) => dir && isExecutable(join(dir, name)));
}

/** The resolved @vscode/test-electron entry, or undefined when it is not installed. */
function testElectron(): string | undefined {
  try {
    return require.resolve('@vscode/test-electron');
  } catch {
    return undefined;
  }
}

/**
 * The proxy agent test-electron itself would download through (it reads only npm's proxy
 * settings), so that the probe takes the same road as the download.
 */
function proxyAgent(entry: string | undefined): Agent | undefined {
  const proxy = process.env.npm_config_https_proxy || process.env.npm_config_proxy;
  if (!proxy || !entry) return undefined;
  const { HttpsProxyAgent } = createRequire(entry)('https-proxy-agent') as { HttpsProxyAgent: new (url: string) => Agent };
  return new HttpsProxyAgent(proxy);
}

function describeNetError(e: NodeJS.ErrnoException): string {
  const code = e.code ?? '';
  if (code === 'PROBE_TIMEOUT') return e.message;
  if (/^(ENOTFOUND|EAI_AGAIN|EAI_FAIL|EAI_NONAME)$/.test(code)) return `DNS lookup failed (${e.message})`;
  if (/^(ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|EHOSTUNREACH)$/.test(code)) return `no TCP connection (${e.message})`;
  if (/CERT|SSL|TLS/.test(code)) return `TLS failed (${code}: ${e.message})`;
  return `${code ? `${code}: ` : ''}${e.message}`;
}

/** Why VS Code cannot be downloaded from here, or undefined when the update server answers. */
function probeUpdateServer(agent: Agent | undefined): Promise<string | undefined> {
  const started = performance.now();
  const after = () => `after ${Math.round(performance.now() - started)} ms`;
  const how = `GET ${UPDATE_URL}${agent ? ' through npm\'s proxy' : ''} (${PROBE_MS / 1000} s limit)`;
  return new Promise((resolve) => {
    const req = request(UPDATE_URL, { method: 'GET', agent }, (res) => {
      clearTimeout(timer);
      res.destroy(); // the status line is all we need
      const status = res.statusCode ?? 0;
      resolve(status >= 200 && status < 400 ? undefined : `${how}: HTTP ${status} ${res.statusMessage ?? ''} ${after()}`);
    });
    // One timer over DNS, connect, TLS and the first response byte: the socket timeout
    // option would not cover a slow getaddrinfo.
    const timer = setTimeout(() => {
      req.destroy(Object.assign(new Error(`no response within ${PROBE_MS / 1000} s`), { code: 'PROBE_TIMEOUT' }));
    }, PROBE_MS);
    req.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve(`${how}: ${describeNetError(e)} ${after()}`);
    });
    req.end();
  });
}

test('the extension in VS Code desktop (test/electron/suite.ts)', { timeout: RUN_MS + 30_000 }, async (t) => {
  const reasons: string[] = [];
  const given = process.env.TCPLAB_VSCODE_EXECUTABLE;
  if (given) assert.ok(isExecutable(given), `TCPLAB_VSCODE_EXECUTABLE=${given} is not an executable file`);
  const entry = testElectron();
  if (!given) {
    const unreachable = await probeUpdateServer(proxyAgent(entry));
    if (unreachable) reasons.push(`VS Code cannot be downloaded and TCPLAB_VSCODE_EXECUTABLE is unset: ${unreachable}`);
  }
  if (!entry) reasons.push('@vscode/test-electron is not installed (a devDependency: npm ci)');
  // Electron on Linux draws through X11; without a server, xvfb-run provides a virtual one.
  const wrapper = process.platform !== 'linux' || process.env.DISPLAY ? [] : onPath('xvfb-run') ? ['xvfb-run', '--auto-servernum'] : undefined;
  if (!wrapper) reasons.push('Electron needs a display: DISPLAY is unset and xvfb-run is not on PATH (apt-get install xvfb)');
  if (reasons.length) return t.skip(reasons.join('; '));

  const argv = [...wrapper!, process.execPath, '--import', 'tsx', join('test', 'electron', 'runTests.ts')];
  // Own process group: on a timeout the whole tree (Xvfb, Electron, the lab) goes at once.
  const child = spawn(argv[0]!, argv.slice(1), { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const killTree = () => {
    try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* gone already */ }
  };
  process.once('exit', killTree);
  let output = '';
  const keep = (d: Buffer) => {
    process.stderr.write(d);
    output = (output + d.toString('utf8')).slice(-16_000);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  let timedOut = false;
  const timer = setTimeout(() => { timedOut = true; killTree(); }, RUN_MS);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => {
    child.once('close', (c, s) => resolve([c, s]));
  });
  clearTimeout(timer);
  process.removeListener('exit', killTree);
  assert.ok(!timedOut, `runTests.ts did not finish within ${RUN_MS / 60_000} min:\n${output}`);
  assert.equal(code, 0, `runTests.ts exited with ${code ?? signal}:\n${output}`);
});
