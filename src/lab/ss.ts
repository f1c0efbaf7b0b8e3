/**
 * The parser of `ss -tanoie` (and `-p`) output: every field a person reads there, as data.
 *
 * ss prints one line per socket, then, with -i, the TCP info on a second line that starts with a
 * tab. Fields after the two addresses are `name:value` tokens, `name:(a,b,c)` groups and a few
 * bare words; their order varies between iproute2 versions, so they are read by name. A line that
 * does not parse is returned as rejected, with the reason: the monitor keeps going.
 *
 * Speed matters: the monitor parses a poll of 10,000 sockets several times a second, 5 to 7 MB of
 * text. So the scan (ssScan.ts) reads each socket's own line (ssLine.ts) and only notes where
 * its -i line is; that line is read (ssDetails.ts) when the socket's `details` are first asked
 * for. A -i line that does not parse is therefore found then, and reported by the socket
 * (`detailsRejected`), not in `SsParse.rejected`; `detailsRejections()` reads them all.
 */
import { SsScanner, TCP_STATES } from './ssScan';
import { endpointAt, timerTimeAt } from './ssLine';

export { TCP_STATES };

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
  /** Empty for most sockets: then one shared frozen array (copy it before changing it). */
  processes: ProcessRef[];
  /**
   * The -i details; null without -i, and for a socket ss prints none for (TIME-WAIT). From ss
   * this is a getter that reads the -i line on first access: JSON.stringify prints it (the
   * socket has a toJSON), but a spread `{ ...socket }` does not copy it.
   */
  details: TcpDetails | null;
  /**
   * ss only: why the socket's -i line did not parse, or null. Reading it reads the details. A
   * bad field keeps the fields before it on its line, and ends that line's reading.
   */
  readonly detailsRejected?: Rejected | null;
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

/**
 * Every -i line of these sockets that did not parse. It reads all their details: the whole cost
 * lazy reading saves, for a caller (a test, a check of a capture) who wants to know.
 */
export function detailsRejections(sockets: readonly SsSocket[]): Rejected[] {
  const out: Rejected[] = [];
  for (const s of sockets) {
    const r = s.detailsRejected;
    if (r) out.push(r);
  }
  return out;
}

/** The connection key the event stream uses: `127.0.0.1:47062>127.0.0.1:7000`. */
export function connectionKey(s: Pick<SsSocket, 'local' | 'peer'>): string {
  const e = (x: Endpoint) => `${x.family === 6 ? `[${x.address}]` : x.address}:${x.port ?? '*'}`;
  return `${e(s.local)}>${e(s.peer)}`;
}
