import { open, type FileHandle } from 'node:fs/promises';
import { StringDecoder } from 'node:string_decoder';
import { measureClockOffset, offsetSeconds, type ClockOffset } from './clock';
import { LabError } from './errors';
import { labEnv } from './exec';
import type { Logger } from './log';
import { missingTools } from './preflight';
import { QUIET_SIGNALS, StraceParser } from './straceEvents';
import type { TimelineEvent } from './timeline';

/**
 * The errno of a program the lab does not control (curl, nc, the user's own client): run it
 * under strace, follow strace's output file, and turn failing socket calls into timeline events
 * shaped like the samples' own (straceEvents.ts), so the verdict judges a user's program like a
 * sample. This file builds the argv and follows the file; straceParse.ts reads its lines.
 */

/**
 * What strace stops on. `execve` names the program's own pid (the first line of the file), so
 * its exit is told apart from its threads' and children's. `close` keeps the fd table honest
 * when numbers are reused. `getsockname` gives the local port when the program asks for it
 * (curl does). `rt_sigaction` tells an ignored SIGPIPE (Python, Node and Go ignore it) from a
 * fatal one: a traced process reports every signal to strace, ignored ones too. A `?` lets a
 * call this architecture lacks pass (arm64 has no poll or epoll_wait, only ppoll and
 * epoll_pwait). select/pselect6 are left out: their sets carry no error for TCP (an error
 * shows as readable or writable), and the outcome comes from the next call, which is traced.
 */
export const TRACED_SYSCALLS: readonly string[] = [
  'execve', 'socket', 'connect', 'accept', 'accept4', 'bind', 'listen', 'shutdown', 'close',
  'getsockopt', 'setsockopt', 'getsockname', 'getpeername',
  'read', 'write', 'readv', 'writev', 'recvfrom', 'sendto', 'recvmsg', 'sendmsg', '?recvmmsg', '?sendmmsg',
  '?poll', 'ppoll', '?epoll_wait', 'epoll_pwait', '?epoll_pwait2',
  'rt_sigaction',
];

export interface StraceArgvOptions {
  /** `--seccomp-bpf` (default on; strace >= 5.3). */
  seccompBpf?: boolean;
  /**
   * `-yy` instead of `-y`: every socket fd printed with its 4-tuple, which gives the local
   * port of every connection. Off by default for its cost, measured here (kernel 6.18, strace
   * 6.1): on a socket the kernel has not hashed (new, refused, reset, closed: the sockets a
   * failure lab is about) strace's sock_diag lookup holds the program about 1.7 ms per call
   * (a non-blocking recv went from 45 us to 1,800 us; on a connected socket 50 us either way).
   */
  decodeSockets?: boolean;
}

/**
 * The strace argv that runs `argv` and writes its trace to `outFile`:
 * - `-f` follows threads and children; with `-o` every line then starts with the thread id.
 * - `-ttt` epoch seconds with microseconds (CLOCK_REALTIME; see `measureClockOffset` in clock.ts); `-T` the time
 *   spent in the call, so an event is dated when the call returned, as the samples date theirs.
 * - `-y` prints what each fd is (`3<socket:[4711]>`, `1</dev/pts/0>`, `4<pipe:[9]>`) on every
 *   line, in every process: a socket is told from a file or a pipe, and a reused fd number
 *   from the same socket. TCP or UDP comes from the socket() call, addresses from connect(),
 *   accept() and getsockname(). (`decodeSockets` for -yy: see its cost above.)
 * - `-s 16`: data buffers are cut to 16 characters (the file stays small and little of the
 *   user's data lands in it). Not `-s 0`: it also cuts arrays, and poll's revents are one.
 * - `-q` drops "attached/detached" lines but keeps the `+++ exited with N +++` ones (`-qq` not).
 * - `--seccomp-bpf`: the program stops only on traced calls, not on every one.
 * - `-o` must be an absolute path: strace runs a command for a name starting with `|` or `!`.
 * strace must run inside the lab's namespace, as the program does (-yy asks the kernel in
 * strace's own network namespace; -y reads its /proc).
 */
export function straceArgv(outFile: string, argv: readonly string[], options: StraceArgvOptions = {}): string[] {
  if (!outFile.startsWith('/') || outFile.includes('\0')) {
    throw new LabError('the strace output file must be an absolute path', { field: 'outFile', value: outFile });
  }
  if (argv.length === 0 || argv.some((a) => typeof a !== 'string' || a.includes('\0'))) {
    throw new LabError('the traced command must be a non-empty argv of strings', { field: 'argv', value: argv });
  }
  return [
    'strace', '-f', '-q', '-ttt', '-T', options.decodeSockets ? '-yy' : '-y', '-s', '16',
    ...(options.seccompBpf === false ? [] : ['--seccomp-bpf']),
    '-o', outFile,
    '-e', `trace=${TRACED_SYSCALLS.join(',')}`,
    '-e', `signal=!${QUIET_SIGNALS.join(',')}`,
    '--', ...argv,
  ];
}

export const STRACE_MISSING =
  'strace is not installed: the errno of your own program cannot be shown; the sample programs\' own events still work';

export function straceAvailable(path = labEnv().PATH ?? ''): boolean {
  return missingTools(['strace'], path).length === 0;
}

/** The error to show (or log as a warning) when a user's program is to be traced and strace is absent. */
export function straceMissingError(): LabError {
  return new LabError(STRACE_MISSING, { field: 'tools', value: 'strace', hint: 'install it: apt-get install strace' });
}

// ------------------------------------------------------------------------------------------
// Following the file

export interface StraceTailOptions {
  /** strace's `-o` file; it may not exist yet. */
  file: string;
  /** The program's name in the scenario. */
  proc: string;
  onEvent: (e: TimelineEvent) => void;
  /** From `measureClockOffset()`, taken when the trace starts; measured here if not given. */
  offset?: ClockOffset;
  /** How often to look for new lines (strace -o writes whole lines as calls happen). */
  intervalMs?: number;
  log?: Logger;
  /** A longer line (in characters) is skipped and counted as unparsed: with `-s 16` real lines are a few hundred. */
  maxLineLength?: number;
}

const READ_CHUNK = 256 * 1024;
/** Per turn of the event loop: a flood of lines must not starve the rest of the lab. */
const READ_PER_TURN = 4 * 1024 * 1024;

/**
 * Follows strace's output file while the program runs and turns each complete line into
 * events. Memory stays bounded whatever the program does: the file is read in chunks from
 * where the last read stopped, only the unfinished last line is kept (at most `maxLineLength`),
 * and the parser keeps one small record per open socket. A million EAGAIN reads cost disk
 * (about 100 bytes each in the file) and parsing time, not memory.
 */
export class StraceTail {
  readonly parser: StraceParser;
  readonly offset: ClockOffset;
  private handle: FileHandle | undefined;
  private position = 0;
  private partial = '';
  private skipping = false;
  private readonly decoder = new StringDecoder('utf8');
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  private readonly maxLine: number;

  constructor(private readonly options: StraceTailOptions) {
    this.offset = options.offset ?? measureClockOffset();
    this.parser = new StraceParser(options.proc, offsetSeconds(this.offset));
    this.maxLine = options.maxLineLength ?? 64 * 1024;
  }

  start(): this {
    this.schedule(0);
    return this;
  }

  /** Bytes of the file read so far. */
  get bytesRead(): number {
    return this.position;
  }

  /** Reads what is left (strace has exited, or the lab is done with the program) and stops. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running;
    try {
      while (await this.readSome(Infinity)) { /* to the end */ }
      // strace killed in the middle of a line: the fragment gets its chance (it is likely cut).
      const rest = this.partial + this.decoder.end();
      this.partial = '';
      if (rest && !this.skipping) this.emitLine(rest);
    } catch (e) {
      this.options.log?.warn(`strace output ${this.options.file}: ${e instanceof Error ? e.message : e}`);
    } finally {
      await this.handle?.close().catch(() => undefined);
      this.handle = undefined;
    }
  }

  dispose(): Promise<void> {
    return this.stop();
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = this.turn().finally(() => { this.running = undefined; });
    }, ms);
  }

  private async turn(): Promise<void> {
    let more = false;
    try {
      more = await this.readSome(READ_PER_TURN);
    } catch (e) {
      this.options.log?.warn(`strace output ${this.options.file}: ${e instanceof Error ? e.message : e}`);
    }
    this.schedule(more ? 0 : this.options.intervalMs ?? 50);
  }

  /** Reads up to `budget` bytes; true when the budget ran out before the end of the file. */
  private async readSome(budget: number): Promise<boolean> {
    if (!this.handle) {
      try {
        this.handle = await open(this.options.file, 'r');
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false; // strace has not started yet
        throw e;
      }
    }
    const buffer = Buffer.allocUnsafe(READ_CHUNK);
    let used = 0;
    while (used < budget) {
      const { bytesRead } = await this.handle.read(buffer, 0, READ_CHUNK, this.position);
      if (bytesRead === 0) return false;
      this.position += bytesRead;
      used += bytesRead;
      this.feed(this.decoder.write(buffer.subarray(0, bytesRead)));
    }
    return true;
  }

  private feed(text: string): void {
    let from = 0;
    for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n', from)) {
      const piece = text.slice(from, nl);
      from = nl + 1;
      if (this.skipping) {
        this.skipping = false;
        this.partial = '';
        continue;
      }
      const line = this.partial + piece;
      this.partial = '';
      this.emitLine(line);
    }
    if (this.skipping) return;
    this.partial += text.slice(from);
    if (this.partial.length > this.maxLine) {
      this.partial = '';
      this.skipping = true;
      this.parser.stats.unparsed++;
    }
  }

  private emitLine(line: string): void {
    if (line.length > this.maxLine) {
      this.parser.stats.unparsed++;
      return;
    }
    for (const e of this.parser.line(line)) {
      try {
        this.options.onEvent(e);
      } catch (err) {
        this.options.log?.warn(`a strace event listener failed: ${err instanceof Error ? err.message : err}`);
      }
    }
  }
}
