import { test, describe, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { monotonic, sleep } from './clock';
import { silentLogger } from './log';
import { chooseTool, diffSnapshots, EMPTY_TABLE, SocketMonitor } from './monitor';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { missingTools } from './preflight';
import { labEnv } from './exec';
import { Sandbox } from './sandbox';
import { parseSs } from './ss';
import { EventStream, type TimelineEvent } from './timeline';

const HEADER = 'State   Recv-Q Send-Q  Local Address:Port   Peer Address:Port Process';
const ss = (...lines: string[]) => parseSs([HEADER, ...lines].join('\n')).sockets;

describe('transitions between two ss snapshots', () => {
  const listen = 'LISTEN 0 128 127.0.0.1:7000 0.0.0.0:* ino:100 sk:1 cgroup:/ <->';
  test('a new socket, a state change, a timer that starts and counts, retransmissions, a socket gone', () => {
    const first = diffSnapshots(EMPTY_TABLE, ss(listen, 'SYN-SENT 0 1 127.0.0.1:40000 127.0.0.1:7001 timer:(on,1sec,0) ino:101 sk:2 <->\n\t cubic rto:1000 retrans:0/0'), 1, 0.9);
    assert.deepEqual(first.events.map((e) => [e.type, e.conn, e.state]), [
      ['new', '127.0.0.1:7000>0.0.0.0:*', 'LISTEN'],
      ['new', '127.0.0.1:40000>127.0.0.1:7001', 'SYN-SENT'],
    ]);
    const second = diffSnapshots(first.now, ss(listen, 'SYN-SENT 0 1 127.0.0.1:40000 127.0.0.1:7001 timer:(on,1.500ms,1) ino:101 sk:2 <->\n\t cubic rto:2000 retrans:1/1'), 2, 1.5);
    assert.deepEqual(second.events.map((e) => [e.type, (e.timer as { count: number }).count, e.total ?? null]), [['timer', 1, null], ['retrans', 1, 1]]);
    assert.equal(second.events[0]!.after, 1.5, 'the change happened after the previous poll started');
    const third = diffSnapshots(second.now, ss(listen, 'ESTAB 0 0 127.0.0.1:40000 127.0.0.1:7001 timer:(keepalive,9.900ms,0) ino:101 sk:2 <->\n\t cubic rto:204 retrans:0/1'), 3, 2.5);
    assert.deepEqual(third.events.map((e) => [e.type, e.from ?? null, e.state]), [['state', 'SYN-SENT', 'ESTAB']], 'the new state carries its new timer: one event');
    assert.deepEqual([(third.events[0]!.timer as { kind: string }).kind, (third.events[0]!.fromTimer as { kind: string }).kind], ['keepalive', 'on']);
    const fourth = diffSnapshots(third.now, ss(listen), 4, 3.5);
    assert.deepEqual(fourth.events.map((e) => [e.type, e.conn, e.state]), [['gone', '127.0.0.1:40000>127.0.0.1:7001', 'ESTAB']]);
  });

  test('only the timer\'s time left changing is not a transition', () => {
    const a = diffSnapshots(EMPTY_TABLE, ss('ESTAB 0 0 127.0.0.1:40000 127.0.0.1:7001 timer:(keepalive,9.900ms,0) ino:101'), 1, 0);
    const b = diffSnapshots(a.now, ss('ESTAB 0 0 127.0.0.1:40000 127.0.0.1:7001 timer:(keepalive,9.800ms,0) ino:101'), 2, 1);
    assert.deepEqual(b.events, []);
  });

  test('two listeners on one tuple (SO_REUSEPORT) are two sockets, one of them going', () => {
    const a = diffSnapshots(EMPTY_TABLE, ss(listen, listen), 1, 0);
    assert.equal(a.events.length, 2);
    const b = diffSnapshots(a.now, ss(listen), 2, 1);
    assert.deepEqual(b.events.map((e) => e.type), ['gone']);
  });
});

test('the tool: ss where it is installed; netstat, with a note saying what is lost, where only netstat is', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tcplab-path-'));
  try {
    symlinkSync('/bin/true', join(dir, 'netstat'));
    const onlyNetstat = chooseTool('auto', dir);
    assert.equal(onlyNetstat.tool, 'netstat');
    assert.match(onlyNetstat.note ?? '', /ss is not installed .*iproute2.*rto, retransmissions, cwnd/);
    symlinkSync('/bin/true', join(dir, 'ss'));
    assert.deepEqual(chooseTool('auto', dir), { tool: 'ss', note: null });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

const haveSs = missingTools(['ss'], labEnv().PATH ?? '').length === 0;

describe('the monitor on a real namespace', { skip: haveSs ? false : 'ss is not installed (apt-get install iproute2)' }, () => {
  let sandbox: Sandbox | undefined;
  let why = '';
  before(async () => {
    try {
      sandbox = await Sandbox.create({ log: silentLogger, label: 'monitor-test' });
    } catch (e) {
      why = `no namespace: ${e instanceof Error ? e.message : e}`;
    }
  });
  after(async () => sandbox?.dispose());

  /** Runs Python inside the namespace until it exits. */
  const python = (code: string) =>
    new Promise<number | null>((resolve, reject) => {
      const argv = sandbox!.enter(['python3', '-c', code]);
      const child = spawn(argv[0]!, argv.slice(1), { stdio: 'ignore', env: labEnv() });
      child.on('error', reject).on('exit', resolve);
    });

  const watchWhile = async (code: string, options: { tool?: 'ss' | 'netstat'; stream?: EventStream } = {}) => {
    const stream = options.stream ?? new EventStream();
    const monitor = new SocketMonitor({
      exec: sandbox!.exec, enter: (argv) => sandbox!.enter(argv), log: silentLogger, processes: true, tool: options.tool, onEvent: (e) => stream.push(e),
    }).start();
    await firstSnapshot(monitor);
    const code_ = await python(code);
    await monitor.stop(true);
    assert.equal(code_, 0, 'the python program exited 0');
    return { events: stream.toArray(), monitor, stream };
  };

  const firstSnapshot = async (monitor: SocketMonitor) => {
    for (let i = 0; i < 200 && monitor.stats.polls === 0; i++) await sleep(10);
    assert.ok(monitor.stats.polls > 0, 'the polling shell delivered a snapshot within 2 s');
  };

  const of = (events: TimelineEvent[], pred: (e: TimelineEvent) => boolean) => events.filter(pred);

  test('a SYN that is dropped: SYN-SENT, an `on` timer counting retries, retrans rising, then gone', async (t) => {
    if (!sandbox) return t.skip(why);
    await sandbox.exec(['iptables', '-A', 'OUTPUT', '-p', 'tcp', '--dport', '7101', '--syn', '-j', 'DROP']);
    const { events } = await watchWhile([
      'import socket',
      's = socket.socket()',
      's.setsockopt(socket.IPPROTO_TCP, socket.TCP_SYNCNT, 2)',
      'try:\n s.connect(("127.0.0.1", 7101))\nexcept OSError as e:\n assert e.errno == 110, e',
    ].join('\n'));
    const mine = of(events, (e) => typeof e.conn === 'string' && e.conn.endsWith('>127.0.0.1:7101'));
    assert.equal(mine[0]?.type, 'new');
    assert.equal(mine[0]?.state, 'SYN-SENT');
    assert.equal((mine[0]?.timer as { kind: string } | undefined)?.kind, 'on');
    const counts = of(mine, (e) => e.type === 'timer').map((e) => (e.timer as { count: number }).count);
    // TCP_SYNCNT=2 is a time limit on 6.18 (1 + 2 + 4 s), into which the linear 1 s timeouts of
    // tcp_syn_linear_timeouts fit 5 retries: the count goes up one retry at a time.
    assert.ok(counts.length >= 2, `the retransmit timer counts retries (saw ${counts})`);
    assert.deepEqual(counts, counts.map((_, i) => i + 1), 'one more retry each time, none skipped at this poll rate');
    assert.ok(of(mine, (e) => e.type === 'retrans').length >= 1, 'retrans:N/total rises');
    assert.equal(mine.at(-1)?.type, 'gone');
    assert.equal(mine.at(-1)?.state, 'SYN-SENT');
  });

  test('keepalive: ESTABLISHED, a keepalive timer whose probe count rises, then gone', async (t) => {
    if (!sandbox) return t.skip(why);
    // The peer stops answering: INPUT drops everything to the server port after the handshake.
    const { events } = await watchWhile([
      'import socket, subprocess, time',
      'l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); l.bind(("127.0.0.1", 7102)); l.listen()',
      'c = socket.socket(); c.connect(("127.0.0.1", 7102)); a, _ = l.accept()',
      'c.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)',
      'c.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)',
      'c.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)',
      'c.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 2)',
      'subprocess.run(["iptables", "-A", "INPUT", "-p", "tcp", "--sport", "7102", "-j", "DROP"], check=True)',
      'try:\n c.recv(1)\nexcept OSError as e:\n assert e.errno == 110, e',
    ].join('\n'));
    const client = of(events, (e) => typeof e.conn === 'string' && e.conn.endsWith('>127.0.0.1:7102'));
    assert.deepEqual(client.map((e) => e.type).filter((x, i, a) => a.indexOf(x) === i).slice(0, 2), ['new', 'timer']);
    assert.equal(client[0]?.state, 'ESTAB');
    const probes = of(client, (e) => e.type === 'timer' && (e.timer as { kind: string } | undefined)?.kind === 'keepalive').map((e) => (e.timer as { count: number }).count);
    assert.ok(probes.includes(1), `the keepalive timer counts a probe without an answer (saw counts ${probes})`);
    assert.equal(client.at(-1)?.type, 'gone');
  });

  test('netstat, where ss is missing, sees the same transitions: listen, connect, active and passive close', async (t) => {
    if (!sandbox) return t.skip(why);
    if (missingTools(['netstat'], labEnv().PATH ?? '').length) return t.skip('netstat is not installed (apt-get install net-tools)');
    const code = [
      'import socket, time',
      'l = socket.socket(); l.bind(("127.0.0.1", 7103)); l.listen()',
      'c = socket.socket(); c.connect(("127.0.0.1", 7103)); a, _ = l.accept()',
      'time.sleep(0.5); c.close(); time.sleep(0.3)',
    ].join('\n');
    const viaNetstat = await watchWhile(code, { tool: 'netstat' });
    assert.equal(viaNetstat.monitor.tool, 'netstat');
    const kinds = (events: TimelineEvent[]) => events.filter((e) => String(e.conn).includes(':7103')).map((e) => `${e.type} ${e.state}`);
    const seen = kinds(viaNetstat.events);
    for (const want of ['new LISTEN', 'new ESTAB', 'state FIN-WAIT-2', 'state CLOSE-WAIT']) assert.ok(seen.includes(want), `netstat: ${want} in ${seen.join(', ')}`);
  });

  test('a reconnect storm of thousands of sockets: the poller keeps its pace and the stream stays bounded', async (t) => {
    if (!sandbox) return t.skip(why);
    const stream = new EventStream(2000);
    const polls: number[] = [];
    const monitor = new SocketMonitor({
      exec: sandbox.exec, enter: (argv) => sandbox!.enter(argv), log: silentLogger, onEvent: (e) => stream.push(e), onSnapshot: (s) => polls.push(s.t),
    }).start();
    await firstSnapshot(monitor);
    let peak = 0;
    const peakTimer = setInterval(() => { peak = Math.max(peak, monitor.stats.sockets); }, 20);
    const t0 = monotonic();
    // 4,000 connections opened and closed as fast as Python can: each leaves a TIME-WAIT socket.
    const code = await python([
      'import socket',
      'l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); l.bind(("127.0.0.1", 7104)); l.listen(4096)',
      'for i in range(4000):',
      ' c = socket.socket(); c.connect(("127.0.0.1", 7104)); a, _ = l.accept(); c.close(); a.close()',
    ].join('\n'));
    await sleep(500);
    await monitor.stop(true);
    clearInterval(peakTimer);
    const took = monotonic() - t0;
    assert.equal(code, 0);
    assert.ok(peak >= 1000, `the storm left thousands of sockets for ss to list (peak ${peak})`);
    const gaps = polls.slice(1).map((x, i) => x - polls[i]!);
    const worst = Math.max(...gaps);
    t.diagnostic(`${polls.length} polls in ${took.toFixed(1)} s, peak ${peak} sockets, slowest parse and diff ${monitor.stats.maxMs.toFixed(0)} ms, widest gap ${(worst * 1000).toFixed(0)} ms, ${stream.dropped.total} events dropped`);
    assert.ok(worst < 1.5, `no poll waited more than 1.5 s for the one before it (widest gap ${worst.toFixed(2)} s)`);
    assert.ok(stream.length <= 2000, `the stream kept at most its capacity (${stream.length})`);
    assert.ok(stream.dropped.total > 0 && stream.dropped.bySource.socket === stream.dropped.total, 'what it dropped is counted, all of it socket transitions');
  });
});
