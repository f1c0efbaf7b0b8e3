/**
 * The messages between the extension host and its webviews: nothing crosses the boundary that
 * is not here. Imported by both sides, so it holds types and pure functions only (no Node, no
 * DOM, no vscode).
 *
 * The webview is untrusted input: a compromised or buggy page can post anything. Everything
 * from it goes through `parseFromWebview`, which refuses what is malformed with a LabError
 * naming the field, before the host acts on it.
 */
import { LabError } from './lab/errors';

/** Whose sockets the panel shows. */
export type SocketTarget =
  | { kind: 'lab' }
  | { kind: 'port'; port: number }
  | { kind: 'pid'; pid: number };

/** One socket as the panel's table shows it: plain data, as ss's parser read it. */
export interface ParsedRow {
  /** The 4-tuple, `#2`... for a second socket on the same one: how a row is followed between refreshes. */
  key: string;
  state: string;
  local: string;
  peer: string;
  recvQ: number;
  sendQ: number;
  timer: { kind: string; ms: number; count: number } | null;
  rto: number | null;
  cwnd: number | null;
  /** All retransmissions of the connection (`retrans:a/B`, B). */
  retrans: number | null;
  /** `python3/1234`, comma-separated when several processes hold the socket; '' when ss names none. */
  process: string;
}

export type ToWebview =
  | {
      type: 'sockets';
      target: SocketTarget;
      /** Exactly what ss printed (header line included), or '' when it did not run. */
      raw: string;
      rows: ParsedRow[];
      /** Wall-clock time of the read, ms since the epoch. */
      t: number;
      /** The refresh interval in force. */
      pollMs: number;
      /** How long the read took (command and parse), ms. */
      tookMs?: number;
      /** The command, as a person would type it in a terminal. */
      command?: string;
      /** Where the sockets are: "inside the lab (rootless, init pid 4242)". */
      where?: string;
      /** Something to know about this read (sockets cut, a warning ss printed). */
      note?: string;
      /** Why there is nothing to show (no lab running, ss failed). */
      error?: string;
    }
  | { type: 'paused'; paused: boolean }
  /** The host refused a message from the page (the reason names the field). */
  | { type: 'refused'; message: string };

export type FromWebview =
  | { type: 'ready' }
  | { type: 'setTarget'; target: SocketTarget }
  | { type: 'pause'; paused: boolean }
  | { type: 'setInterval'; ms: number };

export const PORT_MIN = 1;
export const PORT_MAX = 65_535;
/** Linux's PID_MAX_LIMIT (2^22): no pid is larger on any configuration. */
export const PID_MAX = 4_194_304;
/** Faster than 100 ms, ss itself (tens of ms on a busy host) would be most of the CPU spent. */
export const INTERVAL_MIN_MS = 100;
export const INTERVAL_MAX_MS = 60_000;
export const INTERVAL_DEFAULT_MS = 500;

const FROM_WEBVIEW_TYPES = ['ready', 'setTarget', 'pause', 'setInterval'] as const satisfies readonly FromWebview['type'][];
const TARGET_KINDS = ['lab', 'port', 'pid'] as const satisfies readonly SocketTarget['kind'][];
/** The keys each message may carry besides `type`: anything else is refused, not ignored. */
const KEYS: Record<FromWebview['type'], readonly string[]> = {
  ready: [],
  setTarget: ['target'],
  pause: ['paused'],
  setInterval: ['ms'],
};

/** Validates one message from the webview; throws a LabError naming the field otherwise. */
export function parseFromWebview(msg: unknown): FromWebview {
  const m = record(msg, 'message');
  const type = oneOf(m.type, FROM_WEBVIEW_TYPES, 'type');
  onlyKeys(m, ['type', ...KEYS[type]], 'message');
  switch (type) {
    case 'ready':
      return { type };
    case 'setTarget':
      return { type, target: parseTarget(m.target) };
    case 'pause':
      return { type, paused: bool(m.paused, 'paused') };
    case 'setInterval':
      return { type, ms: int(m.ms, 'ms', INTERVAL_MIN_MS, INTERVAL_MAX_MS) };
    default:
      return unreachable(type);
  }
}

export function parseTarget(value: unknown): SocketTarget {
  const t = record(value, 'target');
  const kind = oneOf(t.kind, TARGET_KINDS, 'target.kind');
  switch (kind) {
    case 'lab':
      onlyKeys(t, ['kind'], 'target');
      return { kind };
    case 'port':
      onlyKeys(t, ['kind', 'port'], 'target');
      return { kind, port: int(t.port, 'target.port', PORT_MIN, PORT_MAX) };
    case 'pid':
      onlyKeys(t, ['kind', 'pid'], 'target');
      return { kind, pid: int(t.pid, 'target.pid', 1, PID_MAX) };
    default:
      return unreachable(kind);
  }
}

/** A target as a person names it: "the lab", "port 7000", "process 1234". */
export function describeTarget(t: SocketTarget): string {
  switch (t.kind) {
    case 'lab':
      return 'the lab';
    case 'port':
      return `port ${t.port}`;
    case 'pid':
      return `process ${t.pid}`;
    default:
      return unreachable(t);
  }
}

/** For exhaustive switches: a new message type or target kind fails to compile until handled. */
export function unreachable(x: never): never {
  throw new LabError('unexpected value', { value: x });
}

function record(value: unknown, field: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new LabError(`${field} must be an object`, { field, value });
  }
  // An object made by JSON (what postMessage's structured clone of the page's message gives).
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) throw new LabError(`${field} must be a plain object`, { field, value: String(value) });
  return value as Record<string, unknown>;
}

function onlyKeys(m: Record<string, unknown>, allowed: readonly string[], field: string): void {
  for (const k of Object.keys(m)) {
    if (!allowed.includes(k)) throw new LabError(`${field} has an unknown field`, { field: `${field}.${k.slice(0, 40)}`, value: m[k] });
  }
}

function oneOf<T extends string>(value: unknown, allowed: readonly T[], field: string): T {
  if (typeof value !== 'string' || !allowed.includes(value as T)) {
    throw new LabError(`${field} must be one of ${allowed.join(', ')}`, { field, value });
  }
  return value as T;
}

function int(value: unknown, field: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new LabError(`${field} must be a whole number from ${min} to ${max}`, { field, value });
  }
  return value;
}

function bool(value: unknown, field: string): boolean {
  if (typeof value !== 'boolean') throw new LabError(`${field} must be true or false`, { field, value });
  return value;
}
