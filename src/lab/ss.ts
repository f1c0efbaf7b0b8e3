/**
 * The parser of `ss -tanoie` (and `-p`) output: every field a person reads there, as data.
 *
 * ss prints one line per socket, then, with -i, the TCP info on a second line that starts with a
 * tab. Fields after the two addresses are `name:value` tokens, `name:(a,b,c)` groups and a few
 * bare words; their order varies between iproute2 versions, so they are read by name. A line that
 * does not parse is returned as rejected, with the reason: the monitor keeps going.
 *
 * Speed matters: the monitor parses a poll of 10,000 sockets several times a second, and that is
 * 5 to 7 MB of text, because ss pads every record (a socket line and its -i line) with spaces to
 * the width of the widest record, into a pipe as well as on a terminal. Reading one character
 * from JavaScript costs about 2.5 ns on this machine kind, so the parser is one pass by index that
 * lets native code do the long walks: lines are found with indexOf('\n'), tokens with
 * indexOf(' '), the padding is jumped over unread, and only the fields the lab uses become
 * numbers and strings.
 */

export const TCP_STATES = [
  'ESTAB', 'SYN-SENT', 'SYN-RECV', 'FIN-WAIT-1', 'FIN-WAIT-2', 'TIME-WAIT', 'UNCONN', 'CLOSE-WAIT',
  'LAST-ACK', 'LISTEN', 'CLOSING', 'UNKNOWN',
] as const;
export type TcpState = (typeof TCP_STATES)[number];

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
  /** -1 where the tool does not say (netstat -p prints no fd). */
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
  return timerTimeAt(text, 0, text.length);
}

/** `127.0.0.1:7000`, `[::1]:7000`, `*:*`, `127.0.0.1%lo:7000`, `[fe80::1%eth0]:22`. */
export function parseEndpoint(text: string): Endpoint | null {
  return endpointAt(text, 0, text.length);
}

/** Parses `ss -tan[oiep]` output (with or without the header line). Never throws. */
export function parseSs(text: string): SsParse {
  return new SsScanner(text).parse();
}

/** The connection key the event stream uses: `127.0.0.1:47062>127.0.0.1:7000`. */
export function connectionKey(s: Pick<SsSocket, 'local' | 'peer'>): string {
  const e = (x: Endpoint) => `${x.family === 6 ? `[${x.address}]` : x.address}:${x.port ?? '*'}`;
  return `${e(s.local)}>${e(s.peer)}`;
}

// ---------------------------------------------------------------------------------------------
// Reading by index. Every helper takes the whole text and a range [a, b) in it, so nothing is
// sliced until a value is kept.

const TAB = 9;
const CR = 13;
const SPACE = 32;
const QUOTE = 34;
const PERCENT = 37;
const LPAREN = 40;
const RPAREN = 41;
const STAR = 42;
const COMMA = 44;
const DOT = 46;
const SLASH = 47;
const ZERO = 48;
const COLON = 58;
const LBRACKET = 91;
const RBRACKET = 93;

const isBlank = (c: number): boolean => c === SPACE || c === TAB || c === CR;
const isDigit = (c: number): boolean => c >= ZERO && c <= ZERO + 9;
const isHexLetter = (c: number): boolean => (c >= 0x61 && c <= 0x66) || (c >= 0x41 && c <= 0x46);

/** A word's char codes: comparing from an array costs half what comparing from the string does. */
const codes = (word: string): number[] => [...word].map((c) => c.charCodeAt(0));

/** Whether text[i...] spells `word` (char codes), from its letter `from` on. */
function spells(text: string, i: number, word: readonly number[], from = 0): boolean {
  for (let k = from; k < word.length; k++) if (text.charCodeAt(i + k) !== word[k]) return false;
  return true;
}

/** The one of `words` that text[a, b) is, if any; `coded` are their char codes, in order. */
function wordIn<W extends string>(words: readonly W[], coded: readonly number[][], text: string, a: number, b: number): W | undefined {
  for (let k = 0; k < words.length; k++) if (coded[k]!.length === b - a && spells(text, a, coded[k]!)) return words[k];
  return undefined;
}

/** The whole number in text[a, b), digits only; -1 when it is not one. */
function uintAt(text: string, a: number, b: number): number {
  if (b <= a) return -1;
  let n = 0;
  for (let i = a; i < b; i++) {
    const d = text.charCodeAt(i) - ZERO;
    if (!(d >= 0 && d <= 9)) return -1;
    n = n * 10 + d;
  }
  // Past 15 digits the sum above may round differently from Number(): let Number decide.
  return b - a > 15 ? Number(text.slice(a, b)) : n;
}

/** The number in text[a, b) as Number reads it (`1e+06`, `5.`); NaN unless it is one >= 0. */
function slowNumberAt(text: string, a: number, b: number): number {
  if (b <= a) return NaN;
  const n = Number(text.slice(a, b));
  return n >= 0 ? n : NaN;
}

const MIN = codes('min');
const SEC = codes('sec');
const MS = codes('ms');

/**
 * print_ms_timer's format over text[a, b): `[<n>min][<n>sec | <n>.]<n>ms`, each part optional
 * but one present, a `.` (seconds with ms after it) only with the ms part.
 */
function timerTimeAt(text: string, a: number, b: number): number | null {
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
function endpointAt(text: string, a: number, b: number): Endpoint | null {
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

const TIMER_KINDS: readonly SocketTimer['kind'][] = ['on', 'keepalive', 'timewait', 'persist', 'unknown'];
const TIMER_KIND_CODES = TIMER_KINDS.map(codes);

/** `(kind,time,count)` at text[a, b) (after `timer:`). */
function timerAt(text: string, a: number, b: number): SocketTimer | string {
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

function usersAt(text: string, i: number, end: number, out: ProcessRef[]): number {
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

// ---------------------------------------------------------------------------------------------
// The -i line. A poll of 10,000 sockets has 300,000 of its fields; the lab reads the ones below,
// found by their first letter so that the others cost one table look-up each.

/** A word of the -i line the lab reads. All share one shape, so the loop over them stays fast. */
interface DetailWord {
  name: string;
  /** The name's char codes. */
  codes: number[];
  /** `name:n`: stores n. */
  set: ((d: TcpDetails, n: number) => void) | null;
  /** `name:a/b`: stores a and b. Neither setter: a bare word, a flag. */
  setPair: ((d: TcpDetails, a: number, b: number) => void) | null;
}

const value = (name: string, set: (d: TcpDetails, n: number) => void): DetailWord => ({ name, codes: codes(name), set, setPair: null });
const pair = (name: string, setPair: (d: TcpDetails, a: number, b: number) => void): DetailWord => ({ name, codes: codes(name), set: null, setPair });
const flag = (name: string): DetailWord => ({ name, codes: codes(name), set: null, setPair: null });

const DETAIL_WORDS: DetailWord[] = [
  value('rto', (d, n) => { d.rto = n; }),
  pair('rtt', (d, a, b) => { d.rtt = a; d.rttvar = b; }),
  value('ato', (d, n) => { d.ato = n; }),
  value('mss', (d, n) => { d.mss = n; }),
  value('cwnd', (d, n) => { d.cwnd = n; }),
  value('ssthresh', (d, n) => { d.ssthresh = n; }),
  value('unacked', (d, n) => { d.unacked = n; }),
  value('lost', (d, n) => { d.lost = n; }),
  value('bytes_sent', (d, n) => { d.bytesSent = n; }),
  value('bytes_acked', (d, n) => { d.bytesAcked = n; }),
  value('bytes_received', (d, n) => { d.bytesReceived = n; }),
  value('bytes_retrans', (d, n) => { d.bytesRetrans = n; }),
  value('segs_out', (d, n) => { d.segsOut = n; }),
  value('segs_in', (d, n) => { d.segsIn = n; }),
  value('lastsnd', (d, n) => { d.lastsnd = n; }),
  value('lastrcv', (d, n) => { d.lastrcv = n; }),
  value('lastack', (d, n) => { d.lastack = n; }),
  pair('retrans', (d, a, b) => { d.retrans = a; d.retransTotal = b; }),
  ...['ts', 'sack', 'ecn', 'ecnseen', 'app_limited', 'cubic', 'bbr', 'reno', 'dctcp', 'fastopen', 'orphaned'].map(flag),
];

/**
 * DETAIL_WORDS by their first two letters (ASCII): most tokens stop at this look-up. Filled
 * with null first: a sparse array would be a dictionary, and each look-up a hash probe.
 */
const DETAIL_BY_PREFIX: (DetailWord[] | null)[] = new Array<DetailWord[] | null>(128 * 128).fill(null);
for (const w of DETAIL_WORDS) (DETAIL_BY_PREFIX[(w.codes[0]! << 7) | w.codes[1]!] ??= []).push(w);

/**
 * A new TcpDetails with every key present, undefined until ss prints it. One object shape for
 * every socket keeps each store monomorphic; adding keys as they came made a shape per order
 * and cost ~17% of the parse.
 */
function newDetails(): TcpDetails {
  return {
    rto: undefined, rtt: undefined, rttvar: undefined, ato: undefined, mss: undefined, cwnd: undefined,
    ssthresh: undefined, retrans: undefined, retransTotal: undefined, unacked: undefined, lost: undefined,
    bytesSent: undefined, bytesAcked: undefined, bytesReceived: undefined, bytesRetrans: undefined,
    segsOut: undefined, segsIn: undefined, lastsnd: undefined, lastrcv: undefined, lastack: undefined,
    flags: [],
  };
}

// ---------------------------------------------------------------------------------------------

/** readDetail's answers besides a token's end. */
const NOT_OURS = -1;
const UNREADABLE = -2;

const FEWER_COLUMNS = 'fewer than 5 columns (state, Recv-Q, Send-Q, local, peer)';
const STATE_CODES = TCP_STATES.map(codes);
const SHUTDOWN_MARKS = ['<->', '-->', '<--', '---'];
const SHUTDOWN_CODES = SHUTDOWN_MARKS.map(codes);
const STATE_HEADER = codes('State ');
const NETID_HEADER = codes('Netid ');
const USERS = codes('users:');
const TIMER = codes('timer:');
const INO = codes('ino:');
const UID = codes('uid:');
const SK = codes('sk:');

/** One parse of one text: where it is, and what it found. */
class SsScanner {
  private readonly sockets: SsSocket[] = [];
  private readonly rejected: Rejected[] = [];
  /** The next tab at or after the last token looked at; text.length when there is none. */
  private nextTab = -1;
  /** Bounds of the five columns of the line being read. */
  private readonly columns = new Int32Array(10);
  /** The flags of the -i line being read: flags[0, flagCount). */
  private readonly flags: string[] = [];
  private flagCount = 0;
  /** Where the last number read ended (see numberTo). */
  private at = 0;
  /** Why the last token was unreadable. */
  private problem: string | null = null;

  constructor(private readonly text: string) {}

  parse(): SsParse {
    const text = this.text;
    let current: SsSocket | null = null;
    for (let pos = 0; pos < text.length;) {
      let nl = text.indexOf('\n', pos);
      if (nl < 0) nl = text.length;
      const end = nl > pos && text.charCodeAt(nl - 1) === CR ? nl - 1 : nl;
      const first = text.charCodeAt(pos);
      if (pos === end) {
        // blank
      } else if (first === TAB || first === SPACE) {
        // The -i details of the socket above (a line of padding alone, after TIME-WAIT, is blank).
        const i = this.skipBlanks(pos, end, true);
        if (i < end) {
          if (!current) this.reject(pos, nl, 'details without a socket line');
          else {
            const bad = this.readDetails((current.details ??= newDetails()), i, end);
            if (bad) this.reject(pos, nl, bad);
          }
        }
      } else if ((first === 0x53 && spells(text, pos, STATE_HEADER)) || (first === 0x4e && spells(text, pos, NETID_HEADER))) {
        // the header
      } else {
        const s = this.readSocket(pos, end);
        if (typeof s === 'string') {
          this.reject(pos, nl, s);
          current = null;
        } else {
          this.sockets.push(s);
          current = s;
        }
      }
      pos = nl + 1;
    }
    return { sockets: this.sockets, rejected: this.rejected };
  }

  private reject(pos: number, nl: number, reason: string): void {
    this.rejected.push({ line: this.text.slice(pos, nl).trimEnd().slice(0, 200), reason });
  }

  /**
   * The end of the token at i: the next space or tab, or the line's end. Spaces come every few
   * characters, so indexOf finds one at once; tabs start the -i lines only, so the next one is
   * remembered rather than searched for from every token (which would scan far ahead each time).
   */
  private tokenEnd(i: number, end: number): number {
    const text = this.text;
    let j = text.indexOf(' ', i);
    if (j < 0 || j > end) j = end;
    if (this.nextTab < i) {
      const t = text.indexOf('\t', i);
      this.nextTab = t < 0 ? text.length : t;
    }
    return this.nextTab < j ? this.nextTab : j;
  }

  /**
   * The first non-blank at or after i, or `end`. Fields are one space apart, and columns a few;
   * where `padding` is allowed, 16 blanks in a row on a line that ends with a blank are ss's
   * padding, and the rest of the line is skipped unread.
   */
  private skipBlanks(i: number, end: number, padding: boolean): number {
    const text = this.text;
    const probe = i + 16;
    while (i < end && isBlank(text.charCodeAt(i))) {
      if (++i === probe && padding && isBlank(text.charCodeAt(end - 1))) return end;
    }
    return i;
  }

  /** A socket's own line: five columns, then its fields. */
  private readSocket(pos: number, end: number): SsSocket | string {
    const text = this.text;
    const col = this.columns;
    let n = 0;
    let i = pos;
    while (n < 10 && i < end) {
      const j = this.tokenEnd(i, end);
      col[n++] = i;
      col[n++] = j;
      i = this.skipBlanks(j, end, false);
    }
    if (n < 10) return FEWER_COLUMNS;
    const state = wordIn(TCP_STATES, STATE_CODES, text, col[0]!, col[1]!);
    if (!state) return `unknown state ${text.slice(col[0], col[1]).slice(0, 20)}`;
    const recvQ = uintAt(text, col[2]!, col[3]!);
    const sendQ = uintAt(text, col[4]!, col[5]!);
    if (recvQ < 0 || sendQ < 0) return 'Recv-Q or Send-Q not a number';
    const local = endpointAt(text, col[6]!, col[7]!);
    if (!local) return `bad local address ${text.slice(col[6], col[7]).slice(0, 60)}`;
    const peer = endpointAt(text, col[8]!, col[9]!);
    if (!peer) return `bad peer address ${text.slice(col[8], col[9]).slice(0, 60)}`;
    const s: SsSocket = {
      state, recvQ, sendQ, local, peer,
      timer: null, uid: 0, inode: null, sk: null, shutdown: null, processes: [], details: null,
    };
    return this.readFields(s, i, end) ?? s;
  }

  /** The fields after the peer (`-o`, `-e`, `-p`). Returns a reason on failure. */
  private readFields(s: SsSocket, i: number, end: number): string | null {
    const text = this.text;
    while (i < end) {
      let j: number;
      if (spells(text, i, USERS)) {
        // Read by its own grammar, not up to a space: a process name may hold spaces.
        if (text.charCodeAt(i + 6) !== LPAREN) return 'users: no (...) group';
        const processes: ProcessRef[] = [];
        j = usersAt(text, i + 6, end, processes);
        if (j < 0) return processes.length ? 'users: unreadable' : 'users: no (name,pid,fd)';
        if (j < end && !isBlank(text.charCodeAt(j))) return 'users: unreadable';
        s.processes = processes;
      } else {
        j = this.tokenEnd(i, end);
        const bad = readField(s, text, i, j);
        if (bad) return bad;
      }
      i = j + 1;
      if (i < end && isBlank(text.charCodeAt(i))) i = this.skipBlanks(i, end, true);
    }
    return null;
  }

  /**
   * The -i line. Its ~30 tokens are looked up by their first two letters; one of the lab's is
   * read in one pass, its value included, which also tells where it ends, so only the others
   * are searched for their end.
   */
  private readDetails(d: TcpDetails, i: number, end: number): string | null {
    const text = this.text;
    // Flags are gathered in a scratch array and copied once: one grown by push keeps room for 17.
    const flags = this.flags;
    this.flagCount = 0;
    let problem: string | null = null;
    while (i < end) {
      const c0 = text.charCodeAt(i);
      const c1 = text.charCodeAt(i + 1);
      const words = (c0 | c1) < 128 ? DETAIL_BY_PREFIX[(c0 << 7) | c1]! : null;
      let j = words === null ? -1 : this.readDetail(d, flags, words, i, end);
      if (j === UNREADABLE) {
        problem = this.problem;
        break;
      }
      if (j < 0) j = this.tokenEnd(i, end);
      // The next token, one space on as a rule.
      i = j + 1;
      if (i < end && isBlank(text.charCodeAt(i))) i = this.skipBlanks(i, end, true);
    }
    if (this.flagCount) {
      const found = flags.slice(0, this.flagCount);
      d.flags = d.flags.length ? d.flags.concat(found) : found;
    }
    return problem;
  }

  /**
   * The token at i if it is one of `words`: stores it and returns where it ends; NOT_OURS when
   * it is none of them, UNREADABLE (this.problem says why) when it is but its value is not.
   */
  private readDetail(d: TcpDetails, flags: string[], words: DetailWord[], i: number, end: number): number {
    const text = this.text;
    for (let k = 0; k < words.length; k++) {
      const w = words[k]!;
      const v = i + w.codes.length; // the ':' after the name, or the end of a bare word
      if (w.set === null && w.setPair === null) {
        if ((v === end || isBlank(text.charCodeAt(v))) && spells(text, i, w.codes, 2)) {
          flags[this.flagCount++] = w.name;
          return v;
        }
        continue;
      }
      if (text.charCodeAt(v) !== COLON || !spells(text, i, w.codes, 2)) continue;
      if (w.set !== null) {
        const n = this.numberTo(v + 1, end, -1);
        if (Number.isNaN(n)) return this.unreadable(`${w.name}: not a number`);
        w.set(d, n);
        return this.at;
      }
      const a = this.numberTo(v + 1, end, SLASH);
      if (Number.isNaN(a) || text.charCodeAt(this.at) !== SLASH) return this.unreadable(`${w.name}: not a/b`);
      const b = this.numberTo(this.at + 1, end, -1);
      if (Number.isNaN(b)) return this.unreadable(`${w.name}: not a/b`);
      w.setPair!(d, a, b);
      return this.at;
    }
    return NOT_OURS;
  }

  private unreadable(problem: string): number {
    this.problem = problem;
    return UNREADABLE;
  }

  /**
   * The number at text[a...] as ss prints it ("204", "0.031"), up to a blank, the char `stop`
   * or `end`; sets this.at there. NaN unless it is a number >= 0. Digits and one fraction are
   * summed by hand: `n / 10^k` with both exact is correctly rounded, so it equals Number(text);
   * anything else (an exponent, 16 digits or more) goes to Number.
   */
  private numberTo(a: number, end: number, stop: number): number {
    const text = this.text;
    let n = 0;
    let scale = 0;
    let k = a;
    let c = 0;
    for (; k < end; k++) {
      c = text.charCodeAt(k);
      if (isDigit(c)) {
        n = n * 10 + c - ZERO;
        if (scale) scale *= 10;
      } else if (c === DOT && scale === 0 && k > a) scale = 1;
      else break;
    }
    if (k === end || isBlank(c) || c === stop) {
      this.at = k;
      return k > a && scale !== 1 && k - a <= 15 ? (scale ? n / scale : n) : slowNumberAt(text, a, k);
    }
    while (k < end && !isBlank(c = text.charCodeAt(k)) && c !== stop) k++;
    this.at = k;
    return slowNumberAt(text, a, k);
  }
}

/** One field of a socket's line, text[i, j). Anything else (cgroup, v6only...) is not needed. */
function readField(s: SsSocket, text: string, i: number, j: number): string | null {
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
