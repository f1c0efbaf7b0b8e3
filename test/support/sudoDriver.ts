/**
 * Stands in for the editor in test/sudo.test.ts, run as the unprivileged user: the first line
 * on stdin is the password (what the password box would hand over), then one JSON command per
 * line: `{"run": ID}` or `{"quit": true}`. It answers with one JSON object per line on stdout,
 * and at the end every log line it collected (trace level: every protocol message included).
 *
 * Usage: node sudo-driver.js HELPER_JS, or node sudo-driver.js --sudo-needed
 */
import { createInterface } from 'node:readline';
import { monotonic } from '../../src/lab/clock';
import { LabError } from '../../src/lab/errors';
import { Logger, MemorySink } from '../../src/lab/log';
import { PrivilegedLab, sudoNeeded, type PrivilegedRun } from '../../src/lab/privileged';
import { findScenario, type Action } from '../../src/lab/scenarios';
import { manualScenario, type ManualClient } from '../../src/lab/scenarios/manual';

interface Command {
  run?: string;
  manual?: ManualClient;
  /** Actions done by hand once the run is live (LiveLab.perform). */
  perform?: Action[];
  /** Seconds after which the counters are read and the run stopped. */
  stopAfter?: number;
  quit?: boolean;
}

const say = (m: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(m)}\n`);
const describe = (e: unknown) => (e instanceof LabError ? e.describe() : e instanceof Error ? e.message : String(e));

async function main(): Promise<void> {
  if (process.argv[2] === '--sudo-needed') {
    say({ type: 'sudo-needed', needed: await sudoNeeded() });
    return;
  }
  const sink = new MemorySink();
  const log = new Logger(sink, 'trace');
  const input = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  const first = await input.next();
  if (first.done) throw new Error('no password on stdin');
  const t0 = monotonic();
  let lab: PrivilegedLab;
  try {
    lab = await PrivilegedLab.start({ password: first.value, helper: process.argv[2]!, log });
  } catch (e) {
    say({ type: 'error', message: describe(e), seconds: monotonic() - t0, logs: sink.lines });
    process.exitCode = 1;
    return;
  }
  say({ type: 'started', helperPid: lab.pid, uid: lab.uid, startSeconds: lab.startSeconds });
  for (let next = await input.next(); !next.done; next = await input.next()) {
    const command = JSON.parse(next.value) as Command;
    if (command.quit) break;
    if (!command.run) continue;
    const t = monotonic();
    try {
      const scenario = command.run === 'manual' ? manualScenario(command.manual) : findScenario(command.run);
      const run = lab.run(scenario, {
        onProcess: (p) => say({ type: 'process', name: p.name, pid: p.pid, argv: p.argv }),
      });
      if (command.perform || command.stopAfter) await manual(run, command);
      const r = await run.done;
      say({
        type: 'result', id: r.id, verdict: r.verdict, errno: r.measured.errno, seconds: r.measured.seconds,
        band: r.expected.seconds, mode: r.mode, error: r.error ?? null, events: r.events.length,
        applied: r.applied, output: r.output, wallSeconds: r.wallSeconds, driverSeconds: monotonic() - t,
        faults: r.events.filter((e) => e.source === 'lab' && e.type === 'fault').length,
      });
    } catch (e) {
      say({ type: 'run-error', message: describe(e) });
    }
  }
  await lab.dispose();
  say({ type: 'closed', logs: sink.lines });
}

/** What the editor's manual mode does: act on the live lab, read the rule counters, stop. */
async function manual(run: PrivilegedRun, command: Command): Promise<void> {
  for (let i = 0; i < 200 && !run.live; i++) await new Promise((r) => setTimeout(r, 25));
  if (!run.live) throw new Error('the run never went live');
  if (command.perform) {
    await run.live.perform(command.perform);
    say({ type: 'performed' });
  }
  if (command.stopAfter) {
    await new Promise((r) => setTimeout(r, command.stopAfter! * 1000));
    say({ type: 'counters', counters: [...(await run.live.counters())] });
    run.stop();
  }
}

// Out, even with stdin still open (readline holds it): stdout is a pipe, written synchronously.
main().catch((e) => {
  say({ type: 'error', message: describe(e) });
  process.exitCode = 1;
}).finally(() => process.exit());
