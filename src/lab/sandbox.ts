import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import type { Readable, Writable } from 'node:stream';
import { userInfo } from 'node:os';
import { LabError } from './errors';
import { hostExec, labEnv, type Exec } from './exec';
import { enterLab } from './nsEnter';
import type { Logger } from './log';

export type SandboxMode = 'root' | 'rootless';

export interface SandboxOptions {
  log: Logger;
  /** 'auto' (the default): root when running as uid 0, rootless otherwise. */
  mode?: 'auto' | SandboxMode;
  /** Shown in logs, to tell parallel sessions apart. */
  label?: string;
}

/**
 * A private network for one lab session: new network, PID and mount namespaces (and a user
 * namespace when not root) whose PID 1 is `cat` reading a pipe this process holds.
 *
 * Nothing outlives the lab, by construction: when this process exits, however it exits
 * (kill -9 included), the pipe closes, `cat` reads EOF and exits, and the kernel kills every
 * process left in a PID namespace whose init died (pid_namespaces(7)), daemons included. The
 * network namespace, with its rules, routes and sysctls, is freed with its last process.
 * Everything the lab runs inside enters through nsenter(1).
 */
export class Sandbox {
  private closed = false;
  readonly exec: Exec;

  private constructor(
    readonly mode: SandboxMode,
    /** Host PID of the namespace's init (`cat`). */
    readonly pid: number,
    /** Whether sub-ids are mapped (`--map-auto`): tcpdump can then drop privileges inside. */
    readonly mappedSubIds: boolean,
    private readonly holder: Holder,
    private readonly log: Logger,
    readonly label: string,
  ) {
    const run = hostExec(log, label);
    this.exec = (argv, options) => run(this.enter(argv), options);
  }

  static async create(options: SandboxOptions): Promise<Sandbox> {
    const { log } = options;
    const mode = resolveMode(options.mode ?? 'auto');
    const mapAuto = mode === 'rootless' && canMapSubIds();
    const argv = [
      'unshare',
      ...(mode === 'rootless' ? ['--user', '--map-root-user', ...(mapAuto ? ['--map-auto'] : [])] : []),
      '--net', '--pid', '--fork', '--kill-child', '--mount-proc', '--mount',
      'cat',
    ];
    const label = options.label ?? 'lab';
    log.command(argv, label);
    let holder: Holder;
    try {
      holder = await startHolder(argv);
    } catch (e) {
      // A refused namespace can strand unshare's --map-auto helper, which holds our end of the
      // pipes: without this, this process could never exit (its event loop waits on them).
      killStrandedUnshares(argv);
      if (!(e instanceof HolderExit)) throw e;
      if (e.error?.code === 'ENOENT') throw new LabError('unshare is not installed', { hint: 'install it: apt-get install util-linux' });
      throw e.error ?? unshareFailure(e.code, e.stderr, mode);
    }
    const pid = initPid(holder.pid!);
    const sandbox = new Sandbox(mode, pid, mapAuto, holder, log, label);
    try {
      await sandbox.exec(['ip', 'link', 'set', 'lo', 'up']);
    } catch (e) {
      await sandbox.dispose();
      throw e;
    }
    return sandbox;
  }

  /** The argv that runs `argv` inside this sandbox, as uid 0 of its user namespace. */
  enter(argv: readonly string[]): string[] {
    if (this.closed) throw new LabError('the lab session is closed');
    return enterLab(this, argv);
  }

  get alive(): boolean {
    return !this.closed && this.holder.exitCode === null && this.holder.signalCode === null;
  }

  /** Close the pipe: init exits and takes every process, socket and rule with it. */
  async dispose(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const exited = new Promise<void>((resolve) => {
      if (this.holder.exitCode !== null || this.holder.signalCode !== null) return resolve();
      this.holder.once('exit', () => resolve());
    });
    this.holder.stdin.end();
    const timer = setTimeout(() => {
      this.log.warn(`[${this.label}] namespace init did not exit on EOF; killing it`);
      try { process.kill(this.pid, 'SIGKILL'); } catch { /* gone already */ }
    }, 2000);
    await exited;
    clearTimeout(timer);
  }
}

/** A process holding namespaces open: `cat` reading a pipe this process writes to. */
export type Holder = ChildProcessByStdio<Writable, Readable, Readable>;

/** The holder exited (or could not be spawned) before it was up: its exit code and stderr. */
export class HolderExit extends Error {
  constructor(readonly code: number | null, readonly stderr: string, readonly error?: NodeJS.ErrnoException) {
    super(error ? error.message : `exit ${code}: ${stderr.trim() || 'no message'}`);
  }
}

/**
 * Spawns a namespace holder (`... cat`, for the sandbox or one of its hosts) and resolves once
 * `cat` echoes a line back: it runs inside its new namespaces. Rejects with a HolderExit when
 * it dies first; its pipes are then closed, so nothing of it keeps this process alive.
 */
export async function startHolder(argv: readonly string[]): Promise<Holder> {
  const holder = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'], env: labEnv() });
  let stderr = '';
  holder.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
  holder.stdin.on('error', () => { /* the exit handler says why */ });
  try {
    await new Promise<void>((resolve, reject) => {
      holder.once('error', (e: NodeJS.ErrnoException) => reject(new HolderExit(null, stderr, e)));
      // 'exit' can come before the last of stderr has been read: wait for its end, briefly (a
      // stranded --map-auto helper may hold it open). Read too early, a refused namespace said
      // "no message" and was not recognised as refused.
      holder.once('exit', (code) => {
        const said = () => reject(new HolderExit(code, stderr));
        const bound = setTimeout(said, 300);
        holder.stderr.once('end', () => { clearTimeout(bound); said(); });
      });
      holder.stdout.once('data', () => resolve());
      holder.stdin.write('ready\n');
    });
  } catch (e) {
    holder.stdin.destroy();
    holder.stdout.destroy();
    holder.stderr.destroy();
    throw e;
  }
  holder.removeAllListeners('exit');
  holder.stdout.resume();
  return holder;
}

function resolveMode(mode: 'auto' | SandboxMode): SandboxMode {
  if (mode !== 'auto') {
    if (mode === 'root' && uid() !== 0) {
      throw new LabError('root mode needs uid 0', { field: 'mode', value: mode, hint: 'run as root, or use the rootless mode (the default)' });
    }
    return mode;
  }
  return uid() === 0 ? 'root' : 'rootless';
}

/** newuidmap is installed and /etc/subuid gives this user a range: `--map-auto` can work. */
function canMapSubIds(): boolean {
  if (!existsSync('/usr/bin/newuidmap') || !existsSync('/usr/bin/newgidmap')) return false;
  const name = userInfo().username;
  const has = (file: string) => {
    try {
      return readFileSync(file, 'utf8').split('\n').some((l) => {
        const who = l.split(':')[0];
        return who === name || who === String(uid());
      });
    } catch {
      return false;
    }
  };
  return has('/etc/subuid') && has('/etc/subgid');
}

/**
 * Kills what `unshare --map-auto` strands when the kernel refuses the user namespace (a host
 * that forbids them): unshare forks a helper that blocks on an eventfd until the parent has
 * unshared, then runs newuidmap for it; the parent's unshare(2) fails, it exits at once, and the
 * helper blocks forever, adopted by init (util-linux 2.38). Such a process has the lab's exact
 * argv, init as its parent and no child; a live lab's unshare has its lab as parent and its init
 * (`cat`) as child, so it never matches. Only this user's processes. Returns how many it killed.
 */
export function killStrandedUnshares(argv?: readonly string[]): number {
  const me = uid();
  let killed = 0;
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((n) => /^\d+$/.test(n));
  } catch {
    return 0;
  }
  for (const pid of pids) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').slice(0, -1);
      if (argv ? cmd.join('\0') !== argv.join('\0') : !(cmd[0] === 'unshare' && cmd.includes('--net') && cmd.at(-1) === 'cat')) continue;
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      const owner = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]);
      const ppid = Number(/^PPid:\s+(\d+)/m.exec(status)?.[1]);
      if (owner !== me || ppid !== 1 || firstChild(Number(pid)) !== undefined) continue;
      process.kill(Number(pid), 'SIGKILL');
      killed++;
    } catch {
      /* gone meanwhile, or not ours to read */
    }
  }
  return killed;
}

/** The first child of `pid` (the program nsenter or unshare forked for), if there is one yet. */
export function firstChild(pid: number): number | undefined {
  try {
    const first = Number(readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(first) && first > 0 ? first : undefined;
  } catch {
    return undefined;
  }
}

/** unshare --fork leaves exactly one child: the namespace's init. */
function initPid(unsharePid: number): number {
  const pid = firstChild(unsharePid);
  if (pid === undefined) throw new LabError(`cannot find the namespace's init under unshare (pid ${unsharePid})`);
  return pid;
}

function unshareFailure(code: number | null, stderr: string, mode: SandboxMode): LabError {
  const text = stderr.trim();
  if (mode === 'rootless' && /Operation not permitted|Permission denied|No space left/.test(text)) {
    return new LabError(`cannot create a user namespace: ${text}`, {
      hint:
        'unprivileged user namespaces are disabled on this host ' +
        '(kernel.unprivileged_userns_clone=0, user.max_user_namespaces=0, or AppArmor\'s ' +
        'kernel.apparmor_restrict_unprivileged_userns=1). Run the lab as root (sudo), or allow them: ' +
        'sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0',
    });
  }
  return new LabError(`unshare failed (exit ${code}): ${text || 'no message'}`);
}

function uid(): number {
  return process.getuid?.() ?? -1;
}
