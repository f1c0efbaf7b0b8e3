import { createWriteStream } from 'node:fs';
import { LabError } from './lab/errors';
import { Logger, stderrSink } from './lab/log';
import { runScenario, type Progress, type ScenarioResult } from './lab/runner';
import { CATALOG, findScenario, SECTION_TITLES, startOrder, type Scenario, type Section } from './lab/scenarios';
import { monotonic } from './lab/clock';
import { parseArgs, USAGE, type CliOptions } from './cliArgs';
import { formatMatrices, formatResult, resultJson } from './report';
import { sweepStaleRunDirs } from './lab/tempDirs';
import { checkTools } from './lab/preflight';
import { killStrandedUnshares, Sandbox } from './lab/sandbox';
import { watchSockets } from './lab/watch';
import { hostCommand } from './cliHost';

async function main(argv: readonly string[]): Promise<number> {
  let options: CliOptions;
  try {
    options = parseArgs(argv);
  } catch (e) {
    process.stderr.write(`tcp-lab: ${e instanceof LabError ? e.describe() : String(e)}\n`);
    return 2;
  }
  if (options.command === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (options.command === 'watch') return watch(options);
  if (options.command === 'host') return hostCommand(options.host!, options.verbose);
  let scenarios: Scenario[];
  try {
    scenarios = select(options);
  } catch (e) {
    process.stderr.write(`tcp-lab: ${e instanceof LabError ? e.describe() : String(e)}\n`);
    return 2;
  }
  if (options.command === 'list') {
    if (options.json) {
      process.stdout.write(`${JSON.stringify(scenarios.map((s) => ({ id: s.id, section: s.section, title: s.title, summary: s.summary })), null, 2)}\n`);
    } else {
      let section: Section | undefined;
      for (const s of scenarios) {
        if (s.section !== section) process.stdout.write(`${section ? '\n' : ''}${SECTION_TITLES[(section = s.section)]}\n`);
        process.stdout.write(`  ${s.id.padEnd(32)} ${s.title}\n`);
      }
    }
    return 0;
  }
  try {
    checkTools(options.firewall, options.python);
    // One namespace first: if the host forbids them, say so once, with what to do.
    await (await Sandbox.create({ log: new Logger(stderrSink, options.verbose ? 'debug' : 'warn'), mode: options.mode, label: 'probe' })).dispose();
  } catch (e) {
    process.stderr.write(`tcp-lab: ${e instanceof LabError ? e.describe() : String(e)}\n`);
    return 2;
  }
  return run(scenarios, options);
}

function select(o: CliOptions): Scenario[] {
  let list = o.command === 'list' || o.all || o.ids.length === 0 ? [...CATALOG] : o.ids.map(findScenario);
  for (const section of o.sections) {
    if (!(section in SECTION_TITLES)) {
      throw new LabError('unknown section', { field: '--section', value: section, hint: `sections: ${Object.keys(SECTION_TITLES).join(', ')}` });
    }
  }
  if (o.sections.length) list = list.filter((s) => o.sections.includes(s.section));
  return list;
}

async function watch(o: CliOptions): Promise<number> {
  const log = new Logger(stderrSink, o.verbose ? 'debug' : 'warn');
  const controller = new AbortController();
  const stop = () => controller.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    return await watchSockets({
      port: o.port, command: o.watchCommand, interval: o.interval, tool: o.tool, json: o.json, seconds: o.seconds,
      log, write: (line) => process.stdout.write(`${line}\n`), signal: controller.signal,
    });
  } catch (e) {
    process.stderr.write(`tcp-lab: ${e instanceof LabError ? e.describe() : String(e)}\n`);
    return 2;
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}

async function run(scenarios: Scenario[], o: CliOptions): Promise<number> {
  const log = new Logger(stderrSink, o.verbose ? 'debug' : 'warn');
  const swept = sweepStaleRunDirs();
  // A lab killed while unshare was still setting up can strand its --map-auto helper.
  killStrandedUnshares();
  if (swept) log.info(`removed ${swept} run folder(s) left by a lab that was killed`);
  const events = o.eventsFile ? createWriteStream(o.eventsFile) : undefined;
  const progress = new ProgressLine(scenarios.length);
  const controller = new AbortController();
  const stop = () => {
    progress.note('interrupted: tearing the lab down');
    controller.abort();
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);

  const t0 = monotonic();
  const results: ScenarioResult[] = new Array(scenarios.length);
  const order = o.jobs > 1 ? startOrder(scenarios) : scenarios.map((_, i) => i);
  let next = 0;
  const worker = async () => {
    while (next < scenarios.length && !controller.signal.aborted) {
      const i = order[next++]!;
      const s = scenarios[i]!;
      progress.started(s.id);
      const r = await runScenario(s, {
        log,
        mode: o.mode,
        firewall: o.firewall,
        python: o.python,
        clientCommand: o.clientCommand,
        capture: o.capture,
        signal: controller.signal,
        onProgress: (p) => progress.waiting(p),
        onEvent: events ? (e) => events.write(`${JSON.stringify({ scenario: s.id, ...e })}\n`) : undefined,
      });
      results[i] = r;
      progress.finished(r);
      if (!o.json) progress.print(`${formatResult(r, { explain: o.explain, color: process.stdout.isTTY })}\n`);
    }
  };
  await Promise.all(Array.from({ length: Math.min(o.jobs, scenarios.length) }, worker));
  const wall = monotonic() - t0;
  process.off('SIGINT', stop);
  process.off('SIGTERM', stop);
  await new Promise<void>((resolve) => (events ? events.end(resolve) : resolve()));

  const done = results.filter(Boolean);
  const failed = done.filter((r) => r.verdict !== 'pass');
  progress.clear();
  if (o.json) process.stdout.write(`${JSON.stringify(done.map(resultJson), null, 2)}\n`);
  else {
    const matrices = formatMatrices(done);
    if (matrices) process.stdout.write(`\n${matrices}\n`);
  }
  process.stderr.write(
    `tcp-lab: ${done.length - failed.length} passed, ${failed.length} failed` +
      `${done.length < scenarios.length ? `, ${scenarios.length - done.length} not run` : ''}` +
      ` in ${wall.toFixed(1)} s wall (jobs ${Math.min(o.jobs, scenarios.length)})\n`,
  );
  if (failed.length) process.stderr.write(`failed: ${failed.map((r) => r.id).join(' ')}\n`);
  return failed.length || done.length < scenarios.length ? 1 : 0;
}

/** Progress on stderr: a live line on a terminal, a line every few seconds otherwise. */
class ProgressLine {
  private readonly live = process.stderr.isTTY === true;
  private readonly waits = new Map<string, Progress>();
  private readonly lastLine = new Map<string, number>();
  private done = 0;
  private shown = false;

  constructor(private readonly total: number) {}

  started(id: string): void {
    this.waits.delete(id);
    this.render(`starting ${id}`);
  }

  waiting(p: Progress): void {
    this.waits.set(p.id, p);
    if (this.live) return this.render(this.describe(p));
    const last = this.lastLine.get(p.id) ?? 0;
    if (p.elapsed - last >= 2) {
      this.lastLine.set(p.id, p.elapsed);
      process.stderr.write(`  ... ${this.describe(p)}\n`);
    }
  }

  finished(r: ScenarioResult): void {
    this.done++;
    this.waits.delete(r.id);
    const other = [...this.waits.values()].pop();
    this.render(other ? this.describe(other) : `${r.id} ${r.verdict}`);
  }

  print(text: string): void {
    this.clear();
    process.stdout.write(text);
  }

  note(text: string): void {
    this.clear();
    process.stderr.write(`${text}\n`);
  }

  clear(): void {
    if (this.live && this.shown) process.stderr.write('\r\x1b[K');
    this.shown = false;
  }

  private describe(p: Progress): string {
    const band = p.band && p.band[1] !== Infinity ? ` (expected at ${p.band[0].toFixed(1)}-${p.band[1].toFixed(1)} s)` : '';
    return `${p.id}: ${p.elapsed.toFixed(1)} s, waiting for ${p.waitingFor ?? 'the programs'}${band}`;
  }

  private render(text: string): void {
    if (!this.live) return;
    process.stderr.write(`\r\x1b[K[${this.done}/${this.total}] ${text.slice(0, (process.stderr.columns ?? 100) - 10)}`);
    this.shown = true;
  }
}

// `tcp-lab list | head` closes stdout early: that is not an error of the lab.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw e;
});

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (e) => {
    process.stderr.write(`tcp-lab: ${e instanceof LabError ? e.describe() : e instanceof Error ? e.stack : String(e)}\n`);
    process.exitCode = 1;
  },
);
