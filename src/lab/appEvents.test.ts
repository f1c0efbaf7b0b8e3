import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AppEventServer, parseAppEvent } from './appEvents';
import { silentLogger } from './log';

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

test('a program is drained once its event stream closes, and not before', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tcplab-events-test-'));
  const got: string[] = [];
  const server = await AppEventServer.listen(join(dir, 'events.sock'), (e) => got.push(`${e.proc} ${e.type}`), silentLogger);
  try {
    assert.equal(await settledWithin(server.drained('client', 5_000), 50), true, 'nothing open: drained at once');
    const sock = createConnection(join(dir, 'events.sock'));
    await new Promise((r) => sock.once('connect', r));
    // Connected, nothing said yet: it may be the client's stream.
    assert.equal(await settledWithin(server.drained('client', 5_000), 100), false, 'a stream that has not said whose it is holds the wait');
    sock.write('{"t":1,"proc":"server","type":"start"}\n');
    await waitUntil(() => got.length === 1);
    assert.equal(await settledWithin(server.drained('client', 5_000), 50), true, 'the server\'s stream does not hold the client\'s wait');
    const waiting = server.drained('server', 5_000);
    sock.end('{"t":2,"proc":"server","type":"eof"}\n');
    assert.equal(await settledWithin(waiting, 2_000), true, 'the server is drained when its stream closes');
    assert.deepEqual(got, ['server start', 'server eof'], 'its last event was read before');
    // A stream that never closes only holds the wait for the bound given.
    const held = createConnection(join(dir, 'events.sock'));
    await new Promise((r) => held.once('connect', r));
    const t0 = performance.now();
    await server.drained('client', 300);
    assert.ok(performance.now() - t0 >= 250, 'waited for the bound');
    held.destroy();
  } finally {
    await server.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
});

async function settledWithin(p: Promise<void>, ms: number): Promise<boolean> {
  return Promise.race([p.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms))]);
}

async function waitUntil(fn: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !fn(); i++) await new Promise((r) => setTimeout(r, 10));
}
