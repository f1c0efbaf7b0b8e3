/**
 * The live socket panel's reads, for real: ss inside a lab namespace (as root, and rootless as
 * the unprivileged test user), on a loopback port of this host, and for this test's own process.
 * Only loopback traffic; host ports are picked by the kernel.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { LabError } from '../src/lab/errors';
import { labEnv } from '../src/lab/exec';
import { silentLogger } from '../src/lab/log';
import { enterLab } from '../src/lab/nsEnter';
import { Sandbox } from '../src/lab/sandbox';
import { portArgv, readSockets, splitRecords, type SocketReading } from '../src/lab/socketView';
import { connectionKey } from '../src/lab/ss';
import { forPanel } from '../src/vscode/socketPanelPage';
import { asTestUser, ensureTestUser, isRoot, ROOT, TEST_USER } from './support/lab';

/** Inside the lab: a listener on 7000, one connection with 10 unread bytes, until stdin closes. */
const LAB_PROGRAM = [
  'import socket, sys',
  'l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); l.bind(("127.0.0.1", 7000)); l.listen()',
  'c = socket.create_connection(("127.0.0.1", 7000)); a, _ = l.accept()',
  'c.sendall(b"0123456789")',
  'print("ready", flush=True)',
  'sys.stdin.read()',
].join('\n');

function startInside(argv: string[]): Promise<ChildProcess> {
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'], env: labEnv() });
  return new Promise((resolve, reject) => {
    let err = '';
    child.stderr!.on('data', (d) => (err += d));
    child.stdout!.once('data', () => resolve(child));
    child.once('exit', (code) => reject(new Error(`the program inside the lab exited (${code}): ${err}`)));
  });
}

/** The lines of `raw` that start a socket's record. */
const records = (raw: string) => raw.split('\n').filter((l) => /^[A-Z]/.test(l) && !l.startsWith('State'));

function assertLabSockets(r: Pick<SocketReading, 'raw' | 'rows'>): void {
  assert.match(r.raw, /^State +Recv-Q +Send-Q +Local Address:Port +Peer Address:Port +Process/, 'the header, as ss prints it');
  assert.match(r.raw, /^LISTEN +0 +\d+ +127\.0\.0\.1:7000 +0\.0\.0\.0:\* +users:\(\("python3",pid=\d+,fd=3\)\)/m, r.raw);
  assert.match(r.raw, /^ESTAB +10 +0 +127\.0\.0\.1:7000 +127\.0\.0\.1:\d+ /m, 'the accepted side, 10 bytes unread');
  assert.match(r.raw, /^ESTAB +0 +0 +127\.0\.0\.1:\d+ +127\.0\.0\.1:7000 /m, 'the client side');
  assert.match(r.raw, /^\t.*rto:\d+/m, 'the -i lines');
  assert.equal(r.rows.length, records(r.raw).length, 'one parsed row per record');
  const byState = r.rows.map((s) => `${s.state} ${s.recvQ}`).sort();
  assert.deepEqual(byState, ['ESTAB 0', 'ESTAB 10', 'LISTEN 0']);
  const listener = r.rows.find((s) => s.state === 'LISTEN')!;
  assert.equal(listener.local.port, 7000);
  assert.equal(listener.processes[0]?.name, 'python3');
  assert.ok(r.rows.every((s) => typeof s.details?.rto === 'number' || s.state === 'LISTEN'), 'the -i details are read');
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

test('the lab target: ss inside the namespace, raw as printed and parsed; enterLab stays Sandbox.enter', async (t) => {
  const sb = await Sandbox.create({ log: silentLogger, label: 'socket-view' });
  t.after(() => sb.dispose());
  const lab = { mode: sb.mode, pid: sb.pid };
  assert.deepEqual(enterLab(lab, ['ss', '-tanoiep']), sb.enter(['ss', '-tanoiep']));
  const prog = await startInside(sb.enter(['python3', '-c', LAB_PROGRAM]));
  t.after(() => prog.stdin!.end());
  const r = await readSockets({ kind: 'lab', lab }, { log: silentLogger });
  assertLabSockets(r);
  assert.deepEqual(r.argv.slice(-2), ['ss', '-tanoiep']);
  assert.match(r.where, /inside the lab/);
  // The same command run by hand prints the same records (the timers' time left aside).
  const byHand = spawnSync(sb.enter(['ss', '-tanoiep'])[0]!, sb.enter(['ss', '-tanoiep']).slice(1), { encoding: 'utf8', env: labEnv() }).stdout;
  const shape = (raw: string) => records(raw).map((l) => l.replace(/timer:\([^)]*\)/, '').replace(/\s+/g, ' ')).sort();
  assert.deepEqual(shape(r.raw), shape(byHand));
  // The panel's cost per refresh: the read (nsenter, ss, parse) and the message it posts.
  const took: number[] = [];
  let bytes = 0;
  for (let i = 0; i < 20; i++) {
    const x = await readSockets({ kind: 'lab', lab }, { log: silentLogger });
    const t0 = performance.now();
    const shown = forPanel(x.raw, x.rows);
    bytes = JSON.stringify({ type: 'sockets', ...shown }).length;
    took.push(x.tookMs + (performance.now() - t0));
  }
  t.diagnostic(`lab target (${sb.mode}, 3 sockets): readSockets + message median ${median(took).toFixed(1)} ms, max ${Math.max(...took).toFixed(1)} ms, ${bytes} bytes posted`);
});

async function loopbackPair(t: { after(fn: () => unknown): void }): Promise<{ server: Server; port: number; client: Socket; accepted: Socket }> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const acceptedP = new Promise<Socket>((r) => server.once('connection', r));
  const client = createConnection({ host: '127.0.0.1', port });
  await new Promise((r) => client.once('connect', r));
  const accepted = await acceptedP;
  t.after(() => { client.destroy(); accepted.destroy(); server.close(); });
  return { server, port, client, accepted };
}

test('a port of this host: ss\'s own filter, both ends of a loopback connection', async (t) => {
  const { port, client } = await loopbackPair(t);
  assert.deepEqual(portArgv(port), ['ss', '-tanoiep', '(', 'sport', '=', `:${port}`, 'or', 'dport', '=', `:${port}`, ')']);
  const r = await readSockets({ kind: 'port', port }, { log: silentLogger });
  assert.match(r.raw, /^State /);
  assert.match(r.raw, new RegExp(`^LISTEN +0 +\\d+ +127\\.0\\.0\\.1:${port} +0\\.0\\.0\\.0:\\* +users:\\(\\("node",pid=${process.pid},`, 'm'), r.raw);
  assert.match(r.raw, new RegExp(`^ESTAB .*127\\.0\\.0\\.1:${client.localPort} +127\\.0\\.0\\.1:${port} `, 'm'));
  assert.match(r.raw, new RegExp(`^ESTAB .*127\\.0\\.0\\.1:${port} +127\\.0\\.0\\.1:${client.localPort} `, 'm'));
  assert.equal(r.rows.length, 3, r.raw);
  assert.ok(r.rows.every((s) => s.local.port === port || s.peer.port === port));
  const other = await readSockets({ kind: 'port', port: port === 65535 ? 65534 : port + 1 }, { log: silentLogger });
  assert.ok(other.rows.every((s) => s.local.port !== port && s.peer.port !== port), 'another port shows none of them');
  const took: number[] = [];
  for (let i = 0; i < 20; i++) took.push((await readSockets({ kind: 'port', port }, { log: silentLogger })).tookMs);
  t.diagnostic(`port target: readSockets median ${median(took).toFixed(1)} ms`);
});

test('a process of this host: its sockets by inode, its records verbatim, a TIME-WAIT it let go of kept', async (t) => {
  const { port, client } = await loopbackPair(t);
  const owned = new Set<string>();
  const r = await readSockets({ kind: 'pid', pid: process.pid }, { log: silentLogger, owned });
  assert.match(r.where, new RegExp(`process ${process.pid} \\(node\\)`));
  const keys = r.rows.map(connectionKey);
  assert.ok(keys.includes(`127.0.0.1:${port}>0.0.0.0:*`), keys.join('\n'));
  assert.ok(keys.includes(`127.0.0.1:${client.localPort}>127.0.0.1:${port}`));
  assert.ok(keys.includes(`127.0.0.1:${port}>127.0.0.1:${client.localPort}`));
  assert.ok(r.rows.every((s) => s.processes.some((p) => p.pid === process.pid)), 'only sockets this process holds');
  // The raw text is ss's header and records, cut from its output, not rewritten.
  const full = spawnSync('ss', ['-tanoiep'], { encoding: 'utf8' }).stdout;
  const header = (text: string) => text.slice(0, text.indexOf('\n')).trimEnd(); // padded to the widest record of its run
  assert.equal(header(r.raw), header(full), 'the header as ss printed it');
  assert.ok(r.raw.split('\n').every((l, i) => i === 0 || l === '' || /^[A-Z]|^\t/.test(l)), 'records, each line as printed');
  for (const line of records(r.raw)) assert.match(line, /users:\(\(.*"node",pid=\d+/);
  assert.equal(splitRecords(r.raw).texts.length, r.rows.length);
  // The client closes first: its end goes to TIME-WAIT, which no process holds.
  const clientPort = client.localPort!;
  client.destroy();
  await new Promise((res) => setTimeout(res, 200));
  const after = await readSockets({ kind: 'pid', pid: process.pid }, { log: silentLogger, owned });
  const tw = after.rows.find((s) => connectionKey(s) === `127.0.0.1:${clientPort}>127.0.0.1:${port}`);
  assert.ok(tw && ['TIME-WAIT', 'FIN-WAIT-2'].includes(tw.state), `the closed end is still followed:\n${after.raw}`);
  assert.match(after.raw, new RegExp(`^(TIME-WAIT|FIN-WAIT-2) .*127\\.0\\.0\\.1:${clientPort} `, 'm'));
});

test('a process in the lab\'s namespace, named by its host pid: its sockets are read there', { skip: !isRoot && 'entering another network namespace by pid needs root' }, async (t) => {
  const sb = await Sandbox.create({ log: silentLogger, label: 'socket-view-pid' });
  t.after(() => sb.dispose());
  const prog = await startInside(sb.enter(['python3', '-c', LAB_PROGRAM]));
  t.after(() => prog.stdin!.end());
  const r = await readSockets({ kind: 'pid', pid: prog.pid! }, { log: silentLogger });
  assert.match(r.where, /its own network namespace/);
  assert.deepEqual(r.argv.slice(0, 4), ['nsenter', '--target', String(prog.pid), '--net']);
  assertLabSockets(r);
});

test('refusals name the field', async () => {
  for (const [target, field] of [
    [{ kind: 'port', port: 0 }, 'port'],
    [{ kind: 'port', port: 65536 }, 'port'],
    [{ kind: 'port', port: 1.5 }, 'port'],
    [{ kind: 'pid', pid: 0 }, 'pid'],
    [{ kind: 'pid', pid: 4_194_303 }, 'pid'],
    [{ kind: 'lab', lab: { mode: 'root', pid: 0 } }, 'pid'],
  ] as const) {
    await assert.rejects(readSockets(target, { log: silentLogger }), (e) => e instanceof LabError && e.field === field, JSON.stringify(target));
  }
});

test('as the unprivileged user: the lab target enters the user namespace, and a process of its own shows', async (t) => {
  if (!isRoot) return t.skip('run as root to test as another user (this run is unprivileged already)');
  ensureTestUser();
  const as = asTestUser();
  if (spawnSync(as[0]!, [...as.slice(1), 'test', '-r', join(ROOT, 'src', 'lab', 'socketView.ts')]).status !== 0) {
    return t.skip(`${TEST_USER} cannot read this checkout (${ROOT})`);
  }
  const req = (p: string) => `require(${JSON.stringify(join(ROOT, p))})`;
  const script = `
    const { Sandbox } = ${req('src/lab/sandbox.ts')};
    const { readSockets } = ${req('src/lab/socketView.ts')};
    const { labEnv } = ${req('src/lab/exec.ts')};
    const { silentLogger } = ${req('src/lab/log.ts')};
    const { spawn } = require('node:child_process');
    const net = require('node:net');
    (async () => {
      const sb = await Sandbox.create({ log: silentLogger, label: 'socket-view-user' });
      const argv = sb.enter(['python3', '-c', ${JSON.stringify(LAB_PROGRAM)}]);
      const prog = spawn(argv[0], argv.slice(1), { stdio: ['pipe', 'pipe', 'inherit'], env: labEnv() });
      await new Promise((r) => prog.stdout.once('data', r));
      const t0 = performance.now();
      const lab = await readSockets({ kind: 'lab', lab: { mode: sb.mode, pid: sb.pid } }, { log: silentLogger });
      const took = [];
      for (let i = 0; i < 10; i++) took.push((await readSockets({ kind: 'lab', lab: { mode: sb.mode, pid: sb.pid } }, { log: silentLogger })).tookMs);
      const server = net.createServer().listen(0, '127.0.0.1');
      await new Promise((r) => server.once('listening', r));
      const own = await readSockets({ kind: 'pid', pid: process.pid }, { log: silentLogger });
      console.log(JSON.stringify({ mode: sb.mode, raw: lab.raw, rows: lab.rows, argv: lab.argv, took, port: server.address().port, own: own.raw }));
      server.close(); prog.stdin.end(); await sb.dispose();
    })().catch((e) => { console.error(e.message); process.exit(1); });`;
  const r = spawnSync(as[0]!, [...as.slice(1), 'env', 'PATH=/usr/bin:/bin', 'HOME=/tmp', process.execPath, '--import', 'tsx', '-e', script],
    { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0 && /user namespace/.test(r.stderr)) return t.skip(`no user namespaces for ${TEST_USER}: ${r.stderr.trim()}`);
  assert.equal(r.status, 0, r.stderr);
  const got = JSON.parse(r.stdout.trim().split('\n').pop()!) as { mode: string; raw: string; rows: SocketReading['rows']; argv: string[]; took: number[]; port: number; own: string };
  assert.equal(got.mode, 'rootless');
  assert.ok(got.argv.includes('--user') && got.argv.includes('--preserve-credentials'), got.argv.join(' '));
  assertLabSockets({ raw: got.raw, rows: got.rows });
  assert.match(got.raw, /users:\(\("python3",pid=\d+,fd=3\)\)/, 'ss -p names the lab\'s processes for its unprivileged owner');
  assert.match(got.own, new RegExp(`^LISTEN .*127\\.0\\.0\\.1:${got.port} `, 'm'), `its own listener, found without privilege:\n${got.own}`);
  t.diagnostic(`lab target as ${TEST_USER} (rootless): readSockets median ${median(got.took).toFixed(1)} ms, max ${Math.max(...got.took).toFixed(1)} ms`);
});

test('a lab of several hosts: one ss per host, each block headed by its host, both legs of the relay', async () => {
  const { runScenario } = await import('../src/lab/runner');
  const { findScenario } = await import('../src/lab/scenarios');
  let reading: SocketReading | undefined;
  let failure: unknown;
  // The relay scenario, with its kill held back: the sockets are read while all four are up.
  const base = findScenario('relay-host-kill');
  const scenario = { ...base, triggers: [{ on: { proc: 'client', type: 'received' }, do: [] }], deadline: 3 };
  await runScenario(scenario, {
    log: silentLogger,
    capture: 'off',
    onLive: (live) => {
      // Read once the client has its reply: the sockets of both legs exist by then.
      const poll = async () => {
        for (let i = 0; i < 40 && !reading; i++) {
          await new Promise((r) => setTimeout(r, 50));
          const r = await readSockets({ kind: 'lab', lab: live }, { log: silentLogger });
          if (r.rows.filter((s) => s.state === 'ESTAB').length === 4) reading = r;
        }
      };
      poll().catch((e) => { failure = e; });
    },
  });
  if (failure) throw failure;
  assert.ok(reading, 'four established sockets seen across the hosts');
  assert.deepEqual(reading.raw.split('\n').filter((l) => l.startsWith('# host ')), ['# host client', '# host relay', '# host server'], reading.raw);
  const block = (name: string) => reading!.raw.split('# host ').find((b) => b.startsWith(name))!;
  assert.match(block('client'), /^ESTAB .* 198\.18\.0\.2:\d+ +198\.18\.0\.1:7001 /m);
  assert.match(block('relay'), /^ESTAB .* 198\.18\.0\.1:7001 +198\.18\.0\.2:\d+ /m, 'the client leg, at the relay');
  assert.match(block('relay'), /^ESTAB .* 198\.18\.1\.1:\d+ +198\.18\.1\.2:7000 /m, 'the server leg, at the relay');
  assert.match(block('server'), /^ESTAB .* 198\.18\.1\.2:7000 +198\.18\.1\.1:\d+ /m);
  assert.match(reading.where, /3 hosts \(client, relay, server/);
});
