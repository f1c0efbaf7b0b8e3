import type { AppEvent } from './appEvents';
import { errnoNumber, formatErrno } from './errno';
import type { Band, Check, Match, Stat } from './scenarios/types';
import type { KernelTimers } from './timers';

/**
 * Seconds allowed for an event to travel from a sample to the lab before a band is judged missed
 * (or a quiet window judged quiet). Events carry the sample's own time, so this only delays a
 * verdict, never moves a figure; on a loaded machine a line read from nginx's log has been seen
 * to arrive 0.7 s after it was written.
 */
export const DELIVERY_GRACE = 1;

export type CheckStatus = 'pass' | 'fail' | 'pending' | 'not-reached';

export interface CheckResult {
  says: string;
  status: CheckStatus;
  /** The band, in seconds after the reference event. */
  band: Band | null;
  /** Seconds from the reference to what happened (or to the quiet window's end). */
  seconds: number | null;
  /** What was expected: `client error ETIMEDOUT (110)`. */
  expected: string;
  /** What happened instead, or what matched. */
  observed: string | null;
  event: AppEvent | null;
  reason?: string;
  /** Set on the check whose figure is the scenario's headline. */
  primary?: boolean;
  /** A stat check's unit (`s`, `sockets`); its band is in that unit. */
  unit?: string;
  /** A pending check: seconds since its reference, to count down to its band. */
  since?: number;
}

export function matches(e: AppEvent, m: Match): boolean {
  if (e.proc !== m.proc || e.type !== m.type) return false;
  if (m.errno !== undefined && e.name !== m.errno) return false;
  if (m.op !== undefined && e.op !== m.op) return false;
  if (m.revents) {
    const got = Array.isArray(e.revents) ? e.revents : [];
    if (!m.revents.every((r) => got.includes(r))) return false;
  }
  if (m.where) for (const [k, v] of Object.entries(m.where)) if (e[k] !== v) return false;
  return true;
}

export function describeMatch(m: Match): string {
  const parts = [m.proc, m.type];
  if (m.op) parts.push(`in ${m.op}()`);
  if (m.errno) parts.push(formatErrno(m.errno));
  if (m.revents) parts.push(m.revents.join('|'));
  if (m.where) parts.push(Object.entries(m.where).map(([k, v]) => `${k}=${v}`).join(' '));
  if (m.nth && m.nth > 1) parts.push(`(#${m.nth})`);
  return parts.join(' ');
}

export function describeEvent(e: AppEvent): string {
  const parts = [e.proc, e.type];
  if (typeof e.op === 'string') parts.push(`in ${e.op}()`);
  if (typeof e.name === 'string') parts.push(`${e.name} (${e.errno ?? errnoNumber(e.name) ?? '?'})`);
  if (Array.isArray(e.revents)) parts.push(e.revents.join('|'));
  // An HTTP response's status; curl's own exit code when it gave up (28: too slow).
  if (e.type === 'response' && typeof e.status === 'number') parts.push(`HTTP ${e.status}`);
  if (typeof e.curl === 'number' && e.curl !== 0) parts.push(`curl exit ${e.curl}`);
  return parts.join(' ');
}

/** Events that end a program's story: once one of them comes, a different outcome will not. */
const TERMINAL = new Set(['error', 'eof', 'timeout', 'dead', 'exit']);

/** The nth event matching `m` at or after `from`. */
function findMatch(events: readonly AppEvent[], m: Match, from: number): AppEvent | undefined {
  let seen = 0;
  for (const e of events) {
    if (e.t < from || !matches(e, m)) continue;
    if (++seen >= (m.nth ?? 1)) return e;
  }
  return undefined;
}

export interface StatValue {
  value: number | null;
  samples: number;
}

/** The events `s` names, in time order, reduced to the statistic (nearest-rank percentiles). */
export function computeStat(events: readonly AppEvent[], s: Stat): StatValue {
  const values = events
    .filter((e) => e.proc === s.proc && e.type === s.type && typeof e[s.field] === 'number')
    .map((e) => e[s.field] as number);
  if (s.stat === 'count') return { value: values.length, samples: values.length };
  if (values.length === 0) return { value: null, samples: 0 };
  const sorted = [...values].sort((a, b) => a - b);
  const n = sorted.length;
  const rank = (p: number) => sorted[Math.max(0, Math.ceil(p * n) - 1)]!;
  const value = s.stat === 'max' ? sorted[n - 1]! : s.stat === 'min' ? sorted[0]! : s.stat === 'p95' ? rank(0.95)
    : n % 2 ? sorted[(n - 1) / 2]! : (sorted[n / 2 - 1]! + sorted[n / 2]!) / 2;
  return { value, samples: n };
}

/** `41.2 ms`, `10 sockets`. */
export function formatStat(value: number | null, unit: string): string {
  if (value === null) return 'none';
  if (unit !== 's') return `${Number.isInteger(value) ? value : value.toFixed(1)} ${value === 1 && unit.endsWith('s') ? unit.slice(0, -1) : unit}`;
  if (value >= 1) return `${value.toFixed(2)} s`;
  const ms = value * 1000;
  return `${ms >= 10 ? ms.toFixed(1) : ms >= 0.1 ? ms.toFixed(2) : ms.toFixed(3)} ms`;
}

/** `exactly 10 sockets`, `at most 5.00 ms`, `35.0 ms to 120.0 ms`. */
function formatBand(b: Band, unit: string): string {
  if (b[0] === b[1]) return `exactly ${formatStat(b[0], unit)}`;
  if (b[0] === 0) return `at most ${formatStat(b[1], unit)}`;
  return `${formatStat(b[0], unit)} to ${formatStat(b[1], unit)}`;
}

function describeStat(s: Stat): string {
  return `${s.stat} ${s.label}`;
}

export interface Evaluation {
  done: boolean;
  verdict: 'pass' | 'fail' | 'pending';
  checks: CheckResult[];
}

/**
 * Judges the checks against the events so far, in order; each check's clock starts at its
 * `from` event or, by default, at the previous check's event.
 *
 * @param now the lab's monotonic time (a band whose end has passed fails even before the end)
 * @param finished no more events will come (deadline, or every program exited)
 * @param exited the programs that have exited: a check on one of them cannot be met later
 */
export function evaluate(
  checks: readonly Check[],
  events: readonly AppEvent[],
  timers: KernelTimers,
  options: { start: number; now: number; finished: boolean; exited?: ReadonlySet<string> },
): Evaluation {
  const sorted = [...events].sort((a, b) => a.t - b.t);
  const results: CheckResult[] = [];
  let previous = options.start;
  let failed = false;
  let pending = false;
  for (const check of checks) {
    const base = {
      says: check.says ?? (check.kind === 'quiet' ? `no ${check.types.join('/')} from ${check.proc} for ${check.for} s`
        : check.kind === 'stat' ? describeStat(check) : describeMatch(check.match)),
      expected: check.kind === 'quiet' ? `${check.proc} quiet for ${check.for} s`
        : check.kind === 'stat' ? `${describeStat(check)}: ${formatBand(check.within, check.unit)}` : describeMatch(check.match),
    };
    if (failed || pending) {
      results.push({ ...base, status: 'not-reached', band: null, seconds: null, observed: null, event: null });
      continue;
    }
    if (check.kind === 'stat') {
      // A figure over the whole run: later events change it, so it waits for the end.
      if (!options.finished) {
        results.push({ ...base, status: 'pending', band: check.within, seconds: null, observed: null, event: null, unit: check.unit });
        pending = true;
        continue;
      }
      const { value, samples } = computeStat(sorted, check);
      // A median or percentile says how many values it summarises; a peak or a count does not need to.
      const observed = check.stat === 'median' || check.stat === 'p95' ? `${formatStat(value, check.unit)} (${samples} samples)` : formatStat(value, check.unit);
      const few = samples < (check.minSamples ?? 1);
      const inBand = value !== null && value >= check.within[0] && value <= check.within[1];
      const ok = inBand && !few;
      results.push({
        ...base, status: ok ? 'pass' : 'fail', band: check.within, seconds: check.unit === 's' ? value : null, observed, event: null, unit: check.unit,
        ...(ok ? {} : { reason: few ? `only ${samples} samples, ${check.minSamples} needed` : `${formatStat(value, check.unit)}, expected ${formatBand(check.within, check.unit)}` }),
      });
      if (!ok) failed = true;
      continue;
    }
    let from = previous;
    if (check.from) {
      const ref = findMatch(sorted, check.from, options.start);
      if (!ref) {
        const status = options.finished ? 'fail' : 'pending';
        results.push({ ...base, status, band: null, seconds: null, observed: null, event: null, reason: `${describeMatch(check.from)} never happened` });
        if (status === 'fail') failed = true;
        else pending = true;
        continue;
      }
      from = ref.t;
    }

    if (check.kind === 'quiet') {
      const end = from + check.for;
      const noise = sorted.find((e) => e.t >= from && e.t <= end && e.proc === check.proc && check.types.includes(e.type));
      if (noise) {
        results.push({ ...base, status: 'fail', band: [check.for, Infinity], seconds: noise.t - from, observed: describeEvent(noise), event: noise, reason: `${describeEvent(noise)} after ${(noise.t - from).toFixed(2)} s` });
        failed = true;
      } else if (options.now >= end + DELIVERY_GRACE) {
        results.push({ ...base, status: 'pass', band: [check.for, Infinity], seconds: check.for, observed: `nothing for ${check.for} s`, event: null });
        previous = end;
      } else if (options.finished) {
        results.push({ ...base, status: 'fail', band: [check.for, Infinity], seconds: options.now - from, observed: null, event: null, reason: 'the run ended before the quiet window did' });
        failed = true;
      } else {
        results.push({ ...base, status: 'pending', band: [check.for, Infinity], seconds: null, observed: null, event: null, since: options.now - from });
        pending = true;
      }
      continue;
    }

    const band = typeof check.within === 'function' ? check.within(timers) : check.within ?? null;
    const hit = findMatch(sorted, check.match, from);
    if (hit) {
      const seconds = hit.t - from;
      const inBand = !band || (seconds >= band[0] && seconds <= band[1]);
      results.push({
        ...base, status: inBand ? 'pass' : 'fail', band, seconds, observed: describeEvent(hit), event: hit,
        ...(inBand ? {} : { reason: `after ${seconds.toFixed(3)} s, outside ${band![0].toFixed(2)}-${band![1].toFixed(2)} s` }),
      });
      if (!inBand) failed = true;
      previous = hit.t;
      continue;
    }
    // Not (yet) seen. What ended the program's story instead, if anything (shown, not judged:
    // a reconnecting client gets errors and carries on)?
    const other = sorted.find((e) => e.t > from && e.proc === check.match.proc && TERMINAL.has(e.type) && !matches(e, check.match));
    const procGone = options.exited?.has(check.match.proc) ?? false;
    const bandOver = band !== null && options.now > from + band[1] + DELIVERY_GRACE;
    if (options.finished || procGone || bandOver) {
      const observed = other ? describeEvent(other) : null;
      results.push({
        ...base, status: 'fail', band, seconds: other ? other.t - from : null, observed, event: other ?? null,
        reason: other ? `${observed} after ${(other.t - from).toFixed(3)} s instead` : bandOver ? `nothing within ${band![1].toFixed(2)} s` : 'it never happened',
      });
      failed = true;
    } else {
      results.push({ ...base, status: 'pending', band, seconds: null, observed: null, event: null, since: options.now - from });
      pending = true;
    }
  }
  return { done: failed || !pending, verdict: failed ? 'fail' : pending ? 'pending' : 'pass', checks: results };
}
