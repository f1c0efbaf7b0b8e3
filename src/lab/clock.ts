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
