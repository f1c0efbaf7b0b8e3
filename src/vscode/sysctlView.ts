import { readFile } from 'node:fs/promises';
import * as vscode from 'vscode';
import { NAMESPACED_SYSCTLS } from '../lab/sysctl';
import type { Ctx } from './ctx';

interface Row {
  name: string;
  value: string | null;
}

/**
 * The host's TCP timers and limits as the editor's own network namespace sees them (read from
 * /proc/sys, nothing run). The sysctl issue adds the advice; this view already lists the values
 * the lab's scenarios lower inside their namespaces.
 */
export function registerSysctlView(ctx: Ctx): void {
  const changed = new vscode.EventEmitter<void>();
  const provider: vscode.TreeDataProvider<Row> = {
    onDidChangeTreeData: changed.event,
    async getChildren(row) {
      if (row) return [];
      return Promise.all(Object.keys(NAMESPACED_SYSCTLS).map(async (name) => ({
        name,
        value: await readFile(`/proc/sys/${name.replaceAll('.', '/')}`, 'utf8').then((v) => v.trim().replace(/\s+/g, ' '), () => null),
      })));
    },
    getTreeItem(row) {
      const item = new vscode.TreeItem(row.name);
      item.description = row.value ?? 'not on this kernel (or not readable here)';
      item.iconPath = new vscode.ThemeIcon('settings-gear');
      return item;
    },
  };
  ctx.push(changed, vscode.window.createTreeView('tcpLab.sysctl', { treeDataProvider: provider }));
}
