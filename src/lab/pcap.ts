/**
 * The pcap stream a capturer writes on stdout (`tcpdump -w -`, or capture.py), read in
 * whatever pieces it arrives. Only the classic pcap format: tcpdump -w writes it, and so does
 * capture.py; pcapng is refused with a reason.
 */

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
export const MAX_RECORD = 262_144;

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
