import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { A, Fn, P, R, S } from '../../test/support/packetFrames';
import { classifyPackets, PacketClassifier } from './packetClassify';
import type { TcpSegment } from './packetDecode';
import type { TimelineEvent } from './timeline';

/** A segment as the classifier takes it. */
function seg(t: number, from: string, to: string, seq: number, ack: number, flags: number, len = 0, win = 512): TcpSegment {
  const [src, sport] = from.split(':');
  const [dst, dport] = to.split(':');
  return { kind: 'tcp', t, family: 4, src: src!, dst: dst!, sport: Number(sport), dport: Number(dport), seq: seq >>> 0, ack: ack >>> 0, flags, win, len };
}

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
