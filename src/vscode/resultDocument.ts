import * as vscode from 'vscode';
import { formatResult } from '../report';
import type { Ctx } from './ctx';

export const RESULT_SCHEME = 'tcp-lab-result';

/**
 * The full result of a scenario, as the CLI prints it with --explain, as a read-only document
 * (`tcp-lab-result:/<id>.txt`): expected and measured, the rules and their counters, the
 * timers, the default-timer figure, why, and every fix.
 */
export function registerResultDocument(ctx: Ctx): void {
  const changed = new vscode.EventEmitter<vscode.Uri>();
  ctx.push(changed, vscode.workspace.registerTextDocumentContentProvider(RESULT_SCHEME, {
    onDidChange: changed.event,
    provideTextDocumentContent(uri) {
      const id = uri.path.replace(/^\//, '').replace(/\.txt$/, '');
      const r = ctx.results.get(id);
      return r ? `${formatResult(r, { explain: true })}\n` : `No result for ${id} yet: run it from the TCP Lab view.\n`;
    },
  }));
  ctx.push(ctx.onDidChangeSession((s) => {
    if (s?.result) changed.fire(vscode.Uri.from({ scheme: RESULT_SCHEME, path: `/${s.result.id}.txt` }));
  }));
  ctx.registerCommand('tcpLab.showResult', (c) => async (id?: string) => {
    const which = id ?? c.session?.result?.id;
    if (!which) {
      void vscode.window.showInformationMessage('TCP Lab: no result yet. Run a scenario first.');
      return;
    }
    await vscode.window.showTextDocument(vscode.Uri.from({ scheme: RESULT_SCHEME, path: `/${which}.txt` }), { preview: true });
  });
}
