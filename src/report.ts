import type { Figure, ScenarioResult, Series } from './lab/runner';
import { humanDuration } from './lab/timers';
import { formatStat } from './lab/verdict';

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
  const primary = r.checks.find((ch) => ch.primary && ch.unit !== undefined);
  if (primary) {
    // A figure over the run (a median, a peak), not an event at a time.
    lines.push(`     expected  ${primary.expected}${exp.says && exp.says !== primary.expected ? `: ${exp.says}` : ''}`);
    lines.push(`     measured  ${primary.observed ?? 'nothing'}`);
  } else {
    lines.push(`     expected  ${what(exp.outcome, exp.errno)} ${band(exp.seconds)}${exp.says ? `: ${exp.says}` : ''}`);
    const m = r.measured;
    lines.push(`     measured  ${m.outcome === null && !m.errno ? 'nothing' : `${m.says ?? what(m.outcome, m.errno)} after ${fmt(m.seconds)}`}`);
  }
  for (const ch of r.checks) {
    if (ch.status === 'pass' && r.verdict === 'pass') continue;
    lines.push(`     ${ch.status.padEnd(8)}  ${ch.says}${ch.reason ? `: ${ch.reason}` : ''}`);
  }
  if (r.figures.length) lines.push(`     figures   ${formatFigures(r.figures)}`);
  for (const line of formatProbeTable(r.events)) lines.push(`     ${line}`);
  if (options.explain) for (const line of formatProbeTimeline(r.events)) lines.push(`     ${line}`);
  for (const [name, points] of Object.entries(r.series)) lines.push(`     ${name.padEnd(9)} ${formatSeries(points, r.wallSeconds)}`);
  for (const a of r.applied) lines.push(`     applied   ${a.command}${a.packets === null ? '' : `   (${a.packets} packet${a.packets === 1 ? '' : 's'} matched)`}`);
  for (const line of formatForgotten(r.events)) lines.push(`     forgotten ${line}`);
  const sysctls = Object.entries(r.sysctls);
  if (sysctls.length) lines.push(`     timers    ${sysctls.map(([k, v]) => `${k}=${v}`).join(', ')}`);
  lines.push(`     defaults  ${humanDuration(r.defaults.seconds)} with the kernel's default timers: ${r.defaults.how}`);
  for (const n of r.observed?.notes ?? []) lines.push(`     note      ${n}`);
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

/**
 * One line for a notification: the verdict, the id, and what happened against what was
 * expected ("PASS connect-refused: ECONNREFUSED (111) after 0.00 s, expected in 0.00-0.50 s").
 */
export function headline(r: ScenarioResult): string {
  const head = `${r.verdict === 'pass' ? 'PASS' : 'FAIL'} ${r.id}`;
  if (r.error) return `${head}: ${r.error.split('\n')[0]}`;
  const primary = r.checks.find((ch) => ch.primary && ch.unit !== undefined);
  if (primary) return `${head}: ${primary.observed ?? 'nothing'} (expected ${primary.expected})`;
  const m = r.measured;
  const e = r.expected;
  const got = m.errno ? `${m.errno.name} (${m.errno.number})` : m.outcome ?? 'nothing happened';
  const when = m.seconds === null ? '' : ` after ${fmt(m.seconds)}`;
  const want = e.errno ? `${e.errno.name} (${e.errno.number})` : e.outcome;
  return `${head}: ${got}${when}, expected ${want} ${band(e.seconds)}`.trimEnd();
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

/** Figures grouped by what they measure: `per request: median 43.7 ms, p95 47.3 ms (40 samples)`. */
export function formatFigures(figures: readonly Figure[]): string {
  const groups = new Map<string, Figure[]>();
  for (const f of figures) groups.set(f.label, [...(groups.get(f.label) ?? []), f]);
  return [...groups].map(([label, fs]) => {
    if (fs.length === 1 && fs[0]!.stat === 'count') return `${formatStat(fs[0]!.value, fs[0]!.unit)} ${label}`;
    const samples = Math.max(...fs.map((f) => f.samples));
    const spread = fs.some((f) => f.stat === 'median' || f.stat === 'p95');
    return `${label}: ${fs.map((f) => `${f.stat === 'max' && !spread ? 'peak' : f.stat} ${formatStat(f.value, f.unit)}`).join(', ')}${spread ? ` (${samples} samples)` : ''}`;
  }).join('; ');
}

const BARS = '▁▂▃▄▅▆▇█';

/**
 * A sampled count as a one-line curve: the value in each of `width` equal slices of the run,
 * then the figures a reader wants (from, peak and when, last).
 */
export function formatSeries(points: Series, until: number, width = 32): string {
  if (points.length === 0) return 'no samples';
  const peak = points.reduce((m, p) => (p[1] > m[1] ? p : m));
  const end = Math.max(until, points.at(-1)![0]);
  const step = end / width;
  let bars = '';
  for (let i = 0; i < width; i++) {
    const at = (i + 1) * step;
    const value = points.filter((p) => p[0] <= at).at(-1)?.[1];
    bars += value === undefined ? ' ' : peak[1] === 0 ? BARS[0] : BARS[Math.round((value / peak[1]) * (BARS.length - 1))];
  }
  return `${bars}  ${points[0]![1]} -> peak ${peak[1]} at ${peak[0].toFixed(2)} s, ${points.at(-1)![1]} at the end (over ${end.toFixed(1)} s)`;
}

/**
 * Results that are cells of one matrix (the Nagle one), as a table: a row per variant, a
 * column per connection style, each cell the checked median and its p95.
 */
export function formatMatrices(results: readonly ScenarioResult[]): string {
  const byMatrix = new Map<string, ScenarioResult[]>();
  for (const r of results) if (r.matrix) byMatrix.set(r.matrix.matrix, [...(byMatrix.get(r.matrix.matrix) ?? []), r]);
  const out: string[] = [];
  for (const [name, cells] of byMatrix) {
    if (cells.length < 2) continue;
    const rows = [...new Set(cells.map((c) => c.matrix!.row))];
    const columns = [...new Set(cells.map((c) => c.matrix!.column))];
    const text = (r: ScenarioResult | undefined) => {
      if (!r) return '-';
      const med = r.figures.find((f) => f.stat === 'median');
      const p95 = r.figures.find((f) => f.stat === 'p95');
      return `${formatStat(med?.value ?? null, med?.unit ?? 's')} (p95 ${formatStat(p95?.value ?? null, p95?.unit ?? 's')})${r.verdict === 'pass' ? '' : ' FAIL'}`;
    };
    const table = [['', ...columns], ...rows.map((row) => [row, ...columns.map((col) => text(cells.find((c) => c.matrix!.row === row && c.matrix!.column === col)))])];
    const widths = table[0]!.map((_, i) => Math.max(...table.map((line) => line[i]!.length)));
    out.push(`${name}: median per request (95th percentile)`);
    for (const line of table) out.push(`  ${line.map((cell, i) => cell.padEnd(widths[i]!)).join('   ').trimEnd()}`);
  }
  return out.join('\n');
}

/**
 * The probes' results as a table (l4-sleep-matrix): a row per idle time, a column per target
 * and keepalive setting, each cell `ok` or what the second request got. Empty without probes.
 */
export function formatProbeTable(events: readonly { proc: string; type: string; [k: string]: unknown }[]): string[] {
  const probes = events.filter((e) => e.proc === 'probes' && e.type === 'probe' && typeof e.sleep === 'number');
  if (!probes.length) return [];
  const column = (e: (typeof probes)[number]) => `${String(e.target)} ka ${e.keepalive ? 'on' : 'off'}`;
  const columns = [...new Set(probes.map(column))].sort((a, b) => {
    const [ta, tb] = [a.split(' ')[0]!, b.split(' ')[0]!];
    return ta === tb ? (a.endsWith('off') ? -1 : 1) : ta === 'vip' ? -1 : tb === 'vip' ? 1 : ta.localeCompare(tb);
  });
  const sleeps = [...new Set(probes.map((e) => e.sleep as number))].sort((a, b) => a - b);
  const cell = new Map(probes.map((e) => [`${e.sleep}|${column(e)}`, e.ok ? 'ok' : String(e.name ?? 'failed')]));
  const width = Math.max(...columns.map((c) => c.length), 11);
  const out = [`idle (s)  ${columns.map((c) => c.padEnd(width)).join(' ')}`.trimEnd()];
  for (const s of sleeps) out.push(`${String(s).padStart(8)}  ${columns.map((c) => (cell.get(`${s}|${c}`) ?? '-').padEnd(width)).join(' ')}`.trimEnd());
  return out;
}

type Ev = { t: number; proc: string; type: string; [k: string]: unknown };

/**
 * The probes on a time axis, one line per cell that idled (`l4-sleep-matrix`): `━` while the
 * connection sat idle (from its first reply to its second request), `×` where the balancer's
 * flow table forgot it (its conntrack entry timed out), then `✓` or `✗` for the second request.
 * Everything is measured: the reply, the table's entry going, the outcome.
 */
export function formatProbeTimeline(events: readonly Ev[], width = 48): string[] {
  const probes = events.filter((e) => e.proc === 'probes' && e.type === 'probe' && typeof e.idle === 'number' && (e.sleep as number) > 0);
  if (!probes.length) return [];
  const cellKey = (e: Ev) => `${e.target}|${e.keepalive}|${e.sleep}`;
  const local = new Map(events.filter((e) => e.proc === 'probes' && e.type === 'connected').map((e) => [cellKey(e), `${e.local}>${e.peer}`]));
  const forgotten = new Map(events.filter((e) => e.type === 'flow-gone' && String(e.why ?? '').startsWith('timed out')).map((e) => [String(e.flow), e.t]));
  const rows = probes.map((e) => {
    const end = e.t;
    const start = end - (e.idle as number) - ((e.took as number | null) ?? 0);
    return { e, start, end, gone: forgotten.get(local.get(cellKey(e)) ?? '') };
  });
  const t0 = Math.min(...rows.map((r) => r.start));
  const span = Math.max(...rows.map((r) => r.end)) - t0 || 1;
  const col = (t: number) => Math.min(width - 1, Math.max(0, Math.round(((t - t0) / span) * (width - 1))));
  const group = (e: Ev) => `${e.target === 'vip' ? 0 : 1}${String(e.target)}${e.keepalive ? 1 : 0}`;
  const out = [`timeline  idle from the first reply (━), forgotten by the balancer (×), second request ok (✓) or not (✗), over ${span.toFixed(1)} s`];
  for (const r of rows.sort((a, b) => group(a.e).localeCompare(group(b.e)) || (a.e.sleep as number) - (b.e.sleep as number))) {
    const line = Array.from({ length: width }, () => ' ');
    for (let c = col(r.start); c < col(r.end); c++) line[c] = '━';
    if (r.gone !== undefined && r.gone <= r.end) line[col(r.gone)] = '×';
    line[col(r.end)] = r.e.ok ? '✓' : '✗';
    const label = `${r.e.target} ka ${r.e.keepalive ? 'on' : 'off'} ${r.e.sleep} s`;
    out.push(`${label.padEnd(22)}${line.join('').trimEnd()}${r.e.ok ? '' : ` ${String(r.e.name ?? 'failed')}`}`);
  }
  return out;
}

/**
 * What a middlebox forgot, from its flow table: each flow that timed out, where it went and
 * when (seconds from the run's start), as a person reading `conntrack -L` twice would say it.
 */
export function formatForgotten(events: readonly Ev[], most = 4): string[] {
  const start = events.find((e) => e.proc === 'lab' && e.type === 'begin')?.t ?? events[0]?.t ?? 0;
  const gone = events.filter((e) => e.source === 'conntrack' && e.type === 'flow-gone' && String(e.why ?? '').startsWith('timed out'));
  const out = gone.slice(0, most).map((e) => {
    // The reply comes from where the flow really went: another address than asked is a DNAT.
    const nat = String(e.flow).split('>')[1] !== e.to ? `, DNAT to ${e.to}` : '';
    return `${e.proc}: ${e.flow}${nat}, ${e.why} at ${(e.t - start).toFixed(2)} s`;
  });
  if (gone.length > most) out.push(`... and ${gone.length - most} more flows`);
  return out;
}
