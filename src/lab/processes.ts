import * as pty from 'node-pty';
import { labEnv } from './exec';
import { firstChild } from './sandbox';
import type { Logger } from './log';

export interface ExitInfo {
  code: number;
  signal: number;
}

/**
 * What every program of a run keeps, wherever its pty lives (here, or in the privileged helper):
 * the last output, the listeners, and the exit, recorded once.
 */
export abstract class ProgramOutput {
  private outputText = '';
  private readonly exitListeners: ((e: ExitInfo) => void)[] = [];
  private readonly dataListeners: ((d: string) => void)[] = [];
  private resolveExit!: (e: ExitInfo) => void;
  exitInfo: ExitInfo | undefined;
  readonly exited = new Promise<ExitInfo>((resolve) => (this.resolveExit = resolve));

  constructor(private readonly maxOutput = 256 * 1024) {}

  /** The last 128 KiB or more of what the program printed. */
  get output(): string {
    return this.outputText;
  }

  onData(listener: (d: string) => void): void {
    this.dataListeners.push(listener);
  }

  onExit(listener: (e: ExitInfo) => void): void {
    this.exitListeners.push(listener);
  }

  protected recordData(d: string): void {
    this.outputText += d;
    if (this.outputText.length > this.maxOutput) this.outputText = this.outputText.slice(-this.maxOutput / 2);
    for (const l of this.dataListeners) l(d);
  }

  protected recordExit(e: ExitInfo): void {
    if (this.exitInfo) return;
    this.exitInfo = e;
    this.resolveExit(e);
    for (const l of this.exitListeners) l(e);
  }
}

/**
 * A program of the scenario (server, client, proxy, or the user's own) running in a
 * pseudo-terminal, so that it behaves as in a terminal (line-buffered output) and the editor
 * can show it in a real terminal and let the user type into it.
 */
export class LabProcess extends ProgramOutput {
  constructor(
    readonly name: string,
    readonly argv: readonly string[],
    private readonly term: pty.IPty,
    maxOutput = 256 * 1024,
  ) {
    super(maxOutput);
    term.onData((d) => this.recordData(d));
    term.onExit((e) => this.recordExit({ code: e.exitCode, signal: e.signal ?? 0 }));
  }

  get pid(): number {
    return this.term.pid;
  }

  write(data: string): void {
    if (!this.exitInfo) this.term.write(data);
  }

  resize(cols: number, rows: number): void {
    if (!this.exitInfo) this.term.resize(cols, rows);
  }

  /**
   * Signal the program itself. nsenter forks to enter the PID namespace and does not forward
   * signals, so the program is nsenter's child. Only the program is signalled: nsenter then
   * reaps it and exits with the same signal. Killing nsenter too would orphan the program to
   * the host's init (nsenter lives in the host's PID namespace), and the namespace's own init
   * could not finish exiting until the host's init got round to reaping it: seconds, here.
   */
  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (this.exitInfo) return;
    const program = firstChild(this.term.pid);
    try {
      process.kill(program ?? -this.term.pid, signal);
    } catch {
      try { process.kill(-this.term.pid, signal); } catch { /* already gone */ }
    }
  }

  async dispose(): Promise<void> {
    if (this.exitInfo) return;
    this.kill('SIGKILL');
    if (await Promise.race([this.exited.then(() => true), new Promise<false>((r) => setTimeout(() => r(false), 1000))])) return;
    // nsenter did not go with its program (a program that forked, say): the whole group.
    try { process.kill(-this.term.pid, 'SIGKILL'); } catch { /* gone */ }
    await Promise.race([this.exited, new Promise((r) => setTimeout(r, 1000))]);
  }
}

export function spawnInPty(name: string, argv: readonly string[], log: Logger, env: NodeJS.ProcessEnv = process.env): LabProcess {
  log.command(argv, name);
  const term = pty.spawn(argv[0]!, argv.slice(1), {
    name: 'xterm-256color',
    cols: 120,
    rows: 30,
    cwd: '/',
    env: { ...labEnv(env), PYTHONUNBUFFERED: '1' } as Record<string, string>,
  });
  return new LabProcess(name, argv, term);
}
