/**
 * One read of `ss -tanoiep` for a live view: the text exactly as ss printed it, for a person who
 * reads ss as in a terminal, and the same text parsed, for a table beside it. Three targets: the
 * lab's namespace (everything in it), a port of this host (ss's own filter), or a process of this
 * host and its children (their sockets, found by inode).
 *
 * It only reads. Every command is an argv (no shell) built from range-checked numbers.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { monotonic } from './clock';
import { LabError } from './errors';
import { hostExec, type Exec } from './exec';
import { quoteArg, type Logger } from './log';
import { enterLab, type LabHandle } from './nsEnter';
import { connectionKey, parseSs, type SsSocket } from './ss';
import { processTree } from './watch';

export type SocketViewTarget =
  | { kind: 'lab'; lab: LabHandle }
  | { kind: 'port'; port: number }
  | { kind: 'pid'; pid: number };

export interface ReadSocketsOptions {
  log: Logger;
  /** Runs an argv; this host's by default (the lab target builds its own nsenter argv). */
  exec?: Exec;
  timeoutMs?: number;
  /**
   * Following a process: the connections it has held, kept by the caller from one read to the
   * next, so a socket its owner let go of (TIME-WAIT has no owner) stays in view.
   */
  owned?: Set<string>;
}

export interface SocketReading {
  /** What ss printed, header line included; for a process, the header and its sockets' records. */
  raw: string;
  rows: SsSocket[];
  /** Command, parse and selection, in ms. */
  tookMs: number;
  /** What ran. */
  argv: string[];
  /** Where the sockets are, as a person says it. */
  where: string;
  /** ss's own warnings (stderr), each distinct line once, or ''. */
  warnings: string;
}

/** t: TCP, a: all states, n: numeric, o: timers, i: TCP info, e: uid/inode/cookie, p: processes. */
export const SS_FLAGS = '-tanoiep';

/** The argv that lists a port's sockets, either end: ss's filter, one word per argument. */
export function portArgv(port: number): string[] {
  checkNumber(port, 'port', 1, 65_535);
  // An empty or zero port would be `sport = :`, which ss reads as "any port": hence the check.
  return ['ss', SS_FLAGS, '(', 'sport', '=', `:${port}`, 'or', 'dport', '=', `:${port}`, ')'];
}

export async function readSockets(target: SocketViewTarget, options: ReadSocketsOptions): Promise<SocketReading> {
  const exec = options.exec ?? hostExec(options.log, 'sockets');
  const t0 = monotonic();
  let argv: string[];
  let where: string;
  let pick: Picker | null = null;
  switch (target.kind) {
    case 'lab':
      argv = enterLab(target.lab, ['ss', SS_FLAGS]);
      where = `inside the lab (${target.lab.mode}, namespace init pid ${target.lab.pid}; pids as the lab sees them)`;
      break;
    case 'port':
      argv = portArgv(target.port);
      where = `this host, port ${target.port} at either end`;
      break;
    case 'pid': {
      const p = processSockets(target.pid, options.owned ?? new Set());
      argv = p.argv;
      where = p.where;
      pick = p.pick;
      break;
    }
    default:
      throw new LabError('unknown target', { field: 'target', value: target satisfies never });
  }
  if (target.kind === 'lab' && target.lab.hosts?.length) return readHosts(target.lab, exec, options, t0);
  const out = await exec(argv, { timeoutMs: options.timeoutMs ?? 5000 });
  const { raw, rows } = pick ? pick(out.stdout) : { raw: out.stdout, rows: parseSs(out.stdout).sockets };
  return { raw, rows, tookMs: (monotonic() - t0) * 1000, argv, where, warnings: distinctLines(out.stderr) };
}

/**
 * A lab of several hosts: ss in each host's namespace, one after the other, each block headed
 * by the host's name as `ip netns exec NAME ss` would be run by hand.
 */
async function readHosts(lab: LabHandle, exec: Exec, options: ReadSocketsOptions, t0: number): Promise<SocketReading> {
  const hosts = lab.hosts ?? [];
  const argvs = hosts.map((host) => enterLab({ mode: lab.mode, pid: host.pid }, ['ss', SS_FLAGS]));
  // The hosts side by side; their blocks in the topology's order.
  const outs = await Promise.all(argvs.map((argv) => exec(argv, { timeoutMs: options.timeoutMs ?? 5000 })));
  return {
    raw: `${outs.map((out, i) => `# host ${hosts[i]!.name}\n${out.stdout.trimEnd()}`).join('\n\n')}\n`,
    rows: outs.flatMap((out) => parseSs(out.stdout).sockets),
    tookMs: (monotonic() - t0) * 1000,
    argv: argvs[0] ?? [],
    where: `inside the lab's ${hosts.length} hosts (${hosts.map((h) => h.name).join(', ')}; ${lab.mode}), one ss per host`,
    warnings: distinctLines(outs.map((out) => out.stderr).join('\n')),
  };
}

/** An argv as a person would paste it into a terminal. */
export function commandLine(argv: readonly string[]): string {
  return argv.map(quoteArg).join(' ');
}

type Picker = (stdout: string) => { raw: string; rows: SsSocket[] };

/**
 * A process and its children: their socket inodes from /proc/<pid>/fd (readable for our own
 * processes, so no privilege is needed, unlike `ss -p` for other users'), and the argv that
 * lists the network namespace they live in. Read at each call, so new children and sockets
 * are found.
 */
function processSockets(pid: number, owned: Set<string>): { argv: string[]; where: string; pick: Picker } {
  checkNumber(pid, 'pid', 1, 4_194_304);
  const name = comm(pid);
  if (name === null) throw new LabError(`no process ${pid} on this host`, { field: 'pid', value: pid, hint: 'it may have exited; name a running process' });
  const tree = processTree(pid);
  const inodes = new Set<number>();
  let unreadable = 0;
  for (const p of tree) {
    const found = socketInodes(p);
    if (found === null) unreadable++;
    else for (const i of found) inodes.add(i);
  }
  if (unreadable === tree.size) {
    throw new LabError(`cannot read the open files of process ${pid} (${name}): it belongs to another user`, {
      field: 'pid', value: pid, hint: 'name one of your own processes, or run the editor as that user or as root',
    });
  }
  let argv = ['ss', SS_FLAGS];
  const children = tree.size - 1;
  let where = `this host, process ${pid} (${name})${children ? ` and its ${children} descendant${children > 1 ? 's' : ''}` : ''}`;
  // A process in another network namespace (a lab's, a container's) has its sockets there:
  // enter that namespace only (this host's /proc then still names the processes).
  const theirs = nsOf(pid, 'net');
  if (theirs !== null && theirs !== nsOf('self', 'net')) {
    const ownUser = nsOf('self', 'user') === nsOf(pid, 'user') || process.getuid?.() === 0;
    argv = ['nsenter', '--target', String(pid), ...(ownUser ? [] : ['--user', '--preserve-credentials']), '--net', '--', ...argv];
    where += ', in its own network namespace';
  }
  const pick: Picker = (stdout) => {
    const records = splitRecords(stdout);
    const rows: SsSocket[] = [];
    const kept: string[] = [];
    const present = new Set<string>();
    records.sockets.forEach((s, i) => {
      if (s === null) return;
      const key = connectionKey(s);
      present.add(key);
      const ours = (s.inode !== null && s.inode !== 0 && inodes.has(s.inode)) || s.processes.some((p) => tree.has(p.pid));
      if (ours) owned.add(key);
      else if (!owned.has(key)) return;
      rows.push(s);
      kept.push(records.texts[i]!);
    });
    // A connection gone from the table is forgotten: its tuple may come back as someone else's.
    for (const key of owned) if (!present.has(key)) owned.delete(key);
    return { raw: records.header + kept.join(''), rows };
  };
  return { argv, where, pick };
}

/**
 * ss's output cut into records: the header line, then one record per socket (its own line and
 * the -i lines after it, which start with a tab), each exactly as printed, with its socket.
 */
export function splitRecords(text: string): { header: string; texts: string[]; sockets: (SsSocket | null)[] } {
  const lines = text.match(/[^\n]*\n|[^\n]+$/g) ?? [];
  let header = '';
  if (lines.length && lines[0]!.startsWith('State')) header = lines.shift()!;
  const texts: string[] = [];
  for (const line of lines) {
    const continued = line.startsWith('\t') || line.startsWith(' ');
    if (continued && texts.length) texts[texts.length - 1] += line;
    else texts.push(line);
  }
  // One parse of the whole text is the fast path; a record the parser refused shifts the
  // order, so then each record is parsed on its own and a refused one stays out of the table.
  const all = parseSs(text);
  const sockets: (SsSocket | null)[] = all.rejected.length === 0 && all.sockets.length === texts.length
    ? all.sockets
    : texts.map((t) => parseSs(t).sockets[0] ?? null);
  return { header, texts, sockets };
}

/** The inodes of the sockets `pid` has open; null when its fds are not ours to read. */
function socketInodes(pid: number): number[] | null {
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return null;
  }
  const out: number[] = [];
  for (const fd of fds) {
    let link: string;
    try {
      link = readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue; // closed meanwhile
    }
    if (link.startsWith('socket:[')) out.push(Number(link.slice(8, -1)));
  }
  return out;
}

/** The process's name as ss prints it (its comm, readable for anyone's process); null when there is none. */
function comm(pid: number): string | null {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return null;
  }
}

/** `net:[4026531840]`; null when unreadable (another user's process). */
function nsOf(pid: number | 'self', ns: 'net' | 'user'): string | null {
  try {
    return readlinkSync(`/proc/${pid}/ns/${ns}`);
  } catch {
    return null;
  }
}

function distinctLines(text: string): string {
  const counts = new Map<string, number>();
  for (const l of text.split('\n')) if (l.trim()) counts.set(l.trim(), (counts.get(l.trim()) ?? 0) + 1);
  return [...counts].map(([l, n]) => (n > 1 ? `${l} (${n} times)` : l)).join('\n');
}

function checkNumber(n: number, field: string, min: number, max: number): void {
  if (!Number.isInteger(n) || n < min || n > max) throw new LabError(`${field} must be a whole number from ${min} to ${max}`, { field, value: n });
}
