import * as vscode from 'vscode';
import { LabError } from '../lab/errors';
import type { Logger } from '../lab/log';
import { PrivilegedLab, sudoNeeded } from '../lab/privileged';
import type { ScenarioResult } from '../lab/runner';
import type { Scenario } from '../lab/scenarios';
import { LabSession, type SessionOptions } from './labSession';
import { askPassword } from './passwordBox';

type Factory = (ctx: Ctx) => (...args: any[]) => unknown;

/**
 * The one object the editor layer shares: the log, the running session (at most one), the
 * last result of each scenario, and the cleanup list. Commands are functions of it.
 */
export class Ctx implements vscode.Disposable {
  session: LabSession | undefined;
  /** The window's root helper, started through sudo once, where the rootless lab cannot run. */
  private privileged: PrivilegedLab | undefined;
  private needsSudo: Promise<boolean> | undefined;
  /** A helper start in progress (password box open, or sudo starting it). */
  private starting: Promise<PrivilegedLab | undefined> | undefined;
  readonly results = new Map<string, ScenarioResult>();
  private readonly disposables: vscode.Disposable[] = [];
  private readonly sessionStarted = new vscode.EventEmitter<LabSession>();
  private readonly sessionChanged = new vscode.EventEmitter<LabSession | undefined>();
  /** A new session started (terminals, views and the status bar follow it). */
  readonly onDidStartSession = this.sessionStarted.event;
  /** The session's state moved: progress, a process, a rule, the verdict. */
  readonly onDidChangeSession = this.sessionChanged.event;

  constructor(
    readonly extension: vscode.ExtensionContext,
    readonly channel: vscode.LogOutputChannel,
    readonly log: Logger,
  ) {
    this.push(this.sessionStarted, this.sessionChanged);
  }

  push(...items: vscode.Disposable[]): void {
    this.disposables.push(...items);
  }

  registerCommand(name: string, factory: Factory): void {
    const handler = factory(this);
    this.push(vscode.commands.registerCommand(name, async (...args: unknown[]) => {
      try {
        return await handler(...args);
      } catch (e) {
        this.log.error(`${name}: ${e instanceof Error ? e.stack ?? e.message : String(e)}`);
        void vscode.window.showErrorMessage(`TCP Lab: ${describeError(e)}`);
        return undefined;
      }
    }));
  }

  /**
   * The root helper for this window's labs, or undefined when this process can run them itself
   * (root, or unprivileged user namespaces allowed). The first time it is needed, the user's
   * sudo password is asked in a password box; it goes to sudo's stdin once and is kept nowhere:
   * not in a log, argv, env, a file, the settings or a webview.
   */
  async privilegedLab(mode: 'auto' | 'rootless' | 'root' | 'sudo'): Promise<PrivilegedLab | undefined> {
    if (mode === 'root' || mode === 'rootless' || process.getuid?.() === 0) return undefined;
    if (this.privileged?.alive) return this.privileged;
    // A second run while the box is open or sudo is starting shares that start: one password
    // box, one helper (a second would go untracked and outlive the window's disposal).
    this.starting ??= this.startPrivileged(mode).finally(() => { this.starting = undefined; });
    return this.starting;
  }

  private async startPrivileged(mode: 'auto' | 'sudo'): Promise<PrivilegedLab | undefined> {
    if (mode === 'auto' && !(await (this.needsSudo ??= sudoNeeded(this.log)))) return undefined;
    const password = await askPassword({
      title: 'TCP Lab needs root on this host',
      prompt: mode === 'sudo'
        ? 'Your sudo password starts one lab helper (root) for this window. It goes to sudo once and is not stored.'
        : 'This host does not allow unprivileged user namespaces. Your sudo password starts one lab helper (root) for this window; it goes to sudo once and is not stored.',
    });
    if (password === undefined) throw new LabError('the lab needs root here and the sudo password was not given', { hint: 'run the scenario again to be asked again, or set tcpLab.mode' });
    const t0 = performance.now();
    const lab = await PrivilegedLab.start({ password, helper: this.extension.asAbsolutePath('dist/lab-helper.js'), log: this.log });
    this.log.info(`lab helper started through sudo (pid ${lab.pid}) in ${(performance.now() - t0).toFixed(0)} ms`);
    lab.onExit(() => { if (this.privileged === lab) this.privileged = undefined; });
    return (this.privileged = lab);
  }

  /** Starts a run; the caller has made sure no other session is running. */
  startSession(scenario: Scenario, options: Omit<SessionOptions, 'log'>): LabSession {
    const session = new LabSession(scenario, { ...options, log: this.log });
    this.session = session;
    void vscode.commands.executeCommand('setContext', 'tcpLab.running', true);
    session.onDidChange(() => this.sessionChanged.fire(session));
    void session.done.then((r) => {
      this.results.set(r.id, r);
      // A walkthrough step completes when its scenario has run (completionEvents onContext:).
      if (!r.error) void vscode.commands.executeCommand('setContext', `tcpLab.ran.${r.id.replaceAll('-', '_')}`, true);
      void vscode.commands.executeCommand('setContext', 'tcpLab.running', false);
      void vscode.commands.executeCommand('setContext', 'tcpLab.hasResult', true);
      this.sessionChanged.fire(session);
    });
    this.sessionStarted.fire(session);
    return session;
  }

  get running(): LabSession | undefined {
    return this.session?.state === 'done' ? undefined : this.session;
  }

  /** Stops the running session, if any, and waits until the lab has torn down. */
  async stopSession(): Promise<void> {
    const s = this.running;
    if (!s) return;
    s.stop();
    await s.done;
  }

  async dispose(): Promise<void> {
    await this.stopSession().catch(() => undefined);
    await this.privileged?.dispose().catch(() => undefined);
    // A disposable may return a promise (host mode removing a root editor's host rules), and at
    // window close a view's dispose may throw: wait for each, and let none stop the rest.
    for (const d of this.disposables.splice(0).reverse()) {
      try {
        await d.dispose();
      } catch { /* the window is gone */ }
    }
  }
}

export function describeError(e: unknown): string {
  if (e && typeof e === 'object' && 'describe' in e && typeof (e as { describe: unknown }).describe === 'function') {
    // One line: a notification runs the hint's line into the message and cuts it short.
    return (e as { describe(): string }).describe().replace(/\s*\n\s*/g, '. ');
  }
  return e instanceof Error ? e.message : String(e);
}
