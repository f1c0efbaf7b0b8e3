import { errnoName, errnoNumber } from './errno';

/**
 * strace's output, line by line, by shape: a call with its arguments split at the top level and
 * its result (errno, `-T` duration), an unfinished call and its resumed tail, a signal, an
 * exit. Also what an argument says: which fd (and, with -y/-yy, what it is), which address.
 * No meaning is given here; straceEvents.ts does that.
 */

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
export function parseCall(text: string): { args: string[]; result: CallResult } | undefined {
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
export function splitArgs(text: string): { args: string[]; rest: string } | undefined {
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
export type FdKind = 'tcp' | 'udp' | 'other-socket' | 'socket' | 'file';

export interface Decor {
  kind: FdKind;
  /** The socket's inode: tells a reused fd number from the same socket. */
  inode?: number;
  local?: string;
  peer?: string;
}

/** `socket:[123]` (-y), `TCP:[123]` or `TCP:[1.2.3.4:5->6.7.8.9:10]` (-yy), `/path`, `pipe:[4]`. */
export function parseDecor(decor: string): Decor {
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
export function parseFdArg(arg: string | undefined): { fd: number; decor?: Decor } | undefined {
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

/** getsockopt SO_ERROR's value: `[ECONNREFUSED]` (strace >= 5.x names it), `[111]`, `[0]`. */
export function soError(arg: string | undefined): { errno: number; name: string } | undefined {
  const m = /^\[(\w+)\]$/.exec(arg ?? '');
  if (!m) return undefined;
  if (/^\d+$/.test(m[1]!)) {
    const n = Number(m[1]);
    return { errno: n, name: n === 0 ? '' : (errnoName(n) ?? `E${n}`) };
  }
  const n = errnoNumber(m[1]!);
  return n === undefined ? undefined : { errno: n, name: m[1]! };
}
