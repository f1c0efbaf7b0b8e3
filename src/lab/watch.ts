import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { constants } from 'node:os';
import { monotonic, sleep } from './clock';
import { hostExec, labEnv } from './exec';
import { LabError } from './errors';
import type { Logger } from './log';
import { SocketMonitor } from './monitor';
import { connectionKey, type SsSocket } from './ss';
import type { TimelineEvent } from './timeline';

/**
 * `tcp-lab watch`: the sockets of a port, or of a command and its children, followed live on
 * this host, one line per transition. It only reads (`ss`), so it needs no privilege for the
 * user's own processes; it changes nothing on the host.
 */
export interface WatchOptions {
  port?: number;
  /** Run this argv and follow the sockets its process tree owns, until it exits. */
  command?: readonly string[];
  interval: number;
  tool: 'auto' | 'ss' | 'netstat';
  json: boolean;
  /** Stop after this many seconds (default: on Ctrl-C, or when the command exits). */
  seconds?: number;
  log: Logger;
  write: (line: string) => void;
  signal: AbortSignal;
}

/** Every process under `root` (included), from /proc's parent links. */
export function processTree(root: number, proc = '/proc'): Set<number> {
  const children = new Map<number, number[]>();
  let entries: string[] = [];
  try {
    entries = readdirSync(proc);
  } catch {
    return new Set([root]);
  }
  for (const name of entries) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = readFileSync(`${proc}/${name}/stat`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    // `pid (comm) state ppid ...`: comm may hold spaces and parentheses, so read after the last ')'.
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (!Number.isInteger(ppid)) continue;
    const list = children.get(ppid) ?? [];
    list.push(Number(name));
    children.set(ppid, list);
  }
  const out = new Set<number>([root]);
  const todo = [root];
  while (todo.length) for (const c of children.get(todo.pop()!) ?? []) if (!out.has(c)) out.add(c), todo.push(c);
  return out;
}

function timerText(t: unknown): string {
  if (!t || typeof t !== 'object') return '';
  const { kind, ms, count } = t as { kind: string; ms: number; count: number };
  return ` timer:${kind} ${ms >= 1000 ? `${(ms / 1000).toFixed(1)}s` : `${ms}ms`} #${count}`;
}

/** One transition as a line: `+1.204 s  timer   127.0.0.1:47062>127.0.0.1:7000  SYN-SENT timer:on 2.0s #1`. */
export function formatTransition(e: TimelineEvent, t0: number): string {
  const what = e.type === 'state' ? `${e.from} -> ${e.state}` : String(e.state);
  const extra = e.type === 'retrans' ? ` retrans ${e.retrans ?? '?'}/${e.total}${e.rto ? ` rto ${e.rto}ms` : ''}` : '';
  const owners = Array.isArray(e.owners) ? ` ${e.owners.join(',')}` : '';
  const q = e.recvQ || e.sendQ ? ` q ${e.recvQ}/${e.sendQ}` : '';
  return `+${(e.t - t0).toFixed(3).padStart(8)} s  ${e.type.padEnd(7)} ${String(e.conn).padEnd(44)} ${what}${e.type === 'gone' ? '' : timerText(e.timer)}${extra}${q}${owners}`;
}

export async function watchSockets(o: WatchOptions): Promise<number> {
  if (o.port === undefined && !o.command) throw new LabError('watch needs --port N or a command after --', { hint: 'tcp-lab watch --port 7000, or tcp-lab watch -- curl http://127.0.0.1:7000/' });
  const t0 = monotonic();
  let child: ChildProcess | undefined;
  let exitCode: number | null = null;
  let exited: Promise<void> | undefined;
  // Sockets the command owned once stay followed after their owner lets go (TIME-WAIT has no owner).
  const ours = new Set<string>();
  let tree = new Set<number>();
  const selected = (s: SsSocket): boolean => {
    if (o.port !== undefined && s.local.port !== o.port && s.peer.port !== o.port) return false;
    // Following a command: nothing but its sockets, none before it has started.
    if (!o.command) return true;
    const key = connectionKey(s);
    if (s.processes.some((p) => tree.has(p.pid))) ours.add(key);
    return ours.has(key);
  };
  const monitor = new SocketMonitor({
    exec: hostExec(o.log, 'watch'),
    log: o.log,
    interval: o.interval,
    processes: o.command !== undefined,
    tool: o.tool,
    select: selected,
    beforePoll: () => { if (child?.pid) tree = processTree(child.pid); },
    onEvent: (e) => o.write(o.json ? JSON.stringify(e) : formatTransition(e, t0)),
  });
  if (monitor.note) o.log.warn(monitor.note);
  const what = o.command ? `the sockets of ${o.command.join(' ').slice(0, 80)}` : `port ${o.port}`;
  if (!o.json) o.write(`watching ${what} with ${monitor.tool} every ${o.interval} ms${o.seconds ? ` for ${o.seconds} s` : ', Ctrl-C to stop'}`);
  await monitor.poll();
  monitor.start();
  if (o.command) {
    child = spawn(o.command[0]!, o.command.slice(1), { stdio: ['inherit', 'inherit', 'inherit'], env: labEnv() });
    exited = new Promise((resolve) => {
      child!.once('error', (e: NodeJS.ErrnoException) => {
        o.log.error(e.code === 'ENOENT' ? `command not found: ${o.command![0]}` : e.message);
        exitCode = 127;
        resolve();
      });
      child!.once('exit', (code, signal) => {
        // As a shell says it: 128 + the signal's number (143 for SIGTERM).
        exitCode = code ?? (signal ? 128 + (constants.signals[signal] ?? 0) : 1);
        resolve();
      });
    });
  }
  const deadline = o.seconds ? sleep(o.seconds * 1000, o.signal) : new Promise<void>((r) => o.signal.addEventListener('abort', () => r(), { once: true }));
  await Promise.race([deadline, ...(exited ? [exited] : [])]);
  if (child && exitCode === null) child.kill('SIGTERM');
  await exited;
  await monitor.stop(true);
  if (!o.json) o.write(`stopped after ${(monotonic() - t0).toFixed(1)} s: ${monitor.stats.polls} polls, slowest ${monitor.stats.maxMs.toFixed(0)} ms`);
  return exitCode ?? 0;
}
