/**
 * The fields of a socket's own line: its addresses, its timer, the processes that hold it, and
 * the `-o`/`-e` fields after the peer. Each reads a range of the whole text (see ssText.ts).
 */
import type { Endpoint, ProcessRef, SocketTimer, SsSocket } from './ss';
import * as ssText from './ssText';

// tsx compiles each module to CommonJS, where every use of an imported name calls a getter: in
// these loops that was half the parse time. So the names are copied once into local constants.
const {
  COLON, COMMA, DOT, LBRACKET, LPAREN, PERCENT, QUOTE, RBRACKET, RPAREN, STAR, ZERO,
  codes, isDigit, isHexLetter, spells, uintAt, wordIn,
} = ssText;

const MIN = codes('min');
const SEC = codes('sec');
const MS = codes('ms');

/**
 * print_ms_timer's format over text[a, b): `[<n>min][<n>sec | <n>.]<n>ms`, each part optional
 * but one present, a `.` (seconds with ms after it) only with the ms part.
 */
export function timerTimeAt(text: string, a: number, b: number): number | null {
  if (a === b) return 0;
  let ms = 0;
  let stage = 0; // 1 after min, 2 after sec or '.', 3 after ms
  let needMs = false;
  let i = a;
  while (i < b) {
    const start = i;
    let n = 0;
    while (i < b && isDigit(text.charCodeAt(i))) n = n * 10 + text.charCodeAt(i++) - ZERO;
    const digits = i - start;
    if (digits === 0 || digits > 15) return null;
    if (stage < 1 && spells(text, i, MIN) && i + 3 <= b) {
      ms += n * 60_000;
      stage = 1;
      i += 3;
    } else if (stage < 2 && spells(text, i, SEC) && i + 3 <= b) {
      ms += n * 1000;
      stage = 2;
      i += 3;
    } else if (stage < 2 && i < b && text.charCodeAt(i) === DOT) {
      ms += n * 1000;
      stage = 2;
      needMs = true;
      i += 1;
    } else if (stage < 3 && digits <= 3 && spells(text, i, MS) && i + 2 <= b) {
      ms += n;
      stage = 3;
      needMs = false;
      i += 2;
    } else return null;
  }
  return needMs ? null : ms;
}

/** The endpoint in text[a, b); parseEndpoint's rules, without slicing until the end. */
export function endpointAt(text: string, a: number, b: number): Endpoint | null {
  let colon = b - 1;
  while (colon > a && text.charCodeAt(colon) !== COLON) colon--;
  if (colon <= a) return null;
  let port: number | null;
  if (b - colon === 2 && text.charCodeAt(colon + 1) === STAR) port = null;
  else {
    port = b - colon - 1 <= 5 ? uintAt(text, colon + 1, b) : -1;
    if (port < 0 || port > 65535) return null;
  }
  // Most hosts are plain IPv4 addresses: one pass tells, and the rest is for the others.
  if (ipv4At(text, a, colon)) return { address: text.slice(a, colon), port, family: 4 };
  // The host is text[a, he); a device after `%` is cut off it, inside the brackets for IPv6.
  let he = colon;
  let device = '';
  let pct = he - 1;
  while (pct > a && text.charCodeAt(pct) !== PERCENT) pct--;
  let inner = -1; // end of the address inside [ ], when bracketed
  if (pct > a) {
    if (text.charCodeAt(he - 1) !== RBRACKET) {
      device = text.slice(pct + 1, he);
      he = pct;
    } else if (text.charCodeAt(a) === LBRACKET) {
      device = text.slice(pct + 1, he - 1);
      inner = pct;
    }
  }
  if (inner < 0 && text.charCodeAt(a) === LBRACKET && text.charCodeAt(he - 1) === RBRACKET) inner = he - 1;
  let family: 4 | 6 | null;
  let address: string;
  if (inner >= 0) {
    if (!ipv6CharsAt(text, a + 1, inner)) return null;
    family = 6;
    address = text.slice(a + 1, inner);
  } else if (he - a === 1 && text.charCodeAt(a) === STAR) {
    family = null;
    address = '*';
  } else if (ipv4At(text, a, he)) {
    family = 4;
    address = text.slice(a, he);
  } else return null;
  const e: Endpoint = { address, port, family };
  if (device) e.device = device;
  return e;
}

/** Hex digits, `:` and `.` only (ss prints what inet_ntop made; the kernel already checked it). */
function ipv6CharsAt(text: string, a: number, b: number): boolean {
  if (b <= a) return false;
  for (let i = a; i < b; i++) {
    const c = text.charCodeAt(i);
    if (!(isDigit(c) || c === COLON || c === DOT || isHexLetter(c))) return false;
  }
  return true;
}

/** Four groups of one to three digits joined by dots. */
function ipv4At(text: string, a: number, b: number): boolean {
  let groups = 0;
  let digits = 0;
  for (let i = a; i < b; i++) {
    const c = text.charCodeAt(i);
    if (isDigit(c)) {
      if (++digits > 3) return false;
    } else if (c === DOT && digits > 0 && groups < 3) {
      groups++;
      digits = 0;
    } else return false;
  }
  return groups === 3 && digits > 0;
}

const SHUTDOWN_MARKS = ['<->', '-->', '<--', '---'];
const SHUTDOWN_CODES = SHUTDOWN_MARKS.map(codes);
const TIMER = codes('timer:');
const INO = codes('ino:');
const UID = codes('uid:');
const SK = codes('sk:');

const TIMER_KINDS: readonly SocketTimer['kind'][] = ['on', 'keepalive', 'timewait', 'persist', 'unknown'];
const TIMER_KIND_CODES = TIMER_KINDS.map(codes);

/** `(kind,time,count)` at text[a, b) (after `timer:`). */
export function timerAt(text: string, a: number, b: number): SocketTimer | string {
  if (b - a < 2 || text.charCodeAt(a) !== LPAREN || text.charCodeAt(b - 1) !== RPAREN) return 'timer: no (...) group';
  const g = a + 1;
  const ge = b - 1;
  let c1 = -1;
  let c2 = -1;
  let commas = 0;
  for (let i = g; i < ge; i++) {
    if (text.charCodeAt(i) !== COMMA) continue;
    if (++commas === 1) c1 = i;
    else c2 = i;
  }
  if (commas !== 2) return 'timer: not (kind,time,count)';
  const kind = wordIn(TIMER_KINDS, TIMER_KIND_CODES, text, g, c1);
  if (!kind) return `timer: unknown kind ${text.slice(g, c1)}`;
  const ms = timerTimeAt(text, c1 + 1, c2);
  if (ms === null) return `timer: bad time ${text.slice(c1 + 1, c2)}`;
  const count = uintAt(text, c2 + 1, ge);
  if (count < 0) return `timer: bad count ${text.slice(c2 + 1, ge)}`;
  return { kind, ms, count };
}

/**
 * `users:((...),(...))` from the `(` after `users:`: one `("name",pid=N,fd=N)` per process that
 * holds the socket. The name is the process's comm as ss read it from /proc/<pid>/stat, printed
 * unescaped: it may hold spaces, quotes and `(` (ss stops it at the first `)`), so it ends at the
 * first `",pid=`. Returns the index after the group, or -1.
 */
const PID = codes(',pid=');
const FD = codes(',fd=');

export function usersAt(text: string, i: number, end: number, out: ProcessRef[]): number {
  i++;
  if (text.charCodeAt(i) === RPAREN) return i + 1;
  for (;;) {
    if (text.charCodeAt(i) !== LPAREN || text.charCodeAt(i + 1) !== QUOTE) return -1;
    let q = i + 2;
    while (q < end && !(text.charCodeAt(q) === QUOTE && spells(text, q + 1, PID))) q++;
    if (q >= end) return -1;
    let k = q + 6;
    const pidStart = k;
    while (k < end && isDigit(text.charCodeAt(k))) k++;
    const pid = uintAt(text, pidStart, k);
    if (pid < 0 || !spells(text, k, FD)) return -1;
    k += 4;
    const fdStart = k;
    while (k < end && isDigit(text.charCodeAt(k))) k++;
    const fd = uintAt(text, fdStart, k);
    if (fd < 0 || text.charCodeAt(k) !== RPAREN) return -1;
    out.push({ name: text.slice(i + 2, q), pid, fd });
    const next = text.charCodeAt(k + 1);
    if (next === RPAREN) return k + 2;
    if (next !== COMMA) return -1;
    i = k + 2;
  }
}

/** One field of a socket's line, text[i, j). Anything else (cgroup, v6only...) is not needed. */
export function readField(s: SsSocket, text: string, i: number, j: number): string | null {
  switch (text.charCodeAt(i)) {
    case 0x3c: // <
    case 0x2d: { // -
      const mark = wordIn(SHUTDOWN_MARKS, SHUTDOWN_CODES, text, i, j);
      if (mark) s.shutdown = mark;
      return null;
    }
    case 0x74: { // t
      if (!spells(text, i, TIMER, 1)) return null;
      const t = timerAt(text, i + 6, j);
      if (typeof t === 'string') return t;
      s.timer = t;
      return null;
    }
    case 0x69: { // i
      if (!spells(text, i, INO, 1)) return null;
      const n = uintAt(text, i + 4, j);
      if (n < 0) return 'ino: not a number';
      s.inode = n;
      return null;
    }
    case 0x75: { // u
      if (!spells(text, i, UID, 1)) return null;
      const n = uintAt(text, i + 4, j);
      if (n < 0) return 'uid: not a number';
      s.uid = n;
      return null;
    }
    case 0x73: { // s
      if (!spells(text, i, SK, 1)) return null;
      if (j === i + 3) return 'sk: not hex';
      for (let k = i + 3; k < j; k++) {
        const c = text.charCodeAt(k);
        if (!(isDigit(c) || (c >= 0x61 && c <= 0x66))) return 'sk: not hex'; // ss prints lower case
      }
      s.sk = text.slice(i + 3, j);
      return null;
    }
  }
  return null;
}
