import type { Decor, FdKind } from './straceParse';

/** What the trace has shown of one socket fd. */
export interface SocketState {
  kind: FdKind;
  inode?: number;
  local?: string;
  peer?: string;
  /** EINPROGRESS seen; the outcome (SO_ERROR, or the next read/write) not yet. */
  connecting?: boolean;
  eof?: boolean;
  revents?: string;
}

const MAX_SOCKETS = 65536;

/**
 * The traced program's socket fds, one small record each, at most MAX_SOCKETS (the least
 * recently created is forgotten first).
 *
 * fds are tracked by number across the whole trace, not per process: right for one process and
 * its threads (they share one table). When a forked child reuses a number for another socket,
 * the inode strace prints with the fd on every call (`-y`) shows the change and the record
 * starts afresh.
 */
export class FdTable {
  private readonly sockets = new Map<number, SocketState>();

  get(fd: number): SocketState | undefined {
    return this.sockets.get(fd);
  }

  /** The fd was closed, or turned out to be a file or a pipe. */
  forget(fd: number): void {
    this.sockets.delete(fd);
  }

  /** The socket an fd argument names, updated from its decoration. */
  state(arg: { fd: number; decor?: Decor } | undefined): SocketState | undefined {
    if (!arg) return undefined;
    if (arg.decor) return this.notice(arg.fd, arg.decor);
    return this.sockets.get(arg.fd);
  }

  notice(fd: number, d: Decor): SocketState | undefined {
    if (d.kind === 'file') {
      this.sockets.delete(fd);
      return undefined;
    }
    let s = this.sockets.get(fd);
    // Another inode or kind: the number was reused behind our back (by another process).
    if (s && ((d.inode !== undefined && s.inode !== undefined && d.inode !== s.inode) || (d.kind !== 'socket' && s.kind !== 'socket' && d.kind !== s.kind))) s = undefined;
    if (!s) s = this.remember(fd, { kind: d.kind, inode: d.inode });
    else {
      if (s.kind === 'socket') s.kind = d.kind;
      s.inode ??= d.inode;
    }
    if (d.local) s.local = d.local;
    if (d.peer) s.peer = d.peer;
    return s;
  }

  remember(fd: number, s: SocketState): SocketState {
    this.sockets.delete(fd);
    if (this.sockets.size >= MAX_SOCKETS) this.sockets.delete(this.sockets.keys().next().value!);
    this.sockets.set(fd, s);
    return s;
  }
}

/** An event's `conn` (`local>peer`, the local end empty where unknown), `peer` and `local`, as far as known. */
export function addresses(s: SocketState): Record<string, string> {
  const a: Record<string, string> = {};
  if (s.peer) {
    a.conn = `${s.local ?? ''}>${s.peer}`;
    a.peer = s.peer;
  }
  if (s.local) a.local = s.local;
  return a;
}

/** Not a wildcard address nor port 0: an end a connection can be keyed by. */
export function specific(address: string): boolean {
  return !/^(0\.0\.0\.0|\[::\]):|:0$/.test(address);
}

export function isInet(kind: FdKind): boolean {
  return kind === 'tcp' || kind === 'udp' || kind === 'socket';
}
