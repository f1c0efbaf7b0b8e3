import * as vscode from 'vscode';
import { LabError } from '../lab/errors';
import type { HostRuleInfo, HostSweepInfo } from '../lab/helperProtocol';
import { processOwner } from '../lab/hostOwner';
import { HostSession, sweepHost } from '../lab/hostSession';
import { Logger, type LogLevel } from '../lab/log';
import type { PrivilegedLab } from '../lab/privileged';
import { readConfig } from './config';
import { describeError, type Ctx } from './ctx';
import {
  confirmText, editorEndpoints, guardRefusal, helperClient, hostChain, hostRule, listeningPorts, nextHostId, portProblem,
  rootClient, ruleRow, sweepNotice, type HostClient,
} from './hostModeModel';
import { faultChoices } from './manualCommands';

/** Counters move while a rule holds traffic: the view reads them this often while it shows any. */
const REFRESH_MS = 1000;

/**
 * Host mode: the lab's faults on this host's own traffic, for a program running outside the
 * lab (a service and its real database). Always root: the editor itself when it is root,
 * otherwise the window's helper through sudo, even where rootless labs run, since the host's
 * own firewall is not in any namespace of the user's. The rules belong to the process that
 * applied them (helper or extension host): its exit removes them, and a sweep at the next start
 * removes those of one that was killed.
 */
export function registerHostMode(ctx: Ctx): void {
  const isRoot = process.getuid?.() === 0;
  const changed = new vscode.EventEmitter<void>();
  let rows: HostRuleInfo[] = [];
  let client: HostClient | undefined;
  let session: HostSession | undefined;
  let timer: NodeJS.Timeout | undefined;
  let reading = false;
  const watched = new WeakSet<PrivilegedLab>();
  // At deactivate the log channel throws on every write ("Channel has been closed"): a logger
  // that throws would stop the removal of the rules before its first iptables command.
  const log = new Logger({ write: (level: LogLevel, m: string) => { try { ctx.log.log(level, m); } catch { /* window gone */ } } }, 'trace');

  const view = vscode.window.createTreeView('tcpLab.hostRules', {
    treeDataProvider: {
      onDidChangeTreeData: changed.event,
      getChildren: (row?: HostRuleInfo) => (row ? [] : rows),
      getTreeItem: (info: HostRuleInfo) => {
        const r = ruleRow(info);
        const item = new vscode.TreeItem(r.label);
        item.id = info.tag;
        item.description = r.description;
        item.tooltip = r.tooltip;
        item.contextValue = 'hostRule';
        item.iconPath = new vscode.ThemeIcon('flame', new vscode.ThemeColor('list.warningForeground'));
        return item;
      },
    },
  });

  const show = (next: HostRuleInfo[]): void => {
    rows = next;
    void vscode.commands.executeCommand('setContext', 'tcpLab.hostRules', rows.length > 0);
    view.badge = rows.length ? { value: rows.length, tooltip: `${rows.length} fault rule(s) on this host's own traffic` } : undefined;
    changed.fire();
    if (rows.length && !timer) timer = setInterval(() => void refresh(), REFRESH_MS);
    if (!rows.length && timer) {
      clearInterval(timer);
      timer = undefined;
    }
  };

  const refresh = async (): Promise<void> => {
    if (reading || !client || !view.visible) return;
    if (!client.alive) return show([]);
    reading = true;
    try {
      show(await client.list());
    } catch (e) {
      log.warn(`host mode: could not read the host rules: ${describeError(e)}`);
    } finally {
      reading = false;
    }
  };

  const noticed = new Set<string>();
  const notice = (swept: HostSweepInfo | undefined): void => {
    const text = sweepNotice(swept);
    if (!text || noticed.has(text)) return;
    noticed.add(text);
    log.info(`host mode: ${text}`);
    void vscode.window.showInformationMessage(`TCP Lab: ${text}`);
  };

  const watch = (lab: PrivilegedLab): void => {
    if (watched.has(lab)) return;
    watched.add(lab);
    void lab.startSweep.then(notice);
    lab.onExit(() => {
      if (rows.length) {
        log.warn('host mode: the lab helper exited; its host rules were removed as it exited (or, if it was killed, by the next helper\'s sweep)');
      }
      // At deactivate the view is gone and refuses updates; nothing is left to show anyway.
      try { show([]); } catch { /* window gone */ }
    });
  };

  /** The editor's own root, or the window's helper: 'sudo' makes ctx start one even where the lab runs rootless. */
  const root = async (): Promise<HostClient> => {
    if (client?.alive) return client;
    if (isRoot) return (client = rootClient((session ??= new HostSession(log))));
    const lab = await ctx.privilegedLab('sudo');
    if (!lab) throw new LabError('host mode needs root, and no root helper could be started');
    watch(lab);
    return (client = helperClient(lab));
  };

  if (isRoot) {
    // As root the editor sweeps at once: rules of an extension host or a helper that was killed.
    void sweepHost(log).then(notice, (e: unknown) => log.warn(`host mode: the sweep of old host rules failed: ${describeError(e)}`));
  }

  ctx.registerCommand('tcpLab.hostApplyFault', () => async () => {
    const text = await vscode.window.showInputBox({
      title: 'Fault the host\'s own traffic (1/2): the port',
      prompt: 'The TCP port of the traffic to fault on this host, e.g. 5432 for the database your service uses',
      placeHolder: '5432',
      ignoreFocusOut: true,
      validateInput: portProblem,
    });
    if (text === undefined) return;
    const port = Number(text.trim());
    const serverHere = listeningPorts().has(port);
    const picked = await vscode.window.showQuickPick(
      faultChoices().map((f) => ({ ...f, detail: hostChain(f.rule.direction, serverHere).why })),
      { title: `Fault the host's own traffic (2/2): what happens on port ${port}`, matchOnDescription: true },
    );
    if (!picked) return;
    const backend = readConfig().firewall;
    const rule = hostRule(picked.rule, nextHostId(rows.map((r) => r.id)), port, serverHere);
    // Refused before any password is asked; the helper checks again with its own view.
    const refusal = guardRefusal(rule, editorEndpoints());
    if (refusal) {
      log.warn(`host mode: ${refusal}`);
      await vscode.window.showErrorMessage('TCP Lab will not apply this host rule: it would cut this editor\'s own connection.', { modal: true, detail: refusal });
      return;
    }
    const path = isRoot ? 'root' : client?.alive ? 'helper' : 'sudo';
    const owner = client?.alive ? client.owner : isRoot ? processOwner() : undefined;
    const { message, detail } = confirmText(rule, backend, picked.label, hostChain(rule.direction, serverHere).why, path, owner);
    if (await vscode.window.showWarningMessage(message, { modal: true, detail }, 'Apply') !== 'Apply') return;
    const c = await root();
    try {
      show(await c.apply(rule, backend, editorEndpoints()));
    } catch (e) {
      if (e instanceof LabError && e.message.startsWith('refusing host rule')) {
        await vscode.window.showErrorMessage('TCP Lab will not apply this host rule: it would cut this editor\'s own connection.', { modal: true, detail: e.describe() });
        return;
      }
      throw e;
    }
    log.info(`host mode: applied ${rule.id} on port ${port} (${picked.label})`);
    void vscode.commands.executeCommand('tcpLab.hostRules.focus');
  });

  ctx.registerCommand('tcpLab.hostRemoveFault', () => async (arg?: HostRuleInfo) => {
    if (!client?.alive || !rows.length) throw new LabError('this window has no host rules');
    let id = arg?.id;
    if (!id) {
      id = (await vscode.window.showQuickPick(rows.map((r) => ({ label: ruleRow(r).label, description: r.tag, id: r.id })), { title: 'Remove which host rule?' }))?.id;
      if (!id) return;
    }
    show(await client.remove(id));
  });

  ctx.registerCommand('tcpLab.hostRemoveAllFaults', () => async () => {
    if (!client?.alive) return show([]);
    const { rules, errors } = await client.removeAll();
    show(rules);
    if (errors.length) throw new LabError(`${errors.length} host rule(s) could not be removed: ${errors[0]!.message}`);
  });

  ctx.push(changed, view, view.onDidChangeVisibility(() => void refresh()), {
    dispose: () => {
      if (timer) clearInterval(timer);
      // Through the helper, its exit removes them (ctx disposes it); as root, this does.
      return session?.close();
    },
  });
}
