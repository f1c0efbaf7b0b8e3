import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { CATALOG } from '../../src/lab/scenarios';

export const ROOT = resolve(__dirname, '..', '..');
export const isRoot = process.getuid?.() === 0;
/** The unprivileged user the rootless tests run as (created by the test set-up when root). */
export const TEST_USER = 'tcplab-test';

/** Creates the unprivileged test user, with sub-id ranges (useradd writes /etc/subuid). */
export function ensureTestUser(): void {
  if (spawnSync('id', [TEST_USER]).status === 0) return;
  execFileSync('useradd', ['--create-home', '--shell', '/bin/sh', TEST_USER], { stdio: 'inherit' });
}

let staged: string | undefined;

/**
 * The package as installed: dist/, samples/ and node-pty in a folder every user can read, so
 * the unprivileged user runs exactly what a user would, wherever this checkout lives.
 */
export function stagedInstall(): string {
  if (staged) return staged;
  if (!existsSync(join(ROOT, 'dist', 'cli.js'))) throw new Error('dist/cli.js is missing: run npm run build first');
  const dir = mkdtempSync(join(tmpdir(), 'tcplab-install-'));
  for (const part of ['package.json', 'dist', 'samples', 'node_modules/node-pty']) {
    cpSync(join(ROOT, part), join(dir, part), { recursive: true });
  }
  execFileSync('chmod', ['-R', 'a+rX', dir]);
  chmodSync(dir, 0o755);
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  return (staged = dir);
}

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The test user's uid and gid. */
export function testUserIds(): { uid: number; gid: number } {
  const id = (flag: string) => Number(execFileSync('id', [flag, TEST_USER], { encoding: 'utf8' }).trim());
  return { uid: id('-u'), gid: id('-g') };
}

/**
 * The argv prefix that runs what follows as the test user, with a clean environment. setpriv
 * execs in place (no fork), so the pid we get is the program's own, for kill -9 tests.
 */
export function asTestUser(): string[] {
  const { uid, gid } = testUserIds();
  return ['setpriv', `--reuid=${uid}`, `--regid=${gid}`, '--init-groups', '--reset-env', '--'];
}

/** The argv that runs tcp-lab, as this user or (when root) as the unprivileged test user. */
export function cliArgv(args: readonly string[], as: 'self' | 'user'): string[] {
  if (as === 'self') return [process.execPath, join(ROOT, 'dist', 'cli.js'), ...args];
  return [...asTestUser(), process.execPath, join(stagedInstall(), 'dist', 'cli.js'), ...args];
}

export function spawnCli(args: readonly string[], as: 'self' | 'user'): ChildProcess {
  const argv = cliArgv(args, as);
  return spawn(argv[0]!, argv.slice(1), {
    cwd: as === 'user' ? '/' : ROOT,
    env: { ...process.env, PATH: `${process.env.PATH ?? ''}:/usr/sbin:/sbin` },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

export function runCli(args: readonly string[], as: 'self' | 'user' = 'self'): Promise<CliRun> {
  return new Promise((resolveRun) => {
    const child = spawnCli(args, as);
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('close', (code) => resolveRun({ code, stdout, stderr }));
  });
}

/** A `tcp-lab run ... --json --events FILE`: its results, the event stream, the summary line. */
export interface JsonRun<R, E> extends CliRun {
  results: R[];
  events: E[];
  summary: string;
}

/**
 * Runs `tcp-lab run ARGS --json --events FILE` as `as` (the events written in a folder the
 * test user may write to) and reads back both. Fails the test when no JSON came.
 */
export async function runJson<R, E>(args: readonly string[], as: 'self' | 'user'): Promise<JsonRun<R, E>> {
  const dir = mkdtempSync(join(tmpdir(), 'tcplab-events-'));
  chmodSync(dir, 0o777);
  const file = join(dir, 'events.jsonl');
  try {
    const run = await runCli(['run', ...args, '--json', '--events', file], as);
    const summary = run.stderr.split('\n').find((l) => l.startsWith('tcp-lab:')) ?? run.stderr.slice(-500);
    let results: R[];
    try {
      results = JSON.parse(run.stdout) as R[];
    } catch {
      throw new Error(`tcp-lab printed no JSON (exit ${run.code}): ${run.stderr.slice(-2000)}`);
    }
    const text = existsSync(file) ? readFileSync(file, 'utf8').trim() : '';
    const events = text ? text.split('\n').map((l) => JSON.parse(l) as E) : [];
    return { ...run, results, events, summary };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Every bridge and veth name the catalog's topologies make. */
const LAB_LINKS = new Set(CATALOG.flatMap((s) => !s.topology ? [] : [
  ...s.topology.nets.map((n) => `br-${n.name}`),
  ...s.topology.hosts.flatMap((h) => h.links.map((l) => `${h.name}-${l.net}`)),
]));

/**
 * What a lab run could leave on this machine: processes (the namespace's init, nsenter, the
 * samples), named network namespaces, host firewall lines that mention the lab, run folders.
 */
export function leftovers(): string[] {
  const found: string[] = [];
  const ps = execFileSync('ps', ['-eo', 'pid=,stat=,args='], { encoding: 'utf8' });
  for (const line of ps.split('\n')) {
    if (/ Z/.test(line.slice(0, 16))) continue; // zombies are gone already, awaiting a reaper
    // The samples, the namespaces' holders, nsenter, and the real programs scenarios run:
    // nginx (its prefix in a lab run folder) and curl (to a lab address).
    if (/samples\/python\/|unshare .*--net .*cat$|nsenter --target \d+|nginx -p \S*tcp-lab-|curl .*\b198\.1[89]\./.test(line)) found.push(`process: ${line.trim()}`);
  }
  const netns = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout.trim();
  if (netns) found.push(`ip netns: ${netns}`);
  // The topologies' bridges and veths live in the labs' own namespaces: on the host, never.
  const links = spawnSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' }).stdout;
  for (const l of links.split('\n')) {
    const name = /^\d+: ([^:@]+)/.exec(l)?.[1];
    if (name && LAB_LINKS.has(name)) found.push(`link: ${l.trim().slice(0, 120)}`);
  }
  if (isRoot) {
    const rules = `${spawnSync('iptables', ['-S'], { encoding: 'utf8' }).stdout}\n${spawnSync('nft', ['list', 'ruleset'], { encoding: 'utf8' }).stdout}`;
    for (const l of rules.split('\n')) if (/tcp-?lab/i.test(l)) found.push(`host rule: ${l.trim()}`);
  }
  return found;
}

/** Waits until `leftovers()` is empty or the time is up, and returns what is still there. */
export async function settledLeftovers(ms = 3000): Promise<string[]> {
  const end = Date.now() + ms;
  let left = leftovers();
  while (left.length && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 100));
    left = leftovers();
  }
  return left;
}
