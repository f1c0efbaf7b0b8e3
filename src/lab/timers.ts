/**
 * What the kernel's TCP timers add up to, computed from its own rules (net/ipv4/tcp_timer.c),
 * so every result can show the time a scenario takes with the default timers beside the time
 * it took in the lab with shortened ones.
 *
 * The rule that matters: a connection gives up when the time since its first retransmission
 * reaches `tcp_model_timeout(boundary)`, the time `boundary` retransmissions would take with
 * pure exponential backoff from a base RTO. The check runs when the retransmit timer fires,
 * so the failure lands on the first expiry at or after that model time.
 */

/** TCP_TIMEOUT_INIT: the first SYN's RTO (RFC 6298), 1 s. */
export const RTO_INIT = 1;
/** TCP_RTO_MIN, 200 ms: the floor of the RTO, reached on loopback and fast links. */
export const RTO_MIN = 0.2;
/** TCP_RTO_MAX, 120 s: the backoff ceiling. */
export const RTO_MAX = 120;
/** TCP_TIMEWAIT_LEN: fixed at 60 s in the kernel, no sysctl. */
export const TIME_WAIT_LEN = 60;
/** TCP_ATO_MIN: the delayed-ACK timer's floor, 40 ms. */
export const DELAYED_ACK_MIN = 0.04;

/** The timer sysctls a scenario depends on, as read inside a namespace. */
export interface KernelTimers {
  synRetries: number;
  /** net.ipv4.tcp_syn_linear_timeouts; null on kernels without it (before 6.x). */
  synLinearTimeouts: number | null;
  synackRetries: number;
  retries2: number;
  keepaliveTime: number;
  keepaliveIntvl: number;
  keepaliveProbes: number;
  finTimeout: number;
}

/** Linux defaults (ip-sysctl.rst), used where a namespace cannot be read. */
export const LINUX_DEFAULTS: KernelTimers = {
  synRetries: 6,
  synLinearTimeouts: 4,
  synackRetries: 5,
  retries2: 15,
  keepaliveTime: 7200,
  keepaliveIntvl: 75,
  keepaliveProbes: 9,
  finTimeout: 60,
};

/** The time `boundary` retransmissions take with doubling from `base` (tcp_model_timeout). */
export function modelTimeout(boundary: number, base: number): number {
  const linearThreshold = Math.floor(Math.log2(RTO_MAX / base));
  if (boundary <= linearThreshold) return (2 ** (boundary + 1) - 1) * base;
  return (2 ** (linearThreshold + 1) - 1) * base + (boundary - linearThreshold) * RTO_MAX;
}

export interface Schedule {
  /** When each segment goes out, in seconds from the first transmission. */
  sends: number[];
  /** When the kernel gives up and the call fails with ETIMEDOUT. */
  failAt: number;
}

/**
 * The retransmission schedule of a segment nobody answers: RTO `base`, `linear` retransmits at
 * that same interval first (tcp_syn_linear_timeouts, SYN only), then doubling up to 120 s,
 * until the model timeout for `boundary` is reached.
 */
export function retransmitSchedule(boundary: number, base: number, linear = 0): Schedule {
  const limit = modelTimeout(boundary, base);
  const sends = [0];
  let t = 0;
  let rto = base;
  for (let n = 1; n < 10_000; n++) {
    t += rto;
    // Compare with a little slack: the kernel counts whole milliseconds.
    if (t >= limit - 1e-9) return { sends, failAt: t };
    sends.push(t);
    if (n > linear) rto = Math.min(rto * 2, RTO_MAX);
  }
  return { sends, failAt: t };
}

/** A connect whose SYNs are all lost: when it fails with ETIMEDOUT. */
export function synTimeout(timers: Pick<KernelTimers, 'synRetries' | 'synLinearTimeouts'>): Schedule {
  return retransmitSchedule(timers.synRetries, RTO_INIT, timers.synLinearTimeouts ?? 0);
}

/** The RTO of a fresh loopback connection: the 200 ms floor plus one 4 ms jiffy (seen in `ss -i`). */
export const LOOPBACK_RTO = 0.204;
/**
 * The tail-loss probe (RFC 8985) goes first, about 2 x SRTT + 200 ms after a lone segment
 * (the delayed-ACK allowance): on loopback about 0.2 s; nearly 0 with many segments in flight.
 */
export const LOOPBACK_PROBE = 0.21;

export interface DataTimeoutOptions {
  /** RTO when the loss began. */
  rto?: number;
  /** Delay of the tail-loss probe before the first RTO retransmission. */
  probe?: number;
  /** TCP_USER_TIMEOUT in ms: replaces the retries2 limit. */
  userTimeoutMs?: number;
}

/**
 * Data nobody acknowledges: when the call fails with ETIMEDOUT, in seconds from the first
 * transmission of the lost segment. Measured on 6.18 and matching tcp_timer.c: the clock of
 * `tcp_retries2` (and of TCP_USER_TIMEOUT) starts at the first RTO retransmission; the check
 * runs when the timer fires, so without a user timeout the failure lands on the first
 * expiry at or after that start + model time. Example, tcp_retries2=3 on loopback: probe at
 * 0.21 s, retransmissions at 0.41, 0.82, 1.64 and 3.27 s (0.15 s short of 0.41 + 3.0), and
 * the next expiry, at 6.5 s, fails the connection.
 */
export function dataTimeout(retries2: number, options: DataTimeoutOptions = {}): Schedule {
  const rto = options.rto ?? LOOPBACK_RTO;
  const firstRetransmit = (options.probe ?? LOOPBACK_PROBE) + rto;
  const sends = [0, firstRetransmit];
  if (options.userTimeoutMs !== undefined) {
    // The RTO is clamped to what is left of the user timeout (tcp_clamp_rto_to_user_timeout).
    return { sends, failAt: firstRetransmit + options.userTimeoutMs / 1000 };
  }
  const limit = firstRetransmit + modelTimeout(retries2, RTO_MIN);
  let t = firstRetransmit;
  let cur = rto;
  for (;;) {
    cur = Math.min(cur * 2, RTO_MAX);
    t += cur;
    if (t >= limit - 1e-9) return { sends, failAt: t };
    sends.push(t);
  }
}

/** Keepalive on an idle connection whose peer vanished: probes, then ETIMEDOUT. */
export function keepaliveTimeout(t: Pick<KernelTimers, 'keepaliveTime' | 'keepaliveIntvl' | 'keepaliveProbes'>): number {
  return t.keepaliveTime + t.keepaliveIntvl * t.keepaliveProbes;
}

/** "2 h 11 min", "924.6 s", "0.04 s": a duration as a person reads it. */
export function humanDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return 'forever';
  if (seconds < 100) return `${+seconds.toFixed(seconds < 1 ? 3 : 2)} s`;
  if (seconds < 3600) {
    const m = Math.floor(seconds / 60);
    const s = Math.round(seconds - m * 60);
    return `${+seconds.toFixed(1)} s (${m} min${s ? ` ${s} s` : ''})`;
  }
  const h = Math.floor(seconds / 3600);
  const m = Math.round((seconds - h * 3600) / 60);
  return `${Math.round(seconds)} s (${h} h${m ? ` ${m} min` : ''})`;
}
