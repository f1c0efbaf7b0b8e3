// Wiring only: the editor layer over src/lab. Each feature registers itself from src/vscode/.
import * as vscode from 'vscode';
import { killStrandedUnshares } from './lab/sandbox';
import { sweepStaleRunDirs } from './lab/tempDirs';
import { registerCatalogView } from './vscode/catalogView';
import { Ctx } from './vscode/ctx';
import { channelLogger } from './vscode/logChannel';
import { registerHostMode } from './vscode/hostMode';
import { registerManualCommands } from './vscode/manualCommands';
import { registerResultDocument } from './vscode/resultDocument';
import { registerRunCommands } from './vscode/runCommands';
import { registerSessionView } from './vscode/sessionView';
import { registerSocketPanel } from './vscode/socketPanel';
import { registerStatusBar } from './vscode/statusBar';
import { registerSysctlView } from './vscode/sysctlView';
import { registerTerminals } from './vscode/terminals';

let ctx: Ctx | undefined;

export function activate(context: vscode.ExtensionContext): void {
  const t0 = performance.now();
  const channel = vscode.window.createOutputChannel('TCP Lab', { log: true });
  context.subscriptions.push(channel);
  const log = channelLogger(channel);
  ctx = new Ctx(context, channel, log);
  registerCatalogView(ctx);
  registerSessionView(ctx);
  registerSysctlView(ctx);
  registerTerminals(ctx);
  registerRunCommands(ctx);
  registerManualCommands(ctx);
  registerHostMode(ctx);
  registerResultDocument(ctx);
  registerStatusBar(ctx);
  registerSocketPanel(ctx);
  ctx.registerCommand('tcpLab.showLog', (c) => () => c.channel.show(true));
  // A lab killed with the editor (kill -9) took its namespace along; only its run directory stays.
  const swept = sweepStaleRunDirs();
  // A lab killed while unshare was still setting up can strand its --map-auto helper.
  killStrandedUnshares();
  log.info(`TCP Lab ${context.extension.packageJSON.version} activated in ${(performance.now() - t0).toFixed(1)} ms ` +
    `(Node ${process.version}, ${process.getuid?.() === 0 ? 'root' : 'unprivileged'}${swept ? `, swept ${swept} stale run directories` : ''})`);
}

/** VS Code waits for this promise (a few seconds) when the window closes: the lab tears down. */
export async function deactivate(): Promise<void> {
  const c = ctx;
  ctx = undefined;
  await c?.dispose();
}
