import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LabError } from './errors';
import { findScenario } from './scenarios';
import { balancerCommands, validateTopology, type Topology } from './topology';

const lb = findScenario('l4-idle-reset').topology!;
const balancer = lb.hosts.find((h) => h.balancer)!.balancer!;

function refused(t: Topology, field: string): void {
  assert.throws(() => validateTopology(t), (e: unknown) => e instanceof LabError && e.field === field, `refused on ${field}`);
}

const withHost = (change: Partial<Topology['hosts'][number]>): Topology =>
  ({ ...lb, hosts: lb.hosts.map((h, i) => (i === 0 ? { ...h, ...change } : h)) });

test('every topology of the catalog is valid', () => {
  for (const id of ['l4-idle-reset', 'relay-host-kill', 'nginx-read-timeout']) validateTopology(findScenario(id).topology!);
});

test('addresses only from 198.18.0.0/15, whole, with a prefix where an interface takes one', () => {
  refused(withHost({ links: [{ net: 'front', address: '10.0.0.2/24' }] }), 'address');
  refused(withHost({ links: [{ net: 'front', address: '198.20.0.2/24' }] }), 'address');
  refused(withHost({ links: [{ net: 'front', address: '198.18.0.2' }] }), 'address');
  refused(withHost({ links: [{ net: 'front', address: '198.18.0.2/24\nlink del lo' }] }), 'address');
  refused(withHost({ links: [{ net: 'front', address: '198.18.0.2/24/8' }] }), 'address');
  refused(withHost({ gateway: '198.18.0.1/24' }), 'address');
  refused(withHost({ extraAddresses: ['198.18.0.300/24'] }), 'address');
});

test('names short enough for an interface, networks that exist, backends as address:port', () => {
  refused(withHost({ name: 'frontclient' }), 'host');
  refused(withHost({ name: 'lb' }), 'host');
  refused(withHost({ links: [{ net: 'middle', address: '198.18.0.2/24' }] }), 'net');
  const lbHost = (b: Partial<typeof balancer>): Topology => ({ ...lb, hosts: lb.hosts.map((h) => (h.balancer ? { ...h, balancer: { ...balancer, ...b } } : h)) });
  refused(lbHost({ backends: ['198.18.1.2'] }), 'backends');
  refused(lbHost({ backends: ['198.18.1.2:70000'] }), 'backends');
  refused(lbHost({ backends: [] }), 'backends');
  refused(lbHost({ port: 0 }), 'port');
  refused(lbHost({ idleTimeout: 0 }), 'idleTimeout');
});

test('the balancer: round robin over the servers, a RST or a drop for a forgotten flow', () => {
  const ipt = balancerCommands(balancer).map((a) => a.join(' '));
  assert.deepEqual(ipt, [
    'iptables -t nat -A PREROUTING -d 198.18.0.10 -p tcp --dport 80 -m statistic --mode nth --every 2 --packet 0 -m comment --comment tcp-lab:vip-1 -j DNAT --to-destination 198.18.1.2:7000',
    'iptables -t nat -A PREROUTING -d 198.18.0.10 -p tcp --dport 80 -m comment --comment tcp-lab:vip-2 -j DNAT --to-destination 198.18.1.3:7000',
    'iptables -A INPUT -d 198.18.0.10 -p tcp --dport 80 -m conntrack --ctstate INVALID -m comment --comment tcp-lab:forgotten-flows -j REJECT --reject-with tcp-reset',
  ]);
  assert.match(balancerCommands({ ...balancer, forgotten: 'drop' }).at(-1)!.join(' '), /--ctstate INVALID .* -j DROP$/);
  const nft = balancerCommands(balancer, 'nft').map((a) => a.join(' '));
  assert.ok(nft.some((l) => l.includes('dnat to numgen inc mod 2 map { 0 : 198.18.1.2 . 7000, 1 : 198.18.1.3 . 7000 }')), nft.join('\n'));
  assert.ok(nft.some((l) => /ct state invalid counter reject with tcp reset comment "tcp-lab:forgotten-flows"$/.test(l)), nft.join('\n'));
});
