/**
 * The lab through sudo, for hosts that forbid unprivileged user namespaces (the rootless
 * sandbox's unshare is refused): the editor asks for the user's password once, starts one
 * privileged helper for the session (`dist/lab-helper.js` under `sudo -S`, see sudo.ts), and
 * runs every scenario there. `runScenarioPrivileged` takes the callbacks `runScenario` takes,
 * so the editor's session code calls one or the other.
 */
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { monotonic } from './clock';
import { LabError } from './errors';
import {
  decodeLine, encodeMessage, LineSplitter, parseToHelper, scenarioRef,
  type ErrorBody, type FromHelper, type HostRequest, type HostRuleInfo, type HostSweepInfo, type ToHelper,
} from './helperProtocol';
import type { ProtectedEndpoint } from './hostGuard';
import { parseHostTag, type HostOwner } from './hostRulesBackend';
import type { Backend, FaultRule } from './rules';
import { Logger, silentLogger, type LogLevel } from './log';
import { failedResult, PrivilegedRun, type PrivilegedRunOptions, type Reply, type Request } from './privilegedRun';
import type { ScenarioResult } from './runner';
import { Sandbox } from './sandbox';
import type { Scenario } from './scenarios';
import { startWithSudo } from './sudo';

export interface PrivilegedLabOptions {
  /** The user's password, from a password box: it goes to sudo's stdin once, and nowhere else. */
  password: string;
  /** dist/lab-helper.js. */
  helper: string;
  /** The Node that runs the helper (default: this one, so node-pty's binary matches). */
  node?: string;
  log: Logger;
  sudo?: string;
  /** Time for sudo and the helper to start (default 30 s). */
  timeoutMs?: number;
}

const LEVELS = new Set<LogLevel>(['trace', 'debug', 'info', 'warn', 'error']);

type HostReply = Extract<FromHelper, { type: 'host' }>;
/** A host request before its seq is given (Omit spread over the union). */
type HostAsk = HostRequest extends infer T ? (T extends unknown ? Omit<T, 'seq'> : never) : never;
type AnyRequest = Request | HostAsk;

const labError = (b: ErrorBody): LabError => new LabError(b.message, { field: b.field, value: b.value, hint: b.hint });

/** The helper's argv. Inside VS Code, process.execPath is Electron: it runs as Node only when told. */
export function helperArgv(node: string, helper: string): string[] {
  const electron = Boolean(process.versions.electron) && node === process.execPath;
  return [...(electron ? ['env', 'ELECTRON_RUN_AS_NODE=1'] : []), node, resolve(helper)];
}

/** One privileged helper for an editor session. */
export class PrivilegedLab {
  /** The helper's pid (root's: signals from the user do not reach it; closing the pipe does). */
  pid = 0;
  uid = -1;
  /** Seconds from `start` until the helper said it was ready, sudo's password check included. */
  startSeconds = 0;
  /** The owner in the tags of the host rules the helper applies (the helper process). */
  owner: HostOwner | undefined;
  /**
   * The sweep asked of the helper as it starts: host rules of owners that were killed (an
   * earlier helper, a root editor). Undefined if it failed or the helper went first.
   */
  startSweep: Promise<HostSweepInfo | undefined> = Promise.resolve(undefined);
  private readonly runs = new Map<string, PrivilegedRun>();
  /** Replies awaited by `seq`: counters and performed actions. Undefined when the helper went. */
  private readonly replies = new Map<number, (m: Reply | HostReply | undefined) => void>();
  private readonly exitListeners: (() => void)[] = [];
  private readonly lines: LineSplitter;
  private nextRun = 0;
  private nextSeq = 0;
  private gone = false;
  private ready: { resolve: () => void; reject: (e: LabError) => void } | undefined;
  readonly exited: Promise<void>;

  private constructor(private readonly child: ChildProcessWithoutNullStreams, private readonly log: Logger) {
    this.lines = new LineSplitter((line) => this.receive(line));
    this.exited = new Promise((done) => child.once('close', (code: number | null, signal: NodeJS.Signals | null) => {
      this.gone = true;
      // At the editor's deactivate the log channel throws on write: the rest must still run.
      try { this.log.info(`lab helper exited (${signal ? `signal ${signal}` : `exit ${code}`})`); } catch { /* window gone */ }
      this.ready?.reject(new LabError(`the lab helper exited before it was ready (${signal ?? `exit ${code}`})`));
      for (const run of this.runs.values()) run.helperGone();
      this.runs.clear();
      for (const reply of this.replies.values()) reply(undefined);
      this.replies.clear();
      for (const l of this.exitListeners) l();
      done();
    }));
    child.stdin.on('error', () => { /* the exit handler reports */ });
    child.stdout.on('data', (d: string) => this.lines.push(d));
    const errLines = new LineSplitter((line) => this.log.warn(`[lab-helper] ${line}`));
    child.stderr.on('data', (d: string) => errLines.push(d));
  }

  /** Asks sudo (with the password, once) to start the helper; resolves when it is ready as root. */
  static async start(options: PrivilegedLabOptions): Promise<PrivilegedLab> {
    const t0 = monotonic();
    if (!existsSync(options.helper)) {
      throw new LabError('the privileged lab helper is missing', { field: 'helper', value: options.helper, hint: 'reinstall the extension: dist/lab-helper.js ships with it' });
    }
    const argv = helperArgv(options.node ?? process.execPath, options.helper);
    const { child, first } = await startWithSudo({ password: options.password, argv, log: options.log, sudo: options.sudo, timeoutMs: options.timeoutMs });
    const lab = new PrivilegedLab(child, options.log);
    const ready = new Promise<void>((resolve, reject) => (lab.ready = { resolve, reject }));
    lab.lines.push(first);
    child.stdout.resume();
    child.stderr.resume();
    const timer = setTimeout(() => lab.ready?.reject(new LabError('the lab helper did not say it was ready within 10 s')), 10_000);
    try {
      await ready;
    } catch (e) {
      await lab.dispose();
      throw e;
    } finally {
      clearTimeout(timer);
      lab.ready = undefined;
    }
    lab.startSeconds = monotonic() - t0;
    // Not awaited: a slow iptables lock must not hold up the start.
    lab.startSweep = lab.hostSweep().catch((e: unknown) => {
      options.log.warn(`lab helper: the sweep of old host rules failed: ${e instanceof LabError ? e.describe() : String(e)}`);
      return undefined;
    });
    options.log.info(`lab helper ready as root (pid ${lab.pid}) in ${lab.startSeconds.toFixed(2)} s`);
    return lab;
  }

  get alive(): boolean {
    return !this.gone;
  }

  onExit(listener: () => void): void {
    this.exitListeners.push(listener);
  }

  /** Starts a scenario in the helper; its programs, events and result come back on the run. */
  run(scenario: Scenario, options: PrivilegedRunOptions = {}): PrivilegedRun {
    const run = new PrivilegedRun(`r${++this.nextRun}`, scenario, options, this.log, (m) => this.send(m), (m) => this.request(m));
    let ref: ReturnType<typeof scenarioRef>;
    try {
      ref = scenarioRef(scenario);
    } catch (e) {
      run.fail(e as LabError);
      return run;
    }
    if (this.gone) {
      run.helperGone();
      return run;
    }
    this.runs.set(run.id, run);
    void run.done.finally(() => this.runs.delete(run.id)).catch(() => {});
    const o = options;
    this.send({
      type: 'run', runId: run.id, ...ref,
      options: {
        firewall: o.firewall, python: o.python, capture: o.capture, pollInterval: o.pollInterval,
        sysctls: o.sysctls ? { ...o.sysctls } : undefined,
        clientCommand: o.clientCommand ? [...o.clientCommand] : undefined,
      },
    });
    if (o.signal?.aborted) run.stop();
    else o.signal?.addEventListener('abort', () => run.stop(), { once: true });
    return run;
  }

  /**
   * Applies a rule to the host's own traffic, owned by the helper. `protect`: the endpoints the
   * editor runs over; the helper adds its own view and refuses a rule that would cut one.
   */
  async hostApply(rule: FaultRule, backend: Backend, protect: readonly ProtectedEndpoint[]): Promise<{ applied: HostRuleInfo; rules: HostRuleInfo[] }> {
    const r = await this.hostRequest({ type: 'hostApply', backend, rule, protect: [...protect] });
    if (!r.applied) throw new LabError('the lab helper did not say which rule it applied');
    return { applied: r.applied, rules: r.rules };
  }

  /** Removes one of the helper's host rules; resolves with those left. */
  async hostRemove(id: string): Promise<HostRuleInfo[]> {
    return (await this.hostRequest({ type: 'hostRemove', id })).rules;
  }

  /** The helper's host rules, with their packet and byte counters now. */
  async hostList(): Promise<HostRuleInfo[]> {
    return (await this.hostRequest({ type: 'hostList' })).rules;
  }

  /** Removes all the helper's host rules, best effort: what is left, and why. */
  async hostRemoveAll(): Promise<{ rules: HostRuleInfo[]; errors: LabError[] }> {
    const r = await this.hostRequest({ type: 'hostRemoveAll' });
    return { rules: r.rules, errors: (r.errors ?? []).map(labError) };
  }

  /** Removes the host rules of dead owners (the helper does it once when it starts). */
  async hostSweep(): Promise<HostSweepInfo> {
    return (await this.hostRequest({ type: 'hostSweep' })).swept ?? { removed: [], errors: [] };
  }

  private async hostRequest(m: HostAsk): Promise<HostReply> {
    // The helper checks it again; checked here, a bad field fails at once with the same words.
    parseToHelper({ ...m, seq: 0 });
    if (this.gone) throw new LabError('the privileged lab helper has exited', { hint: 'host mode asks for the sudo password again to start a new one' });
    const r = await this.request(m);
    if (r?.type !== 'host') throw new LabError('the lab helper did not answer the host request (it exited, or took over 30 s)');
    if (r.error) throw labError(r.error);
    return r;
  }

  /** Stops every run and ends the helper: shutdown, then the pipe closes, then (if need be) a signal. */
  async dispose(): Promise<void> {
    if (this.gone) return;
    this.send({ type: 'shutdown' });
    this.child.stdin.end();
    const timer = setTimeout(() => {
      this.log.warn('lab helper did not exit within 15 s; signalling sudo');
      try { this.child.kill('SIGTERM'); } catch { /* sudo relays it to the helper when it can */ }
    }, 15_000);
    await this.exited;
    clearTimeout(timer);
  }

  private send(m: ToHelper): void {
    if (this.gone || this.child.stdin.writableEnded) return;
    const line = encodeMessage(m);
    if (this.log.enabled('trace') && m.type !== 'input') this.log.trace(`[lab-helper] > ${line.trimEnd()}`);
    this.child.stdin.write(line);
  }

  /** Sends a request and resolves with its reply; undefined if the helper goes or says nothing in time. */
  private request(m: Request): Promise<Reply | undefined>;
  private request(m: HostAsk): Promise<HostReply | undefined>;
  private request(m: AnyRequest): Promise<Reply | HostReply | undefined> {
    const seq = this.nextSeq++;
    return new Promise((resolve) => {
      // Counters answer at once; actions may start a program and wait until it listens (5 s).
      const timer = setTimeout(() => reply(undefined), m.type === 'counters' ? 5000 : 30_000);
      const reply = (r: Reply | HostReply | undefined) => {
        clearTimeout(timer);
        this.replies.delete(seq);
        resolve(r);
      };
      this.replies.set(seq, reply);
      this.send({ ...m, seq } as ToHelper);
      if (this.gone) reply(undefined);
    });
  }

  private receive(line: string): void {
    if (this.log.enabled('trace')) this.log.trace(`[lab-helper] < ${line.length > 2000 ? `${line.slice(0, 2000)}...` : line}`);
    let m: FromHelper;
    try {
      m = decodeLine(line) as FromHelper;
    } catch {
      this.log.warn(`[lab-helper] not a message: ${line.slice(0, 200)}`);
      return;
    }
    try {
      this.dispatch(m);
    } catch (e) {
      this.log.error(`[lab-helper] handling ${m.type}: ${e instanceof Error ? e.stack ?? e.message : e}`);
    }
  }

  private dispatch(m: FromHelper): void {
    switch (m.type) {
      case 'ready':
        this.pid = m.pid;
        this.uid = m.uid;
        this.owner = typeof m.owner === 'string' ? parseHostTag(`tcp-lab-host:${m.owner}:x`)?.owner : undefined;
        if (m.uid === 0) this.ready?.resolve();
        else this.ready?.reject(new LabError(`the lab helper runs as uid ${m.uid}, not root`));
        return;
      case 'log': {
        const level = LEVELS.has(m.level) ? m.level : 'info';
        ((m.runId && this.runs.get(m.runId)?.log) || this.log).log(level, String(m.message));
        return;
      }
      case 'error': {
        const e = new LabError(String(m.message), { field: m.field, value: m.value, hint: m.hint });
        const run = m.runId ? this.runs.get(m.runId) : undefined;
        if (run) run.fail(e);
        else if (this.ready) this.ready.reject(e);
        else this.log.error(`lab helper: ${e.describe()}`);
        return;
      }
      case 'counters':
      case 'performed':
      case 'host':
        this.replies.get(m.seq)?.(m);
        return;
      default:
        this.runs.get(m.runId)?.receive(m);
    }
  }
}

export { PrivilegedRun, type PrivilegedRunOptions } from './privilegedRun';

/**
 * `runScenario` through the privileged helper: the same callbacks, the same result. As with
 * runScenario, a run the lab could not carry out resolves with `error` set instead of throwing.
 */
export async function runScenarioPrivileged(lab: PrivilegedLab, scenario: Scenario, options: PrivilegedRunOptions = {}): Promise<ScenarioResult> {
  const t0 = monotonic();
  const run = lab.run(scenario, options);
  try {
    return await run.done;
  } catch (e) {
    const error = e instanceof LabError ? e.describe() : e instanceof Error ? e.message : String(e);
    run.log.error(`[${scenario.id}] ${error}`);
    return failedResult(run, error, monotonic() - t0);
  }
}

/**
 * Whether this editor needs sudo for the lab: not root, and the kernel refuses the rootless
 * sandbox (no unprivileged user namespace, or one without the right to configure its network).
 */
export async function sudoNeeded(log: Logger = silentLogger): Promise<boolean> {
  if (process.getuid?.() === 0) return false;
  try {
    await (await Sandbox.create({ log, mode: 'rootless', label: 'probe' })).dispose();
    return false;
  } catch (e) {
    if (e instanceof LabError && /user namespace|Operation not permitted|Permission denied/.test(e.message)) return true;
    throw e;
  }
}
