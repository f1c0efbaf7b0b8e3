import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { monotonic } from './clock';
import { LabError } from './errors';
import { installHint, labEnv } from './exec';
import type { Logger } from './log';
import { missingTools } from './preflight';
import type { Sandbox } from './sandbox';
import { samplesDir } from './samples';
import { WIRE, type TimelineEvent } from './timeline';

/**
 * Packets on the timeline. A capturer inside the lab's namespace (tcpdump, or
 * samples/python/capture.py on an AF_PACKET socket where tcpdump cannot run) writes a pcap
 * stream on stdout; this file parses it in whatever pieces it arrives, decodes TCP and the
 * ICMP errors that quote a TCP header, and classifies each segment per direction:
 *
 *   syn, syn-ack, ack (no payload), data, fin, rst,
 *   retransmit   a SYN again with the same ISN, or a segment starting below the highest
 *                sequence already sent; `of` says what: syn | syn-ack | data | fin
 *   keepalive    ACK only, 0 or 1 byte, seq one below what was sent, all of it acked
 *                (Linux sends seq = snd_una - 1 and no payload: tcp_xmit_probe_skb)
 *   window-probe the same segment while the peer advertises a zero window: Linux's
 *                zero-window probe is byte for byte a keepalive, only the peer's window
 *                tells them apart
 *   icmp         an ICMP/ICMPv6 error; `conn` is the quoted segment's connection
 *
 * Every event has `conn` from the sender's side (`src:sport>dst:dport`, IPv6 in brackets,
 * as `connectionKey` in ss.ts writes it), `flags` as tcpdump prints them (`S.`, `FP.`), and
 * seq, ack (absolute, as `tcpdump -S`), len (payload bytes) and win (the raw header field,
 * unscaled, as tcpdump prints it). A dual-stack socket that ss shows as
 * `[::ffff:127.0.0.1]:...` sends IPv4 packets, keyed `127.0.0.1:...` here.
 *
 * Duplicates: on lo the kernel hands a packet socket each packet twice (leaving and
 * arriving); libpcap and capture.py keep only the arrival. With `-i any` on a namespace that
 * forwards, a segment is seen on both interfaces: where the link type names the interface
 * (LINUX_SLL2) the classifier keeps each interface apart, so the second copy is not taken
 * for a retransmission.
 */

// ---------------------------------------------------------------------------------------
// pcap stream
// ---------------------------------------------------------------------------------------

/** One pcap record; `data` is only valid during the callback (it points into a buffer). */
export interface PcapRecord {
  linktype: number;
  /** CLOCK_REALTIME at capture: whole seconds and nanoseconds. */
  sec: number;
  nsec: number;
  data: Buffer;
  /** The packet's length on the wire (data may be cut at the snap length). */
  origLen: number;
}

/** Larger than any snap length tcpdump accepts: a record claiming more is garbage. */
const MAX_RECORD = 262_144;

/**
 * Reads a pcap stream (tcpdump -w -) from chunks of any size. Memory is bounded: at most one
 * incomplete record is held. Garbage never throws: it sets `error`, and the rest is ignored
 * (pcap has no sync marks to recover from).
 */
export class PcapReader {
  private chunks: Buffer[] = [];
  private size = 0;
  private need = 24;
  private header: { swapped: boolean; nano: boolean; linktype: number } | undefined;
  error: string | undefined;
  records = 0;

  constructor(private readonly onRecord: (r: PcapRecord) => void) {}

  get linktype(): number | undefined {
    return this.header?.linktype;
  }

  /** Bytes held for an incomplete record: less than one record. */
  get buffered(): number {
    return this.size;
  }

  push(chunk: Uint8Array): void {
    if (this.error !== undefined || chunk.length === 0) return;
    this.chunks.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    this.size += chunk.length;
    if (this.size < this.need) return;
    const buf = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.size);
    const used = this.parse(buf);
    // Copy the tail: it is less than one record, and a subarray would pin the whole chunk.
    const rest = used === buf.length ? Buffer.alloc(0) : Buffer.from(buf.subarray(used));
    this.chunks = rest.length ? [rest] : [];
    this.size = rest.length;
  }

  private parse(buf: Buffer): number {
    let at = 0;
    if (!this.header) {
      const magic = buf.readUInt32LE(0);
      const known: Record<number, { swapped: boolean; nano: boolean }> = {
        0xa1b2c3d4: { swapped: false, nano: false }, 0xa1b23c4d: { swapped: false, nano: true },
        0xd4c3b2a1: { swapped: true, nano: false }, 0x4d3cb2a1: { swapped: true, nano: true },
      };
      const kind = known[magic];
      if (!kind) {
        this.error = magic === 0x0a0d0d0a ? 'pcapng is not supported (tcpdump -w writes pcap)' : `not a pcap stream (magic 0x${magic.toString(16)})`;
        return buf.length;
      }
      const u32 = (o: number) => (kind.swapped ? buf.readUInt32BE(o) : buf.readUInt32LE(o));
      this.header = { ...kind, linktype: u32(20) & 0xffff };
      at = 24;
    }
    const { swapped, nano, linktype } = this.header;
    const u32 = (o: number) => (swapped ? buf.readUInt32BE(o) : buf.readUInt32LE(o));
    for (;;) {
      if (buf.length - at < 16) {
        this.need = 16;
        return at;
      }
      const caplen = u32(at + 8);
      if (caplen > MAX_RECORD) {
        this.error = `corrupt pcap record (${caplen} bytes captured)`;
        return buf.length;
      }
      if (buf.length - at < 16 + caplen) {
        this.need = 16 + caplen;
        return at;
      }
      const frac = u32(at + 4);
      const record: PcapRecord = {
        linktype,
        sec: u32(at),
        nsec: nano ? Math.min(frac, 999_999_999) : Math.min(frac, 999_999) * 1000,
        origLen: Math.max(u32(at + 12), caplen),
        data: buf.subarray(at + 16, at + 16 + caplen),
      };
      at += 16 + caplen;
      this.records++;
      this.onRecord(record);
    }
  }
}

// ---------------------------------------------------------------------------------------
// Decoding: link layer, IPv4/IPv6, TCP, ICMP errors
// ---------------------------------------------------------------------------------------

export const LINKTYPE = { ETHERNET: 1, RAW: 101, LINUX_SLL: 113, IPV4: 228, IPV6: 229, LINUX_SLL2: 276 } as const;

export interface TcpSegment {
  kind: 'tcp';
  /** Seconds on the caller's clock (CLOCK_MONOTONIC once converted). */
  t: number;
  family: 4 | 6;
  src: string;
  dst: string;
  sport: number;
  dport: number;
  seq: number;
  ack: number;
  /** TCP flag bits: FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10, URG 0x20, ECE 0x40, CWR 0x80. */
  flags: number;
  win: number;
  /** Payload bytes, from the IP length (not from what was captured). */
  len: number;
  /** The interface, where the link type says (LINUX_SLL2: `tcpdump -i any`, capture.py). */
  ifindex?: number;
}

export interface IcmpError {
  kind: 'icmp';
  t: number;
  family: 4 | 6;
  /** Who sent the error (a router, or the host that refused). */
  from: string;
  icmpType: number;
  code: number;
  /** The TCP segment the error quotes, as its sender sent it. */
  quoted: { src: string; dst: string; sport: number; dport: number; seq: number };
  ifindex?: number;
}

export type Packet = TcpSegment | IcmpError;

const F = { FIN: 0x01, SYN: 0x02, RST: 0x04, PSH: 0x08, ACK: 0x10, URG: 0x20, ECE: 0x40, CWR: 0x80 } as const;

/** A link-layer frame to a packet; undefined for anything that is not TCP or an ICMP error about TCP. */
export function decodeFrame(linktype: number, data: Buffer, origLen: number, t: number): Packet | undefined {
  let ethertype: number | undefined;
  let ifindex: number | undefined;
  let at: number;
  switch (linktype) {
    case LINKTYPE.ETHERNET: {
      if (data.length < 14) return undefined;
      ethertype = data.readUInt16BE(12);
      at = 14;
      // 802.1Q / 802.1ad tags, possibly stacked.
      while ((ethertype === 0x8100 || ethertype === 0x88a8) && data.length >= at + 4) {
        ethertype = data.readUInt16BE(at + 2);
        at += 4;
      }
      break;
    }
    case LINKTYPE.LINUX_SLL:
      if (data.length < 16) return undefined;
      ethertype = data.readUInt16BE(14);
      at = 16;
      break;
    case LINKTYPE.LINUX_SLL2:
      if (data.length < 20) return undefined;
      ethertype = data.readUInt16BE(0);
      ifindex = data.readUInt32BE(4);
      at = 20;
      break;
    case LINKTYPE.RAW: case LINKTYPE.IPV4: case LINKTYPE.IPV6:
      at = 0;
      break;
    default:
      return undefined;
  }
  if (ethertype === undefined) {
    const version = data.length > 0 ? data[0]! >> 4 : 0;
    ethertype = version === 4 ? 0x0800 : version === 6 ? 0x86dd : 0;
  }
  const wire = origLen - at;
  const p = ethertype === 0x0800 ? decodeIp4(data.subarray(at), wire, t) : ethertype === 0x86dd ? decodeIp6(data.subarray(at), wire, t) : undefined;
  if (p && ifindex !== undefined) p.ifindex = ifindex;
  return p;
}

interface IpHead {
  family: 4 | 6;
  src: string;
  dst: string;
  proto: number;
  /** Offset of the transport header. */
  at: number;
  /** Transport bytes on the wire (header and payload). */
  payload: number;
}

function ip4Head(b: Buffer, wire: number): IpHead | undefined {
  if (b.length < 20 || b[0]! >> 4 !== 4) return undefined;
  const ihl = (b[0]! & 0x0f) * 4;
  if (ihl < 20 || b.length < ihl) return undefined;
  if ((b.readUInt16BE(6) & 0x1fff) !== 0) return undefined; // a later fragment: no transport header
  const total = b.readUInt16BE(2);
  // A segmentation-offloaded packet can show total length 0: use its captured wire length.
  const payload = (total >= ihl ? total : wire) - ihl;
  return { family: 4, src: ip4Text(b, 12), dst: ip4Text(b, 16), proto: b[9]!, at: ihl, payload };
}

function ip6Head(b: Buffer, wire: number): IpHead | undefined {
  if (b.length < 40 || b[0]! >> 4 !== 6) return undefined;
  const plen = b.readUInt16BE(4);
  let payload = plen === 0 ? wire - 40 : plen; // 0: a jumbogram or a GSO packet
  let next = b[6]!;
  let at = 40;
  // Walk extension headers: hop-by-hop, routing, destination options, fragment.
  for (let hops = 0; hops < 8 && (next === 0 || next === 43 || next === 60 || next === 44); hops++) {
    if (b.length < at + 8) return undefined;
    if (next === 44 && (b.readUInt16BE(at + 2) & 0xfff8) !== 0) return undefined; // a later fragment
    const size = next === 44 ? 8 : (b[at + 1]! + 1) * 8;
    next = b[at]!;
    at += size;
    payload -= size;
  }
  return { family: 6, src: ip6Text(b, 8), dst: ip6Text(b, 24), proto: next, at, payload };
}

function decodeIp4(b: Buffer, wire: number, t: number): Packet | undefined {
  const ip = ip4Head(b, wire);
  if (!ip) return undefined;
  if (ip.proto === 6) return tcp(b, ip, t);
  if (ip.proto === 1 && b.length >= ip.at + 8) {
    const type = b[ip.at]!;
    if (type !== 3 && type !== 11 && type !== 12) return undefined; // not an error
    const inner = b.subarray(ip.at + 8);
    const q = ip4Head(inner, inner.length);
    return q ? icmpError(4, ip.src, type, b[ip.at + 1]!, inner, q, t) : undefined;
  }
  return undefined;
}

function decodeIp6(b: Buffer, wire: number, t: number): Packet | undefined {
  const ip = ip6Head(b, wire);
  if (!ip) return undefined;
  if (ip.proto === 6) return tcp(b, ip, t);
  if (ip.proto === 58 && b.length >= ip.at + 8) {
    const type = b[ip.at]!;
    if (type < 1 || type > 4) return undefined; // 1-4 are the errors; 128+ are informational
    const inner = b.subarray(ip.at + 8);
    const q = ip6Head(inner, inner.length);
    return q ? icmpError(6, ip.src, type, b[ip.at + 1]!, inner, q, t) : undefined;
  }
  return undefined;
}

function tcp(b: Buffer, ip: IpHead, t: number): TcpSegment | undefined {
  const at = ip.at;
  if (b.length < at + 20) return undefined;
  const doff = (b[at + 12]! >> 4) * 4;
  if (doff < 20) return undefined;
  return {
    kind: 'tcp', t, family: ip.family, src: ip.src, dst: ip.dst,
    sport: b.readUInt16BE(at), dport: b.readUInt16BE(at + 2),
    seq: b.readUInt32BE(at + 4), ack: b.readUInt32BE(at + 8),
    flags: b[at + 13]!, win: b.readUInt16BE(at + 14),
    len: Math.max(0, ip.payload - doff),
  };
}

function icmpError(family: 4 | 6, from: string, icmpType: number, code: number, inner: Buffer, q: IpHead, t: number): IcmpError | undefined {
  // RFC 792 promises the first 8 bytes of the quoted transport header: ports and seq.
  if (q.proto !== 6 || inner.length < q.at + 8) return undefined;
  return {
    kind: 'icmp', t, family, from, icmpType, code,
    quoted: { src: q.src, dst: q.dst, sport: inner.readUInt16BE(q.at), dport: inner.readUInt16BE(q.at + 2), seq: inner.readUInt32BE(q.at + 4) },
  };
}

function ip4Text(b: Buffer, o: number): string {
  return `${b[o]}.${b[o + 1]}.${b[o + 2]}.${b[o + 3]}`;
}

/**
 * An IPv6 address as glibc's inet_ntop writes it, which is what ss prints: the longest run of
 * two or more zero groups (the first of equal runs) becomes `::`, and an IPv4-mapped address
 * (::ffff:a.b.c.d) or one whose first six groups alone are zero (::a.b.c.d, the old
 * IPv4-compatible form) ends in dotted IPv4. glibc's rule is narrower than BSD's: ::16d1
 * stays hex (checked against Python's socket.inet_ntop in the tests).
 */
export function ip6Text(b: Uint8Array, o = 0): string {
  const w: number[] = [];
  for (let i = 0; i < 8; i++) w.push((b[o + 2 * i]! << 8) | b[o + 2 * i + 1]!);
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < 8;) {
    if (w[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && w[j] === 0) j++;
    if (j - i > bestLen) { best = i; bestLen = j - i; }
    i = j;
  }
  if (bestLen < 2) best = -1;
  const v4 = best === 0 && (bestLen === 6 || (bestLen === 5 && w[5] === 0xffff));
  const groups = v4 ? 6 : 8;
  let out = '';
  for (let i = 0; i < groups; i++) {
    if (i === best) {
      out += '::';
      i += bestLen - 1;
      continue;
    }
    if (out !== '' && !out.endsWith(':')) out += ':';
    out += w[i]!.toString(16);
  }
  if (v4) out += `${out.endsWith(':') ? '' : ':'}${b[o + 12]}.${b[o + 13]}.${b[o + 14]}.${b[o + 15]}`;
  return out;
}

function endpoint(family: 4 | 6, address: string, port: number): string {
  return family === 6 ? `[${address}]:${port}` : `${address}:${port}`;
}

/** The 4-tuple key from the sender's side, in `connectionKey`'s format. */
export function packetKey(family: 4 | 6, src: string, sport: number, dst: string, dport: number): string {
  return `${endpoint(family, src, sport)}>${endpoint(family, dst, dport)}`;
}

/** tcpdump's flag letters, in its order: `S.` for SYN-ACK, `FP.`, `R.`, `none` for no flags. */
export function flagText(flags: number): string {
  let s = '';
  for (const [bit, c] of [[F.FIN, 'F'], [F.SYN, 'S'], [F.RST, 'R'], [F.PSH, 'P'], [F.ACK, '.'], [F.URG, 'U'], [F.ECE, 'E'], [F.CWR, 'W']] as const) {
    if (flags & bit) s += c;
  }
  return s || 'none';
}

const ICMP4: Record<number, Record<number, string>> = {
  3: {
    0: 'net-unreachable', 1: 'host-unreachable', 2: 'protocol-unreachable', 3: 'port-unreachable',
    4: 'fragmentation-needed', 5: 'source-route-failed', 6: 'net-unknown', 7: 'host-unknown',
    9: 'net-prohibited', 10: 'host-prohibited', 13: 'admin-prohibited',
  },
  11: { 0: 'ttl-exceeded', 1: 'reassembly-time-exceeded' },
  12: { 0: 'parameter-problem' },
};
const ICMP6: Record<number, Record<number, string>> = {
  1: {
    0: 'no-route', 1: 'admin-prohibited', 2: 'beyond-scope', 3: 'address-unreachable',
    4: 'port-unreachable', 5: 'source-address-failed', 6: 'reject-route',
  },
  2: { 0: 'packet-too-big' },
  3: { 0: 'hop-limit-exceeded', 1: 'reassembly-time-exceeded' },
  4: { 0: 'parameter-problem' },
};

/** `port-unreachable`, `host-unreachable`, ... or `icmp type T code C` for others. */
export function icmpName(family: 4 | 6, type: number, code: number): string {
  const name = (family === 4 ? ICMP4 : ICMP6)[type]?.[code];
  return name ?? `icmp${family === 6 ? 'v6' : ''} type ${type} code ${code}`;
}

// ---------------------------------------------------------------------------------------
// Classification
// ---------------------------------------------------------------------------------------

export type PacketType = 'syn' | 'syn-ack' | 'ack' | 'data' | 'fin' | 'rst' | 'icmp' | 'retransmit' | 'keepalive' | 'window-probe';

/** One direction of a connection, as seen on the wire. */
interface Direction {
  /** The ISN of the SYN seen, if one was. */
  isn?: number;
  /** One past the highest sequence sent (seq + len, SYN and FIN counting one each). */
  next: number;
  /** The last ack this side sent, and the window it advertised. */
  ack?: number;
  win: number;
}

/** seq a is before b, in 32-bit sequence space (RFC 793's modular comparison). */
const before = (a: number, b: number) => ((a - b) | 0) < 0;
const plus = (a: number, n: number) => (a + n) >>> 0;

/**
 * Turns packets into timeline events, one direction table per 4-tuple. Memory is bounded:
 * past `maxFlows` directions the least recently seen is forgotten (its next segment is then
 * taken as new, never as a retransmission).
 */
export class PacketClassifier {
  private readonly flows = new Map<string, Direction>();

  constructor(private readonly maxFlows = 4096) {}

  get flowCount(): number {
    return this.flows.size;
  }

  classify(p: Packet): TimelineEvent {
    if (p.kind === 'icmp') {
      const q = p.quoted;
      return {
        t: p.t, source: 'packet', proc: WIRE, type: 'icmp',
        conn: packetKey(p.family, q.src, q.sport, q.dst, q.dport),
        icmp: icmpName(p.family, p.icmpType, p.code), icmpType: p.icmpType, code: p.code, from: p.from, seq: q.seq,
      };
    }
    const conn = packetKey(p.family, p.src, p.sport, p.dst, p.dport);
    // Per interface where the capture says which: `-i any` on a router sees a forwarded
    // segment twice (in and out), and the second copy is no retransmission.
    const dev = p.ifindex === undefined ? '' : `${p.ifindex}/`;
    const reverse = this.flows.get(dev + packetKey(p.family, p.dst, p.dport, p.src, p.sport));
    const { type, of } = this.judge(dev + conn, p, reverse);
    const e: TimelineEvent = {
      t: p.t, source: 'packet', proc: WIRE, type, conn,
      flags: flagText(p.flags), seq: p.seq, len: p.len, win: p.win,
    };
    if (p.flags & F.ACK) e.ack = p.ack;
    if (of) e.of = of;
    return e;
  }

  private judge(key: string, p: TcpSegment, reverse: Direction | undefined): { type: PacketType; of?: string } {
    // A RST ends the connection; its seq may be 0 (the answer to a SYN), so it moves nothing.
    if (p.flags & F.RST) return { type: 'rst' };
    const syn = (p.flags & F.SYN) !== 0;
    const fin = (p.flags & F.FIN) !== 0;
    const end = plus(p.seq, p.len + (syn ? 1 : 0) + (fin ? 1 : 0));
    let d = this.flows.get(key);
    if (d) this.flows.delete(key); // re-inserted below: Map order is recency
    const known = d !== undefined;
    d ??= { next: end, win: p.win };
    this.remember(key, d);
    const prevNext = d.next;
    if (!before(end, d.next)) d.next = end;
    if (p.flags & F.ACK) d.ack = p.ack;
    d.win = p.win;

    if (syn) {
      const kind = p.flags & F.ACK ? 'syn-ack' : 'syn';
      if (known && d.isn === p.seq) return { type: 'retransmit', of: kind };
      // A new ISN on a known 4-tuple is a new connection (a TIME_WAIT reuse, say).
      d.isn = p.seq;
      d.next = end;
      return { type: kind };
    }
    if (known && p.flags === F.ACK && p.len <= 1 && plus(p.seq, 1) === prevNext
      && (reverse?.ack === undefined || reverse.ack === prevNext)) {
      // The peer acked all we sent and we send the last byte again: a probe for an answer.
      return { type: reverse?.win === 0 ? 'window-probe' : 'keepalive' };
    }
    if (p.len === 0 && !fin) return { type: 'ack' };
    if (known && before(p.seq, prevNext)) return { type: 'retransmit', of: p.len === 0 ? 'fin' : 'data' };
    return { type: fin ? 'fin' : 'data' };
  }

  private remember(key: string, d: Direction): void {
    this.flows.set(key, d);
    while (this.flows.size > this.maxFlows) this.flows.delete(this.flows.keys().next().value!);
  }
}

/** The pure form, for fixtures: packets in capture order to events. */
export function classifyPackets(packets: Iterable<Packet>, maxFlows?: number): TimelineEvent[] {
  const c = new PacketClassifier(maxFlows);
  return [...packets].map((p) => c.classify(p));
}

// ---------------------------------------------------------------------------------------
// Clocks
// ---------------------------------------------------------------------------------------

/**
 * CLOCK_REALTIME minus CLOCK_MONOTONIC, measured at one instant: `wallMs` (a whole
 * millisecond of Date.now()) happened at monotonic `mono`, give or take `error` seconds.
 * Kept in two parts so that converting a capture time keeps nanoseconds (one double for
 * 1.7e9 s has only ~0.2 µs).
 */
export interface ClockOffset {
  wallMs: number;
  mono: number;
  error: number;
}

/**
 * Measures the offset at the moment Date.now() ticks to a new millisecond: that instant is
 * exactly `wallMs` on the realtime clock, and the monotonic reads just before and after it
 * bracket it to a fraction of a microsecond (reading Date.now() at an arbitrary moment would
 * be up to 1 ms off). Takes the tightest of `samples` brackets; costs about 1 ms each.
 * What this cannot see: NTP slewing the realtime clock during the capture (at most 500 ppm,
 * 0.5 ms per second of capture, usually far less) or stepping it (then measure again).
 */
export function measureClockOffset(samples = 3): ClockOffset {
  let best: ClockOffset | undefined;
  for (let s = 0; s < samples; s++) {
    let prev = monotonic();
    const start = Date.now();
    for (let i = 0; i < 1_000_000; i++) {
      const m0 = monotonic();
      const wall = Date.now();
      const m1 = monotonic();
      if (wall !== start) {
        // The tick came after the previous Date.now() (itself after `prev`) and before this one.
        const sample = { wallMs: wall, mono: (prev + m1) / 2, error: (m1 - prev) / 2 };
        if (!best || sample.error < best.error) best = sample;
        break;
      }
      prev = m0;
    }
  }
  if (!best) {
    const m = monotonic();
    return { wallMs: Date.now(), mono: m, error: 0.001 };
  }
  return best;
}

/** A capture time (CLOCK_REALTIME seconds and nanoseconds) on CLOCK_MONOTONIC. */
export function toMonotonic(offset: ClockOffset, sec: number, nsec: number): number {
  const wallSec = Math.floor(offset.wallMs / 1000);
  return offset.mono + (sec - wallSec) + (nsec / 1e9 - (offset.wallMs - wallSec * 1000) / 1000);
}

/**
 * pcap bytes in, timeline events out: the reader, the decoder and the classifier in a row.
 * What the capture and a replay of its bytes (in any chunking) both use.
 */
export class PcapEventStream {
  private readonly reader: PcapReader;
  private readonly classifier: PacketClassifier;
  /** Records that were not TCP or an ICMP error about TCP. */
  skipped = 0;
  packets = 0;

  constructor(
    readonly clock: ClockOffset,
    private readonly onEvent: (e: TimelineEvent) => void,
    private readonly onPacket?: (p: Packet) => void,
    maxFlows?: number,
  ) {
    this.classifier = new PacketClassifier(maxFlows);
    this.reader = new PcapReader((r) => this.record(r));
  }

  push(chunk: Uint8Array): void {
    this.reader.push(chunk);
  }

  get error(): string | undefined {
    return this.reader.error;
  }

  get linktype(): number | undefined {
    return this.reader.linktype;
  }

  private record(r: PcapRecord): void {
    const p = decodeFrame(r.linktype, r.data, r.origLen, toMonotonic(this.clock, r.sec, r.nsec));
    if (!p) {
      this.skipped++;
      return;
    }
    this.packets++;
    this.onPacket?.(p);
    this.onEvent(this.classifier.classify(p));
  }
}

// ---------------------------------------------------------------------------------------
// The capturer
// ---------------------------------------------------------------------------------------

export type CaptureMethod = 'tcpdump' | 'af_packet';

export interface PacketCaptureOptions {
  sandbox: Pick<Sandbox, 'enter' | 'mode' | 'mappedSubIds'>;
  log: Logger;
  onEvent: (e: TimelineEvent) => void;
  /** Every decoded packet, before classification. */
  onPacket?: (p: Packet) => void;
  /** The pcap stream as it arrives (to save a capture for Wireshark, or replay it). */
  onPcap?: (chunk: Buffer) => void;
  /** Called once if the capturer stops before dispose(), with why. */
  onStopped?: (reason: string) => void;
  /** A device inside the namespace, or `any` (default `lo`). */
  interface?: string;
  /** `auto` (the default): tcpdump where it can run, else the AF_PACKET sample. */
  method?: 'auto' | CaptureMethod;
  /** The Python that runs capture.py (default python3). */
  python?: string;
  /** Bytes kept per packet: headers only (default 160; TCP/ICMP decoding needs ≤ 128). */
  snaplen?: number;
  readyTimeoutMs?: number;
  maxFlows?: number;
}

export interface CaptureChoice {
  method: CaptureMethod;
  /** Why this method, for the log and the report. */
  note: string;
}

/** Picks the capturer from what is installed and how the sandbox runs (pure, for tests). */
export function chooseCaptureMethod(o: {
  requested: 'auto' | CaptureMethod;
  mode: 'root' | 'rootless';
  mappedSubIds: boolean;
  tcpdump: boolean;
  python: boolean;
  pythonName?: string;
}): CaptureChoice {
  const py = o.pythonName ?? 'python3';
  const noTcpdump = !o.tcpdump
    ? `tcpdump is not installed (${installHint('tcpdump')})`
    : o.mode === 'rootless' && !o.mappedSubIds
      ? 'tcpdump cannot run in this namespace: without sub-id mapping (--map-auto) setgroups is denied, so tcpdump cannot drop privileges, even with -Z root (apt-get install uidmap; give the user ranges in /etc/subuid and /etc/subgid)'
      : undefined;
  if (o.requested === 'tcpdump' || (o.requested === 'auto' && !noTcpdump)) {
    if (noTcpdump) throw new LabError(noTcpdump, { field: 'method', value: 'tcpdump' });
    return { method: 'tcpdump', note: o.mode === 'root' ? 'tcpdump, as root' : 'tcpdump inside the user namespace (sub-ids mapped, so it may drop privileges)' };
  }
  const why = o.requested === 'af_packet' ? 'asked for the AF_PACKET capture' : noTcpdump!;
  if (!o.python) {
    throw new LabError(`cannot capture packets: ${why}, and ${py} is not installed for the AF_PACKET fallback`, {
      field: 'method', value: o.requested, hint: [installHint('tcpdump'), installHint('python3')].join('; '),
    });
  }
  return { method: 'af_packet', note: `capture.py on an AF_PACKET socket: ${why}` };
}

export function validInterface(name: string): string {
  if (name === 'any' || /^[A-Za-z0-9_.:@-]{1,15}$/.test(name)) return name;
  throw new LabError('not a network interface name', { field: 'interface', value: name });
}

/** The argv of the capturer, inside the namespace. */
export function captureArgv(method: CaptureMethod, o: { interface: string; snaplen: number; mode: 'root' | 'rootless'; python?: string }): string[] {
  if (method === 'af_packet') {
    return [o.python ?? 'python3', join(samplesDir(), 'python', 'capture.py'), '--interface', o.interface, '--snaplen', String(o.snaplen)];
  }
  return [
    'tcpdump', '-i', o.interface, '-n',
    // -U: write each packet out as it comes; --immediate-mode: no kernel batching (TPACKET_V3 blocks).
    '-U', '--immediate-mode', '--time-stamp-precision=nano', '-s', String(o.snaplen), '-w', '-',
    // Rootless, tcpdump's default drop to the `tcpdump` user is fine too once sub-ids are
    // mapped; `-Z root` keeps the namespace's root (no more than the lab user on the host).
    // As real root, the default drop is the least privilege.
    ...(o.mode === 'rootless' ? ['-Z', 'root'] : []),
    'tcp or icmp or icmp6',
  ];
}

export interface CaptureStats {
  packets: number;
  /** pcap records that were not TCP or ICMP errors about TCP. */
  skipped: number;
  /** Why the pcap stream became unreadable, if it did. */
  streamError?: string;
  /** What the capturer printed on stderr (the last 4 KiB): tcpdump's drop counts at the end. */
  stderr: string;
}

/**
 * A running packet capture inside a sandbox. `start` resolves once the capturer listens (a
 * packet sent after that is seen); `dispose` stops it and resolves after the last event.
 */
export class PacketCapture {
  private stderrText = '';
  private disposing = false;
  private readonly closed: Promise<void>;

  private constructor(
    readonly method: CaptureMethod,
    readonly note: string,
    readonly argv: readonly string[],
    private readonly child: ChildProcessByStdio<null, Readable, Readable>,
    private readonly stream: PcapEventStream,
    private readonly log: Logger,
  ) {
    this.closed = new Promise((resolve) => child.once('close', () => resolve()));
  }

  static async start(options: PacketCaptureOptions): Promise<PacketCapture> {
    const iface = validInterface(options.interface ?? 'lo');
    const snaplen = options.snaplen ?? 160;
    if (!Number.isInteger(snaplen) || snaplen < 96 || snaplen > MAX_RECORD) {
      throw new LabError('snaplen must be 96-262144 bytes', { field: 'snaplen', value: snaplen });
    }
    const path = labEnv().PATH ?? '';
    const python = options.python ?? 'python3';
    const { sandbox } = options;
    const choice = chooseCaptureMethod({
      requested: options.method ?? 'auto', mode: sandbox.mode, mappedSubIds: sandbox.mappedSubIds,
      tcpdump: missingTools(['tcpdump'], path).length === 0, python: missingTools([python], path).length === 0, pythonName: python,
    });
    try {
      return await PacketCapture.launch(choice, iface, snaplen, options);
    } catch (e) {
      if (choice.method !== 'tcpdump' || (options.method ?? 'auto') !== 'auto' || missingTools([python], path).length) throw e;
      const why = e instanceof Error ? e.message : String(e);
      options.log.warn(`tcpdump did not start (${why}); capturing with capture.py instead`);
      return PacketCapture.launch({ method: 'af_packet', note: `capture.py on an AF_PACKET socket: tcpdump failed: ${why}` }, iface, snaplen, options);
    }
  }

  private static async launch(choice: CaptureChoice, iface: string, snaplen: number, o: PacketCaptureOptions): Promise<PacketCapture> {
    const argv = o.sandbox.enter(captureArgv(choice.method, { interface: iface, snaplen, mode: o.sandbox.mode, python: o.python }));
    o.log.command(argv, 'capture');
    // REALTIME - MONOTONIC, measured once per capture (1-3 ms of busy waiting).
    const stream = new PcapEventStream(measureClockOffset(), o.onEvent, o.onPacket, o.maxFlows);
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: labEnv() });
    const capture = new PacketCapture(choice.method, choice.note, argv, child, stream, o.log);
    child.stdout.on('data', (chunk: Buffer) => {
      o.onPcap?.(chunk);
      if (stream.error) return;
      stream.push(chunk);
      if (stream.error) o.log.warn(`packets: the ${choice.method} output stopped making sense (${stream.error}); no more packet events`);
    });
    let onEarlyExit: (code: number | null, signal: NodeJS.Signals | null) => void = () => {};
    const ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => fail(new LabError(`${choice.method} did not start listening within ${o.readyTimeoutMs ?? 5000} ms`)), o.readyTimeoutMs ?? 5000);
      const fail = (e: Error) => {
        clearTimeout(timer);
        reject(e);
      };
      child.stderr.setEncoding('utf8').on('data', (d: string) => {
        capture.stderrText = (capture.stderrText + d).slice(-4096);
        // tcpdump: "listening on lo, link-type EN10MB ..."; capture.py says the same.
        if (/listening on /.test(capture.stderrText)) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once('error', (e: NodeJS.ErrnoException) => fail(e.code === 'ENOENT' ? new LabError('nsenter is not installed', { hint: installHint('nsenter') }) : e));
      onEarlyExit = (code, signal) => fail(new LabError(`${choice.method} exited (${signal ?? code}): ${capture.stderrText.trim() || 'no message'}`));
      child.once('exit', onEarlyExit);
    });
    try {
      await ready;
    } catch (e) {
      await capture.dispose();
      throw e;
    }
    child.removeListener('exit', onEarlyExit);
    child.once('exit', (code, signal) => {
      if (capture.disposing) return;
      const reason = `${choice.method} stopped (${signal ?? `exit ${code}`}): ${capture.stderrText.trim().split('\n').pop() ?? ''}`;
      o.log.warn(reason);
      o.onStopped?.(reason);
    });
    o.log.info(`packets: ${choice.note}`);
    return capture;
  }

  get stats(): CaptureStats {
    return { packets: this.stream.packets, skipped: this.stream.skipped, streamError: this.stream.error, stderr: this.stderrText };
  }

  get clock(): ClockOffset {
    return this.stream.clock;
  }

  get linktype(): number | undefined {
    return this.stream.linktype;
  }

  /**
   * Stops the capturer and waits until its last packet has been read. The signal goes to
   * nsenter's child (the capturer itself): nsenter forwards none, and killing nsenter would
   * orphan the capturer. tcpdump flushes and exits on SIGTERM; capture.py flushed already.
   */
  async dispose(): Promise<void> {
    if (!this.disposing) {
      this.disposing = true;
      if (this.child.exitCode === null && this.child.signalCode === null) this.signal('SIGTERM');
    }
    const wait = (ms: number) => Promise.race([this.closed.then(() => true), new Promise<false>((r) => setTimeout(() => r(false), ms).unref())]);
    if (await wait(2000)) return;
    this.log.warn(`${this.method} did not stop on SIGTERM; killing it`);
    this.signal('SIGKILL');
    if (!(await wait(2000))) this.log.warn(`${this.method} (pid ${this.child.pid}) did not exit after SIGKILL`);
  }

  private signal(sig: NodeJS.Signals): void {
    const pid = this.child.pid;
    if (pid === undefined) return;
    let target = pid;
    try {
      const first = Number(readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/)[0]);
      if (Number.isInteger(first) && first > 0) target = first;
    } catch { /* nsenter has gone, or has not forked yet */ }
    try { process.kill(target, sig); } catch { /* gone */ }
    if (sig === 'SIGKILL' && target !== pid) {
      try { process.kill(pid, sig); } catch { /* gone */ }
    }
  }
}
