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
  private readonly sockets = new Set<Socket>();

  private constructor(server: Server, readonly path: string) {
    this.server = server;
  }

  static async listen(path: string, onEvent: (e: AppEvent) => void, log: Logger): Promise<AppEventServer> {
    const server = createServer();
    const self = new AppEventServer(server, path);
    server.on('connection', (socket) => {
      self.sockets.add(socket);
      socket.on('close', () => self.sockets.delete(socket));
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
          if (event) onEvent(event);
          else log.warn(`ignored a malformed event line: ${line.slice(0, 120)}`);
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

  dispose(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
