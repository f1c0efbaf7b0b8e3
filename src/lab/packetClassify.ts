import type { Packet, TcpSegment } from './packetDecode';
import { WIRE, type TimelineEvent } from './timeline';

/**
 * Packets to timeline events. Each segment is classified per direction:
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
 * With `-i any` on a namespace that forwards, a segment is seen on both interfaces: where the
 * link type names the interface (LINUX_SLL2) the classifier keeps each interface apart, so the
 * second copy is not taken for a retransmission.
 */

export type PacketType = 'syn' | 'syn-ack' | 'ack' | 'data' | 'fin' | 'rst' | 'icmp' | 'retransmit' | 'keepalive' | 'window-probe';

const F = { FIN: 0x01, SYN: 0x02, RST: 0x04, PSH: 0x08, ACK: 0x10, URG: 0x20, ECE: 0x40, CWR: 0x80 } as const;

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
