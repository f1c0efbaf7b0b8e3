/**
 * Runs inside VS Code's extension host, loaded by runTests.ts through --extensionTestsPath:
 * the extension as a user gets it, driven only through its commands. A throw fails the run.
 */
import type * as vscode from 'vscode';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import type { ErrnoValue, ScenarioResult } from '../../src/lab/runner';
import { findScenario } from '../../src/lab/scenarios';

const EXTENSION_ID = 'tcp-failure-lab.tcp-failure-lab';
/** No step may take longer: the slowest scenario here has a 10 s deadline plus set-up. */
const STEP_MS = 60_000;

export async function run(): Promise<void> {
  // `vscode` exists only in the extension host, which hands it to require() itself.
  const code = require('vscode') as typeof vscode;

  await step('the extension activates', async () => {
    const ext = code.extensions.getExtension(EXTENSION_ID);
    assert.ok(ext, `${EXTENSION_ID} is not loaded: is --extensionDevelopmentPath the repository root?`);
    await ext.activate();
    assert.ok(ext.isActive);
  });

  await step('every contributed command is registered', async () => {
    const ext = code.extensions.getExtension(EXTENSION_ID)!;
    const contributed = (ext.packageJSON.contributes.commands as { command: string }[]).map((c) => c.command);
    assert.ok(contributed.includes('tcpLab.runScenario') && contributed.includes('tcpLab.stop'));
    const registered = new Set(await code.commands.getCommands(true));
    assert.deepEqual(contributed.filter((c) => !registered.has(c)), []);
  });

  await step('connect-refused: pass, ECONNREFUSED (111), a terminal per program', async () => {
    const r = await runScenario(code, 'connect-refused');
    assertPass(r, { name: 'ECONNREFUSED', number: 111 });
    assertTerminals(code, r.id);
  });

  await step('keepalive-detects: pass, ETIMEDOUT (110)', async () => {
    const r = await runScenario(code, 'keepalive-detects');
    assertPass(r, { name: 'ETIMEDOUT', number: 110 });
    // Unlike connect-refused, this one has a server: both terminals.
    assertTerminals(code, r.id);
  });

  await step('tcpLab.stop cancels keepalive-detects and leaves no lab process', async () => {
    const started = performance.now();
    const pending = runScenario(code, 'keepalive-detects');
    // Awaited below; until then a failure in it must not count as unhandled.
    pending.catch(() => undefined);
    // Stop once the namespace is up and a second has passed: mid-run, keepalive still waiting.
    let lab: LabProc[] = [];
    while ((lab = labProcesses()).length === 0 || performance.now() - started < 1000) {
      assert.ok(performance.now() - started < 5000, 'no unshare … cat process appeared under the extension host within 5 s');
      await sleep(100);
    }
    await code.commands.executeCommand('tcpLab.stop');
    const r = await pending;
    assert.equal(r.error, 'cancelled', `the run was not cancelled: verdict ${r.verdict}, error ${r.error ?? 'none'}`);
    // The namespace's init outlives unshare by a moment (--kill-child sends it SIGKILL); an
    // orphan leaves our tree, so the processes seen during the run are checked by identity.
    const deadline = performance.now() + 3000;
    let left = survivors(lab);
    while (left.length && performance.now() < deadline) {
      await sleep(100);
      left = survivors(lab);
    }
    assert.deepEqual(left, [], 'lab processes left after tcpLab.stop');
  });
}

async function step(name: string, body: () => Promise<void>): Promise<void> {
  const t0 = performance.now();
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`did not finish within ${STEP_MS / 1000} s`)), STEP_MS);
  });
  try {
    await Promise.race([body(), limit]);
  } catch (e) {
    throw new Error(`${name}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  } finally {
    clearTimeout(timer);
  }
  console.log(`ok ${name} (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
}

async function runScenario(code: typeof vscode, id: string): Promise<ScenarioResult> {
  const r = await code.commands.executeCommand<ScenarioResult | undefined>('tcpLab.runScenario', id);
  // The command resolves to nothing when it failed before a run; runTests prints the log.
  assert.ok(r, `tcpLab.runScenario ${id} gave no result: it failed before running (see the TCP Lab log)`);
  return r;
}

function assertPass(r: ScenarioResult, errno: ErrnoValue): void {
  assert.equal(r.error, undefined, `${r.id}: the lab could not run it: ${r.error}`);
  assert.equal(r.verdict, 'pass', `${r.id}: ${r.verdict}; expected ${r.expected.says}, measured ${r.measured.says ?? 'nothing'}`);
  assert.deepEqual(r.measured.errno, errno);
}

function assertTerminals(code: typeof vscode, id: string): void {
  const open = code.window.terminals.map((t) => t.name);
  for (const p of findScenario(id).procs) {
    assert.ok(open.includes(`TCP Lab: ${p.name}`), `${id}: no terminal "TCP Lab: ${p.name}"; open: ${open.join(', ') || 'none'}`);
  }
}

interface LabProc {
  pid: number;
  /** Start time in clock ticks since boot: tells a reused pid from the process we saw. */
  start: string;
  argv: string;
}

interface ProcStat {
  pid: number;
  ppid: number;
  state: string;
  start: string;
}

function stat(pid: number): ProcStat | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) is in parentheses and may hold spaces: split after it.
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { pid, state: f[0]!, ppid: Number(f[1]), start: f[19]! };
  } catch {
    return undefined;
  }
}

function argvOf(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  } catch {
    return [];
  }
}

/** The lab's `unshare … cat` holders under this extension host, with the inits they forked. */
function labProcesses(): LabProc[] {
  const all = readdirSync('/proc').filter((n) => /^\d+$/.test(n)).map((n) => stat(Number(n))).filter((s) => s !== undefined);
  const children = new Map<number, ProcStat[]>();
  for (const s of all) children.set(s.ppid, [...(children.get(s.ppid) ?? []), s]);
  const found: LabProc[] = [];
  const walk = (pid: number): void => {
    for (const c of children.get(pid) ?? []) {
      const argv = argvOf(c.pid);
      if (argv[0]?.endsWith('unshare') && argv.at(-1) === 'cat') {
        found.push({ pid: c.pid, start: c.start, argv: argv.join(' ') });
        for (const init of children.get(c.pid) ?? []) found.push({ pid: init.pid, start: init.start, argv: argvOf(init.pid).join(' ') });
      } else {
        walk(c.pid);
      }
    }
  };
  walk(process.pid);
  return found;
}

/** What is still running of `seen`, and any lab process started since. */
function survivors(seen: readonly LabProc[]): string[] {
  const alive = seen.filter((p) => {
    const s = stat(p.pid);
    return s !== undefined && s.start === p.start && s.state !== 'Z';
  });
  const fresh = labProcesses().filter((p) => !alive.some((a) => a.pid === p.pid));
  return [...alive, ...fresh].map((p) => `${p.pid} ${p.argv}`);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
