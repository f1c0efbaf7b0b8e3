import * as vscode from 'vscode';
import { CATALOG, SECTION_TITLES, type Scenario, type Section } from '../lab/scenarios';
import type { Ctx } from './ctx';

type Node = { kind: 'section'; section: Section } | { kind: 'scenario'; scenario: Scenario } | { kind: 'missing'; section: Section };

/** Sections of SCENARIOS.md that need several hosts and are not in the catalog yet. */
const LATER: Partial<Record<Section, string>> = {
  middlebox: 'needs several hosts (a load balancer between them): not in the catalog yet',
  proxy: 'needs several hosts (a proxy between them): not in the catalog yet',
};

/** The catalog grouped by phase; each scenario shows its last verdict and runs inline. */
export function registerCatalogView(ctx: Ctx): void {
  const changed = new vscode.EventEmitter<void>();
  const provider: vscode.TreeDataProvider<Node> = {
    onDidChangeTreeData: changed.event,
    getChildren(node) {
      if (!node) return (Object.keys(SECTION_TITLES) as Section[]).map((section) => ({ kind: 'section', section }));
      if (node.kind !== 'section') return [];
      const list = CATALOG.filter((s) => s.section === node.section).map((scenario): Node => ({ kind: 'scenario', scenario }));
      return list.length ? list : [{ kind: 'missing', section: node.section }];
    },
    getTreeItem(node) {
      if (node.kind === 'section') {
        const item = new vscode.TreeItem(SECTION_TITLES[node.section], vscode.TreeItemCollapsibleState.Expanded);
        item.id = `section:${node.section}`;
        return item;
      }
      if (node.kind === 'missing') {
        const item = new vscode.TreeItem(LATER[node.section] ?? 'no scenario yet');
        item.iconPath = new vscode.ThemeIcon('info');
        return item;
      }
      return scenarioItem(ctx, node.scenario);
    },
  };
  const view = vscode.window.createTreeView('tcpLab.catalog', { treeDataProvider: provider, showCollapseAll: true });
  // Redrawn when a run starts and when it ends, not at each of its events: a row redrawn while
  // its inline ▷ is clicked can lose its element, and the command then gets no argument.
  ctx.push(view, changed, ctx.onDidStartSession((session) => {
    changed.fire();
    void session.done.then(() => changed.fire());
  }));
}

function scenarioItem(ctx: Ctx, s: Scenario): vscode.TreeItem {
  const item = new vscode.TreeItem(s.id, vscode.TreeItemCollapsibleState.None);
  item.id = `scenario:${s.id}`;
  item.contextValue = 'scenario';
  const running = ctx.running?.scenario.id === s.id;
  const last = ctx.results.get(s.id);
  item.description = running ? 'running…' : last ? `${last.verdict.toUpperCase()} · ${s.title}` : s.title;
  item.iconPath = running ? new vscode.ThemeIcon('loading~spin')
    : last?.verdict === 'pass' ? new vscode.ThemeIcon('pass', new vscode.ThemeColor('testing.iconPassed'))
    : last ? new vscode.ThemeIcon('error', new vscode.ThemeColor('testing.iconFailed'))
    : new vscode.ThemeIcon('circle-outline');
  const tip = new vscode.MarkdownString(`**${s.title}**\n\n${s.summary}\n\n${s.explanation}`);
  if (s.fixes[0]) tip.appendMarkdown(`\n\n*Fix:* \`${s.fixes[0].setting}\`: ${s.fixes[0].why}`);
  item.tooltip = tip;
  item.accessibilityInformation = { label: `${s.id}: ${s.title}` };
  return item;
}
