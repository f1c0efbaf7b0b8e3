import type { ScenarioResult } from './lab/runner';
import { humanDuration } from './lab/timers';

const fmt = (s: number | null | undefined) => (s === null || s === undefined ? '-' : `${s.toFixed(s < 10 ? 2 : 1)} s`);
const band = (b: readonly [number, number] | null) =>
  !b ? '' : b[1] === Infinity ? `for at least ${b[0]} s` : `in ${b[0].toFixed(2)}-${b[1].toFixed(2)} s`;

/** The readable result of one scenario, as the CLI prints it. */
export function formatResult(r: ScenarioResult, options: { explain?: boolean; color?: boolean } = {}): string {
  const c = options.color ? (code: number, t: string) => `\x1b[${code}m${t}\x1b[0m` : (_: number, t: string) => t;
  const head = r.verdict === 'pass' ? c(32, 'PASS') : c(31, 'FAIL');
  const lines = [`${head} ${c(1, r.id)}  ${r.title}`];
  const exp = r.expected;
  const what = (o: string | null, e: { name: string; number: number } | null) => (e ? `${e.name} (${e.number})` : o ?? 'nothing');
  lines.push(`     expected  ${what(exp.outcome, exp.errno)} ${band(exp.seconds)}${exp.says ? `: ${exp.says}` : ''}`);
  const m = r.measured;
  lines.push(`     measured  ${m.outcome === null && !m.errno ? 'nothing' : `${m.says ?? what(m.outcome, m.errno)} after ${fmt(m.seconds)}`}`);
  for (const ch of r.checks) {
    if (ch.status === 'pass' && r.verdict === 'pass') continue;
    lines.push(`     ${ch.status.padEnd(8)}  ${ch.says}${ch.reason ? `: ${ch.reason}` : ''}`);
  }
  for (const a of r.applied) lines.push(`     applied   ${a.command}${a.packets === null ? '' : `   (${a.packets} packets matched)`}`);
  const sysctls = Object.entries(r.sysctls);
  if (sysctls.length) lines.push(`     timers    ${sysctls.map(([k, v]) => `${k}=${v}`).join(', ')}`);
  lines.push(`     defaults  ${humanDuration(r.defaults.seconds)} with the kernel's default timers: ${r.defaults.how}`);
  if (r.error) lines.push(`     error     ${r.error}`);
  if (options.explain) lines.push(`     why       ${r.explanation}`);
  for (const f of r.fixes.slice(0, options.explain ? undefined : 1)) lines.push(`     fix       ${f.setting}: ${f.why}`);
  if (r.verdict === 'fail') {
    for (const [name, out] of Object.entries(r.output)) {
      const tail = out.trim().split('\n').slice(-6).join('\n          ');
      if (tail) lines.push(`     ${name} output (last lines):\n          ${tail}`);
    }
  }
  return lines.join('\n');
}

/** The JSON object of one result: everything but the raw events and program output. */
export function resultJson(r: ScenarioResult): Omit<ScenarioResult, 'events' | 'output'> {
  const { events: _e, output: _o, ...rest } = r;
  const infinite = (n: number) => (n === Infinity ? null : n);
  return {
    ...rest,
    expected: { ...rest.expected, seconds: rest.expected.seconds ? [rest.expected.seconds[0], infinite(rest.expected.seconds[1])] as unknown as [number, number] : null },
    defaults: { ...rest.defaults, seconds: infinite(rest.defaults.seconds) as number },
    checks: rest.checks.map(({ event: _ev, ...ch }) => ({ ...ch, event: null, band: ch.band ? [ch.band[0], infinite(ch.band[1])] as unknown as [number, number] : null })),
  };
}
