// A lab run as the editor sees it: the live state its views draw (processes, rules with their
// counters, timers, what the run waits for) and a stop. Free of 'vscode' so it runs in plain Node.
import { monotonic } from '../lab/clock';
import { LabError } from '../lab/errors';
import type { Logger } from '../lab/log';
import { runScenarioPrivileged, type PrivilegedLab } from '../lab/privileged';
import type { LabProgram } from '../lab/remoteProcess';
import { runScenario, type LiveLab, type Progress, type RunOptions, type ScenarioResult } from '../lab/runner';
import { deadlineOf, type Scenario } from '../lab/scenarios';
import type { SysctlValue } from '../lab/sysctl';
import type { TimelineEvent } from '../lab/timeline';

export type SessionState = 'running' | 'stopping' | 'done';

export interface SessionProcess {
  name: string;
  pid: number;
  proc: LabProgram;
  exit: { code: number; signal: number } | null;
}

export interface SessionRule {
  id: string;
  command: string;
  removed: boolean;
  packets: number | null;
  bytes: number | null;
}

export type SessionOptions = Omit<RunOptions, 'signal' | 'onProgress' | 'onProcess' | 'onLive' | 'log'> & {
  log: Logger;
  /** The session's root helper (sudo path): the run goes through it instead of this process. */
  lab?: PrivilegedLab;
};

type Listener<T> = (value: T) => void;

export class LabSession {
  state: SessionState = 'running';
  progress: Progress | null = null;
  result: ScenarioResult | undefined;
  live: LiveLab | undefined;
  /** The latest program of each role (a restarted client replaces the first). */
  readonly processes = new Map<string, SessionProcess>();
  readonly rules = new Map<string, SessionRule>();
  readonly sysctls = new Map<string, string>();
  readonly done: Promise<ScenarioResult>;
  /** Seconds after its programs have started at which the run gives up, with the timers it will set. */
  readonly deadline: number;
  private readonly startedAt = monotonic();
  private progressAt = 0;
  private readonly controller = new AbortController();
  private readonly changeListeners = new Set<Listener<LabSession>>();
  private readonly processListeners = new Set<Listener<SessionProcess>>();

  constructor(readonly scenario: Scenario, options: SessionOptions) {
    this.deadline = deadlineOf({ ...scenario, sysctls: { ...scenario.sysctls, ...options.sysctls } as Record<string, SysctlValue> });
    const { lab, onEvent, ...rest } = options;
    const callbacks = {
      ...rest,
      signal: this.controller.signal,
      onProgress: (p: Progress) => { this.progress = p; this.progressAt = monotonic(); this.changed(); },
      onProcess: (proc: LabProgram) => this.addProcess(proc),
      onLive: (live: LiveLab) => { this.live = live; this.changed(); },
      onEvent: (e: TimelineEvent) => { this.labEvent(e); onEvent?.(e); },
    };
    this.done = (lab ? runScenarioPrivileged(lab, scenario, callbacks) : runScenario(scenario, callbacks)).then((r) => {
      this.result = r;
      this.state = 'done';
      this.progress = null;
      for (const a of r.applied) {
        const rule = this.rules.get(a.id);
        if (rule) Object.assign(rule, { packets: a.packets, bytes: a.bytes });
      }
      this.changed();
      return r;
    });
  }

  /**
   * Seconds the run has been watching its programs (the deadline's clock: it starts once the lab
   * is built and the programs run); before that, seconds since the start, spent setting up.
   */
  get elapsed(): number {
    if (this.result) return this.result.wallSeconds;
    return this.progress ? this.progress.elapsed + (monotonic() - this.progressAt) : monotonic() - this.startedAt;
  }

  /** Cancels the run; the lab tears down (namespace, rules, processes) and `done` resolves. */
  stop(): void {
    if (this.state !== 'running') return;
    this.state = 'stopping';
    this.controller.abort();
    this.changed();
  }

  onDidChange(listener: Listener<LabSession>): { dispose(): void } {
    this.changeListeners.add(listener);
    return { dispose: () => this.changeListeners.delete(listener) };
  }

  /** Each program as it starts (the editor opens a terminal on it); those already started first. */
  onDidStartProcess(listener: Listener<SessionProcess>): { dispose(): void } {
    for (const p of this.processes.values()) listener(p);
    this.processListeners.add(listener);
    return { dispose: () => this.processListeners.delete(listener) };
  }

  /** Applies or lifts a rule, kills or starts a program, now (manual mode). */
  async perform(actions: Parameters<LiveLab['perform']>[0]): Promise<void> {
    if (this.state !== 'running' || !this.live) throw new LabError('the lab is not running', { hint: 'start one first' });
    await this.live.perform(actions);
  }

  /** Reads the applied rules' packet counters from the kernel, while the namespace lives. */
  async refreshCounters(): Promise<void> {
    if (!this.live || this.state === 'done' || ![...this.rules.values()].some((r) => !r.removed)) return;
    const counters = await this.live.counters().catch(() => new Map<string, { packets: number; bytes: number }>());
    let moved = false;
    for (const [id, c] of counters) {
      const rule = this.rules.get(id);
      if (rule && (rule.packets !== c.packets || rule.bytes !== c.bytes)) {
        Object.assign(rule, c);
        moved = true;
      }
    }
    if (moved) this.changed();
  }

  private addProcess(proc: LabProgram): void {
    const entry: SessionProcess = { name: proc.name, pid: proc.pid, proc, exit: null };
    this.processes.set(proc.name, entry);
    proc.onExit((e) => { entry.exit = e; this.changed(); });
    for (const l of this.processListeners) l(entry);
    this.changed();
  }

  /** The lab's own markers say which rules and timers are in force. */
  private labEvent(e: TimelineEvent): void {
    if (e.source !== 'lab') return;
    const f = e as TimelineEvent & Record<string, unknown>;
    if (e.type === 'fault' && typeof f.rule === 'string') {
      this.rules.set(f.rule, { id: f.rule, command: String(f.command ?? f.rule), removed: false, packets: null, bytes: null });
    } else if (e.type === 'removed' && typeof f.rule === 'string') {
      const rule = this.rules.get(f.rule);
      if (rule) rule.removed = true;
    } else if (e.type === 'sysctl' && typeof f.name === 'string') {
      this.sysctls.set(f.name, Array.isArray(f.value) ? f.value.join(' ') : String(f.value));
    } else return;
    this.changed();
  }

  private changed(): void {
    for (const l of this.changeListeners) l(this);
  }
}

const secs = (s: number) => `${s < 10 ? s.toFixed(1) : Math.round(s)} s`;

/**
 * What a long wait looks like as a countdown: the awaited event, the band it is expected in,
 * and the time left until the band's end (or, with no band, until the run gives up).
 */
export function describeWait(p: Progress | null, deadline: number, elapsed: number): string {
  if (!p) return `waiting for the lab to be built and its programs to start: ${secs(elapsed)}`;
  const { band, since } = p;
  const waiting = p.waitingFor ?? 'the programs';
  if (band && since !== null && Number.isFinite(band[1])) {
    const due = band[0] - since;
    return `waiting for ${waiting}: expected ${band[0].toFixed(1)}-${band[1].toFixed(1)} s after its cue, ` +
      `${due > 0 ? `in ${secs(due)}` : `due now (${secs(Math.max(0, band[1] - since))} left)`}`;
  }
  if (band && since !== null) {
    return `waiting for ${waiting}: ${secs(since)} of ${secs(band[0])}`;
  }
  return `waiting for ${waiting}: ${secs(elapsed)} elapsed, gives up in ${secs(Math.max(0, deadline - elapsed))}`;
}
