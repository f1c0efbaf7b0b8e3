/// <reference lib="dom" />
/**
 * The live socket panel's page (browser only, no Node APIs): on the left what ss printed, as a
 * terminal shows it; on the right the same sockets parsed into a table, rows that changed since
 * the last refreshes marked. The host does the reading; the page only draws and asks.
 */
import '@vscode-elements/elements/dist/vscode-button/index.js';
import '@vscode-elements/elements/dist/vscode-option/index.js';
import '@vscode-elements/elements/dist/vscode-single-select/index.js';
import '@vscode-elements/elements/dist/vscode-textfield/index.js';
import {
  INTERVAL_DEFAULT_MS, PID_MAX, PORT_MAX, unreachable,
  type FromWebview, type ParsedRow, type SocketTarget, type ToWebview,
} from '../src/protocol';
import { cells, COLUMNS, RowChanges } from './socketRows';
import { PANEL_CSS } from './socketPanelStyle';

declare function acquireVsCodeApi(): { postMessage(message: unknown): void };

const vscode = acquireVsCodeApi();
const post = (m: FromWebview) => vscode.postMessage(m);

const INTERVALS = [100, 250, 500, 1000, 2000, 5000];

// The page: built here so the markup and the code that fills it stay together. No data goes
// through innerHTML: ss's text and process names are set as text.
const style = document.createElement('style');
style.textContent = PANEL_CSS;
document.head.append(style);
document.body.innerHTML = `
<header class="bar">
  <vscode-single-select id="kind" aria-label="Whose sockets">
    <vscode-option value="lab">The lab</vscode-option>
    <vscode-option value="port">A port</vscode-option>
    <vscode-option value="pid">A process</vscode-option>
  </vscode-single-select>
  <vscode-textfield id="value" aria-label="Port or process id" placeholder="port or pid, then Enter" disabled></vscode-textfield>
  <vscode-button id="pause" secondary>Pause</vscode-button>
  <label for="interval" class="muted">every</label>
  <vscode-single-select id="interval" aria-label="Refresh every">
    ${INTERVALS.map((ms) => `<vscode-option value="${ms}">${ms < 1000 ? `${ms} ms` : `${ms / 1000} s`}</vscode-option>`).join('')}
  </vscode-single-select>
  <span id="status" class="muted" aria-live="polite"></span>
</header>
<div id="input-error" class="error" role="alert" hidden></div>
<div id="where" class="muted"></div>
<div id="note" class="note" hidden></div>
<div id="error" class="error big" role="alert" hidden></div>
<main class="panes">
  <section class="raw" aria-label="ss output">
    <div id="command" class="command"></div>
    <pre id="raw" tabindex="0"></pre>
  </section>
  <section class="parsed" aria-label="Parsed sockets">
    <table id="rows">
      <thead><tr></tr></thead>
      <tbody></tbody>
    </table>
  </section>
</main>`;

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
type ValueElement = HTMLElement & { value: string; disabled: boolean; placeholder: string };
const kind = $<ValueElement>('kind');
const value = $<ValueElement>('value');
const pause = $('pause');
const interval = $<ValueElement>('interval');
const status = $('status');
const inputError = $('input-error');
const where = $('where');
const note = $('note');
const errorBox = $('error');
const command = $('command');
const raw = $('raw');
const tbody = document.querySelector('#rows tbody')!;
const headRow = document.querySelector('#rows thead tr')!;
for (const c of COLUMNS) {
  const th = document.createElement('th');
  th.textContent = c.title;
  th.title = c.tip;
  if (c.num) th.className = 'num';
  headRow.append(th);
}
interval.value = String(INTERVAL_DEFAULT_MS);

let paused = false;
/** The last refresh as the status line says it; "paused" goes in front while paused. */
let statusParts: string[] = [];
let lastTarget = '';
/** The user chose a port or a process and has not sent it yet: refreshes leave the choice alone. */
let choosing = false;
const changes = new RowChanges();

function renderStatus(): void {
  status.textContent = [paused ? 'paused' : '', ...statusParts].filter(Boolean).join(' · ');
}

function showInputError(text: string): void {
  inputError.textContent = text;
  inputError.hidden = !text;
}

function askTarget(): void {
  const k = kind.value;
  if (k === 'lab') {
    showInputError('');
    choosing = false;
    post({ type: 'setTarget', target: { kind: 'lab' } });
    return;
  }
  const text = value.value.trim();
  // `:7000`, as ss writes a port, is a port whatever the kind says.
  const asPort = k === 'port' || text.startsWith(':');
  const digits = asPort ? text.replace(/^:/, '') : text;
  const n = /^\d{1,7}$/.test(digits) ? Number(digits) : NaN;
  const max = asPort ? PORT_MAX : PID_MAX;
  if (!(n >= 1 && n <= max)) {
    showInputError(asPort ? `a port is a number from 1 to ${PORT_MAX}` : `a process id is a number from 1 to ${PID_MAX}`);
    return;
  }
  showInputError('');
  choosing = false;
  post({ type: 'setTarget', target: asPort ? { kind: 'port', port: n } : { kind: 'pid', pid: n } });
}

function showKind(k: string): void {
  value.disabled = k === 'lab';
  value.placeholder = k === 'port' ? 'a port, then Enter' : k === 'pid' ? 'a process id, then Enter' : 'port or pid, then Enter';
}

kind.addEventListener('change', () => {
  const k = kind.value;
  showKind(k);
  if (k === 'lab') askTarget();
  else {
    choosing = true;
    value.focus();
  }
});
value.addEventListener('keydown', (e) => {
  if ((e as KeyboardEvent).key === 'Enter') askTarget();
});
pause.addEventListener('click', () => post({ type: 'pause', paused: !paused }));
interval.addEventListener('change', () => {
  const ms = Number(interval.value);
  if (INTERVALS.includes(ms)) post({ type: 'setInterval', ms });
});

/** The controls follow what the host shows, except a field the user is typing in. */
function syncControls(t: SocketTarget, pollMs: number): void {
  const key = JSON.stringify(t);
  if (key !== lastTarget) {
    lastTarget = key;
    changes.reset();
  }
  if (interval.value !== String(pollMs) && INTERVALS.includes(pollMs)) interval.value = String(pollMs);
  if (choosing) return;
  if (kind.value !== t.kind) kind.value = t.kind;
  showKind(t.kind);
  if (document.activeElement !== value) value.value = t.kind === 'port' ? String(t.port) : t.kind === 'pid' ? String(t.pid) : '';
}

function showSockets(m: Extract<ToWebview, { type: 'sockets' }>): void {
  const t0 = performance.now();
  syncControls(m.target, m.pollMs);
  where.textContent = m.where ?? '';
  command.textContent = m.command ? `$ ${m.command}` : '';
  note.textContent = m.note ?? '';
  note.hidden = !m.note;
  errorBox.textContent = m.error ?? '';
  errorBox.hidden = !m.error;
  // Exactly what ss printed: text, not markup, so the <pre> reads as a terminal would show it.
  if (raw.textContent !== m.raw) raw.textContent = m.raw;
  const now = m.t;
  // A refresh that read nothing (no lab, ss failed) is no baseline: after it, nothing is "new".
  if (m.error) changes.reset();
  const counts = m.error ? { added: 0, changed: 0, gone: 0 } : changes.update(m.rows, now);
  drawRows(m.rows, now);
  const time = new Date(m.t).toLocaleTimeString('en-GB', { hour12: false }) + `.${String(m.t % 1000).padStart(3, '0')}`;
  statusParts = [
    `refreshed ${time}`,
    m.tookMs !== undefined ? `read in ${m.tookMs} ms` : '',
    m.error ? '' : `${m.rows.length} socket${m.rows.length === 1 ? '' : 's'}`,
    counts.added ? `${counts.added} new` : '',
    counts.changed ? `${counts.changed} changed` : '',
    counts.gone ? `${counts.gone} gone` : '',
  ];
  renderStatus();
  document.body.dataset.renderMs = (performance.now() - t0).toFixed(2);
}

/** The table's rows by key, kept between refreshes: most refreshes change a few cells, not the rows. */
const rowElements = new Map<string, HTMLTableRowElement>();

function drawRows(rows: ParsedRow[], now: number): void {
  const trs: HTMLTableRowElement[] = [];
  const present = new Set<string>();
  for (const r of rows) {
    present.add(r.key);
    let tr = rowElements.get(r.key);
    if (!tr) {
      tr = document.createElement('tr');
      tr.dataset.key = r.key;
      for (let i = 0; i < COLUMNS.length; i++) tr.append(document.createElement('td'));
      rowElements.set(r.key, tr);
    }
    // Marked while fresh: "changed since the previous refresh", held a little so it can be seen.
    const { mark, fields } = changes.mark(r.key, now);
    if (tr.className !== mark) tr.className = mark;
    const text = cells(r);
    COLUMNS.forEach((col, i) => {
      const td = tr.cells[i]!;
      const value = text[col.field];
      if (td.textContent !== value) td.textContent = value;
      const cls = [col.num ? 'num' : '', col.field === 'state' ? `state ${r.state}` : '', fields.has(col.field) ? 'diff' : ''].filter(Boolean).join(' ');
      if (td.className !== cls) td.className = cls;
    });
    trs.push(tr);
  }
  for (const key of rowElements.keys()) if (!present.has(key)) rowElements.delete(key);
  const children = tbody.children;
  if (children.length !== trs.length || trs.some((tr, i) => children[i] !== tr)) tbody.replaceChildren(...trs);
}

let latest: Extract<ToWebview, { type: 'sockets' }> | null = null;

window.addEventListener('message', (event: MessageEvent) => {
  const m = event.data as ToWebview;
  switch (m.type) {
    case 'sockets':
      // Drawn at the next frame, the latest only: a page slower than the refresh (a busy
      // machine, hundreds of sockets) skips readings instead of falling behind them.
      if (!latest) requestAnimationFrame(() => { const next = latest!; latest = null; showSockets(next); });
      latest = m;
      return;
    case 'paused':
      paused = m.paused;
      pause.textContent = paused ? 'Resume' : 'Pause';
      renderStatus();
      return;
    case 'refused':
      showInputError(m.message);
      return;
    default:
      unreachable(m);
  }
});

post({ type: 'ready' });
