import { spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable } from 'node:stream';
import { monotonic, sleep } from './clock';
import { labEnv, type Exec } from './exec';
import type { Logger } from './log';
import { parseNetstat } from './netstat';
import { missingTools } from './preflight';
import { connectionKey, parseSs, type SocketTimer, type SsParse, type SsSocket } from './ss';
import { SOCKETS, type TimelineEvent } from './timeline';

/**
 * The socket monitor: polls `ss -tanoie` (with `-p` when asked) and turns each pair of
 * snapshots into transitions, which is what a person watching `watch -n0.1 ss -tanoie`
 * would notice: a socket appears, its state changes, a timer starts, changes kind or counts
 * another retry, the retransmission counter rises, the socket goes.
 *
 * An event's `t` is when the poll that saw the change had ended (the kernel's state was read
 * by then) and `after` about when the poll before it read the table: the change happened in
 * between. With the default 100 ms interval that is the monitor's resolution; packets and the
 * programs' own events carry exact times.
 */

export type Transition = 'new' | 'state' | 'timer' | 'retrans' | 'gone';

export interface MonitorOptions {
  /** Runs argv where the sockets live: a sandbox's exec, or the host's. */
  exec: Exec;
  /**
   * The argv that runs a command where the sockets live (a sandbox's `enter`, or argv as it is
   * on the host). Given, the monitor keeps one shell there that runs the poll command in a loop,
   * instead of spawning nsenter and ss from Node at every poll: 4.2 ms of CPU per poll instead of
   * 7.6 ms, which matters with ten scenarios polling ten times a second on two cores.
   */
  enter?: (argv: readonly string[]) => string[];
  /** Only IPv4 sockets (`ss -4`): one kernel table walk per poll instead of two. */
  ipv4Only?: boolean;
  log: Logger;
  /** Milliseconds between the starts of two polls (a slow poll delays the next, never overlaps it). */
  interval?: number;
  /** Add `-p`: which process owns each socket (costs a scan of /proc). */
  processes?: boolean;
  /** An ss filter, as argv words after the options: `['sport', '=', ':7000']`. */
  filter?: readonly string[];
  /** `auto` (the default): ss, or netstat where ss is missing. */
  tool?: 'auto' | 'ss' | 'netstat';
  /** Keep only the sockets this accepts (a port, a process tree). */
  select?: (s: SsSocket) => boolean;
  /** Called before each poll's command runs (to refresh what `select` needs). */
  beforePoll?: () => void;
  onEvent: (e: TimelineEvent) => void;
  /** Every poll's full socket list, for a live view of the raw state and for counts over time. */
  onSnapshot?: (snapshot: Snapshot) => void;
}

export interface Snapshot {
  t: number;
  sockets: SsSocket[];
  /** The command's own output, for a panel that shows it as a terminal would. */
  raw: string;
}

export interface MonitorStats {
  polls: number;
  /**
   * Wall time of the last and the slowest poll, in ms: command, parse and diff when Node runs
   * the command, parse and diff only when a shell polls in a loop.
   */
  lastMs: number;
  maxMs: number;
  /** The widest gap between two snapshots, in ms: what a stall of the poller would show. */
  maxGapMs: number;
  sockets: number;
  rejectedLines: number;
  events: number;
  failures: number;
}

/** A snapshot as the diff keeps it: the sockets, and their keys once they were needed. */
export interface SocketTable {
  readonly sockets: readonly SsSocket[];
  keys?: string[];
}

export const EMPTY_TABLE: SocketTable = { sockets: [] };

/** The argv of one poll. */
export function pollArgv(tool: 'ss' | 'netstat', processes: boolean, filter: readonly string[] = [], ipv4Only = false): string[] {
  // ss: -t tcp, -a all states, -n numeric, -o timers, -i tcp info, -e uid/inode/cookie.
  // netstat: -t tcp, -a all, -n numeric, -o timers, -e uid and inode. No -i equivalent.
  // Each poll makes the kernel walk its whole established hash table (262,144 buckets here)
  // once per address family, which is most of ss's cost: -4 halves it when no IPv6 is in play.
  if (tool === 'ss') return ['ss', `-tanoie${processes ? 'p' : ''}`, ...(ipv4Only ? ['-4'] : []), ...filter];
  // -W: without it netstat cuts long IPv6 addresses into wrong ones. LC_ALL=C: it translates
  // state names in other locales.
  return ['env', 'LC_ALL=C', 'netstat', `-tanoeW${processes ? 'p' : ''}`, ...(ipv4Only ? ['-4'] : [])];
}

/** The line the polling shell prints after each run of the poll command. */
const MARK = '@@tcp-lab-poll';
const MARK_BYTES = Buffer.from(MARK);

/**
 * The polling shell: a fixed script, the interval and the poll argv as its positional
 * parameters (nothing is interpolated into the script). It ends when its stdout closes.
 */
export function loopArgv(interval: number, argv: readonly string[]): string[] {
  const script = `i=$1; shift; while :; do "$@" || echo "${MARK}-failed $?"; echo "${MARK}" || exit 0; sleep "$i" || exit 0; done`;
  return ['sh', '-c', script, 'tcp-lab-poll', (interval / 1000).toFixed(3), ...argv];
}

/** Picks the tool: ss, or netstat with a note saying what is lost. */
export function chooseTool(tool: MonitorOptions['tool'] = 'auto', path = labEnv().PATH ?? ''): { tool: 'ss' | 'netstat'; note: string | null } {
  if (tool === 'ss' || tool === 'netstat') return { tool, note: null };
  if (missingTools(['ss'], path).length === 0) return { tool: 'ss', note: null };
  if (missingTools(['netstat'], path).length === 0) {
    return {
      tool: 'netstat',
      note: 'ss is not installed (apt-get install iproute2): watching sockets with netstat, which shows states, queues and timers but not the TCP info (rto, retransmissions, cwnd, bytes)',
    };
  }
  return { tool: 'ss', note: 'neither ss nor netstat is installed: apt-get install iproute2' };
}

/** Nothing a reader follows changed: same tuple, state, timer kind and count, retransmissions. */
function unchanged(a: SsSocket, b: SsSocket): boolean {
  return a.state === b.state && a.local.port === b.local.port && a.peer.port === b.peer.port
    && a.local.address === b.local.address && a.peer.address === b.peer.address
    && a.timer?.kind === b.timer?.kind && a.timer?.count === b.timer?.count
    && (a.details?.retransTotal ?? 0) === (b.details?.retransTotal ?? 0);
}

/** Each socket's slot: its 4-tuple, and `#2`, `#3`... for a second socket on the same tuple. */
function slotsOf(table: SocketTable): string[] {
  if (table.keys) return table.keys;
  const seen = new Set<string>();
  const keys = table.sockets.map((s) => {
    const key = connectionKey(s);
    let slot = key;
    for (let n = 2; seen.has(slot); n++) slot = `${key}#${n}`;
    seen.add(slot);
    return slot;
  });
  return (table.keys = keys);
}

/**
 * The events between two snapshots. Sockets are matched by their 4-tuple; two sockets on the
 * same tuple in one snapshot (a listener's SO_REUSEPORT siblings) are told apart by their order.
 * ss lists a table that did not change in the same order, so the common poll (nothing new) is
 * one pass of comparisons with no key built: 10,000 sockets cost about a millisecond.
 */
export function diffSnapshots(before: SocketTable, sockets: readonly SsSocket[], t: number, after: number): { events: TimelineEvent[]; now: SocketTable } {
  const old = before.sockets;
  if (old.length === sockets.length && sockets.every((s, i) => unchanged(old[i]!, s))) {
    return { events: [], now: { sockets, keys: before.keys } };
  }
  const now: SocketTable = { sockets };
  const nowSlots = slotsOf(now);
  const oldSlots = slotsOf(before);
  const oldBySlot = new Map<string, SsSocket>();
  oldSlots.forEach((slot, i) => oldBySlot.set(slot, old[i]!));
  const keyOf = (slot: string) => { const hash = slot.indexOf('#'); return hash < 0 ? slot : slot.slice(0, hash); };
  const events: TimelineEvent[] = [];
  const base = (type: Transition, s: SsSocket, key: string): TimelineEvent => ({
    t, after, source: 'socket', proc: SOCKETS, type, conn: key, state: s.state, recvQ: s.recvQ, sendQ: s.sendQ,
    ...(s.timer ? { timer: timerView(s.timer) } : {}),
    ...(s.processes.length ? { owners: s.processes.map((p) => `${p.name}/${p.pid}`) } : {}),
  });
  const present = new Set(nowSlots);
  sockets.forEach((s, i) => {
    const slot = nowSlots[i]!;
    const key = keyOf(slot);
    const was = oldBySlot.get(slot);
    if (!was) {
      events.push(base('new', s, key));
      return;
    }
    if (unchanged(was, s)) return;
    const ot = was.timer;
    const nt = s.timer;
    // A new state carries its timer (ESTAB -> TIME-WAIT starts the timewait timer): one event.
    if (was.state !== s.state) events.push({ ...base('state', s, key), from: was.state, ...(ot ? { fromTimer: timerView(ot) } : {}) });
    // Time left changes at every poll; the kind and the count are what a reader follows.
    else if ((ot?.kind ?? null) !== (nt?.kind ?? null) || (ot && nt && ot.count !== nt.count)) {
      events.push({ ...base('timer', s, key), fromTimer: ot ? timerView(ot) : null });
    }
    const orx = was.details?.retransTotal;
    const nrx = s.details?.retransTotal;
    if (nrx !== undefined && nrx > (orx ?? 0)) {
      events.push({ ...base('retrans', s, key), retrans: s.details?.retrans ?? null, total: nrx, rto: s.details?.rto ?? null });
    }
  });
  oldSlots.forEach((slot, i) => {
    if (!present.has(slot)) events.push({ ...base('gone', old[i]!, keyOf(slot)), timer: undefined });
  });
  return { events, now };
}

function timerView(t: SocketTimer): { kind: SocketTimer['kind']; ms: number; count: number } {
  return { kind: t.kind, ms: t.ms, count: t.count };
}

export class SocketMonitor {
  private tracked: SocketTable = EMPTY_TABLE;
  private stopped = false;
  private loop: Promise<void> | undefined;
  private queue: Promise<void> = Promise.resolve();
  /** When the last snapshot was taken (about): the next change happened after it. */
  private lastPoll: number | null = null;
  private lastSnapshot: number | null = null;
  private shell: ChildProcessByStdio<null, Readable, Readable> | undefined;
  private stopping = false;
  private readonly wake = new AbortController();
  readonly tool: 'ss' | 'netstat';
  /** Set when the monitor runs degraded (netstat instead of ss), for the user to read. */
  readonly note: string | null;
  readonly stats: MonitorStats = { polls: 0, lastMs: 0, maxMs: 0, maxGapMs: 0, sockets: 0, rejectedLines: 0, events: 0, failures: 0 };

  constructor(private readonly options: MonitorOptions) {
    const chosen = chooseTool(options.tool);
    this.tool = chosen.tool;
    this.note = chosen.note;
  }

  /** Starts polling in the background. */
  start(): this {
    if (this.stopped || this.loop) return this;
    this.loop = this.options.enter ? this.runShell(this.options.enter) : this.run();
    return this;
  }

  private argv(): string[] {
    return pollArgv(this.tool, this.options.processes ?? false, this.options.filter, this.options.ipv4Only);
  }

  /** Polls from Node: one command per poll. */
  private async run(): Promise<void> {
    const interval = this.options.interval ?? 100;
    while (!this.stopped) {
      const started = monotonic();
      try {
        await this.poll();
      } catch (e) {
        if (this.stopped) return;
        if (this.failed(e)) return;
      }
      const wait = interval - (monotonic() - started) * 1000;
      if (wait > 0) await sleep(wait, this.wake.signal);
    }
  }

  /** Counts a failed poll; true when the monitor should give up (it never worked). */
  private failed(e: unknown): boolean {
    this.stats.failures++;
    // One failure (the namespace closing, a timeout under load) is not the end; many in a row are.
    if (this.stats.failures > 20 && this.stats.polls === 0) {
      this.options.log.warn(`socket monitor stopped: ${e instanceof Error ? e.message : e}`);
      return true;
    }
    return false;
  }

  /** Polls from a shell where the sockets live: each snapshot ends with a marker line. */
  private runShell(enter: (argv: readonly string[]) => string[]): Promise<void> {
    const argv = enter(loopArgv(this.options.interval ?? 100, this.argv()));
    this.options.log.command(argv, 'monitor');
    // Its own process group: nsenter forks to enter the PID namespace, so the shell is a
    // grandchild, and only a signal to the group reaches it (and the ss or sleep it runs).
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: labEnv(), detached: true });
    this.shell = child;
    // Bytes, not strings: a 5 MB table arrives in ~80 chunks, and decoding and searching each
    // as text cost more than parsing it. The marker is looked for with Buffer.indexOf, and a
    // snapshot is decoded once, whole.
    let parts: Buffer[] = [];
    let tail: Buffer = Buffer.alloc(0);
    let err = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => { err = (err + d).slice(-2000); });
    child.stdout.on('data', (chunk: Buffer) => {
      parts.push(chunk);
      // The marker may straddle two chunks: look at the end of the last one too.
      const seam = Buffer.concat([tail, chunk.subarray(0, MARK_BYTES.length + 32)]);
      tail = chunk.subarray(Math.max(0, chunk.length - MARK_BYTES.length - 32));
      if (!chunk.includes(MARK_BYTES) && !seam.includes(MARK_BYTES)) {
        // A snapshot larger than this is not a socket table: drop it rather than grow without end.
        if (parts.length > 4096) parts = [];
        return;
      }
      let all: Buffer = Buffer.concat(parts);
      for (;;) {
        const at = all.indexOf(MARK_BYTES);
        const end = at < 0 ? -1 : all.indexOf(10, at);
        if (end < 0) break;
        const status = all.toString('latin1', at + MARK_BYTES.length, end);
        const out = all.toString('utf8', 0, at);
        all = all.subarray(end + 1);
        if (this.stopping) continue;
        if (status.startsWith('-failed')) {
          if (this.failed(new Error(`${this.tool} failed${status.slice(7)}: ${err.trim()}`))) this.killShell();
          continue;
        }
        const t = monotonic();
        this.take(out, this.lastPoll ?? t, t);
        this.lastPoll = t;
      }
      parts = all.length ? [all] : [];
      tail = all.subarray(Math.max(0, all.length - MARK_BYTES.length - 32));
    });
    return new Promise<void>((resolve) => {
      child.once('error', (e) => { this.failed(e); resolve(); });
      child.once('close', () => resolve());
    });
  }

  /**
   * One poll from Node (never two at once). Not while a polling shell runs: its snapshot could
   * arrive after this one and undo it; stop(true) ends the shell, then polls.
   */
  poll(): Promise<void> {
    if (this.shell && !this.stopping) return Promise.reject(new Error('poll() while the polling shell runs: use stop(true)'));
    const next = this.queue.then(() => this.pollOnce());
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async pollOnce(): Promise<void> {
    const started = monotonic();
    this.options.beforePoll?.();
    const out = await this.options.exec(this.argv(), { timeoutMs: 10_000 });
    this.take(out.stdout, this.lastPoll ?? started, monotonic(), started);
    this.lastPoll = started;
  }

  /** One snapshot: parse, keep what is selected, diff against the last one, report. */
  private take(raw: string, after: number, t: number, started = t): void {
    const parsed: SsParse = this.tool === 'ss' ? parseSs(raw) : parseNetstat(raw, { wide: true });
    const select = this.options.select;
    const sockets = select ? parsed.sockets.filter(select) : parsed.sockets;
    // The first poll has nothing before it: every socket is `new`, seen by then.
    const { events, now } = diffSnapshots(this.tracked, sockets, t, after);
    this.tracked = now;
    const s = this.stats;
    if (this.lastSnapshot !== null) s.maxGapMs = Math.max(s.maxGapMs, (t - this.lastSnapshot) * 1000);
    this.lastSnapshot = t;
    s.polls++;
    s.sockets = sockets.length;
    s.rejectedLines += parsed.rejected.length;
    s.events += events.length;
    for (const e of events) this.options.onEvent(e);
    this.options.onSnapshot?.({ t, sockets, raw });
    s.lastMs = (monotonic() - started) * 1000;
    s.maxMs = Math.max(s.maxMs, s.lastMs);
  }

  private killShell(): void {
    const pid = this.shell?.pid;
    if (pid === undefined || this.shell?.exitCode !== null || this.shell.signalCode !== null) return;
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }

  /** Stops the loop; with `finalPoll`, takes one last look first (what the end of a run saw). */
  async stop(finalPoll = false): Promise<void> {
    if (this.stopped) return;
    // The shell first: a snapshot it took before the final poll must not arrive after it.
    this.stopping = true;
    this.killShell();
    if (this.shell) await this.loop;
    if (finalPoll) await this.poll().catch(() => undefined);
    this.stopped = true;
    this.wake.abort();
    await this.loop;
    await this.queue;
  }

  dispose(): Promise<void> {
    return this.stop(false);
  }
}
