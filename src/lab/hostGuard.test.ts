import assert from 'node:assert/strict';
import { createConnection, createServer, type AddressInfo, type Socket } from 'node:net';
import { once } from 'node:events';
import { test } from 'node:test';
import { LabError } from './errors';
import {
  addressMayMatch,
  assertHostRuleSafe,
  checkHostRule,
  endpointsOfSockets,
  parseProcNetTcp,
  protectedEndpoints,
  sshEndpoints,
  type ProtectedEndpoint,
} from './hostGuard';
import type { FaultRule } from './rules';

const remoteSsh = sshEndpoints({ SSH_CONNECTION: '10.0.0.9 51234 10.0.0.5 22' });
const loopSsh = sshEndpoints({ SSH_CONNECTION: '127.0.0.1 40000 127.0.0.1 22' });
const listener: ProtectedEndpoint[] = [{ localPort: 8000, localAddress: '127.0.0.1', why: 'the port the VS Code server listens on' }];

const rule = (direction: FaultRule['direction'], port: number, chain?: FaultRule['chain'], address?: string): FaultRule =>
  ({ id: 'r', action: 'drop', direction, port, ...(chain ? { chain } : {}), ...(address ? { address } : {}) });

test('SSH_CONNECTION and SSH_CLIENT: this host is the server end', () => {
  assert.deepEqual(remoteSsh.map(({ why: _, ...e }) => e), [{ localPort: 22, localAddress: '10.0.0.5', remotePort: 51234, remoteAddress: '10.0.0.9' }]);
  assert.deepEqual(sshEndpoints({ SSH_CLIENT: '10.0.0.9 51234 2222' }).map((e) => [e.localPort, e.remotePort]), [[2222, 51234]]);
  assert.deepEqual(sshEndpoints({ SSH_CONNECTION: 'junk' }), []);
  assert.deepEqual(sshEndpoints({ SSH_CONNECTION: '1.2.3.4 0 5.6.7.8 99999' }), []);
  assert.deepEqual(sshEndpoints({}), []);
});

// [rule, endpoints, refused?]: both ends of the session, in the chain that carries each way.
const cases: Array<[string, FaultRule, ProtectedEndpoint[], boolean]> = [
  ['to-port 22 INPUT drops what the ssh client sends', rule('to-port', 22), remoteSsh, true],
  ['from-port 22 OUTPUT drops what sshd answers', rule('from-port', 22, 'OUTPUT'), remoteSsh, true],
  ['to-port 51234 OUTPUT drops the answers to the client\'s port', rule('to-port', 51234, 'OUTPUT'), remoteSsh, true],
  ['from-port 51234 INPUT drops the client\'s packets', rule('from-port', 51234), remoteSsh, true],
  ['to-port 22 OUTPUT only hits ssh from this host to others', rule('to-port', 22, 'OUTPUT'), remoteSsh, false],
  ['from-port 22 INPUT only hits answers of other ssh servers', rule('from-port', 22), remoteSsh, false],
  ['an address that is not this host\'s end leaves the session alone', rule('to-port', 22, 'INPUT', '127.0.0.1'), remoteSsh, false],
  ['a network that holds this host\'s end does not', rule('to-port', 22, 'INPUT', '10.0.0.0/24'), remoteSsh, true],
  ['FORWARD is refused too (the session may be routed)', rule('to-port', 22, 'FORWARD'), remoteSsh, true],
  ['another port is fine', rule('to-port', 5432), remoteSsh, false],
  ['over loopback both chains see both ways', rule('to-port', 22, 'OUTPUT'), loopSsh, true],
  ['over loopback from-port 22 INPUT hits too', rule('from-port', 22), loopSsh, true],
  ['a listener: to its port in any chain', rule('to-port', 8000, 'OUTPUT'), listener, true],
  ['a listener: from its port', rule('from-port', 8000), listener, true],
  ['a listener: its clients\' ports are unknown, never guessed', rule('to-port', 51234, 'OUTPUT'), listener, false],
  ['a listener on 127.0.0.1 is not hit by a rule for another address', rule('to-port', 8000, 'INPUT', '10.0.0.5'), listener, false],
];

for (const [name, r, endpoints, refused] of cases) {
  test(`guard: ${name}`, () => {
    assert.equal(checkHostRule(r, endpoints).length > 0, refused);
  });
}

test('the refusal names the port and why it matters', () => {
  assert.throws(() => assertHostRuleSafe(rule('to-port', 22), remoteSsh), (e: unknown) => {
    assert.ok(e instanceof LabError);
    assert.equal(e.field, 'port');
    assert.match(e.message, /port 22 is the SSH session this runs over/);
    assert.match(e.message, /SSH_CONNECTION: 10\.0\.0\.9:51234 -> 10\.0\.0\.5:22/);
    assert.match(e.message, /to-port 22 rule in INPUT drops the packets that arrive at it/);
    return true;
  });
  assert.doesNotThrow(() => assertHostRuleSafe(rule('to-port', 5432), remoteSsh));
});

test('addresses: IPv4 hosts and networks; IPv6 and unknown addresses may always match', () => {
  assert.equal(addressMayMatch('10.0.0.0/8', '10.9.8.7'), true);
  assert.equal(addressMayMatch('10.0.0.0/8', '11.0.0.1'), false);
  assert.equal(addressMayMatch('10.0.0.1', '::ffff:10.0.0.1'), true);
  assert.equal(addressMayMatch('10.0.0.1', 'fe80:0:0:0:0:0:0:1'), true);
  assert.equal(addressMayMatch(undefined, '10.0.0.1'), true);
  assert.equal(addressMayMatch('0.0.0.0/0', '1.2.3.4'), true);
});

// Real /proc/net/tcp and tcp6 lines (Linux 6.x): a listener on 0.0.0.0:2024, a TIME_WAIT socket
// (inode 0), and an IPv6 listener with an IPv4 peer connected to it.
const PROC_TCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1067 1 00000000174bf44a 100 0 0 10 0
   2: 0100007F:9169 0100007F:8AF2 06 00000000:00000000 03:00000C88 00000000     0        0 0 3 0000000046082916
`;
const PROC_TCP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:DD6D 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 148233 1 0000000040fd7dd2 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:DD6D 0000000000000000FFFF00000100007F:E50E 01 00000000:00000000 00:00000000 00000000     0        0 148235 1 00000000bfdd6d91 20 0 0 10 -1
   2: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 148299 1 0000000040fd7dd2 100 0 0 10 0
`;

test('/proc/net/tcp{,6}: addresses in kernel byte order, IPv4-mapped peers as IPv4', () => {
  const v4 = parseProcNetTcp(PROC_TCP);
  assert.deepEqual(v4.map((s) => [s.localAddress, s.localPort, s.remoteAddress, s.remotePort, s.state, s.inode]), [
    ['0.0.0.0', 2024, '0.0.0.0', 0, 0x0a, 1067],
    ['127.0.0.1', 37225, '127.0.0.1', 35570, 0x06, 0],
  ]);
  const v6 = parseProcNetTcp(PROC_TCP6);
  assert.deepEqual(v6.map((s) => [s.localAddress, s.localPort, s.remoteAddress, s.remotePort]), [
    ['0:0:0:0:0:0:0:0', 56685, '0:0:0:0:0:0:0:0', 0],
    ['127.0.0.1', 56685, '127.0.0.1', 58638],
    ['0:0:0:0:0:0:0:1', 8080, '0:0:0:0:0:0:0:0', 0],
  ]);
  const eps = endpointsOfSockets([...v4, ...v6], new Set([1067, 0, 148235, 148299]), 'code-server (pid 7)', true);
  assert.deepEqual(eps.map(({ why: _, ...e }) => e), [
    { localPort: 2024 },
    { localPort: 56685, localAddress: '127.0.0.1', remotePort: 58638, remoteAddress: '127.0.0.1' },
    { localPort: 8080, localAddress: '0:0:0:0:0:0:0:1' },
  ]);
  assert.equal(endpointsOfSockets(v4, new Set([1067]), 'x', false).length, 0, 'listeners only when asked');
  // ::1 is loopback: a to-port 8080 rule in OUTPUT would hit the local clients.
  assert.equal(checkHostRule(rule('to-port', 8080, 'OUTPUT'), eps).length, 1);
});

test('protectedEndpoints finds this process\'s own listener and connection in /proc', async () => {
  const server = createServer((s) => s.on('error', () => {}));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  let client: Socket | undefined;
  try {
    const listening = protectedEndpoints({}, [process.pid]);
    assert.ok(listening.some((e) => e.localPort === port && e.remotePort === undefined && /listens on/.test(e.why)), JSON.stringify(listening));
    assert.ok(!protectedEndpoints({}, [process.pid], { listening: false }).some((e) => e.localPort === port));
    client = createConnection(port, '127.0.0.1');
    await once(client, 'connect');
    const conns = protectedEndpoints({}, [process.pid], { listening: false });
    assert.ok(conns.some((e) => e.localPort === client!.localPort && e.remotePort === port), JSON.stringify(conns));
    assert.deepEqual(protectedEndpoints({}, [], { ports: [9999] }).map((e) => e.localPort), [9999]);
  } finally {
    client?.destroy();
    server.close();
  }
});
