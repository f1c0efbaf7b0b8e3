import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fuzzInputs } from '../../test/support/fuzz';
import { connectionKey, detailsRejections, parseEndpoint, parseSs, parseTimerTime } from './ss';

const fixture = (name: string) => readFileSync(join(__dirname, 'fixtures', name), 'utf8');

test('real ss -tanoie output: every socket, state, queue, timer and detail', () => {
  const { sockets, rejected } = parseSs(fixture('ss-tanoie.txt'));
  assert.deepEqual(rejected, []);
  assert.deepEqual(detailsRejections(sockets), []);
  assert.deepEqual(sockets.map((s) => `${s.state} ${connectionKey(s)}`), [
    'LISTEN 127.0.0.1:7000>0.0.0.0:*',
    'ESTAB 127.0.0.1:7000>127.0.0.1:44122',
    'ESTAB 127.0.0.1:44122>127.0.0.1:7000',
    'TIME-WAIT 127.0.0.1:44134>127.0.0.1:7000',
    'SYN-SENT 127.0.0.1:51260>127.0.0.1:7001',
    'LISTEN [::1]:7002>[::]:*',
    'ESTAB [::1]:7002>[::1]:44692',
    'ESTAB [::1]:44692>[::1]:7002',
  ]);
  const [, , keepalive, timeWait, synSent, , unread] = sockets;
  assert.deepEqual(synSent!.timer, { kind: 'on', ms: 496, count: 1 });
  assert.equal(synSent!.details?.rto, 1000);
  assert.equal(synSent!.details?.retrans, 1);
  assert.equal(synSent!.details?.retransTotal, 1);
  assert.equal(synSent!.details?.unacked, 1);
  assert.deepEqual(keepalive!.timer, { kind: 'keepalive', ms: 119 * 60_000, count: 0 });
  assert.equal(keepalive!.details?.rtt, 0.031);
  assert.equal(keepalive!.details?.rttvar, 0.015);
  assert.equal(keepalive!.details?.lastsnd, 1508);
  assert.ok(keepalive!.details?.flags.includes('sack'));
  assert.deepEqual(timeWait!.timer, { kind: 'timewait', ms: 58_000, count: 0 });
  assert.equal(timeWait!.inode, 0);
  assert.equal(unread!.recvQ, 10);
  assert.equal(unread!.details?.bytesReceived, 10);
  assert.equal(unread!.local.family, 6);
  assert.equal(sockets[0]!.shutdown, '<->');
});

test('real ss -tanoiep output: processes and half-closed connections', () => {
  const { sockets, rejected } = parseSs(fixture('ss-tanoiep.txt'));
  assert.deepEqual(rejected, []);
  assert.deepEqual(sockets.map((s) => s.state), ['LISTEN', 'FIN-WAIT-2', 'ESTAB', 'ESTAB', 'CLOSE-WAIT']);
  assert.equal(sockets[0]!.processes[0]!.name, 'python3');
  assert.equal(sockets[0]!.processes[0]!.fd, 3);
  assert.equal(sockets[1]!.shutdown, '<--');
  assert.equal(sockets[4]!.shutdown, '-->');
  assert.equal(sockets[4]!.recvQ, 1, 'the unread FIN counts as one byte in Recv-Q');
});

test('real ss -tanoiep: a socket two processes hold, one named with spaces, quotes and a parenthesis', () => {
  // The child's comm is `a "b" (c) d`: ss reads it from /proc/<pid>/stat up to the first `)`
  // and prints it unescaped.
  const { sockets, rejected } = parseSs(fixture('ss-tanoiep-shared.txt'));
  assert.deepEqual(rejected, []);
  assert.equal(sockets.length, 20);
  const at = (k: string) => sockets.find((s) => connectionKey(s) === k)!;
  assert.deepEqual(at('127.0.0.1:7000>0.0.0.0:*').processes, [
    { name: 'a "b" (c', pid: 46, fd: 3 },
    { name: 'python3', pid: 5, fd: 3 },
  ]);
  assert.deepEqual(at('127.0.0.1:7005>0.0.0.0:*').processes, [{ name: 'a "b" (c', pid: 46, fd: 21 }]);
  const keepalive = at('127.0.0.1:41004>127.0.0.1:7000');
  assert.equal(keepalive.processes.length, 2);
  assert.equal(keepalive.timer?.kind, 'keepalive', 'fields after users:(...) are still read');
  assert.equal(keepalive.inode, 1_709_021);
  assert.deepEqual(at('127.0.0.1:41016>127.0.0.1:7000').processes, [], 'TIME-WAIT: no process');
});

test('real timers: SYN retransmissions, unanswered keepalive probes, a zero window (persist)', () => {
  const { sockets, rejected } = parseSs(fixture('ss-tanoie-sockets.txt'));
  assert.deepEqual(rejected, []);
  assert.deepEqual(detailsRejections(sockets), []);
  const at = (k: string) => sockets.find((s) => connectionKey(s) === k)!;
  assert.deepEqual(at('127.0.0.1:58866>127.0.0.1:7001').timer, { kind: 'on', ms: 488, count: 2 });
  assert.deepEqual(at('127.0.0.1:60820>127.0.0.1:7007').timer, { kind: 'keepalive', ms: 488, count: 2 }, 'the count is probes sent');
  const blocked = at('127.0.0.1:33218>127.0.0.1:7003');
  assert.deepEqual(blocked.timer, { kind: 'persist', ms: 672, count: 0 });
  assert.equal(blocked.sendQ, 6144);
  assert.equal(at('127.0.0.1:7003>127.0.0.1:33218').recvQ, 2048, 'the receiver that never reads');
  assert.equal(at('*:7006>*:*').local.family, null, 'a dual-stack listener is *');
  assert.equal(at('[::ffff:127.0.0.1]:7006>[::ffff:127.0.0.1]:52344').local.family, 6);
  // ss prints `timer:(persist,,1)` when the timer is due: no time left.
  assert.deepEqual(parseSs('ESTAB 0 6144 127.0.0.1:51870 127.0.0.1:7003 timer:(persist,,1)').sockets[0]!.timer, { kind: 'persist', ms: 0, count: 1 });
});

test('padding, a terminal\'s layout and CRLF change nothing', () => {
  // Into a pipe, ss pads each record (a socket line and its -i line) to the widest one: here
  // 602 characters. On a terminal it spreads the columns over the screen (captured under
  // `script`, which also ends lines with CRLF).
  const padded = fixture('ss-tanoie-sockets.txt');
  const widths = new Set<number>();
  const lines = padded.split('\n');
  for (let i = 1; i + 1 < lines.length; i += 2) widths.add(lines[i]!.length + 1 + lines[i + 1]!.length);
  assert.equal(widths.size, 1, 'every record is as wide as the widest');
  const keys = (text: string) => parseSs(text).sockets.map((s) => `${s.state} ${connectionKey(s)} ${JSON.stringify(s.details)}`);
  const stripped = lines.map((l) => l.trimEnd()).join('\n');
  assert.deepEqual(keys(padded), keys(stripped));
  const tty = parseSs(fixture('ss-tanoie-tty.txt'));
  assert.deepEqual(tty.rejected, []);
  assert.deepEqual(tty.sockets.map((s) => `${s.state} ${connectionKey(s)}`), parseSs(padded).sockets.map((s) => `${s.state} ${connectionKey(s)}`));
  assert.ok(tty.sockets.every((s) => s.sk !== null && !s.sk.includes('\r')));
});

test('UNCONN, and fields ss prints on some sockets only', () => {
  // ss 6.1 lists no TCP socket in CLOSE (kernels from 6.8 list bound-only ones on request, as
  // `ss state bound-inactive` in later iproute2); its name for the state is UNCONN.
  const { sockets, rejected } = parseSs([
    'UNCONN 0 0 127.0.0.1:7004 0.0.0.0:* ino:77 sk:1 <->',
    'ESTAB 0 0 [fe80::1%eth0]:22 [fe80::2%eth0]:50000 timer:(on,1min5sec,3) uid:1000 ino:78 sk:2 ---',
    '\t cubic ecn ecnseen rto:201.5 rtt:1e+03/5 ssthresh:7 bytes_retrans:300 lost:2 unacked:3 retrans:1/4',
  ].join('\n'));
  assert.deepEqual(rejected, []);
  assert.equal(sockets[0]!.state, 'UNCONN');
  const [, e] = sockets;
  assert.deepEqual(e!.local, { address: 'fe80::1', port: 22, family: 6, device: 'eth0' });
  assert.deepEqual(e!.timer, { kind: 'on', ms: 65_000, count: 3 });
  assert.equal(e!.uid, 1000);
  assert.equal(e!.shutdown, '---');
  const d = e!.details!;
  assert.deepEqual(d.flags, ['cubic', 'ecn', 'ecnseen']);
  assert.deepEqual([d.rto, d.rtt, d.rttvar, d.ssthresh, d.bytesRetrans, d.lost, d.unacked, d.retrans, d.retransTotal], [201.5, 1000, 5, 7, 300, 2, 3, 1, 4]);
  assert.equal(d.cwnd, undefined, 'not printed: undefined');
});

test('timer times as ss prints them', () => {
  assert.equal(parseTimerTime('496ms'), 496);
  assert.equal(parseTimerTime('050ms'), 50);
  assert.equal(parseTimerTime('5.200ms'), 5200);
  assert.equal(parseTimerTime('58sec'), 58_000);
  assert.equal(parseTimerTime('1min5sec'), 65_000);
  assert.equal(parseTimerTime('1min5.300ms'), 65_300);
  assert.equal(parseTimerTime('119min'), 7_140_000);
  assert.equal(parseTimerTime(''), 0);
  for (const bad of ['5.', 'min', '12', 'ms', '1h', '-5ms']) assert.equal(parseTimerTime(bad), null, bad);
  const { sockets } = parseSs('ESTAB 0 0 10.0.0.2:80 10.0.0.1:4000 timer:(persist,1.500ms,3) uid:1000\n');
  assert.deepEqual(sockets[0]!.timer, { kind: 'persist', ms: 1500, count: 3 });
  assert.equal(sockets[0]!.uid, 1000);
});

test('addresses: IPv4, IPv6, any, a device, mapped IPv4', () => {
  assert.deepEqual(parseEndpoint('127.0.0.1:7000'), { address: '127.0.0.1', port: 7000, family: 4 });
  assert.deepEqual(parseEndpoint('[::ffff:127.0.0.1]:7000'), { address: '::ffff:127.0.0.1', port: 7000, family: 6 });
  assert.deepEqual(parseEndpoint('*:7000'), { address: '*', port: 7000, family: null });
  assert.deepEqual(parseEndpoint('[::]:*'), { address: '::', port: null, family: 6 });
  assert.deepEqual(parseEndpoint('127.0.0.1%lo:7000'), { address: '127.0.0.1', port: 7000, family: 4, device: 'lo' });
  assert.deepEqual(parseEndpoint('[fe80::1%eth0]:22'), { address: 'fe80::1', port: 22, family: 6, device: 'eth0' });
  for (const bad of ['', ':80', '127.0.0.1', '127.0.0.1:99999', 'host:80', '[zz]:1', '1.2.3.4:-1']) assert.equal(parseEndpoint(bad), null, bad);
});

test('malformed lines are rejected with a reason, the good ones around them kept', () => {
  const text = [
    'ESTAB 0 0 127.0.0.1:1 127.0.0.1:2',
    'BOGUS 0 0 127.0.0.1:1 127.0.0.1:2',
    'ESTAB x 0 127.0.0.1:1 127.0.0.1:2',
    'ESTAB 0 0 127.0.0.1:1',
    'ESTAB 0 0 127.0.0.1:1 127.0.0.1:2 timer:(on,zz,1)',
    '\t rto:204 retrans:1',
    'LISTEN 0 5 *:7000 *:*',
  ].join('\n');
  const { sockets, rejected } = parseSs(text);
  assert.deepEqual(sockets.map((s) => s.state), ['ESTAB', 'LISTEN']);
  assert.deepEqual(rejected.map((r) => r.reason), [
    'unknown state BOGUS',
    'Recv-Q or Send-Q not a number',
    'fewer than 5 columns (state, Recv-Q, Send-Q, local, peer)',
    'timer: bad time zz',
    'details without a socket line',
  ]);
});

test('a bad -i field: the socket reports it when its details are read, the other fields kept', () => {
  // The -i line is read on first access (most readers never need it), so its problems are the
  // socket's to report, not the parse's.
  const text = [
    'ESTAB 0 0 127.0.0.1:1 127.0.0.1:2',
    '\t ts rto:zz cwnd:10 retrans:1/3 lastsnd:5',
    'ESTAB 0 0 127.0.0.1:3 127.0.0.1:4',
    '\t rto:204 retrans:1/x',
    'ESTAB 0 0 127.0.0.1:5 127.0.0.1:6',
    '\t rto:204',
  ].join('\n');
  const { sockets, rejected } = parseSs(text);
  assert.deepEqual(rejected, [], 'the scan does not read -i lines');
  const [a, b, c] = sockets;
  assert.deepEqual(a!.detailsRejected, { line: '\t ts rto:zz cwnd:10 retrans:1/3 lastsnd:5', reason: 'rto: not a number' });
  assert.deepEqual([a!.details!.rto, a!.details!.cwnd, a!.details!.retransTotal, a!.details!.lastsnd, a!.details!.flags], [undefined, 10, 3, 5, ['ts']]);
  assert.equal(b!.details!.retransTotal, undefined, 'retrans:1/x is not read');
  assert.equal(b!.details!.rto, 204);
  assert.equal(c!.detailsRejected, null);
  assert.deepEqual(detailsRejections(sockets).map((r) => r.reason), ['rto: not a number', 'retrans: not a/b']);
});

test('details: read on first use, printed by JSON, retrans read alone as the full read does', () => {
  const text = fixture('ss-tanoie-sockets.txt');
  const parsed = parseSs(text);
  // JSON has every field, in the same order as a plain object would: what the UI and logs get.
  const json = JSON.parse(JSON.stringify(parsed.sockets));
  const fields = ['rto', 'rtt', 'rttvar', 'ato', 'mss', 'cwnd', 'ssthresh', 'retrans', 'retransTotal', 'unacked', 'lost', 'bytesSent', 'bytesAcked', 'bytesReceived', 'bytesRetrans', 'segsOut', 'segsIn', 'lastsnd', 'lastrcv', 'lastack', 'flags'] as const;
  for (const [k, s] of parsed.sockets.entries()) {
    const d = s.details;
    if (d === null) assert.equal(json[k].details, null);
    else {
      assert.deepEqual(Object.keys(json[k].details), fields.filter((f) => d[f] !== undefined), 'printed in the plain object\'s order');
      for (const f of fields) assert.deepEqual(json[k].details[f], d[f], f);
    }
    assert.deepEqual(Object.keys(json[k]), ['state', 'recvQ', 'sendQ', 'local', 'peer', 'timer', 'uid', 'inode', 'sk', 'shutdown', 'processes', 'details']);
  }
  const withRetrans = json.filter((s: { details: { retransTotal?: number } | null }) => s.details?.retransTotal !== undefined);
  assert.ok(withRetrans.length > 0, 'the capture has sockets that retransmitted');
  // retrans alone (before any other field), against the full read.
  const fresh = parseSs(text).sockets;
  assert.deepEqual(fresh.map((s) => [s.details?.retrans, s.details?.retransTotal]), json.map((s: { details: { retrans?: number; retransTotal?: number } | null }) => [s.details?.retrans, s.details?.retransTotal]));
  const { sockets: [tricky] } = parseSs('ESTAB 0 0 127.0.0.1:1 127.0.0.1:2\n\t retrans:0/2 bytes_retrans:300 lost:1\n\t retrans:1/4');
  assert.deepEqual([tricky!.details!.retrans, tricky!.details!.retransTotal, tricky!.details!.bytesRetrans], [1, 4, 300], 'the last retrans:, not bytes_retrans:');
  assert.deepEqual(JSON.parse(JSON.stringify(tricky)).details.retransTotal, 4);
});

test('a socket with no process shares a frozen empty list', () => {
  const { sockets } = parseSs('ESTAB 0 0 127.0.0.1:1 127.0.0.1:2\nESTAB 0 0 127.0.0.1:3 127.0.0.1:4');
  assert.deepEqual(sockets[0]!.processes, []);
  assert.throws(() => sockets[0]!.processes.push({ name: 'x', pid: 1, fd: 1 }), TypeError);
  assert.deepEqual(sockets[1]!.processes, []);
});

test('fuzz: random, truncated and mutated lines never throw', () => {
  const real = ['ss-tanoie.txt', 'ss-tanoiep.txt', 'ss-tanoiep-shared.txt', 'ss-tanoie-tty.txt'].map(fixture).join('\n').split('\n');
  const alphabet = 'ESTAB LISTEN:()[],.%*<->/0123456789abcdef\t "=_-msecmin\r\u00e9\u4e2d\ud83d';
  let parsed = 0;
  let withDetails = 0;
  // Two lines in a row: a socket's line and its -i line as a rule, so details are fuzzed too.
  const pair = (rand: () => number) => {
    const at = Math.floor(rand() * (real.length - 1));
    return `${real[at]}\n${real[at + 1]}`;
  };
  for (const line of fuzzInputs(pair, alphabet, { count: 5000, seed: 12345, maxRandom: 120 })) {
    const r = parseSs(line);
    parsed += r.sockets.length;
    for (const s of r.sockets) {
      assert.ok(Number.isInteger(s.recvQ) && Number.isInteger(s.sendQ), line);
      if (s.timer) assert.ok(Number.isFinite(s.timer.ms) && s.timer.ms >= 0, line);
      // The -i line is read here, not in parseSs: it must not throw either.
      if (s.details) withDetails++;
      const retrans = s.details?.retransTotal;
      JSON.stringify(s);
      assert.equal(s.details?.retransTotal, retrans, line);
      void s.detailsRejected;
    }
  }
  assert.ok(parsed > 100, 'some truncated real lines still parse (at least the 5 columns)');
  assert.ok(withDetails > 100, `-i lines were read: ${withDetails}`);
});
