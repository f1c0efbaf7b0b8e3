import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseArgs } from './cliArgs';
import { LabError } from './lab/errors';

const refused = (argv: string[], field?: string) =>
  assert.throws(() => parseArgs(argv), (e: unknown) => e instanceof LabError && (field === undefined || e.field === field));

test('run takes ids, sections, or --all, and the options', () => {
  const o = parseArgs(['run', 'connect-refused', '--jobs', '3', '--json', '--firewall', 'nft']);
  assert.deepEqual([o.command, o.ids, o.jobs, o.json, o.firewall], ['run', ['connect-refused'], 3, true, 'nft']);
  assert.deepEqual(parseArgs(['run', '--section', 'connect,detection']).sections, ['connect', 'detection']);
});

test('bad usage is refused with the flag named', () => {
  refused(['run']);
  refused(['run', '--all', 'connect-refused']);
  refused(['frobnicate']);
  refused(['run', '--all', '--jobs', '0'], '--jobs');
  refused(['run', '--all', '--jobs', '1;reboot'], '--jobs');
  refused(['run', '--all', '--jobs'], '--jobs');
  refused(['run', '--all', '--mode', 'sudo'], '--mode');
  refused(['run', '--all', '--firewall', 'pf'], '--firewall');
  refused(['run', '--all', '--wat']);
  refused(['list', 'connect-refused'], 'id');
});

test('host: a rule from flags or JSON, and the sub-commands', () => {
  const apply = parseArgs(['host', 'apply', '--id', 'db-drop', '--action', 'reject', '--reject-with', 'tcp-reset', '--direction', 'to-port', '--port', '5432', '--chain', 'OUTPUT', '--firewall', 'nft', '--yes']);
  assert.deepEqual(apply.host, { action: 'apply', rule: { id: 'db-drop', action: 'reject', rejectWith: 'tcp-reset', direction: 'to-port', port: 5432, chain: 'OUTPUT' }, yes: true, firewall: 'nft' });
  const json = parseArgs(['host', 'apply', '{"id":"db","action":"drop","direction":"from-port","port":5432}']);
  assert.deepEqual(json.host, { action: 'apply', rule: { id: 'db', action: 'drop', direction: 'from-port', port: 5432 }, yes: false, firewall: 'iptables' });
  assert.deepEqual(parseArgs(['host', 'list', '--json']).host, { action: 'list', json: true, firewalls: ['iptables', 'nft'] });
  assert.deepEqual(parseArgs(['host', 'remove', 'db', '--firewall', 'nft']).host, { action: 'remove', id: 'db', all: false, force: false, firewalls: ['nft'] });
  assert.deepEqual(parseArgs(['host', 'remove', '--all', '--force']).host, { action: 'remove', all: true, force: true, firewalls: ['iptables', 'nft'] });
  assert.deepEqual(parseArgs(['host', 'sweep', '--verbose']).host, { action: 'sweep', firewalls: ['iptables', 'nft'] });
  assert.equal(parseArgs(['host', 'sweep', '--verbose']).verbose, true);
});

test('host: bad input names the flag it came from', () => {
  const base = ['host', 'apply', '--id', 'db', '--action', 'drop', '--direction', 'to-port'];
  refused([...base, '--port', '70000'], '--port');
  refused([...base, '--port', '5432', '--reject-with', 'tcp-reset'], '--reject-with');
  refused([...base, '--port', '5432', '--address', '10.0.0.1/8'], '--address');
  refused([...base, '--port', '5432', '--chain', 'PREROUTING'], '--chain');
  refused([...base], '--port');
  refused(['host', 'apply', '--id', 'Bad_Id', '--action', 'drop', '--direction', 'to-port', '--port', '1'], '--id');
  refused([...base, '--port', '1', '--port', '2'], '--port');
  refused(['host', 'apply', '{"id":"db","action":"drop","direction":"to-port","port":1,"x":1}'], 'x');
  refused(['host', 'apply', '{not json'], 'rule');
  refused(['host', 'apply', '{"id":"db"}', '--port', '1'], 'rule');
  refused(['host', 'apply'], 'rule');
  refused(['host', 'list', '--yes'], '--yes');
  refused(['host', 'sweep', '--all'], '--all');
  refused(['host', 'remove'], 'id');
  refused(['host', 'remove', 'a', '--all'], 'id');
  refused(['host', 'remove', 'a;reboot'], 'id');
  refused(['host', 'frobnicate']);
  refused(['host']);
});
