/**
 * Reading ss's text by index, for the scanner (ssScan.ts), the socket line's fields (ssLine.ts)
 * and the -i details (ssDetails.ts). Every helper takes the whole text and a range [a, b) in it,
 * so nothing is sliced until a value is kept: reading one character from JavaScript costs about
 * 2.5 ns, and a slice is an allocation the GC pays for later.
 */

export const TAB = 9;
export const CR = 13;
export const SPACE = 32;
export const QUOTE = 34;
export const PERCENT = 37;
export const LPAREN = 40;
export const RPAREN = 41;
export const STAR = 42;
export const COMMA = 44;
export const DOT = 46;
export const SLASH = 47;
export const ZERO = 48;
export const COLON = 58;
export const LBRACKET = 91;
export const RBRACKET = 93;

export const isBlank = (c: number): boolean => c === SPACE || c === TAB || c === CR;
export const isDigit = (c: number): boolean => c >= ZERO && c <= ZERO + 9;
export const isHexLetter = (c: number): boolean => (c >= 0x61 && c <= 0x66) || (c >= 0x41 && c <= 0x46);

/** A word's char codes: comparing from an array costs half what comparing from the string does. */
export const codes = (word: string): number[] => [...word].map((c) => c.charCodeAt(0));

/** Whether text[i...] spells `word` (char codes), from its letter `from` on. */
export function spells(text: string, i: number, word: readonly number[], from = 0): boolean {
  for (let k = from; k < word.length; k++) if (text.charCodeAt(i + k) !== word[k]) return false;
  return true;
}

/** The one of `words` that text[a, b) is, if any; `coded` are their char codes, in order. */
export function wordIn<W extends string>(words: readonly W[], coded: readonly number[][], text: string, a: number, b: number): W | undefined {
  for (let k = 0; k < words.length; k++) if (coded[k]!.length === b - a && spells(text, a, coded[k]!)) return words[k];
  return undefined;
}

/** The whole number in text[a, b), digits only; -1 when it is not one. */
export function uintAt(text: string, a: number, b: number): number {
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

/** Where a reader of tokens remembers the next tab, and how far it may look for one. */
export interface TabMemo {
  nextTab: number;
  limit: number;
}

/**
 * The end of the token at i: the next space or tab, or `end`. Spaces come every few
 * characters, so indexOf finds one at once; tabs start the -i lines only, so the next one is
 * remembered (up to `limit`, not the end of a 6 MB text) rather than searched for from every token.
 */
export function tokenEnd(text: string, i: number, end: number, memo: TabMemo): number {
  let j = text.indexOf(' ', i);
  if (j < 0 || j > end) j = end;
  if (memo.nextTab < i) {
    const t = text.indexOf('\t', i);
    memo.nextTab = t < 0 || t > memo.limit ? memo.limit : t;
  }
  return memo.nextTab < j ? memo.nextTab : j;
}
