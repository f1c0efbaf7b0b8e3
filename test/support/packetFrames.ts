/**
 * Frames and pcap streams built byte by byte for the packet tests (headers only, lengths as on
 * the wire), and a splitter that cuts a stream into random chunks.
 */

export const S = 0x02, A = 0x10, Fn = 0x01, R = 0x04, P = 0x08;

export function v4(text: string): number[] {
  return text.split('.').map(Number);
}

export function v6(text: string): number[] {
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const groups = (s: string | undefined) => (s ? s.split(':').map((g) => parseInt(g, 16)) : []);
  const h = groups(head);
  const t = groups(tail);
  const all = tail === undefined ? h : [...h, ...new Array(8 - h.length - t.length).fill(0), ...t];
  return all.flatMap((g) => [g >> 8, g & 0xff]);
}

export function tcpHeader(sport: number, dport: number, seq: number, ack: number, flags: number, win: number): Buffer {
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
export function ip4(src: string, dst: string, proto: number, l4: Buffer, extra = 0): Buffer {
  const h = Buffer.alloc(20);
  h[0] = 0x45;
  h.writeUInt16BE(20 + l4.length + extra, 2);
  h[8] = 64;
  h[9] = proto;
  Buffer.from(v4(src)).copy(h, 12);
  Buffer.from(v4(dst)).copy(h, 16);
  return Buffer.concat([h, l4]);
}

export function ip6(src: string, dst: string, next: number, l4: Buffer, extra = 0): Buffer {
  const h = Buffer.alloc(40);
  h[0] = 0x60;
  h.writeUInt16BE(l4.length + extra, 4);
  h[6] = next;
  h[7] = 64;
  Buffer.from(v6(src)).copy(h, 8);
  Buffer.from(v6(dst)).copy(h, 24);
  return Buffer.concat([h, l4]);
}

export const eth = (type: number, payload: Buffer) => Buffer.concat([Buffer.alloc(12), Buffer.from([type >> 8, type & 0xff]), payload]);
export const sll = (type: number, payload: Buffer) => { const h = Buffer.alloc(16); h.writeUInt16BE(type, 14); return Buffer.concat([h, payload]); };
export const sll2 = (type: number, payload: Buffer) => { const h = Buffer.alloc(20); h.writeUInt16BE(type, 0); return Buffer.concat([h, payload]); };

export interface Rec { sec: number; frac: number; data: Buffer; orig?: number }

export function pcap(linktype: number, records: Rec[], o: { nano?: boolean; bigEndian?: boolean } = {}): Buffer {
  const u32 = (n: number) => { const b = Buffer.alloc(4); o.bigEndian ? b.writeUInt32BE(n >>> 0) : b.writeUInt32LE(n >>> 0); return b; };
  const u16 = (n: number) => { const b = Buffer.alloc(2); o.bigEndian ? b.writeUInt16BE(n) : b.writeUInt16LE(n); return b; };
  const parts: Buffer[] = [u32(o.nano ? 0xa1b23c4d : 0xa1b2c3d4), u16(2), u16(4), u32(0), u32(0), u32(262144), u32(linktype)];
  for (const r of records) parts.push(u32(r.sec), u32(r.frac), u32(r.data.length), u32(r.orig ?? r.data.length), r.data);
  return Buffer.concat(parts);
}


export function splitRandomly(buf: Buffer, max: number): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at < buf.length;) {
    const n = 1 + Math.floor(Math.random() * max);
    out.push(buf.subarray(at, at + n));
    at += n;
  }
  return out;
}
