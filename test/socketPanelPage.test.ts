/**
 * The live socket panel's page in headless Chromium: the page the host serves (its CSP, its
 * nonce) with the bundle built from webview/socketPanel.ts, VS Code's Dark Modern colours as the
 * theme variables, and a stand-in for acquireVsCodeApi that records what the page posts. The
 * sockets are two real `ss -tanoiep` captures from a lab (src/lab/fixtures/ss-tanoiep-panel-*),
 * a refresh apart: 10 more bytes arrived and a new connection opened in between.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as esbuild from 'esbuild';
import { parseSs } from '../src/lab/ss';
import type { ToWebview } from '../src/protocol';
import { forPanel, MAX_RAW_CHARS, MAX_ROWS, newNonce, panelHtml } from '../src/vscode/socketPanelPage';
import { CHROMIUM, CHROMIUM_ARGS, E2E_DIR, findTools } from './e2e/codeServer';
import { ROOT } from './support/lab';

const ORIGIN = 'https://webview.test';
const fixture = (n: number) => readFileSync(join(ROOT, 'src', 'lab', 'fixtures', `ss-tanoiep-panel-${n}.txt`), 'utf8');

// The slice of playwright-core used here (imported by path at run time, as the e2e tests do).
interface Locator {
  click(): Promise<void>;
  fill(text: string): Promise<void>;
  press(key: string): Promise<void>;
  textContent(): Promise<string | null>;
  waitFor(o?: { state?: 'visible' | 'attached' }): Promise<void>;
}
interface Route {
  request(): { url(): string };
  fulfill(o: { status?: number; contentType: string; body: string }): Promise<void>;
}
interface Page {
  route(url: string, handler: (route: Route) => Promise<void>): Promise<void>;
  addInitScript(script: string): Promise<void>;
  goto(url: string): Promise<unknown>;
  locator(selector: string): Locator;
  evaluate<T, A>(fn: (arg: A) => T | Promise<T>, arg: A): Promise<T>;
  waitForFunction(expression: string, arg?: unknown, o?: { timeout?: number }): Promise<unknown>;
  setViewportSize(size: { width: number; height: number }): Promise<void>;
  screenshot(o: { path: string; fullPage?: boolean }): Promise<unknown>;
  on(ev: 'console', fn: (m: { type(): string; text(): string }) => void): void;
  on(ev: 'pageerror', fn: (e: Error) => void): void;
}
interface Browser {
  newPage(o?: { viewport?: { width: number; height: number } }): Promise<Page>;
  close(): Promise<void>;
}

/** playwright-core and Chromium from the e2e cache, or why the test cannot run. */
function tools(): { playwrightCore: string; chromium: string } | string {
  const all = findTools();
  // The page needs only these two of the e2e tools (not code-server nor vsce).
  const found = 'missing' in all ? { playwrightCore: join(E2E_DIR, 'tools/node_modules/playwright-core'), chromium: CHROMIUM } : all;
  for (const [name, path] of Object.entries(found)) if (!existsSync(path)) return `${name} not found at ${path} (run test/e2e/setup.sh as root)`;
  return found;
}

/**
 * The theme variables VS Code sets on a webview's <html>: each colour of the theme as
 * --vscode-<id with dots as dashes>, and the fonts. The colours are Dark Modern's, read from the
 * VS Code that code-server ships, following its `include` chain.
 */
function darkModern(): string {
  const dir = join(E2E_DIR, 'tools/node_modules/code-server/lib/vscode/extensions/theme-defaults/themes');
  const colors: Record<string, string> = {};
  const load = (file: string) => {
    const theme = JSON.parse(readFileSync(join(dir, file), 'utf8')) as { include?: string; colors?: Record<string, string> };
    if (theme.include) load(theme.include);
    Object.assign(colors, theme.colors);
  };
  if (existsSync(join(dir, 'dark_modern.json'))) load('dark_modern.json');
  else Object.assign(colors, { 'editor.background': '#1F1F1F', foreground: '#CCCCCC', 'descriptionForeground': '#9D9D9D', 'panel.border': '#2B2B2B' });
  const vars = Object.entries(colors).map(([id, v]) => `--vscode-${id.replaceAll('.', '-')}: ${v}`);
  vars.push(
    `--vscode-font-family: -apple-system, BlinkMacSystemFont, "Segoe WPC", "Segoe UI", "Ubuntu", "Droid Sans", sans-serif`,
    '--vscode-font-size: 13px',
    `--vscode-editor-font-family: "Droid Sans Mono", "monospace", monospace`,
    '--vscode-editor-font-size: 14px',
  );
  return vars.join('; ').replaceAll('"', '&quot;');
}

/** What the test asks of the page, run in it (the repo's types have no DOM: the code is a string). */
interface InPage {
  posted(): unknown[];
  /** Delivers a host message as VS Code does (a message event); resolves once the page has drawn it. */
  send(m: ToWebview): Promise<void>;
  /** The same, resolving with the ms until the next frame was painted (script, style, layout). */
  frame(m: ToWebview): Promise<number>;
  table(): { key: string; cls: string; cells: string[]; diff: number[] }[];
  renderMs(): number;
  /** Several host messages in one task, then the next frame. */
  burst(ms: ToWebview[]): Promise<void>;
  /** How many refreshes the page has drawn. */
  draws(): number;
  /** The value of a control (a web component's `value`). */
  fieldValue(id: string): string;
  /** Whether the table is below the text. */
  stacked(): boolean;
}

// The stand-in for VS Code: acquireVsCodeApi is defined before the page's scripts run.
const IN_PAGE = `
window.__posted = [];
window.acquireVsCodeApi = () => ({ postMessage: (m) => window.__posted.push(m), getState() {}, setState() {} });
window.posted = () => window.__posted;
// This listener is added after the page's, so it runs after it; the page draws at the next frame.
window.send = (m) => new Promise((done) => {
  window.addEventListener('message', () => requestAnimationFrame(() => setTimeout(done, 0)), { once: true });
  window.postMessage(m, '*');
});
window.frame = (m) => new Promise((done) => {
  const t0 = performance.now();
  window.addEventListener('message', () => requestAnimationFrame(() => setTimeout(() => done(performance.now() - t0), 0)), { once: true });
  window.postMessage(m, '*');
});
window.table = () => [...document.querySelectorAll('#rows tbody tr')].map((tr) => ({
  key: tr.dataset.key, cls: tr.className, cells: [...tr.querySelectorAll('td')].map((td) => td.textContent),
  diff: [...tr.querySelectorAll('td.diff')].map((td) => td.cellIndex),
}));
window.renderMs = () => Number(document.body.dataset.renderMs);
window.burst = (ms) => new Promise((done) => { for (const m of ms) window.postMessage(m, '*'); setTimeout(() => requestAnimationFrame(() => setTimeout(done, 0)), 0); });
window.__draws = 0;
document.addEventListener('DOMContentLoaded', () => new MutationObserver((records) => { window.__draws += records.length; })
  .observe(document.body, { attributes: true, attributeFilter: ['data-render-ms'] }));
window.draws = () => window.__draws;
window.fieldValue = (id) => document.getElementById(id).value;
window.stacked = () => document.querySelector('.parsed').getBoundingClientRect().top >= document.querySelector('.raw').getBoundingClientRect().bottom;
`;

function socketsMessage(raw: string, t: number): ToWebview {
  const shown = forPanel(raw, parseSs(raw).sockets);
  return {
    type: 'sockets', target: { kind: 'lab' }, raw: shown.raw, rows: shown.rows, t, pollMs: 500, tookMs: 4.2,
    command: 'nsenter --target 4242 --net --pid --mount -- ss -tanoiep', where: 'inside the lab (root, namespace init pid 4242; pids as the lab sees them)',
  };
}

test('the socket panel page: raw ss text exactly, parsed rows, changes marked, and what it posts', async (t) => {
  const found = tools();
  if (typeof found === 'string') return t.skip(found);
  const out = mkdtempSync(join(tmpdir(), 'tcplab-socket-panel-'));
  t.after(() => rmSync(out, { recursive: true, force: true }));
  // The bundle as esbuild.mjs builds it (browser, IIFE), from the current source.
  await esbuild.build({
    entryPoints: [join(ROOT, 'webview/socketPanel.ts')], bundle: true, platform: 'browser', format: 'iife',
    target: 'chrome114', minify: true, outfile: join(out, 'socketPanel.js'), logLevel: 'warning',
  });
  const script = readFileSync(join(out, 'socketPanel.js'), 'utf8');
  const nonce = newNonce();
  const html = panelHtml({ cspSource: ORIGIN, scriptUri: `${ORIGIN}/socketPanel.js`, nonce })
    .replace('<html lang="en">', `<html lang="en" style="${darkModern()}">`);

  const { chromium } = (await import(pathToFileURL(join(found.playwrightCore, 'index.mjs')).href)) as {
    chromium: { launch(o: { executablePath: string; headless: boolean; args: string[] }): Promise<Browser> };
  };
  const browser = await chromium.launch({ executablePath: found.chromium, headless: true, args: CHROMIUM_ARGS });
  t.after(() => browser.close());
  const page = await browser.newPage({ viewport: { width: 1500, height: 560 } });
  const problems: string[] = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`); });
  await page.route(`${ORIGIN}/**`, async (route) => {
    const url = route.request().url();
    if (url.endsWith('/socketPanel.js')) await route.fulfill({ contentType: 'text/javascript', body: script });
    else if (url === `${ORIGIN}/` || url.endsWith('/index.html')) await route.fulfill({ contentType: 'text/html', body: html });
    else await route.fulfill({ status: 404, contentType: 'text/plain', body: 'not here' });
  });
  // VS Code's webview defines acquireVsCodeApi before the page's scripts run.
  await page.addInitScript(IN_PAGE);
  await page.goto(`${ORIGIN}/index.html`);
  const inPage = <K extends keyof InPage>(name: K, arg?: Parameters<InPage[K]>[0]) =>
    page.evaluate<unknown, [string, unknown]>(([n, a]) => (globalThis as unknown as Record<string, (x: unknown) => unknown>)[n]!(a), [name, arg]) as Promise<Awaited<ReturnType<InPage[K]>>>;
  const posted = () => inPage('posted');
  await page.waitForFunction('window.__posted.length > 0');
  assert.deepEqual(await posted(), [{ type: 'ready' }], 'the page says it is ready first, and nothing else');
  // Readings that arrive faster than the page draws: only the latest is drawn.
  const burst = Array.from({ length: 10 }, (_, i) => socketsMessage(fixture(2 - (i % 2)), i + 1));
  await inPage('burst', burst);
  assert.equal(await page.locator('#raw').textContent(), fixture(1), 'the last reading is the one shown');
  const draws = await inPage('draws');
  assert.ok(draws >= 1 && draws < 10, `10 readings in one go, ${draws} drawn`);

  const send = (m: ToWebview) => inPage('send', m);
  const first = socketsMessage(fixture(1), Date.UTC(2025, 0, 1, 12, 0, 0, 0));
  await send(first);
  await page.waitForFunction(`document.querySelectorAll('#rows tbody tr').length > 0`);
  assert.equal(await page.locator('#raw').textContent(), fixture(1), 'the <pre> holds exactly what ss printed');
  const table = () => inPage('table');
  const rows1 = await table();
  assert.deepEqual(rows1.map((r) => r.cells), [
    ['LISTEN', '127.0.0.1:7000', '0.0.0.0:*', '0', '128', '', '', '', '', '10', '', 'python3/3'],
    ['ESTAB', '127.0.0.1:7000', '127.0.0.1:48024', '10', '0', '', '', '', '204', '10', '', 'python3/3'],
    ['ESTAB', '127.0.0.1:48024', '127.0.0.1:7000', '0', '0', '', '', '', '204', '11', '', 'python3/3'],
  ]);
  assert.ok(rows1.every((r) => r.cls === ''), 'the first refresh marks nothing');
  assert.match(await page.locator('#command').textContent() ?? '', /^\$ nsenter .* -- ss -tanoiep$/);

  const second = socketsMessage(fixture(2), first.type === 'sockets' ? first.t + 500 : 0);
  await send(second);
  await page.waitForFunction(`document.querySelectorAll('#rows tbody tr').length === 5`);
  assert.equal(await page.locator('#raw').textContent(), fixture(2));
  const rows2 = await table();
  const at = (key: string) => rows2.find((r) => r.key === key)!;
  const accepted = at('127.0.0.1:7000>127.0.0.1:48024');
  assert.equal(accepted.cls, 'changed', '10 more bytes waiting: changed');
  assert.deepEqual(accepted.diff, [3], 'the Recv-Q cell is the one marked');
  assert.equal(accepted.cells[3], '20');
  assert.equal(at('127.0.0.1:7000>0.0.0.0:*').cls, 'changed', 'the listener: a connection waiting for accept (Recv-Q 1)');
  assert.equal(at('127.0.0.1:48038>127.0.0.1:7000').cls, 'new');
  assert.deepEqual(at('127.0.0.1:48038>127.0.0.1:7000').cells.slice(5, 8), ['keepalive', '119 min 0 s', '0']);
  assert.equal(at('127.0.0.1:7000>127.0.0.1:48038').cls, 'new');
  assert.equal(at('127.0.0.1:48024>127.0.0.1:7000').cls, 'changed', 'the client: its cwnd grew');
  assert.match(await page.locator('#status').textContent() ?? '', /5 sockets · 2 new · 3 changed/);
  const renderMs = await inPage('renderMs');
  mkdirSync(join(ROOT, 'test-output', 'webview'), { recursive: true });
  await page.screenshot({ path: join(ROOT, 'test-output', 'webview', 'socket-panel.png') });

  // The user names a port: choose "A port", type it, Enter.
  await page.locator('#kind').click();
  await page.locator('#kind li[role="option"] >> text=A port').click();
  // A refresh (still of the lab) arrives while the user is choosing: the choice stays.
  await send(second);
  assert.equal(await inPage('fieldValue', 'kind'), 'port');
  assert.equal(await inPage('fieldValue', 'value'), '', 'and the field is not refilled');
  await page.locator('#value input').fill('70000');
  await page.locator('#value input').press('Enter');
  assert.match(await page.locator('#input-error').textContent() ?? '', /a port is a number from 1 to 65535/);
  await page.locator('#value input').fill('7000');
  await page.locator('#value input').press('Enter');
  await page.locator('#pause').click();
  assert.deepEqual((await posted()).slice(1), [
    { type: 'setTarget', target: { kind: 'port', port: 7000 } },
    { type: 'pause', paused: true },
  ], 'an out-of-range port is not sent; the good one is, then the pause');
  await send({ type: 'paused', paused: true });
  assert.equal(await page.locator('#pause').textContent(), 'Resume');
  await send({ type: 'sockets', target: { kind: 'lab' }, raw: '', rows: [], t: Date.now(), pollMs: 500, error: 'no lab is running: start a scenario, or name a port or a process' });
  assert.equal(await page.locator('#error').textContent(), 'no lab is running: start a scenario, or name a port or a process');
  assert.equal(await page.locator('#raw').textContent(), '');

  // Narrow: the table goes under the text.
  await send(second);
  await page.setViewportSize({ width: 760, height: 900 });
  const stacked = await inPage('stacked');
  assert.ok(stacked, 'on a narrow panel the table is below the text');
  await page.screenshot({ path: join(ROOT, 'test-output', 'webview', 'socket-panel-narrow.png') });

  // The refresh cost in the page: the script's part (renderMs), and the whole frame (message to
  // the next frame painted: script, style, layout), for the real 5 sockets and for the most a
  // refresh may carry (MAX_ROWS rows, ~1 MB of text).
  const frame = (m: ToWebview) => inPage('frame', m);
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const small = { script: [] as number[], frame: [] as number[] };
  for (let i = 0; i < 40; i++) {
    small.frame.push(await frame(socketsMessage(fixture(1 + (i % 2)), Date.now())));
    small.script.push(await inPage('renderMs'));
  }
  // 2,000 sockets as the host would post them: cut to MAX_ROWS rows and MAX_RAW_CHARS of text.
  const bigRaw = fixture(2).repeat(400);
  const big = forPanel(bigRaw, parseSs(bigRaw).sockets);
  assert.equal(big.rows.length, MAX_ROWS);
  assert.ok(big.raw.length <= MAX_RAW_CHARS && bigRaw.startsWith(big.raw) && big.raw.endsWith('\n'), 'cut at the end of a line');
  assert.match(big.note ?? '', /first 500 of 2000 sockets/);
  const large = { script: [] as number[], frame: [] as number[] };
  for (let i = 0; i < 6; i++) {
    // Each refresh, one row in 7 changes, and the text too (as the timers' time left does).
    const rows = big.rows.map((r, k) => ({ ...r, recvQ: r.recvQ + (k % 7 === i % 7 ? 1 : 0) }));
    large.frame.push(await frame({ type: 'sockets', target: { kind: 'lab' }, raw: big.raw.replace('LISTEN', i % 2 ? 'LISTEN' : 'LISTEn'), rows, t: Date.now(), pollMs: 500, note: big.note }));
    large.script.push(await inPage('renderMs'));
  }
  t.diagnostic(`page refresh, median: 5 sockets ${median(small.script).toFixed(1)} ms script, ${median(small.frame).toFixed(1)} ms to the next frame; ` +
    `${MAX_ROWS} rows (1 in 7 changed) and ${(big.raw.length / 1e3).toFixed(0)} kB of text ${median(large.script).toFixed(0)} ms script, ${median(large.frame).toFixed(0)} ms to the next frame (first changed refresh: ${renderMs} ms script)`);
  assert.deepEqual(problems, [], 'no CSP refusal, no error in the page');
});
