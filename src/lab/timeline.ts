import type { AppEvent } from './appEvents';

/**
 * The one event model: every source (the samples' own events, the lab's markers, socket
 * transitions from `ss`, failing syscalls from strace, packets) becomes a TimelineEvent on
 * CLOCK_MONOTONIC, with the connection it concerns when there is one. The verdict, the CLI
 * report, `--events FILE` and the editor's timeline all read this one type.
 */
/** `conntrack`: a middlebox's flow table (conntrack.ts). */
export type Source = 'app' | 'lab' | 'socket' | 'strace' | 'packet' | 'conntrack';

export interface TimelineEvent extends AppEvent {
  source: Source;
  /** The 4-tuple, from the side that owns the socket: `127.0.0.1:47062>127.0.0.1:7000`. */
  conn?: string;
}

/** The `proc` of events no program reported: socket transitions and packets. */
export const SOCKETS = 'sockets';
export const WIRE = 'wire';

/** An app event as the timeline carries it (a lab marker has proc `lab`). */
export function fromApp(e: AppEvent): TimelineEvent {
  return { ...e, source: e.proc === 'lab' ? 'lab' : 'app' };
}

/**
 * The run's events, bounded: a long run or a reconnect storm of thousands of sockets keeps at
 * most `capacity` events, dropping the oldest first, and counts what it dropped. Events that
 * decide a verdict (app events, strace's for a user's program, lab markers) are kept apart from the high-volume sources
 * so that a storm of socket transitions cannot push them out.
 */
export class EventStream {
  private readonly kept: TimelineEvent[] = [];
  private readonly ring: (TimelineEvent | undefined)[];
  private head = 0;
  private size = 0;
  private droppedCount = 0;
  private readonly droppedBySource: Partial<Record<Source, number>> = {};
  private readonly listeners = new Set<(e: TimelineEvent) => void>();

  constructor(readonly capacity = 100_000, private readonly keptCapacity = 100_000) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`capacity must be a positive integer, got ${capacity}`);
    this.ring = new Array(capacity);
  }

  push(e: TimelineEvent): void {
    if (e.source === 'app' || e.source === 'lab' || e.source === 'strace') {
      if (this.kept.length >= this.keptCapacity) {
        this.kept.shift();
        this.countDrop(e.source);
      }
      this.kept.push(e);
    } else {
      if (this.size === this.capacity) {
        const old = this.ring[this.head]!;
        this.countDrop(old.source);
        this.head = (this.head + 1) % this.capacity;
        this.size--;
      }
      this.ring[(this.head + this.size) % this.capacity] = e;
      this.size++;
    }
    for (const l of this.listeners) l(e);
  }

  private countDrop(source: Source): void {
    this.droppedCount++;
    this.droppedBySource[source] = (this.droppedBySource[source] ?? 0) + 1;
  }

  /** Called for every event as it arrives (in arrival order, not time order). */
  subscribe(listener: (e: TimelineEvent) => void): { dispose(): void } {
    this.listeners.add(listener);
    return { dispose: () => this.listeners.delete(listener) };
  }

  get dropped(): { total: number; bySource: Partial<Record<Source, number>> } {
    return { total: this.droppedCount, bySource: { ...this.droppedBySource } };
  }

  /** App events, strace's events for a user's program and lab markers, in arrival order: what verdicts and triggers read. */
  get decisive(): readonly TimelineEvent[] {
    return this.kept;
  }

  get length(): number {
    return this.kept.length + this.size;
  }

  /** Everything kept, in time order (a stable sort: equal times keep their arrival order). */
  toArray(): TimelineEvent[] {
    const out = [...this.kept];
    for (let i = 0; i < this.size; i++) out.push(this.ring[(this.head + i) % this.capacity]!);
    return out.sort((a, b) => a.t - b.t);
  }
}

/**
 * Puts events from sources with different delays back in time order for a live consumer: an
 * event is released once the clock is `window` seconds past it, so a socket transition polled
 * 100 ms after the app event that caused it still comes out after it. An event older than what
 * was already released comes out at once, marked `late`, rather than being lost.
 */
export class Reorder {
  private pending: TimelineEvent[] = [];
  private released = -Infinity;

  constructor(private readonly window: number, private readonly emit: (e: TimelineEvent) => void) {}

  push(e: TimelineEvent): void {
    if (e.t < this.released) {
      this.emit({ ...e, late: true });
      return;
    }
    this.pending.push(e);
  }

  /** Releases what is older than `now - window`; with `all`, everything (end of the run). */
  flush(now: number, all = false): void {
    const cut = all ? Infinity : now - this.window;
    if (!this.pending.some((e) => e.t <= cut)) return;
    this.pending.sort((a, b) => a.t - b.t);
    let i = 0;
    while (i < this.pending.length && this.pending[i]!.t <= cut) this.emit(this.pending[i++]!);
    this.released = Math.max(this.released, this.pending[i - 1]!.t);
    this.pending = this.pending.slice(i);
  }
}
