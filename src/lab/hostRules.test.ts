import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import {
  CLI_OWNER,
  hostIptablesArgs,
  hostIptablesDeleteArgs,
  hostNftRuleArgs,
  hostNftTable,
  hostTag,
  ownerFromProc,
  parseHostNftTable,
  parseHostTag,
  ppidFromStat,
  runningFromStat,
  type HostOwner,
} from './hostRulesBackend';
import { parseHostIptables, parseHostNft, splitIptablesLine } from './hostListing';
import { parseIptablesListing, parseNftListing } from './rules';
import { ownerStatus, processOwner } from './hostOwner';

const owner: HostOwner = { kind: 'process', pid: 4242, start: 987654, pidns: 4026531836 };

// `iptables -v -S` in a fresh namespace (iptables v1.8.9, nf_tables) with two host rules, a lab
// rule, a comment that is not a tag (a space), and a tagged rule with a match the lab never makes.
const IPTABLES_S = `-P INPUT ACCEPT -c 0 0
-P FORWARD ACCEPT -c 0 0
-P OUTPUT ACCEPT -c 0 0
-A INPUT -p tcp -m tcp --dport 7000 -m comment --comment "tcp-lab:r1" -c 0 0 -j DROP
-A INPUT -d 127.0.0.1/32 -p tcp -m tcp --dport 5432 -m comment --comment "tcp-lab-host:4242.987654.4026531836:db-drop" -c 7 420 -j REJECT --reject-with tcp-reset
-A INPUT -p tcp -m tcp --dport 22 -m comment --comment "tcp-lab-host:cli:x y" -c 0 0 -j DROP
-A INPUT -p tcp -m tcp --dport 80 -m comment --comment "tcp-lab-host:cli:web" -m limit --limit 1/sec -c 0 0 -j DROP
-A OUTPUT -p tcp -m tcp --sport 6379 -m comment --comment "tcp-lab-host:cli:redis" -c 3 180 -j DROP
`;

// `nft -j list ruleset` (nftables 1.0.6), trimmed to the host tables and the lab's table: the cli
// table holds its own rule and one whose comment names another owner; an empty table of a
// process owner (killed between table and rule).
const NFT_RULESET = JSON.stringify({ nftables: [
  { metainfo: { version: '1.0.6', release_name: 'Lester Gooch #5', json_schema_version: 1 } },
  { table: { family: 'inet', name: 'tcplab_host_cli', handle: 2 } },
  { chain: { family: 'inet', table: 'tcplab_host_cli', name: 'input', handle: 1, type: 'filter', hook: 'input', prio: -1, policy: 'accept' } },
  { rule: { family: 'inet', table: 'tcplab_host_cli', chain: 'input', handle: 4, comment: 'tcp-lab-host:4242.987654.4026531836:stray', expr: [
    { match: { op: '==', left: { meta: { key: 'nfproto' } }, right: 'ipv4' } },
    { match: { op: '==', left: { payload: { protocol: 'tcp', field: 'dport' } }, right: 22 } },
    { counter: { packets: 0, bytes: 0 } }, { drop: null }] } },
  { rule: { family: 'inet', table: 'tcplab_host_cli', chain: 'output', handle: 3, comment: 'tcp-lab-host:cli:db', expr: [
    { match: { op: '==', left: { payload: { protocol: 'ip', field: 'daddr' } }, right: { prefix: { addr: '10.0.0.0', len: 24 } } } },
    { match: { op: '==', left: { payload: { protocol: 'tcp', field: 'dport' } }, right: 5432 } },
    { counter: { packets: 5, bytes: 300 } }, { reject: { type: 'icmp', expr: 'host-unreachable' } }] } },
  { table: { family: 'inet', name: 'tcplab_host_4242_987654_4026531836', handle: 3 } },
  { table: { family: 'inet', name: 'tcplab', handle: 4 } },
  { rule: { family: 'inet', table: 'tcplab', chain: 'input', handle: 2, comment: 'tcp-lab:r1', expr: [
    { match: { op: '==', left: { payload: { protocol: 'tcp', field: 'dport' } }, right: 7000 } },
    { counter: { packets: 0, bytes: 0 } }, { drop: null }] } },
] });

test('the tag names the owner and the id, and reads back', () => {
  assert.equal(hostTag(owner, 'db-drop'), 'tcp-lab-host:4242.987654.4026531836:db-drop');
  assert.equal(hostTag(CLI_OWNER, 'db-drop'), 'tcp-lab-host:cli:db-drop');
  assert.deepEqual(parseHostTag('tcp-lab-host:4242.987654.4026531836:db-drop'), { owner, id: 'db-drop' });
  assert.deepEqual(parseHostTag('tcp-lab-host:cli:x'), { owner: CLI_OWNER, id: 'x' });
  for (const bad of ['tcp-lab:r1', 'tcp-lab-host:cli:x y', 'tcp-lab-host:12:x', 'tcp-lab-host:cli:-x', 'tcp-lab-host:1.2.3:X', `tcp-lab-host:cli:${'a'.repeat(33)}`]) {
    assert.equal(parseHostTag(bad), undefined, bad);
  }
});

test('the longest tag fits nft (128) and iptables (256) comments', () => {
  const widest: HostOwner = { kind: 'process', pid: 4_194_304, start: 99_999_999_999_999, pidns: 4_294_967_295 };
  assert.ok(hostTag(widest, 'a'.repeat(32)).length <= 128);
});

test('nft tables are one per owner, and never the lab\'s own table', () => {
  assert.equal(hostNftTable(owner), 'tcplab_host_4242_987654_4026531836');
  assert.equal(hostNftTable(CLI_OWNER), 'tcplab_host_cli');
  assert.deepEqual(parseHostNftTable('tcplab_host_4242_987654_4026531836'), owner);
  assert.equal(parseHostNftTable('tcplab'), undefined);
  assert.equal(parseHostNftTable('tcplab_host_x'), undefined);
});

test('the owner comes from /proc/<pid>/stat (command names may hold spaces and parentheses)', () => {
  // A real stat line, with the command name made awkward.
  const stat = '4242 (we ird) (x) S 17 4242 4242 0 -1 4194560 155 0 0 0 0 0 0 0 20 0 1 0 987654 9453568 1080 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n';
  assert.deepEqual(ownerFromProc(4242, stat, 'pid:[4026531836]'), owner);
  assert.equal(ppidFromStat(stat), 17);
  assert.equal(runningFromStat(stat), true);
  assert.equal(runningFromStat(stat.replace(') S ', ') Z ')), false, 'a zombie never removes its rules');
  assert.throws(() => ownerFromProc(4242, '4242 (x) S', 'pid:[1]'));
});

test('argv: the lab\'s match syntax with the host tag', () => {
  const rule = { id: 'db-drop', action: 'reject', rejectWith: 'tcp-reset', direction: 'to-port', port: 5432, address: '127.0.0.1' } as const;
  assert.deepEqual(hostIptablesArgs(rule, owner, 'insert'), ['iptables', '-w', '5', '-I', 'INPUT', '-p', 'tcp', '-d', '127.0.0.1', '--dport', '5432',
    '-m', 'comment', '--comment', 'tcp-lab-host:4242.987654.4026531836:db-drop', '-j', 'REJECT', '--reject-with', 'tcp-reset']);
  assert.equal(hostIptablesArgs(rule, CLI_OWNER, 'delete')[3], '-D');
  assert.deepEqual(hostNftRuleArgs({ ...rule, chain: 'OUTPUT' }, CLI_OWNER), ['nft', '--echo', '--handle', 'add', 'rule', 'inet', 'tcplab_host_cli', 'output',
    'meta', 'nfproto', 'ipv4', 'ip', 'daddr', '127.0.0.1', 'tcp', 'dport', '5432', 'counter', 'reject', 'with', 'tcp', 'reset', 'comment', '"tcp-lab-host:cli:db-drop"']);
  const setup = hostNftRuleArgs(rule, owner, true);
  assert.deepEqual(setup.slice(0, 9), ['nft', '--echo', '--handle', 'add', 'table', 'inet', 'tcplab_host_4242_987654_4026531836', ';', 'add']);
  assert.deepEqual(setup.join(' ').split(' ; add ').map((c) => c.split(' ').slice(0, 4).join(' ')),
    ['nft --echo --handle add', 'chain inet tcplab_host_4242_987654_4026531836 input', 'chain inet tcplab_host_4242_987654_4026531836 output',
      'chain inet tcplab_host_4242_987654_4026531836 forward', 'rule inet tcplab_host_4242_987654_4026531836 input']);
});

test('iptables -S words: quoted comments come back without their quotes', () => {
  assert.deepEqual(splitIptablesLine('-A INPUT --comment "a b" -m x --comment "q\\"r"'), ['-A', 'INPUT', '--comment', 'a b', '-m', 'x', '--comment', 'q"r']);
});

test('iptables listing: host rules with owner, counters, the spec to delete them, and the rule', () => {
  const entries = parseHostIptables(IPTABLES_S);
  assert.deepEqual(entries.map((e) => [e.id, e.chain, e.owner.kind, e.packets, e.bytes]), [
    ['db-drop', 'INPUT', 'process', 7, 420],
    ['web', 'INPUT', 'cli', 0, 0],
    ['redis', 'OUTPUT', 'cli', 3, 180],
  ]);
  const [db, web, redis] = entries;
  assert.deepEqual(hostIptablesDeleteArgs(db!), ['iptables', '-w', '5', '-D', 'INPUT', '-d', '127.0.0.1/32', '-p', 'tcp', '-m', 'tcp', '--dport', '5432',
    '-m', 'comment', '--comment', 'tcp-lab-host:4242.987654.4026531836:db-drop', '-j', 'REJECT', '--reject-with', 'tcp-reset']);
  assert.deepEqual(db!.rule, { id: 'db-drop', action: 'reject', rejectWith: 'tcp-reset', direction: 'to-port', port: 5432, chain: 'INPUT', address: '127.0.0.1' });
  assert.deepEqual(redis!.rule, { id: 'redis', action: 'drop', direction: 'from-port', port: 6379, chain: 'OUTPUT' });
  assert.equal(web!.rule, undefined, 'a tagged rule the lab never makes is listed, but not read as a lab rule');
  assert.throws(() => hostIptablesDeleteArgs({ chain: 'INPUT', tag: 'tcp-lab-host:cli:x' }), /no spec/);
});

test('nft listing: the table names the owner; foreign comments and the lab\'s table are skipped', () => {
  const { rules, tables } = parseHostNft(NFT_RULESET);
  assert.deepEqual(tables.map((t) => t.table), ['tcplab_host_cli', 'tcplab_host_4242_987654_4026531836']);
  assert.equal(rules.length, 1);
  const [db] = rules;
  assert.deepEqual([db!.id, db!.chain, db!.table, db!.handle, db!.packets, db!.bytes], ['db', 'output', 'tcplab_host_cli', 3, 5, 300]);
  assert.deepEqual(db!.rule, { id: 'db', action: 'reject', rejectWith: 'icmp-host-unreachable', direction: 'to-port', port: 5432, chain: 'OUTPUT', address: '10.0.0.0/24' });
  assert.throws(() => parseHostNft('not json'), SyntaxError);
});

test('the lab and host mode never read each other\'s rules', () => {
  assert.deepEqual(parseIptablesListing(`Chain INPUT (policy ACCEPT 0 packets, 0 bytes)
    pkts      bytes target     prot opt in     out     source               destination
       7      420 REJECT     6    --  *      *       0.0.0.0/0            127.0.0.1            tcp dpt:5432 /* tcp-lab-host:cli:db-drop */ reject-with tcp-reset
`), []);
  assert.deepEqual(parseNftListing(NFT_RULESET).map((r) => r.id), ['r1']);
  assert.ok(parseHostIptables(IPTABLES_S).every((e) => e.id !== 'r1'));
});

test('owner status from /proc: alive, dead after pid reuse or exit, unknown in another pid namespace', () => {
  const self = processOwner();
  assert.equal(self.kind, 'process');
  if (self.kind !== 'process') return;
  assert.equal(self.pid, process.pid);
  assert.equal(ownerStatus(self), 'alive');
  assert.equal(ownerStatus({ ...self, start: self.start + 1 }), 'dead', 'the same pid, started later: a new process');
  assert.equal(ownerStatus({ ...self, pid: 2 ** 22 + 1 }), 'dead', 'above pid_max: no such process');
  assert.equal(ownerStatus({ ...self, pidns: self.pidns + 1 }), 'unknown');
  assert.equal(ownerStatus(CLI_OWNER), 'cli');
});

test('a killed owner that nobody has reaped yet (a zombie) is dead', async () => {
  // The parent forks the owner and never waits for it.
  const parent = spawn('python3', ['-c', 'import os, time\npid = os.fork()\nif pid == 0:\n    time.sleep(30)\n    os._exit(0)\nprint(pid, flush=True)\ntime.sleep(31)'],
    { stdio: ['ignore', 'pipe', 'ignore'] });
  try {
    const [line] = (await once(parent.stdout!, 'data')) as [Buffer];
    const pid = Number(line.toString().trim());
    const owner = processOwner(pid);
    assert.equal(ownerStatus(owner), 'alive');
    process.kill(pid, 'SIGKILL');
    for (let i = 0; i < 100 && !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8')); i++) await new Promise((r) => setTimeout(r, 10));
    assert.match(readFileSync(`/proc/${pid}/stat`, 'utf8'), /\) Z /, 'the owner is a zombie: its /proc entry and start time remain');
    assert.equal(ownerStatus(owner), 'dead');
  } finally {
    parent.kill('SIGKILL');
  }
});
