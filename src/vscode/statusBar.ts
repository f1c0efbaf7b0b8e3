import * as vscode from 'vscode';
import type { Ctx } from './ctx';

/** While a lab runs: its scenario and elapsed time in the status bar; a click shows the session. */
export function registerStatusBar(ctx: Ctx): void {
  const item = vscode.window.createStatusBarItem('tcpLab.session', vscode.StatusBarAlignment.Left, 10);
  item.name = 'TCP Lab session';
  item.command = 'tcpLab.session.focus';
  const update = () => {
    const s = ctx.running;
    if (!s) {
      item.hide();
      return;
    }
    item.text = `$(loading~spin) TCP Lab: ${s.scenario.id} ${s.elapsed.toFixed(0)} s`;
    item.tooltip = `A lab namespace is up${s.live ? ` (${s.live.mode}, init pid ${s.live.pid})` : ''}. Click to see the session; TCP Lab: Stop the Lab tears it down.`;
    item.show();
  };
  const timer = setInterval(update, 1000);
  ctx.push(item, ctx.onDidChangeSession(update), ctx.onDidStartSession(update), { dispose: () => clearInterval(timer) });
}
