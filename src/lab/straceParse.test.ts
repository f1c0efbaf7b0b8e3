import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseSockaddr, parseStraceLine } from './straceParse';

describe('strace lines', () => {
  test('line shapes: pid forms, unfinished and resumed, errno, ?, extra, duration', () => {
    assert.deepEqual(parseStraceLine('[pid  4242] 1700000000.000100 close(3) = 0 <0.000010>'), {
      kind: 'call', pid: 4242, ts: 1700000000.0001, name: 'close', args: ['3'], result: { ret: '0', duration: 0.00001 },
    });
    const refused = parseStraceLine('17 1700000000.5 connect(3<TCP:[1]>, {sa_family=AF_INET, sin_port=htons(7000), sin_addr=inet_addr("127.0.0.1")}, 16) = -1 ECONNREFUSED (Connection refused) <0.000086>');
    assert.equal(refused?.kind, 'call');
    if (refused?.kind === 'call') {
      assert.equal(refused.args.length, 3);
      assert.deepEqual(refused.result, { ret: '-1', errno: 'ECONNREFUSED', message: 'Connection refused', duration: 0.000086 });
    }
    const poll = parseStraceLine('9 1.000001 poll([{fd=3<TCP:[1.2.3.4:5->6.7.8.9:10]>, events=POLLIN}], 1, -1) = 1 ([{fd=3, revents=POLLIN|POLLERR}]) <0.5>');
    assert.equal(poll?.kind === 'call' && poll.result.extra, '[{fd=3, revents=POLLIN|POLLERR}]');
    assert.equal(poll?.kind === 'call' && poll.args[0], '[{fd=3<TCP:[1.2.3.4:5->6.7.8.9:10]>, events=POLLIN}]');
    const restarted = parseStraceLine('9 1.0 read(3<TCP:[7]>, 0x7f, 100) = ? ERESTARTSYS (To be restarted if SA_RESTART is set) <0.2>');
    assert.equal(restarted?.kind === 'call' && restarted.result.errno, 'ERESTARTSYS');
    assert.equal(restarted?.kind === 'call' && restarted.result.ret, '?');
    const gone = parseStraceLine('9 1.0 <... poll resumed>) = ? <unavailable>');
    assert.deepEqual(gone, { kind: 'resumed', pid: 9, ts: 1, name: 'poll', text: ') = ? <unavailable>' });
    assert.deepEqual(parseStraceLine('9 1.0 connect(3<TCP:[7]>, {sa_family=AF_INET, sin_port=htons(1), sin_addr=inet_addr("1.2.3.4")}, 16 <unfinished ...>'),
      { kind: 'unfinished', pid: 9, ts: 1, name: 'connect', text: '3<TCP:[7]>, {sa_family=AF_INET, sin_port=htons(1), sin_addr=inet_addr("1.2.3.4")}, 16' });
    assert.deepEqual(parseStraceLine('9 2.5 +++ killed by SIGSEGV (core dumped) +++'), { kind: 'exit', pid: 9, ts: 2.5, code: null, signal: 'SIGSEGV' });
    assert.deepEqual(parseStraceLine('2.5 +++ exited with 7 +++'), { kind: 'exit', pid: 0, ts: 2.5, code: 7 }, 'no pid column without -f');
    assert.equal(parseStraceLine('9 1.0 write(1</tmp/a "b" (c>, "x) = 1 \\"", 6) = 6 <0.1>')?.kind, 'call', 'quotes and parentheses inside strings and paths');
    for (const junk of ['', 'strace: Process 12 attached', '9 1.0 connect(3, {sa_family=AF_INET', '9 abc close(3) = 0', '9 1.0 close(3) = ']) {
      assert.equal(parseStraceLine(junk), undefined, junk);
    }
  });

  test('addresses: IPv4, IPv6, a Unix path', () => {
    assert.deepEqual(parseSockaddr('{sa_family=AF_INET, sin_port=htons(7000), sin_addr=inet_addr("127.0.0.1")}'), { family: 'AF_INET', address: '127.0.0.1:7000' });
    assert.deepEqual(parseSockaddr('{sa_family=AF_INET6, sin6_port=htons(443), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "2001:db8::1", &sin6_addr), sin6_scope_id=0}'), { family: 'AF_INET6', address: '[2001:db8::1]:443' });
    assert.deepEqual(parseSockaddr('{sa_family=AF_UNIX, sun_path="/run/nscd/socket"}'), { family: 'AF_UNIX' });
    assert.equal(parseSockaddr('NULL'), undefined);
  });
});
