import * as vscode from 'vscode';
import { labEnv } from '../lab/exec';
import { LabError } from '../lab/errors';
import { checkTools, missingTools } from '../lab/preflight';
import type { ScenarioResult } from '../lab/runner';
import { CATALOG, findScenario, SECTION_TITLES, type Scenario } from '../lab/scenarios';
import { headline } from '../report';
import { splitCommandLine } from './commandLine';
import { readConfig } from './config';
import type { Ctx } from './ctx';
import { describeWait, type LabSession } from './labSession';
import { RESULT_SCHEME } from './resultDocument';

type ScenarioArg = string | { kind: 'scenario'; scenario: Scenario } | undefined;

/** Run Scenario…, Run My Client Against…, Stop: the commands that start and end a lab. */
export function registerRunCommands(ctx: Ctx): void {
  ctx.registerCommand('tcpLab.runScenario', (c) => async (arg?: ScenarioArg) => {
    const scenario = await pickScenario(arg, 'Run a scenario in a private network namespace');
    // The result is the command's value: `executeCommand('tcpLab.runScenario', id)` gets it.
    return scenario ? runInEditor(c, scenario) : undefined;
  });
  ctx.registerCommand('tcpLab.runMyClient', (c) => async (arg?: ScenarioArg, commandLine?: string) => {
    const scenario = await pickScenario(arg, 'Your client takes the sample client\'s place in…');
    if (!scenario) return;
    if (!scenario.procs.some((p) => p.name === 'client')) {
      throw new LabError(`${scenario.id} has no client to replace`, { field: 'scenario', value: scenario.id });
    }
    const remembered = c.extension.workspaceState.get<string>('tcpLab.lastClientCommand');
    const line = commandLine ?? await vscode.window.showInputBox({
      title: `Your client in ${scenario.id}`,
      prompt: '{host} and {port} become the lab server\'s address. One program and its arguments: no shell.',
      value: remembered ?? 'curl -sS --max-time 30 http://{host}:{port}/',
      validateInput: (text) => { try { splitCommandLine(text); return null; } catch (e) { return e instanceof LabError ? e.describe() : String(e); } },
    });
    if (line === undefined) return;
    const argv = splitCommandLine(line);
    if (missingTools([argv[0]!], labEnv().PATH ?? '').length) {
      throw new LabError(`${argv[0]} is not an executable on this machine's PATH`, { field: 'command', value: argv[0] });
    }
    await c.extension.workspaceState.update('tcpLab.lastClientCommand', line);
    return runInEditor(c, scenario, argv);
  });
  ctx.registerCommand('tcpLab.stop', (c) => async () => {
    if (!c.running) return;
    await vscode.window.withProgress({ location: vscode.ProgressLocation.Window, title: 'TCP Lab: tearing down' }, () => c.stopSession());
  });
}

async function pickScenario(arg: ScenarioArg, title: string): Promise<Scenario | undefined> {
  if (typeof arg === 'string') return findScenario(arg);
  if (arg && arg.kind === 'scenario') return arg.scenario;
  type Item = vscode.QuickPickItem & { scenario?: Scenario };
  const items: Item[] = [];
  let section: string | undefined;
  for (const s of CATALOG) {
    if (s.section !== section) items.push({ label: SECTION_TITLES[(section = s.section)], kind: vscode.QuickPickItemKind.Separator });
    items.push({ label: s.id, description: s.title, detail: s.summary, scenario: s });
  }
  const picked = await vscode.window.showQuickPick(items, { title, matchOnDescription: true, matchOnDetail: true, placeHolder: 'scenario id or words of its title' });
  return picked?.scenario;
}

/**
 * Runs a scenario in the editor: terminals for its programs (registerTerminals), a progress
 * notification counting down to the awaited event (cancel tears the lab down), then the
 * verdict as a notification with the details one click away.
 */
export async function runInEditor(ctx: Ctx, scenario: Scenario, clientCommand?: readonly string[]): Promise<ScenarioResult | undefined> {
  const busy = ctx.running;
  if (busy) {
    const stop = 'Stop It and Run';
    const answer = await vscode.window.showWarningMessage(`A lab is running (${busy.scenario.id}). Stop it and run ${scenario.id}?`, { modal: true }, stop);
    if (answer !== stop) return undefined;
    await ctx.stopSession();
  }
  const config = readConfig();
  checkTools(config.firewall, config.pythonPath);
  ctx.log.info(`run ${scenario.id}${clientCommand ? ` with the client ${clientCommand.join(' ')}` : ''} (mode ${config.mode}, firewall ${config.firewall}, capture ${config.capture})`);
  const lab = await ctx.privilegedLab(config.mode);
  const session = ctx.startSession(scenario, {
    ...(lab ? { lab } : {}),
    mode: config.mode === 'sudo' ? 'auto' : config.mode,
    firewall: config.firewall,
    python: config.pythonPath,
    capture: config.capture,
    pollInterval: config.pollInterval,
    sysctls: config.timers,
    ...(clientCommand ? { clientCommand } : {}),
  });
  const result = await vscode.window.withProgress(
    { location: vscode.ProgressLocation.Notification, title: `TCP Lab: ${scenario.id}`, cancellable: true },
    (progress, token) => follow(session, progress, token),
  );
  void showVerdict(ctx, result);
  return result;
}

async function follow(session: LabSession, progress: vscode.Progress<{ message?: string; increment?: number }>, token: vscode.CancellationToken): Promise<ScenarioResult> {
  const cancel = token.onCancellationRequested(() => session.stop());
  let reported = 0;
  const tick = () => {
    // The deadline's clock starts once the lab is built: no share of the bar before.
    const done = session.progress ? Math.min(99, (session.elapsed / Math.max(1, session.deadline)) * 100) : 0;
    const message = session.state === 'stopping' ? 'cancelled: tearing the lab down' : describeWait(session.progress, session.deadline, session.elapsed);
    progress.report({ message, increment: Math.max(0, done - reported) });
    reported = Math.max(reported, done);
  };
  tick();
  const timer = setInterval(tick, 250);
  try {
    return await session.done;
  } finally {
    clearInterval(timer);
    cancel.dispose();
  }
}

async function showVerdict(ctx: Ctx, r: ScenarioResult): Promise<void> {
  const line = headline(r);
  ctx.log.info(line);
  const details = 'Details';
  const show = r.error === 'cancelled' ? vscode.window.showInformationMessage(`TCP Lab: ${r.id} cancelled; the lab is torn down`)
    : r.verdict === 'pass' ? vscode.window.showInformationMessage(line, details) : vscode.window.showWarningMessage(line, details);
  if ((await show) === details) {
    await vscode.window.showTextDocument(vscode.Uri.from({ scheme: RESULT_SCHEME, path: `/${r.id}.txt` }), { preview: true });
  }
}
