import { chownSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { AppEventServer, type AppEvent } from './appEvents';
import { monotonic, sleep } from './clock';
import type { Snapshot } from './monitor';
import { RunObservers, type Observed } from './observers';
import type { CaptureMethod } from './packets';
import { fromApp, type TimelineEvent } from './timeline';
import { DisposableStore } from './disposable';
import { errnoNumber } from './errno';
import { installHint, labEnv } from './exec';
import { missingTools } from './preflight';
import { LabError } from './errors';
import type { Logger } from './log';
import { spawnInPty, type LabProcess } from './processes';
import { describe as describeRule, parseRule, RuleSet, type AppliedRule, type Backend } from './rules';
import { pythonFor, pythonSample, realPython } from './samples';
import { Sandbox, type SandboxMode } from './sandbox';
import { balancerCounters, buildTopology, type BalancerRule, type LabHost } from './topology';
import { PORT } from './scenarios/common';
import { LISTENERS, type Action, type Band, type DefaultFigure, type Fix, type MatrixCell, type ProcSpec, type Scenario, type Section, type Stat, type Watch } from './scenarios/types';
import type { TcpState } from './ss';
import { readTimers, setSysctl, type SysctlValue } from './sysctl';
import { makeRunDir } from './tempDirs';
import { LINUX_DEFAULTS, type KernelTimers } from './timers';
import { computeStat, evaluate, matches, type CheckResult, type Evaluation } from './verdict';

export interface RunOptions {
  log: Logger;
  mode?: 'auto' | SandboxMode;
  firewall?: Backend;
  /** The Python that runs the samples (default: python3 from PATH). */
  python?: string;
  signal?: AbortSignal;
  onProgress?: (p: Progress) => void;
  /** Every event of the run (app, lab, socket...), in time order, about half a second behind. */
  onEvent?: (e: TimelineEvent) => void;
  /** Milliseconds between two socket polls (default 100). */
  pollInterval?: number;
  /**
   * The user's own program in place of the scenario's `client`, as argv; `{host}` and `{port}`
   * in it become the server's address. It runs under strace (when installed), whose failing
   * calls become its events, so the same checks judge it.
   */
  clientCommand?: readonly string[];
  /** How packets are captured: `auto` (tcpdump, or capture.py where tcpdump cannot run), or off. */
  capture?: 'auto' | CaptureMethod | 'off';
  /** Each program as it starts: the editor shows it in a terminal. */
  onProcess?: (p: LabProcess) => void;
  /** Once the namespace is up: what the editor's session view shows while the run goes on. */
  onLive?: (live: LiveLab) => void;
  /**
   * The user the programs (the samples, the user's own command) run as, where the lab itself
   * runs as root for someone else: the sudo helper passes the user who ran sudo, so that no
   * program of theirs gets root. The lab's own commands (rules, sysctls, capture) stay root.
   */
  programsAs?: { uid: number; gid: number };
  /**
   * Timers set inside the namespace over the scenario's own (validated like any sysctl). The
   * checks are judged against the timers then in force, so a band follows them where it can.
   */
  sysctls?: Readonly<Record<string, SysctlValue>>;
}

/** A handle on a run in progress, for a live view. */
export interface LiveLab {
  mode: SandboxMode;
  /** Host PID of the namespace's init: `nsenter -t PID -n ss -tan` shows its sockets. */
  pid: number;
  /** The hosts of a scenario with a topology, each with the host PID holding its namespace. */
  hosts?: { name: string; pid: number }[];
  /** Packet and byte counters of the rules applied so far, read from the kernel now. */
  counters(): Promise<Map<string, { packets: number; bytes: number }>>;
  /**
   * Does what a trigger would, now: apply or remove a rule, kill or (re)start a program, set a
   * sysctl. Each step is marked on the timeline like a scripted one. For manual mode.
   */
  perform(actions: readonly Action[]): Promise<void>;
}

export interface Progress {
  id: string;
  /** Seconds since the programs started: the clock the scenario's deadline runs on. */
  elapsed: number;
  /** What the run waits for, as a person says it. */
  waitingFor: string | null;
  /** The band of the awaited check, in seconds after its reference, when known. */
  band: Band | null;
  /** Seconds since that reference (the previous check's event, or a named one). */
  since: number | null;
}

export interface ErrnoValue {
  name: string;
  number: number;
}

/** A statistic over the run's events, as the result shows it. */
export interface Figure {
  label: string;
  stat: Stat['stat'];
  value: number | null;
  unit: string;
  samples: number;
}

/** Kernel state sampled during the run: [seconds since the start, value]. */
export type Series = [number, number][];

export interface ScenarioResult {
  id: string;
  title: string;
  section: Section;
  verdict: 'pass' | 'fail';
  expected: { outcome: string; errno: ErrnoValue | null; seconds: Band | null; says: string };
  measured: { outcome: string | null; errno: ErrnoValue | null; seconds: number | null; says: string | null };
  checks: CheckResult[];
  applied: { id: string; command: string; packets: number | null; bytes: number | null }[];
  sysctls: Record<string, string>;
  /** The kernel's default timers and what the scenario would take with them. */
  defaults: DefaultFigure;
  /** Wall time of the whole run, set-up and teardown included. */
  wallSeconds: number;
  mode: SandboxMode | null;
  explanation: string;
  fixes: readonly Fix[];
  /** Why the lab itself could not run the scenario (not a kernel outcome). */
  error?: string;
  /** Medians, percentiles and peaks over the run (checked or only shown). */
  figures: Figure[];
  /** Sampled kernel state, e.g. `time-wait`: the TIME-WAIT socket count over time. */
  series: Record<string, Series>;
  matrix?: MatrixCell;
  /** The whole stream in time order: app events, lab markers, socket transitions. */
  events: TimelineEvent[];
  /** What the bounded stream had to drop on a long run, and how the sockets were watched. */
  observed: Observed;
  output: Record<string, string>;
}

const WATCHED_STATES: Record<Watch, TcpState> = { 'time-wait': 'TIME-WAIT' };

/** Runs one scenario in a namespace of its own and judges what the kernel did. */
export async function runScenario(scenario: Scenario, options: RunOptions): Promise<ScenarioResult> {
  const started = monotonic();
  const run = new ScenarioRun(scenario, options);
  try {
    return await run.execute(started);
  } finally {
    await run.dispose();
  }
}

/** The longest a program's exit waits for its event stream to close (a child holding it open). */
const EVENTS_DRAIN_MS = 2000;
/** After the last client's events are read: time for the other programs' last events. */
const EXIT_GRACE = 0.3;

class ScenarioRun {
  private readonly store = new DisposableStore();
  private readonly observers: RunObservers;
  private readonly procs = new Map<string, LabProcess>();
  /** Programs that exited and whose last events have been read: nothing more will come from them. */
  private readonly exited = new Set<string>();
  private lastExit = 0;
  private appEvents: AppEventServer | undefined;
  private readonly outputs: Record<string, string> = {};
  private readonly applied = new Map<string, AppliedRule & { host?: string }>();
  private readonly sysctlsSet: Record<string, string> = {};
  private readonly timers: Set<NodeJS.Timeout> = new Set();
  private sandbox: Sandbox | undefined;
  /** The hosts of the scenario's topology; none: everything runs in the sandbox. */
  private hosts = new Map<string, LabHost>();
  /** A rule set per firewall: the sandbox's, or each host's. */
  private readonly rulesets = new Map<Sandbox | LabHost, RuleSet>();
  private readonly balancerRules: BalancerRule[] = [];
  private socketPath = '';
  private runDir = '';
  private defaults: KernelTimers | undefined;
  private inForce: KernelTimers | undefined;
  private wake: (() => void) | undefined;
  private started = 0;
  private readonly series: Record<string, Series> = {};
  private actionError: unknown;
  private readonly log: Logger;

  /** The samples' interpreter, resolved once (no version-manager shim at every start). */
  private readonly python: string;
  /** The interpreter of the programs: the same, unless they run as a user who cannot run it. */
  private programPython = '';

  constructor(private readonly scenario: Scenario, private readonly options: RunOptions) {
    this.log = options.log;
    this.python = realPython(options.python);
    this.observers = new RunObservers({
      log: this.log,
      onEvent: options.onEvent,
      onSnapshot: (snap) => this.sampleSeries(snap),
      pollInterval: options.pollInterval,
      capture: options.capture,
      python: this.python,
      // Every scenario so far is IPv4: one table walk per poll, not two.
      ipv4Only: !(scenario.addresses ?? []).some((a) => a.includes(':')),
    });
  }

  /** The events a verdict reads (the programs' and the lab's), in arrival order. */
  private get events(): readonly AppEvent[] {
    return this.observers.stream.decisive;
  }

  async execute(started: number): Promise<ScenarioResult> {
    const s = this.scenario;
    this.started = started;
    let evaluation: Evaluation | undefined;
    let error: string | undefined;
    try {
      await this.setUp();
      evaluation = await this.watch(started);
    } catch (e) {
      error = e instanceof LabError ? e.describe() : e instanceof Error ? e.message : String(e);
      this.log.error(`[${s.id}] ${error}`);
    }
    const counters = await this.readCounters();
    await this.readBalancers();
    // Nothing after the verdict belongs to the run: the stream is complete, in time order. The
    // last poll shows what the end left: sockets gone, or still in TIME-WAIT.
    await this.observers.close(this.sandbox?.alive ?? false);
    return this.result(started, evaluation, error, counters);
  }

  private async setUp(): Promise<void> {
    const s = this.scenario;
    // A program the scenario needs beyond the basics (nginx, curl): say so before building anything.
    const missing = missingTools(s.requires ?? [], labEnv().PATH ?? '');
    if (missing.length) {
      throw new LabError(`${s.id} needs ${missing.join(' and ')}, not installed here`, {
        field: 'requires', value: missing, hint: missing.map((m) => installHint(m)).join('; '),
      });
    }
    this.programPython = pythonFor(this.options.python, this.options.programsAs);
    const sandbox = (this.sandbox = await Sandbox.create({ log: this.log, mode: this.options.mode, label: s.id }));
    this.store.add(sandbox);
    for (const address of s.addresses ?? []) await sandbox.exec(['ip', 'addr', 'add', address, 'dev', 'lo']);
    const sysctls = { ...s.sysctls, ...this.options.sysctls };
    if (s.topology) {
      // Before any timer: setSysctl below sets each on every host.
      this.hosts = await buildTopology(sandbox, s.topology, this.log, this.firewall);
      this.store.add({ dispose: () => { for (const h of this.hosts.values()) h.dispose(); } });
    }
    // The timers of the host whose programs fail: the client's.
    const timersAt = this.place(s.procs.find((p) => p.name === 'client')?.host ?? s.topology?.hosts[0]?.name);
    this.defaults = await readTimers(timersAt.exec);
    for (const [name, value] of Object.entries(sysctls)) await this.setSysctl(name, value);
    this.inForce = Object.keys(sysctls).length ? await readTimers(timersAt.exec) : this.defaults;
    this.store.add({ dispose: async () => { for (const r of this.rulesets.values()) await r.removeAll(); } });
    this.options.onLive?.({
      mode: sandbox.mode,
      pid: sandbox.pid,
      hosts: [...this.hosts.values()].map((h) => ({ name: h.name, pid: h.pid })),
      counters: async () => (this.applied.size && sandbox.alive ? this.ruleCounters() : new Map()),
      perform: (actions) => this.perform(actions),
    });

    const dir = (this.runDir = makeRunDir());
    this.store.add({ dispose: () => rmSync(dir, { recursive: true, force: true }) });
    this.socketPath = join(dir, 'events.sock');
    this.store.add((this.appEvents = await AppEventServer.listen(this.socketPath, (e) => this.record(e), this.log)));
    const as = this.options.programsAs;
    // The programs' folder and event socket become theirs (a socket is connected to by write permission).
    if (as) for (const path of [dir, this.socketPath]) chownSync(path, as.uid, as.gid);

    this.mark('begin', {});
    // Disposed before the namespace (reverse order): no poll or capture may race its end.
    this.store.add(this.observers);
    if (s.topology) {
      // Sockets and packets where programs run; the flow table where a middlebox forgets.
      const busy = new Set(s.procs.map((p) => p.host));
      const places = [...this.hosts.values()].filter((h) => busy.has(h.name));
      const boxes = s.topology.hosts.filter((h) => h.balancer).map((h) => ({ name: h.name, pid: this.hosts.get(h.name)!.pid }));
      await this.observers.start(places, boxes);
    } else {
      await this.observers.start([sandbox]);
    }
    let begun = false;
    for (const spec of s.procs) {
      if (spec.start === 'later') continue;
      if (!LISTENERS.has(spec.program) && !begun) {
        await this.runBeginTriggers();
        begun = true;
      }
      await this.start(spec);
    }
    if (!begun) await this.runBeginTriggers();
  }

  private async runBeginTriggers(): Promise<void> {
    for (const t of this.scenario.triggers ?? []) if (t.on === 'begin') await this.perform(t.do);
  }

  /** Starts a program and, for a server or proxy, waits until it listens. */
  private async start(spec: ProcSpec): Promise<void> {
    const place = this.place(spec.host);
    // The lab's options first: a supervisor passes everything after its `--` to its worker.
    const own = spec.name === 'client' && this.options.clientCommand ? this.ownCommand(spec, this.options.clientCommand) : null;
    const argv = own ?? place.enter([...this.dropPrivileges(), this.programPython, pythonSample(spec.program), '--name', spec.name, '--events', this.socketPath, ...spec.args]);
    const listensBefore = this.events.filter((e) => e.proc === spec.name && e.type === 'listening').length;
    const t = monotonic();
    const proc = spawnInPty(spec.name, argv, this.log);
    this.mark('started', { target: spec.name, pid: proc.pid }, t);
    this.procs.set(spec.name, proc);
    this.exited.delete(spec.name);
    this.store.add(proc);
    this.options.onProcess?.(proc);
    proc.onExit(() => {
      this.outputs[spec.name] = (this.outputs[spec.name] ?? '') + proc.output;
      const info = proc.exitInfo;
      this.mark('exited', { target: spec.name, code: info?.code ?? null, signal: info?.signal || null }, monotonic());
      // Gone for the verdict once its event stream is read to the end: the terminal can report
      // the exit before the socket delivers the program's last events.
      void (this.appEvents?.drained(spec.name, EVENTS_DRAIN_MS) ?? Promise.resolve()).then(() => {
        if (this.procs.get(spec.name) === proc) this.exited.add(spec.name);
        this.lastExit = monotonic();
        this.wake?.();
      });
    });
    if (!LISTENERS.has(spec.program)) return;
    const deadline = monotonic() + 5;
    while (this.events.filter((e) => e.proc === spec.name && e.type === 'listening').length === listensBefore) {
      if (proc.exitInfo || monotonic() > deadline) {
        throw new LabError(`${spec.name} did not start listening${proc.exitInfo ? ` (exit ${proc.exitInfo.code})` : ' within 5 s'}: ${proc.output.trim().slice(-400)}`);
      }
      await sleep(10);
    }
  }

  /** The user's own program in place of `spec`, `{host}` and `{port}` filled in, under strace. */
  private ownCommand(spec: ProcSpec, command: readonly string[]): string[] {
    const arg = (flag: string) => { const i = spec.args.indexOf(flag); return i >= 0 ? spec.args[i + 1] : undefined; };
    const host = arg('--host') ?? '127.0.0.1';
    const port = arg('--port') ?? String(PORT);
    const argv = command.map((a) => a.replaceAll('{host}', host).replaceAll('{port}', port));
    return this.observers.traced(this.place(spec.host), spec.name, [...this.dropPrivileges(), ...argv], this.runDir, (e) => this.record(e));
  }

  /** The prefix that runs a program as `programsAs` (setpriv, inside the namespace), if set. */
  private dropPrivileges(): string[] {
    const as = this.options.programsAs;
    return as ? ['setpriv', `--reuid=${as.uid}`, `--regid=${as.gid}`, '--clear-groups', '--'] : [];
  }

  /** Where a program, rule or sysctl goes: a host of the topology, or the sandbox. */
  private place(host: string | undefined): Sandbox | LabHost {
    if (!this.scenario.topology) return this.sandbox!;
    const h = host === undefined ? undefined : this.hosts.get(host);
    if (!h) throw new LabError(`no host ${JSON.stringify(host)} in the topology of ${this.scenario.id}`, { field: 'host', value: host });
    return h;
  }

  /** The rule set of a host's firewall (or the sandbox's), made on first use. */
  private rulesFor(host: string | undefined): RuleSet {
    const place = this.place(host);
    let set = this.rulesets.get(place);
    if (!set) {
      set = new RuleSet(place.exec, this.firewall, this.log);
      this.rulesets.set(place, set);
    }
    return set;
  }

  private get firewall(): Backend {
    return this.options.firewall ?? 'iptables';
  }

  private async ruleCounters(): Promise<Map<string, { packets: number; bytes: number }>> {
    const all = new Map<string, { packets: number; bytes: number }>();
    for (const set of this.rulesets.values()) for (const [id, c] of await set.counters()) all.set(id, c);
    return all;
  }

  /** Sets a sysctl inside the namespace and keeps it for the result. */
  private async setSysctl(name: string, value: SysctlValue): Promise<void> {
    const t = monotonic();
    // On every host: each namespace has its own copy of the per-namespace timers.
    for (const where of this.hosts.size ? this.hosts.values() : [this.sandbox!]) await setSysctl(where.exec, name, value);
    this.mark('sysctl', { name, value }, t);
    this.sysctlsSet[name] = Array.isArray(value) ? value.join(' ') : String(value);
  }

  /** The counts a scenario watches (`time-wait`), from each socket poll; a change is a `lab` event. */
  private sampleSeries(snap: Snapshot): void {
    for (const w of this.scenario.watch ?? []) {
      // The sockets the kernel keeps for TCP_TIMEWAIT_LEN after an active close.
      const state = WATCHED_STATES[w];
      let count = 0;
      for (const sock of snap.sockets) if (sock.state === state) count++;
      const points = (this.series[w] ??= []);
      const last = points.at(-1);
      if (last && last[1] === count) continue;
      points.push([snap.t - this.started, count]);
      this.mark(w, { count }, snap.t);
    }
  }

  /** An event that can decide the verdict: a program's (its own, or strace's for it) or the lab's. */
  private record(event: AppEvent | TimelineEvent): void {
    const e = 'source' in event ? (event as TimelineEvent) : fromApp(event);
    this.observers.record(e);
    this.fireTriggers(e);
    this.wake?.();
  }

  /**
   * A marker of something the lab did, on the same clock as the programs' events. Its time is
   * taken before the action starts: an effect (the EOF of a killed peer) can reach a program,
   * on the other core, before the action's own call has returned here.
   */
  private mark(type: string, fields: Record<string, unknown>, t = monotonic()): void {
    this.record({ t, proc: 'lab', type, ...fields, source: 'lab' });
  }

  private fireTriggers(e: AppEvent): void {
    for (const trigger of this.scenario.triggers ?? []) {
      if (trigger.on === 'begin' || !matches(e, trigger.on)) continue;
      const m = trigger.on;
      const count = this.events.filter((x) => matches(x, m)).length;
      if (count !== (m.nth ?? 1)) continue;
      const go = () => {
        this.held(trigger.hold, () => this.perform(trigger.do)).catch((err) => {
          this.actionError = err;
          this.wake?.();
        });
      };
      if (trigger.delay) {
        const timer = setTimeout(() => { this.timers.delete(timer); go(); }, trigger.delay * 1000);
        this.timers.add(timer);
      } else go();
    }
  }

  /**
   * Runs `fn` with the program `name` stopped (SIGSTOP, then SIGCONT): a program that sends all
   * the time cannot slip a packet in while a rule goes in, which under load takes a second.
   */
  private async held(name: string | undefined, fn: () => Promise<void>): Promise<void> {
    const proc = name === undefined ? undefined : this.procs.get(name);
    if (!proc) return fn();
    this.log.info(`[${this.scenario.id}] ${name} stopped (SIGSTOP) while the trigger runs`);
    proc.kill('SIGSTOP');
    try {
      await fn();
    } finally {
      proc.kill('SIGCONT');
    }
  }

  private async perform(actions: readonly Action[]): Promise<void> {
    for (const a of actions) {
      const t = monotonic();
      if ('apply' in a) {
        const { host, ...spec } = a.apply;
        const rule = parseRule({ ...spec, port: spec.port ?? PORT });
        const applied = await this.rulesFor(host).apply(rule);
        this.applied.set(rule.id, { ...applied, ...(host ? { host } : {}) });
        this.mark('fault', { rule: rule.id, command: describeRule(rule), took: monotonic() - t, ...(host ? { host } : {}) }, t);
      } else if ('remove' in a) {
        const applied = this.applied.get(a.remove);
        if (!applied) throw new LabError(`no applied rule ${a.remove} to remove`, { field: 'remove', value: a.remove });
        await this.rulesFor(applied.host).remove(applied);
        this.mark('removed', { rule: a.remove }, t);
      } else if ('kill' in a) {
        const proc = this.procs.get(a.kill);
        if (!proc) throw new LabError(`no process ${a.kill} to kill`, { field: 'kill', value: a.kill });
        proc.kill(a.signal ?? 'SIGKILL');
        this.mark('killed', { target: a.kill, signal: a.signal ?? 'SIGKILL' }, t);
      } else if ('resume' in a) {
        const proc = this.procs.get(a.resume);
        if (!proc) throw new LabError(`no process ${a.resume} to resume`, { field: 'resume', value: a.resume });
        proc.kill('SIGUSR1');
        this.mark('resumed', { target: a.resume }, t);
      } else if ('start' in a) {
        const spec = this.scenario.procs.find((p) => p.name === a.start);
        if (!spec) throw new LabError(`no process ${a.start} to start`, { field: 'start', value: a.start });
        await this.start(spec);
      } else {
        for (const [name, value] of Object.entries(a.sysctl)) await this.setSysctl(name, value);
      }
    }
  }

  /** Waits until the checks are settled, the deadline passes, or the run is cancelled. */
  private async watch(started: number): Promise<Evaluation> {
    const s = this.scenario;
    const timers = this.inForce!;
    // The deadline's clock starts now, with the programs running: building the lab took seconds
    // on a loaded machine, and a scenario's time is for what its programs do.
    const watching = monotonic();
    const deadline = watching + (typeof s.deadline === 'function' ? s.deadline(timers) : s.deadline);
    const clients = s.procs.filter((p) => !LISTENERS.has(p.program)).map((p) => p.name);
    let lastProgress = 0;
    for (;;) {
      if (this.actionError) throw this.actionError;
      const now = monotonic();
      const cancelled = this.options.signal?.aborted ?? false;
      // Once every client has exited and its events are read (and the servers' answers to its
      // last packets had a moment to arrive), nothing more will come.
      const clientsGone = !s.openEnded && clients.every((n) => this.exited.has(n)) && now - this.lastExit > EXIT_GRACE;
      const finished = now >= deadline || cancelled || clientsGone;
      // Every source's last word before judging: the monitor may be between two polls.
      if (finished) await this.observers.settle(this.sandbox?.alive ?? false);
      this.observers.flush(now);
      const ev = evaluate(s.expect, this.events, timers, { start: started, now, finished, exited: this.exited });
      if (ev.done || finished) {
        if (cancelled) throw new LabError('cancelled');
        return ev;
      }
      if (this.options.onProgress && now - lastProgress >= 0.25) {
        lastProgress = now;
        const waiting = ev.checks.find((c) => c.status === 'pending');
        // A stat's band is in its own unit (ms, sockets), not seconds from now: not a time to wait for.
        this.options.onProgress({ id: s.id, elapsed: now - watching, waitingFor: waiting?.says ?? null, band: waiting?.unit ? null : waiting?.band ?? null, since: waiting?.since ?? null });
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 50);
        this.wake = () => { clearTimeout(timer); resolve(); };
      });
      this.wake = undefined;
    }
  }

  /** The middleboxes' own rules and their counters: flows per server, packets of forgotten flows. */
  private async readBalancers(): Promise<void> {
    if (!this.sandbox?.alive) return;
    for (const spec of this.scenario.topology?.hosts ?? []) {
      const host = this.hosts.get(spec.name);
      if (!spec.balancer || !host) continue;
      try {
        this.balancerRules.push(...await balancerCounters(host, spec.balancer, this.firewall));
      } catch (e) {
        this.log.warn(`[${this.scenario.id}] could not read ${spec.name}'s rules: ${e instanceof Error ? e.message : e}`);
      }
    }
  }

  private async readCounters(): Promise<Map<string, { packets: number; bytes: number }>> {
    if (this.applied.size === 0 || !this.sandbox?.alive) return new Map();
    try {
      return await this.ruleCounters();
    } catch (e) {
      this.log.warn(`[${this.scenario.id}] could not read rule counters: ${e instanceof Error ? e.message : e}`);
      return new Map();
    }
  }

  private result(started: number, ev: Evaluation | undefined, error: string | undefined, counters: Map<string, { packets: number; bytes: number }>): ScenarioResult {
    const s = this.scenario;
    const checks = ev?.checks ?? [];
    const primaryIndex = Math.max(0, s.expect.findIndex((c) => c.primary));
    const check = s.expect[primaryIndex]!;
    const got = checks[primaryIndex];
    const expectedErrno = check.kind === 'quiet' || check.kind === 'stat' ? undefined : check.match.errno;
    const errnoOf = (name: unknown): ErrnoValue | null =>
      typeof name === 'string' ? { name, number: errnoNumber(name) ?? -1 } : null;
    const band = check.kind === 'stat' ? null : got?.band ?? (check.kind === 'quiet' ? [check.for, Infinity] as const : null);
    const outcome = check.kind === 'quiet' ? 'quiet' : check.kind === 'stat' ? `${check.stat} ${check.label}` : check.match.type;
    const measuredOutcome = check.kind === 'quiet' ? (got?.status === 'pass' ? 'quiet' : got?.event?.type ?? null)
      : check.kind === 'stat' ? (got?.observed ? outcome : null) : got?.event?.type ?? null;
    // Output of programs still running, after that of earlier runs of the same role; a copy,
    // since the exit handlers keep appending during teardown.
    const output: Record<string, string> = { ...this.outputs };
    for (const p of this.procs.values()) if (!p.exitInfo) output[p.name] = (output[p.name] ?? '') + p.output;
    return {
      id: s.id,
      title: s.title,
      section: s.section,
      verdict: ev?.verdict === 'pass' && !error ? 'pass' : 'fail',
      expected: {
        outcome,
        errno: errnoOf(expectedErrno),
        seconds: band,
        says: got?.says ?? check.says ?? '',
      },
      measured: {
        outcome: measuredOutcome,
        errno: errnoOf(got?.event?.name),
        seconds: check.kind === 'stat' ? null : got?.seconds ?? null,
        says: got?.observed ?? null,
      },
      checks: checks.map((c, i) => (i === primaryIndex ? { ...c, primary: true } : c)),
      applied: [
        ...[...this.applied.values()].map((a) => ({
          id: a.id,
          command: `${a.host ? `${a.host}: ` : ''}${describeRule(a.rule, a.backend)}`,
          packets: counters.get(a.id)?.packets ?? null,
          bytes: counters.get(a.id)?.bytes ?? null,
        })),
        ...this.balancerRules,
      ],
      sysctls: this.sysctlsSet,
      defaults: s.defaults(this.defaults ?? LINUX_DEFAULTS),
      wallSeconds: monotonic() - started,
      mode: this.sandbox?.mode ?? null,
      explanation: s.explanation,
      fixes: s.fixes,
      ...(error ? { error } : {}),
      figures: this.figures(),
      series: this.series,
      ...(s.matrix ? { matrix: s.matrix } : {}),
      events: this.observers.stream.toArray(),
      observed: this.observers.observed,
      output,
    };
  }

  /** The stats the checks judge, then those only shown, each once. */
  private figures(): Figure[] {
    const stats: Stat[] = [...this.scenario.expect.filter((c) => c.kind === 'stat'), ...(this.scenario.figures ?? [])];
    const seen = new Set<string>();
    const out: Figure[] = [];
    for (const st of stats) {
      const key = `${st.proc}/${st.type}/${st.field}/${st.stat}`;
      if (seen.has(key)) continue;
      seen.add(key);
      const { value, samples } = computeStat(this.events, st);
      out.push({ label: st.label, stat: st.stat, value, unit: st.unit, samples });
    }
    return out;
  }

  async dispose(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    const errors = await this.store.dispose();
    for (const e of errors) this.log.warn(`[${this.scenario.id}] cleanup: ${e instanceof Error ? e.message : e}`);
  }
}
