/**
 * Host mode for real, as root: rules on this host's own loopback traffic, through the CLI and the
 * API, with both backends. A server in this process on 127.0.0.1; every rule names that address
 * and its port, so nothing else on the machine is touched. Every rule the test makes has an id
 * starting with `hm-`, and the after hook removes all of those whatever happened.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { once } from 'node:events';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test, type TestContext } from 'node:test';
import { LabError } from '../src/lab/errors';
import { hostExec } from '../src/lab/exec';
import { Logger, MemorySink } from '../src/lab/log';
import {
  HostRules,
  ownerText,
  parseHostTag,
  processOwner,
  protectedEndpoints,
  sweepHostRules,
  type HostRuleEntry,
} from '../src/lab/hostRules';
import type { Backend } from '../src/lab/rules';
import { cliArgv, ensureTestUser, isRoot, ROOT, runCli } from './support/lab';
import { connectOutcome as probe, removeTestRules, rulesWithPrefix, type Outcome } from './support/hostFirewall';

const skip = isRoot ? false : 'host mode needs root';
const BACKENDS: Backend[] = ['iptables', 'nft'];
const log = new Logger(new MemorySink(), 'debug');
const exec = hostExec(log);
const children = new Set<ChildProcess>();

let server: Server;
let port = 0;
const accepted = new Set<Socket>();


/** One connect to the server, bounded: its errno name, `connected`, or `timeout`. */
function connectOutcome(timeoutMs = 600): Promise<Outcome> {
  return probe(port, timeoutMs);
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** tcp-lab as root, with an environment of our choosing (a fake SSH session). */
function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  const argv = cliArgv(args, 'self');
  const t0 = performance.now();
  return new Promise((resolve) => {
    execFile(argv[0]!, argv.slice(1), { cwd: ROOT, env: { ...process.env, ...env }, encoding: 'utf8' }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : null) : 0;
      resolve({ code, stdout, stderr, ms: performance.now() - t0 });
    });
  });
}

/** The host's rules with the test's ids, read with the tools themselves (not the code under test). */
function testRules(): HostRuleEntry[] {
  return rulesWithPrefix('hm-');
}

/** Every line of the host's firewall that mentions the lab. */
function labLines(): string[] {
  const text = `${execFileSync('iptables', ['-S'], { encoding: 'utf8' })}\n${execFileSync('nft', ['list', 'ruleset'], { encoding: 'utf8' })}`;
  return text.split('\n').filter((l) => /tcp-?lab/i.test(l));
}

/** The owners this test runs as: the CLI, this process, the owner processes it starts. */
const ourOwners = new Set<string>(['cli']);

/** Removes every rule the test made, and the empty nft tables of the test's owners and dead ones. */
function cleanUp(): void {
  removeTestRules('hm-', ourOwners);
}

/** A separate lab process that applies one DROP rule through the API and waits; SIGTERM removes it. */
async function owner(backend: Backend, id: string): Promise<{ child: ChildProcess; tag: string }> {
  const code = `
    const [src, backend, id, port] = process.argv.slice(1);
    // The sources are CommonJS to tsx: their exports come as the default export.
    const load = async (name) => { const m = await import(src + '/lab/' + name + '.ts'); return m.default ?? m; };
    const { HostRules } = await load('hostRules');
    const { hostExec } = await load('exec');
    const { silentLogger } = await load('log');
    const rules = await HostRules.open(hostExec(silentLogger), backend, silentLogger);
    const entry = await rules.apply({ id, action: 'drop', direction: 'to-port', port: Number(port), address: '127.0.0.1' });
    process.on('SIGTERM', async () => {
      const errors = await rules.removeAll();
      process.stdout.write('removed ' + errors.length + '\\n');
      process.exit(errors.length ? 1 : 0);
    });
    process.stdout.write('applied ' + entry.tag + '\\n');
    setInterval(() => {}, 60_000);
  `;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code, join(ROOT, 'src'), backend, id, String(port)],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  child.once('exit', () => children.delete(child));
  let out = '';
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  const deadline = Date.now() + 15_000;
  while (!/applied (\S+)\n/.test(out)) {
    if (Date.now() > deadline || child.exitCode !== null) assert.fail(`the owner process did not apply its rule: ${err.slice(-1500)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  const tag = /applied (\S+)\n/.exec(out)![1]!;
  ourOwners.add(ownerText(parseHostTag(tag)!.owner));
  return { child, tag };
}

async function timed<T>(t: TestContext, what: string, op: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  const result = await op();
  t.diagnostic(`${what}: ${(performance.now() - t0).toFixed(1)} ms`);
  return result;
}

describe('host mode', { skip }, () => {
  before(async () => {
    if (!existsSync(join(ROOT, 'dist', 'cli.js'))) execFileSync(process.execPath, ['esbuild.mjs'], { cwd: ROOT });
    ourOwners.add(ownerText(processOwner()));
    cleanUp(); // what a crashed earlier run left
    server = createServer((s) => {
      accepted.add(s);
      s.on('error', () => {});
      s.on('close', () => accepted.delete(s));
      s.destroy();
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    port = (server.address() as AddressInfo).port;
    assert.equal(await connectOutcome(), 'connected', 'the server answers before any rule');
  });

  // A failed test leaves nothing to the next: its owners are killed and its rules removed.
  afterEach(async () => {
    await Promise.all([...children].map((child) => {
      child.kill('SIGKILL');
      return once(child, 'exit');
    }));
    cleanUp();
  });

  after(async () => {
    for (const child of children) child.kill('SIGKILL');
    cleanUp();
    for (const s of accepted) s.destroy();
    server?.close();
    assert.deepEqual(labLines(), [], 'the host firewall has no tcp-lab line left');
  });

  for (const backend of BACKENDS) {
    describe(backend, () => {
      test('CLI: apply asks for --yes, then REJECT tcp-reset refuses connects until remove', async (t) => {
        const id = `hm-cli-${backend}`;
        const rule = ['--id', id, '--action', 'reject', '--reject-with', 'tcp-reset', '--direction', 'to-port', '--port', String(port), '--address', '127.0.0.1', '--firewall', backend];
        const unconfirmed = await cli(['host', 'apply', ...rule]);
        assert.equal(unconfirmed.code, 2, unconfirmed.stderr);
        assert.match(unconfirmed.stderr, new RegExp(`would apply on this host \\(${backend}\\): .*${port}[\\s\\S]*--yes`));
        assert.deepEqual(testRules(), [], 'nothing is applied without --yes');

        const applied = await cli(['host', 'apply', ...rule, '--yes']);
        t.diagnostic(`tcp-lab host apply (${backend}), whole process: ${applied.ms.toFixed(0)} ms`);
        assert.equal(applied.code, 0, applied.stderr);
        assert.match(applied.stdout, new RegExp(`tcp-lab host remove ${id}`), 'it says how to remove the rule');
        const t0 = performance.now();
        assert.equal(await connectOutcome(), 'ECONNREFUSED');
        assert.ok(performance.now() - t0 < 500, 'the RST comes at once');

        const listed = await cli(['host', 'list', '--json', '--firewall', backend]);
        assert.equal(listed.code, 0, listed.stderr);
        const mine = (JSON.parse(listed.stdout) as Array<{ tag: string; owner: string; status: string; packets: number }>).find((r) => r.tag === `tcp-lab-host:cli:${id}`);
        assert.ok(mine, listed.stdout);
        assert.equal(mine.status, 'cli');
        assert.ok(mine.packets > 0, `the rule counted the SYN: ${JSON.stringify(mine)}`);
        const text = await cli(['host', 'list', '--firewall', backend]);
        assert.match(text.stdout, new RegExp(`tcp-lab-host:cli:${id}\\s+cli \\(kept\\)`));

        const swept = await cli(['host', 'sweep']);
        assert.equal(swept.code, 0, swept.stderr);
        assert.equal(testRules().length, 1, 'sweep leaves the CLI\'s rule alone');

        const removed = await cli(['host', 'remove', id]);
        t.diagnostic(`tcp-lab host remove (${backend}), whole process: ${removed.ms.toFixed(0)} ms`);
        assert.equal(removed.code, 0, removed.stderr);
        assert.deepEqual(testRules(), []);
        assert.equal(await connectOutcome(), 'connected');
      });

      test('API: DROP makes connect time out, counts the SYNs, and goes with remove', async (t) => {
        const rules = await timed(t, `HostRules.open (${backend})`, () => HostRules.open(exec, backend, log));
        try {
          const rule = { id: `hm-api-${backend}`, action: 'drop', direction: 'to-port', port, address: '127.0.0.1' } as const;
          const entry = await timed(t, `apply (${backend})`, () => rules.apply(rule));
          assert.equal(entry.tag, `tcp-lab-host:${process.pid}.${(rules.owner as { start: number }).start}.${(rules.owner as { pidns: number }).pidns}:${rule.id}`);
          await assert.rejects(rules.apply(rule), (e: unknown) => e instanceof LabError && e.field === 'id');
          assert.equal(await connectOutcome(600), 'timeout');
          const [listed] = await timed(t, `list (${backend})`, () => rules.list());
          assert.ok(listed && listed.packets > 0, `the rule counted the SYN: ${JSON.stringify(listed)}`);
          await timed(t, `remove (${backend})`, () => rules.remove(rule.id));
          assert.equal(await connectOutcome(), 'connected');
          await assert.rejects(rules.remove(rule.id), (e: unknown) => e instanceof LabError && e.field === 'id');

          await rules.apply({ ...rule, id: `hm-api2-${backend}` });
          await rules.apply({ id: `hm-api3-${backend}`, action: 'reject', direction: 'from-port', port, address: '127.0.0.1', chain: 'OUTPUT' });
          assert.equal((await rules.list()).length, 2);
          assert.deepEqual(await timed(t, `removeAll of 2 (${backend})`, () => rules.removeAll()), []);
          assert.deepEqual(testRules(), []);
          assert.deepEqual(labLines(), [], 'with nft the owner\'s table went too');
          assert.equal(await connectOutcome(), 'connected');
        } finally {
          await rules.dispose();
        }
      });

      test('a killed owner: sweep removes its rule and never a live owner\'s', async (t) => {
        const dead = await owner(backend, `hm-dead-${backend}`);
        const live = await owner(backend, `hm-live-${backend}`);
        assert.equal(await connectOutcome(), 'timeout');
        assert.deepEqual((await sweepHostRules(exec, log)).removed, [], 'both owners run: nothing to sweep');

        dead.child.kill('SIGKILL');
        await once(dead.child, 'exit');
        const listed = await cli(['host', 'list', '--json']);
        const status = new Map((JSON.parse(listed.stdout) as Array<{ tag: string; status: string }>).map((r) => [r.tag, r.status]));
        assert.equal(status.get(dead.tag), 'dead');
        assert.equal(status.get(live.tag), 'alive');

        const result = await timed(t, `sweepHostRules, one dead owner (${backend})`, () => sweepHostRules(exec, log));
        assert.deepEqual(result.errors, []);
        assert.deepEqual(result.removed.map((e) => e.tag), [dead.tag]);
        assert.deepEqual(testRules().map((e) => e.tag), [live.tag], 'the live owner keeps its rule');
        assert.equal(await connectOutcome(), 'timeout', 'the live owner\'s DROP still holds');
        const again = await cli(['host', 'sweep']);
        assert.match(again.stdout, /nothing to sweep/);

        // The live owner stops: it removes its own rules.
        live.child.kill('SIGTERM');
        const [code] = await once(live.child, 'exit');
        assert.equal(code, 0);
        assert.deepEqual(testRules(), []);
        assert.deepEqual(labLines(), [], 'no tcp-lab line is left in iptables -S or nft list ruleset');
        assert.equal(await connectOutcome(), 'connected');
      });
    });
  }

  test('a rule on the SSH port of the session is refused, by the CLI and the API', async () => {
    const ssh = { SSH_CONNECTION: '198.51.100.7 50123 198.51.100.1 22' };
    const run = await cli(['host', 'apply', '--id', 'hm-ssh', '--action', 'drop', '--direction', 'to-port', '--port', '22', '--yes'], ssh);
    assert.equal(run.code, 2, run.stderr);
    assert.match(run.stderr, /refusing host rule hm-ssh/);
    assert.match(run.stderr, /port 22 is the SSH session this runs over \(SSH_CONNECTION: 198\.51\.100\.7:50123 -> 198\.51\.100\.1:22/);
    // The same port from this host to other SSH servers is fine to cut: not the session's way.
    const outbound = await cli(['host', 'apply', '--id', 'hm-ssh', '--action', 'drop', '--direction', 'to-port', '--port', '22', '--chain', 'OUTPUT'], ssh);
    assert.match(outbound.stderr, /would apply on this host/);

    const rules = await HostRules.open(exec, 'iptables', log, undefined, { protect: protectedEndpoints(ssh, []) });
    await assert.rejects(rules.apply({ id: 'hm-ssh', action: 'drop', direction: 'from-port', port: 22, chain: 'OUTPUT' }),
      (e: unknown) => e instanceof LabError && e.field === 'port' && /port 22 is the SSH session/.test(e.message));
    assert.deepEqual(testRules(), [], 'nothing was applied');
  });

  test('as an unprivileged user, host mode says it needs root', async () => {
    ensureTestUser();
    const run = await runCli(['host', 'apply', '--id', 'hm-user', '--action', 'drop', '--direction', 'to-port', '--port', String(port), '--yes'], 'user');
    assert.equal(run.code, 2, run.stderr);
    assert.match(run.stderr, /host mode needs root \(the editor asks for sudo\)/);
    const list = await runCli(['host', 'list'], 'user');
    assert.equal(list.code, 2);
    assert.match(list.stderr, /needs root/);
    assert.deepEqual(testRules(), []);
  });
});
