import { open, type FileHandle } from 'node:fs/promises';
import { StringDecoder } from 'node:string_decoder';
import { monotonic } from './clock';
import { errnoName, errnoNumber } from './errno';
import { LabError } from './errors';
import { labEnv } from './exec';
import type { Logger } from './log';
import { missingTools } from './preflight';
import type { TimelineEvent } from './timeline';

/**
 * The errno of a program the lab does not control (curl, nc, the user's own client): run it
 * under strace, follow strace's output file, and turn failing socket calls into timeline events
 * shaped like the samples' own (`{type:'error', op:'connect', errno:111, name:'ECONNREFUSED'}`),
 * so the verdict judges a user's program like a sample.
 */

/**
 * What strace stops on. `execve` names the program's own pid (the first line of the file), so
 * its exit is told apart from its threads' and children's. `close` keeps the fd table honest
 * when numbers are reused. `getsockname` gives the local port when the program asks for it
 * (curl does). `rt_sigaction` tells an ignored SIGPIPE (Python, Node and Go ignore it) from a
 * fatal one: a traced process reports every signal to strace, ignored ones too. A `?` lets a
 * call this architecture lacks pass (arm64 has no poll or epoll_wait, only ppoll and
 * epoll_pwait). select/pselect6 are left out: their sets carry no error for TCP (an error
 * shows as readable or writable), and the outcome comes from the next call, which is traced.
 */
export const TRACED_SYSCALLS: readonly string[] = [
  'execve', 'socket', 'connect', 'accept', 'accept4', 'bind', 'listen', 'shutdown', 'close',
  'getsockopt', 'setsockopt', 'getsockname', 'getpeername',
  'read', 'write', 'readv', 'writev', 'recvfrom', 'sendto', 'recvmsg', 'sendmsg', '?recvmmsg', '?sendmmsg',
  '?poll', 'ppoll', '?epoll_wait', 'epoll_pwait', '?epoll_pwait2',
  'rt_sigaction',
];

/** Signals that say nothing about a connection and would flood the file (Go sends SIGURG often). */
const QUIET_SIGNALS = ['SIGCHLD', 'SIGWINCH', 'SIGURG', 'SIGALRM', 'SIGPROF', 'SIGVTALRM', 'SIGIO'];

export interface StraceArgvOptions {
  /** `--seccomp-bpf` (default on; strace >= 5.3). */
  seccompBpf?: boolean;
  /**
   * `-yy` instead of `-y`: every socket fd printed with its 4-tuple, which gives the local
   * port of every connection. Off by default for its cost, measured here (kernel 6.18, strace
   * 6.1): on a socket the kernel has not hashed (new, refused, reset, closed: the sockets a
   * failure lab is about) strace's sock_diag lookup holds the program about 1.7 ms per call
   * (a non-blocking recv went from 45 us to 1,800 us; on a connected socket 50 us either way).
   */
  decodeSockets?: boolean;
}

/**
 * The strace argv that runs `argv` and writes its trace to `outFile`:
 * - `-f` follows threads and children; with `-o` every line then starts with the thread id.
 * - `-ttt` epoch seconds with microseconds (CLOCK_REALTIME; see `clockOffset`); `-T` the time
 *   spent in the call, so an event is dated when the call returned, as the samples date theirs.
 * - `-y` prints what each fd is (`3<socket:[4711]>`, `1</dev/pts/0>`, `4<pipe:[9]>`) on every
 *   line, in every process: a socket is told from a file or a pipe, and a reused fd number
 *   from the same socket. TCP or UDP comes from the socket() call, addresses from connect(),
 *   accept() and getsockname(). (`decodeSockets` for -yy: see its cost above.)
 * - `-s 16`: data buffers are cut to 16 characters (the file stays small and little of the
 *   user's data lands in it). Not `-s 0`: it also cuts arrays, and poll's revents are one.
 * - `-q` drops "attached/detached" lines but keeps the `+++ exited with N +++` ones (`-qq` not).
 * - `--seccomp-bpf`: the program stops only on traced calls, not on every one.
 * - `-o` must be an absolute path: strace runs a command for a name starting with `|` or `!`.
 * strace must run inside the lab's namespace, as the program does (-yy asks the kernel in
 * strace's own network namespace; -y reads its /proc).
 */
export function straceArgv(outFile: string, argv: readonly string[], options: StraceArgvOptions = {}): string[] {
  if (!outFile.startsWith('/') || outFile.includes('\0')) {
    throw new LabError('the strace output file must be an absolute path', { field: 'outFile', value: outFile });
  }
  if (argv.length === 0 || argv.some((a) => typeof a !== 'string' || a.includes('\0'))) {
    throw new LabError('the traced command must be a non-empty argv of strings', { field: 'argv', value: argv });
  }
  return [
    'strace', '-f', '-q', '-ttt', '-T', options.decodeSockets ? '-yy' : '-y', '-s', '16',
    ...(options.seccompBpf === false ? [] : ['--seccomp-bpf']),
    '-o', outFile,
    '-e', `trace=${TRACED_SYSCALLS.join(',')}`,
    '-e', `signal=!${QUIET_SIGNALS.join(',')}`,
    '--', ...argv,
  ];
}

export const STRACE_MISSING =
  'strace is not installed: the errno of your own program cannot be shown; the sample programs\' own events still work';

export function straceAvailable(path = labEnv().PATH ?? ''): boolean {
  return missingTools(['strace'], path).length === 0;
}

/** The error to show (or log as a warning) when a user's program is to be traced and strace is absent. */
export function straceMissingError(): LabError {
  return new LabError(STRACE_MISSING, { field: 'tools', value: 'strace', hint: 'install it: apt-get install strace' });
}

export interface ClockOffset {
  /** CLOCK_REALTIME minus CLOCK_MONOTONIC, seconds. */
  offset: number;
  /** How far off `offset` may be, seconds. */
  error: number;
}

/**
 * REALTIME - MONOTONIC, to date strace's `-ttt` times on the lab's monotonic clock. Date.now()
 * has only millisecond steps, so one sample would be up to 1 ms off. Instead, spin until
 * Date.now() ticks to the next millisecond: at that moment REALTIME is exactly that whole
 * millisecond, and the tick happened between two monotonic readings a fraction of a
 * microsecond apart. The best of `edges` ticks is kept (a preemption widens one pair; it does
 * not fool the choice). Costs about `edges` ms of CPU. NTP slewing (<= 0.5 ms/s) drifts it
 * slowly; a clock step during a run would shift every event by the step.
 */
export function clockOffset(edges = 3): ClockOffset {
  let best: ClockOffset = { offset: Date.now() / 1000 - monotonic(), error: 1e-3 };
  let before = monotonic();
  let last = Date.now();
  const deadline = before + 0.05;
  for (let found = 0; found < edges;) {
    const a = monotonic();
    const now = Date.now();
    const b = monotonic();
    if (now !== last) {
      // The tick to `now` came after the previous Date.now() (itself after `before`) and before
      // this one (before `b`).
      const error = (b - before) / 2;
      if (now === last + 1 && error < best.error) best = { offset: now / 1000 - (before + b) / 2, error };
      found++;
      last = now;
    }
    before = a;
    if (b > deadline) break;
  }
  return best;
}

// ------------------------------------------------------------------------------------------
// Lines

/** One line of `strace -f -ttt -T` output, by shape. */
export type StraceRecord =
  | { kind: 'call'; pid: number; ts: number; name: string; args: string[]; result: CallResult }
  | { kind: 'unfinished'; pid: number; ts: number; name: string; text: string }
  | { kind: 'resumed'; pid: number; ts: number; name: string; text: string }
  | { kind: 'signal'; pid: number; ts: number; signal: string; info: string }
  | { kind: 'exit'; pid: number; ts: number; code: number | null; signal?: string };

export interface CallResult {
  /** `-1`, `0`, `3`, or `?` (the call did not return: interrupted, or the process died). */
  ret: string;
  /** The fd decoration of a returned fd (`TCP:[...]`), without the angle brackets. */
  decor?: string;
  errno?: string;
  message?: string;
  /** What strace prints after the value: poll's `[{fd=3, revents=POLLIN}]`, `Timeout`. */
  extra?: string;
  /** Seconds spent in the call (`-T`). */
  duration?: number;
}

const HEAD = /^(?:\[pid\s+(\d+)\]\s+|(\d+)\s+)?(\d+\.\d+)\s+(.*)$/s;
const RESULT = /^\s*=\s*(\?|-?\d+|0x[0-9a-fA-F]+)(?:<(.*?)>)?(?:\s+([A-Z][A-Z0-9_]+)\s+\((.*?)\))?(?:\s+\((.*)\))?(?:\s+<(\d+(?:\.\d+)?)>)?\s*$/s;

/** Parses one line; undefined for anything else (strace's own messages, garbage, a cut line). */
export function parseStraceLine(line: string): StraceRecord | undefined {
  const head = HEAD.exec(line.replace(/\r?\n$/, ''));
  if (!head) return undefined;
  const pid = Number(head[1] ?? head[2] ?? 0);
  const ts = Number(head[3]);
  const body = head[4]!;
  if (!Number.isFinite(ts)) return undefined;
  let m: RegExpExecArray | null;
  if ((m = /^\+\+\+ exited with (\d+) \+\+\+$/.exec(body))) return { kind: 'exit', pid, ts, code: Number(m[1]) };
  if ((m = /^\+\+\+ killed by (SIG[A-Z0-9+-]+)(?: \(core dumped\))? \+\+\+$/.exec(body))) return { kind: 'exit', pid, ts, code: null, signal: m[1]! };
  if ((m = /^--- (SIG[A-Z0-9+-]+) (\{.*\}) ---$/s.exec(body))) return { kind: 'signal', pid, ts, signal: m[1]!, info: m[2]! };
  if ((m = /^<\.\.\. ([a-z_0-9]+) resumed>(.*)$/s.exec(body))) return { kind: 'resumed', pid, ts, name: m[1]!, text: m[2]! };
  if ((m = /^([a-z_0-9]+)\((.*) <unfinished \.\.\.>$/s.exec(body))) return { kind: 'unfinished', pid, ts, name: m[1]!, text: m[2]! };
  if ((m = /^([a-z_0-9]+)\((.*)$/s.exec(body))) {
    const call = parseCall(m[2]!);
    return call && { kind: 'call', pid, ts, name: m[1]!, ...call };
  }
  return undefined;
}

/** `args) = result`: the top-level arguments and the result. */
function parseCall(text: string): { args: string[]; result: CallResult } | undefined {
  const scanned = splitArgs(text);
  // A real result is short (`= 1 ([{fd=3, revents=POLLIN}]) <0.5>`); a long tail is not one,
  // and the regular expression need not chew on it.
  if (!scanned || scanned.rest.length > 4096) return undefined;
  const r = RESULT.exec(scanned.rest);
  if (!r) return undefined;
  const result: CallResult = { ret: r[1]! };
  if (r[2] !== undefined) result.decor = r[2];
  if (r[3] !== undefined) { result.errno = r[3]; result.message = r[4]; }
  if (r[5] !== undefined) result.extra = r[5];
  if (r[6] !== undefined) result.duration = Number(r[6]);
  return { args: scanned.args, result };
}

/**
 * Splits `a, {b, c}, "d, e"...) = 0` at its top-level commas, up to the closing parenthesis.
 * Strings (with escapes) and fd decorations (`3<TCP:[1.2.3.4:5->6.7.8.9:10]>`, whose `->` is
 * not a bracket) are skipped whole.
 */
function splitArgs(text: string): { args: string[]; rest: string } | undefined {
  const args: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '"') {
      for (i++; i < text.length && text[i] !== '"'; i++) if (text[i] === '\\') i++;
      if (i >= text.length) return undefined;
    } else if (c === '<' && i > 0 && /\d/.test(text[i - 1]!)) {
      const end = decorEnd(text, i);
      if (end < 0) return undefined;
      i = end;
    } else if (c === '(' || c === '[' || c === '{') depth++;
    else if (c === ']' || c === '}') depth--;
    else if (c === ')') {
      if (depth === 0) {
        const last = text.slice(start, i).trim();
        if (last || args.length) args.push(last);
        return { args, rest: text.slice(i + 1) };
      }
      depth--;
    } else if (c === ',' && depth === 0) {
      args.push(text.slice(start, i).trim());
      start = i + 1;
    }
    if (depth < 0) return undefined;
  }
  return undefined;
}

/** Index of the `>` closing the decoration opened at `open`; -1 if none. */
function decorEnd(text: string, open: number): number {
  let angle = 0;
  let square = 0;
  for (let i = open; i < text.length; i++) {
    const c = text[i];
    if (c === '[') square++;
    else if (c === ']') square = Math.max(0, square - 1);
    else if (square === 0 && c === '<') angle++;
    else if (square === 0 && c === '>' && --angle === 0) return i;
  }
  return -1;
}

/** What an fd is, from its decoration. */
type FdKind = 'tcp' | 'udp' | 'other-socket' | 'socket' | 'file';

interface Decor {
  kind: FdKind;
  /** The socket's inode: tells a reused fd number from the same socket. */
  inode?: number;
  local?: string;
  peer?: string;
}

/** `socket:[123]` (-y), `TCP:[123]` or `TCP:[1.2.3.4:5->6.7.8.9:10]` (-yy), `/path`, `pipe:[4]`. */
function parseDecor(decor: string): Decor {
  const m = /^([A-Za-z][\w-]*):\[(.*)\]$/s.exec(decor);
  if (!m) return { kind: 'file' };
  const [, family, inner] = m;
  const inode = /^\d+$/.test(inner!) ? Number(inner) : undefined;
  if (family === 'socket') return { kind: 'socket', inode };
  if (!/^[A-Z]/.test(family!)) return { kind: 'file' }; // pipe:[..], anon_inode:[eventpoll]
  const kind: FdKind = /^TCP(v6)?$/.test(family!) ? 'tcp' : /^UDP(v6)?$/.test(family!) ? 'udp' : 'other-socket';
  if (kind === 'other-socket' || inode !== undefined) return { kind, inode };
  const arrow = inner!.indexOf('->');
  if (arrow >= 0) return { kind, local: inner!.slice(0, arrow), peer: inner!.slice(arrow + 2) };
  return { kind, local: inner };
}

/** `3<TCP:[...]>` -> fd 3 and what it is. */
function parseFdArg(arg: string | undefined): { fd: number; decor?: Decor } | undefined {
  if (arg === undefined) return undefined;
  const m = /^(-?\d+)(?:<(.*)>)?$/s.exec(arg);
  if (!m) return undefined;
  return { fd: Number(m[1]), decor: m[2] === undefined ? undefined : parseDecor(m[2]) };
}

/** The address of a sockaddr argument: `127.0.0.1:7000`, `[::1]:7000`; family only for others. */
export function parseSockaddr(arg: string | undefined): { family: string; address?: string } | undefined {
  if (!arg) return undefined;
  const family = /sa_family=(AF_\w+)/.exec(arg)?.[1];
  if (!family) return undefined;
  const port = /sin6?_port=htons\((\d+)\)/.exec(arg)?.[1];
  if (family === 'AF_INET') {
    const addr = /sin_addr=inet_addr\("([\d.]+)"\)/.exec(arg)?.[1];
    return addr && port ? { family, address: `${addr}:${port}` } : { family };
  }
  if (family === 'AF_INET6') {
    const addr = /inet_pton\(AF_INET6, "([0-9a-fA-F:.]+)"/.exec(arg)?.[1];
    return addr && port ? { family, address: `[${addr}]:${port}` } : { family };
  }
  return { family };
}

// ------------------------------------------------------------------------------------------
// Events

/** The lab's name for a call, as the samples name their ops (libc's recv() is recvfrom(2)...). */
const OP: Readonly<Record<string, string>> = {
  read: 'recv', readv: 'recv', recvfrom: 'recv', recvmsg: 'recv', recvmmsg: 'recv',
  write: 'send', writev: 'send', sendto: 'send', sendmsg: 'send', sendmmsg: 'send',
  accept4: 'accept', poll: 'poll', ppoll: 'poll', epoll_wait: 'poll', epoll_pwait: 'poll', epoll_pwait2: 'poll',
};
const opOf = (name: string) => OP[name] ?? name;

const RECV = new Set(['read', 'readv', 'recvfrom', 'recvmsg', 'recvmmsg']);
const SEND = new Set(['write', 'writev', 'sendto', 'sendmsg', 'sendmmsg']);
/** Not failures: try again later (EAGAIN), or a signal came and the call will be redone. */
const RETRY = new Set(['EAGAIN', 'EWOULDBLOCK', 'EINTR', 'ERESTARTSYS', 'ERESTARTNOINTR', 'ERESTARTNOHAND', 'ERESTART_RESTARTBLOCK']);
/** Errnos that only a network socket gives: reported even on an fd whose kind is unknown. */
const NETWORK = new Set(['ECONNRESET', 'ECONNREFUSED', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNABORTED', 'ENOTCONN', 'ENETDOWN', 'EHOSTDOWN', 'ENETRESET']);
/** How a non-blocking connect that failed shows in the next read or write. */
const CONNECT_FAILURE = new Set(['ECONNREFUSED', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN', 'ENETDOWN']);
const POLL_ALARM = ['POLLERR', 'POLLHUP', 'POLLRDHUP', 'POLLNVAL'];
/**
 * A non-blocking call fails with EINPROGRESS or EAGAIN in microseconds. One that took this
 * long was a blocking call whose SO_SNDTIMEO/SO_RCVTIMEO expired: a real failure (the samples
 * report it as one). Those timeouts are set in whole jiffies and in practice far longer.
 */
const BLOCKED_CALL = 0.02;

interface SocketState {
  kind: FdKind;
  inode?: number;
  local?: string;
  peer?: string;
  /** EINPROGRESS seen; the outcome (SO_ERROR, or the next read/write) not yet. */
  connecting?: boolean;
  eof?: boolean;
  revents?: string;
}

export interface StraceStats {
  lines: number;
  /** Lines of no known shape (strace's own messages, a cut line). */
  unparsed: number;
  events: number;
  /** EAGAIN/EWOULDBLOCK from non-blocking calls: normal, counted, not reported. */
  wouldBlock: number;
  /** EINTR/ERESTART*: a signal interrupted a call (it is usually redone). */
  interrupted: number;
  /** A `<... resumed>` whose start was not seen. */
  orphanResumed: number;
  /** Exits of threads and child processes (only the program's own exit is an event). */
  otherExits: number;
  /** Signals the program ignores (SIGPIPE in Python, Node, Go): not events. */
  ignoredSignals: number;
}

type Disposition = 'default' | 'ignored' | 'handled';

const MAX_PENDING = 4096;
const MAX_SOCKETS = 65536;

/**
 * Turns strace lines into timeline events. State is bounded: calls in progress per thread, and
 * one small record per open socket fd.
 *
 * fds are tracked by number across the whole trace, not per process: right for one process and
 * its threads (they share one table). When a forked child reuses a number for another socket,
 * the inode strace prints with the fd on every call (`-y`) shows the change and the record
 * starts afresh.
 */
export class StraceParser {
  readonly stats: StraceStats = { lines: 0, unparsed: 0, events: 0, wouldBlock: 0, interrupted: 0, orphanResumed: 0, otherExits: 0, ignoredSignals: 0 };
  private readonly pending = new Map<number, { name: string; ts: number; text: string; started: boolean }>();
  private readonly sockets = new Map<number, SocketState>();
  /** The program's own pid: strace's first line is its execve. */
  private rootPid: number | undefined;
  /** TCP connect() calls so far (the samples' `attempt`). */
  private attempts = 0;
  /** Signal dispositions by pid, and the latest set by anyone (what a new child inherits). */
  private readonly dispositions = new Map<number, Map<string, Disposition>>();
  private readonly latestDisposition = new Map<string, Disposition>();

  constructor(
    /** The program's name in the scenario (`client`). */
    readonly proc: string,
    /** CLOCK_REALTIME - CLOCK_MONOTONIC, from `clockOffset()`. */
    readonly offset: number,
  ) {}

  /** The events one line yields (most lines yield none). Never throws on odd input. */
  line(text: string): TimelineEvent[] {
    this.stats.lines++;
    const out: TimelineEvent[] = [];
    let record: StraceRecord | undefined;
    try {
      record = parseStraceLine(text);
    } catch {
      record = undefined;
    }
    if (!record) {
      if (text.trim()) this.stats.unparsed++;
      return out;
    }
    this.record(record, out);
    this.stats.events += out.length;
    return out;
  }

  private record(r: StraceRecord, out: TimelineEvent[]): void {
    this.rootPid ??= r.pid;
    switch (r.kind) {
      case 'unfinished': {
        if (this.pending.size >= MAX_PENDING) this.pending.delete(this.pending.keys().next().value!);
        // A blocking connect shows its start now, not when it returns seconds later.
        const args = r.name === 'connect' ? splitArgs(`${r.text})`)?.args : undefined;
        const started = args ? this.connectStart(r.pid, r.ts, args, out) : false;
        this.pending.set(r.pid, { name: r.name, ts: r.ts, text: r.text, started });
        return;
      }
      case 'resumed': {
        const start = this.pending.get(r.pid);
        this.pending.delete(r.pid);
        // Without its start, the arguments printed at entry (the fd, the address) are lost.
        if (!start || start.name !== r.name) {
          this.stats.orphanResumed++;
          // The tail still parses (`, [4]) = 0`); its time is the return, so no duration is added.
          const call = parseCall(r.text);
          if (call) this.call(r.pid, r.ts, r.name, [], { ...call.result, duration: undefined }, out);
          else this.stats.unparsed++;
          return;
        }
        const call = parseCall(start.text + r.text);
        if (call) this.call(r.pid, start.ts, r.name, call.args, call.result, out, start.started);
        else this.stats.unparsed++;
        return;
      }
      case 'call':
        this.call(r.pid, r.ts, r.name, r.args, r.result, out);
        return;
      case 'signal': {
        if (QUIET_SIGNALS.includes(r.signal)) return;
        const disposition = this.dispositions.get(r.pid)?.get(r.signal) ?? this.latestDisposition.get(r.signal);
        // A traced process stops for every signal, ignored ones too; an ignored one did nothing.
        if (disposition === 'ignored') {
          this.stats.ignoredSignals++;
          return;
        }
        out.push(this.event(r.ts, 'signal', { signal: r.signal, pid: r.pid, ...(disposition ? { disposition } : {}) }));
        return;
      }
      case 'exit':
        if (r.pid !== this.rootPid) {
          this.stats.otherExits++;
          return;
        }
        out.push(this.event(r.ts, 'exit', r.signal ? { code: null, signal: r.signal, pid: r.pid } : { code: r.code, pid: r.pid }));
        return;
    }
  }

  private call(pid: number, ts: number, name: string, args: string[], res: CallResult, out: TimelineEvent[], started = false): void {
    const end = ts + (res.duration ?? 0);
    if (name === 'execve') {
      // execve resets caught signals to their default; ignored ones stay ignored.
      const own = this.dispositions.get(pid);
      if (own && res.ret === '0') for (const [sig, d] of own) if (d === 'handled') own.set(sig, 'default');
      return;
    }
    if (name === 'rt_sigaction') {
      const handler = /^\{sa_handler=(\w+)/.exec(args[1] ?? '')?.[1];
      const sig = args[0];
      if (!handler || !sig || res.ret !== '0') return;
      const d: Disposition = handler === 'SIG_IGN' ? 'ignored' : handler === 'SIG_DFL' ? 'default' : 'handled';
      let own = this.dispositions.get(pid);
      if (!own) {
        if (this.dispositions.size >= MAX_PENDING) this.dispositions.delete(this.dispositions.keys().next().value!);
        this.dispositions.set(pid, (own = new Map()));
      }
      own.set(sig, d);
      this.latestDisposition.set(sig, d);
      return;
    }
    const failed = res.ret === '-1' || res.ret === '?';
    const wouldBlock = res.errno === 'EAGAIN' || res.errno === 'EWOULDBLOCK';
    // EAGAIN after waiting: a blocking call whose SO_RCVTIMEO/SO_SNDTIMEO expired, a real outcome.
    const timedOut = wouldBlock && res.duration !== undefined && res.duration >= BLOCKED_CALL;
    if (failed && res.errno && RETRY.has(res.errno) && name !== 'connect' && !timedOut) {
      if (wouldBlock) this.stats.wouldBlock++;
      else this.stats.interrupted++;
      return;
    }
    const fdArg = parseFdArg(args[0]);
    switch (name) {
      case 'socket': {
        const fd = Number(res.ret);
        const inet = /^AF_INET6?$/.test(args[0] ?? '');
        if (fd >= 0) {
          const decor = res.decor ? parseDecor(res.decor) : undefined;
          const declared: FdKind = !inet ? 'other-socket' : /SOCK_STREAM/.test(args[1] ?? '') ? 'tcp' : /SOCK_DGRAM/.test(args[1] ?? '') ? 'udp' : 'other-socket';
          this.remember(fd, { kind: decor && decor.kind !== 'socket' && decor.kind !== 'file' ? decor.kind : declared, inode: decor?.inode });
        } else if (inet && res.errno) {
          out.push(this.error(end, name, undefined, res, pid));
        }
        return;
      }
      case 'close':
        if (fdArg) this.sockets.delete(fdArg.fd);
        return;
      case 'accept':
      case 'accept4': {
        const s = this.state(fdArg);
        if (!s || !isInet(s.kind)) return;
        const fd = Number(res.ret);
        if (fd >= 0) {
          const decor = res.decor ? parseDecor(res.decor) : undefined;
          const peer = decor?.peer ?? parseSockaddr(args[1])?.address;
          const kind = decor && decor.kind !== 'socket' && decor.kind !== 'file' ? decor.kind : s.kind;
          const accepted = this.remember(fd, { kind, inode: decor?.inode, local: decor?.local ?? s.local, peer });
          if (accepted.kind === 'tcp') out.push(this.event(end, 'accepted', { fd, pid, ...this.addresses(accepted) }));
        } else if (res.errno) {
          out.push(this.error(end, name, s, res, pid, fdArg?.fd));
        }
        return;
      }
      case 'connect':
        if (!started) this.connectStart(pid, ts, args, out);
        this.connect(pid, end, args, res, out);
        return;
    }
    if (name === 'poll' || name === 'ppoll' || name.startsWith('epoll_')) {
      this.poll(pid, end, name, args, res, out);
      return;
    }
    if (fdArg?.decor?.kind === 'file') {
      this.sockets.delete(fdArg.fd);
      return;
    }
    const s = this.state(fdArg);
    const fd = fdArg?.fd;
    if (name === 'getsockopt') {
      if (!s || !isInet(s.kind) || res.ret !== '0' || args[1] !== 'SOL_SOCKET' || args[2] !== 'SO_ERROR') return;
      const value = soError(args[3]);
      if (value === undefined) return;
      if (s.connecting) {
        s.connecting = false;
        if (value.errno === 0) out.push(this.event(end, 'connected', { op: 'connect', fd, pid, ...this.addresses(s) }));
        else out.push(this.error(end, 'connect', s, { errno: value.name }, pid, fd, 'getsockopt'));
      } else if (value.errno !== 0) {
        // An error read from SO_ERROR after poll() said POLLERR: the samples call it op `poll`.
        out.push(this.error(end, 'poll', s, { errno: value.name }, pid, fd, 'getsockopt'));
      }
      return;
    }
    if (name === 'getsockname' || name === 'getpeername') {
      // Where the local port comes from without -yy (curl asks for it after connecting).
      const addr = res.ret === '0' ? parseSockaddr(args[1])?.address : undefined;
      if (s && addr && specific(addr)) {
        if (name === 'getsockname') s.local = addr;
        else s.peer = addr;
      }
      return;
    }
    if (!s) {
      // No decoration and never seen: report what only a network socket can say.
      if (failed && res.errno && NETWORK.has(res.errno) && (RECV.has(name) || SEND.has(name) || name === 'shutdown')) {
        out.push(this.error(end, opOf(name), undefined, res, pid, fd, name));
      }
      return;
    }
    if (!isInet(s.kind) || s.kind === 'socket' && !(failed && res.errno && NETWORK.has(res.errno))) return;
    const io = RECV.has(name) || SEND.has(name);
    if (failed) {
      if (!res.errno) return;
      if (io && s.connecting && CONNECT_FAILURE.has(res.errno)) {
        s.connecting = false;
        out.push(this.error(end, 'connect', s, res, pid, fd, name));
        return;
      }
      if (!io && !['bind', 'listen', 'setsockopt', 'shutdown'].includes(name)) return;
      out.push(this.error(end, opOf(name), s, res, pid, fd, name));
      return;
    }
    if (name === 'bind') {
      // A listener's own address is the local end of what it accepts (unless it is a wildcard).
      const addr = parseSockaddr(args[1])?.address;
      if (addr && specific(addr)) s.local = addr;
      return;
    }
    if (!io) return;
    if (s.connecting) {
      // Data moved, so the handshake completed even though the program never asked SO_ERROR.
      s.connecting = false;
      out.push(this.event(end, 'connected', { op: 'connect', fd, pid, syscall: name, ...this.addresses(s) }));
    }
    if (RECV.has(name) && res.ret === '0' && s.kind === 'tcp' && !s.eof && args[2] !== '0') {
      s.eof = true;
      out.push(this.event(end, 'eof', { op: 'recv', syscall: name, fd, pid, ...this.addresses(s) }));
    }
  }

  /** connect(): the outcome, or EINPROGRESS (not one), or EAGAIN (no local port left: one). */
  /**
   * `connect-start`, as the samples mark it just before connect(), so that a scenario's bands
   * measured from it apply to any program. Asking again while connecting (EALREADY, EISCONN)
   * starts nothing. True when it was one.
   */
  private connectStart(pid: number, ts: number, args: string[], out: TimelineEvent[]): boolean {
    const fdArg = parseFdArg(args[0]);
    const addr = parseSockaddr(args[1]);
    if (!fdArg || !addr?.address) return false;
    const s = this.state(fdArg) ?? this.remember(fdArg.fd, { kind: 'tcp' });
    if (s.kind === 'socket') s.kind = 'tcp';
    if (s.kind !== 'tcp' || s.connecting) return false;
    s.peer = addr.address;
    this.attempts++;
    out.push(this.event(ts, 'connect-start', { attempt: this.attempts, fd: fdArg.fd, pid, peer: s.peer }));
    return true;
  }

  private connect(pid: number, end: number, args: string[], res: CallResult, out: TimelineEvent[]): void {
    const fdArg = parseFdArg(args[0]);
    const addr = parseSockaddr(args[1]);
    if (!fdArg || !addr || (addr.family !== 'AF_INET' && addr.family !== 'AF_INET6')) {
      // AF_UNIX (nscd, D-Bus) and AF_UNSPEC (dissolving a UDP association) are not the lab's.
      if (fdArg && addr?.family === 'AF_UNIX') this.remember(fdArg.fd, { kind: 'other-socket' });
      return;
    }
    const s = this.state(fdArg) ?? this.remember(fdArg.fd, { kind: 'tcp' });
    if (s.kind === 'socket') s.kind = 'tcp';
    s.peer = addr.address ?? s.peer;
    const fd = fdArg.fd;
    if (s.kind !== 'tcp') {
      if (s.kind === 'udp' && res.errno) out.push(this.error(end, 'connect', s, res, pid, fd));
      return;
    }
    if (res.errno && RETRY.has(res.errno) && res.errno !== 'EAGAIN' && res.errno !== 'EWOULDBLOCK') {
      // A blocking connect cut by a signal goes on in the kernel, as if non-blocking; its
      // outcome comes as for one (Python waits for it and reads SO_ERROR).
      this.stats.interrupted++;
      s.connecting = true;
    } else if (res.ret === '0' || res.errno === 'EISCONN' && s.connecting) {
      s.connecting = false;
      out.push(this.event(end, 'connected', { op: 'connect', fd, pid, ...this.addresses(s) }));
    } else if (res.errno === 'EINPROGRESS' && !(res.duration !== undefined && res.duration >= BLOCKED_CALL)) {
      s.connecting = true;
      out.push(this.event(end, 'in-progress', { op: 'connect', errno: errnoNumber('EINPROGRESS'), name: 'EINPROGRESS', fd, pid, ...this.addresses(s) }));
    } else if (res.errno === 'EALREADY') {
      // Asked again while the handshake runs: no news.
    } else if (res.errno) {
      s.connecting = res.errno === 'EINPROGRESS'; // SO_SNDTIMEO expired: the SYNs go on
      out.push(this.error(end, 'connect', s, res, pid, fd));
    }
  }

  private poll(pid: number, end: number, name: string, args: string[], res: CallResult, out: TimelineEvent[]): void {
    if (!/^[1-9]\d*$/.test(res.ret)) return;
    const entries: { fd: number; revents: string[] }[] = [];
    if (name.startsWith('epoll_')) {
      // epoll hands back the program's own cookie, not the fd; most loops put the fd in it.
      for (const m of (args[1] ?? '').matchAll(/\{events=([A-Z|]+), data=\{u32=(\d+)/g)) {
        entries.push({ fd: Number(m[2]), revents: m[1]!.split('|').map((x) => x.replace(/^EPOLL/, 'POLL')) });
      }
    } else {
      const decors = new Map<number, Decor>();
      for (const m of (args[0] ?? '').matchAll(/\{fd=(\d+)<(.*?)>, events=/g)) decors.set(Number(m[1]), parseDecor(m[2]!));
      for (const [fd, d] of decors) this.notice(fd, d);
      for (const m of (res.extra ?? '').matchAll(/\{fd=(\d+)(?:<.*?>)?, revents=([A-Z|]+)\}/g)) {
        entries.push({ fd: Number(m[1]), revents: m[2]!.split('|') });
      }
    }
    for (const { fd, revents } of entries) {
      const s = this.sockets.get(fd);
      if (!s || s.kind !== 'tcp') continue;
      if (!revents.some((r) => POLL_ALARM.includes(r))) {
        s.revents = undefined;
        continue;
      }
      const key = revents.join('|');
      // A level-triggered loop gets the same answer until it acts: report the change only.
      if (s.revents === key) continue;
      s.revents = key;
      out.push(this.event(end, 'poll', { op: 'poll', syscall: name, revents, fd, pid, ...this.addresses(s) }));
    }
  }

  /** The socket an fd argument names, updated from its decoration. */
  private state(arg: { fd: number; decor?: Decor } | undefined): SocketState | undefined {
    if (!arg) return undefined;
    if (arg.decor) return this.notice(arg.fd, arg.decor);
    return this.sockets.get(arg.fd);
  }

  private notice(fd: number, d: Decor): SocketState | undefined {
    if (d.kind === 'file') {
      this.sockets.delete(fd);
      return undefined;
    }
    let s = this.sockets.get(fd);
    // Another inode or kind: the number was reused behind our back (by another process).
    if (s && ((d.inode !== undefined && s.inode !== undefined && d.inode !== s.inode) || (d.kind !== 'socket' && s.kind !== 'socket' && d.kind !== s.kind))) s = undefined;
    if (!s) s = this.remember(fd, { kind: d.kind, inode: d.inode });
    else {
      if (s.kind === 'socket') s.kind = d.kind;
      s.inode ??= d.inode;
    }
    if (d.local) s.local = d.local;
    if (d.peer) s.peer = d.peer;
    return s;
  }

  private remember(fd: number, s: SocketState): SocketState {
    this.sockets.delete(fd);
    if (this.sockets.size >= MAX_SOCKETS) this.sockets.delete(this.sockets.keys().next().value!);
    this.sockets.set(fd, s);
    return s;
  }

  private addresses(s: SocketState): Record<string, string> {
    const a: Record<string, string> = {};
    if (s.peer) {
      a.conn = `${s.local ?? ''}>${s.peer}`;
      a.peer = s.peer;
    }
    if (s.local) a.local = s.local;
    return a;
  }

  private error(end: number, op: string, s: SocketState | undefined, res: Pick<CallResult, 'errno' | 'message'>, pid: number, fd?: number, syscall = op): TimelineEvent {
    const name = res.errno ?? 'UNKNOWN';
    return this.event(end, s?.kind === 'udp' ? 'udp-error' : 'error', {
      op: opOf(op),
      errno: errnoNumber(name) ?? null,
      name,
      ...(res.message ? { message: res.message } : {}),
      syscall,
      ...(fd !== undefined ? { fd } : {}),
      pid,
      ...(s ? this.addresses(s) : {}),
    });
  }

  private event(realtime: number, type: string, fields: Record<string, unknown>): TimelineEvent {
    return { t: realtime - this.offset, source: 'strace', proc: this.proc, type, ...fields };
  }
}

/** Not a wildcard address nor port 0: an end a connection can be keyed by. */
function specific(address: string): boolean {
  return !/^(0\.0\.0\.0|\[::\]):|:0$/.test(address);
}

function isInet(kind: FdKind): boolean {
  return kind === 'tcp' || kind === 'udp' || kind === 'socket';
}

/** getsockopt SO_ERROR's value: `[ECONNREFUSED]` (strace >= 5.x names it), `[111]`, `[0]`. */
function soError(arg: string | undefined): { errno: number; name: string } | undefined {
  const m = /^\[(\w+)\]$/.exec(arg ?? '');
  if (!m) return undefined;
  if (/^\d+$/.test(m[1]!)) {
    const n = Number(m[1]);
    return { errno: n, name: n === 0 ? '' : (errnoName(n) ?? `E${n}`) };
  }
  const n = errnoNumber(m[1]!);
  return n === undefined ? undefined : { errno: n, name: m[1]! };
}

// ------------------------------------------------------------------------------------------
// Following the file

export interface StraceTailOptions {
  /** strace's `-o` file; it may not exist yet. */
  file: string;
  /** The program's name in the scenario. */
  proc: string;
  onEvent: (e: TimelineEvent) => void;
  /** From `clockOffset()`, taken when the trace starts; measured here if not given. */
  offset?: ClockOffset;
  /** How often to look for new lines (strace -o writes whole lines as calls happen). */
  intervalMs?: number;
  log?: Logger;
  /** A longer line (in characters) is skipped and counted as unparsed: with `-s 16` real lines are a few hundred. */
  maxLineLength?: number;
}

const READ_CHUNK = 256 * 1024;
/** Per turn of the event loop: a flood of lines must not starve the rest of the lab. */
const READ_PER_TURN = 4 * 1024 * 1024;

/**
 * Follows strace's output file while the program runs and turns each complete line into
 * events. Memory stays bounded whatever the program does: the file is read in chunks from
 * where the last read stopped, only the unfinished last line is kept (at most `maxLineLength`),
 * and the parser keeps one small record per open socket. A million EAGAIN reads cost disk
 * (about 100 bytes each in the file) and parsing time, not memory.
 */
export class StraceTail {
  readonly parser: StraceParser;
  readonly offset: ClockOffset;
  private handle: FileHandle | undefined;
  private position = 0;
  private partial = '';
  private skipping = false;
  private readonly decoder = new StringDecoder('utf8');
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  private readonly maxLine: number;

  constructor(private readonly options: StraceTailOptions) {
    this.offset = options.offset ?? clockOffset();
    this.parser = new StraceParser(options.proc, this.offset.offset);
    this.maxLine = options.maxLineLength ?? 64 * 1024;
  }

  start(): this {
    this.schedule(0);
    return this;
  }

  /** Bytes of the file read so far. */
  get bytesRead(): number {
    return this.position;
  }

  /** Reads what is left (strace has exited, or the lab is done with the program) and stops. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running;
    try {
      while (await this.readSome(Infinity)) { /* to the end */ }
      // strace killed in the middle of a line: the fragment gets its chance (it is likely cut).
      const rest = this.partial + this.decoder.end();
      this.partial = '';
      if (rest && !this.skipping) this.emitLine(rest);
    } catch (e) {
      this.options.log?.warn(`strace output ${this.options.file}: ${e instanceof Error ? e.message : e}`);
    } finally {
      await this.handle?.close().catch(() => undefined);
      this.handle = undefined;
    }
  }

  dispose(): Promise<void> {
    return this.stop();
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = this.turn().finally(() => { this.running = undefined; });
    }, ms);
  }

  private async turn(): Promise<void> {
    let more = false;
    try {
      more = await this.readSome(READ_PER_TURN);
    } catch (e) {
      this.options.log?.warn(`strace output ${this.options.file}: ${e instanceof Error ? e.message : e}`);
    }
    this.schedule(more ? 0 : this.options.intervalMs ?? 50);
  }

  /** Reads up to `budget` bytes; true when the budget ran out before the end of the file. */
  private async readSome(budget: number): Promise<boolean> {
    if (!this.handle) {
      try {
        this.handle = await open(this.options.file, 'r');
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false; // strace has not started yet
        throw e;
      }
    }
    const buffer = Buffer.allocUnsafe(READ_CHUNK);
    let used = 0;
    while (used < budget) {
      const { bytesRead } = await this.handle.read(buffer, 0, READ_CHUNK, this.position);
      if (bytesRead === 0) return false;
      this.position += bytesRead;
      used += bytesRead;
      this.feed(this.decoder.write(buffer.subarray(0, bytesRead)));
    }
    return true;
  }

  private feed(text: string): void {
    let from = 0;
    for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n', from)) {
      const piece = text.slice(from, nl);
      from = nl + 1;
      if (this.skipping) {
        this.skipping = false;
        this.partial = '';
        continue;
      }
      const line = this.partial + piece;
      this.partial = '';
      this.emitLine(line);
    }
    if (this.skipping) return;
    this.partial += text.slice(from);
    if (this.partial.length > this.maxLine) {
      this.partial = '';
      this.skipping = true;
      this.parser.stats.unparsed++;
    }
  }

  private emitLine(line: string): void {
    if (line.length > this.maxLine) {
      this.parser.stats.unparsed++;
      return;
    }
    for (const e of this.parser.line(line)) {
      try {
        this.options.onEvent(e);
      } catch (err) {
        this.options.log?.warn(`a strace event listener failed: ${err instanceof Error ? err.message : err}`);
      }
    }
  }
}
