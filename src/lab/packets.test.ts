import { spawn, spawnSync, type ChildProcessByStdio } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import assert from 'node:assert/strict';
import { before, describe, test, type TestContext } from 'node:test';
import type { AppEvent } from './appEvents';
import { sleep } from './clock';
import { LabError } from './errors';
import { labEnv } from './exec';
import { silentLogger } from './log';
import {
  LINKTYPE, PacketCapture, PacketClassifier, PcapEventStream, PcapReader, captureArgv, chooseCaptureMethod,
  classifyPackets, decodeFrame, flagText, ip6Text, measureClockOffset, toMonotonic, validInterface,
  type CaptureMethod, type PcapRecord, type TcpSegment,
} from './packets';
import { missingTools } from './preflight';
import { Sandbox } from './sandbox';
import { connectionKey, parseSs } from './ss';
import type { TimelineEvent } from './timeline';

const PATH = labEnv().PATH ?? '';
const have = (tool: string) => missingTools([tool], PATH).length === 0;
const SAMPLES = resolve(__dirname, '..', '..', 'samples', 'python');

// ---------------------------------------------------------------------------------------
// Frame builders for fixtures (headers only, lengths as on the wire)
// ---------------------------------------------------------------------------------------

const S = 0x02, A = 0x10, Fn = 0x01, R = 0x04, P = 0x08;

function v4(text: string): number[] {
  return text.split('.').map(Number);
}

function v6(text: string): number[] {
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const groups = (s: string | undefined) => (s ? s.split(':').map((g) => parseInt(g, 16)) : []);
  const h = groups(head);
  const t = groups(tail);
  const all = tail === undefined ? h : [...h, ...new Array(8 - h.length - t.length).fill(0), ...t];
  return all.flatMap((g) => [g >> 8, g & 0xff]);
}

function tcpHeader(sport: number, dport: number, seq: number, ack: number, flags: number, win: number): Buffer {
  const b = Buffer.alloc(20);
  b.writeUInt16BE(sport, 0);
  b.writeUInt16BE(dport, 2);
  b.writeUInt32BE(seq >>> 0, 4);
  b.writeUInt32BE(ack >>> 0, 8);
  b[12] = 5 << 4;
  b[13] = flags;
  b.writeUInt16BE(win, 14);
  return b;
}

/** An IPv4 header whose total length counts `extra` payload bytes that are not included (cut by snaplen). */
function ip4(src: string, dst: string, proto: number, l4: Buffer, extra = 0): Buffer {
  const h = Buffer.alloc(20);
  h[0] = 0x45;
  h.writeUInt16BE(20 + l4.length + extra, 2);
  h[8] = 64;
  h[9] = proto;
  Buffer.from(v4(src)).copy(h, 12);
  Buffer.from(v4(dst)).copy(h, 16);
  return Buffer.concat([h, l4]);
}

function ip6(src: string, dst: string, next: number, l4: Buffer, extra = 0): Buffer {
  const h = Buffer.alloc(40);
  h[0] = 0x60;
  h.writeUInt16BE(l4.length + extra, 4);
  h[6] = next;
  h[7] = 64;
  Buffer.from(v6(src)).copy(h, 8);
  Buffer.from(v6(dst)).copy(h, 24);
  return Buffer.concat([h, l4]);
}

const eth = (type: number, payload: Buffer) => Buffer.concat([Buffer.alloc(12), Buffer.from([type >> 8, type & 0xff]), payload]);
const sll = (type: number, payload: Buffer) => { const h = Buffer.alloc(16); h.writeUInt16BE(type, 14); return Buffer.concat([h, payload]); };
const sll2 = (type: number, payload: Buffer) => { const h = Buffer.alloc(20); h.writeUInt16BE(type, 0); return Buffer.concat([h, payload]); };

interface Rec { sec: number; frac: number; data: Buffer; orig?: number }

function pcap(linktype: number, records: Rec[], o: { nano?: boolean; bigEndian?: boolean } = {}): Buffer {
  const u32 = (n: number) => { const b = Buffer.alloc(4); o.bigEndian ? b.writeUInt32BE(n >>> 0) : b.writeUInt32LE(n >>> 0); return b; };
  const u16 = (n: number) => { const b = Buffer.alloc(2); o.bigEndian ? b.writeUInt16BE(n) : b.writeUInt16LE(n); return b; };
  const parts: Buffer[] = [u32(o.nano ? 0xa1b23c4d : 0xa1b2c3d4), u16(2), u16(4), u32(0), u32(0), u32(262144), u32(linktype)];
  for (const r of records) parts.push(u32(r.sec), u32(r.frac), u32(r.data.length), u32(r.orig ?? r.data.length), r.data);
  return Buffer.concat(parts);
}

/** A segment as the classifier takes it. */
function seg(t: number, from: string, to: string, seq: number, ack: number, flags: number, len = 0, win = 512): TcpSegment {
  const [src, sport] = from.split(':');
  const [dst, dport] = to.split(':');
  return { kind: 'tcp', t, family: 4, src: src!, dst: dst!, sport: Number(sport), dport: Number(dport), seq: seq >>> 0, ack: ack >>> 0, flags, win, len };
}

function splitRandomly(buf: Buffer, max: number): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at < buf.length;) {
    const n = 1 + Math.floor(Math.random() * max);
    out.push(buf.subarray(at, at + n));
    at += n;
  }
  return out;
}

const ZERO_CLOCK = { wallMs: 0, mono: 0, error: 0 };

// ---------------------------------------------------------------------------------------
// Pure: decoding, classification, the pcap reader, the clock
// ---------------------------------------------------------------------------------------

describe('decoding', () => {
  test('TCP over Ethernet, cooked v1 and v2 and raw IP, IPv4 and IPv6, payload length from the IP header', () => {
    const syn4 = ip4('127.0.0.1', '127.0.0.1', 6, tcpHeader(40000, 7000, 100, 0, S, 65495));
    const data6 = ip6('::1', '::1', 6, tcpHeader(7000, 40000, 7, 101, P | A, 64), 1400);
    const expect4 = { kind: 'tcp', t: 1, family: 4, src: '127.0.0.1', dst: '127.0.0.1', sport: 40000, dport: 7000, seq: 100, ack: 0, flags: S, win: 65495, len: 0 };
    const expect6 = { kind: 'tcp', t: 1, family: 6, src: '::1', dst: '::1', sport: 7000, dport: 40000, seq: 7, ack: 101, flags: P | A, win: 64, len: 1400 };
    for (const [linktype, frame4, frame6] of [
      [LINKTYPE.ETHERNET, eth(0x0800, syn4), eth(0x86dd, data6)],
      [LINKTYPE.LINUX_SLL, sll(0x0800, syn4), sll(0x86dd, data6)],
      [LINKTYPE.LINUX_SLL2, sll2(0x0800, syn4), sll2(0x86dd, data6)],
      [LINKTYPE.RAW, syn4, data6],
    ] as const) {
      // Only the cooked v2 header names the interface (0 in these frames).
      const dev = linktype === LINKTYPE.LINUX_SLL2 ? { ifindex: 0 } : {};
      assert.deepEqual(decodeFrame(linktype, frame4, frame4.length, 1), { ...expect4, ...dev }, `linktype ${linktype}, IPv4`);
      assert.deepEqual(decodeFrame(linktype, frame6, frame6.length + 1400, 1), { ...expect6, ...dev }, `linktype ${linktype}, IPv6`);
    }
    // An 802.1Q tag, an IPv6 hop-by-hop header, a later IPv4 fragment, UDP, ARP.
    const tagged = Buffer.concat([Buffer.alloc(12), Buffer.from([0x81, 0, 0, 5, 0x08, 0]), syn4]);
    assert.equal((decodeFrame(LINKTYPE.ETHERNET, tagged, tagged.length, 1) as TcpSegment).sport, 40000);
    const hbh = Buffer.concat([Buffer.from([6, 0, 1, 4, 0, 0, 0, 0]), tcpHeader(1, 2, 3, 4, A, 5)]);
    const withExt = ip6('::1', '::1', 0, hbh, 10);
    assert.equal((decodeFrame(LINKTYPE.RAW, withExt, withExt.length + 10, 1) as TcpSegment).len, 10);
    const fragment = Buffer.from(syn4);
    fragment.writeUInt16BE(0x0010, 6);
    assert.equal(decodeFrame(LINKTYPE.RAW, fragment, fragment.length, 1), undefined);
    assert.equal(decodeFrame(LINKTYPE.RAW, ip4('1.1.1.1', '2.2.2.2', 17, Buffer.alloc(8)), 28, 1), undefined);
    assert.equal(decodeFrame(LINKTYPE.ETHERNET, eth(0x0806, Buffer.alloc(28)), 42, 1), undefined);
    assert.equal(decodeFrame(999, syn4, syn4.length, 1), undefined);
  });

  test('ICMP and ICMPv6 errors carry the quoted connection; echo and neighbour discovery are skipped', () => {
    const quoted4 = ip4('10.0.0.1', '10.0.0.2', 6, tcpHeader(40000, 80, 555, 0, S, 1000)).subarray(0, 28);
    const unreach4 = ip4('10.0.0.2', '10.0.0.1', 1, Buffer.concat([Buffer.from([3, 3, 0, 0, 0, 0, 0, 0]), quoted4]));
    assert.deepEqual(decodeFrame(LINKTYPE.RAW, unreach4, unreach4.length, 2), {
      kind: 'icmp', t: 2, family: 4, from: '10.0.0.2', icmpType: 3, code: 3,
      quoted: { src: '10.0.0.1', dst: '10.0.0.2', sport: 40000, dport: 80, seq: 555 },
    });
    const quoted6 = ip6('2001:db8::1', '2001:db8::2', 6, tcpHeader(40000, 80, 9, 0, S, 1000)).subarray(0, 48);
    const unreach6 = ip6('2001:db8::2', '2001:db8::1', 58, Buffer.concat([Buffer.from([1, 4, 0, 0, 0, 0, 0, 0]), quoted6]));
    const e = new PacketClassifier().classify(decodeFrame(LINKTYPE.RAW, unreach6, unreach6.length, 3)!);
    assert.deepEqual(e, {
      t: 3, source: 'packet', proc: 'wire', type: 'icmp', conn: '[2001:db8::1]:40000>[2001:db8::2]:80',
      icmp: 'port-unreachable', icmpType: 1, code: 4, from: '2001:db8::2', seq: 9,
    });
    const echo = ip4('1.1.1.1', '2.2.2.2', 1, Buffer.from([8, 0, 0, 0, 0, 0, 0, 0]));
    assert.equal(decodeFrame(LINKTYPE.RAW, echo, echo.length, 1), undefined);
    const ns = ip6('::1', '::1', 58, Buffer.from([135, 0, 0, 0, 0, 0, 0, 0]));
    assert.equal(decodeFrame(LINKTYPE.RAW, ns, ns.length, 1), undefined);
    // An error quoting UDP is not about a TCP connection.
    const udp = ip4('10.0.0.2', '10.0.0.1', 1, Buffer.concat([Buffer.from([3, 3, 0, 0, 0, 0, 0, 0]), ip4('10.0.0.1', '10.0.0.2', 17, Buffer.alloc(8))]));
    assert.equal(decodeFrame(LINKTYPE.RAW, udp, udp.length, 1), undefined);
  });

  test("IPv6 addresses as glibc's inet_ntop writes them, which is what ss prints", (t) => {
    const cases: [string, string][] = [
      ['00000000000000000000000000000001', '::1'],
      ['00000000000000000000000000000000', '::'],
      ['00000000000000000000ffff7f000001', '::ffff:127.0.0.1'],
      ['fe800000000000000000000000000001', 'fe80::1'],
      ['20010db8000000010001000100010001', '2001:db8:0:1:1:1:1:1'],
      ['00010000000000020000000000000003', '1:0:0:2::3'],
      ['20010db8000000000001000000000001', '2001:db8::1:0:0:1'],
      ['000000000000000000000000c0000201', '::192.0.2.1'],
      ['000000000000000000000000000016d1', '::16d1'],
    ];
    for (const [hex, text] of cases) assert.equal(ip6Text(Buffer.from(hex, 'hex')), text, hex);
    if (!have('python3')) return t.skip('python3 is not installed: only the fixed cases were checked');
    // Random addresses rich in zero groups, against Python's socket.inet_ntop (glibc's).
    const addrs = Array.from({ length: 400 }, () => {
      const b = randomBytes(16);
      for (let g = 0; g < 8; g++) if (Math.random() < 0.5) b.writeUInt16BE(0, 2 * g);
      if (Math.random() < 0.1) { b.fill(0, 0, 10); b.writeUInt16BE(Math.random() < 0.5 ? 0xffff : 0, 10); }
      return b;
    });
    const py = spawnSync('python3', ['-c', 'import socket,sys\nfor l in sys.stdin.read().split(): print(socket.inet_ntop(socket.AF_INET6, bytes.fromhex(l)))'], {
      input: addrs.map((b) => b.toString('hex')).join('\n'), encoding: 'utf8',
    });
    assert.equal(py.status, 0, py.stderr);
    assert.deepEqual(addrs.map((b) => ip6Text(b)), py.stdout.trim().split('\n'));
  });

  test("flags in tcpdump's letters and order", () => {
    assert.equal(flagText(S), 'S');
    assert.equal(flagText(S | A), 'S.');
    assert.equal(flagText(Fn | P | A), 'FP.');
    assert.equal(flagText(R | A), 'R.');
    assert.equal(flagText(S | 0x40 | 0x80), 'SEW');
    assert.equal(flagText(0), 'none');
  });
});

describe('classification', () => {
  const C = '10.0.0.1:40000', Sv = '10.0.0.2:80';
  const types = (events: TimelineEvent[]) => events.map((e) => (e.of ? `${e.type}:${e.of}` : e.type));

  test('handshake, data, retransmissions of SYN, SYN-ACK, data and FIN, keepalive, zero-window probe, RST', () => {
    const c = 1000, s = 5000;
    const events = classifyPackets([
      seg(0, C, Sv, c, 0, S),
      seg(1, C, Sv, c, 0, S), // the SYN again, same ISN
      seg(1.1, Sv, C, s, c + 1, S | A),
      seg(2.1, Sv, C, s, c + 1, S | A), // the SYN-ACK again
      seg(2.2, C, Sv, c + 1, s + 1, A),
      seg(2.3, C, Sv, c + 1, s + 1, P | A, 100),
      seg(2.6, C, Sv, c + 1, s + 1, P | A, 100), // the same 100 bytes again
      seg(2.7, Sv, C, s + 1, c + 101, A),
      seg(3.7, C, Sv, c + 100, s + 1, A), // seq = snd_una - 1, nothing outstanding
      seg(3.7, Sv, C, s + 1, c + 101, A),
      seg(4.7, C, Sv, c + 100, s + 1, A, 1), // a 1-byte keepalive (BSD/Windows style)
      seg(4.8, Sv, C, s + 1, c + 101, A, 0, 0), // the server's window closes
      seg(5.0, C, Sv, c + 100, s + 1, A), // the same probe now tests the window
      seg(5.1, Sv, C, s + 1, c + 101, A, 0, 512),
      seg(6, C, Sv, c + 101, s + 1, Fn | A),
      seg(6.2, C, Sv, c + 101, s + 1, Fn | A), // the FIN again
      seg(6.3, Sv, C, s + 1, c + 102, R | A),
    ]);
    assert.deepEqual(types(events), [
      'syn', 'retransmit:syn', 'syn-ack', 'retransmit:syn-ack', 'ack', 'data', 'retransmit:data', 'ack',
      'keepalive', 'ack', 'keepalive', 'ack', 'window-probe', 'ack', 'fin', 'retransmit:fin', 'rst',
    ]);
    assert.deepEqual(events[1], { t: 1, source: 'packet', proc: 'wire', type: 'retransmit', conn: '10.0.0.1:40000>10.0.0.2:80', flags: 'S', seq: 1000, len: 0, win: 512, of: 'syn' });
    assert.equal(events[2]!.conn, '10.0.0.2:80>10.0.0.1:40000');
    assert.equal(events[2]!.ack, 1001);
  });

  test('not probes: unacked data re-sent as 1 byte, a segment starting below what was sent, an ACK before everything is acked', () => {
    const c = 1000, s = 5000;
    const events = classifyPackets([
      seg(0, C, Sv, c, 0, S), seg(0, Sv, C, s, c + 1, S | A), seg(0, C, Sv, c + 1, s + 1, A),
      seg(1, C, Sv, c + 1, s + 1, P | A, 1), // 1 byte, not acked yet
      seg(1.2, C, Sv, c + 1, s + 1, A, 1), // the same byte again: a retransmission, not a keepalive
      seg(1.3, C, Sv, c + 1, s + 1, A, 0), // a plain ACK while data is outstanding
      seg(1.4, C, Sv, c + 2, s + 1, P | A, 50),
      seg(1.5, C, Sv, c + 30, s + 1, P | A, 40), // 22 old bytes and 18 new: collapsed retransmission
      seg(1.6, C, Sv, c + 70, s + 1, P | A, 10), // new again
    ]);
    assert.deepEqual(types(events).slice(3), ['data', 'retransmit:data', 'ack', 'data', 'retransmit:data', 'data']);
  });

  test('a new ISN on a known 4-tuple is a new connection; sequence numbers wrap at 2^32', () => {
    const top = 0xffffffff - 10;
    const events = classifyPackets([
      seg(0, C, Sv, top, 0, S),
      seg(0, Sv, C, 7, top + 1, S | A),
      seg(0, C, Sv, top + 1, 8, P | A, 20), // crosses 2^32
      seg(0, C, Sv, (top + 21) >>> 0, 8, P | A, 20), // after the wrap: new data
      seg(0, C, Sv, top + 1, 8, P | A, 20), // before the wrap again: old data
      seg(0, C, Sv, 123456, 0, S), // TIME_WAIT reuse with a new ISN
    ]);
    assert.deepEqual(types(events), ['syn', 'syn-ack', 'data', 'data', 'retransmit:data', 'syn']);
  });

  test('per interface when the capture names it: a forwarded segment seen in and out is no retransmission', () => {
    const on = (ifindex: number, p: TcpSegment) => ({ ...p, ifindex });
    const events = classifyPackets([
      on(2, seg(0, C, Sv, 1, 0, S)), on(3, seg(0, C, Sv, 1, 0, S)),
      on(2, seg(1, C, Sv, 2, 9, P | A, 10)), on(3, seg(1, C, Sv, 2, 9, P | A, 10)),
      on(2, seg(2, C, Sv, 2, 9, P | A, 10)),
      on(2, seg(3, Sv, C, 0, 2, R | A)), // seq 0 moves nothing
      on(2, seg(4, C, Sv, 2, 9, P | A, 10)),
    ]);
    assert.deepEqual(types(events), ['syn', 'syn', 'data', 'data', 'retransmit:data', 'rst', 'retransmit:data']);
  });

  test('the flow table is bounded: the least recently seen direction is forgotten', () => {
    const c = new PacketClassifier(4);
    const events: TimelineEvent[] = [];
    for (let i = 0; i < 1000; i++) events.push(c.classify(seg(i, `10.0.0.1:${10000 + i}`, Sv, 1, 0, S)));
    assert.equal(c.flowCount, 4);
    // Port 10000's flow was evicted: its SYN again looks new (never an invented retransmission).
    assert.equal(c.classify(seg(2000, '10.0.0.1:10000', Sv, 1, 0, S)).type, 'syn');
    assert.equal(c.classify(seg(2001, '10.0.0.1:10999', Sv, 1, 0, S)).type, 'retransmit');
    assert.ok(events.every((e) => e.type === 'syn'));
  });
});

describe('the pcap stream', () => {
  const frames = [
    eth(0x0800, ip4('127.0.0.1', '127.0.0.1', 6, tcpHeader(40000, 7000, 100, 0, S, 65495))),
    eth(0x0800, ip4('127.0.0.1', '127.0.0.1', 6, tcpHeader(7000, 40000, 900, 101, S | A, 65483))),
    eth(0x0800, ip4('127.0.0.1', '127.0.0.1', 6, tcpHeader(40000, 7000, 101, 901, P | A, 64), 5)),
  ];
  const records = (nano: boolean) => frames.map((data, i) => ({ sec: 1_700_000_000 + i, frac: nano ? 123_456_789 : 123_456, data, orig: data.length + (i === 2 ? 5 : 0) }));

  const read = (chunks: Buffer[]) => {
    const out: Omit<PcapRecord, 'data'>[] = [];
    const r = new PcapReader((rec) => out.push({ linktype: rec.linktype, sec: rec.sec, nsec: rec.nsec, origLen: rec.origLen }));
    for (const c of chunks) r.push(c);
    return { out, reader: r };
  };

  test('microsecond and nanosecond files, both byte orders, any chunking: the same records', () => {
    for (const nano of [false, true]) {
      for (const bigEndian of [false, true]) {
        const file = pcap(LINKTYPE.ETHERNET, records(nano), { nano, bigEndian });
        const whole = read([file]);
        assert.equal(whole.reader.error, undefined);
        assert.equal(whole.out.length, 3);
        assert.deepEqual(whole.out[0], { linktype: 1, sec: 1_700_000_000, nsec: nano ? 123_456_789 : 123_456_000, origLen: frames[0]!.length });
        for (let i = 0; i < 50; i++) assert.deepEqual(read(splitRandomly(file, 1 + (i % 40))).out, whole.out);
        assert.deepEqual(read([...file].map((b) => Buffer.from([b]))).out, whole.out, 'one byte at a time');
      }
    }
  });

  test('garbage stops the stream with a reason and never throws; memory stays under one record', () => {
    assert.match(read([Buffer.from('hello, this is not a pcap file at all')]).reader.error ?? '', /not a pcap stream/);
    assert.match(read([Buffer.from('0a0d0d0a1c0000004d3c2b1a01000000ffffffffffffffff', 'hex')]).reader.error ?? '', /pcapng/);
    const huge = Buffer.concat([pcap(LINKTYPE.ETHERNET, []), Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0])]);
    const r = read([huge]).reader;
    assert.match(r.error ?? '', /corrupt pcap record/);
    r.push(Buffer.alloc(1000)); // ignored after the error
    assert.equal(r.buffered, 0);
    // A stream of full records keeps nothing; a partial record keeps only itself.
    const file = pcap(LINKTYPE.ETHERNET, records(false));
    const reader = new PcapReader(() => {});
    for (let i = 0; i < 200; i++) reader.push(i === 0 ? file : file.subarray(24));
    assert.equal(reader.records, 600);
    assert.equal(reader.buffered, 0);
    reader.push(file.subarray(24, 30));
    assert.equal(reader.buffered, 6);
  });

  test('fuzz: random bytes, random records and mutated captures never throw', () => {
    const file = pcap(LINKTYPE.ETHERNET, records(true), { nano: true });
    for (let round = 0; round < 3000; round++) {
      let input: Buffer;
      const kind = round % 3;
      if (kind === 0) input = randomBytes(Math.floor(Math.random() * 600));
      else if (kind === 1) {
        // A valid header, then records of random link types and random contents.
        const recs = Array.from({ length: 5 }, () => ({ sec: 1, frac: 1, data: randomBytes(Math.floor(Math.random() * 200)) }));
        input = pcap([1, 101, 113, 228, 229, 276][round % 6]!, recs);
      } else {
        input = Buffer.from(file);
        for (let i = 0; i < 1 + (round % 8); i++) input[24 + Math.floor(Math.random() * (input.length - 24))] = Math.floor(Math.random() * 256);
      }
      const stream = new PcapEventStream(ZERO_CLOCK, () => {});
      for (const c of splitRandomly(input, 64)) stream.push(c);
    }
  });
});

describe('clocks', () => {
  test('capture times to CLOCK_MONOTONIC keep nanoseconds', () => {
    const offset = { wallMs: 1_700_000_000_123, mono: 100, error: 0 };
    assert.ok(Math.abs(toMonotonic(offset, 1_700_000_000, 223_000_001) - 100.100000001) < 1e-9);
    assert.ok(Math.abs(toMonotonic(offset, 1_699_999_999, 0) - 98.877) < 1e-9);
  });

  test("the measured offset agrees with Python's time.time() - time.monotonic() to a few µs", (t) => {
    if (!have('python3')) return t.skip('python3 is not installed');
    const ours = measureClockOffset();
    assert.ok(ours.error < 50e-6, `the bracket is tight (±${ours.error * 1e6} µs)`);
    // Python's own best of 2000 reads (time_ns has ns resolution, so this is a fair judge).
    const py = spawnSync('python3', ['-c', [
      'import time', 'best = None',
      'for i in range(2000):',
      '    a = time.monotonic_ns(); r = time.time_ns(); b = time.monotonic_ns()',
      '    if best is None or b - a < best[0]: best = (b - a, r - (a + b) // 2)',
      'print(best[1])',
    ].join('\n')], { encoding: 'utf8' });
    assert.equal(py.status, 0, py.stderr);
    const theirs = BigInt(py.stdout.trim());
    const oursNs = BigInt(ours.wallMs) * 1_000_000n - BigInt(Math.round(ours.mono * 1e9));
    const diffUs = Number(oursNs - theirs) / 1000;
    assert.ok(Math.abs(diffUs) < 20, `offsets differ by ${diffUs} µs`);
  });
});

describe('choosing the capturer', () => {
  const base = { requested: 'auto', mode: 'root', mappedSubIds: false, tcpdump: true, python: true } as const;

  test('tcpdump where it can run, else capture.py with the reason, else an error naming both', () => {
    assert.equal(chooseCaptureMethod(base).method, 'tcpdump');
    assert.equal(chooseCaptureMethod({ ...base, mode: 'rootless', mappedSubIds: true }).method, 'tcpdump');
    const noSubIds = chooseCaptureMethod({ ...base, mode: 'rootless' });
    assert.equal(noSubIds.method, 'af_packet');
    assert.match(noSubIds.note, /setgroups/);
    const noTcpdump = chooseCaptureMethod({ ...base, tcpdump: false });
    assert.equal(noTcpdump.method, 'af_packet');
    assert.match(noTcpdump.note, /tcpdump is not installed \(install it: apt-get install tcpdump\)/);
    assert.equal(chooseCaptureMethod({ ...base, requested: 'af_packet' }).method, 'af_packet');
    assert.throws(() => chooseCaptureMethod({ ...base, tcpdump: false, python: false }),
      (e: unknown) => e instanceof LabError && /tcpdump is not installed .* and python3 is not installed/.test(e.message));
    assert.throws(() => chooseCaptureMethod({ ...base, requested: 'tcpdump', mode: 'rootless' }), LabError);
  });

  test('argv: interface names are checked; -Z root only inside a user namespace', () => {
    for (const bad of ['lo; rm -rf /', '', 'a'.repeat(16), '../x', 'eth 0']) assert.throws(() => validInterface(bad), LabError, bad);
    assert.equal(validInterface('veth-c.1'), 'veth-c.1');
    const root = captureArgv('tcpdump', { interface: 'lo', snaplen: 160, mode: 'root' });
    const rootless = captureArgv('tcpdump', { interface: 'any', snaplen: 160, mode: 'rootless' });
    assert.ok(!root.includes('-Z'));
    assert.deepEqual(rootless.slice(rootless.indexOf('-Z'), rootless.indexOf('-Z') + 2), ['-Z', 'root']);
    assert.deepEqual(root.slice(0, 3), ['tcpdump', '-i', 'lo']);
    const py = captureArgv('af_packet', { interface: 'lo', snaplen: 128, mode: 'rootless', python: '/usr/bin/python3' });
    assert.equal(py[0], '/usr/bin/python3');
    assert.match(py[1]!, /samples\/python\/capture\.py$/);
  });
});

// ---------------------------------------------------------------------------------------
// Real captures in a namespace
// ---------------------------------------------------------------------------------------

/** A sample program inside the sandbox, its JSON events read from stdout. */
class Program {
  readonly events: AppEvent[] = [];
  readonly exited: Promise<number | null>;
  private readonly child: ChildProcessByStdio<null, Readable, Readable>;
  private waiters: { type: string; resolve: (e: AppEvent) => void }[] = [];

  constructor(sandbox: Sandbox, argv: string[]) {
    const full = sandbox.enter(['python3', ...argv, '--json']);
    this.child = spawn(full[0]!, full.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: labEnv() });
    let buffered = '';
    this.child.stdout.setEncoding('utf8').on('data', (d: string) => {
      buffered += d;
      const lines = buffered.split('\n');
      buffered = lines.pop()!;
      for (const line of lines) {
        const e = JSON.parse(line) as AppEvent;
        this.events.push(e);
        this.waiters = this.waiters.filter((w) => (w.type === e.type ? (w.resolve(e), false) : true));
      }
    });
    this.child.stderr.resume();
    this.exited = new Promise((r) => this.child.on('exit', (code) => r(code)));
  }

  waitFor(type: string): Promise<AppEvent> {
    const seen = this.events.find((e) => e.type === type);
    if (seen) return Promise.resolve(seen);
    return new Promise((r) => this.waiters.push({ type, resolve: r }));
  }

  /** SIGTERM to the program (nsenter's child); nsenter then exits with it. */
  async stop(): Promise<void> {
    const pid = this.child.pid!;
    try {
      const first = Number(readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/)[0]);
      process.kill(first > 0 ? first : pid, 'SIGTERM');
    } catch { /* exited already */ }
    await this.exited;
  }
}

const client = (sb: Sandbox, args: string[]) => new Program(sb, [join(SAMPLES, 'client.py'), ...args]);
const server = async (sb: Sandbox, args: string[]) => {
  const p = new Program(sb, [join(SAMPLES, 'server.py'), ...args]);
  await p.waitFor('listening');
  return p;
};

interface Run {
  events: TimelineEvent[];
  pcapBytes: Buffer;
  capture: PacketCapture;
}

/** A fresh sandbox, a capture with `method`, the exchange, then everything stopped. */
async function captured(method: CaptureMethod, body: (sb: Sandbox) => Promise<void>, setup?: (sb: Sandbox) => Promise<void>, iface = 'lo'): Promise<Run> {
  const sb = await Sandbox.create({ log: silentLogger, label: `packets-${method}` });
  try {
    await setup?.(sb);
    const events: TimelineEvent[] = [];
    const chunks: Buffer[] = [];
    const capture = await PacketCapture.start({ sandbox: sb, log: silentLogger, method, interface: iface, onEvent: (e) => events.push(e), onPcap: (c) => chunks.push(Buffer.from(c)) });
    try {
      await body(sb);
      await sleep(50);
    } finally {
      await capture.dispose();
    }
    assert.equal(capture.method, method);
    assert.equal(capture.stats.streamError, undefined);
    return { events, pcapBytes: Buffer.concat(chunks), capture };
  } finally {
    await sb.dispose();
  }
}

const summary = (events: TimelineEvent[], skipAcks = false) =>
  events.filter((e) => !skipAcks || e.type !== 'ack').map((e) => `${e.type}${e.of ? `:${e.of}` : ''} ${e.conn}`);

describe('real captures in a namespace', () => {
  let methods: CaptureMethod[] = [];
  let why = '';
  before(async () => {
    if (!have('python3')) {
      why = 'python3 is not installed (the exchanges are the Python samples)';
      return;
    }
    let sb: Sandbox;
    try {
      sb = await Sandbox.create({ log: silentLogger, label: 'packets-probe' });
    } catch (e) {
      why = `no namespace: ${e instanceof Error ? e.message : e}`;
      return;
    }
    for (const requested of ['tcpdump', 'af_packet'] as const) {
      try {
        chooseCaptureMethod({ requested, mode: sb.mode, mappedSubIds: sb.mappedSubIds, tcpdump: have('tcpdump'), python: true });
        methods.push(requested);
      } catch (e) {
        why = e instanceof Error ? e.message : String(e);
      }
    }
    await sb.dispose();
  });

  /** Runs `fn` for each method that can run here; notes the one that cannot. */
  const eachMethod = async (t: TestContext, fn: (m: CaptureMethod) => Promise<void>) => {
    if (methods.length === 0) return t.skip(why);
    if (methods.length < 2) t.diagnostic(`only ${methods.join(', ')}: ${why}`);
    await Promise.all(methods.map(fn));
  };

  const iptables = (...rule: string[]) => async (sb: Sandbox) => {
    await sb.exec(['iptables', ...rule]);
  };

  test('connect to a closed port: SYN, then RST+ACK from the server side, within the connect() call; on lo and on `any`', async (t) => {
    const runs: Record<string, string[]> = {};
    await eachMethod(t, async (method) => {
      for (const iface of ['lo', 'any']) {
        let app: AppEvent[] = [];
        const { events, capture } = await captured(method, async (sb) => {
          const c = client(sb, ['--port', '7999', '--bind', '127.0.0.1:40001', '--steps', 'connect']);
          await c.exited;
          app = c.events;
        }, undefined, iface);
        assert.deepEqual(summary(events), ['syn 127.0.0.1:40001>127.0.0.1:7999', 'rst 127.0.0.1:7999>127.0.0.1:40001'], `${method} ${iface}`);
        const [syn, rst] = events;
        assert.equal(rst!.flags, 'R.');
        assert.equal(rst!.ack, ((syn!.seq as number) + 1) >>> 0, 'the RST acknowledges the SYN');
        // Same clock: both packets fall inside the connect() call as the client timed it.
        const start = app.find((e) => e.type === 'connect-start')!.t;
        const error = app.find((e) => e.type === 'error')!;
        assert.equal(error.name, 'ECONNREFUSED');
        for (const p of [syn!, rst!]) assert.ok(p.t > start - 0.001 && p.t < error.t + 0.001, `${method}: ${p.type} at ${p.t}, connect ${start}..${error.t}`);
        // tcpdump writes Ethernet for lo and cooked v2 for any; capture.py always cooked v2.
        assert.equal(capture.linktype, iface === 'lo' && method === 'tcpdump' ? LINKTYPE.ETHERNET : LINKTYPE.LINUX_SLL2);
        runs[`${method} ${iface}`] = summary(events);
      }
    });
    for (const key of Object.keys(runs)) assert.deepEqual(runs[key], runs[Object.keys(runs)[0]!], key);
  });

  test('request and close: data and FIN both ways, keys as ss writes them, IPv4 and IPv6; a replay in random chunks gives the same events', async (t) => {
    const perMethod: Record<string, string[]> = {};
    await eachMethod(t, async (method) => {
      for (const [host, bind, listen] of [['127.0.0.1', '127.0.0.1:40002', '127.0.0.1'], ['::1', '[::1]:40002', '::1']] as const) {
        let ssKeys: string[] = [];
        const run = await captured(method, async (sb) => {
          const s = await server(sb, ['--host', listen, '--port', '7002', '--mode', 'echo']);
          const c = client(sb, ['--host', host, '--port', '7002', '--bind', bind, '--steps', 'connect,request,sleep:0.3,close']);
          await c.waitFor('response');
          const ss = await sb.exec(['ss', '-tan']);
          ssKeys = parseSs(ss.stdout).sockets.filter((x) => x.state === 'ESTAB').map(connectionKey).sort();
          assert.equal(await c.exited, 0);
          await sleep(100); // the server's FIN
          await s.stop();
        });
        const { events } = run;
        const client4 = host === '::1' ? '[::1]:40002>[::1]:7002' : '127.0.0.1:40002>127.0.0.1:7002';
        const server4 = host === '::1' ? '[::1]:7002>[::1]:40002' : '127.0.0.1:7002>127.0.0.1:40002';
        assert.deepEqual([...new Set(events.map((e) => e.conn))].sort(), ssKeys, 'the packet keys are the socket keys ss shows');
        const from = (conn: string) => events.filter((e) => e.conn === conn && e.type !== 'ack').map((e) => `${e.type} ${e.len}`);
        assert.deepEqual(from(client4), ['syn 0', 'data 5', 'fin 0'], `${method} ${host}: client`);
        assert.deepEqual(from(server4), ['syn-ack 0', 'data 5', 'fin 0'], `${method} ${host}: server`);
        assert.ok(events.every((e) => e.type !== 'retransmit' && e.type !== 'keepalive'));
        const fins = events.filter((e) => e.type === 'fin');
        assert.deepEqual(fins.map((e) => e.flags), ['F.', 'F.']);
        // The same bytes fed again in random pieces: the same events, to the nanosecond.
        for (let i = 0; i < 20; i++) {
          const again: TimelineEvent[] = [];
          const stream = new PcapEventStream(run.capture.clock, (e) => again.push(e));
          for (const c of splitRandomly(run.pcapBytes, 1 + i * 7)) stream.push(c);
          assert.deepEqual(again, events);
        }
        perMethod[`${method} ${host}`] = summary(events, true).sort();
      }
    });
    for (const host of ['127.0.0.1', '::1']) {
      if (perMethod[`tcpdump ${host}`] && perMethod[`af_packet ${host}`]) {
        assert.deepEqual(perMethod[`af_packet ${host}`], perMethod[`tcpdump ${host}`], `the two methods agree (${host})`);
      }
    }
  });

  test('dropped SYNs: retransmissions of the SYN on the kernel schedule, ±150 ms, then ETIMEDOUT', async (t) => {
    if (!have('iptables')) return t.skip('iptables is not installed (apt-get install iptables)');
    // Linux 6.17+ retransmits the first tcp_syn_linear_timeouts SYNs (default 4) every second
    // before backing off; 0 gives the classic doubling. TCP_SYNCNT=2 bounds the attempt to
    // 1 + 2 + 4 = 7 s either way. Both schedules, with every capture method, in parallel.
    const hasLinear = spawnSync('sysctl', ['-n', 'net.ipv4.tcp_syn_linear_timeouts'], { env: labEnv() }).status === 0;
    const cases: { linear: number | null; expect: number[] }[] = hasLinear
      ? [{ linear: 0, expect: [1, 3] }, { linear: 4, expect: [1, 2, 3, 4, 5] }]
      : [{ linear: null, expect: [1, 3] }];
    await eachMethod(t, async (method) => {
      await Promise.all(cases.map(async ({ linear, expect }) => {
        let error: AppEvent | undefined;
        const { events } = await captured(method, async (sb) => {
          const c = client(sb, ['--port', '7003', '--syncnt', '2', '--steps', 'connect']);
          await c.exited;
          error = c.events.find((e) => e.type === 'error');
        }, async (sb) => {
          if (linear !== null) await sb.exec(['sysctl', '-w', `net.ipv4.tcp_syn_linear_timeouts=${linear}`]);
          await iptables('-A', 'INPUT', '-p', 'tcp', '--dport', '7003', '--syn', '-j', 'DROP')(sb);
        });
        const label = `${method}, linear timeouts ${linear}`;
        assert.deepEqual(events.map((e) => e.type), ['syn', ...expect.map(() => 'retransmit')], label);
        assert.ok(events.slice(1).every((e) => e.of === 'syn' && e.seq === events[0]!.seq && e.conn === events[0]!.conn));
        const at = events.slice(1).map((e) => e.t - events[0]!.t);
        at.forEach((x, i) => assert.ok(Math.abs(x - expect[i]!) < 0.15, `${label}: retransmission ${i + 1} at ${x.toFixed(3)} s, expected ${expect[i]} s`));
        assert.equal(error?.name, 'ETIMEDOUT', label);
        const took = (error!.t as number) - events[0]!.t;
        // The last wait is a long timer: the timer wheel files it at a coarser level, which
        // may fire it up to 1/8 of its length late (7.30 s seen here).
        assert.ok(took > 6.9 && took < 7.7, `${label}: ETIMEDOUT after ${took.toFixed(3)} s`);
      }));
    });
  });

  test('keepalive: probes one below what was sent, a second apart, each answered by an ACK', async (t) => {
    await eachMethod(t, async (method) => {
      const { events } = await captured(method, async (sb) => {
        const s = await server(sb, ['--port', '7004', '--mode', 'echo']);
        const c = client(sb, ['--port', '7004', '--bind', '127.0.0.1:40004', '--keepalive', '1,1,5', '--steps', 'connect,sleep:3.5,close']);
        assert.equal(await c.exited, 0);
        await s.stop();
      });
      const out = '127.0.0.1:40004>127.0.0.1:7004';
      const handshakeAck = events.find((e) => e.type === 'ack' && e.conn === out)!;
      const probes = events.filter((e) => e.type === 'keepalive');
      assert.ok(probes.length >= 2 && probes.length <= 3, `${method}: ${probes.length} probes`);
      assert.ok(probes.every((p) => p.conn === out && p.len === 0 && p.flags === '.' && p.seq === ((handshakeAck.seq as number) - 1) >>> 0));
      const gaps = [probes[0]!.t - handshakeAck.t, ...probes.slice(1).map((p, i) => p.t - probes[i]!.t)];
      gaps.forEach((g) => assert.ok(Math.abs(g - 1) < 0.15, `${method}: probes ${gaps.map((x) => x.toFixed(3))} s apart, want 1 s`));
      for (const p of probes) {
        const answer = events.find((e) => e.t >= p.t && e.conn === '127.0.0.1:7004>127.0.0.1:40004');
        assert.equal(answer?.type, 'ack', `${method}: the peer answers the probe`);
        assert.equal(answer?.ack, handshakeAck.seq);
      }
      assert.ok(events.every((e) => e.type !== 'retransmit'), 'no retransmission invented from duplicate copies');
    });
  });

  test('ICMP errors: port and host unreachable, IPv4 and IPv6, with the quoted connection', async (t) => {
    if (!have('iptables') || !have('ip6tables')) return t.skip('iptables/ip6tables are not installed (apt-get install iptables)');
    await eachMethod(t, async (method) => {
      const { events } = await captured(method, async (sb) => {
        for (const [host, port, bind] of [['127.0.0.1', '7005', '127.0.0.1:40005'], ['127.0.0.1', '7006', '127.0.0.1:40006'], ['::1', '7005', '[::1]:40007']]) {
          await client(sb, ['--host', host!, '--port', port!, '--bind', bind!, '--steps', 'connect']).exited;
        }
      }, async (sb) => {
        await iptables('-A', 'INPUT', '-p', 'tcp', '--dport', '7005', '-j', 'REJECT', '--reject-with', 'icmp-port-unreachable')(sb);
        await iptables('-A', 'INPUT', '-p', 'tcp', '--dport', '7006', '-j', 'REJECT', '--reject-with', 'icmp-host-unreachable')(sb);
        await sb.exec(['ip6tables', '-A', 'INPUT', '-p', 'tcp', '--dport', '7005', '-j', 'REJECT', '--reject-with', 'icmp6-port-unreachable']);
      });
      const icmp = events.filter((e) => e.type === 'icmp');
      const first = (conn: string) => icmp.find((e) => e.conn === conn);
      for (const [conn, name, type, code] of [
        ['127.0.0.1:40005>127.0.0.1:7005', 'port-unreachable', 3, 3],
        ['127.0.0.1:40006>127.0.0.1:7006', 'host-unreachable', 3, 1],
        ['[::1]:40007>[::1]:7005', 'port-unreachable', 1, 4],
      ] as const) {
        const e = first(conn);
        assert.ok(e, `${method}: an icmp event for ${conn} (saw ${summary(events).join(', ')})`);
        assert.equal(e.icmp, name);
        assert.equal(e.icmpType, type);
        assert.equal(e.code, code);
        const syn = events.find((x) => x.type === 'syn' && x.conn === conn);
        assert.equal(e.seq, syn?.seq, 'the error quotes the SYN');
      }
    });
  });

  test('a receiver that stops reading: zero-window probes, told apart from keepalives', async (t) => {
    await eachMethod(t, async (method) => {
      const { events } = await captured(method, async (sb) => {
        await sb.exec(['python3', '-c', [
          'import socket, time',
          'l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)',
          'l.bind(("127.0.0.1", 7007)); l.listen()',
          'c = socket.socket(); c.connect(("127.0.0.1", 7007)); a, _ = l.accept()',
          'c.setblocking(False)',
          'try:\n    while True: c.send(b"x" * 1000)\nexcept BlockingIOError: pass',
          'time.sleep(1.2)',
        ].join('\n')]);
      });
      const probes = events.filter((e) => e.type === 'window-probe');
      assert.ok(probes.length >= 2, `${method}: ${probes.length} window probes`);
      assert.ok(events.some((e) => e.conn?.startsWith('127.0.0.1:7007>') && e.win === 0), 'the receiver advertised a zero window');
      assert.ok(events.every((e) => e.type !== 'keepalive'));
    });
  });

  test('rootless without sub-id mapping: tcpdump really cannot drop privileges; auto falls back to AF_PACKET', async (t) => {
    if (!have('tcpdump')) return t.skip('tcpdump is not installed: nothing to fall back from');
    if (!have('unshare') || !have('nsenter')) return t.skip('util-linux is not installed');
    // A namespace as plain `unshare --user --map-root-user` makes it: setgroups denied.
    const holder = spawn('unshare', ['--user', '--map-root-user', '--net', '--pid', '--fork', '--kill-child', '--mount-proc', '--mount', 'cat'],
      { stdio: ['pipe', 'pipe', 'pipe'], env: labEnv() }) as ChildProcessByStdio<Writable, Readable, Readable>;
    const up = await new Promise<boolean>((r) => {
      holder.stdout.once('data', () => r(true));
      holder.once('exit', () => r(false));
      holder.stdin.write('x\n');
    });
    if (!up) return t.skip('cannot create a user namespace here');
    t.after(() => holder.stdin.end());
    const pid = Number(readFileSync(`/proc/${holder.pid}/task/${holder.pid}/children`, 'utf8').trim().split(/\s+/)[0]);
    const enter = (argv: readonly string[]) => ['nsenter', '--target', String(pid), '--user', '--preserve-credentials', '--net', '--pid', '--mount', '--', ...argv];
    const run = (argv: string[]) => spawnSync(enter(argv)[0]!, enter(argv).slice(1), { encoding: 'utf8', env: labEnv(), timeout: 10_000 });
    assert.equal(run(['ip', 'link', 'set', 'lo', 'up']).status, 0);
    assert.equal(run(['cat', '/proc/self/setgroups']).stdout.trim(), 'deny');
    const direct = run(['tcpdump', '-i', 'lo', '-w', '-', '-Z', 'root', '-c', '1']);
    assert.notEqual(direct.status, 0);
    assert.match(direct.stderr, /Couldn't change to 'root'.*Operation not permitted/);

    const capture = async (mappedSubIds: boolean) => {
      const events: TimelineEvent[] = [];
      const cap = await PacketCapture.start({ sandbox: { mode: 'rootless', mappedSubIds, enter }, log: silentLogger, onEvent: (e) => events.push(e) });
      run(['python3', join(SAMPLES, 'client.py'), '--port', '7999', '--steps', 'connect']);
      await sleep(50);
      await cap.dispose();
      return { cap, types: events.map((e) => e.type) };
    };
    const honest = await capture(false);
    assert.equal(honest.cap.method, 'af_packet');
    assert.match(honest.cap.note, /setgroups is denied/);
    assert.deepEqual(honest.types, ['syn', 'rst']);
    // Told (wrongly) that sub-ids are mapped: tcpdump is tried, fails, and capture.py takes over.
    const fooled = await capture(true);
    assert.equal(fooled.cap.method, 'af_packet');
    assert.match(fooled.cap.note, /tcpdump failed: .*Operation not permitted/);
    assert.deepEqual(fooled.types, ['syn', 'rst']);
  });

  test('as the unprivileged user: the capture picks its method and sees the exchange', async (t) => {
    if (process.getuid?.() !== 0) return t.skip('run as root to test as another user (this run is unprivileged already)');
    const { ensureTestUser, TEST_USER } = await import('../../test/support/lab');
    ensureTestUser();
    const root = resolve(__dirname, '..', '..');
    const uid = spawnSync('id', ['-u', TEST_USER], { encoding: 'utf8' }).stdout.trim();
    const gid = spawnSync('id', ['-g', TEST_USER], { encoding: 'utf8' }).stdout.trim();
    const as = ['setpriv', `--reuid=${uid}`, `--regid=${gid}`, '--init-groups', '--reset-env', '--'];
    if (spawnSync(as[0]!, [...as.slice(1), 'test', '-r', join(root, 'src', 'lab', 'packets.ts')]).status !== 0) {
      return t.skip(`${TEST_USER} cannot read this checkout (${root})`);
    }
    const script = `
      const { Sandbox } = require(${JSON.stringify(join(root, 'src/lab/sandbox.ts'))});
      const { PacketCapture } = require(${JSON.stringify(join(root, 'src/lab/packets.ts'))});
      const { silentLogger } = require(${JSON.stringify(join(root, 'src/lab/log.ts'))});
      (async () => {
        const sb = await Sandbox.create({ log: silentLogger, label: 'packets-user' });
        const types = [];
        const cap = await PacketCapture.start({ sandbox: sb, log: silentLogger, onEvent: (e) => types.push(e.type) });
        await sb.exec(['python3', ${JSON.stringify(join(SAMPLES, 'client.py'))}, '--port', '7999', '--steps', 'connect'], { allowFailure: true });
        await new Promise((r) => setTimeout(r, 50));
        await cap.dispose();
        console.log(JSON.stringify({ mode: sb.mode, mapped: sb.mappedSubIds, method: cap.method, note: cap.note, types }));
        await sb.dispose();
      })().catch((e) => { console.error(e.message); process.exit(1); });`;
    const r = spawnSync(as[0]!, [...as.slice(1), 'env', 'PATH=/usr/bin:/bin', `HOME=/tmp`, process.execPath, '--import', 'tsx', '-e', script],
      { cwd: root, encoding: 'utf8', timeout: 60_000 });
    if (r.status !== 0 && /user namespace/.test(r.stderr)) return t.skip(`no user namespaces for ${TEST_USER}: ${r.stderr.trim()}`);
    assert.equal(r.status, 0, r.stderr);
    const got = JSON.parse(r.stdout.trim().split('\n').pop()!) as { mode: string; mapped: boolean; method: string; note: string; types: string[] };
    t.diagnostic(`${TEST_USER}: ${got.method} (${got.note})`);
    assert.equal(got.mode, 'rootless');
    assert.equal(got.method, got.mapped && have('tcpdump') ? 'tcpdump' : 'af_packet');
    assert.deepEqual(got.types, ['syn', 'rst']);
  });
});
