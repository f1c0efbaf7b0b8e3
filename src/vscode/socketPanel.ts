import * as vscode from 'vscode';
import { Logger } from '../lab/log';
import type { LabHandle } from '../lab/nsEnter';
import { commandLine, readSockets, type SocketViewTarget } from '../lab/socketView';
import {
  describeTarget, INTERVAL_DEFAULT_MS, parseFromWebview, unreachable,
  type FromWebview, type SocketTarget, type ToWebview,
} from '../protocol';
import { describeError, type Ctx } from './ctx';
import { forPanel, newNonce, panelHtml } from './socketPanelPage';

export const NO_LAB = 'no lab is running: start a scenario, or name a port or a process';

/**
 * "TCP Lab: Show Live Sockets": the raw `ss -tanoiep` of the lab (or of a port or a process of
 * this host), refreshed, beside the same sockets parsed into a table. One panel; the command
 * brings it back. It polls only while visible and not paused, one read at a time.
 */
export function registerSocketPanel(ctx: Ctx): void {
  let open: SocketPanel | undefined;
  ctx.registerCommand('tcpLab.showSockets', (c) => () => {
    if (open) open.reveal();
    else open = new SocketPanel(c, () => { open = undefined; });
  });
  ctx.push({ dispose: () => open?.dispose() });
}

class SocketPanel {
  private readonly panel: vscode.WebviewPanel;
  private readonly disposables: vscode.Disposable[] = [];
  private target: SocketTarget = { kind: 'lab' };
  private paused = false;
  private pollMs = INTERVAL_DEFAULT_MS;
  /** Bumped when the target changes: a read still running for the old one is dropped. */
  private generation = 0;
  private timer: NodeJS.Timeout | undefined;
  private reading = false;
  private disposed = false;
  private last: ToWebview | undefined;
  /** The connections the followed process has held (see ReadSocketsOptions.owned). */
  private owned = new Set<string>();
  private lastLab: LabHandle | undefined;
  private lastCommand = '';
  private lastError = '';
  /**
   * The lab logs each command it runs; at two reads a second that would bury the log, so reads
   * log through this one (info and up) and the panel logs a command when it changes.
   */
  private readonly quiet: Logger;

  constructor(private readonly ctx: Ctx, private readonly onDispose: () => void) {
    this.quiet = new Logger({ write: (level, m) => ctx.log.log(level, m) }, 'info');
    const root = vscode.Uri.joinPath(ctx.extension.extensionUri, 'dist', 'webview');
    this.panel = vscode.window.createWebviewPanel('tcpLab.sockets', 'Live Sockets', vscode.ViewColumn.Active, {
      enableScripts: true,
      retainContextWhenHidden: false,
      localResourceRoots: [root],
    });
    const webview = this.panel.webview;
    webview.html = panelHtml({
      cspSource: webview.cspSource,
      scriptUri: webview.asWebviewUri(vscode.Uri.joinPath(root, 'socketPanel.js')).toString(),
      nonce: newNonce(),
    });
    this.disposables.push(
      webview.onDidReceiveMessage((m: unknown) => this.receive(m)),
      // Hidden, the page is gone (no retained context): stop; shown again, it posts `ready`.
      this.panel.onDidChangeViewState(() => (this.panel.visible ? this.schedule(0) : this.stop())),
      this.panel.onDidDispose(() => this.dispose()),
      ctx.onDidChangeSession(() => this.sessionChanged()),
    );
    this.updateTitle();
  }

  reveal(): void {
    this.panel.reveal();
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.stop();
    for (const d of this.disposables.splice(0)) d.dispose();
    this.panel.dispose();
    this.onDispose();
  }

  private receive(raw: unknown): void {
    let m: FromWebview;
    try {
      m = parseFromWebview(raw);
    } catch (e) {
      this.ctx.log.warn(`[sockets] refused a message from the panel: ${describeError(e)}`);
      this.post({ type: 'refused', message: describeError(e) });
      return;
    }
    switch (m.type) {
      case 'ready':
        this.post({ type: 'paused', paused: this.paused });
        if (this.last) this.post(this.last);
        this.schedule(0);
        return;
      case 'setTarget':
        this.target = m.target;
        this.generation++;
        this.owned = new Set();
        this.lastError = '';
        this.updateTitle();
        this.schedule(0);
        return;
      case 'pause':
        this.paused = m.paused;
        this.post({ type: 'paused', paused: m.paused });
        if (m.paused) this.stop();
        else this.schedule(0);
        return;
      case 'setInterval':
        this.pollMs = m.ms;
        this.schedule(0);
        return;
      default:
        unreachable(m);
    }
  }

  /** A lab that starts or ends changes what the lab target shows, at once. */
  private sessionChanged(): void {
    const lab = this.lab();
    if (lab?.pid === this.lastLab?.pid && lab?.mode === this.lastLab?.mode) return;
    this.lastLab = lab;
    if (this.target.kind === 'lab') this.schedule(0);
  }

  /** The running lab's namespace; a finished session's has gone with it. */
  private lab(): LabHandle | undefined {
    const s = this.ctx.session;
    return s && s.state !== 'done' && s.live ? { mode: s.live.mode, pid: s.live.pid, ...(s.live.hosts?.length ? { hosts: s.live.hosts } : {}) } : undefined;
  }

  private schedule(delay: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.disposed || this.paused || !this.panel.visible) return;
    // A read in flight schedules the next one when it ends.
    if (this.reading) return;
    this.timer = setTimeout(() => void this.tick(), delay);
  }

  private stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private async tick(): Promise<void> {
    this.timer = undefined;
    const generation = this.generation;
    const target = this.target;
    const started = performance.now();
    this.reading = true;
    let message: ToWebview;
    try {
      message = await this.read(target);
    } finally {
      this.reading = false;
    }
    if (this.disposed) return;
    if (generation === this.generation) this.post((this.last = message));
    // Start to start, as the socket monitor does: a slow read delays the next, never overlaps it.
    this.schedule(generation === this.generation ? Math.max(0, this.pollMs - (performance.now() - started)) : 0);
  }

  private async read(target: SocketTarget): Promise<ToWebview> {
    const base = { type: 'sockets' as const, target, t: Date.now(), pollMs: this.pollMs };
    let view: SocketViewTarget;
    switch (target.kind) {
      case 'lab': {
        const lab = this.lab();
        if (!lab) return { ...base, raw: '', rows: [], error: NO_LAB };
        view = { kind: 'lab', lab };
        break;
      }
      case 'port':
        view = target;
        break;
      case 'pid':
        view = target;
        break;
      default:
        return unreachable(target);
    }
    try {
      const r = await readSockets(view, { log: this.quiet, owned: this.owned });
      const command = commandLine(r.argv);
      if (command !== this.lastCommand) this.ctx.log.debug(`[sockets] $ ${(this.lastCommand = command)} (every ${this.pollMs} ms while the panel shows)`);
      this.lastError = '';
      const shown = forPanel(r.raw, r.rows);
      const note = [shown.note, r.warnings && `ss: ${r.warnings.slice(0, 500)}`].filter(Boolean).join('\n');
      return { ...base, raw: shown.raw, rows: shown.rows, tookMs: Math.round(r.tookMs * 10) / 10, command, where: r.where, ...(note ? { note } : {}) };
    } catch (e) {
      const error = describeError(e);
      if (error !== this.lastError) this.ctx.log.warn(`[sockets] ${describeTarget(target)}: ${(this.lastError = error)}`);
      return { ...base, raw: '', rows: [], error };
    }
  }

  private post(m: ToWebview): void {
    if (!this.disposed) void this.panel.webview.postMessage(m);
  }

  private updateTitle(): void {
    this.panel.title = `Live Sockets: ${describeTarget(this.target)}`;
  }
}
