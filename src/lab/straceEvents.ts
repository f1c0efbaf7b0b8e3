import { parseCall, parseStraceLine, splitArgs, type CallResult, type StraceRecord } from './straceParse';
import { SocketCalls } from './straceSockets';
import type { TimelineEvent } from './timeline';

/**
 * strace lines to timeline events, shaped like the samples' own
 * (`{type:'error', op:'connect', errno:111, name:'ECONNREFUSED'}`), so the verdict judges a
 * user's program like a sample. This file joins unfinished calls to their resumed ends and
 * reports the program's signals and its exit; straceSockets.ts gives socket calls their meaning.
 */

/** Signals that say nothing about a connection and would flood the file (Go sends SIGURG often). */
export const QUIET_SIGNALS: readonly string[] = ['SIGCHLD', 'SIGWINCH', 'SIGURG', 'SIGALRM', 'SIGPROF', 'SIGVTALRM', 'SIGIO'];

export interface StraceStats {
  lines: number;
  /** Lines of no known shape (strace's own messages, a cut line). */
  unparsed: number;
  events: number;
  /** EAGAIN/EWOULDBLOCK from non-blocking calls: normal, counted, not reported. */
  wouldBlock: number;
  /** EINTR/ERESTART*: a signal interrupted a call (it is usually redone). */
  interrupted: number;
  /** A `<... resumed>` whose start was not seen. */
  orphanResumed: number;
  /** Exits of threads and child processes (only the program's own exit is an event). */
  otherExits: number;
  /** Signals the program ignores (SIGPIPE in Python, Node, Go): not events. */
  ignoredSignals: number;
}

type Disposition = 'default' | 'ignored' | 'handled';

const MAX_PENDING = 4096;

/**
 * Turns strace lines into timeline events. State is bounded: calls in progress per thread, one
 * small record per open socket fd (straceFds.ts), and signal dispositions per process.
 */
export class StraceParser {
  readonly stats: StraceStats = { lines: 0, unparsed: 0, events: 0, wouldBlock: 0, interrupted: 0, orphanResumed: 0, otherExits: 0, ignoredSignals: 0 };
  private readonly pending = new Map<number, { name: string; ts: number; text: string; started: boolean }>();
  private readonly sockets = new SocketCalls(this.stats, (realtime, type, fields) => this.event(realtime, type, fields));
  /** The program's own pid: strace's first line is its execve. */
  private rootPid: number | undefined;
  /** Signal dispositions by pid, and the latest set by anyone (what a new child inherits). */
  private readonly dispositions = new Map<number, Map<string, Disposition>>();
  private readonly latestDisposition = new Map<string, Disposition>();

  constructor(
    /** The program's name in the scenario (`client`). */
    readonly proc: string,
    /** CLOCK_REALTIME - CLOCK_MONOTONIC: `offsetSeconds(measureClockOffset())` (clock.ts). */
    readonly offset: number,
  ) {}

  /** The events one line yields (most lines yield none). Never throws on odd input. */
  line(text: string): TimelineEvent[] {
    this.stats.lines++;
    const out: TimelineEvent[] = [];
    let record: StraceRecord | undefined;
    try {
      record = parseStraceLine(text);
    } catch {
      record = undefined;
    }
    if (!record) {
      if (text.trim()) this.stats.unparsed++;
      return out;
    }
    this.record(record, out);
    this.stats.events += out.length;
    return out;
  }

  private record(r: StraceRecord, out: TimelineEvent[]): void {
    this.rootPid ??= r.pid;
    switch (r.kind) {
      case 'unfinished': {
        if (this.pending.size >= MAX_PENDING) this.pending.delete(this.pending.keys().next().value!);
        // A blocking connect shows its start now, not when it returns seconds later.
        const args = r.name === 'connect' ? splitArgs(`${r.text})`)?.args : undefined;
        const started = args ? this.sockets.connectStart(r.pid, r.ts, args, out) : false;
        this.pending.set(r.pid, { name: r.name, ts: r.ts, text: r.text, started });
        return;
      }
      case 'resumed': {
        const start = this.pending.get(r.pid);
        this.pending.delete(r.pid);
        // Without its start, the arguments printed at entry (the fd, the address) are lost.
        if (!start || start.name !== r.name) {
          this.stats.orphanResumed++;
          // The tail still parses (`, [4]) = 0`); its time is the return, so no duration is added.
          const call = parseCall(r.text);
          if (call) this.call(r.pid, r.ts, r.name, [], { ...call.result, duration: undefined }, out);
          else this.stats.unparsed++;
          return;
        }
        const call = parseCall(start.text + r.text);
        if (call) this.call(r.pid, start.ts, r.name, call.args, call.result, out, start.started);
        else this.stats.unparsed++;
        return;
      }
      case 'call':
        this.call(r.pid, r.ts, r.name, r.args, r.result, out);
        return;
      case 'signal': {
        if (QUIET_SIGNALS.includes(r.signal)) return;
        const disposition = this.dispositions.get(r.pid)?.get(r.signal) ?? this.latestDisposition.get(r.signal);
        // A traced process stops for every signal, ignored ones too; an ignored one did nothing.
        if (disposition === 'ignored') {
          this.stats.ignoredSignals++;
          return;
        }
        out.push(this.event(r.ts, 'signal', { signal: r.signal, pid: r.pid, ...(disposition ? { disposition } : {}) }));
        return;
      }
      case 'exit':
        if (r.pid !== this.rootPid) {
          this.stats.otherExits++;
          return;
        }
        out.push(this.event(r.ts, 'exit', r.signal ? { code: null, signal: r.signal, pid: r.pid } : { code: r.code, pid: r.pid }));
        return;
    }
  }

  private call(pid: number, ts: number, name: string, args: string[], res: CallResult, out: TimelineEvent[], started = false): void {
    if (name === 'execve') {
      // execve resets caught signals to their default; ignored ones stay ignored.
      const own = this.dispositions.get(pid);
      if (own && res.ret === '0') for (const [sig, d] of own) if (d === 'handled') own.set(sig, 'default');
      return;
    }
    if (name === 'rt_sigaction') {
      const handler = /^\{sa_handler=(\w+)/.exec(args[1] ?? '')?.[1];
      const sig = args[0];
      if (!handler || !sig || res.ret !== '0') return;
      const d: Disposition = handler === 'SIG_IGN' ? 'ignored' : handler === 'SIG_DFL' ? 'default' : 'handled';
      let own = this.dispositions.get(pid);
      if (!own) {
        if (this.dispositions.size >= MAX_PENDING) this.dispositions.delete(this.dispositions.keys().next().value!);
        this.dispositions.set(pid, (own = new Map()));
      }
      own.set(sig, d);
      this.latestDisposition.set(sig, d);
      return;
    }
    this.sockets.call(pid, ts, name, args, res, out, started);
  }

  private event(realtime: number, type: string, fields: Record<string, unknown>): TimelineEvent {
    return { t: realtime - this.offset, source: 'strace', proc: this.proc, type, ...fields };
  }
}
