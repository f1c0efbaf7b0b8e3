/**
 * The table's columns and what counts as a change between two refreshes. No DOM: the page
 * draws from it, and test/socketRows.test.ts runs it in Node.
 */
import type { ParsedRow } from '../src/protocol';

/** A change stays marked this long, so a 100 ms refresh does not make it a flicker. */
export const HOLD_MS = 2000;

/** The fields a reader follows: the time left on a timer changes at every refresh and is not one. */
export const COMPARED = ['state', 'recvQ', 'sendQ', 'timerKind', 'retries', 'rto', 'cwnd', 'retrans', 'process'] as const;
export type Compared = (typeof COMPARED)[number];
export type Field = Compared | 'local' | 'peer' | 'left';

export const COLUMNS: { title: string; field: Field; num?: boolean; tip: string }[] = [
  { title: 'State', field: 'state', tip: 'TCP state' },
  { title: 'Local', field: 'local', tip: 'local address:port' },
  { title: 'Peer', field: 'peer', tip: 'peer address:port' },
  { title: 'Recv-Q', field: 'recvQ', num: true, tip: 'bytes received, not yet read by the program (a listener: connections waiting for accept)' },
  { title: 'Send-Q', field: 'sendQ', num: true, tip: 'bytes sent, not yet acknowledged by the peer (a listener: its backlog)' },
  { title: 'Timer', field: 'timerKind', tip: 'on: retransmission; keepalive; timewait; persist: zero window probe' },
  { title: 'Left', field: 'left', num: true, tip: 'time left on the timer' },
  { title: 'Retries', field: 'retries', num: true, tip: 'retransmissions, or keepalive probes sent, so far' },
  { title: 'RTO', field: 'rto', num: true, tip: 'retransmission timeout, ms' },
  { title: 'cwnd', field: 'cwnd', num: true, tip: 'congestion window, segments' },
  { title: 'Retrans', field: 'retrans', num: true, tip: 'retransmitted segments in all' },
  { title: 'Process', field: 'process', tip: 'the processes that hold the socket (name/pid)' },
];

/** A row's cells as the table shows them. */
export function cells(r: ParsedRow): Record<Field, string> {
  const num = (n: number | null) => (n === null ? '' : String(n));
  return {
    state: r.state, local: r.local, peer: r.peer, recvQ: String(r.recvQ), sendQ: String(r.sendQ),
    timerKind: r.timer?.kind ?? '', left: r.timer ? timeLeft(r.timer.ms) : '', retries: r.timer ? String(r.timer.count) : '',
    rto: num(r.rto), cwnd: num(r.cwnd), retrans: num(r.retrans), process: r.process,
  };
}

export function timeLeft(ms: number): string {
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
}

export interface Counts {
  added: number;
  changed: number;
  gone: number;
}

/**
 * Which rows changed since the previous refresh, and which of their fields; a mark is held
 * HOLD_MS. The first refresh (and the first after a reset) marks nothing: there is nothing to
 * compare it with.
 */
export class RowChanges {
  private previous: Map<string, ParsedRow> | null = null;
  private readonly changes = new Map<string, { at: number; fields: Set<Compared>; isNew: boolean }>();

  /** A new target, or a refresh that read nothing: the next one is not compared with the last. */
  reset(): void {
    this.previous = null;
    this.changes.clear();
  }

  update(rows: readonly ParsedRow[], now: number): Counts {
    const counts = { added: 0, changed: 0, gone: 0 };
    const next = new Map(rows.map((r) => [r.key, r]));
    if (this.previous) {
      for (const r of rows) {
        const was = this.previous.get(r.key);
        if (!was) {
          this.changes.set(r.key, { at: now, fields: new Set(), isNew: true });
          counts.added++;
          continue;
        }
        const a = cells(was);
        const b = cells(r);
        const fields = new Set(COMPARED.filter((f) => a[f] !== b[f]));
        if (fields.size) {
          this.changes.set(r.key, { at: now, fields, isNew: false });
          counts.changed++;
        }
      }
      for (const key of this.previous.keys()) if (!next.has(key)) counts.gone++;
    }
    for (const [key, c] of this.changes) if (!next.has(key) || now - c.at > HOLD_MS) this.changes.delete(key);
    this.previous = next;
    return counts;
  }

  /** The row's mark at `now` ('' for none), and the fields to mark in it. */
  mark(key: string, now: number): { mark: '' | 'new' | 'changed'; fields: ReadonlySet<string> } {
    const c = this.changes.get(key);
    if (!c || now - c.at > HOLD_MS) return { mark: '', fields: new Set() };
    return { mark: c.isNew ? 'new' : 'changed', fields: c.fields };
  }
}
