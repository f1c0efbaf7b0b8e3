import { createServer, type Server, type Socket } from 'node:net';
import type { Logger } from './log';

/** One line a sample (or any instrumented program) writes on its event socket. */
export interface AppEvent {
  /** CLOCK_MONOTONIC seconds, taken by the program right after the syscall returned. */
  t: number;
  /** The program's role in the scenario: `client`, `server`, `proxy`, ... */
  proc: string;
  /** `connected`, `error`, `eof`, ... (samples/README.md lists them). */
  type: string;
  errno?: number;
  name?: string;
  op?: string;
  [field: string]: unknown;
}

const MAX_LINE = 64 * 1024;

/** Parses one event line; undefined for anything that is not a well-formed event. */
export function parseAppEvent(line: string): AppEvent | undefined {
  if (line.length > MAX_LINE) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  const e = value as Record<string, unknown>;
  if (typeof e.t !== 'number' || !Number.isFinite(e.t)) return undefined;
  if (typeof e.proc !== 'string' || !/^[\w.-]{1,32}$/.test(e.proc)) return undefined;
  if (typeof e.type !== 'string' || !/^[a-z][a-z-]{0,31}$/.test(e.type)) return undefined;
  if (e.errno !== undefined && (typeof e.errno !== 'number' || !Number.isInteger(e.errno))) return undefined;
  return e as AppEvent;
}

/**
 * The Unix socket the samples report to (their `--events PATH`). A path-bound Unix socket is
 * reachable from inside the lab's network namespace: the path lives in the file system, which
 * the namespace shares.
 */
export class AppEventServer {
  private readonly server: Server;
  /** Each open event stream, and the program it speaks for (from its first event). */
  private readonly sockets = new Map<Socket, string | undefined>();
  private readonly closed = new Set<() => void>();
  private disposed = false;

  private constructor(server: Server, readonly path: string) {
    this.server = server;
  }

  static async listen(path: string, onEvent: (e: AppEvent) => void, log: Logger): Promise<AppEventServer> {
    const server = createServer();
    const self = new AppEventServer(server, path);
    server.on('connection', (socket) => {
      self.sockets.set(socket, undefined);
      socket.on('close', () => {
        self.sockets.delete(socket);
        for (const f of self.closed) f();
      });
      socket.on('error', () => socket.destroy());
      let buffered = '';
      socket.setEncoding('utf8').on('data', (chunk: string) => {
        buffered += chunk;
        let nl: number;
        while ((nl = buffered.indexOf('\n')) >= 0) {
          const line = buffered.slice(0, nl);
          buffered = buffered.slice(nl + 1);
          if (!line.trim()) continue;
          const event = parseAppEvent(line);
          if (event) {
            if (self.sockets.get(socket) === undefined) self.sockets.set(socket, event.proc);
            onEvent(event);
          } else log.warn(`ignored a malformed event line: ${line.slice(0, 120)}`);
        }
        if (buffered.length > MAX_LINE) {
          log.warn('an event line exceeded 64 KiB; closing that event stream');
          socket.destroy();
        }
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => resolve());
    });
    return self;
  }

  /**
   * Resolves once every event `proc` wrote has been read: no stream of its own is open, nor
   * one that has not said whose it is yet. A program's exit is seen through its terminal, its
   * last events through this socket, and under load the exit can come first: a verdict taken
   * then would miss the event that decides it. `ms` bounds the wait (a program that forked
   * a child which kept the stream open, say).
   */
  drained(proc: string, ms: number): Promise<void> {
    const open = () => !this.disposed && [...this.sockets.values()].some((p) => p === undefined || p === proc);
    if (!open()) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.closed.delete(check);
        resolve();
      };
      const check = () => { if (!open()) done(); };
      const timer = setTimeout(done, ms);
      this.closed.add(check);
    });
  }

  dispose(): Promise<void> {
    this.disposed = true;
    for (const s of this.sockets.keys()) s.destroy();
    for (const f of [...this.closed]) f();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
