/**
 * Link-layer frames to packets: Ethernet (with VLAN tags), Linux cooked v1 and v2 and raw IP;
 * IPv4 and IPv6 (extension headers walked, later fragments skipped); TCP segments and the
 * ICMP/ICMPv6 errors that quote a TCP header. Nothing else is decoded. Addresses are written
 * as ss writes them, so a packet's key matches a socket's.
 */

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
