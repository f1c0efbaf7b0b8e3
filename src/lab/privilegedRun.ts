/**
 * One scenario running in the privileged helper, as the editor's session sees it: the programs
 * (RemoteProcess), the events, the progress and the live handle arrive as messages and are
 * handed to the same callbacks `runScenario` takes.
 */
import { LabError } from './errors';
import type { FromHelper, ToHelper } from './helperProtocol';
import type { Logger } from './log';
import { KILLED_WITH_HELPER, RemoteProcess, type LabProgram } from './remoteProcess';
import type { LiveLab, RunOptions, ScenarioResult } from './runner';
import type { Scenario } from './scenarios';
import { LINUX_DEFAULTS } from './timers';

/** RunOptions, with programs that live in the helper. `mode` is ignored: the helper is root. */
export type PrivilegedRunOptions = Omit<RunOptions, 'log' | 'onProcess'> & {
  /** Where the run's engine log lines go (default: the lab's log). */
  log?: Logger;
  onProcess?: (p: LabProgram) => void;
};

export type Request = Omit<Extract<ToHelper, { type: 'counters' }>, 'seq'> | Omit<Extract<ToHelper, { type: 'perform' }>, 'seq'>;
export type Reply = Extract<FromHelper, { type: 'counters' | 'performed' }>;

type RunMessage = Extract<FromHelper, { type: 'process' | 'data' | 'exit' | 'event' | 'progress' | 'live' | 'result' }>;

/** A scenario running in the helper, as the editor's session sees it. */
export class PrivilegedRun {
  /** The latest program of each role (a restarted client replaces the first). */
  readonly processes = new Map<string, RemoteProcess>();
  live: LiveLab | undefined;
  readonly done: Promise<ScenarioResult>;
  readonly log: Logger;
  private readonly programs = new Map<number, RemoteProcess>();
  private settle!: { resolve: (r: ScenarioResult) => void; reject: (e: LabError) => void };
  private finished = false;

  constructor(
    readonly id: string,
    readonly scenario: Scenario,
    private readonly options: PrivilegedRunOptions,
    lablog: Logger,
    private readonly send: (m: ToHelper) => void,
    private readonly request: (m: Request) => Promise<Reply | undefined>,
  ) {
    this.log = options.log ?? lablog;
    this.done = new Promise((resolve, reject) => (this.settle = { resolve, reject }));
  }

  /** Cancels the run; the helper tears it down and `done` resolves with the result. */
  stop(): void {
    if (!this.finished) this.send({ type: 'stop', runId: this.id });
  }

  receive(m: RunMessage): void {
    if (this.finished) return;
    const o = this.options;
    switch (m.type) {
      case 'process': {
        const p = new RemoteProcess(m.name, m.pid, m.argv, this.id, m.proc, this.send);
        this.programs.set(m.proc, p);
        this.processes.set(m.name, p);
        o.onProcess?.(p);
        return;
      }
      case 'data': this.programs.get(m.proc)?.data(m.data); return;
      case 'exit': this.programs.get(m.proc)?.exit({ code: m.code, signal: m.signal }); return;
      case 'event': o.onEvent?.(m.event); return;
      case 'progress': o.onProgress?.(m.progress); return;
      case 'live':
        this.live = {
          mode: m.mode,
          pid: m.pid,
          ...(m.hosts ? { hosts: m.hosts } : {}),
          counters: async () => {
            const r = await this.request({ type: 'counters', runId: this.id });
            return new Map(r?.type === 'counters' ? r.counters : []);
          },
          perform: async (actions) => {
            const r = await this.request({ type: 'perform', runId: this.id, actions: [...actions] });
            if (r?.type !== 'performed') throw new LabError('the lab helper did not carry out the actions (it exited, or took over 30 s)');
            if (r.error) throw new LabError(r.error.message, { field: r.error.field, value: r.error.value, hint: r.error.hint });
          },
        };
        o.onLive?.(this.live);
        return;
      case 'result':
        this.end();
        this.settle.resolve(m.result);
        return;
      default: {
        const never: never = m;
        this.log.warn(`lab helper: unknown message ${JSON.stringify(never).slice(0, 100)}`);
      }
    }
  }

  /** The helper refused the run (a bad option, an unknown scenario) or could not run it. */
  fail(e: LabError): void {
    if (this.finished) return;
    this.end();
    this.settle.reject(e);
  }

  helperGone(): void {
    this.fail(new LabError('the privileged lab helper exited during the run', { hint: 'run the scenario again: the editor asks for the password once more' }));
  }

  private end(): void {
    this.finished = true;
    for (const p of this.programs.values()) p.exit(KILLED_WITH_HELPER);
  }
}

/**
 * What `runScenario` returns when the lab itself could not run the scenario: here, when the
 * helper refused the run or went away during it. Nothing was judged; `error` says why.
 */
export function failedResult(run: PrivilegedRun, error: string, wallSeconds: number): ScenarioResult {
  const s = run.scenario;
  const primary = s.expect.find((c) => c.primary) ?? s.expect[0];
  const output: Record<string, string> = {};
  for (const p of run.processes.values()) output[p.name] = p.output;
  return {
    id: s.id,
    title: s.title,
    section: s.section,
    verdict: 'fail',
    expected: { outcome: '', errno: null, seconds: null, says: primary?.says ?? '' },
    measured: { outcome: null, errno: null, seconds: null, says: null },
    checks: [],
    applied: [],
    sysctls: {},
    defaults: s.defaults(LINUX_DEFAULTS),
    wallSeconds,
    mode: run.live?.mode ?? null,
    explanation: s.explanation,
    fixes: s.fixes,
    error,
    figures: [],
    series: {},
    events: [],
    observed: { dropped: 0, socketPolls: 0, slowestPollMs: 0, packets: 0, capture: null, notes: [] },
    output,
  };
}
