// The live socket panel's page and messages, free of 'vscode': the HTML with its CSP, and a
// reading of ss turned into the `sockets` message. Tested in plain Node and in Chromium.
import { randomBytes } from 'node:crypto';
import { connectionKey, type SsSocket } from '../lab/ss';
import type { ParsedRow } from '../protocol';

/**
 * What one refresh may carry. ss pads each record to the widest (about 1 KB a socket with -i),
 * and the page lays the whole text out again at each refresh (the timers' time left changes):
 * measured in Chromium, 1.35 MB of text and 2,000 rows took about a second a frame, so a
 * refresh would outlast its interval. Past these, the page says what it cut.
 */
export const MAX_ROWS = 500;
export const MAX_RAW_CHARS = 300_000;

/** A fresh nonce for each render: a script the page did not ship cannot guess it. */
export function newNonce(): string {
  return randomBytes(18).toString('base64');
}

export interface PageParts {
  /** webview.cspSource: where the webview may load our resources from. */
  cspSource: string;
  /** webview.asWebviewUri of dist/webview/socketPanel.js. */
  scriptUri: string;
  nonce: string;
}

/**
 * The page: nothing but the CSP and the one script, which builds the panel. `default-src 'none'`
 * and a nonce: no other script, no connection, no frame. Inline styles are allowed because the
 * web components (Lit) fall back to <style> elements where constructable stylesheets are missing.
 */
export function panelHtml(p: PageParts): string {
  const csp = [
    `default-src 'none'`,
    `script-src 'nonce-${p.nonce}'`,
    `style-src ${p.cspSource} 'unsafe-inline'`,
    `font-src ${p.cspSource}`,
  ].join('; ');
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="${attr(csp)}">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>Live Sockets</title>
</head>
<body>
<script nonce="${attr(p.nonce)}" src="${attr(p.scriptUri)}"></script>
</body>
</html>
`;
}

function attr(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;');
}

/** The sockets as the table shows them; a second socket on one 4-tuple is `key#2`. */
export function toRows(sockets: readonly SsSocket[]): ParsedRow[] {
  const seen = new Set<string>();
  return sockets.map((s) => {
    const tuple = connectionKey(s);
    let key = tuple;
    for (let n = 2; seen.has(key); n++) key = `${tuple}#${n}`;
    seen.add(key);
    const d = s.details;
    return {
      key,
      state: s.state,
      local: endpoint(s.local),
      peer: endpoint(s.peer),
      recvQ: s.recvQ,
      sendQ: s.sendQ,
      timer: s.timer ? { kind: s.timer.kind, ms: s.timer.ms, count: s.timer.count } : null,
      rto: d?.rto ?? null,
      cwnd: d?.cwnd ?? null,
      retrans: d?.retransTotal ?? null,
      process: s.processes.map((p) => `${p.name}/${p.pid}`).join(', '),
    };
  });
}

function endpoint(e: SsSocket['local']): string {
  const host = e.family === 6 ? `[${e.address}]` : e.address;
  return `${host}${e.device ? `%${e.device}` : ''}:${e.port ?? '*'}`;
}

/**
 * What the page gets of one reading: at most MAX_ROWS rows and MAX_RAW_CHARS of text, cut at a
 * line's end, with a note saying so.
 */
export function forPanel(raw: string, sockets: readonly SsSocket[]): { raw: string; rows: ParsedRow[]; note?: string } {
  const notes: string[] = [];
  let text = raw;
  if (text.length > MAX_RAW_CHARS) {
    const end = text.lastIndexOf('\n', MAX_RAW_CHARS);
    text = text.slice(0, end < 0 ? MAX_RAW_CHARS : end + 1);
    notes.push(`the text is cut to its first ${text.length.toLocaleString('en')} of ${raw.length.toLocaleString('en')} characters`);
  }
  const shown = sockets.length > MAX_ROWS ? sockets.slice(0, MAX_ROWS) : sockets;
  if (shown.length < sockets.length) notes.push(`the table shows the first ${MAX_ROWS} of ${sockets.length} sockets`);
  return { raw: text, rows: toRows(shown), ...(notes.length ? { note: `${notes.join('; ')}: name a port or a process to see fewer` } : {}) };
}
