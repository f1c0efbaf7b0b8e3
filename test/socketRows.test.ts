// The socket panel's change marking, in plain Node (the page draws from it; see socketPanelPage.test.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseSs } from '../src/lab/ss';
import { toRows } from '../src/vscode/socketPanelPage';
import { cells, HOLD_MS, RowChanges, timeLeft } from '../webview/socketRows';
import { ROOT } from './support/lab';

const rows = (n: number) => toRows(parseSs(readFileSync(join(ROOT, 'src', 'lab', 'fixtures', `ss-tanoiep-panel-${n}.txt`), 'utf8')).sockets);

test('a refresh apart: new rows, changed rows with their fields, and what went', () => {
  const c = new RowChanges();
  assert.deepEqual(c.update(rows(1), 1000), { added: 0, changed: 0, gone: 0 }, 'the first refresh marks nothing');
  assert.deepEqual(c.update(rows(2), 1500), { added: 2, changed: 3, gone: 0 });
  assert.deepEqual(c.mark('127.0.0.1:7000>127.0.0.1:48024', 1500), { mark: 'changed', fields: new Set(['recvQ']) });
  assert.deepEqual(c.mark('127.0.0.1:48024>127.0.0.1:7000', 1500).fields, new Set(['cwnd']));
  assert.equal(c.mark('127.0.0.1:48038>127.0.0.1:7000', 1500).mark, 'new');
  // Held a while, then gone; the same rows again change nothing.
  assert.deepEqual(c.update(rows(2), 2000), { added: 0, changed: 0, gone: 0 });
  assert.equal(c.mark('127.0.0.1:7000>127.0.0.1:48024', 2000).mark, 'changed');
  assert.equal(c.mark('127.0.0.1:7000>127.0.0.1:48024', 1500 + HOLD_MS + 1).mark, '');
  assert.deepEqual(c.update(rows(1), 2500), { added: 0, changed: 3, gone: 2 });
  c.reset();
  assert.deepEqual(c.update(rows(2), 3000), { added: 0, changed: 0, gone: 0 }, 'after a reset, nothing to compare with');
});

test('the time left on a timer is shown but is not a change', () => {
  const [a] = rows(2).filter((r) => r.timer);
  const b = { ...a!, timer: { ...a!.timer!, ms: a!.timer!.ms - 500 } };
  const c = new RowChanges();
  c.update([a!], 0);
  assert.deepEqual(c.update([b], 500), { added: 0, changed: 0, gone: 0 });
  assert.equal(cells(a!).left, '119 min 0 s');
  assert.deepEqual([timeLeft(204), timeLeft(1356), timeLeft(58_000), timeLeft(65_000)], ['204 ms', '1.4 s', '58.0 s', '1 min 5 s']);
});
