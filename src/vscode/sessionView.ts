import * as vscode from 'vscode';
import { headline } from '../report';
import type { Ctx } from './ctx';
import { describeWait, type LabSession, type SessionProcess, type SessionRule } from './labSession';

type Node =
  | { kind: 'group'; group: 'processes' | 'rules' | 'timers' | 'verdict'; label: string }
  | { kind: 'line'; label: string; description?: string; icon?: string; tooltip?: string; process?: SessionProcess; rule?: SessionRule; context?: string };

const REFRESH_MS = 500;

/**
 * The running (or last) session: its namespace, its programs (a click shows the terminal), the
 * rules with their packet counters read from the kernel, the timers set, what the run waits
 * for, and the verdict.
 */
export function registerSessionView(ctx: Ctx): void {
  const changed = new vscode.EventEmitter<void>();
  let pending: NodeJS.Timeout | undefined;
  // A storm of events (every socket poll) redraws at most twice a second.
  const refresh = () => {
    if (pending) return;
    pending = setTimeout(() => { pending = undefined; changed.fire(); }, 100);
  };
  const provider: vscode.TreeDataProvider<Node> = {
    onDidChangeTreeData: changed.event,
    getChildren(node) {
      const s = ctx.session;
      if (!s) return [];
      return node ? children(s, node) : top(s);
    },
    getTreeItem(node) {
      if (node.kind === 'group') {
        const item = new vscode.TreeItem(node.label, vscode.TreeItemCollapsibleState.Expanded);
        item.id = `group:${node.group}`;
        return item;
      }
      const item = new vscode.TreeItem(node.label);
      item.description = node.description;
      if (node.icon) item.iconPath = new vscode.ThemeIcon(node.icon);
      if (node.tooltip) item.tooltip = node.tooltip;
      if (node.process) item.command = { command: 'tcpLab.showTerminal', title: 'Show Terminal', arguments: [node.process] };
      // Manual mode's inline actions (lift a rule, kill or restart a program) key on this.
      if (node.context) item.contextValue = node.context;
      return item;
    },
  };
  const view = vscode.window.createTreeView('tcpLab.session', { treeDataProvider: provider });
  // Counters move while packets hit a rule; read them about twice a second while a lab runs.
  const counters = setInterval(() => { void ctx.running?.refreshCounters(); }, REFRESH_MS);
  const ticker = setInterval(() => { if (ctx.running) refresh(); }, REFRESH_MS);
  ctx.push(view, changed, ctx.onDidChangeSession(refresh), {
    dispose: () => { clearInterval(counters); clearInterval(ticker); if (pending) clearTimeout(pending); },
  });
  ctx.push(ctx.onDidChangeSession((s) => {
    view.description = !s ? undefined : s.state === 'done' ? s.result?.verdict.toUpperCase() : `${s.scenario.id} · ${s.elapsed.toFixed(1)} s`;
  }));
}

function top(s: LabSession): Node[] {
  const nodes: Node[] = [];
  const r = s.result;
  const state = s.state === 'done' ? (r?.verdict === 'pass' ? 'passed' : 'failed') : s.state;
  nodes.push({ kind: 'line', label: s.scenario.id, description: `${state}, ${s.elapsed.toFixed(1)} s`, icon: s.state === 'done' ? (r?.verdict === 'pass' ? 'pass' : 'error') : 'loading~spin', tooltip: s.scenario.summary });
  if (s.live) {
    nodes.push({ kind: 'line', label: 'namespace', description: `${s.live.mode}, init pid ${s.live.pid}${s.state === 'done' ? ' (gone)' : ''}`, icon: 'vm', tooltip: `nsenter --target ${s.live.pid} --net ss -tanoie` });
  }
  if (s.state !== 'done' && s.scenario.openEnded) {
    nodes.push({ kind: 'line', label: 'manual', description: 'apply a fault (▸ in this view\'s title), lift it from its row; Stop ends the lab', icon: 'tools' });
  } else if (s.state !== 'done') {
    nodes.push({ kind: 'line', label: 'waiting', description: describeWait(s.progress, s.deadline, s.elapsed), icon: 'watch' });
  }
  if (r && !s.scenario.openEnded) nodes.push({ kind: 'group', group: 'verdict', label: `verdict: ${headline(r)}` });
  nodes.push({ kind: 'group', group: 'processes', label: 'processes' });
  if (s.rules.size) nodes.push({ kind: 'group', group: 'rules', label: 'rules' });
  if (s.sysctls.size) nodes.push({ kind: 'group', group: 'timers', label: 'timers set' });
  return nodes;
}

function children(s: LabSession, node: Node): Node[] {
  if (node.kind !== 'group') return [];
  switch (node.group) {
    case 'processes':
      return [...s.processes.values()].map((p) => ({
        kind: 'line', label: p.name, process: p,
        context: s.scenario.openEnded && s.state === 'running' ? (p.exit ? 'manualProcessExited' : 'manualProcess') : undefined,
        description: `pid ${p.pid}, ${p.exit ? (p.exit.signal ? `killed (signal ${p.exit.signal})` : `exited ${p.exit.code}`) : 'running'}`,
        icon: p.exit ? 'circle-slash' : 'play-circle', tooltip: p.proc.argv.join(' '),
      }));
    case 'rules':
      return [...s.rules.values()].map((rule) => ({
        kind: 'line', label: rule.command, rule,
        context: s.scenario.openEnded && s.state === 'running' && !rule.removed ? 'activeRule' : undefined,
        description: `${rule.packets === null ? '' : `${rule.packets} packets, ${rule.bytes} bytes`}${rule.removed ? ' (removed)' : ''}`,
        icon: rule.removed ? 'shield' : 'flame',
      }));
    case 'timers':
      return [...s.sysctls].map(([name, value]) => ({ kind: 'line', label: `${name} = ${value}`, icon: 'clock' }));
    case 'verdict': {
      const r = s.result;
      if (!r) return [];
      const lines: Node[] = [
        { kind: 'line', label: 'expected', description: `${r.expected.errno ? `${r.expected.errno.name} (${r.expected.errno.number})` : r.expected.outcome}${r.expected.says ? `: ${r.expected.says}` : ''}` },
        { kind: 'line', label: 'measured', description: r.measured.says ?? r.measured.outcome ?? 'nothing' },
        { kind: 'line', label: 'defaults', description: `${r.defaults.how}` },
      ];
      if (r.error) lines.push({ kind: 'line', label: 'error', description: r.error, icon: 'warning' });
      for (const f of r.fixes) lines.push({ kind: 'line', label: 'fix', description: `${f.setting}: ${f.why}`, icon: 'lightbulb', tooltip: f.why });
      return lines;
    }
    default: {
      const never: never = node.group;
      return never;
    }
  }
}
