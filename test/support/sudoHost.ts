/**
 * The real world test/sudo.test.ts needs: sudo installed, the unprivileged test user with a
 * password and a sudoers rule, the driver (the editor's stand-in) run as that user, a user
 * namespace that forbids further ones (a host like Ubuntu's AppArmor default), and scans for
 * a secret in every process's argv and environment and in files.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, lstatSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as esbuild from 'esbuild';
import { asTestUser, ROOT, stagedInstall, TEST_USER } from './lab';

export const DROP_IN = '/etc/sudoers.d/tcplab-test';

export function hasSudo(): boolean {
  return spawnSync('sudo', ['-V'], { stdio: 'ignore' }).status === 0;
}

/** apt-get install sudo (root only), with an update first when the package lists are stale. */
export function installSudo(): void {
  if (hasSudo()) return;
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  if (spawnSync('apt-get', ['install', '-y', 'sudo'], { env, stdio: 'ignore' }).status !== 0) {
    spawnSync('apt-get', ['update'], { env, stdio: 'ignore' });
    spawnSync('apt-get', ['install', '-y', 'sudo'], { env, stdio: 'ignore' });
  }
  if (!hasSudo()) throw new Error('sudo is missing and apt-get install -y sudo did not install it');
}

/** Sets the test user's password through chpasswd's stdin; returns the shadow field it had. */
export function setPassword(password: string): string {
  const before = execFileSync('getent', ['shadow', TEST_USER], { encoding: 'utf8' }).split(':')[1] ?? '!';
  execFileSync('chpasswd', { input: `${TEST_USER}:${password}\n` });
  return before;
}

/** Puts the shadow field back (a hash or `!`: not the password). */
export function restorePassword(field: string): void {
  execFileSync('usermod', ['-p', field, TEST_USER]);
}

export function writeSudoers(rule: string): void {
  writeFileSync(DROP_IN, `${rule}\n`, { mode: 0o440 });
  chmodSync(DROP_IN, 0o440);
  execFileSync('visudo', ['-cf', DROP_IN], { stdio: 'ignore' });
}

/** The helper and the driver, bundled from the current sources into the staged install. */
export async function stageBundles(): Promise<{ helper: string; driver: string }> {
  const dir = stagedInstall();
  const common: esbuild.BuildOptions = { bundle: true, platform: 'node', target: 'node20', format: 'cjs', external: ['node-pty'], logLevel: 'warning' };
  const helper = join(dir, 'dist', 'lab-helper.js');
  const driver = join(dir, 'dist', 'sudo-driver.js');
  await esbuild.build({ ...common, entryPoints: [join(ROOT, 'src', 'labHelper.ts')], outfile: helper });
  await esbuild.build({ ...common, entryPoints: [join(ROOT, 'test', 'support', 'sudoDriver.ts')], outfile: driver });
  for (const f of [helper, driver]) chmodSync(f, 0o644);
  return { helper, driver };
}

export type Said = Record<string, unknown> & { type: string };

/** The driver run as the test user (setpriv execs in place: the pid is the driver's own). */
export class Driver {
  /** Every driver started, so that a failed test leaves none running (it would hold the runner). */
  static readonly started = new Set<ChildProcess>();
  readonly child: ChildProcess;
  readonly said: Said[] = [];
  stdout = '';
  stderr = '';
  private taken = 0;

  constructor(driverJs: string, args: readonly string[], prefix: readonly string[] = []) {
    const argv = [...prefix, ...asTestUser(), process.execPath, driverJs, ...args];
    this.child = spawn(argv[0]!, argv.slice(1), { cwd: '/', stdio: ['pipe', 'pipe', 'pipe'] });
    Driver.started.add(this.child);
    let partial = '';
    this.child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      this.stdout += d;
      const lines = (partial + d).split('\n');
      partial = lines.pop()!;
      for (const l of lines) if (l.trim()) this.said.push(JSON.parse(l) as Said);
    });
    this.child.stderr!.setEncoding('utf8').on('data', (d: string) => (this.stderr += d));
  }

  send(line: string): void {
    this.child.stdin!.write(`${line}\n`);
  }

  /** The next message of one of `types`, in order. */
  async next(types: readonly string[], ms = 30_000): Promise<Said> {
    const end = Date.now() + ms;
    for (;;) {
      const i = this.said.findIndex((m, k) => k >= this.taken && types.includes(m.type));
      if (i >= 0) {
        this.taken = i + 1;
        return this.said[i]!;
      }
      if (Date.now() > end || (this.child.exitCode !== null && this.said.length <= this.taken)) {
        throw new Error(`no ${types.join('/')} from the driver (exit ${this.child.exitCode}): ${this.stdout.slice(-1500)} ${this.stderr.slice(-1500)}`);
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  static killAll(): void {
    for (const c of Driver.started) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  }

  exited(): Promise<number | null> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return Promise.resolve(this.child.exitCode);
    return new Promise((resolve) => this.child.once('exit', (code) => resolve(code)));
  }
}

/**
 * A user namespace (identity-mapped, so every uid and sudo's setuid work as on the host) in
 * which no further user namespace may be made: the rootless sandbox fails there as on a host
 * that forbids unprivileged user namespaces. The limit is per namespace; the host keeps its own.
 */
export class NoUserNamespaces {
  private constructor(private readonly holder: ChildProcess, readonly pid: number) {}

  static async start(): Promise<NoUserNamespaces> {
    const holder = spawn('unshare', ['--user', 'sleep', '3600'], { stdio: 'ignore' });
    const pid = holder.pid!;
    const mine = readlinkSync('/proc/self/ns/user');
    for (let i = 0; i < 100 && readlinkSync(`/proc/${pid}/ns/user`) === mine; i++) await new Promise((r) => setTimeout(r, 20));
    writeFileSync(`/proc/${pid}/uid_map`, '0 0 4294967295\n');
    writeFileSync(`/proc/${pid}/gid_map`, '0 0 4294967295\n');
    const ns = new NoUserNamespaces(holder, pid);
    execFileSync(ns.prefix()[0]!, [...ns.prefix().slice(1), 'sysctl', '-q', '-w', 'user.max_user_namespaces=0']);
    return ns;
  }

  /** Runs what follows in the namespace, still as root (then setpriv drops to the test user). */
  prefix(): string[] {
    return ['nsenter', '--target', String(this.pid), '--user', '--preserve-credentials', '--'];
  }

  dispose(): void {
    this.holder.kill('SIGKILL');
  }
}

/** Every process's argv and environment that holds `secret`; and how many processes were read. */
export function processLeaks(secret: string): { leaks: string[]; read: Set<number> } {
  const leaks: string[] = [];
  const read = new Set<number>();
  for (const pid of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    for (const part of ['cmdline', 'environ']) {
      try {
        if (readFileSync(`/proc/${pid}/${part}`).includes(secret)) leaks.push(`/proc/${pid}/${part}`);
        read.add(Number(pid));
      } catch { /* exited meanwhile */ }
    }
  }
  return { leaks, read };
}

/**
 * Regular files under `dirs` that hold `secret`: all of them under `always`, those changed
 * since `since` (ms) elsewhere. Returns the leaks and the files read.
 */
export function fileLeaks(secret: string, since: number, dirs: readonly string[], always: readonly string[]): { leaks: string[]; files: string[] } {
  const leaks: string[] = [];
  const files: string[] = [];
  const walk = (path: string, all: boolean) => {
    let st;
    try { st = lstatSync(path); } catch { return; }
    if (st.isDirectory()) {
      let names: string[] = [];
      try { names = readdirSync(path); } catch { return; }
      for (const n of names) walk(join(path, n), all);
    } else if (st.isFile() && st.size < 64 * 1024 * 1024 && (all || st.mtimeMs >= since || st.ctimeMs >= since)) {
      try {
        if (readFileSync(path).includes(secret)) leaks.push(path);
        files.push(path);
      } catch { /* removed meanwhile */ }
    }
  };
  for (const d of always) walk(d, true);
  for (const d of dirs) walk(d, false);
  return { leaks, files };
}

/** The process and its ancestors up to (not including) `stop`: the editor, sudo, the helper. */
export function ancestry(pid: number, stop: number): number[] {
  const chain: number[] = [];
  for (let p = pid; p > 1 && p !== stop && chain.length < 16;) {
    chain.push(p);
    try {
      p = Number(readFileSync(`/proc/${p}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ')[1]);
    } catch {
      break;
    }
  }
  return chain;
}

/** Every process below `pid` now (the helper's: the namespace's init, nsenter, the programs). */
export function descendants(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    try {
      const ppid = Number(readFileSync(`/proc/${name}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(name)]);
    } catch { /* exited meanwhile */ }
  }
  const out: number[] = [];
  const walk = (p: number) => { for (const c of children.get(p) ?? []) { out.push(c); walk(c); } };
  walk(pid);
  return out;
}

export function alive(pid: number): boolean {
  try {
    const state = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '')[0];
    return state !== 'Z';
  } catch {
    return false;
  }
}

export function uidOf(pid: number): number {
  return Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
}
