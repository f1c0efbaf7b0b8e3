import { errnoNumber } from './errno';
import { addresses, FdTable, isInet, specific, type SocketState } from './straceFds';
import { parseDecor, parseFdArg, parseSockaddr, soError, type CallResult, type Decor, type FdKind } from './straceParse';
import type { TimelineEvent } from './timeline';

/**
 * Socket calls to events, as the samples report theirs: a failing connect, recv or send is an
 * `error` with op and errno; a connect's start, its EINPROGRESS and its outcome (from SO_ERROR,
 * or from the next read or write), an accept, an EOF and a poll alarm are events of their own.
 * What is normal for a non-blocking program (EAGAIN, EINTR) is counted, not reported.
 */

/** The lab's name for a call, as the samples name their ops (libc's recv() is recvfrom(2)...). */
const OP: Readonly<Record<string, string>> = {
  read: 'recv', readv: 'recv', recvfrom: 'recv', recvmsg: 'recv', recvmmsg: 'recv',
  write: 'send', writev: 'send', sendto: 'send', sendmsg: 'send', sendmmsg: 'send',
  accept4: 'accept', poll: 'poll', ppoll: 'poll', epoll_wait: 'poll', epoll_pwait: 'poll', epoll_pwait2: 'poll',
};
const opOf = (name: string) => OP[name] ?? name;

const RECV = new Set(['read', 'readv', 'recvfrom', 'recvmsg', 'recvmmsg']);
const SEND = new Set(['write', 'writev', 'sendto', 'sendmsg', 'sendmmsg']);
/** Not failures: try again later (EAGAIN), or a signal came and the call will be redone. */
const RETRY = new Set(['EAGAIN', 'EWOULDBLOCK', 'EINTR', 'ERESTARTSYS', 'ERESTARTNOINTR', 'ERESTARTNOHAND', 'ERESTART_RESTARTBLOCK']);
/** Errnos that only a network socket gives: reported even on an fd whose kind is unknown. */
const NETWORK = new Set(['ECONNRESET', 'ECONNREFUSED', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNABORTED', 'ENOTCONN', 'ENETDOWN', 'EHOSTDOWN', 'ENETRESET']);
/** How a non-blocking connect that failed shows in the next read or write. */
const CONNECT_FAILURE = new Set(['ECONNREFUSED', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN', 'ENETDOWN']);
const POLL_ALARM = ['POLLERR', 'POLLHUP', 'POLLRDHUP', 'POLLNVAL'];
/**
 * A non-blocking call fails with EINPROGRESS or EAGAIN in microseconds. One that took this
 * long was a blocking call whose SO_SNDTIMEO/SO_RCVTIMEO expired: a real failure (the samples
 * report it as one). Those timeouts are set in whole jiffies and in practice far longer.
 */
const BLOCKED_CALL = 0.02;

/** The parser's counters that socket calls add to. */
export interface SocketCallStats {
  wouldBlock: number;
  interrupted: number;
}

/** An event of the traced program, dated on CLOCK_REALTIME; the parser names and dates it. */
export type MakeEvent = (realtime: number, type: string, fields: Record<string, unknown>) => TimelineEvent;

export class SocketCalls {
  private readonly fds = new FdTable();
  /** TCP connect() calls so far (the samples' `attempt`). */
  private attempts = 0;

  constructor(
    private readonly stats: SocketCallStats,
    private readonly event: MakeEvent,
  ) {}

  /**
   * One finished call's events (execve and rt_sigaction are the parser's). `started`: the
   * connect-start was shown already, when the call began (an unfinished line).
   */
  call(pid: number, ts: number, name: string, args: string[], res: CallResult, out: TimelineEvent[], started = false): void {
    const end = ts + (res.duration ?? 0);
    const failed = res.ret === '-1' || res.ret === '?';
    const wouldBlock = res.errno === 'EAGAIN' || res.errno === 'EWOULDBLOCK';
    // EAGAIN after waiting: a blocking call whose SO_RCVTIMEO/SO_SNDTIMEO expired, a real outcome.
    const timedOut = wouldBlock && res.duration !== undefined && res.duration >= BLOCKED_CALL;
    if (failed && res.errno && RETRY.has(res.errno) && name !== 'connect' && !timedOut) {
      if (wouldBlock) this.stats.wouldBlock++;
      else this.stats.interrupted++;
      return;
    }
    const fdArg = parseFdArg(args[0]);
    switch (name) {
      case 'socket': {
        const fd = Number(res.ret);
        const inet = /^AF_INET6?$/.test(args[0] ?? '');
        if (fd >= 0) {
          const decor = res.decor ? parseDecor(res.decor) : undefined;
          const declared: FdKind = !inet ? 'other-socket' : /SOCK_STREAM/.test(args[1] ?? '') ? 'tcp' : /SOCK_DGRAM/.test(args[1] ?? '') ? 'udp' : 'other-socket';
          this.fds.remember(fd, { kind: decor && decor.kind !== 'socket' && decor.kind !== 'file' ? decor.kind : declared, inode: decor?.inode });
        } else if (inet && res.errno) {
          out.push(this.error(end, name, undefined, res, pid));
        }
        return;
      }
      case 'close':
        if (fdArg) this.fds.forget(fdArg.fd);
        return;
      case 'accept':
      case 'accept4': {
        const s = this.fds.state(fdArg);
        if (!s || !isInet(s.kind)) return;
        const fd = Number(res.ret);
        if (fd >= 0) {
          const decor = res.decor ? parseDecor(res.decor) : undefined;
          const peer = decor?.peer ?? parseSockaddr(args[1])?.address;
          const kind = decor && decor.kind !== 'socket' && decor.kind !== 'file' ? decor.kind : s.kind;
          const accepted = this.fds.remember(fd, { kind, inode: decor?.inode, local: decor?.local ?? s.local, peer });
          if (accepted.kind === 'tcp') out.push(this.event(end, 'accepted', { fd, pid, ...addresses(accepted) }));
        } else if (res.errno) {
          out.push(this.error(end, name, s, res, pid, fdArg?.fd));
        }
        return;
      }
      case 'connect':
        if (!started) this.connectStart(pid, ts, args, out);
        this.connect(pid, end, args, res, out);
        return;
    }
    if (name === 'poll' || name === 'ppoll' || name.startsWith('epoll_')) {
      this.poll(pid, end, name, args, res, out);
      return;
    }
    if (fdArg?.decor?.kind === 'file') {
      this.fds.forget(fdArg.fd);
      return;
    }
    const s = this.fds.state(fdArg);
    const fd = fdArg?.fd;
    if (name === 'getsockopt') {
      if (!s || !isInet(s.kind) || res.ret !== '0' || args[1] !== 'SOL_SOCKET' || args[2] !== 'SO_ERROR') return;
      const value = soError(args[3]);
      if (value === undefined) return;
      if (s.connecting) {
        s.connecting = false;
        if (value.errno === 0) out.push(this.event(end, 'connected', { op: 'connect', fd, pid, ...addresses(s) }));
        else out.push(this.error(end, 'connect', s, { errno: value.name }, pid, fd, 'getsockopt'));
      } else if (value.errno !== 0) {
        // An error read from SO_ERROR after poll() said POLLERR: the samples call it op `poll`.
        out.push(this.error(end, 'poll', s, { errno: value.name }, pid, fd, 'getsockopt'));
      }
      return;
    }
    if (name === 'getsockname' || name === 'getpeername') {
      // Where the local port comes from without -yy (curl asks for it after connecting).
      const addr = res.ret === '0' ? parseSockaddr(args[1])?.address : undefined;
      if (s && addr && specific(addr)) {
        if (name === 'getsockname') s.local = addr;
        else s.peer = addr;
      }
      return;
    }
    if (!s) {
      // No decoration and never seen: report what only a network socket can say.
      if (failed && res.errno && NETWORK.has(res.errno) && (RECV.has(name) || SEND.has(name) || name === 'shutdown')) {
        out.push(this.error(end, opOf(name), undefined, res, pid, fd, name));
      }
      return;
    }
    if (!isInet(s.kind) || s.kind === 'socket' && !(failed && res.errno && NETWORK.has(res.errno))) return;
    const io = RECV.has(name) || SEND.has(name);
    if (failed) {
      if (!res.errno) return;
      if (io && s.connecting && CONNECT_FAILURE.has(res.errno)) {
        s.connecting = false;
        out.push(this.error(end, 'connect', s, res, pid, fd, name));
        return;
      }
      if (!io && !['bind', 'listen', 'setsockopt', 'shutdown'].includes(name)) return;
      out.push(this.error(end, opOf(name), s, res, pid, fd, name));
      return;
    }
    if (name === 'bind') {
      // A listener's own address is the local end of what it accepts (unless it is a wildcard).
      const addr = parseSockaddr(args[1])?.address;
      if (addr && specific(addr)) s.local = addr;
      return;
    }
    if (!io) return;
    if (s.connecting) {
      // Data moved, so the handshake completed even though the program never asked SO_ERROR.
      s.connecting = false;
      out.push(this.event(end, 'connected', { op: 'connect', fd, pid, syscall: name, ...addresses(s) }));
    }
    if (RECV.has(name) && res.ret === '0' && s.kind === 'tcp' && !s.eof && args[2] !== '0') {
      s.eof = true;
      out.push(this.event(end, 'eof', { op: 'recv', syscall: name, fd, pid, ...addresses(s) }));
    }
  }

  /**
   * `connect-start`, as the samples mark it just before connect(), so that a scenario's bands
   * measured from it apply to any program. Asking again while connecting (EALREADY, EISCONN)
   * starts nothing. True when it was one.
   */
  connectStart(pid: number, ts: number, args: string[], out: TimelineEvent[]): boolean {
    const fdArg = parseFdArg(args[0]);
    const addr = parseSockaddr(args[1]);
    if (!fdArg || !addr?.address) return false;
    const s = this.fds.state(fdArg) ?? this.fds.remember(fdArg.fd, { kind: 'tcp' });
    if (s.kind === 'socket') s.kind = 'tcp';
    if (s.kind !== 'tcp' || s.connecting) return false;
    s.peer = addr.address;
    this.attempts++;
    out.push(this.event(ts, 'connect-start', { attempt: this.attempts, fd: fdArg.fd, pid, peer: s.peer }));
    return true;
  }

  /** connect(): the outcome, or EINPROGRESS (not one), or EAGAIN (no local port left: one). */
  private connect(pid: number, end: number, args: string[], res: CallResult, out: TimelineEvent[]): void {
    const fdArg = parseFdArg(args[0]);
    const addr = parseSockaddr(args[1]);
    if (!fdArg || !addr || (addr.family !== 'AF_INET' && addr.family !== 'AF_INET6')) {
      // AF_UNIX (nscd, D-Bus) and AF_UNSPEC (dissolving a UDP association) are not the lab's.
      if (fdArg && addr?.family === 'AF_UNIX') this.fds.remember(fdArg.fd, { kind: 'other-socket' });
      return;
    }
    const s = this.fds.state(fdArg) ?? this.fds.remember(fdArg.fd, { kind: 'tcp' });
    if (s.kind === 'socket') s.kind = 'tcp';
    s.peer = addr.address ?? s.peer;
    const fd = fdArg.fd;
    if (s.kind !== 'tcp') {
      if (s.kind === 'udp' && res.errno) out.push(this.error(end, 'connect', s, res, pid, fd));
      return;
    }
    if (res.errno && RETRY.has(res.errno) && res.errno !== 'EAGAIN' && res.errno !== 'EWOULDBLOCK') {
      // A blocking connect cut by a signal goes on in the kernel, as if non-blocking; its
      // outcome comes as for one (Python waits for it and reads SO_ERROR).
      this.stats.interrupted++;
      s.connecting = true;
    } else if (res.ret === '0' || res.errno === 'EISCONN' && s.connecting) {
      s.connecting = false;
      out.push(this.event(end, 'connected', { op: 'connect', fd, pid, ...addresses(s) }));
    } else if (res.errno === 'EINPROGRESS' && !(res.duration !== undefined && res.duration >= BLOCKED_CALL)) {
      s.connecting = true;
      out.push(this.event(end, 'in-progress', { op: 'connect', errno: errnoNumber('EINPROGRESS'), name: 'EINPROGRESS', fd, pid, ...addresses(s) }));
    } else if (res.errno === 'EALREADY') {
      // Asked again while the handshake runs: no news.
    } else if (res.errno) {
      s.connecting = res.errno === 'EINPROGRESS'; // SO_SNDTIMEO expired: the SYNs go on
      out.push(this.error(end, 'connect', s, res, pid, fd));
    }
  }

  private poll(pid: number, end: number, name: string, args: string[], res: CallResult, out: TimelineEvent[]): void {
    if (!/^[1-9]\d*$/.test(res.ret)) return;
    const entries: { fd: number; revents: string[] }[] = [];
    if (name.startsWith('epoll_')) {
      // epoll hands back the program's own cookie, not the fd; most loops put the fd in it.
      for (const m of (args[1] ?? '').matchAll(/\{events=([A-Z|]+), data=\{u32=(\d+)/g)) {
        entries.push({ fd: Number(m[2]), revents: m[1]!.split('|').map((x) => x.replace(/^EPOLL/, 'POLL')) });
      }
    } else {
      const decors = new Map<number, Decor>();
      for (const m of (args[0] ?? '').matchAll(/\{fd=(\d+)<(.*?)>, events=/g)) decors.set(Number(m[1]), parseDecor(m[2]!));
      for (const [fd, d] of decors) this.fds.notice(fd, d);
      for (const m of (res.extra ?? '').matchAll(/\{fd=(\d+)(?:<.*?>)?, revents=([A-Z|]+)\}/g)) {
        entries.push({ fd: Number(m[1]), revents: m[2]!.split('|') });
      }
    }
    for (const { fd, revents } of entries) {
      const s = this.fds.get(fd);
      if (!s || s.kind !== 'tcp') continue;
      if (!revents.some((r) => POLL_ALARM.includes(r))) {
        s.revents = undefined;
        continue;
      }
      const key = revents.join('|');
      // A level-triggered loop gets the same answer until it acts: report the change only.
      if (s.revents === key) continue;
      s.revents = key;
      out.push(this.event(end, 'poll', { op: 'poll', syscall: name, revents, fd, pid, ...addresses(s) }));
    }
  }

  private error(end: number, op: string, s: SocketState | undefined, res: Pick<CallResult, 'errno' | 'message'>, pid: number, fd?: number, syscall = op): TimelineEvent {
    const name = res.errno ?? 'UNKNOWN';
    return this.event(end, s?.kind === 'udp' ? 'udp-error' : 'error', {
      op: opOf(op),
      errno: errnoNumber(name) ?? null,
      name,
      ...(res.message ? { message: res.message } : {}),
      syscall,
      ...(fd !== undefined ? { fd } : {}),
      pid,
      ...(s ? addresses(s) : {}),
    });
  }
}
