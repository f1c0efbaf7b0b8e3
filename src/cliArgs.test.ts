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
