/**
 * CLOCK_MONOTONIC in seconds. Node's hrtime, Python's time.monotonic() and the kernel's own
 * timers share this clock, so a timestamp a sample takes and one the lab takes compare
 * directly, in any network or PID namespace (Linux has no per-namespace monotonic clock
 * unless a time namespace is made, and the lab makes none).
 */
export function monotonic(): number {
  return Number(process.hrtime.bigint()) / 1e9;
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/**
 * CLOCK_REALTIME minus CLOCK_MONOTONIC, measured at one instant: realtime was exactly `wallMs`
 * (a whole millisecond of Date.now()) at monotonic `mono`, give or take `error` seconds. Kept
 * in two parts so that a capture time converted with `toMonotonic` keeps its nanoseconds (one
 * double holding 1.7e9 s resolves only ~0.2 µs).
 */
export interface ClockOffset {
  wallMs: number;
  mono: number;
  error: number;
}

/**
 * Measures REALTIME - MONOTONIC, to date tcpdump's and strace's realtime stamps on the lab's
 * monotonic clock. Date.now() moves in whole milliseconds, so one reading would be up to 1 ms
 * off. Instead, spin until Date.now() ticks to the next millisecond: at that moment REALTIME is
 * exactly that millisecond, and the tick happened between two monotonic readings a fraction
 * of a microsecond apart. The tightest of `edges` consecutive ticks is kept (a preemption
 * widens one bracket; it does not fool the choice); a jump of more than 1 ms (a clock step)
 * is not used. Costs about `edges` ms of CPU, at most 50 ms. What it cannot see: NTP slewing
 * the realtime clock afterwards (at most 500 ppm, 0.5 ms per second, usually far less) or
 * stepping it (then measure again).
 */
export function measureClockOffset(edges = 3): ClockOffset {
  let best: ClockOffset = { wallMs: Date.now(), mono: monotonic(), error: 1e-3 };
  let before = monotonic();
  let last = Date.now();
  const deadline = before + 0.05;
  for (let found = 0; found < edges;) {
    const a = monotonic();
    const now = Date.now();
    const b = monotonic();
    if (now !== last) {
      // The tick to `now` came after the previous Date.now() (itself after `before`) and
      // before this one (before `b`).
      const error = (b - before) / 2;
      if (now === last + 1 && error < best.error) best = { wallMs: now, mono: (before + b) / 2, error };
      found++;
      last = now;
    }
    before = a;
    if (b > deadline) break;
  }
  return best;
}

/** A CLOCK_REALTIME time in whole seconds and nanoseconds (a pcap record's) on CLOCK_MONOTONIC. */
export function toMonotonic(offset: ClockOffset, sec: number, nsec: number): number {
  const wallSec = Math.floor(offset.wallMs / 1000);
  return offset.mono + (sec - wallSec) + (nsec / 1e9 - (offset.wallMs - wallSec * 1000) / 1000);
}

/**
 * REALTIME - MONOTONIC as one number of seconds, for times that come as one number (strace's
 * `-ttt` microseconds): realtime t is monotonic t - offsetSeconds(c). The double keeps ~0.2 µs.
 */
export function offsetSeconds(offset: ClockOffset): number {
  return offset.wallMs / 1000 - offset.mono;
}
