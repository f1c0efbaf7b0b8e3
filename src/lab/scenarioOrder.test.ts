import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CATALOG, deadlineOf, findScenario, startOrder } from './scenarios';

test('parallel runs start the longest scenarios first, ties in catalog order', () => {
  const ids = ['connect-refused', 'drop-with-traffic', 'nagle-one-write', 'connect-timeout-drop-syn'];
  const order = startOrder(ids.map(findScenario)).map((i) => ids[i]);
  assert.deepEqual(order, ['drop-with-traffic', 'nagle-one-write', 'connect-timeout-drop-syn', 'connect-refused']);
});

test('a deadline computed from timers uses the scenario\'s own sysctls', () => {
  // tcp_syn_retries=1 in the namespace: 3 s to fail, not the default 131 s.
  assert.ok(deadlineOf(findScenario('connect-timeout-drop-syn')) < 10);
  assert.equal(new Set(CATALOG.map((s) => s.id)).size, CATALOG.length, 'ids are unique');
});
