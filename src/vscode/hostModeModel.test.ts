import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type AddressInfo } from 'node:net';
import { parseToHelper, type HostRuleInfo } from '../lab/helperProtocol';
import { LabError } from '../lab/errors';
import {
  confirmText, editorEndpoints, guardRefusal, hostChain, hostCommandText, hostRule, listeningPorts, nextHostId, portProblem, ruleRow, sweepNotice,
} from './hostModeModel';

const owner = { kind: 'process', pid: 4242, start: 987654, pidns: 4026531836 } as const;

test('the port box says what is wrong, in words', () => {
  assert.match(portProblem('')!, /Type the TCP port/);
  for (const bad of ['abc', '-1', '1e3', '54.3', '0x50']) assert.match(portProblem(bad)!, /whole number from 1 to 65535/, bad);
  assert.equal(portProblem('0'), '0 is not a TCP port: ports go from 1 to 65535.');
  assert.equal(portProblem('65536'), '65536 is not a TCP port: ports go from 1 to 65535.');
  for (const good of ['1', '22', ' 5432 ', '65535']) assert.equal(portProblem(good), undefined, good);
});

test('the chain follows where the server is', () => {
  assert.equal(hostChain('to-port', true).chain, 'INPUT');
  assert.equal(hostChain('from-port', true).chain, 'OUTPUT');
  assert.equal(hostChain('to-port', false).chain, 'OUTPUT');
  assert.equal(hostChain('from-port', false).chain, 'INPUT');
  assert.match(hostChain('to-port', false).why, /^OUTPUT: nothing on this host listens on the port, so the server is elsewhere; the packets to the port leave through OUTPUT$/);
  const rule = hostRule({ action: 'reject', rejectWith: 'tcp-reset', direction: 'to-port', chain: 'INPUT' }, 'host-3', 5432, false);
  assert.deepEqual(rule, { id: 'host-3', action: 'reject', rejectWith: 'tcp-reset', direction: 'to-port', port: 5432, chain: 'OUTPUT' });
});

test('listening ports come from /proc/net/tcp and tcp6', async () => {
  const v4 = '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n'
    + '   0: 0100007F:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0 100 0 0 10 0\n'
    + '   1: 0100007F:D431 0100007F:1538 01 00000000:00000000 00:00000000 00000000     0        0 112 1 0 100 0 0 10 0\n';
  const fake = listeningPorts((p) => (p.endsWith('tcp') ? v4 : ''));
  assert.deepEqual([...fake], [5432], 'the LISTEN line only, not the connection to it');
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  try {
    assert.ok(listeningPorts().has((server.address() as AddressInfo).port), 'a real listener is found');
  } finally {
    server.close();
  }
});

test('ids go one past the highest', () => {
  assert.equal(nextHostId([]), 'host-1');
  assert.equal(nextHostId(['host-2', 'host-10', 'other']), 'host-11');
});

test('the editor\'s SSH session is protected: the refusal names the port and SSH_CONNECTION', () => {
  const endpoints = editorEndpoints({ SSH_CONNECTION: '203.0.113.7 50022 198.51.100.2 22' }, []);
  const drop22 = { id: 'host-1', action: 'drop', direction: 'to-port', port: 22, chain: 'INPUT' } as const;
  const refusal = guardRefusal(drop22, endpoints)!;
  assert.match(refusal, /^refusing host rule host-1 \(iptables -I INPUT -p tcp --dport 22 -j DROP\): it would cut this editor's own connection\n/);
  assert.match(refusal, /\nPick another port: the lab never cuts the connection the editor runs over\.$/);
  assert.match(refusal, /port 22 is the SSH session this runs over \(SSH_CONNECTION: 203\.0\.113\.7:50022 -> 198\.51\.100\.2:22/);
  // What sshd sends leaves through OUTPUT from port 22: cut as surely.
  assert.ok(guardRefusal({ ...drop22, direction: 'from-port', chain: 'OUTPUT' }, endpoints));
  assert.equal(guardRefusal({ ...drop22, port: 5432 }, endpoints), undefined);
  // Narrowed to another address, it no longer touches the session.
  assert.equal(guardRefusal({ ...drop22, address: '10.9.9.9' }, endpoints), undefined);
});

test('a refusal puts the session and the listener first, and counts the connections to them', () => {
  const conn = (n: number) => ({ localPort: 8080, localAddress: '127.0.0.1', remotePort: 40000 + n, remoteAddress: '127.0.0.1', why: `a connection of node (pid 7) (127.0.0.1:8080 <-> 127.0.0.1:${40000 + n})` });
  const endpoints = [conn(1), conn(2), { localPort: 8080, why: 'the port node (pid 7) listens on (0.0.0.0:8080)' }, conn(3)];
  const lines = guardRefusal({ id: 'host-1', action: 'drop', direction: 'to-port', port: 8080, chain: 'INPUT' }, endpoints)!.split('\n');
  assert.equal(lines.length, 5, lines.join('\n'));
  assert.match(lines[1]!, /^  port 8080 is the port node \(pid 7\) listens on \(0\.0\.0\.0:8080\): a to-port 8080 rule in INPUT drops the packets that arrive at it$/);
  assert.match(lines[2]!, /^  port 8080 is a connection of node/);
  assert.equal(lines[3], '  and 2 more connections of the editor on port 8080');
});

test('what the editor computes passes the helper\'s checks as it is, and protects its own listening port', async () => {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  try {
    const endpoints = editorEndpoints({ ...process.env, SSH_CONNECTION: '::1 50022 ::1 22' }, [process.pid]);
    const listener = endpoints.find((e) => e.localPort === port);
    assert.ok(listener, JSON.stringify(endpoints));
    assert.match(listener.why, new RegExp(`^the port .+ \\(pid ${process.pid}\\) listens on \\(127\\.0\\.0\\.1:${port}\\)$`));
    const rule = { id: 'host-1', action: 'drop', direction: 'to-port', port, chain: 'INPUT' } as const;
    const m = parseToHelper({ type: 'hostApply', seq: 7, backend: 'iptables', rule, protect: endpoints });
    assert.deepEqual(m, { type: 'hostApply', seq: 7, backend: 'iptables', rule, protect: endpoints });
    assert.match(guardRefusal(rule, endpoints)!, new RegExp(`port ${port} is the port .* listens on`));
  } finally {
    server.close();
  }
});

test('the helper protocol refuses bad host requests, naming the field', () => {
  const rule = { id: 'host-1', action: 'drop', direction: 'to-port', port: 5432 };
  const refusedField = (v: unknown): string | undefined => {
    try {
      parseToHelper(v);
      return undefined;
    } catch (e) {
      return e instanceof LabError ? e.field : 'not a LabError';
    }
  };
  assert.equal(refusedField({ type: 'hostApply', seq: 1, backend: 'iptables', rule: { ...rule, port: '5432; reboot' }, protect: [] }), 'rule.port');
  assert.equal(refusedField({ type: 'hostApply', seq: 1, backend: 'iptables', rule: { ...rule, extra: 1 }, protect: [] }), 'rule.extra');
  assert.equal(refusedField({ type: 'hostApply', seq: -1, backend: 'iptables', rule, protect: [] }), 'seq');
  assert.equal(refusedField({ type: 'hostApply', seq: 1, backend: 'iptables', rule, protect: [{ localPort: 22, why: 'x', pid: 1 }] }), 'protect[0].pid');
  assert.equal(refusedField({ type: 'hostApply', seq: 1, backend: 'iptables', rule, protect: new Array(1025).fill({ localPort: 1, why: 'x' }) }), 'protect');
  assert.equal(refusedField({ type: 'hostApply', seq: 1, backend: 'iptables', rule, protect: [{ localPort: 22, remotePort: 70000, why: 'x' }] }), 'protect[0].remotePort');
  assert.equal(refusedField({ type: 'hostRemove', seq: 1, id: '' }), 'id');
  assert.deepEqual(parseToHelper({ type: 'hostList', seq: 3 }), { type: 'hostList', seq: 3 });
  assert.deepEqual(parseToHelper({ type: 'hostSweep', seq: 0 }), { type: 'hostSweep', seq: 0 });
});

test('the confirm shows the exact command, that every program is affected, and how the rule goes away', () => {
  const rule = { id: 'host-2', action: 'reject', rejectWith: 'tcp-reset', direction: 'to-port', port: 5432, chain: 'OUTPUT' } as const;
  assert.equal(hostCommandText(rule, 'iptables', owner),
    'iptables -w 5 -I OUTPUT -p tcp --dport 5432 -m comment --comment tcp-lab-host:4242.987654.4026531836:host-2 -j REJECT --reject-with tcp-reset');
  assert.match(hostCommandText(rule, 'iptables'), /--comment tcp-lab-host:<helper>:host-2 -j/);
  assert.match(hostCommandText(rule, 'nft'), /^nft add rule inet tcplab_host_<helper> output meta nfproto ipv4 tcp dport 5432 counter reject with tcp reset comment/);
  const { message, detail } = confirmText(rule, 'iptables', 'REJECT what the client sends with tcp-reset', hostChain('to-port', false).why, 'sudo');
  assert.equal(message, 'Apply "REJECT what the client sends with tcp-reset" to this host\'s own traffic on port 5432?');
  const lines = detail.split('\n');
  assert.equal(lines[0], hostCommandText(rule, 'iptables'));
  assert.match(detail, /affects EVERY program on this host that uses TCP port 5432/);
  assert.match(detail, /removed from the Host Rules view, when this window closes, or, if the editor is killed, when the lab next starts/);
  assert.match(detail, /your sudo password is asked next/);
  assert.match(confirmText(rule, 'iptables', 'x', 'y', 'root', owner).detail, /tcp-lab-host:4242\.987654\.4026531836:host-2.*\n.*runs as root/s);
});

test('a row of the view: what the rule does, its counters, and its tag', () => {
  const info: HostRuleInfo = {
    id: 'host-1', tag: 'tcp-lab-host:4242.987654.4026531836:host-1', backend: 'nft', chain: 'input', packets: 3, bytes: 2048,
    rule: { id: 'host-1', action: 'drop', direction: 'to-port', port: 5432, chain: 'INPUT', address: '10.0.0.5' },
  };
  const row = ruleRow(info);
  assert.equal(row.label, 'DROP to port 5432 at 10.0.0.5');
  assert.equal(row.description, '3 packets, 2.0 KiB · input · nft');
  assert.match(row.tooltip, /^nft add rule inet tcplab_host_4242_987654_4026531836 input meta nfproto ipv4 ip daddr 10\.0\.0\.5 tcp dport 5432 counter drop/);
  assert.match(row.tooltip, /tag tcp-lab-host:4242\.987654\.4026531836:host-1/);
  assert.equal(ruleRow({ ...info, packets: 1, bytes: 60, rule: { ...info.rule!, action: 'reject', rejectWith: 'tcp-reset', address: undefined } }).label, 'REJECT tcp-reset to port 5432');
  assert.equal(ruleRow({ ...info, packets: NaN, rule: null }).description, 'counters unreadable · input · nft');
});

test('the sweep is told once, in words, and only when it did something', () => {
  const removed = (id: string): HostRuleInfo => ({ id, tag: `tcp-lab-host:1.2.3:${id}`, backend: 'iptables', chain: 'INPUT', packets: 0, bytes: 0, rule: null });
  assert.equal(sweepNotice({ removed: [removed('host-1'), removed('host-2')], errors: [] }),
    'removed 2 host rules left by a crashed session (tcp-lab-host:1.2.3:host-1, tcp-lab-host:1.2.3:host-2)');
  assert.equal(sweepNotice({ removed: [removed('host-1')], errors: [] }), 'removed 1 host rule left by a crashed session (tcp-lab-host:1.2.3:host-1)');
  assert.equal(sweepNotice({ removed: [], errors: [] }), undefined);
  assert.equal(sweepNotice(undefined), undefined);
  assert.match(sweepNotice({ removed: [], errors: [{ message: 'iptables: Permission denied' }] })!, /^the sweep of host rules left by a crashed session failed: iptables: Permission denied$/);
});
