import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { A, eth, Fn, ip4, ip6, P, R, S, sll, sll2, tcpHeader } from '../../test/support/packetFrames';
import { labEnv } from './exec';
import { flagText, PacketClassifier } from './packetClassify';
import { decodeFrame, ip6Text, LINKTYPE, type TcpSegment } from './packetDecode';
import { missingTools } from './preflight';

const have = (tool: string) => missingTools([tool], labEnv().PATH ?? '').length === 0;

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
