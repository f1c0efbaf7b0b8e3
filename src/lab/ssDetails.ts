/**
 * The -i line(s) of one socket, read when its `details` are first asked for (see ssScan.ts).
 * A poll of 10,000 sockets has 300,000 of their fields and most readers look at none of them,
 * so the scan only notes where the lines are. The lab reads the words below, found by their
 * first two letters so that the others cost one table look-up each.
 */
import type { Rejected, TcpDetails } from './ss';
import * as ssText from './ssText';
import type { TabMemo } from './ssText';

// tsx compiles each module to CommonJS, where every use of an imported name calls a getter: in
// these loops that was half the parse time. So the names are copied once into local constants.
const { COLON, DOT, SLASH, ZERO, codes, isBlank, isDigit, spells, tokenEnd } = ssText;

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
 * and cost ~17% of the parse. The key order is also the order JSON.stringify prints.
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

/** readDetail's answers besides a token's end. */
const NOT_OURS = -1;
const UNREADABLE = -2;

/**
 * Reads -i lines. One instance serves every socket: a read runs to its end before the next
 * starts (nothing in it awaits), and its scratch state then costs no allocation per socket.
 */
class DetailsReader {
  private text = '';
  /** The next tab at or after the last token looked at; the search stops at the end of the lines being read. */
  private readonly tabs: TabMemo = { nextTab: -1, limit: 0 };
  /** The flags of the line being read: flags[0, flagCount). */
  private readonly flags: string[] = [];
  private flagCount = 0;
  /** Where the last number read ended (see numberTo). */
  private at = 0;
  /** Why the last token was unreadable. */
  private problem: string | null = null;
  /** After read(): the first unreadable token's reason and the start of its line, or null and -1. */
  firstProblem: string | null = null;
  problemLine = -1;

  /**
   * The details in text[start, end): one or more -i lines, each starting with a blank. An
   * unreadable field is left undefined; firstProblem says why.
   */
  read(text: string, start: number, end: number): TcpDetails {
    this.text = text;
    this.tabs.nextTab = -1;
    this.tabs.limit = end;
    this.firstProblem = null;
    this.problemLine = -1;
    const d = newDetails();
    for (let pos = start; pos < end;) {
      let nl = text.indexOf('\n', pos);
      if (nl < 0 || nl > end) nl = end;
      const bad = this.readLine(d, this.skipBlanks(pos, nl), nl);
      if (bad !== null && this.firstProblem === null) {
        this.firstProblem = bad;
        this.problemLine = pos;
      }
      pos = nl + 1;
    }
    this.text = ''; // let the text go when its sockets do
    return d;
  }

  /** The end of the token at i: the next space or tab, or `end`. */
  private tokenEnd(i: number, end: number): number {
    return tokenEnd(this.text, i, end, this.tabs);
  }

  /**
   * The first non-blank at or after i, or `end`. 16 blanks in a row on a line that ends with a
   * blank are ss's padding (every record is padded to the widest): the rest is skipped unread.
   */
  private skipBlanks(i: number, end: number): number {
    const text = this.text;
    const probe = i + 16;
    while (i < end && isBlank(text.charCodeAt(i))) {
      if (++i === probe && isBlank(text.charCodeAt(end - 1))) return end;
    }
    return i;
  }

  /**
   * One -i line from its first token. Its ~30 tokens are looked up by their first two letters;
   * one of the lab's is read in one pass, its value included, which also tells where it ends,
   * so only the others are searched for their end. Returns the first unreadable field's reason.
   */
  private readLine(d: TcpDetails, i: number, end: number): string | null {
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
      // An unreadable value is skipped, not the rest of the line with it: TcpInfo's quick
      // retrans read (which looks at that token only) then always agrees with the full read.
      if (j === UNREADABLE) problem ??= this.problem;
      if (j < 0) j = this.tokenEnd(i, end);
      // The next token, one space on as a rule.
      i = j + 1;
      if (i < end && isBlank(text.charCodeAt(i))) i = this.skipBlanks(i, end);
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

/** The number in text[a, b) as Number reads it (`1e+06`, `5.`); NaN unless it is one >= 0. */
function slowNumberAt(text: string, a: number, b: number): number {
  if (b <= a) return NaN;
  const n = Number(text.slice(a, b));
  return n >= 0 ? n : NaN;
}

const detailsReader = new DetailsReader();

const RETRANS = 'retrans:';
const LF = 10;

/**
 * The -i details of one socket, read from its lines when a field is first used. The monitor
 * reads `retransTotal` of every socket at every poll and nothing else of most: that one is
 * found on its own (a native search of the line for ` retrans:`, ~50 ns), and the whole line,
 * ~1.4 us, is read for any other field. So the fields are accessors on the prototype: JSON
 * (toJSON) and console.log show them all, but a spread or Object.keys sees none; use
 * `toJSON()` for a plain object.
 */
export class TcpInfo implements TcpDetails {
  declare rto?: number;
  declare rtt?: number;
  declare rttvar?: number;
  declare ato?: number;
  declare mss?: number;
  declare cwnd?: number;
  declare ssthresh?: number;
  declare unacked?: number;
  declare lost?: number;
  declare bytesSent?: number;
  declare bytesAcked?: number;
  declare bytesReceived?: number;
  declare bytesRetrans?: number;
  declare segsOut?: number;
  declare segsIn?: number;
  declare lastsnd?: number;
  declare lastrcv?: number;
  declare lastack?: number;
  declare flags: string[];
  /** The text the lines are in (dropped once read) and where: [#start, #end). */
  #text: string;
  readonly #start: number;
  readonly #end: number;
  #all: TcpDetails | null = null;
  #rejected: Rejected | null = null;
  /** From the quick read: -2 not looked for yet, -1 not printed; else `retrans:a/b`. */
  #retrans = -2;
  #retransTotal = -2;

  constructor(text: string, start: number, end: number) {
    this.#text = text;
    this.#start = start;
    this.#end = end;
  }

  get retrans(): number | undefined {
    if (this.#all === null && this.#quickRetrans()) return this.#retrans < 0 ? undefined : this.#retrans;
    return this.toJSON().retrans;
  }

  set retrans(n: number | undefined) {
    this.toJSON().retrans = n;
  }

  get retransTotal(): number | undefined {
    if (this.#all === null && this.#quickRetrans()) return this.#retransTotal < 0 ? undefined : this.#retransTotal;
    return this.toJSON().retransTotal;
  }

  set retransTotal(n: number | undefined) {
    this.toJSON().retransTotal = n;
  }

  /**
   * Reads `retrans:a/b` alone (the last one, as the full read keeps): false when only the
   * full read can tell (not two whole numbers: it reports why). Not printed: -1 and -1.
   */
  #quickRetrans(): boolean {
    if (this.#retrans !== -2) return true;
    const text = this.#text;
    // A slice is a view of the text, not a copy: it bounds the search to this socket's lines.
    const lines = text.slice(this.#start, this.#end);
    // The last one that is a token of its own, not the end of bytes_retrans:. (indexOf, not
    // lastIndexOf: V8's forward search is the faster by far, and there are one or two.)
    let at = -1;
    for (let i = lines.indexOf(RETRANS); i > 0; i = lines.indexOf(RETRANS, i + RETRANS.length)) {
      if (isBlank(lines.charCodeAt(i - 1))) at = i;
    }
    if (at <= 0) {
      this.#retrans = this.#retransTotal = -1;
      return true;
    }
    const v = this.#start + at + RETRANS.length;
    let k = v;
    let a = 0;
    for (let c; isDigit(c = text.charCodeAt(k)); k++) a = a * 10 + c - ZERO;
    if (k === v || k - v > 15 || text.charCodeAt(k) !== SLASH) return false;
    const w = ++k;
    let b = 0;
    for (let c; isDigit(c = text.charCodeAt(k)); k++) b = b * 10 + c - ZERO;
    if (k === w || k - w > 15) return false;
    const c = text.charCodeAt(k);
    if (k < this.#end && !isBlank(c) && c !== LF) return false;
    this.#retrans = a;
    this.#retransTotal = b;
    return true;
  }

  /** The details as a plain object, read from the lines on first use and kept. */
  toJSON(): TcpDetails {
    if (this.#all !== null) return this.#all;
    const d = detailsReader.read(this.#text, this.#start, this.#end);
    if (detailsReader.firstProblem !== null) {
      const line = this.#text.slice(detailsReader.problemLine, this.#end).split('\n', 1)[0]!;
      this.#rejected = { line: line.trimEnd().slice(0, 200), reason: detailsReader.firstProblem };
    }
    this.#text = ''; // let the text go when its sockets are done with it
    return (this.#all = d);
  }

  /** Why a field of these lines did not parse (the first one), or null. Reads them all. */
  rejected(): Rejected | null {
    this.toJSON();
    return this.#rejected;
  }

  [Symbol.for('nodejs.util.inspect.custom')](): TcpDetails {
    return this.toJSON();
  }
}

// The other fields: each reads the lines (once) and answers from the plain object. Enumerable,
// as own data properties would be, for `for...in` and the like.
for (const key of Object.keys(newDetails()) as (keyof TcpDetails)[]) {
  if (key === 'retrans' || key === 'retransTotal') continue;
  Object.defineProperty(TcpInfo.prototype, key, {
    enumerable: true,
    configurable: true,
    get(this: TcpInfo) {
      return this.toJSON()[key];
    },
    set(this: TcpInfo, v: unknown) {
      (this.toJSON() as unknown as Record<string, unknown>)[key] = v;
    },
  });
}
