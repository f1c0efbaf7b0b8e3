import type { FaultRule } from '../rules';
import type { SysctlValue } from '../sysctl';
import type { KernelTimers } from '../timers';
import type { Topology } from '../topology';

export type Section = 'connect' | 'established' | 'middlebox' | 'proxy' | 'pitfalls' | 'detection';

export const SECTION_TITLES: Record<Section, string> = {
  connect: 'A. Connect phase',
  established: 'B. Established phase',
  middlebox: 'C. Middleboxes',
  proxy: 'D. Timeouts at a proxy',
  pitfalls: 'E. Pitfalls',
  detection: 'F. Detecting a dead connection',
};

/**
 * The sample programs in samples/python/. A `supervisor` runs a client as its worker (events
 * under the worker's name) and kills it when it stays silent too long.
 */
export type Program = 'server' | 'client' | 'proxy' | 'supervisor' | 'nginx' | 'curl' | 'probes';

/** Programs the runner starts and waits for until they listen; the others run to their end. */
export const LISTENERS: ReadonlySet<Program> = new Set(['server', 'proxy', 'nginx']);

export interface ProcSpec {
  /** Role name: events from this process carry it as `proc`. */
  name: string;
  program: Program;
  args: readonly string[];
  /** 'begin' (default): started in order at the start; 'later': only by a `start` action. */
  start?: 'begin' | 'later';
  /** The host it runs on, in a scenario with a topology. */
  host?: string;
}

/** An app event, or a marker the runner writes (`lab` process: `fault`, `killed`, `started`). */
export interface Match {
  proc: string;
  type: string;
  errno?: string;
  op?: string;
  /** Every listed name must be in the event's `revents` (poll events). */
  revents?: readonly string[];
  /** 1-based occurrence (default 1): counted from the start in a trigger, from the reference event in a check. */
  nth?: number;
  /** Fields the event must carry with exactly these values (one cell of a table of probes). */
  where?: Readonly<Record<string, string | number | boolean>>;
}

/** A fault rule; in a scenario with a topology, `host` says whose firewall takes it. */
export type RuleSpec = Omit<FaultRule, 'port'> & { port?: number; host?: string };

export type Action =
  | { apply: RuleSpec }
  | { remove: string }
  | { kill: string; signal?: 'SIGKILL' | 'SIGTERM' }
  /** Tells a program waiting at a `wait` step to go on (SIGUSR1): the fault it waits for is in place. */
  | { resume: string }
  | { start: string }
  | { sysctl: Readonly<Record<string, SysctlValue>> };

export interface Trigger {
  /** 'begin': after the servers listen, before the clients start. */
  on: Match | 'begin';
  /** Seconds to wait after the event. */
  delay?: number;
  /**
   * A program stopped (SIGSTOP) while the actions run and continued after: one that sends every
   * few hundred ms would otherwise race the rule, which takes up to a second to apply under load.
   */
  hold?: string;
  do: readonly Action[];
}

export type Band = readonly [number, number];

/** Something that must happen, in order after the previous check. */
export interface EventCheck {
  kind?: 'event';
  match: Match;
  /** Seconds after `from` within which it must happen. */
  within?: Band | ((timers: KernelTimers) => Band);
  /** The time origin: a matched event (first occurrence), or the previous check (default). */
  from?: Match;
  /** This check's errno and time are the scenario's headline figure. */
  primary?: boolean;
  /** How a person says it: "EOF at once". */
  says?: string;
}

/** Something that must NOT happen for a while: the connection that never notices. */
export interface QuietCheck {
  kind: 'quiet';
  proc: string;
  types: readonly string[];
  /** Seconds of quiet required after `from`. */
  for: number;
  from: Match;
  primary?: boolean;
  says?: string;
}

/**
 * A figure computed over many events: the median of the client's per-request times, the peak
 * of the TIME-WAIT count. Judged once the run has finished, since later events change it.
 */
export interface Stat {
  proc: string;
  type: string;
  /** The numeric event field: `took`, `count`. */
  field: string;
  stat: 'median' | 'p95' | 'max' | 'min' | 'count';
  /** `s` (shown as ms below 1 s) or a noun: `sockets`, `requests`. */
  unit: string;
  /** `per request`, `TIME-WAIT sockets at the peak`. */
  label: string;
}

export interface StatCheck extends Stat {
  kind: 'stat';
  within: Band;
  /** Fewer samples than this and the figure means nothing: the check fails. */
  minSamples?: number;
  primary?: boolean;
  says?: string;
}

export type Check = EventCheck | QuietCheck | StatCheck;

/** A scenario as one cell of a table of variants (the Nagle matrix). */
export interface MatrixCell {
  matrix: string;
  row: string;
  column: string;
}

/** A series the runner samples from the kernel while the scenario runs. */
export type Watch = 'time-wait';

export interface Fix {
  /** `setsockopt(TCP_USER_TIMEOUT, 10000)`, `sysctl net.ipv4.tcp_retries2=8`, or prose. */
  setting: string;
  why: string;
}

/** What the same scenario costs with the kernel's default timers. */
export interface DefaultFigure {
  /** Seconds; Infinity for "forever". */
  seconds: number;
  how: string;
}

export interface Scenario {
  id: string;
  title: string;
  section: Section;
  /** One line: the set-up and the fault. */
  summary: string;
  /** Short timers in force inside the namespace. */
  sysctls?: Readonly<Record<string, SysctlValue>>;
  procs: readonly ProcSpec[];
  triggers?: readonly Trigger[];
  expect: readonly Check[];
  /**
   * Give up this many seconds after the programs have started (the verdict is then fail). Building
   * the lab is not counted: on a loaded machine it takes seconds, and would eat the scenario's time.
   */
  deadline: number | ((timers: KernelTimers) => number);
  explanation: string;
  defaults: (defaults: KernelTimers) => DefaultFigure;
  fixes: readonly Fix[];
  /**
   * Several hosts (network namespaces joined by bridges) instead of one namespace: every
   * program then names its host. The scenario's sysctls are set on every host.
   */
  topology?: Topology;
  /** Extra addresses on `lo` inside the namespace (a non-loopback address on one host). */
  addresses?: readonly string[];
  /** Kernel state sampled during the run; each change becomes a `lab` event (`time-wait` {count}). */
  watch?: readonly Watch[];
  /** Figures shown with the result beside those the checks judge. */
  figures?: readonly Stat[];
  matrix?: MatrixCell;
  /** Programs the scenario needs beyond the basics (e.g. `nginx`). */
  requires?: readonly string[];
  /**
   * Manual mode: the run lasts until it is stopped; programs exiting does not end it (the user
   * may start them again), and nothing is judged.
   */
  openEnded?: true;
}
