/**
 * The parser of `ss -tanoie` (and `-p`) output: every field a person reads there, as data.
 *
 * ss prints one line per socket, then, with -i/-e on some versions, the TCP info on a second
 * line that starts with a tab. Fields after the two addresses are `name:value` tokens,
 * `name:(a,b,c)` groups and a few bare words; their order varies between iproute2 versions, so
 * they are read by name. A line that does not parse is returned as rejected, with the reason:
 * the monitor keeps going.
 */

export const TCP_STATES = [
  'ESTAB', 'SYN-SENT', 'SYN-RECV', 'FIN-WAIT-1', 'FIN-WAIT-2', 'TIME-WAIT', 'UNCONN', 'CLOSE-WAIT',
  'LAST-ACK', 'LISTEN', 'CLOSING', 'UNKNOWN',
] as const;
export type TcpState = (typeof TCP_STATES)[number];
const STATES: ReadonlySet<string> = new Set(TCP_STATES);

export interface Endpoint {
  /** `127.0.0.1`, `::1`, `*` for any. */
  address: string;
  /** null for `*` (a listener's peer). */
  port: number | null;
  family: 4 | 6 | null;
  /** `127.0.0.1%lo:7000`: bound to a device. */
  device?: string;
}

/** `timer:(on,496ms,1)`: the retransmit timer, time left, retransmissions so far. */
export interface SocketTimer {
  kind: 'on' | 'keepalive' | 'timewait' | 'persist' | 'unknown';
  /** Time left in ms (ss prints "5.200ms" for 5.2 s, "1min5sec", "119min"). */
  ms: number;
  /** Retransmissions (on), probes sent (keepalive, persist). */
  count: number;
}

export interface ProcessRef {
  name: string;
  pid: number;
  fd: number;
}

/** The `-i` details a reader of `ss` looks at; times in ms, as ss prints them. */
export interface TcpDetails {
  rto?: number;
  rtt?: number;
  rttvar?: number;
  ato?: number;
  mss?: number;
  cwnd?: number;
  ssthresh?: number;
  /** `retrans:1/3`: retransmissions of the segment now outstanding, and in all. */
  retrans?: number;
  retransTotal?: number;
  unacked?: number;
  lost?: number;
  bytesSent?: number;
  bytesAcked?: number;
  bytesReceived?: number;
  bytesRetrans?: number;
  segsOut?: number;
  segsIn?: number;
  lastsnd?: number;
  lastrcv?: number;
  lastack?: number;
  /** Bare words: ts, sack, ecn, cubic, bbr, app_limited... */
  flags: string[];
}

export interface SsSocket {
  state: TcpState;
  recvQ: number;
  sendQ: number;
  local: Endpoint;
  peer: Endpoint;
  timer: SocketTimer | null;
  /** Printed only when not 0 (root). */
  uid: number;
  inode: number | null;
  /** The kernel's socket cookie, `sk:2f4`. */
  sk: string | null;
  /** `<->` both directions open, `-->` we shut down reading... (ss's shutdown marks). */
  shutdown: string | null;
  processes: ProcessRef[];
  details: TcpDetails | null;
}

export interface Rejected {
  line: string;
  reason: string;
}

export interface SsParse {
  sockets: SsSocket[];
  rejected: Rejected[];
}

/** ss's print_ms_timer: "119min", "1min5sec", "58sec", "5.200ms" (5.2 s), "496ms", "" (0). */
export function parseTimerTime(text: string): number | null {
  if (text === '') return 0;
  const m = /^(?:(\d+)min)?(?:(\d+)(sec|\.))?(?:(\d{1,3})ms)?$/.exec(text);
  if (!m || (m[1] === undefined && m[2] === undefined && m[4] === undefined)) return null;
  if (m[3] === '.' && m[4] === undefined) return null;
  return Number(m[1] ?? 0) * 60_000 + Number(m[2] ?? 0) * 1000 + Number(m[4] ?? 0);
}

export function parseEndpoint(text: string): Endpoint | null {
  const colon = text.lastIndexOf(':');
  if (colon <= 0) return null;
  const portText = text.slice(colon + 1);
  let host = text.slice(0, colon);
  let port: number | null;
  if (portText === '*') port = null;
  else if (/^\d{1,5}$/.test(portText) && Number(portText) <= 65535) port = Number(portText);
  else return null;
  let device: string | undefined;
  const pct = host.lastIndexOf('%');
  if (pct > 0 && !host.endsWith(']')) {
    device = host.slice(pct + 1);
    host = host.slice(0, pct);
  } else if (pct > 0 && host.startsWith('[')) {
    // [fe80::1%eth0]
    device = host.slice(pct + 1, -1);
    host = `${host.slice(0, pct)}]`;
  }
  let family: 4 | 6 | null;
  if (host.startsWith('[') && host.endsWith(']')) {
    host = host.slice(1, -1);
    if (!/^[0-9a-fA-F:.]+$/.test(host)) return null;
    family = 6;
  } else if (host === '*') {
    family = null;
  } else if (/^\d{1,3}(\.\d{1,3}){3}$/.test(host)) {
    family = 4;
  } else return null;
  return { address: host, port, family, ...(device ? { device } : {}) };
}

const TIMER_KINDS = new Set(['on', 'keepalive', 'timewait', 'persist', 'unknown']);

function parseTimer(group: string): SocketTimer | string {
  const parts = group.split(',');
  if (parts.length !== 3) return 'timer: not (kind,time,count)';
  const [kind, time, count] = parts as [string, string, string];
  if (!TIMER_KINDS.has(kind)) return `timer: unknown kind ${kind}`;
  const ms = parseTimerTime(time);
  if (ms === null) return `timer: bad time ${time}`;
  if (!/^\d+$/.test(count)) return `timer: bad count ${count}`;
  return { kind: kind as SocketTimer['kind'], ms, count: Number(count) };
}

function parseUsers(group: string): ProcessRef[] | string {
  // users:(("python3",pid=12,fd=3),("python3",pid=13,fd=3))
  const out: ProcessRef[] = [];
  const re = /\("((?:[^"\\]|\\.)*)",pid=(\d+),fd=(\d+)\)/g;
  let consumed = 0;
  for (let m = re.exec(group); m; m = re.exec(group)) {
    out.push({ name: m[1]!, pid: Number(m[2]), fd: Number(m[3]) });
    consumed += m[0].length;
  }
  if (out.length === 0 && group.trim() !== '') return 'users: no (name,pid,fd)';
  return consumed > 0 || group.trim() === '' ? out : 'users: unreadable';
}

/**
 * Splits fields on whitespace. Groups `name:(...)` hold no spaces, except a process name in
 * `users:((...))`, which is quoted: only a line with quotes takes the slow, quote-aware path.
 */
function tokens(text: string): string[] {
  if (text.includes('"')) return quotedTokens(text);
  const parts = text.split(/[ \t]+/);
  if (parts[0] === '') parts.shift();
  if (parts.at(-1) === '') parts.pop();
  return parts;
}

function quotedTokens(text: string): string[] {
  const out: string[] = [];
  let i = 0;
  while (i < text.length) {
    while (i < text.length && (text[i] === ' ' || text[i] === '\t')) i++;
    if (i >= text.length) break;
    const start = i;
    let depth = 0;
    let quoted = false;
    while (i < text.length) {
      const c = text[i]!;
      if (quoted) {
        if (c === '\\') i++;
        else if (c === '"') quoted = false;
      } else if (c === '"') quoted = true;
      else if (c === '(') depth++;
      else if (c === ')') depth--;
      else if ((c === ' ' || c === '\t') && depth <= 0) break;
      i++;
    }
    out.push(text.slice(start, i));
  }
  return out;
}

/**
 * The fields after the two addresses on a socket's own line (`-o`, `-e`, `-p`); the `-i`
 * details come on the next line and go through readDetails. Returns a reason on failure.
 */
function readFields(s: SsSocket, fields: string[]): string | null {
  for (const f of fields) {
    if (f === '<->' || f === '-->' || f === '<--' || f === '---') {
      s.shutdown = f;
      continue;
    }
    const colon = f.indexOf(':');
    if (colon < 0) continue;
    const name = f.slice(0, colon);
    const value = f.slice(colon + 1);
    const group = value.startsWith('(') && value.endsWith(')') ? value.slice(1, -1) : null;
    switch (name) {
      case 'timer': {
        if (group === null) return 'timer: no (...) group';
        const t = parseTimer(group);
        if (typeof t === 'string') return t;
        s.timer = t;
        break;
      }
      case 'users': {
        if (group === null) return 'users: no (...) group';
        const u = parseUsers(group);
        if (typeof u === 'string') return u;
        s.processes = u;
        break;
      }
      case 'uid':
      case 'ino': {
        if (!/^\d+$/.test(value)) return `${name}: not a number`;
        if (name === 'uid') s.uid = Number(value);
        else s.inode = Number(value);
        break;
      }
      case 'sk':
        if (!/^[0-9a-f]+$/.test(value)) return 'sk: not hex';
        s.sk = value;
        break;
      // Anything else (cgroup, v6only...) is known to ss, not needed by the lab.
    }
  }
  return null;
}

/**
 * The -i line, read by two scans in native code rather than field by field: a poll of 10,000
 * sockets has 300,000 of these fields, and only those below matter to the lab.
 */
const DETAIL = /(?:^|\s)(rto|rtt|ato|mss|cwnd|ssthresh|unacked|lost|bytes_sent|bytes_acked|bytes_received|bytes_retrans|segs_out|segs_in|lastsnd|lastrcv|lastack|retrans):([^\s]*)/g;
const FLAG = /(?:^|\s)(ts|sack|ecn|ecnseen|app_limited|cubic|bbr|reno|dctcp|fastopen|orphaned)(?=\s|$)/g;

function readDetails(s: SsSocket, line: string): string | null {
  const d: TcpDetails = (s.details ??= { flags: [] });
  DETAIL.lastIndex = 0;
  for (let m = DETAIL.exec(line); m; m = DETAIL.exec(line)) {
    const name = m[1]!;
    const value = m[2]!;
    if (name === 'rtt' || name === 'retrans') {
      const slash = value.indexOf('/');
      const a = Number(value.slice(0, slash));
      const b = Number(value.slice(slash + 1));
      if (slash <= 0 || !(a >= 0) || !(b >= 0)) return `${name}: not a/b`;
      if (name === 'rtt') {
        d.rtt = a;
        d.rttvar = b;
      } else {
        d.retrans = a;
        d.retransTotal = b;
      }
      continue;
    }
    const n = Number(value);
    if (value === '' || !(n >= 0)) return `${name}: not a number`;
    // Named stores, not d[key]: one object shape, so V8 keeps this fast over 10,000 sockets.
    switch (name) {
      case 'rto': d.rto = n; break;
      case 'ato': d.ato = n; break;
      case 'mss': d.mss = n; break;
      case 'cwnd': d.cwnd = n; break;
      case 'ssthresh': d.ssthresh = n; break;
      case 'unacked': d.unacked = n; break;
      case 'lost': d.lost = n; break;
      case 'bytes_sent': d.bytesSent = n; break;
      case 'bytes_acked': d.bytesAcked = n; break;
      case 'bytes_received': d.bytesReceived = n; break;
      case 'bytes_retrans': d.bytesRetrans = n; break;
      case 'segs_out': d.segsOut = n; break;
      case 'segs_in': d.segsIn = n; break;
      case 'lastsnd': d.lastsnd = n; break;
      case 'lastrcv': d.lastrcv = n; break;
      case 'lastack': d.lastack = n; break;
    }
  }
  FLAG.lastIndex = 0;
  for (let m = FLAG.exec(line); m; m = FLAG.exec(line)) d.flags.push(m[1]!);
  return null;
}

function parseMain(line: string): SsSocket | string {
  const f = tokens(line);
  if (f.length < 5) return 'fewer than 5 columns (state, Recv-Q, Send-Q, local, peer)';
  const [state, rq, sq, local, peer] = f as [string, string, string, string, string];
  if (!STATES.has(state)) return `unknown state ${state.slice(0, 20)}`;
  if (!/^\d+$/.test(rq) || !/^\d+$/.test(sq)) return 'Recv-Q or Send-Q not a number';
  const l = parseEndpoint(local);
  const p = parseEndpoint(peer);
  if (!l) return `bad local address ${local.slice(0, 60)}`;
  if (!p) return `bad peer address ${peer.slice(0, 60)}`;
  const s: SsSocket = {
    state: state as TcpState, recvQ: Number(rq), sendQ: Number(sq), local: l, peer: p,
    timer: null, uid: 0, inode: null, sk: null, shutdown: null, processes: [], details: null,
  };
  const bad = readFields(s, f.slice(5));
  return bad ?? s;
}

/** Parses `ss -tan[oiep]` output (with or without the header line). Never throws. */
export function parseSs(text: string): SsParse {
  const sockets: SsSocket[] = [];
  const rejected: Rejected[] = [];
  let current: SsSocket | null = null;
  for (const line of text.split('\n')) {
    // ss pads its columns to the terminal's width: hundreds of trailing spaces per line.
    const raw = line.trimEnd();
    if (raw === '') continue;
    if (raw.startsWith('\t') || raw.startsWith(' ')) {
      // The -i details of the socket above.
      if (!current) {
        rejected.push({ line: raw.slice(0, 200), reason: 'details without a socket line' });
        continue;
      }
      const bad = readDetails(current, raw);
      if (bad) rejected.push({ line: raw.slice(0, 200), reason: bad });
      continue;
    }
    if (raw.startsWith('State ') || raw.startsWith('Netid ')) continue;
    const s = parseMain(raw);
    if (typeof s === 'string') {
      rejected.push({ line: raw.slice(0, 200), reason: s });
      current = null;
    } else {
      sockets.push(s);
      current = s;
    }
  }
  return { sockets, rejected };
}

/** The connection key the event stream uses: `127.0.0.1:47062>127.0.0.1:7000`. */
export function connectionKey(s: Pick<SsSocket, 'local' | 'peer'>): string {
  const e = (x: Endpoint) => `${x.family === 6 ? `[${x.address}]` : x.address}:${x.port ?? '*'}`;
  return `${e(s.local)}>${e(s.peer)}`;
}
