import * as vscode from 'vscode';
import { LabError } from '../lab/errors';
import { describe as describeRule, REJECT_VARIANTS, type FaultRule } from '../lab/rules';
import { PORT } from '../lab/scenarios/common';
import { MANUAL_CLIENTS, manualScenario, type ManualClient } from '../lab/scenarios/manual';
import type { RuleSpec } from '../lab/scenarios/types';
import { readConfig } from './config';
import type { Ctx } from './ctx';
import type { LabSession } from './labSession';
import { checkTools } from '../lab/preflight';

/** The faults offered by hand: each direction of the server's port, dropped or rejected. */
export function faultChoices(): { label: string; description: string; rule: Omit<RuleSpec, 'id'> }[] {
  const choices: { label: string; description: string; rule: Omit<RuleSpec, 'id'> }[] = [
    { label: 'DROP what the client sends', description: 'SYNs and requests vanish: connect times out, data is retransmitted', rule: { action: 'drop', direction: 'to-port', chain: 'INPUT' } },
    { label: 'DROP what the server sends', description: 'replies vanish: the client waits, the server retransmits', rule: { action: 'drop', direction: 'from-port', chain: 'INPUT' } },
  ];
  for (const rejectWith of REJECT_VARIANTS) {
    choices.push({
      label: `REJECT what the client sends with ${rejectWith}`,
      description: rejectWith === 'tcp-reset' ? 'a forged RST: ECONNREFUSED or ECONNRESET' : 'an ICMP error the client\'s kernel turns into an errno',
      rule: { action: 'reject', rejectWith, direction: 'to-port', chain: 'INPUT' },
    });
  }
  return choices;
}

/** A row of the Lab Session view, as its inline actions get it: `rule:<id>`, `proc:<name>`. */
type SessionRow = { key?: unknown };

function rowName(arg: SessionRow | undefined, kind: 'rule' | 'proc'): string | undefined {
  const key = typeof arg?.key === 'string' ? arg.key : '';
  return key.startsWith(`${kind}:`) ? key.slice(kind.length + 1) : undefined;
}

function manualSession(ctx: Ctx): LabSession {
  const s = ctx.running;
  if (!s || !s.scenario.openEnded) throw new LabError('no manual lab is running', { hint: 'TCP Lab: Start a Manual Lab… starts one' });
  return s;
}

/**
 * Manual mode: a server and a client in a lab with no script, and faults applied and lifted by
 * hand (from the Lab Session view or the palette). Each step is a lab marker on the timeline.
 */
export function registerManualCommands(ctx: Ctx): void {
  let next = 1;
  ctx.registerCommand('tcpLab.startManual', (c) => async () => {
    if (c.running) {
      const stop = 'Stop It and Start';
      if (await vscode.window.showWarningMessage(`A lab is running (${c.running.scenario.id}). Stop it and start a manual lab?`, { modal: true }, stop) !== stop) return;
      await c.stopSession();
    }
    const picked = await vscode.window.showQuickPick(
      (Object.keys(MANUAL_CLIENTS) as ManualClient[]).map((client) => ({ label: MANUAL_CLIENTS[client].label, detail: MANUAL_CLIENTS[client].detail, client })),
      { title: 'Manual lab: what the client does', placeHolder: 'the server is an echo server on 127.0.0.1:7000 in the lab\'s namespace' },
    );
    if (!picked) return;
    const config = readConfig();
    checkTools(config.firewall, config.pythonPath);
    const lab = await c.privilegedLab(config.mode);
    const session = c.startSession(manualScenario(picked.client), {
      ...(lab ? { lab } : {}),
      mode: config.mode === 'sudo' ? 'auto' : config.mode, firewall: config.firewall, python: config.pythonPath, capture: config.capture,
      pollInterval: config.pollInterval, sysctls: config.timers,
    });
    void vscode.commands.executeCommand('setContext', 'tcpLab.manual', true);
    void vscode.commands.executeCommand('tcpLab.session.focus');
    void session.done.then((r) => {
      void vscode.commands.executeCommand('setContext', 'tcpLab.manual', false);
      const how = r.error && r.error !== 'cancelled' ? `ended: ${r.error.split('\n')[0]}` : 'stopped; the lab is torn down';
      void vscode.window.showInformationMessage(`TCP Lab: manual lab ${how}`);
    });
  });

  ctx.registerCommand('tcpLab.applyFault', (c) => async () => {
    const session = manualSession(c);
    const picked = await vscode.window.showQuickPick(
      faultChoices().map((f) => ({ ...f, detail: describeRule({ ...f.rule, id: 'x', port: PORT } as FaultRule, readConfig().firewall) })),
      { title: 'Apply a fault in the lab', matchOnDescription: true },
    );
    if (!picked) return;
    const id = `manual-${next++}`;
    await session.perform([{ apply: { ...picked.rule, id, port: PORT } }]);
  });

  ctx.registerCommand('tcpLab.liftFault', (c) => async (arg?: SessionRow) => {
    const session = manualSession(c);
    let id = rowName(arg, 'rule');
    if (!id) {
      const active = [...session.rules.values()].filter((r) => !r.removed);
      if (!active.length) throw new LabError('no fault is applied');
      // One fault: nothing to choose.
      id = active.length === 1 ? active[0]!.id
        : (await vscode.window.showQuickPick(active.map((r) => ({ label: r.command, id: r.id })), { title: 'Lift which fault?' }))?.id;
      if (!id) return;
    }
    await session.perform([{ remove: id }]);
  });

  const program = (c: Ctx, arg?: SessionRow) => {
    const session = manualSession(c);
    const name = rowName(arg, 'proc');
    if (!name || !session.processes.has(name)) throw new LabError('pick a program in the Lab Session view', { field: 'process', value: name });
    return { session, p: session.processes.get(name)! };
  };
  ctx.registerCommand('tcpLab.killProcess', (c) => async (arg?: SessionRow) => {
    const { session, p } = program(c, arg);
    if (!p.exit) await session.perform([{ kill: p.name }]);
  });
  ctx.registerCommand('tcpLab.restartProcess', (c) => async (arg?: SessionRow) => {
    const { session, p } = program(c, arg);
    if (!p.exit) {
      await session.perform([{ kill: p.name }]);
      await p.proc.exited;
    }
    await session.perform([{ start: p.name }]);
  });
}
