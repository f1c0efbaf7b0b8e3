import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { after, before, describe, test, type TestContext } from 'node:test';
import { LabError } from './errors';
import { hostExec, type Exec, type ExecOptions, type ExecResult } from './exec';
import { silentLogger } from './log';
import {
  REJECT_VARIANTS,
  RuleSet,
  describe as describeRule,
  iptablesArgs,
  iptablesListArgs,
  nftDeleteArgs,
  nftListArgs,
  nftRuleArgs,
  nftSetupArgs,
  nftTeardownArgs,
  parseIptablesCounters,
  parseIptablesListing,
  parseNftCounters,
  parseNftEchoHandle,
  parseNftListing,
  parseRule,
  type Backend,
  type FaultRule,
  type RejectWith,
} from './rules';

const fixture = (name: string): string => readFileSync(join(__dirname, 'fixtures', name), 'utf8');

const base = { id: 'r1', action: 'reject', direction: 'to-port', port: 7000 } as const;

interface Recorder {
  calls: string[][];
  exec: Exec;
}

/** An Exec that records every argv and answers from `answer` (default: success, no output). */
function recordingExec(answer: (argv: readonly string[]) => Partial<ExecResult> = () => ({})): Recorder {
  const calls: string[][] = [];
  const exec: Exec = async (argv: readonly string[], _options?: ExecOptions) => {
    calls.push([...argv]);
    return { stdout: '', stderr: '', code: 0, ...answer(argv) };
  };
  return { calls, exec };
}

function refusedField(input: unknown): string | undefined {
  try {
    parseRule(input);
  } catch (error) {
    assert.ok(error instanceof LabError, `expected a LabError, got ${String(error)}`);
    return error.field;
  }
  assert.fail(`accepted ${JSON.stringify(input)}`);
}

// ---------------------------------------------------------------------------------------------

describe('parseRule', () => {
  test('accepts a minimal rule and returns a fresh object with only the known fields', () => {
    const input = { ...base };
    const rule = parseRule(input);
    assert.deepEqual(rule, { id: 'r1', action: 'reject', direction: 'to-port', port: 7000 });
    assert.notEqual(rule, input);
    assert.ok(!('rejectWith' in rule) && !('chain' in rule) && !('address' in rule));
  });

  test('accepts every field and every reject variant', () => {
    for (const rejectWith of REJECT_VARIANTS) {
      const rule = parseRule({ ...base, rejectWith, chain: 'FORWARD', address: '10.0.0.0/24', direction: 'from-port' });
      assert.equal(rule.rejectWith, rejectWith);
      assert.equal(rule.chain, 'FORWARD');
      assert.equal(rule.address, '10.0.0.0/24');
    }
    assert.equal(REJECT_VARIANTS.length, 8);
  });

  test('accepts a port given as a string of digits (from the CLI)', () => {
    assert.equal(parseRule({ ...base, port: '7000' }).port, 7000);
    assert.equal(parseRule({ ...base, port: '1' }).port, 1);
    assert.equal(parseRule({ ...base, port: '65535' }).port, 65535);
    assert.equal(parseRule({ ...base, port: 65535 }).port, 65535);
  });

  test('accepts drop without rejectWith, undefined optional fields, a null-prototype object, addresses', () => {
    assert.deepEqual(parseRule({ ...base, action: 'drop', rejectWith: undefined, chain: undefined }), { ...base, action: 'drop' });
    assert.deepEqual(parseRule(Object.assign(Object.create(null), base)), { ...base });
    for (const address of ['127.0.0.1', '0.0.0.0/0', '1.2.3.4/32', '10.0.0.0/8', '192.168.1.128/25', '255.255.255.255']) {
      assert.equal(parseRule({ ...base, address }).address, address);
    }
    assert.equal(parseRule(JSON.parse('{"id":"a-1","action":"drop","direction":"from-port","port":"80","chain":"OUTPUT"}')).port, 80);
  });

  test('the message names the field and the value, as describe() prints it', () => {
    try {
      parseRule({ ...base, port: '80; rm -rf /' });
      assert.fail('accepted');
    } catch (error) {
      assert.ok(error instanceof LabError);
      assert.equal(error.field, 'port');
      assert.equal(error.value, '80; rm -rf /');
      assert.equal(error.describe(), 'port must be an integer from 1 to 65535 (port: "80; rm -rf /")');
    }
    try {
      parseRule({ ...base, address: '::1' });
      assert.fail('accepted');
    } catch (error) {
      assert.ok(error instanceof LabError);
      assert.match(error.describe(), /IPv6 is not supported yet \(address: "::1"\)/);
    }
  });

  const bad: Array<[string, unknown, string]> = [
    // not an object
    ['null', null, 'rule'],
    ['undefined', undefined, 'rule'],
    ['a string', '{"id":"r1"}', 'rule'],
    ['a number', 7000, 'rule'],
    ['an array', [base], 'rule'],
    ['a Date', new Date(0), 'rule'],
    // unknown fields
    ['unknown field', { ...base, extra: 1 }, 'extra'],
    ['misspelt field', { ...base, rejectwith: 'tcp-reset' }, 'rejectwith'],
    ['__proto__ from JSON', JSON.parse('{"id":"r1","action":"drop","direction":"to-port","port":1,"__proto__":{"x":1}}'), '__proto__'],
    ['symbol key', { ...base, [Symbol('s')]: 1 }, 'Symbol(s)'],
    // missing fields
    ['missing id', { action: 'drop', direction: 'to-port', port: 1 }, 'id'],
    ['missing action', { id: 'r1', direction: 'to-port', port: 1 }, 'action'],
    ['missing direction', { id: 'r1', action: 'drop', port: 1 }, 'direction'],
    ['missing port', { id: 'r1', action: 'drop', direction: 'to-port' }, 'port'],
    ['port undefined', { ...base, port: undefined }, 'port'],
    // ports
    ...([
      0, -1, 65536, 70000, 80.5, -0, Number.MAX_SAFE_INTEGER + 1, Number.MAX_SAFE_INTEGER, Infinity, -Infinity, NaN,
      '80; rm -rf /', '0x50', ' 80', '80 ', '', '80.5', '1e3', '+80', '-80', '0', '00000', '65536', '99999', '000080',
      '８０', '٨٠', '80\n', 'x'.repeat(100), true, null, {}, [80], 80n,
    ] as unknown[]).map((port): [string, unknown, string] => [`port ${typeof port === 'bigint' ? `${port}n` : JSON.stringify(port) ?? String(port)}`, { ...base, port }, 'port']),
    // reject variants
    ...(['icmp-foo', 'tcp-reset; ls', 'TCP-RESET', 'ICMP-PORT-UNREACHABLE', 'icmp-prot-unreachable', 'reset', '', ' tcp-reset', null, 3, 'x'.repeat(65)] as unknown[])
      .map((rejectWith): [string, unknown, string] => [`rejectWith ${JSON.stringify(rejectWith)}`, { ...base, rejectWith }, 'rejectWith']),
    ['rejectWith with drop', { ...base, action: 'drop', rejectWith: 'tcp-reset' }, 'rejectWith'],
    ['rejectWith icmp with drop', { ...base, action: 'drop', rejectWith: 'icmp-port-unreachable' }, 'rejectWith'],
    // ids
    ...(['../x', 'a b', '$(id)', 'a'.repeat(33), '', '-a', 'A1', 'r1\n', 'r_1', 'r.1', 'tcp-lab:r1', '`id`', 'é', 'x'.repeat(10_000), 7, null] as unknown[])
      .map((id): [string, unknown, string] => [`id ${JSON.stringify(id)?.slice(0, 40)}`, { ...base, id }, 'id']),
    // action, direction, chain
    ...(['DROP', 'Reject', 'accept', '', 'drop ', 1, null] as unknown[]).map((action): [string, unknown, string] => [`action ${JSON.stringify(action)}`, { ...base, action }, 'action']),
    ...(['to', 'TO-PORT', 'both', '', null] as unknown[]).map((direction): [string, unknown, string] => [`direction ${JSON.stringify(direction)}`, { ...base, direction }, 'direction']),
    ...(['input', 'PREROUTING', 'INPUT; ls', '', 'DOCKER', 0, null] as unknown[]).map((chain): [string, unknown, string] => [`chain ${JSON.stringify(chain)}`, { ...base, chain }, 'chain']),
    // addresses
    ...([
      '1.2.3.256', '1.2.3', '::1', '1.2.3.4/33', '1.2.3.4/', '1.2.3.4/024', '01.2.3.4', '1.2.3.04', ' 1.2.3.4', '1.2.3.4 ',
      '10.0.0.1/24', '1.2.3.4/-1', 'a.b.c.d', '0x7f.0.0.1', '127.1', '1.2.3.4.5', 'localhost', '', '1.2.3.4/32; ls',
      '::ffff:1.2.3.4', 'x'.repeat(1000), 1234, null,
    ] as unknown[]).map((address): [string, unknown, string] => [`address ${JSON.stringify(address)?.slice(0, 40)}`, { ...base, address }, 'address']),
  ];

  for (const [name, input, field] of bad) {
    test(`refuses ${name} (field ${field})`, () => {
      assert.equal(refusedField(input), field);
    });
  }

  test('no Exec runs for a refused rule, with either backend', async () => {
    for (const backend of ['iptables', 'nft'] as const) {
      const rec = recordingExec();
      const set = new RuleSet(rec.exec, backend);
      for (const [, input] of bad) {
        await assert.rejects(set.apply(input as FaultRule), LabError);
      }
      assert.deepEqual(rec.calls, []);
      assert.equal(set.applied.length, 0);
    }
  });
});

// ---------------------------------------------------------------------------------------------

const NFT_ICMP: Record<Exclude<RejectWith, 'tcp-reset'>, string> = {
  'icmp-port-unreachable': 'port-unreachable',
  'icmp-host-unreachable': 'host-unreachable',
  'icmp-host-prohibited': 'host-prohibited',
  'icmp-admin-prohibited': 'admin-prohibited',
  'icmp-net-unreachable': 'net-unreachable',
  'icmp-net-prohibited': 'net-prohibited',
  'icmp-proto-unreachable': 'prot-unreachable',
};

describe('iptables argv', () => {
  test('the example from the brief', () => {
    const rule = parseRule({ ...base, rejectWith: 'icmp-host-prohibited' });
    assert.deepEqual(iptablesArgs(rule, 'insert'), [
      'iptables', '-w', '5', '-I', 'INPUT', '-p', 'tcp', '--dport', '7000', '-m', 'comment', '--comment', 'tcp-lab:r1',
      '-j', 'REJECT', '--reject-with', 'icmp-host-prohibited',
    ]);
    assert.deepEqual(iptablesArgs(rule, 'delete'), [
      'iptables', '-w', '5', '-D', 'INPUT', '-p', 'tcp', '--dport', '7000', '-m', 'comment', '--comment', 'tcp-lab:r1',
      '-j', 'REJECT', '--reject-with', 'icmp-host-prohibited',
    ]);
    assert.equal(describeRule(rule), 'iptables -I INPUT -p tcp --dport 7000 -j REJECT --reject-with icmp-host-prohibited');
  });

  test('every reject variant; delete is insert with -D', () => {
    for (const rejectWith of REJECT_VARIANTS) {
      const rule = parseRule({ ...base, rejectWith });
      const insert = iptablesArgs(rule, 'insert');
      assert.deepEqual(insert.slice(-3), ['REJECT', '--reject-with', rejectWith]);
      const del = iptablesArgs(rule, 'delete');
      assert.deepEqual(del, insert.map((a, i) => (i === 3 ? '-D' : a)));
      assert.equal(describeRule(rule), `iptables -I INPUT -p tcp --dport 7000 -j REJECT --reject-with ${rejectWith}`);
    }
  });

  test('reject without rejectWith says icmp-port-unreachable; drop is -j DROP', () => {
    assert.deepEqual(iptablesArgs(parseRule(base), 'insert').slice(-4), ['-j', 'REJECT', '--reject-with', 'icmp-port-unreachable']);
    assert.deepEqual(iptablesArgs(parseRule({ ...base, action: 'drop' }), 'insert').slice(-2), ['-j', 'DROP']);
    assert.equal(describeRule(parseRule({ ...base, action: 'drop' })), 'iptables -I INPUT -p tcp --dport 7000 -j DROP');
  });

  test('direction, chain and address', () => {
    const from = parseRule({ id: 'out-1', action: 'drop', direction: 'from-port', port: '8080', chain: 'OUTPUT', address: '10.0.0.2' });
    assert.deepEqual(iptablesArgs(from, 'insert'), [
      'iptables', '-w', '5', '-I', 'OUTPUT', '-p', 'tcp', '-s', '10.0.0.2', '--sport', '8080', '-m', 'comment', '--comment', 'tcp-lab:out-1', '-j', 'DROP',
    ]);
    const to = parseRule({ ...base, chain: 'FORWARD', address: '10.0.0.0/24', rejectWith: 'tcp-reset' });
    assert.deepEqual(iptablesArgs(to, 'delete'), [
      'iptables', '-w', '5', '-D', 'FORWARD', '-p', 'tcp', '-d', '10.0.0.0/24', '--dport', '7000', '-m', 'comment', '--comment', 'tcp-lab:r1',
      '-j', 'REJECT', '--reject-with', 'tcp-reset',
    ]);
    assert.equal(describeRule(to), 'iptables -I FORWARD -p tcp -d 10.0.0.0/24 --dport 7000 -j REJECT --reject-with tcp-reset');
    assert.deepEqual(iptablesListArgs('OUTPUT'), ['iptables', '-w', '5', '-L', 'OUTPUT', '-v', '-x', '-n']);
  });
});

describe('nft argv', () => {
  test('setup creates the table and three base chains at priority filter - 1, idempotently (add)', () => {
    const setup = nftSetupArgs();
    assert.deepEqual(setup[0], ['nft', 'add', 'table', 'inet', 'tcplab']);
    assert.deepEqual(setup.slice(1), ['input', 'output', 'forward'].map((c) => [
      'nft', 'add', 'chain', 'inet', 'tcplab', c, '{', 'type', 'filter', 'hook', c, 'priority', 'filter', '-', '1', ';', 'policy', 'accept', ';', '}',
    ]));
    assert.ok(setup.every((argv) => argv[1] === 'add'));
    assert.deepEqual(nftTeardownArgs(), ['nft', 'delete', 'table', 'inet', 'tcplab']);
    assert.deepEqual(nftDeleteArgs('output', 12), ['nft', 'delete', 'rule', 'inet', 'tcplab', 'output', 'handle', '12']);
    assert.deepEqual(nftListArgs(), ['nft', '-j', 'list', 'table', 'inet', 'tcplab']);
  });

  test('the example from the brief, with the comment as one quoted word', () => {
    const rule = parseRule({ ...base, rejectWith: 'icmp-host-prohibited' });
    assert.deepEqual(nftRuleArgs(rule), [
      'nft', '--echo', '--handle', 'add', 'rule', 'inet', 'tcplab', 'input',
      'meta', 'nfproto', 'ipv4', 'tcp', 'dport', '7000', 'counter', 'reject', 'with', 'icmp', 'type', 'host-prohibited', 'comment', '"tcp-lab:r1"',
    ]);
    assert.equal(describeRule(rule, 'nft'),
      `nft add rule inet tcplab input meta nfproto ipv4 tcp dport 7000 counter reject with icmp type host-prohibited comment '"tcp-lab:r1"'`);
  });

  test('every reject variant, default reject, drop', () => {
    assert.deepEqual(nftRuleArgs(parseRule({ ...base, rejectWith: 'tcp-reset' })).slice(-7), ['counter', 'reject', 'with', 'tcp', 'reset', 'comment', '"tcp-lab:r1"']);
    for (const [variant, name] of Object.entries(NFT_ICMP)) {
      const argv = nftRuleArgs(parseRule({ ...base, rejectWith: variant }));
      assert.deepEqual(argv.slice(-8), ['counter', 'reject', 'with', 'icmp', 'type', name, 'comment', '"tcp-lab:r1"']);
    }
    assert.deepEqual(nftRuleArgs(parseRule(base)).slice(-7), ['reject', 'with', 'icmp', 'type', 'port-unreachable', 'comment', '"tcp-lab:r1"']);
    assert.deepEqual(nftRuleArgs(parseRule({ ...base, action: 'drop' })).slice(-4), ['counter', 'drop', 'comment', '"tcp-lab:r1"']);
  });

  test('direction, chain and address', () => {
    const from = parseRule({ id: 'out-1', action: 'drop', direction: 'from-port', port: 8080, chain: 'OUTPUT', address: '10.0.0.2' });
    assert.deepEqual(nftRuleArgs(from), [
      'nft', '--echo', '--handle', 'add', 'rule', 'inet', 'tcplab', 'output',
      'meta', 'nfproto', 'ipv4', 'ip', 'saddr', '10.0.0.2', 'tcp', 'sport', '8080', 'counter', 'drop', 'comment', '"tcp-lab:out-1"',
    ]);
    const to = parseRule({ ...base, chain: 'FORWARD', address: '10.0.0.0/24' });
    assert.deepEqual(nftRuleArgs(to).slice(7, 14), ['forward', 'meta', 'nfproto', 'ipv4', 'ip', 'daddr', '10.0.0.0/24']);
  });
});

// ---------------------------------------------------------------------------------------------

describe('counter parsers on captured output', () => {
  test('iptables -L INPUT -v -x -n: lab rules only, foreign and target-less rules ignored', () => {
    const text = fixture('iptables-L-INPUT.txt');
    assert.deepEqual(parseIptablesListing(text), [
      { id: 'drop-7002', chain: 'INPUT', packets: 2, bytes: 120 },
      { id: 'r1', chain: 'INPUT', packets: 2, bytes: 120 },
    ]);
    assert.deepEqual([...parseIptablesCounters(text)], [['drop-7002', { packets: 2, bytes: 120 }], ['r1', { packets: 2, bytes: 120 }]]);
  });

  test('iptables -L -v -x -n (all chains) keeps the chain of each rule', () => {
    assert.deepEqual(parseIptablesListing(fixture('iptables-L-all.txt')).map((r) => [r.chain, r.id, r.packets]), [
      ['INPUT', 'drop-7002', 2], ['INPUT', 'r1', 2], ['OUTPUT', 'out-1', 3],
    ]);
  });

  test('iptables: an empty chain, and lines that only look like lab rules', () => {
    assert.deepEqual(parseIptablesListing(fixture('iptables-L-INPUT-empty.txt')), []);
    const tricky = [
      'Chain INPUT (policy ACCEPT 0 packets, 0 bytes)',
      '       5      300 ACCEPT     6    --  *      *       0.0.0.0/0            0.0.0.0/0            /* tcp-lab:r1x y */',
      '       5      300 ACCEPT     6    --  *      *       0.0.0.0/0            0.0.0.0/0            /* tcp-lab:R1 */',
      '      1K      300 ACCEPT     6    --  *      *       0.0.0.0/0            0.0.0.0/0            /* tcp-lab:r2 */',
      '       7      420 DROP       6    --  *      *       0.0.0.0/0            0.0.0.0/0            /* tcp-lab:r3 */',
      '       1       60 DROP       6    --  *      *       0.0.0.0/0            0.0.0.0/0            /* tcp-lab:r3 */',
    ].join('\n');
    assert.deepEqual([...parseIptablesCounters(tricky)], [['r3', { packets: 8, bytes: 480 }]]);
  });

  test('nft -j list table inet tcplab: counters and handles of lab rules', () => {
    const json = fixture('nft-list-table.json');
    assert.deepEqual(parseNftListing(json), [
      { id: 'r1', chain: 'input', packets: 2, bytes: 120, handle: 4 },
      { id: 'drop-7002', chain: 'input', packets: 2, bytes: 120, handle: 5 },
      { id: 'out-1', chain: 'output', packets: 4, bytes: 240, handle: 7 },
    ]);
    assert.deepEqual(parseNftCounters(json).get('out-1'), { packets: 4, bytes: 240 });
    assert.equal(parseNftCounters(json).size, 3);
  });

  test('nft: other tables, missing counters, odd shapes, and non-JSON', () => {
    const doc = {
      nftables: [
        { rule: { family: 'ip', table: 'filter', chain: 'input', handle: 1, comment: 'tcp-lab:x', expr: [{ counter: { packets: 9, bytes: 9 } }] } },
        { rule: { family: 'inet', table: 'tcplab', chain: 'input', handle: 2, comment: 'tcp-lab:nocount', expr: [{ drop: null }] } },
        { rule: { family: 'inet', table: 'tcplab', chain: 'input', handle: 3, comment: 'tcp-lab:bad id', expr: [] } },
        { rule: { family: 'inet', table: 'tcplab', chain: 'input', handle: 4, comment: 'tcp-lab:neg', expr: [{ counter: { packets: -1, bytes: 0 } }] } },
        { rule: null },
        'junk',
      ],
    };
    const listed = parseNftListing(JSON.stringify(doc));
    assert.deepEqual(listed.map((r) => r.id), ['nocount', 'neg']);
    assert.ok(Number.isNaN(listed[0]!.packets));
    assert.equal(parseNftCounters(JSON.stringify(doc)).size, 0);
    assert.deepEqual(parseNftListing('{}'), []);
    assert.throws(() => parseNftListing('Error: No such file or directory'), SyntaxError);
  });

  test('nft --echo --handle: the handle in text and JSON output', () => {
    assert.equal(parseNftEchoHandle(fixture('nft-echo-add.txt')), 4);
    assert.equal(parseNftEchoHandle(fixture('nft-echo-add.json')), 5);
    assert.equal(parseNftEchoHandle(''), undefined);
    assert.equal(parseNftEchoHandle('# new generation 6 by process 1 (nft)'), undefined);
    assert.equal(parseNftEchoHandle('{not json'), undefined);
  });
});

// ---------------------------------------------------------------------------------------------

describe('RuleSet with a recording Exec', () => {
  test('iptables: apply, counters, remove, duplicate id', async () => {
    const rec = recordingExec((argv) => (argv.includes('-L') ? { stdout: fixture('iptables-L-INPUT.txt') } : {}));
    const set = new RuleSet(rec.exec, 'iptables');
    const applied = await set.apply({ ...base, rejectWith: 'icmp-host-prohibited' });
    assert.deepEqual(applied, { id: 'r1', rule: { ...base, rejectWith: 'icmp-host-prohibited' }, backend: 'iptables', chain: 'INPUT' });
    await assert.rejects(set.apply({ ...base, port: 1 }), (e: LabError) => e.field === 'id');
    assert.deepEqual([...(await set.counters())], [['r1', { packets: 2, bytes: 120 }]]);
    await set.remove(applied);
    assert.deepEqual(rec.calls, [
      iptablesArgs(applied.rule, 'insert'),
      iptablesListArgs('INPUT'),
      iptablesArgs(applied.rule, 'delete'),
    ]);
    assert.deepEqual(set.applied, []);
    assert.deepEqual(await set.counters(), new Map());
    assert.equal(rec.calls.length, 3);
    await assert.rejects(set.remove(applied), (e: LabError) => e.field === 'id');
  });

  test('iptables: counters() throws when an applied rule is gone; a failed command is a LabError', async () => {
    const rec = recordingExec((argv) => {
      if (argv.includes('-L')) return { stdout: fixture('iptables-L-INPUT-empty.txt') };
      if (argv.includes('-D')) return { code: 1, stderr: 'iptables: Bad rule (does a matching rule exist in that chain?).\n' };
      return {};
    });
    const set = new RuleSet(rec.exec, 'iptables');
    const applied = await set.apply(base);
    await assert.rejects(set.counters(), /not in the INPUT chain/);
    await assert.rejects(set.remove(applied), (e: LabError) => /failed \(exit 1\)/.test(e.message) && e.hint === 'the rule is gone already');
    assert.equal(set.applied.length, 1);
  });

  test('iptables: removeAll tries every rule, collects errors, never throws', async () => {
    const rec = recordingExec((argv) => (argv.includes('-D') && argv.includes('7001') ? { code: 4, stderr: 'iptables: Resource temporarily unavailable.' } : {}));
    const set = new RuleSet(rec.exec, 'iptables');
    for (const port of [7000, 7001, 7002]) await set.apply({ ...base, id: `p${port}`, port });
    const errors = await set.removeAll();
    assert.equal(errors.length, 1);
    assert.ok(errors[0] instanceof LabError);
    assert.match(errors[0]!.message, /7001/);
    assert.deepEqual(set.applied.map((a) => a.id), ['p7001']);
    assert.deepEqual(rec.calls.filter((c) => c[3] === '-D').map((c) => c[8]), ['7002', '7001', '7000']);
  });

  test('iptables: a thrown Exec error (command not found) is collected by removeAll', async () => {
    let fail = false;
    const exec: Exec = async () => {
      if (fail) throw new LabError('command not found: iptables', { field: 'command', value: 'iptables' });
      return { stdout: '', stderr: '', code: 0 };
    };
    const set = new RuleSet(exec, 'iptables');
    await set.apply(base);
    fail = true;
    const errors = await set.removeAll();
    assert.deepEqual(errors.map((e) => e.message), ['command not found: iptables']);
  });

  test('nft: setup once, handle from --echo, counters from JSON, remove by handle, table deleted when empty', async () => {
    let listing = fixture('nft-list-table.json');
    const rec = recordingExec((argv) => {
      if (argv.includes('--echo')) return { stdout: fixture('nft-echo-add.txt') };
      if (argv[1] === '-j') return { stdout: listing };
      return {};
    });
    const set = new RuleSet(rec.exec, 'nft');
    const applied = await set.apply({ ...base, rejectWith: 'icmp-host-prohibited' });
    assert.equal(applied.handle, 4);
    assert.equal(applied.chain, 'input');
    await assert.rejects(set.apply({ ...base }), (e: LabError) => e.field === 'id');
    assert.deepEqual([...(await set.counters())], [['r1', { packets: 2, bytes: 120 }]]);
    listing = '{"nftables": [{"table": {"family": "inet", "name": "tcplab", "handle": 2}}]}';
    assert.deepEqual(await set.removeAll(), []);
    assert.deepEqual(rec.calls, [
      ...nftSetupArgs(),
      nftRuleArgs(applied.rule),
      nftListArgs(),
      nftDeleteArgs('input', 4),
      nftListArgs(),
      nftTeardownArgs(),
    ]);
  });

  test('nft: without a handle in the echo, the handle is found by listing; second apply skips setup', async () => {
    const rec = recordingExec((argv) => (argv[1] === '-j' ? { stdout: fixture('nft-list-table.json') } : {}));
    const set = new RuleSet(rec.exec, 'nft');
    const a = await set.apply({ id: 'out-1', action: 'drop', direction: 'from-port', port: 7001, chain: 'OUTPUT' });
    assert.equal(a.handle, 7);
    const b = await set.apply({ id: 'drop-7002', action: 'drop', direction: 'to-port', port: 7002, address: '127.0.0.1' });
    assert.equal(b.handle, 5);
    assert.equal(rec.calls.filter((c) => c[1] === 'add' && c[2] !== 'rule').length, 4);
  });

  test('nft: when a removal by handle fails, removeAll deletes the whole table instead', async () => {
    const rec = recordingExec((argv) => {
      if (argv.includes('--echo')) return { stdout: fixture('nft-echo-add.txt') };
      if (argv[1] === 'delete' && argv[2] === 'rule') return { code: 1, stderr: 'Error: Could not process rule: No such file or directory' };
      return {};
    });
    const set = new RuleSet(rec.exec, 'nft');
    await set.apply(base);
    assert.deepEqual(await set.removeAll(), []);
    assert.deepEqual(rec.calls.at(-1), nftTeardownArgs());
    assert.deepEqual(set.applied, []);
  });

  test('nft: when even the table cannot be deleted, the errors come back', async () => {
    const rec = recordingExec((argv) => {
      if (argv.includes('--echo')) return { stdout: fixture('nft-echo-add.txt') };
      if (argv[1] === 'delete') return { code: 1, stderr: 'Error: Operation not permitted' };
      return {};
    });
    const set = new RuleSet(rec.exec, 'nft');
    await set.apply(base);
    const errors = await set.removeAll();
    assert.equal(errors.length, 2);
    assert.match(errors[1]!.hint ?? '', /root/);
  });

  test('nft: a rule added without any handle to find is still taken back, by deleting the table', async () => {
    const rec = recordingExec((argv) => (argv[1] === '-j' ? { stdout: '{"nftables": []}' } : {}));
    const set = new RuleSet(rec.exec, 'nft');
    await assert.rejects(set.apply(base), /printed no handle/);
    assert.deepEqual(set.applied.map((a) => a.id), ['r1']);
    assert.deepEqual(await set.removeAll(), []);
    assert.deepEqual(rec.calls.at(-1), nftTeardownArgs());
    assert.deepEqual(set.applied, []);
  });

  test('remove takes a copy of the AppliedRule, and refuses one from elsewhere', async () => {
    const rec = recordingExec((argv) => (argv.includes('--echo') ? { stdout: fixture('nft-echo-add.txt') } : {}));
    const set = new RuleSet(rec.exec, 'nft');
    const applied = await set.apply(base);
    await assert.rejects(set.remove({ ...applied, handle: 99 }), (e: LabError) => e.field === 'id');
    await assert.rejects(set.remove({ ...applied, id: 'r2' }), (e: LabError) => e.field === 'id');
    await set.remove(JSON.parse(JSON.stringify(applied)));
    assert.deepEqual(rec.calls.at(-1), nftDeleteArgs('input', 4));
    assert.deepEqual(set.applied, []);
  });

  test('an unknown backend is refused', () => {
    assert.throws(() => new RuleSet(recordingExec().exec, 'pf' as Backend), (e: LabError) => e.field === 'backend');
  });
});

// ---------------------------------------------------------------------------------------------
// For real, in a throwaway network namespace: never the host's own ruleset.

interface Namespace {
  pid: number;
  exec: Exec;
  kill(): void;
}

/**
 * `unshare --user --map-root-user --net cat`: unshare execs cat inside the new namespaces (no
 * fork needed for net and user namespaces), so the child's pid is the namespace's holder. cat
 * reads the stdin pipe this process holds, so it also ends if this process dies. Each command
 * then runs through `nsenter --target <pid> --net --user --preserve-credentials --`.
 */
async function startNamespace(): Promise<Namespace> {
  const child: ChildProcess = spawn('unshare', ['--user', '--map-root-user', '--net', 'cat'], { stdio: ['pipe', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
  const kill = (): void => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  process.once('exit', kill);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.once('error', () => {});
  const pid = child.pid;
  const deadline = Date.now() + 5000;
  for (;;) {
    if (pid === undefined || child.exitCode !== null || child.signalCode !== null) {
      await Promise.race([exited, new Promise((r) => setTimeout(r, 200))]);
      throw new Error(`unshare --user --map-root-user --net failed: ${stderr.trim() || 'exited'}`);
    }
    let comm = '';
    try {
      comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
    } catch { /* not there yet */ }
    if (comm === 'cat') break;
    if (Date.now() > deadline) {
      kill();
      throw new Error('unshare did not start cat within 5 s');
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  const host = hostExec(silentLogger, 'ns');
  const prefix = ['nsenter', '--target', String(pid), '--net', '--user', '--preserve-credentials', '--'];
  const exec: Exec = (argv, options) => host([...prefix, ...argv], options);
  return { pid, exec, kill };
}

function unavailable(): string | undefined {
  if (process.platform !== 'linux') return 'network namespaces need Linux';
  for (const tool of ['unshare', 'nsenter', 'ip', 'python3']) {
    if (spawnSync(tool, ['--version'], { stdio: 'ignore' }).error) return `${tool} is not installed`;
  }
  const probe = spawnSync('unshare', ['--user', '--map-root-user', '--net', 'true'], { encoding: 'utf8' });
  if (probe.status !== 0) {
    return `unshare --user --map-root-user --net is unavailable here (${(probe.stderr || '').trim() || `exit ${probe.status}`}); `
      + 'run as root or enable unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, '
      + 'kernel.apparmor_restrict_unprivileged_userns=0)';
  }
  return undefined;
}

/** Listen on 127.0.0.1:port and connect to it: prints `connected`, `timeout`, or `ERRNO number`. */
const CONNECT_PY = `
import errno, socket, sys
port, timeout = int(sys.argv[1]), float(sys.argv[2])
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen(8)
c = socket.socket()
c.settimeout(timeout)
try:
    c.connect(("127.0.0.1", port))
    print("connected")
except socket.timeout:
    print("timeout")
except OSError as e:
    print(errno.errorcode.get(e.errno, "?"), e.errno)
`;

const EXPECTED: Record<RejectWith | 'drop', string> = {
  'tcp-reset': 'ECONNREFUSED 111',
  'icmp-port-unreachable': 'ECONNREFUSED 111',
  'icmp-host-unreachable': 'EHOSTUNREACH 113',
  'icmp-host-prohibited': 'EHOSTUNREACH 113',
  'icmp-admin-prohibited': 'EHOSTUNREACH 113',
  'icmp-net-unreachable': 'ENETUNREACH 101',
  'icmp-net-prohibited': 'ENETUNREACH 101',
  'icmp-proto-unreachable': 'ENOPROTOOPT 92',
  drop: 'timeout',
};

describe('in a network namespace, for real', { concurrency: false }, () => {
  let ns: Namespace | undefined;
  let reason = unavailable();

  before(async () => {
    if (reason) return;
    try {
      ns = await startNamespace();
      await ns.exec(['ip', 'link', 'set', 'lo', 'up']);
    } catch (error) {
      reason = `could not set up the namespace: ${(error as Error).message}`;
      ns?.kill();
      ns = undefined;
    }
  });
  after(() => ns?.kill());

  async function connect(port: number, timeout = 2): Promise<string> {
    const out = await ns!.exec(['python3', '-c', CONNECT_PY, String(port), String(timeout)]);
    return out.stdout.trim();
  }

  /** The lines of the whole namespace ruleset that carry a lab tag (iptables -S, or nft list ruleset). */
  async function tagsLeft(backend: Backend): Promise<string[]> {
    const argv = backend === 'iptables' ? ['iptables', '-w', '5', '-S'] : ['nft', 'list', 'ruleset'];
    return (await ns!.exec(argv)).stdout.split('\n').filter((l) => l.includes('tcp-lab:'));
  }

  async function nftTablePresent(): Promise<boolean> {
    return (await ns!.exec(['nft', 'list', 'tables'])).stdout.includes('table inet tcplab');
  }

  function guard(t: TestContext, tool: string): boolean {
    if (!ns) {
      t.skip(reason ?? 'no namespace');
      return false;
    }
    if (spawnSync(tool, ['--version'], { stdio: 'ignore' }).error) {
      t.skip(`${tool} is not installed`);
      return false;
    }
    return true;
  }

  for (const [backend, firstPort] of [['iptables', 7000], ['nft', 8000]] as const) {
    test(`${backend}: each variant gives its errno, counts packets, and is gone after remove`, { timeout: 120_000 }, async (t) => {
      if (!guard(t, backend)) return;
      const set = new RuleSet(ns!.exec, backend);
      try {
        const variants = [...REJECT_VARIANTS, 'drop' as const];
        const measured: string[] = [];
        for (const [i, variant] of variants.entries()) {
          const port = firstPort + i;
          const input = variant === 'drop'
            ? { id: `v${i}-drop`, action: 'drop', direction: 'to-port', port }
            : { id: `v${i}-${variant}`, action: 'reject', rejectWith: variant, direction: 'to-port', port };
          const applied = await set.apply(parseRule(input));
          const result = await connect(port, variant === 'drop' ? 1 : 3);
          measured.push(`${variant}: ${result}`);
          assert.equal(result, EXPECTED[variant], `${backend} ${variant}`);
          const counters = await set.counters();
          assert.ok((counters.get(applied.id)?.packets ?? 0) > 0, `${variant}: packets counted`);
          assert.ok((counters.get(applied.id)?.bytes ?? 0) > 0, `${variant}: bytes counted`);
          await set.remove(applied);
          const tag = new RegExp(`tcp-lab:${applied.id}(?![a-z0-9-])`);
          assert.deepEqual((await tagsLeft(backend)).filter((l) => tag.test(l)), [], `${variant}: rule gone from the ruleset`);
          assert.equal(await connect(port), 'connected', `${variant}: gone after remove`);
        }
        t.diagnostic(`${backend} errno: ${measured.join('; ')}`);

        // The default reject, from-port on OUTPUT, and an address-limited rule; then removeAll.
        const dflt = await set.apply(parseRule({ id: 'default', action: 'reject', direction: 'to-port', port: firstPort + 20 }));
        assert.equal(await connect(firstPort + 20), 'ECONNREFUSED 111');
        const out = await set.apply(parseRule({ id: 'from', action: 'drop', direction: 'from-port', port: String(firstPort + 21), chain: 'OUTPUT' }));
        assert.equal(await connect(firstPort + 21, 1), 'timeout');
        const addr = await set.apply(parseRule({ id: 'addr', action: 'reject', rejectWith: 'tcp-reset', direction: 'to-port', port: firstPort + 22, address: '127.0.0.1/32' }));
        const other = await set.apply(parseRule({ id: 'other', action: 'drop', direction: 'to-port', port: firstPort + 22, address: '10.9.9.9' }));
        assert.equal(await connect(firstPort + 22), 'ECONNREFUSED 111');
        const counters = await set.counters();
        for (const a of [dflt, out, addr]) assert.ok(counters.get(a.id)!.packets > 0, `${a.id} counted`);
        assert.equal(counters.get(other.id)!.packets, 0, 'a rule for another address matches nothing');
        assert.deepEqual(await set.removeAll(), []);
        assert.deepEqual(await tagsLeft(backend), []);
        if (backend === 'nft') assert.equal(await nftTablePresent(), false, 'removeAll deleted the empty table');
        assert.equal(await connect(firstPort + 21), 'connected');
      } finally {
        await set.removeAll();
      }
    });
  }

  test('nft: the lab chain (priority filter - 1) decides before an iptables filter rule (priority 0)', { timeout: 60_000 }, async (t) => {
    if (!guard(t, 'nft') || spawnSync('iptables', ['--version'], { stdio: 'ignore' }).error) return;
    const port = 8100;
    // iptables-nft puts this in table ip filter, chain INPUT, priority filter (0).
    const theirs = ['iptables', '-w', '5', '-I', 'INPUT', '-p', 'tcp', '--dport', String(port), '-j', 'REJECT', '--reject-with', 'tcp-reset'];
    await ns!.exec(theirs);
    const set = new RuleSet(ns!.exec, 'nft');
    try {
      assert.equal(await connect(port), 'ECONNREFUSED 111');
      const applied = await set.apply(parseRule({ id: 'first', action: 'reject', rejectWith: 'icmp-host-prohibited', direction: 'to-port', port }));
      assert.equal(await connect(port), 'EHOSTUNREACH 113', 'the lab rule, not the iptables one, answered');
      assert.ok((await set.counters()).get(applied.id)!.packets > 0);
      const chain = JSON.parse((await ns!.exec(['nft', '-j', 'list', 'chain', 'inet', 'tcplab', 'input'])).stdout) as { nftables: Array<{ chain?: { prio: number } }> };
      assert.equal(chain.nftables.find((i) => i.chain)?.chain?.prio, -1);
    } finally {
      await set.removeAll();
      await ns!.exec(['iptables', '-w', '5', '-D', ...theirs.slice(4)], { allowFailure: true });
    }
  });
});
