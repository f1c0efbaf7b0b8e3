import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LabError } from '../lab/errors';
import { splitCommandLine } from './commandLine';

test('a typed command line splits into the words a shell would give, with no shell', () => {
  assert.deepEqual(splitCommandLine('curl -sS --max-time 30 http://{host}:{port}/'), ['curl', '-sS', '--max-time', '30', 'http://{host}:{port}/']);
  assert.deepEqual(splitCommandLine(`python3 -c 'import socket; print(1)'  x`), ['python3', '-c', 'import socket; print(1)', 'x']);
  assert.deepEqual(splitCommandLine(String.raw`echo "a \"b\" \$HOME" c\ d ''`), ['echo', 'a "b" $HOME', 'c d', '']);
  assert.deepEqual(splitCommandLine(`sh -c 'nc {host} {port} </dev/null'`), ['sh', '-c', 'nc {host} {port} </dev/null']);
});

test('what only a shell could do is refused with the reason, not run as a word', () => {
  for (const bad of ['curl x | head', 'nc a b > out', 'a; b', 'a && b', 'echo $HOME', 'echo $(id)', 'echo `id`', '', '   ', `echo 'open`, 'echo "open', 'a\\', 'a\nb']) {
    assert.throws(() => splitCommandLine(bad), (e: unknown) => e instanceof LabError && e.field === 'command', bad);
  }
  assert.match((() => { try { splitCommandLine('a | b'); } catch (e) { return (e as LabError).describe(); } return ''; })(), /no shell/);
});
