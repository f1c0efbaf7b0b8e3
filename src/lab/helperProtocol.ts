/**
 * What the editor (as the user) and the privileged lab helper (`dist/lab-helper.js`, as root
 * under sudo) say to each other: one JSON object per line on the helper's stdin and stdout.
 * The helper is a root process taking orders through a pipe, so everything that comes in is
 * validated here, field by field, before it reaches the engine; a refusal names the field.
 */
import { clip, LabError } from './errors';
import type { LogLevel } from './log';
import type { CaptureMethod } from './packets';
import type { Backend } from './rulesBackend';
import type { ProtectedEndpoint } from './hostGuard';
import { ID_PATTERN, parseRule, type FaultRule } from './rules';
import type { Progress, ScenarioResult } from './runner';
import type { SandboxMode } from './sandbox';
import { PORT } from './scenarios/common';
import { findScenario, type Action, type Scenario } from './scenarios';
import { MANUAL_CLIENTS, manualScenario, type ManualClient } from './scenarios/manual';
import { checkSysctl, type SysctlValue } from './sysctl';
import type { TimelineEvent } from './timeline';

/** The run options the helper accepts: those of RunOptions that are data, not callbacks. */
export interface HelperRunOptions {
  firewall?: Backend;
  python?: string;
  capture?: 'auto' | CaptureMethod | 'off';
  pollInterval?: number;
  sysctls?: Record<string, SysctlValue>;
  clientCommand?: string[];
}

/** The signals a program of a run may be sent: a run's own programs only, never a pid. */
export const KILL_SIGNALS = ['SIGKILL', 'SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2', 'SIGSTOP', 'SIGCONT'] as const;
export type KillSignal = (typeof KILL_SIGNALS)[number];

/** `proc` is the helper's serial number for a program of the run (a role may restart). */
export type ToHelper =
  | { type: 'run'; runId: string; scenario: string; manual?: ManualClient; options: HelperRunOptions }
  | { type: 'stop'; runId: string }
  | { type: 'input'; runId: string; proc: number; data: string }
  | { type: 'resize'; runId: string; proc: number; cols: number; rows: number }
  | { type: 'kill'; runId: string; proc: number; signal: KillSignal }
  | { type: 'counters'; runId: string; seq: number }
  | { type: 'perform'; runId: string; seq: number; actions: Action[] }
  | HostRequest
  | { type: 'shutdown' };

/**
 * Host mode: rules on the host's own traffic, owned by the helper process (its exit removes
 * them; a sweep at the next start removes those of a helper that was killed). `protect` is what
 * the editor knows it runs over (its SSH session, the VS Code server's ports): the helper
 * refuses a rule that hits one of those or one it sees itself.
 */
export type HostRequest =
  | { type: 'hostApply'; seq: number; backend: Backend; rule: FaultRule; protect: ProtectedEndpoint[] }
  | { type: 'hostRemove'; seq: number; id: string }
  | { type: 'hostList'; seq: number }
  | { type: 'hostRemoveAll'; seq: number }
  | { type: 'hostSweep'; seq: number };

export const HOST_REQUESTS: readonly HostRequest['type'][] = ['hostApply', 'hostRemove', 'hostList', 'hostRemoveAll', 'hostSweep'];

/** A host rule as the editor lists it: what it does, its tag and its counters. */
export interface HostRuleInfo {
  id: string;
  tag: string;
  backend: Backend;
  chain: string;
  packets: number;
  bytes: number;
  /** Null when the kernel's listing does not read back as a lab rule (edited by hand). */
  rule: FaultRule | null;
}

/** What a sweep removed: rules whose owner (a helper or an editor) died without removing them. */
export interface HostSweepInfo {
  removed: HostRuleInfo[];
  errors: ErrorBody[];
}

export type Counters = [string, { packets: number; bytes: number }][];

export type FromHelper =
  | { type: 'ready'; pid: number; uid: number; owner?: string }
  | { type: 'process'; runId: string; proc: number; name: string; pid: number; argv: string[] }
  | { type: 'data'; runId: string; proc: number; data: string }
  | { type: 'exit'; runId: string; proc: number; code: number; signal: number }
  | { type: 'event'; runId: string; event: TimelineEvent }
  | { type: 'progress'; runId: string; progress: Progress }
  | { type: 'live'; runId: string; mode: SandboxMode; pid: number; hosts?: { name: string; pid: number }[] }
  | { type: 'counters'; runId: string; seq: number; counters: Counters }
  | { type: 'performed'; runId: string; seq: number; error?: ErrorBody }
  | { type: 'result'; runId: string; result: ScenarioResult }
  /** The answer to every HostRequest: this helper's rules after it, and what it did or refused. */
  | { type: 'host'; seq: number; rules: HostRuleInfo[]; applied?: HostRuleInfo; swept?: HostSweepInfo; errors?: ErrorBody[]; error?: ErrorBody }
  | { type: 'log'; runId?: string; level: LogLevel; message: string }
  | ({ type: 'error'; runId?: string } & ErrorBody);

/** A LabError across the pipe. */
export interface ErrorBody {
  message: string;
  field?: string;
  value?: unknown;
  hint?: string;
}

/** Longest line the helper reads: a run request is a few hundred bytes, typed input less. */
export const MAX_REQUEST_LINE = 1024 * 1024;

/**
 * One message as a line. JSON has no Infinity, and a result's open-ended bands (`[3, Infinity]`)
 * must come back as they were: non-finite numbers travel as `{"$n":"Infinity"}`.
 */
export function encodeMessage(message: ToHelper | FromHelper): string {
  return `${JSON.stringify(message, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? { $n: String(v) } : v))}\n`;
}

/** A line back into a value; never echoes the line, which could be anything typed into a pipe. */
export function decodeLine(line: string): unknown {
  try {
    return JSON.parse(line, (_k, v: unknown) => {
      if (v && typeof v === 'object' && !Array.isArray(v)) {
        const n = (v as { $n?: unknown }).$n;
        if (Object.keys(v).length === 1 && (n === 'Infinity' || n === '-Infinity' || n === 'NaN')) return Number(n);
      }
      return v;
    });
  } catch {
    throw new LabError('not a JSON message', { field: 'message' });
  }
}

/** Splits a byte stream into lines; a line over `max` is dropped whole and reported once. */
export class LineSplitter {
  private buffer = '';
  private overflow = false;

  constructor(
    private readonly onLine: (line: string) => void,
    private readonly onOverflow: () => void = () => {},
    private readonly max = Infinity,
  ) {}

  push(chunk: string): void {
    let start = 0;
    for (let nl = chunk.indexOf('\n'); nl >= 0; nl = chunk.indexOf('\n', start)) {
      const piece = chunk.slice(start, nl);
      start = nl + 1;
      if (this.overflow) {
        this.overflow = false;
        this.buffer = '';
        continue;
      }
      const line = this.buffer + piece;
      this.buffer = '';
      if (line.length > this.max) this.onOverflow();
      else if (line) this.onLine(line);
    }
    if (this.overflow) return;
    this.buffer += chunk.slice(start);
    if (this.buffer.length > this.max) {
      this.buffer = '';
      this.overflow = true;
      this.onOverflow();
    }
  }
}

const RUN_ID = /^[\w.-]{1,64}$/;
const RUN_OPTIONS = new Set(['firewall', 'python', 'capture', 'pollInterval', 'sysctls', 'clientCommand']);

const refuse = (field: string, message: string, value?: unknown): never => {
  throw new LabError(message, value === undefined ? { field } : { field, value });
};

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function oneOf<T extends string>(v: unknown, allowed: readonly T[], field: string): T {
  if (typeof v !== 'string' || !allowed.includes(v as T)) refuse(field, `must be one of ${allowed.join(', ')}`, v);
  return v as T;
}

function integer(v: unknown, min: number, max: number, field: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) refuse(field, `must be an integer from ${min} to ${max}`, v);
  return v as number;
}

/** A string a program's argv may hold: execve takes no NUL, and a line break here is a mistake. */
function argString(v: unknown, field: string): string {
  if (typeof v !== 'string' || v.length === 0 || v.length > 4096 || /[\0\n\r]/.test(v)) {
    refuse(field, 'must be a non-empty string of at most 4096 characters, without NUL or line breaks', typeof v === 'string' ? undefined : v);
  }
  return v as string;
}

function runOptions(v: unknown): HelperRunOptions {
  if (v === undefined) return {};
  if (!isRecord(v)) return refuse('options', 'must be an object', v);
  const out: HelperRunOptions = {};
  for (const [key, value] of Object.entries(v)) {
    const field = `options.${key}`;
    if (!RUN_OPTIONS.has(key)) refuse(field, 'is not a run option the helper takes');
    if (value === undefined) continue;
    switch (key) {
      case 'firewall': out.firewall = oneOf(value, ['iptables', 'nft'] as const, field); break;
      case 'python': out.python = argString(value, field); break;
      case 'capture': out.capture = oneOf(value, ['auto', 'tcpdump', 'af_packet', 'off'] as const, field); break;
      case 'pollInterval': out.pollInterval = integer(value, 20, 2000, field); break;
      case 'sysctls': {
        if (!isRecord(value)) refuse(field, 'must be an object of sysctl names to values', value);
        const sysctls: Record<string, SysctlValue> = {};
        for (const [name, setting] of Object.entries(value as Record<string, unknown>)) {
          try {
            checkSysctl(name, setting);
          } catch (e) {
            refuse(`${field}.${name}`, e instanceof Error ? e.message : String(e), setting);
          }
          sysctls[name] = setting as SysctlValue;
        }
        out.sysctls = sysctls;
        break;
      }
      case 'clientCommand': {
        if (!Array.isArray(value) || value.length === 0 || value.length > 256) refuse(field, 'must be an argv: 1 to 256 strings', value);
        out.clientCommand = (value as unknown[]).map((a, i) => argString(a, `${field}[${i}]`));
        break;
      }
    }
  }
  return out;
}

/** A role or rule name, as actions give them: the runner looks it up among its own. */
function name(v: unknown, field: string): string {
  if (typeof v !== 'string' || !/^[\w.-]{1,64}$/.test(v)) refuse(field, 'must be a name: 1 to 64 letters, digits, dots, dashes or underscores', v);
  return v as string;
}

/** What a trigger does, typed by hand in manual mode: each action checked as the runner would. */
function actions(v: unknown): Action[] {
  if (!Array.isArray(v) || v.length === 0 || v.length > 64) return refuse('actions', 'must be a list of 1 to 64 actions', v);
  return v.map((a: unknown, i): Action => {
    const field = `actions[${i}]`;
    const keys = isRecord(a) ? Object.keys(a) : [];
    const kind = keys.find((k) => ['apply', 'remove', 'kill', 'start', 'sysctl'].includes(k));
    if (!isRecord(a) || !kind || keys.some((k) => k !== kind && !(kind === 'kill' && k === 'signal'))) {
      return refuse(field, 'must be one of {apply}, {remove}, {kill, signal?}, {start}, {sysctl}', a);
    }
    switch (kind) {
      case 'apply': {
        const spec = a.apply;
        try {
          return { apply: parseRule({ ...(isRecord(spec) ? spec : {}), port: isRecord(spec) && spec.port !== undefined ? spec.port : PORT }) };
        } catch (e) {
          const err = e instanceof LabError ? e : new LabError(String(e));
          throw new LabError(err.message, { field: `${field}.apply.${err.field ?? 'rule'}`, value: err.value, hint: err.hint });
        }
      }
      case 'remove': return { remove: name(a.remove, `${field}.remove`) };
      case 'start': return { start: name(a.start, `${field}.start`) };
      case 'kill': return { kill: name(a.kill, `${field}.kill`), ...(a.signal === undefined ? {} : { signal: oneOf(a.signal, ['SIGKILL', 'SIGTERM'] as const, `${field}.signal`) }) };
      default: {
        if (!isRecord(a.sysctl)) return refuse(`${field}.sysctl`, 'must be an object of sysctl names to values', a.sysctl);
        for (const [n, setting] of Object.entries(a.sysctl)) {
          try {
            checkSysctl(n, setting);
          } catch (e) {
            refuse(`${field}.sysctl.${n}`, e instanceof Error ? e.message : String(e), setting);
          }
        }
        return { sysctl: a.sysctl as Record<string, SysctlValue> };
      }
    }
  });
}

/** At most this many protected endpoints in one request: a host has a few, not thousands. */
const MAX_ENDPOINTS = 1024;
const ADDRESS = /^[0-9A-Fa-f.:]{2,45}$/;

/** The editor's protected endpoints: ports, IP addresses as text, and a line of explanation. */
function endpoints(v: unknown): ProtectedEndpoint[] {
  if (!Array.isArray(v) || v.length > MAX_ENDPOINTS) return refuse('protect', `must be a list of at most ${MAX_ENDPOINTS} endpoints`, Array.isArray(v) ? v.length : v);
  return v.map((e: unknown, i): ProtectedEndpoint => {
    const field = `protect[${i}]`;
    if (!isRecord(e)) return refuse(field, 'must be an object', e);
    for (const key of Object.keys(e)) {
      if (!['localPort', 'localAddress', 'remotePort', 'remoteAddress', 'why'].includes(key)) refuse(`${field}.${key.slice(0, 32)}`, 'is not a field of an endpoint');
    }
    const out: ProtectedEndpoint = { localPort: integer(e.localPort, 1, 65535, `${field}.localPort`), why: '' };
    if (e.remotePort !== undefined) out.remotePort = integer(e.remotePort, 0, 65535, `${field}.remotePort`);
    for (const key of ['localAddress', 'remoteAddress'] as const) {
      if (e[key] === undefined) continue;
      if (typeof e[key] !== 'string' || !ADDRESS.test(e[key] as string)) refuse(`${field}.${key}`, 'must be an IPv4 or IPv6 address', e[key]);
      out[key] = e[key] as string;
    }
    if (typeof e.why !== 'string' || e.why.length === 0 || e.why.length > 400 || /[\0-\x1f\x7f]/.test(e.why)) {
      refuse(`${field}.why`, 'must be one line of 1 to 400 characters', typeof e.why === 'string' ? undefined : e.why);
    }
    out.why = e.why as string;
    return out;
  });
}

/** A rule of a host request, its refusal naming `rule.<field>`. */
function hostRule(v: unknown): FaultRule {
  try {
    return parseRule(v);
  } catch (e) {
    const err = e instanceof LabError ? e : new LabError(String(e));
    throw new LabError(err.message, { field: `rule.${err.field ?? 'rule'}`, value: err.value, hint: err.hint });
  }
}

/** The seq of a host request, when it has a well-formed one: a refusal then answers it. */
export function hostSeqOf(v: unknown): number | undefined {
  return isRecord(v) && HOST_REQUESTS.includes(v.type as HostRequest['type']) && Number.isSafeInteger(v.seq) && (v.seq as number) >= 0 ? (v.seq as number) : undefined;
}

/** The scenario a run message names: one of the catalog, or the manual lab with its client. */
export function scenarioOf(m: { scenario: string; manual?: ManualClient }): Scenario {
  return m.scenario === 'manual' ? manualScenario(m.manual ?? 'requests') : findScenario(m.scenario);
}

/**
 * How a run message names `scenario`: its catalog id, or `manual` with the client kind whose
 * programs it has. A scenario made up elsewhere cannot cross: the helper runs only its own.
 */
export function scenarioRef(scenario: Scenario): { scenario: string; manual?: ManualClient } {
  if (scenario.id === 'manual') {
    const same = (k: ManualClient) => JSON.stringify(manualScenario(k).procs) === JSON.stringify(scenario.procs);
    const kind = (Object.keys(MANUAL_CLIENTS) as ManualClient[]).find(same);
    if (kind) return { scenario: 'manual', manual: kind };
  } else if (findScenario(scenario.id) === scenario) {
    return { scenario: scenario.id };
  }
  throw new LabError('the privileged lab helper runs only the catalog\'s scenarios and the manual lab', { field: 'scenario', value: scenario.id });
}

/** The runId of a message, when it has a well-formed one: an error can then name its run. */
export function runIdOf(v: unknown): string | undefined {
  return isRecord(v) && typeof v.runId === 'string' && RUN_ID.test(v.runId) ? v.runId : undefined;
}

/** Validates a decoded message for the helper; throws a LabError naming the first bad field. */
export function parseToHelper(v: unknown): ToHelper {
  if (!isRecord(v)) return refuse('message', 'must be a JSON object');
  const type = v.type;
  if (type === 'shutdown') return { type };
  const runId = (): string => {
    if (typeof v.runId !== 'string' || !RUN_ID.test(v.runId)) refuse('runId', 'must be 1 to 64 letters, digits, dots, dashes or underscores', v.runId);
    return v.runId as string;
  };
  const proc = () => integer(v.proc, 1, 2 ** 31 - 1, 'proc');
  switch (type) {
    case 'run': {
      const id = runId();
      if (typeof v.scenario !== 'string') refuse('scenario', 'must be a scenario id', v.scenario);
      const manual = v.manual === undefined ? undefined : oneOf(v.manual, Object.keys(MANUAL_CLIENTS) as ManualClient[], 'manual');
      if (manual && v.scenario !== 'manual') refuse('manual', 'goes only with the scenario "manual"', manual);
      // A LabError naming `scenario`, with close matches.
      if (v.scenario !== 'manual') findScenario(v.scenario as string);
      return { type, runId: id, scenario: v.scenario as string, ...(manual ? { manual } : {}), options: runOptions(v.options) };
    }
    case 'stop': return { type, runId: runId() };
    case 'input': {
      const id = runId();
      const p = proc();
      // Never echoed: what is typed into a terminal is the user's business.
      if (typeof v.data !== 'string' || v.data.length > 64 * 1024) refuse('data', 'must be a string of at most 65536 characters');
      return { type, runId: id, proc: p, data: v.data as string };
    }
    case 'resize': return { type, runId: runId(), proc: proc(), cols: integer(v.cols, 1, 1000, 'cols'), rows: integer(v.rows, 1, 1000, 'rows') };
    case 'kill': return { type, runId: runId(), proc: proc(), signal: oneOf(v.signal, KILL_SIGNALS, 'signal') };
    case 'counters': return { type, runId: runId(), seq: integer(v.seq, 0, Number.MAX_SAFE_INTEGER, 'seq') };
    case 'perform': return { type, runId: runId(), seq: integer(v.seq, 0, Number.MAX_SAFE_INTEGER, 'seq'), actions: actions(v.actions) };
    case 'hostApply': {
      const seq = integer(v.seq, 0, Number.MAX_SAFE_INTEGER, 'seq');
      return { type, seq, backend: oneOf(v.backend, ['iptables', 'nft'] as const, 'backend'), rule: hostRule(v.rule), protect: endpoints(v.protect) };
    }
    case 'hostRemove': {
      const seq = integer(v.seq, 0, Number.MAX_SAFE_INTEGER, 'seq');
      if (typeof v.id !== 'string' || !ID_PATTERN.test(v.id)) refuse('id', 'must be a rule id: 1 to 32 of a-z, 0-9 and "-"', v.id);
      return { type, seq, id: v.id as string };
    }
    case 'hostList':
    case 'hostRemoveAll':
    case 'hostSweep':
      return { type, seq: integer(v.seq, 0, Number.MAX_SAFE_INTEGER, 'seq') };
    default: return refuse('type', 'is not a message the helper takes', typeof type === 'string' ? type.slice(0, 32) : type);
  }
}

/** A LabError as an `error` message: its value kept short, so a refusal cannot flood the pipe. */
export function errorMessage(e: unknown, runId?: string): Extract<FromHelper, { type: 'error' }> {
  return { type: 'error', ...(runId ? { runId } : {}), ...errorBody(e) };
}

export function errorBody(e: unknown): ErrorBody {
  const err = e instanceof LabError ? e : new LabError(e instanceof Error ? e.message : String(e));
  const value = err.value;
  return {
    message: err.message,
    ...(err.field ? { field: err.field } : {}),
    ...(value === undefined ? {} : { value: typeof value === 'string' ? value.slice(0, 200) : typeof value === 'number' || typeof value === 'boolean' ? value : clip(value) }),
    ...(err.hint ? { hint: err.hint } : {}),
  };
}
