import * as vscode from 'vscode';
import type { Ctx } from './ctx';
import type { LabSession, SessionProcess } from './labSession';

const ICONS: Record<string, string> = { server: 'server-process', client: 'plug', proxy: 'arrow-swap' };

/** The terminal name of a lab program: what the user sees in the terminal tabs. */
export function terminalName(proc: string): string {
  return `TCP Lab: ${proc}`;
}

/**
 * A real terminal on each program of the session: a Pseudoterminal relaying the program's
 * pty (node-pty, spawned by the lab), so the output is the program's own and keys typed reach
 * its stdin. The terminals of the previous session close when a new one starts.
 */
export function registerTerminals(ctx: Ctx): void {
  let open: vscode.Terminal[] = [];
  const byProc = new Map<SessionProcess, vscode.Terminal>();
  ctx.push(ctx.onDidStartSession((session) => {
    for (const t of open) t.dispose();
    open = [];
    byProc.clear();
    const sub = session.onDidStartProcess((p) => {
      const t = openTerminal(p, session);
      open.push(t);
      byProc.set(p, t);
      // The client is what the user came to watch: show it without taking the focus.
      if (p.name === 'client') t.show(true);
    });
    void session.done.finally(() => sub.dispose());
  }));
  ctx.push({ dispose: () => { for (const t of open) t.dispose(); } });
  ctx.registerCommand('tcpLab.showTerminal', () => (p?: SessionProcess) => {
    const t = p && byProc.get(p);
    if (t) t.show(false);
  });
}

function openTerminal(p: SessionProcess, session: LabSession): vscode.Terminal {
  const write = new vscode.EventEmitter<string>();
  const close = new vscode.EventEmitter<number | void>();
  let opened = false;
  // Output that arrives before VS Code opens the terminal is in p.proc.output; afterwards it
  // streams. Both run on this thread, so nothing falls between the two.
  p.proc.onData((d) => { if (opened) write.fire(d); });
  p.proc.onExit((e) => {
    const how = e.signal ? `killed by signal ${e.signal}` : `exited with code ${e.code}`;
    if (opened) write.fire(`\r\n\x1b[2m[tcp-lab] ${p.name} (pid ${p.pid}) ${how}\x1b[0m\r\n`);
  });
  const pty: vscode.Pseudoterminal = {
    onDidWrite: write.event,
    onDidClose: close.event,
    open(dims) {
      opened = true;
      if (dims) p.proc.resize(dims.columns, dims.rows);
      write.fire(`\x1b[2m[tcp-lab] ${session.scenario.id}: ${p.name}, pid ${p.pid}: ${p.proc.argv.join(' ')}\x1b[0m\r\n`);
      if (p.proc.output) write.fire(p.proc.output);
      if (p.exit) write.fire(`\r\n\x1b[2m[tcp-lab] ${p.name} exited with code ${p.exit.code}\x1b[0m\r\n`);
    },
    // Closing the tab does not stop the program: the run decides when it ends.
    close() { opened = false; },
    handleInput(data) { p.proc.write(data); },
    setDimensions(dims) { p.proc.resize(dims.columns, dims.rows); },
  };
  return vscode.window.createTerminal({
    name: terminalName(p.name),
    pty,
    iconPath: new vscode.ThemeIcon(ICONS[p.name] ?? 'terminal'),
    isTransient: true,
  });
}
