/**
 * Host mode through the sudo helper, for real: the unprivileged user's stand-in editor
 * (test/support/sudoHostDriver.ts) types the password once, and the root helper applies, lists
 * and removes rules on this host's own loopback traffic. The rules belong to the helper: its
 * exit removes them, and the sweep of the next helper removes those of one that was killed.
 *
 * The server the rules hit is a separate process (never an ancestor of the helper: the guard
 * protects the ports its ancestors listen on and the connections they hold). Every rule the
 * test makes has an id starting with `sh-` and names 127.0.0.1's port of that server; the hooks
 * remove all of them, whatever happened.
 */
import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, rmSync } from 'node:fs';
import { once } from 'node:events';
import { join } from 'node:path';
import * as esbuild from 'esbuild';
import { decodeLine, encodeMessage } from '../src/lab/helperProtocol';
import { ownerStatus, ownerText, parseHostTag, type HostRuleEntry } from '../src/lab/hostRules';
import { HostSession, sweepHost } from '../src/lab/hostSession';
import { processOwner } from '../src/lab/hostOwner';
import { Logger, MemorySink } from '../src/lab/log';
import type { FaultRule } from '../src/lab/rules';
import { editorEndpoints, rootClient, sweepNotice } from '../src/vscode/hostModeModel';
import { ensureTestUser, isRoot, ROOT, stagedInstall, TEST_USER } from './support/lab';
import { connectOutcome as probe, removeTestRules, rulesWithPrefix, type Outcome } from './support/hostFirewall';
import { alive, Driver, DROP_IN, installSudo, restorePassword, setPassword, stageBundles, writeSudoers, type Said } from './support/sudoHost';

const password = `Tcp-Lab-${randomBytes(12).toString('hex')}`;
let shadowBefore: string | undefined;
let helperJs = '';
let driverJs = '';
let server: ChildProcess | undefined;
let port = 0;
const log = new Logger(new MemorySink(), 'debug');
/** The owners (helper processes) this test saw: their rules and tables are the test's. */
const owners = new Set<string>();


/** One bounded connect to the server from this process: `connected`, an errno name, or `timeout`. */
/** Each test bounded: a helper that never answers fails the test instead of holding the run. */
const T = { timeout: 60_000 };

function connectOutcome(timeoutMs = 800): Promise<Outcome> {
  return probe(port, timeoutMs);
}

/** The host's rules with the test's ids, read with the tools themselves. */
function testRules(): HostRuleEntry[] {
  return rulesWithPrefix('sh-');
}

/** Firewall lines of the test: its ids' tags and the tables of its helpers. */
function testLines(): string[] {
  const text = `${execFileSync('iptables', ['-S'], { encoding: 'utf8' })}\n${execFileSync('nft', ['list', 'ruleset'], { encoding: 'utf8' })}`;
  const tables = [...owners].map((o) => `tcplab_host_${o.replaceAll('.', '_')}`);
  return text.split('\n').filter((l) => /tcp-lab-host:[\d.]+:sh-/.test(l) || tables.some((t) => l.includes(t)));
}

function cleanUp(): void {
  removeTestRules('sh-', owners);
}

const reject = (id: string, backend = 'iptables'): { apply: FaultRule; backend: string } =>
  ({ apply: { id, action: 'reject', rejectWith: 'tcp-reset', direction: 'to-port', port, address: '127.0.0.1' }, backend });

/** A driver (the user's stand-in editor) with its helper started. */
async function startDriver(): Promise<{ d: Driver; helper: number; owner: string }> {
  const d = new Driver(driverJs, [helperJs]);
  d.send(password);
  const started = await d.next(['started', 'error']);
  assert.equal(started.type, 'started', String(started.message));
  assert.equal(started.uid, 0);
  const owner = String(started.owner);
  assert.match(owner, new RegExp(`^${started.helperPid as number}\\.\\d+\\.\\d+$`), 'the helper owns its rules');
  owners.add(owner);
  return { d, helper: started.helperPid as number, owner };
}

async function waitGone(pid: number): Promise<void> {
  for (let i = 0; i < 300 && alive(pid); i++) await new Promise((r) => setTimeout(r, 20));
  assert.ok(!alive(pid), `process ${pid} exited`);
}

describe('host mode through the sudo helper', { skip: isRoot ? false : 'needs root: it sets up a user with a password and a sudoers rule' }, () => {
  before(async () => {
    installSudo();
    ensureTestUser();
    shadowBefore = setPassword(password);
    writeSudoers(`${TEST_USER} ALL=(root) ALL`);
    if (!existsSync(join(ROOT, 'dist', 'cli.js'))) execFileSync(process.execPath, ['esbuild.mjs'], { cwd: ROOT });
    helperJs = (await stageBundles()).helper;
    driverJs = join(stagedInstall(), 'dist', 'sudo-host-driver.js');
    await esbuild.build({
      bundle: true, platform: 'node', target: 'node20', format: 'cjs', external: ['node-pty'], logLevel: 'warning',
      entryPoints: [join(ROOT, 'test', 'support', 'sudoHostDriver.ts')], outfile: driverJs,
    });
    chmodSync(driverJs, 0o644);
    cleanUp();
    // The server: its own process, so that no ancestor of the helper holds its port.
    server = spawn(process.execPath, ['-e', `
      const s = require('node:net').createServer((c) => { c.on('error', () => {}); c.on('end', () => c.end()); });
      s.listen(0, '127.0.0.1', () => process.stdout.write(s.address().port + '\\n'));
    `], { stdio: ['ignore', 'pipe', 'inherit'] });
    const [chunk] = (await once(server.stdout!, 'data')) as [Buffer];
    port = Number(String(chunk).trim());
    assert.ok(port > 0);
    assert.equal(await connectOutcome(), 'connected');
  });

  afterEach(() => {
    Driver.killAll();
    cleanUp();
  });

  after(() => {
    server?.kill('SIGKILL');
    rmSync(DROP_IN, { force: true });
    if (shadowBefore !== undefined) restorePassword(shadowBefore);
    cleanUp();
    assert.deepEqual(testLines(), [], 'no firewall line of the test is left');
  });

  for (const backend of ['iptables', 'nft'] as const) {
    test(`${backend}: a REJECT tcp-reset on the host refuses connects, counts them, and its removal lets them through`, T, async (t) => {
      const { d, owner } = await startDriver();
      d.send(JSON.stringify(reject('sh-refuse', backend)));
      const applied = await d.next(['applied', 'refused']);
      assert.equal(applied.type, 'applied', String(applied.message));
      const tag = `tcp-lab-host:${owner}:sh-refuse`;
      assert.deepEqual((applied.rules as Said[]).map((r) => r.tag), [tag]);
      assert.deepEqual(testRules().map((e) => e.tag), [tag], 'the kernel has it, tagged with the helper as owner');

      const outcomes = [await connectOutcome(), await connectOutcome(), await connectOutcome()];
      assert.deepEqual(outcomes, ['ECONNREFUSED', 'ECONNREFUSED', 'ECONNREFUSED'], 'the host\'s own connects are refused');
      d.send(JSON.stringify({ list: true }));
      const listed = await d.next(['rules', 'refused']);
      const rule = (listed.rules as Said[])[0]!;
      assert.equal(rule.tag, tag);
      assert.ok((rule.packets as number) >= 3, `the counters read through the helper: ${rule.packets} packets`);
      assert.deepEqual(rule.rule, { ...reject('sh-refuse').apply, chain: 'INPUT' }, 'the listing reads back as the rule');

      d.send(JSON.stringify({ remove: 'sh-refuse' }));
      assert.deepEqual((await d.next(['rules', 'refused'])).rules, []);
      assert.deepEqual(testRules(), []);
      assert.equal(await connectOutcome(), 'connected', 'removed: the connect goes through again');
      d.send(JSON.stringify({ quit: true }));
      await d.next(['closed']);
      assert.equal(await d.exited(), 0);
      t.diagnostic(`${backend}: apply ${(applied.ms as number).toFixed(0)} ms, list ${(listed.ms as number).toFixed(0)} ms through the helper; ${rule.packets} packets counted for 3 connects`);
    });
  }

  test('the helper exiting (its stdin closed) removes its host rules', T, async () => {
    const { d, helper } = await startDriver();
    d.send(JSON.stringify(reject('sh-exit')));
    d.send(JSON.stringify(reject('sh-exit-nft', 'nft')));
    assert.equal((await d.next(['applied', 'refused'])).type, 'applied');
    assert.equal((await d.next(['applied', 'refused'])).type, 'applied');
    assert.equal(testRules().length, 2);
    assert.equal(await connectOutcome(), 'ECONNREFUSED');
    d.send(JSON.stringify({ quit: true }));
    await d.next(['closed']);
    assert.equal(await d.exited(), 0);
    await waitGone(helper);
    assert.deepEqual(testRules(), [], 'gone with the helper');
    assert.deepEqual(testLines(), [], 'its nft table too');
    assert.equal(await connectOutcome(), 'connected');
  });

  test('kill -9 of the editor: the helper sees its pipe close and removes the rules itself', T, async (t) => {
    const { d, helper } = await startDriver();
    d.send(JSON.stringify(reject('sh-editor-killed')));
    assert.equal((await d.next(['applied', 'refused'])).type, 'applied');
    assert.equal(await connectOutcome(), 'ECONNREFUSED');
    const t0 = Date.now();
    d.child.kill('SIGKILL');
    await d.exited();
    await waitGone(helper);
    for (let i = 0; i < 100 && testRules().length; i++) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(testRules(), []);
    assert.equal(await connectOutcome(), 'connected');
    t.diagnostic(`rule removed and helper gone ${Date.now() - t0} ms after the editor's kill -9`);
  });

  test('kill -9 of the helper itself: the rule stays, and the next helper\'s start sweeps it', T, async (t) => {
    const first = await startDriver();
    first.d.send(JSON.stringify(reject('sh-helper-killed')));
    assert.equal((await first.d.next(['applied', 'refused'])).type, 'applied');
    process.kill(first.helper, 'SIGKILL');
    await waitGone(first.helper);
    const [left] = testRules();
    assert.equal(left?.tag, `tcp-lab-host:${first.owner}:sh-helper-killed`, 'a killed helper removes nothing');
    assert.equal(ownerStatus(parseHostTag(left.tag)!.owner), 'dead');
    assert.equal(await connectOutcome(), 'ECONNREFUSED', 'the orphan still holds');

    const t0 = Date.now();
    const second = await startDriver();
    const swept = (await second.d.next(['startSweep'])).swept as { removed: Said[]; errors: Said[] };
    assert.deepEqual(swept.removed.map((r) => r.tag), [left.tag], 'the new helper swept the dead one\'s rule');
    assert.deepEqual(swept.errors, []);
    assert.deepEqual(testRules(), []);
    assert.deepEqual(testLines(), []);
    assert.equal(await connectOutcome(), 'connected');
    second.d.send(JSON.stringify({ sweep: true }));
    assert.deepEqual(((await second.d.next(['swept'])).swept as { removed: Said[] }).removed, [], 'nothing left for a second sweep');
    second.d.send(JSON.stringify({ quit: true }));
    await second.d.next(['closed']);
    t.diagnostic(`swept ${Date.now() - t0} ms after the second start began (sudo + PAM + the sweep)`);
  });

  test('a rule on the editor\'s SSH port is refused, by the editor and again by the helper, naming the port and why', T, async (t) => {
    const { d } = await startDriver();
    // The editor's Remote-SSH session as its environment says it: this host's side is 127.0.0.1:port.
    const env = { SSH_CONNECTION: `127.0.0.1 50022 127.0.0.1 ${port}` };
    d.send(JSON.stringify({ apply: { id: 'sh-ssh', action: 'drop', direction: 'to-port', port }, backend: 'iptables', env }));
    const refused = await d.next(['applied', 'refused']);
    assert.equal(refused.type, 'refused', 'the helper refused it');
    assert.equal(refused.field, 'port');
    const message = String(refused.message);
    assert.match(message, /^refusing host rule sh-ssh/);
    assert.match(message, new RegExp(`port ${port} is the SSH session this runs over \\(SSH_CONNECTION: 127\\.0\\.0\\.1:50022 -> 127\\.0\\.0\\.1:${port}`));
    assert.match(message, /it would cut the connection this session runs over/);
    assert.match(String(refused.local), new RegExp(`^refusing host rule sh-ssh .*\\n  port ${port} is the SSH session this runs over`), 'the editor refuses it before asking for a password');
    assert.deepEqual(testRules(), [], 'nothing was applied');
    t.diagnostic(`the helper said: ${String(refused.described)}`);
    assert.equal(await connectOutcome(), 'connected');
    d.send(JSON.stringify({ quit: true }));
    await d.next(['closed']);
  });

  test('the helper\'s own view: a connection the editor holds is protected even when the editor names none', T, async (t) => {
    const { d } = await startDriver();
    d.send(JSON.stringify({ hold: port }));
    const held = await d.next(['held', 'refused']);
    assert.equal(held.type, 'held', String(held.message));
    d.send(JSON.stringify({ ...reject('sh-held'), protect: 'none' }));
    const refused = await d.next(['applied', 'refused']);
    assert.equal(refused.type, 'refused');
    t.diagnostic(`the helper said: ${String(refused.message)}`);
    assert.match(String(refused.message), new RegExp(`port ${port} is a connection of node \\(pid \\d+\\) \\(127\\.0\\.0\\.1:${held.localPort} <-> 127\\.0\\.0\\.1:${port}\\)`));
    assert.deepEqual(testRules(), []);
    d.send(JSON.stringify({ quit: true }));
    await d.next(['closed']);
  });

  test('a root editor applies with its own process as owner, and its close removes the rules', T, async () => {
    const session = new HostSession(log);
    owners.add(session.ownerText);
    const client = rootClient(session);
    const rules = await client.apply(reject('sh-root').apply, 'iptables', editorEndpoints());
    assert.deepEqual(rules.map((r) => r.tag), [`tcp-lab-host:${ownerText(processOwner())}:sh-root`]);
    assert.equal(await connectOutcome(), 'ECONNREFUSED');
    assert.equal((await client.list())[0]?.packets, 1);
    await assert.rejects(client.apply(reject('sh-root', 'nft').apply, 'nft', []), /already applied with iptables/);
    assert.deepEqual(await session.close(), [], 'deactivate: every rule removed');
    assert.deepEqual(testRules(), []);
    await assert.rejects(client.apply(reject('sh-root-2').apply, 'iptables', []), /host mode is stopping/);
    assert.equal(await connectOutcome(), 'connected');
  });

  test('a root editor killed with its rules: the next start\'s sweep removes them', T, async () => {
    // The extension host as a separate process: it applies through HostSession and is killed.
    const code = `
      const load = async (name) => { const m = await import(process.argv[1] + '/lab/' + name + '.ts'); return m.default ?? m; };
      const { HostSession } = await load('hostSession');
      const { silentLogger } = await load('log');
      const info = await new HostSession(silentLogger).apply(JSON.parse(process.argv[2]), 'nft', []);
      process.stdout.write(info.tag + '\\n');
      setInterval(() => {}, 60_000);
    `;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code, join(ROOT, 'src'), JSON.stringify(reject('sh-root-killed').apply)],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
    for (let i = 0; i < 600 && !out.includes('\n'); i++) await new Promise((r) => setTimeout(r, 25));
    const tag = out.trim();
    assert.match(tag, /^tcp-lab-host:\d+\.\d+\.\d+:sh-root-killed$/);
    owners.add(ownerText(parseHostTag(tag)!.owner));
    assert.equal(await connectOutcome(), 'ECONNREFUSED');
    child.kill('SIGKILL');
    await once(child, 'exit');
    assert.deepEqual(testRules().map((e) => e.tag), [tag], 'killed: the rule stays');
    const swept = await sweepHost(log);
    assert.deepEqual(swept.removed.map((r) => r.tag), [tag]);
    assert.deepEqual(testRules(), []);
    assert.deepEqual(testLines(), [], 'its nft table went with it');
    assert.equal(sweepNotice(swept), `removed 1 host rule left by a crashed session (${tag})`);
    assert.equal(await connectOutcome(), 'connected');
  });

  test('the helper refuses bad host requests, answering their seq with the field', T, async () => {
    const child = spawn(process.execPath, [helperJs], { stdio: ['pipe', 'pipe', 'pipe'] });
    const said: Said[] = [];
    let partial = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n');
      partial = lines.pop()!;
      for (const l of lines) said.push(decodeLine(l) as Said);
    });
    const next = async (type: string): Promise<Said> => {
      for (let i = 0; i < 400; i++) {
        const at = said.findIndex((m) => m.type === type);
        if (at >= 0) return said.splice(at, 1)[0]!;
        await new Promise((r) => setTimeout(r, 25));
      }
      return assert.fail(`no ${type} from the helper: ${JSON.stringify(said)}`);
    };
    assert.equal((await next('ready')).type, 'ready');
    const rule = { id: 'sh-bad', action: 'drop', direction: 'to-port', port };
    const cases: [unknown, string][] = [
      [{ type: 'hostApply', seq: 1, backend: 'iptables', rule: { ...rule, port: 70000 }, protect: [] }, 'rule.port'],
      [{ type: 'hostApply', seq: 2, backend: 'iptables', rule: { ...rule, id: 'Bad Id' }, protect: [] }, 'rule.id'],
      [{ type: 'hostApply', seq: 3, backend: 'pf', rule, protect: [] }, 'backend'],
      [{ type: 'hostApply', seq: 4, backend: 'iptables', rule, protect: [{ localPort: 0, why: 'x' }] }, 'protect[0].localPort'],
      [{ type: 'hostApply', seq: 5, backend: 'iptables', rule, protect: [{ localPort: 22, why: 'line\nbreak' }] }, 'protect[0].why'],
      [{ type: 'hostApply', seq: 6, backend: 'iptables', rule, protect: [{ localPort: 22, localAddress: '$(reboot)', why: 'x' }] }, 'protect[0].localAddress'],
      [{ type: 'hostApply', seq: 7, backend: 'iptables', rule, protect: 'all' }, 'protect'],
      [{ type: 'hostRemove', seq: 8, id: '../etc' }, 'id'],
      // As root directly, not through a window: the rule is refused for the port it names.
      [{ type: 'hostApply', seq: 9, backend: 'iptables', rule, protect: [{ localPort: port, why: 'the port the test names' }] }, 'port'],
    ];
    for (const [message, field] of cases) {
      child.stdin.write(encodeMessage(message as never));
      const reply = await next('host');
      assert.equal(reply.seq, (message as { seq: number }).seq);
      assert.equal((reply.error as Said | undefined)?.field, field, JSON.stringify(reply));
    }
    assert.deepEqual(testRules(), []);
    child.stdin.end();
    assert.equal((await once(child, 'exit'))[0], 0);
  });
});
