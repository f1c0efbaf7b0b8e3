import { readFile } from 'node:fs/promises';
import { monotonic } from './clock';
import type { Logger } from './log';
import type { TimelineEvent } from './timeline';

/**
 * A middlebox's view of the flows through it: its conntrack table, read from
 * /proc/<pid>/net/nf_conntrack of a process in its namespace (nothing spawned), and turned into
 * what a person watching `conntrack -L` would notice: a flow appears, changes state, is
 * refreshed by a packet (its timeout jumps back up), is forgotten.
 */

export interface Flow {
  /** The original direction, as the client's socket names it: `198.18.0.2:43256>198.18.0.10:80`. */
  key: string;
  state: string;
  /** Seconds left before conntrack forgets it. */
  timeout: number;
  /** Where the flow really goes: the reply's source (the server, after DNAT). */
  to: string;
  assured: boolean;
}

const TUPLE = /src=(\S+) dst=(\S+) sport=(\d+) dport=(\d+)/g;

/** Parses /proc/net/nf_conntrack; TCP flows only. */
export function parseConntrack(text: string): Flow[] {
  const flows: Flow[] = [];
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f[2] !== 'tcp' || f.length < 8) continue;
    const tuples = [...line.matchAll(TUPLE)];
    if (tuples.length < 2) continue;
    const [o, r] = [tuples[0]!, tuples[1]!];
    flows.push({
      key: `${o[1]}:${o[3]}>${o[2]}:${o[4]}`,
      state: f[5]!,
      timeout: Number(f[4]),
      to: `${r[1]}:${r[3]}`,
      assured: line.includes('[ASSURED]'),
    });
  }
  return flows;
}

export class ConntrackWatch {
  private timer: NodeJS.Timeout | undefined;
  private last = new Map<string, Flow>();
  /** Per flow, the poll since which no refresh was seen: its time and the timeout shown then. */
  private readonly base = new Map<string, { t: number; timeout: number }>();
  private reading: Promise<void> | undefined;
  private failed = false;
  polls = 0;

  constructor(
    private readonly o: {
      /** The host's name: events carry it as their `proc`. */
      host: string;
      /** Host PID of a process inside the middlebox's network namespace. */
      pid: number;
      interval: number;
      log: Logger;
      onEvent: (e: TimelineEvent) => void;
    },
  ) {}

  start(): this {
    const tick = () => {
      this.reading = this.poll().finally(() => {
        this.reading = undefined;
        if (this.timer !== undefined) this.timer = setTimeout(tick, this.o.interval);
      });
    };
    this.timer = setTimeout(tick, 0);
    return this;
  }

  private async poll(): Promise<void> {
    let text: string;
    try {
      text = await readFile(`/proc/${this.o.pid}/net/nf_conntrack`, 'utf8');
    } catch (e) {
      if (!this.failed) this.o.log.warn(`[conntrack ${this.o.host}] cannot read the table: ${e instanceof Error ? e.message : e}`);
      this.failed = true;
      return;
    }
    const t = monotonic();
    this.polls++;
    const now = new Map(parseConntrack(text).map((f) => [f.key, f]));
    const emit = (type: string, f: Flow, extra: Record<string, unknown> = {}) =>
      this.o.onEvent({ t, proc: this.o.host, type, source: 'conntrack', conn: f.key, flow: f.key, to: f.to, state: f.state, timeout: f.timeout, ...extra });
    for (const [key, f] of now) {
      const before = this.last.get(key);
      const base = this.base.get(key);
      if (!before) emit('flow-new', f);
      else if (before.state !== f.state) emit('flow-state', f, { from: before.state });
      // The timeout counts down between packets and a packet of the flow sets it back up. The
      // table shows whole seconds, truncated: without a packet, the shown value can be at most
      // one second above what counting down from the base gives.
      else if (base && f.timeout > base.timeout + 1 - (t - base.t)) emit('flow-refresh', f, { idle: Math.round((t - base.t) * 10) / 10 });
      else continue;
      this.base.set(key, { t, timeout: f.timeout });
    }
    for (const key of this.base.keys()) if (!now.has(key)) this.base.delete(key);
    // The table lists no expired entry (reading it reaps them), so a flow whose last seen
    // timeout was about to run out went at its timeout, to the poll's resolution.
    const soon = 1 + this.o.interval / 1000;
    for (const [key, f] of this.last) if (!now.has(key)) emit('flow-gone', f, { why: f.timeout <= soon ? `timed out in ${f.state}` : 'removed' });
    this.last = now;
  }

  /** Stops polling; `final` reads the table once more first. */
  async stop(final = false): Promise<void> {
    const timer = this.timer;
    this.timer = undefined;
    clearTimeout(timer);
    await this.reading;
    if (final) await this.poll();
  }
}
