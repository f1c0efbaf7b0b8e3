import { LabError } from './errors';
import { KILL_SIGNALS, type KillSignal, type ToHelper } from './helperProtocol';
import { ProgramOutput, type ExitInfo } from './processes';

/**
 * A program of a run as the editor uses it: LabProcess (a pty in this process) and
 * RemoteProcess (a pty in the privileged helper) both satisfy it.
 */
export interface LabProgram {
  readonly name: string;
  readonly pid: number;
  readonly argv: readonly string[];
  /** The last 128 KiB or more of what the program printed. */
  readonly output: string;
  readonly exitInfo: ExitInfo | undefined;
  readonly exited: Promise<ExitInfo>;
  onData(listener: (d: string) => void): void;
  onExit(listener: (e: ExitInfo) => void): void;
  write(data: string): void;
  resize(cols: number, rows: number): void;
  kill(signal?: NodeJS.Signals): void;
  dispose(): Promise<void>;
}

/** What the program got when the helper went away under it: the namespace's end killed it. */
export const KILLED_WITH_HELPER: ExitInfo = { code: 0, signal: 9 };

/** A program running in the privileged helper's pty, driven over the helper's pipe. */
export class RemoteProcess extends ProgramOutput implements LabProgram {
  constructor(
    readonly name: string,
    readonly pid: number,
    readonly argv: readonly string[],
    private readonly runId: string,
    /** The helper's serial number for this program. */
    readonly proc: number,
    private readonly send: (m: ToHelper) => void,
    maxOutput = 256 * 1024,
  ) {
    super(maxOutput);
  }

  write(data: string): void {
    if (!this.exitInfo) this.send({ type: 'input', runId: this.runId, proc: this.proc, data });
  }

  resize(cols: number, rows: number): void {
    if (!this.exitInfo) this.send({ type: 'resize', runId: this.runId, proc: this.proc, cols, rows });
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (this.exitInfo) return;
    if (!(KILL_SIGNALS as readonly string[]).includes(signal)) {
      throw new LabError(`the lab helper sends only ${KILL_SIGNALS.join(', ')}`, { field: 'signal', value: signal });
    }
    this.send({ type: 'kill', runId: this.runId, proc: this.proc, signal: signal as KillSignal });
  }

  async dispose(): Promise<void> {
    if (this.exitInfo) return;
    this.kill('SIGKILL');
    await Promise.race([this.exited, new Promise((r) => setTimeout(r, 2000))]);
  }

  /** Output from the helper. */
  data(d: string): void {
    this.recordData(d);
  }

  /** The exit the helper saw (or KILLED_WITH_HELPER when the helper itself went); once. */
  exit(e: ExitInfo): void {
    this.recordExit(e);
  }
}
