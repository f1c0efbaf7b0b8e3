import { join } from 'node:path';
import { monotonic } from './clock';
import { LabError } from './errors';
import type { Logger } from './log';
import { SocketMonitor, type Snapshot } from './monitor';
import { ConntrackWatch } from './conntrack';
import type { Exec } from './exec';
import { PacketCapture, type CaptureMethod } from './packets';
import type { Sandbox } from './sandbox';
import { STRACE_MISSING, straceArgv, straceAvailable, StraceTail } from './strace';
import { EventStream, Reorder, type TimelineEvent } from './timeline';

export interface ObserversOptions {
  log: Logger;
  /** Every event, in time order, about half a second behind the run. */
  onEvent?: (e: TimelineEvent) => void;
  /** Every socket poll, for figures sampled over the run (the TIME-WAIT count). */
  onSnapshot?: (snap: Snapshot) => void;
  /** Milliseconds between two socket polls (default 100). */
  pollInterval?: number;
  capture?: 'auto' | CaptureMethod | 'off';
  python?: string;
  /** No IPv6 in the scenario: the monitor walks one table per poll, not two. */
  ipv4Only: boolean;
}

/** Where sockets and packets are watched: the sandbox, or one host of a topology (named). */
export interface WatchedPlace extends Pick<Sandbox, 'enter' | 'mode' | 'mappedSubIds'> {
  name?: string;
  exec: Exec;
}

/** What the result says about how the run was watched. */
export interface Observed {
  /** Events the bounded stream dropped (oldest first). */
  dropped: number;
  socketPolls: number;
  slowestPollMs: number;
  packets: number;
  capture: CaptureMethod | null;
  /** What the user should know: a fallback taken, a source missing, their command traced. */
  notes: string[];
}

/**
 * Everything that watches one run and the one stream it feeds: the socket monitor, the packet
 * capture, strace for a user's program, and the programs' and the lab's own events (`record`).
 */
export class RunObservers {
  readonly stream = new EventStream();
  private readonly reorder: Reorder;
  private closed = false;
  private readonly monitors: SocketMonitor[] = [];
  private readonly captures: PacketCapture[] = [];
  private readonly conntracks: ConntrackWatch[] = [];
  private readonly tails: StraceTail[] = [];
  private readonly notes: string[] = [];
  /** The timer each socket had at the last poll, by connection key. */
  private readonly timerOf = new Map<string, string>();

  constructor(private readonly options: ObserversOptions) {
    this.reorder = new Reorder(0.5, (e) => options.onEvent?.(e));
  }

  /**
   * Starts a socket monitor and a packet capture in each place: the sandbox, or each host of a
   * topology (whose events then carry the host's name as `at`), and a conntrack watch on each
   * middlebox.
   */
  async start(places: readonly WatchedPlace[], middleboxes: readonly { name: string; pid: number }[] = []): Promise<void> {
    const tag = (place: WatchedPlace) => (e: TimelineEvent): TimelineEvent => (place.name ? { ...e, at: place.name } : e);
    for (const place of places) {
      const tagged = tag(place);
      const monitor = new SocketMonitor({
        exec: place.exec,
        enter: (argv) => place.enter(argv),
        ipv4Only: this.options.ipv4Only,
        log: this.options.log,
        interval: this.options.pollInterval ?? 100,
        processes: true,
        onEvent: (e) => this.observe(tagged(e)),
        onSnapshot: this.options.onSnapshot,
      }).start();
      this.monitors.push(monitor);
      if (monitor.note && !this.notes.includes(monitor.note)) this.notes.push(monitor.note);
    }
    for (const box of middleboxes) {
      this.conntracks.push(new ConntrackWatch({
        host: box.name, pid: box.pid, python: this.options.python, interval: Math.max(this.options.pollInterval ?? 100, 200), log: this.options.log, onEvent: (e) => this.observe(e),
      }).start());
    }
    const method = this.options.capture ?? 'auto';
    if (method === 'off') return;
    // Side by side: each capture resolves once its capturer listens.
    const started = await Promise.allSettled(places.map((place) => {
      const tagged = tag(place);
      return PacketCapture.start({
        sandbox: place, log: this.options.log, method, python: this.options.python,
        ...(place.name ? { interface: 'any' } : {}),
        onEvent: (e) => this.observe(tagged(e)),
        onStopped: (why) => this.notes.push(`packet capture${place.name ? ` on ${place.name}` : ''} stopped early: ${why}`),
      });
    }));
    for (const [i, r] of started.entries()) {
      if (r.status === 'fulfilled') {
        this.captures.push(r.value);
        continue;
      }
      // A missing capturer costs the packets, not the run.
      const e: unknown = r.reason;
      const from = places[i]!.name ? ` from ${places[i]!.name}` : '';
      this.notes.push(`no packets on the timeline${from}: ${e instanceof LabError ? e.describe() : e instanceof Error ? e.message : e}`);
    }
  }

  /**
   * The argv that runs a user's program under strace (when installed): its failing connect(),
   * recv() or send() come back as its `error` events, as a sample would report them.
   */
  traced(sandbox: Pick<Sandbox, 'enter'>, name: string, argv: readonly string[], dir: string, record: (e: TimelineEvent) => void): string[] {
    if (!straceAvailable()) {
      this.notes.push(STRACE_MISSING);
      return sandbox.enter(argv);
    }
    this.notes.push(`${name}: your command (${argv.join(' ').slice(0, 200)}), its errors read by strace`);
    const file = join(dir, `strace-${name}.txt`);
    this.tails.push(new StraceTail({ file, proc: name, log: this.options.log, onEvent: record }).start());
    return sandbox.enter(straceArgv(file, argv));
  }

  /** An event that can decide the verdict: a program's (its own, or strace's for it) or the lab's. */
  record(e: TimelineEvent): void {
    this.stream.push(e);
    if (!this.closed) this.reorder.push(e);
  }

  /** An event no program reported (a socket transition, a packet): on the timeline, never a trigger. */
  private observe(e: TimelineEvent): void {
    // Two hosts may see one tuple (a direct flow between them): their timers are apart.
    const key = typeof e.conn === 'string' ? `${e.at ?? ''}|${e.conn}` : '';
    if (e.source === 'socket' && typeof e.conn === 'string') {
      const kind = (e.timer as { kind?: string } | undefined)?.kind;
      if (e.type === 'gone' || !kind) this.timerOf.delete(key);
      else this.timerOf.set(key, kind);
    } else if (e.source === 'packet' && (e.type === 'keepalive' || e.type === 'window-probe') && typeof e.conn === 'string') {
      // A keepalive and a zero-window probe are the same segment on the wire (seq one below
      // snd_nxt, no data); the sender's own timer tells them apart. The packets' view of the
      // peer's window can be wrong: a capture on lo sees window updates that a DROP rule then
      // discards before the sender gets them.
      const kind = this.timerOf.get(key);
      if (kind === 'persist' && e.type === 'keepalive') e = { ...e, type: 'window-probe', by: 'the sender\'s persist timer' };
      else if (kind === 'keepalive' && e.type === 'window-probe') e = { ...e, type: 'keepalive', by: 'the sender\'s keepalive timer' };
    }
    this.stream.push(e);
    if (!this.closed) this.reorder.push(e);
  }

  /** Releases the events the reorder window has held long enough. */
  flush(now = monotonic()): void {
    this.reorder.flush(now);
  }

  /** The last word of every source before judging: a final socket poll, strace's last lines. */
  async settle(sandboxAlive: boolean): Promise<void> {
    if (sandboxAlive) await Promise.all([...this.monitors, ...this.conntracks].map((m) => m.stop(true)));
    await Promise.all(this.tails.map((t) => t.stop()));
  }

  /** Stops every source and releases the rest of the stream: nothing after this belongs to the run. */
  async close(sandboxAlive: boolean): Promise<void> {
    if (this.closed) return;
    await Promise.all([...this.monitors, ...this.conntracks].map((m) => m.stop(sandboxAlive)));
    await Promise.all(this.captures.map((c) => c.dispose()));
    await Promise.all(this.tails.map((t) => t.stop()));
    this.reorder.flush(monotonic(), true);
    this.closed = true;
  }

  get observed(): Observed {
    return {
      dropped: this.stream.dropped.total,
      socketPolls: this.monitors.reduce((n, m) => n + m.stats.polls, 0),
      slowestPollMs: Math.max(0, ...this.monitors.map((m) => m.stats.maxMs)),
      packets: this.captures.reduce((n, c) => n + c.stats.packets, 0),
      capture: this.captures[0]?.method ?? null,
      notes: this.notes,
    };
  }

  /** Disposed before the namespace: no poll or capture may race its end. */
  async dispose(): Promise<void> {
    await Promise.all(this.monitors.map((m) => m.dispose()));
    await Promise.all(this.conntracks.map((c) => c.stop()));
    await Promise.all(this.captures.map((c) => c.dispose()));
    await Promise.all(this.tails.map((t) => t.stop()));
  }
}
