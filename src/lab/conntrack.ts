import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { monotonic } from './clock';
import { labEnv } from './exec';
import type { Logger } from './log';
import { realPython } from './samples';
import type { TimelineEvent } from './timeline';

/**
 * A middlebox's view of the flows through it: its conntrack table, read from
 * /proc/<pid>/net/nf_conntrack of a process in its namespace (by a small poller on the host, no
 * privilege needed, nothing entered), and turned into
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

/**
 * The poller: reads the table every INTERVAL seconds and prints each read, stamped with the
 * CLOCK_MONOTONIC time it began. In its own process, the stamps stay true when the lab's event
 * loop is busy with other hosts' captures: timed on arrival, a flow was once reported forgotten
 * 0.8 s late on a loaded runner. It ends when its stdout is closed (the lab gone).
 */
const POLLER = `import sys, time
path, interval = sys.argv[1], float(sys.argv[2])
due = time.monotonic()
while True:
    t = time.monotonic()
    try:
        with open(path) as f:
            out = "@@poll %.6f\\n%s@@end\\n" % (t, f.read())
    except OSError as e:
        out = "@@failed %s\\n" % e
    try:
        sys.stdout.write(out)
        sys.stdout.flush()
    except OSError:
        sys.exit(0)
    due = max(due + interval, time.monotonic())
    time.sleep(max(0.0, due - time.monotonic()))
`;

export class ConntrackWatch {
  private poller: ChildProcess | undefined;
  private exited: Promise<void> | undefined;
  private last = new Map<string, Flow>();
  /** Per flow, the poll since which no refresh was seen: its time and the timeout shown then. */
  private readonly base = new Map<string, { t: number; timeout: number }>();
  private failed = false;
  private stopped = false;
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
      /** The Python that runs the poller (default: python3 from PATH, behind any shim). */
      python?: string;
      /** The table to read; by default the one of `pid`'s network namespace. */
      file?: string;
    },
  ) {}

  private get file(): string {
    return this.o.file ?? `/proc/${this.o.pid}/net/nf_conntrack`;
  }

  start(): this {
    const child = spawn(realPython(this.o.python), ['-c', POLLER, this.file, String(this.o.interval / 1000)], { stdio: ['ignore', 'pipe', 'pipe'], env: labEnv() });
    this.poller = child;
    this.exited = new Promise((resolve) => child.once('close', () => resolve()));
    child.once('error', (e) => this.cannotRead(e.message));
    let buf = '';
    let err = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => { err = (err + d).slice(-1000); });
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      buf += d;
      for (;;) {
        const nl = buf.indexOf('\n');
        if (nl < 0) return;
        const head = buf.slice(0, nl);
        if (head.startsWith('@@failed ')) {
          buf = buf.slice(nl + 1);
          this.cannotRead(head.slice(9));
          continue;
        }
        const end = buf.indexOf('@@end\n', nl);
        if (end < 0) return;
        const text = buf.slice(nl + 1, end);
        buf = buf.slice(end + 6);
        if (!this.stopped) this.consume(text, Number(head.slice(7)));
      }
    });
    child.once('close', (code, signal) => {
      if (!this.stopped) this.cannotRead(`the poller ended (${signal ?? `exit ${code}`}): ${err.trim()}`);
    });
    return this;
  }

  private cannotRead(why: string): void {
    if (!this.failed) this.o.log.warn(`[conntrack ${this.o.host}] cannot read the table: ${why}`);
    this.failed = true;
  }

  /** One read of the table, made at `t`. */
  private consume(text: string, t: number): void {
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
    if (this.stopped) return;
    this.stopped = true;
    this.poller?.kill('SIGTERM');
    await this.exited;
    if (!final) return;
    const t = monotonic();
    try {
      this.consume(await readFile(this.file, 'utf8'), t);
    } catch (e) {
      this.cannotRead(e instanceof Error ? e.message : String(e));
    }
  }
}
