/**
 * `tcp-lab watch`, for real: ss on this host's loopback, a Python program as the command.
 * Only loopback traffic; the port is picked at random so parallel runs do not meet.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ensureTestUser, isRoot, runCli, spawnCli } from './support/lab';

const port = 20_000 + Math.floor(Math.random() * 20_000);
const program = [
  'import socket, time',
  `l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); l.bind(("127.0.0.1", ${port})); l.listen()`,
  'time.sleep(0.4)',
  `c = socket.socket(); c.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1); c.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 30); c.connect(("127.0.0.1", ${port})); a, _ = l.accept()`,
  'time.sleep(0.5)',
  'c.close(); time.sleep(0.4); a.close(); l.close(); time.sleep(0.3)',
].join('\n');

for (const as of ['self', 'user'] as const) test(`watch -- COMMAND (${as === 'user' ? 'an unprivileged user' : 'this user'}): the sockets of the command, one line per transition, and its exit status`, { skip: as === 'user' && !isRoot ? 'the unprivileged run needs root to create its user; this run is unprivileged already' : false }, async () => {
  if (as === 'user') ensureTestUser();
  const run = await runCli(['watch', '--', 'python3', '-c', `${program}\nraise SystemExit(3)`], as);
  assert.equal(run.code, 3, `watch exits with the command's status: ${run.stderr}`);
  const lines = run.stdout.split('\n');
  const about = (what: RegExp) => lines.find((l) => what.test(l));
  assert.ok(about(new RegExp(`new .*127\\.0\\.0\\.1:${port}>0\\.0\\.0\\.0:\\* +LISTEN`)), run.stdout);
  const client = about(new RegExp(`new .*127\\.0\\.0\\.1:\\d+>127\\.0\\.0\\.1:${port} +ESTAB timer:keepalive`));
  assert.ok(client, `the client socket, ESTABLISHED with its keepalive timer:\n${run.stdout}`);
  // FIN-WAIT-1 is seen when the poll lands before the peer's ACK (a loaded machine).
  assert.ok(about(/state .*ESTAB -> (FIN-WAIT-1|FIN-WAIT-2|TIME-WAIT)/), `the active close:\n${run.stdout}`);
  const first = lines.find((l) => /^\+\s*[\d.]+ s  new/.test(l));
  assert.match(first ?? '', new RegExp(`127\\.0\\.0\\.1:${port}>`), `the first socket shown is the command's listener, no other socket of the host:\n${run.stdout}`);
  assert.ok(about(/state .*ESTAB -> CLOSE-WAIT/), `the passive side:\n${run.stdout}`);
  assert.ok(about(new RegExp(`gone .*127\\.0\\.0\\.1:${port}>0\\.0\\.0\\.0:\\*`)), `the listener closed:\n${run.stdout}`);
  assert.match(run.stdout, /users|python3\/\d+/, 'the owner is shown');
});

test('watch --port --json: transitions as JSON lines on the same event model', async () => {
  const other = await runCli(['watch', '--port', String(port + 1), '--for', '1', '--json']);
  assert.equal(other.code, 0, other.stderr);
  assert.equal(other.stdout.trim(), '', 'nothing on an unused port');
  // The port is watched until the program is done, then stopped as a user would, with Ctrl-C:
  // a fixed --for ran out before the program's last close on a loaded machine.
  const watcher = spawnCli(['watch', '--port', String(port), '--json', '--interval', '50'], 'self');
  let out = '';
  let err = '';
  watcher.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  watcher.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const stopped = new Promise<number | null>((r) => watcher.on('close', r));
  await new Promise((r) => setTimeout(r, 300));
  const prog = await runCli(['watch', '--for', '30', '--', 'python3', '-c', program]);
  await new Promise((r) => setTimeout(r, 300));
  watcher.kill('SIGINT');
  const watched = { code: await stopped, stdout: out, stderr: err };
  assert.equal(prog.code, 0, prog.stderr);
  assert.equal(watched.code, 0, `Ctrl-C ends a watch with status 0: ${watched.stderr}`);
  const events = watched.stdout.trim().split('\n').map((l) => JSON.parse(l) as { source: string; type: string; conn: string; state: string; t: number });
  assert.ok(events.every((e) => e.source === 'socket' && e.conn.includes(`:${port}`)), 'only sockets of that port');
  assert.ok(events.some((e) => e.type === 'new' && e.state === 'LISTEN'));
  assert.ok(events.some((e) => e.type === 'gone'));
  assert.ok(events.every((e, i) => i === 0 || e.t >= events[i - 1]!.t), 'in time order');
});

test('watch -- COMMAND: a command killed by a signal ends the watch with 128 + its number, as a shell says it', async () => {
  const run = await runCli(['watch', '--for', '30', '--', 'sh', '-c', 'kill -TERM $$']);
  assert.equal(run.code, 143, `SIGTERM is 15: ${run.stderr}`);
});

test('watch refuses bad usage with the field named', async () => {
  for (const args of [['watch'], ['watch', '--port', '70000'], ['watch', '--port', '1', '--interval', '5'], ['watch', '--tool', 'lsof', '--port', '1'], ['watch', '--']]) {
    const r = await runCli(args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, /tcp-lab: /);
  }
});
