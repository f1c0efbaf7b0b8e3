import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseSs } from '../lab/ss';
import { forPanel, MAX_RAW_CHARS, MAX_ROWS, newNonce, panelHtml, toRows } from './socketPanelPage';

const fixture = (name: string) => readFileSync(join(__dirname, '..', 'lab', 'fixtures', name), 'utf8');

test('the page: a CSP from default-src none, one script with a fresh nonce, nothing else', () => {
  const nonce = newNonce();
  assert.notEqual(nonce, newNonce(), 'a fresh nonce per render');
  assert.match(nonce, /^[A-Za-z0-9+/]{24}$/);
  const html = panelHtml({ cspSource: 'https://x.vscode-cdn.net', scriptUri: 'https://x.vscode-cdn.net/dist/webview/socketPanel.js', nonce });
  const csp = html.match(/http-equiv="Content-Security-Policy" content="([^"]*)"/)?.[1];
  assert.equal(csp, `default-src 'none'; script-src 'nonce-${nonce}'; style-src https://x.vscode-cdn.net 'unsafe-inline'; font-src https://x.vscode-cdn.net`);
  assert.deepEqual([...html.matchAll(/<script[^>]*>/g)].map((m) => m[0]), [`<script nonce="${nonce}" src="https://x.vscode-cdn.net/dist/webview/socketPanel.js">`]);
  assert.doesNotMatch(panelHtml({ cspSource: 'a', scriptUri: 'x"><script>alert(1)</script>', nonce }), /<script>alert/, 'attributes are escaped');
});

test('rows: what the table shows of each socket, a second socket on one tuple told apart', () => {
  const rows = toRows(parseSs(fixture('ss-tanoiep-panel-2.txt')).sockets);
  assert.deepEqual(rows.map((r) => r.key), [
    '127.0.0.1:7000>0.0.0.0:*',
    '127.0.0.1:7000>127.0.0.1:48038',
    '127.0.0.1:7000>127.0.0.1:48024',
    '127.0.0.1:48024>127.0.0.1:7000',
    '127.0.0.1:48038>127.0.0.1:7000',
  ]);
  assert.deepEqual(rows[4], {
    key: '127.0.0.1:48038>127.0.0.1:7000', state: 'ESTAB', local: '127.0.0.1:48038', peer: '127.0.0.1:7000',
    recvQ: 0, sendQ: 0, timer: { kind: 'keepalive', ms: 119 * 60_000, count: 0 }, rto: 204, cwnd: 10, retrans: null, process: 'python3/3',
  });
  assert.equal(rows[1]!.process, '', 'not accepted yet: no process holds it');
  const shared = toRows(parseSs(fixture('ss-tanoiep-shared.txt')).sockets);
  assert.equal(shared.find((r) => r.key === '127.0.0.1:7000>0.0.0.0:*')!.process, 'a "b" (c/46, python3/5');
  const twice = toRows([...parseSs(fixture('ss-tanoiep-panel-1.txt')).sockets, ...parseSs(fixture('ss-tanoiep-panel-1.txt')).sockets]);
  assert.equal(new Set(twice.map((r) => r.key)).size, twice.length, 'keys are unique');
  assert.equal(twice[3]!.key, '127.0.0.1:7000>0.0.0.0:*#2');
  const v6 = toRows(parseSs(fixture('ss-tanoie.txt')).sockets).find((r) => r.local.startsWith('['));
  assert.equal(v6?.local, '[::1]:7002');
});

test('a refresh is bounded: text cut at a line end, rows at MAX_ROWS, and a note says so', () => {
  const one = fixture('ss-tanoiep-panel-2.txt');
  const small = forPanel(one, parseSs(one).sockets);
  assert.equal(small.raw, one);
  assert.equal(small.note, undefined);
  const many = one.repeat(200);
  const big = forPanel(many, parseSs(many).sockets);
  assert.equal(big.rows.length, MAX_ROWS);
  assert.ok(big.raw.length <= MAX_RAW_CHARS && big.raw.endsWith('\n') && many.startsWith(big.raw));
  assert.match(big.note!, /cut to its first [\d,]+ of [\d,]+ characters; the table shows the first 500 of 1000 sockets: name a port or a process/);
});
