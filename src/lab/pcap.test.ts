import { randomBytes } from 'node:crypto';
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { A, eth, ip4, P, pcap, S, splitRandomly, tcpHeader } from '../../test/support/packetFrames';
import { LINKTYPE } from './packetDecode';
import { PcapEventStream } from './packets';
import { PcapReader, type PcapRecord } from './pcap';

const ZERO_CLOCK = { wallMs: 0, mono: 0, error: 0 };

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
