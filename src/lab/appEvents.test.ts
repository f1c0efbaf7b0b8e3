import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseAppEvent } from './appEvents';

test('a sample event line parses', () => {
  const e = parseAppEvent('{"t": 1234.5, "proc": "client", "type": "error", "op": "connect", "errno": 111, "name": "ECONNREFUSED"}');
  assert.equal(e?.name, 'ECONNREFUSED');
});

test('malformed lines are refused, not crashed on', () => {
  for (const line of ['', 'not json', '[]', 'null', '{"t":"1","proc":"c","type":"x"}', '{"t":1,"proc":"a b","type":"x"}',
    '{"t":1,"proc":"c","type":"X!"}', '{"t":1,"proc":"c","type":"error","errno":"111"}', `{"t":1,"proc":"c","type":"x","pad":"${'a'.repeat(70000)}"}`,
    '{"t":1e999,"proc":"c","type":"x"}']) {
    assert.equal(parseAppEvent(line), undefined, line.slice(0, 60));
  }
});
