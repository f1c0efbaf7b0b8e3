/**
 * The one pass over `ss -tanoie` output. ss prints one line per socket, then, with -i, the TCP
 * info on a second line that starts with a tab; every record is padded with spaces to the width
 * of the widest one, into a pipe too, so 10,000 sockets are 5 to 7 MB of text.
 *
 * Lines are found with indexOf('\n') and tokens with indexOf(' '), so native code does the long
 * walks, and the padding is jumped over unread. A socket's line is read at once; its -i line is
 * only noted (where it is), and read when `details` is first asked for: that is two thirds of
 * the tokens, and the monitor's common poll reads none of them but retrans.
 */
import type { ProcessRef, Rejected, SocketTimer, SsParse, SsSocket, TcpDetails, TcpState } from './ss';
import { TcpInfo } from './ssDetails';
import * as ssLine from './ssLine';
import * as ssText from './ssText';
import type { TabMemo } from './ssText';

// tsx compiles each module to CommonJS, where every use of an imported name calls a getter: in
// these loops that was half the parse time. So the names are copied once into local constants.
const { CR, LPAREN, SPACE, TAB, codes, isBlank, spells, tokenEnd, uintAt, wordIn } = ssText;
const { endpointAt, readField, usersAt } = ssLine;

export const TCP_STATES = [
  'ESTAB', 'SYN-SENT', 'SYN-RECV', 'FIN-WAIT-1', 'FIN-WAIT-2', 'TIME-WAIT', 'UNCONN', 'CLOSE-WAIT',
  'LAST-ACK', 'LISTEN', 'CLOSING', 'UNKNOWN',
] as const;

/**
 * The `processes` of every socket no process is listed for (no -p, TIME-WAIT): one array for
 * all, frozen so that a reader who pushes onto it cannot change every other socket.
 */
const NO_PROCESSES = Object.freeze([]) as unknown as ProcessRef[];

/** `#details` until the -i lines are read (null is a socket without them). */
const NOT_READ = undefined;

/**
 * A socket of ss's output. Its own fields are plain data; `details` is a TcpInfo made on first
 * access, which reads the -i lines when one of its fields is used. Holding the text until then
 * is the price: a snapshot's sockets keep its ~6 MB string alive until each one's details have
 * been read in full, or the sockets are dropped (the monitor keeps two snapshots).
 */
export class ScannedSocket implements SsSocket {
  timer: SocketTimer | null = null;
  uid = 0;
  inode: number | null = null;
  sk: string | null = null;
  shutdown: string | null = null;
  processes: ProcessRef[] = NO_PROCESSES;
  /** The text its -i lines are in, and where: [#infoStart, #infoEnd); #infoStart < 0: none. */
  #text = '';
  #infoStart = -1;
  #infoEnd = -1;
  #details: TcpDetails | null | undefined = NOT_READ;

  constructor(
    public state: TcpState,
    public recvQ: number,
    public sendQ: number,
    public local: SsSocket['local'],
    public peer: SsSocket['peer'],
  ) {}

  /** Notes a -i line, text[start, end) from its leading tab; a second one extends the range. */
  addInfo(text: string, start: number, end: number): void {
    this.#text = text;
    if (this.#infoStart < 0) this.#infoStart = start;
    this.#infoEnd = end;
  }

  /** A TcpInfo, a view that reads the -i lines when a field is used (see ssDetails.ts). */
  get details(): TcpDetails | null {
    if (this.#details !== NOT_READ) return this.#details;
    const d = this.#infoStart < 0 ? null : new TcpInfo(this.#text, this.#infoStart, this.#infoEnd);
    this.#text = '';
    return (this.#details = d);
  }

  /** Set by a reader who knows better (a test, a merge): replaces what the text says. */
  set details(d: TcpDetails | null) {
    this.#details = d;
    this.#text = '';
  }

  get detailsRejected(): Rejected | null {
    const d = this.details;
    return d instanceof TcpInfo ? d.rejected() : null;
  }

  /** A getter on the prototype is not an own property: JSON gets the details from here. */
  toJSON(): Omit<SsSocket, 'detailsRejected'> {
    return {
      state: this.state, recvQ: this.recvQ, sendQ: this.sendQ, local: this.local, peer: this.peer,
      timer: this.timer, uid: this.uid, inode: this.inode, sk: this.sk, shutdown: this.shutdown,
      processes: this.processes, details: this.details,
    };
  }

  [Symbol.for('nodejs.util.inspect.custom')](): Omit<SsSocket, 'detailsRejected'> {
    return this.toJSON();
  }
}

const FEWER_COLUMNS = 'fewer than 5 columns (state, Recv-Q, Send-Q, local, peer)';
const STATE_CODES = TCP_STATES.map(codes);
const STATE_HEADER = codes('State ');
const NETID_HEADER = codes('Netid ');
const USERS = codes('users:');

/** One parse of one text: where it is, and what it found. */
export class SsScanner {
  private readonly sockets: ScannedSocket[] = [];
  private readonly rejected: Rejected[] = [];
  /** The next tab at or after the last token looked at; text.length when there is none. */
  private readonly tabs: TabMemo;
  /** Bounds of the five columns of the line being read. */
  private readonly columns = new Int32Array(10);

  constructor(private readonly text: string) {
    this.tabs = { nextTab: -1, limit: text.length };
  }

  parse(): SsParse {
    const text = this.text;
    let current: ScannedSocket | null = null;
    for (let pos = 0; pos < text.length;) {
      let nl = text.indexOf('\n', pos);
      if (nl < 0) nl = text.length;
      const end = nl > pos && text.charCodeAt(nl - 1) === CR ? nl - 1 : nl;
      const first = text.charCodeAt(pos);
      if (pos === end) {
        // blank
      } else if (first === TAB || first === SPACE) {
        // The -i details of the socket above, noted for later (a line of padding alone, after
        // TIME-WAIT, is blank: that socket's details stay null).
        if (this.skipBlanks(pos, end, true) < end) {
          if (current) current.addInfo(text, pos, end);
          else this.reject(pos, nl, 'details without a socket line');
        }
      } else if ((first === 0x53 && spells(text, pos, STATE_HEADER)) || (first === 0x4e && spells(text, pos, NETID_HEADER))) {
        // The header. What follows it belongs to no socket above it.
        current = null;
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

  /** The end of the token at i: the next space or tab, or the line's end. */
  private tokenEnd(i: number, end: number): number {
    return tokenEnd(this.text, i, end, this.tabs);
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
  private readSocket(pos: number, end: number): ScannedSocket | string {
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
    const s = new ScannedSocket(state, recvQ, sendQ, local, peer);
    return this.readFields(s, i, end) ?? s;
  }

  /** The fields after the peer (`-o`, `-e`, `-p`). Returns a reason on failure. */
  private readFields(s: ScannedSocket, i: number, end: number): string | null {
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
        if (processes.length) s.processes = processes;
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
}
