import { LabError } from './errors';
import type { Exec } from './exec';
import { LINUX_DEFAULTS, type KernelTimers } from './timers';

/**
 * The sysctls the lab may set: each is per network namespace (ip-sysctl.rst), so setting it
 * inside the lab changes nothing on the host. Values are checked before any command runs.
 */
export const NAMESPACED_SYSCTLS: Readonly<Record<string, { min: number; max: number; pair?: true }>> = {
  'net.ipv4.tcp_syn_retries': { min: 1, max: 127 },
  'net.ipv4.tcp_syn_linear_timeouts': { min: 0, max: 16 },
  'net.ipv4.tcp_synack_retries': { min: 0, max: 255 },
  'net.ipv4.tcp_retries1': { min: 0, max: 255 },
  'net.ipv4.tcp_retries2': { min: 0, max: 255 },
  'net.ipv4.tcp_orphan_retries': { min: 0, max: 255 },
  'net.ipv4.tcp_keepalive_time': { min: 1, max: 32767 },
  'net.ipv4.tcp_keepalive_intvl': { min: 1, max: 32767 },
  'net.ipv4.tcp_keepalive_probes': { min: 1, max: 127 },
  'net.ipv4.tcp_fin_timeout': { min: 1, max: 32767 },
  'net.ipv4.tcp_tw_reuse': { min: 0, max: 2 },
  'net.ipv4.tcp_max_tw_buckets': { min: 0, max: 2 ** 31 - 1 },
  'net.ipv4.tcp_timestamps': { min: 0, max: 2 },
  'net.ipv4.ip_local_port_range': { min: 1, max: 65535, pair: true },
  'net.ipv4.ip_forward': { min: 0, max: 1 },
  'net.netfilter.nf_conntrack_tcp_timeout_established': { min: 1, max: 2 ** 31 - 1 },
  'net.netfilter.nf_conntrack_tcp_loose': { min: 0, max: 1 },
};

export type SysctlValue = number | readonly [number, number];

export function checkSysctl(name: string, value: unknown): string {
  const spec = Object.prototype.hasOwnProperty.call(NAMESPACED_SYSCTLS, name) ? NAMESPACED_SYSCTLS[name] : undefined;
  if (!spec) {
    throw new LabError('not a sysctl the lab sets (only per-namespace TCP timers and limits)', { field: 'sysctl', value: name });
  }
  const inRange = (n: unknown) => typeof n === 'number' && Number.isInteger(n) && n >= spec.min && n <= spec.max;
  if (spec.pair) {
    if (!Array.isArray(value) || value.length !== 2 || !inRange(value[0]) || !inRange(value[1]) || value[0] > value[1]) {
      throw new LabError(`${name} takes two ports, low then high, within ${spec.min}-${spec.max}`, { field: name, value });
    }
    return `${value[0]} ${value[1]}`;
  }
  if (!inRange(value)) {
    throw new LabError(`${name} must be an integer from ${spec.min} to ${spec.max}`, { field: name, value });
  }
  return String(value);
}

export async function setSysctl(exec: Exec, name: string, value: SysctlValue): Promise<void> {
  const text = checkSysctl(name, value);
  await exec(['sysctl', '-q', '-w', `${name}=${text}`]);
}

/** Reads sysctls in one command; a name the kernel lacks comes back undefined. */
export async function readSysctls(exec: Exec, names: readonly string[]): Promise<Map<string, string | undefined>> {
  for (const n of names) checkSysctl(n, NAMESPACED_SYSCTLS[n]?.pair ? [1, 1] : NAMESPACED_SYSCTLS[n]?.min);
  const result = await exec(['sysctl', '-e', ...names], { allowFailure: true });
  const values = new Map<string, string | undefined>(names.map((n) => [n, undefined]));
  for (const line of result.stdout.split('\n')) {
    const m = /^([\w.]+) = (.*)$/.exec(line.trim());
    if (m && values.has(m[1]!)) values.set(m[1]!, m[2]!.replace(/\s+/g, ' '));
  }
  return values;
}

const TIMER_SYSCTLS: Record<keyof KernelTimers, string> = {
  synRetries: 'net.ipv4.tcp_syn_retries',
  synLinearTimeouts: 'net.ipv4.tcp_syn_linear_timeouts',
  synackRetries: 'net.ipv4.tcp_synack_retries',
  retries2: 'net.ipv4.tcp_retries2',
  keepaliveTime: 'net.ipv4.tcp_keepalive_time',
  keepaliveIntvl: 'net.ipv4.tcp_keepalive_intvl',
  keepaliveProbes: 'net.ipv4.tcp_keepalive_probes',
  finTimeout: 'net.ipv4.tcp_fin_timeout',
};

/** KernelTimers from a lookup by sysctl name; undefined keeps the Linux default. */
function timersFrom(lookup: (name: string) => number | undefined, linearMissing: boolean): KernelTimers {
  const timers = { ...LINUX_DEFAULTS };
  for (const [key, name] of Object.entries(TIMER_SYSCTLS) as [keyof KernelTimers, string][]) {
    const v = lookup(name);
    if (v !== undefined) timers[key] = v;
    else if (key === 'synLinearTimeouts' && linearMissing) timers.synLinearTimeouts = null;
  }
  return timers;
}

/**
 * The timers a scenario's sysctls would give on a kernel with the Linux defaults: for
 * estimates made before any namespace exists (readTimers gives the real ones).
 */
export function timersWith(sysctls: Readonly<Record<string, SysctlValue>> = {}): KernelTimers {
  return timersFrom((name) => (typeof sysctls[name] === 'number' ? sysctls[name] : undefined), false);
}

/** The timers in force inside a namespace; a kernel without tcp_syn_linear_timeouts gives null. */
export async function readTimers(exec: Exec): Promise<KernelTimers> {
  const values = await readSysctls(exec, Object.values(TIMER_SYSCTLS));
  return timersFrom((name) => {
    const v = values.get(name);
    return v === undefined ? undefined : Number(v);
  }, true);
}
