import * as vscode from 'vscode';
import { headline } from '../report';
import type { Ctx } from './ctx';
import { describeWait, type LabSession } from './labSession';

/** A row of the view. The same object stands for the same row for the whole session. */
interface Node {
  key: string;
}

interface Row {
  label: string;
  description?: string;
  icon?: string;
  tooltip?: string;
  /** Manual mode's inline actions (lift a rule, kill or restart a program) key on this. */
  context?: string;
  /** The argument the row's inline actions get. */
  arg?: unknown;
  expanded?: boolean;
  showTerminal?: boolean;
}

const REFRESH_MS = 500;

/**
 * The running (or last) session: its namespace, its programs (a click shows the terminal), the
 * rules with their packet counters read from the kernel, the timers set, what the run waits
 * for, and the verdict.
 *
 * Rows are redrawn one by one, only when what they show changed: a row VS Code redraws while
 * the user clicks its inline action can lose the binding to its element (the command then gets
 * no argument), and the elapsed time changes twice a second.
 */
export function registerSessionView(ctx: Ctx): void {
  const changed = new vscode.EventEmitter<Node | Node[] | undefined>();
  const nodes = new Map<string, Node>();
  const node = (key: string): Node => {
    let n = nodes.get(key);
    if (!n) nodes.set(key, (n = { key }));
    return n;
  };
  let shown: LabSession | undefined;
  let shape = '';
  const drawn = new Map<string, string>();

  const provider: vscode.TreeDataProvider<Node> = {
    onDidChangeTreeData: changed.event,
    getChildren(parent) {
      const s = ctx.session;
      if (!s) return [];
      return childKeys(s, parent?.key).map(node);
    },
    getTreeItem(n) {
      const s = ctx.session;
      const r = s ? row(s, n.key) : { label: '' };
      drawn.set(n.key, JSON.stringify(r, (k, v) => (k === 'arg' ? undefined : v)));
      const item = new vscode.TreeItem(r.label, r.expanded === undefined ? vscode.TreeItemCollapsibleState.None
        : r.expanded ? vscode.TreeItemCollapsibleState.Expanded : vscode.TreeItemCollapsibleState.Collapsed);
      item.id = n.key;
      item.description = r.description;
      if (r.icon) item.iconPath = new vscode.ThemeIcon(r.icon);
      if (r.tooltip) item.tooltip = r.tooltip;
      if (r.context) item.contextValue = r.context;
      if (r.showTerminal) item.command = { command: 'tcpLab.showTerminal', title: 'Show Terminal', arguments: [r.arg] };
      return item;
    },
  };

  let pending: NodeJS.Timeout | undefined;
  const refresh = () => {
    if (pending) return;
    pending = setTimeout(() => {
      pending = undefined;
      const s = ctx.session;
      const nextShape = s ? JSON.stringify(allKeys(s)) : '';
      if (s !== shown || nextShape !== shape) {
        shown = s;
        shape = nextShape;
        nodes.clear();
        drawn.clear();
        changed.fire(undefined);
        return;
      }
      if (!s) return;
      const stale = allKeys(s).filter((k) => drawn.get(k) !== JSON.stringify(row(s, k), (key, v) => (key === 'arg' ? undefined : v)));
      if (stale.length) changed.fire(stale.map(node));
    }, 100);
  };

  const view = vscode.window.createTreeView('tcpLab.session', { treeDataProvider: provider });
  // Counters move while packets hit a rule; read them about twice a second while a lab runs.
  const counters = setInterval(() => { void ctx.running?.refreshCounters(); }, REFRESH_MS);
  const ticker = setInterval(() => { if (ctx.running) refresh(); }, REFRESH_MS);
  ctx.push(view, changed, ctx.onDidChangeSession(refresh), ctx.onDidStartSession(refresh), {
    dispose: () => { clearInterval(counters); clearInterval(ticker); if (pending) clearTimeout(pending); },
  });
  ctx.push(ctx.onDidChangeSession((s) => {
    view.description = !s ? undefined : s.state === 'done' ? (s.scenario.openEnded ? 'stopped' : s.result?.verdict.toUpperCase()) : s.scenario.id;
  }));
}

function allKeys(s: LabSession): string[] {
  const top = childKeys(s, undefined);
  return [...top, ...top.flatMap((k) => childKeys(s, k))];
}

function childKeys(s: LabSession, parent: string | undefined): string[] {
  if (parent === undefined) {
    const keys = ['header'];
    if (s.live) keys.push('namespace');
    if (s.live?.hosts?.length) keys.push('group:hosts');
    if (s.state !== 'done') keys.push(s.scenario.openEnded ? 'manual' : 'waiting');
    if (s.result && !s.scenario.openEnded) keys.push('group:verdict');
    keys.push('group:processes');
    if (s.rules.size) keys.push('group:rules');
    if (s.sysctls.size) keys.push('group:timers');
    return keys;
  }
  switch (parent) {
    case 'group:processes': return [...s.processes.keys()].map((n) => `proc:${n}`);
    case 'group:hosts': return (s.live?.hosts ?? []).map((h) => `host:${h.name}`);
    case 'group:rules': return [...s.rules.keys()].map((id) => `rule:${id}`);
    case 'group:timers': return [...s.sysctls.keys()].map((n) => `sysctl:${n}`);
    case 'group:verdict': {
      const r = s.result;
      if (!r) return [];
      return ['verdict:expected', 'verdict:measured', 'verdict:defaults', ...(r.error ? ['verdict:error'] : []), ...r.fixes.map((_, i) => `verdict:fix:${i}`)];
    }
    default: return [];
  }
}

function row(s: LabSession, key: string): Row {
  const r = s.result;
  const manual = Boolean(s.scenario.openEnded);
  const running = s.state === 'running';
  const [kind, ...rest] = key.split(':');
  const name = rest.join(':');
  switch (kind) {
    case 'header': {
      const state = s.state === 'done' ? (manual ? 'stopped' : r?.verdict === 'pass' ? 'passed' : 'failed') : s.state;
      // Whole seconds while running: the row changes once a second, not at every refresh.
      const elapsed = s.state === 'done' ? s.elapsed.toFixed(1) : s.elapsed.toFixed(0);
      return { label: s.scenario.id, description: `${state}, ${elapsed} s`, tooltip: s.scenario.summary,
        icon: s.state !== 'done' ? 'loading~spin' : manual ? 'circle-slash' : r?.verdict === 'pass' ? 'pass' : 'error' };
    }
    case 'namespace':
      return { label: 'namespace', description: `${s.live!.mode}, init pid ${s.live!.pid}${s.state === 'done' ? ' (gone)' : ''}`, icon: 'vm',
        tooltip: `nsenter --target ${s.live!.pid} --net ss -tanoie` };
    case 'host': {
      // A host of the topology: its own network namespace, held by one process.
      const h = s.live!.hosts!.find((x) => x.name === name)!;
      const programs = s.scenario.procs.filter((p) => p.host === name).map((p) => p.name);
      const user = s.live!.mode === 'rootless' ? ' --user --preserve-credentials' : '';
      return { label: name, description: `${programs.length ? `${programs.join(', ')}; ` : ''}netns held by pid ${h.pid}${s.state === 'done' ? ' (gone)' : ''}`, icon: 'server',
        tooltip: `nsenter --target ${h.pid}${user} --net ss -tanoie` };
    }
    case 'manual':
      return { label: 'manual', description: 'apply a fault from this view\'s title, lift it from its row; Stop ends the lab', icon: 'tools' };
    case 'waiting':
      return { label: 'waiting', description: describeWait(s.progress, s.deadline, Math.floor(s.elapsed)), icon: 'watch' };
    case 'group':
      // Collapsed: the headline is the label, and the programs below stay in view of a short pane.
      if (name === 'verdict') return { label: `verdict: ${r ? headline(r) : ''}`, tooltip: r ? headline(r) : '', expanded: false };
      return { label: name === 'timers' ? 'timers set' : name, expanded: true };
    case 'proc': {
      const p = s.processes.get(name)!;
      return {
        label: p.name, arg: p, showTerminal: true, tooltip: p.proc.argv.join(' '),
        description: `pid ${p.pid}, ${p.exit ? (p.exit.signal ? `killed (signal ${p.exit.signal})` : `exited ${p.exit.code}`) : 'running'}`,
        icon: p.exit ? 'circle-slash' : 'play-circle',
        context: manual && running ? (p.exit ? 'manualProcessExited' : 'manualProcess') : undefined,
      };
    }
    case 'rule': {
      const rule = s.rules.get(name)!;
      return {
        label: rule.command, arg: { rule }, tooltip: rule.command,
        description: `${rule.packets === null ? '' : `${rule.packets} packets, ${rule.bytes} bytes`}${rule.removed ? ' (removed)' : ''}`,
        icon: rule.removed ? 'shield' : 'flame',
        context: manual && running && !rule.removed ? 'activeRule' : undefined,
      };
    }
    case 'sysctl':
      return { label: `${name} = ${s.sysctls.get(name)}`, icon: 'clock' };
    case 'verdict': {
      const v = r!;
      if (name === 'expected') return { label: 'expected', description: `${v.expected.errno ? `${v.expected.errno.name} (${v.expected.errno.number})` : v.expected.outcome}${v.expected.says ? `: ${v.expected.says}` : ''}` };
      if (name === 'measured') return { label: 'measured', description: v.measured.says ?? v.measured.outcome ?? 'nothing' };
      if (name === 'defaults') return { label: 'defaults', description: v.defaults.how };
      if (name === 'error') return { label: 'error', description: v.error, icon: 'warning' };
      const f = v.fixes[Number(name.split(':')[1])]!;
      return { label: 'fix', description: `${f.setting}: ${f.why}`, icon: 'lightbulb', tooltip: f.why };
    }
    default:
      return { label: key };
  }
}
