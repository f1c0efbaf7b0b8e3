#!/usr/bin/env python3
"""TCP Failure Lab sample client.

Runs a list of steps on one TCP socket and reports what each system call did,
as events (see labevents.py and samples/README.md). The point is to show the
errno the kernel really returns: nothing here translates or hides errors.
"""

import argparse
import errno
import os
import select
import socket
import sys
import threading
import time

import labevents as lab
from labevents import now

DEFAULT_BLOCK = 16384
PING = b"ping\n"


class Failed(Exception):
    """A step failed; its error/timeout/dead event has been emitted."""


class PeerClosed(Exception):
    """recv() returned 0 and --reconnect asks to start over."""


# --------------------------------------------------------------------------
# --steps parsing: name[:arg[:arg]], comma-separated
# --------------------------------------------------------------------------

_pos_int = lab.ranged(int, 1)
_pos_float = lab.ranged(float, above=0)
_nonneg_float = lab.ranged(float, 0)

# name -> (converters of its arguments, how many are required)
STEP_ARGS = {
    "connect": ([], 0),
    "send": ([_pos_int], 0),
    "recv": ([], 0),
    "request": ([], 0),
    "requests": ([_nonneg_float, _pos_int], 1),
    "sleep": ([_nonneg_float], 1),
    "idle": ([], 0),
    "poll": ([], 0),
    "heartbeat": ([_pos_float, _pos_int], 2),
    "write-loop": ([_pos_int], 0),
    "close": ([], 0),
    "shutdown": ([], 0),
}


def parse_steps(text):
    steps = []
    for item in text.split(","):
        name, *raw = item.strip().split(":")
        if name not in STEP_ARGS:
            raise argparse.ArgumentTypeError(
                f"unknown step {name!r} (steps: {', '.join(STEP_ARGS)})")
        converters, required = STEP_ARGS[name]
        if not required <= len(raw) <= len(converters):
            want = (f"{required}" if required == len(converters)
                    else f"{required} to {len(converters)}")
            raise argparse.ArgumentTypeError(f"step {item!r} takes {want} argument(s)")
        try:
            values = [conv(r) for conv, r in zip(converters, raw)]
        except argparse.ArgumentTypeError as e:
            raise argparse.ArgumentTypeError(f"step {item!r}: {e}") from None
        steps.append((name, values))
    return steps


# --------------------------------------------------------------------------
# The client
# --------------------------------------------------------------------------

class Client:
    def __init__(self, args, ev, family, addr):
        self.args, self.ev, self.family, self.addr = args, ev, family, addr
        self.peer = lab.addr_str(addr)
        self.sock = None

    # ---- reporting helpers ------------------------------------------------

    def fail(self, op, exc, t=None):
        self.ev.emit("error", t=t, op=op, **lab.errno_fields(exc))
        raise Failed(op)

    def eof(self, op, t):
        self.ev.emit("eof", t=t, op=op)
        if self.args.reconnect:
            raise PeerClosed(op)

    def recv_once(self, op="recv"):
        """One recv(65536). Returns the bytes, or None at EOF."""
        try:
            data = self.sock.recv(65536)
        except OSError as e:
            # With SO_RCVTIMEO (--read-timeout) an expired read is EAGAIN
            # (socket(7)); a peer's RST is ECONNRESET; keepalive or
            # TCP_USER_TIMEOUT giving up is ETIMEDOUT (tcp(7)).
            self.fail(op, e)
        t = now()
        if not data:
            self.eof(op, t)
            return None
        self.rx += len(data)
        self.ev.emit("received", t=t, bytes=len(data), total=self.rx)
        return data

    def send_all(self, data, op="send"):
        try:
            self.sock.sendall(data)
        except OSError as e:
            # EPIPE: we already got an RST (or shut down our side); Python
            # ignores SIGPIPE, so this is an exception, not a dead process.
            self.fail(op, e)
        self.tx += len(data)
        self.ev.emit("sent", bytes=len(data), total=self.tx)

    def read_line(self, deadline=None):
        """Read until a full line is buffered. Returns True when one was
        consumed, False if deadline passed first, None at EOF."""
        while b"\n" not in self.linebuf:
            if deadline is not None:
                left = deadline - now()
                if left <= 0 or not self.wait_readable(left):
                    return False
            data = self.recv_once()
            if data is None:
                return None
            self.linebuf += data
        self.linebuf = self.linebuf.split(b"\n", 1)[1]
        return True

    def wait_readable(self, secs):
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        try:
            return bool(poller.poll(secs * 1000))
        except OSError as e:
            self.fail("poll", e)

    # ---- socket setup: every option is set before connect() ---------------

    def open_socket(self):
        a = self.args
        self.tx = self.rx = 0
        try:
            self.sock = socket.socket(self.family, socket.SOCK_STREAM)
        except OSError as e:
            self.sock = None
            self.fail("socket", e)
        self.linebuf = b""
        opts = lab.sockopts_from_args(a)
        try:
            for level, opt, value in opts:
                self.sock.setsockopt(level, opt, value)
        except OSError as e:
            self.fail("setsockopt", e)
        if a.bind:
            try:
                self.sock.bind(a.bind)
            except OSError as e:
                self.fail("bind", e)

    # ---- steps -------------------------------------------------------------

    def step_connect(self):
        self.ev.emit("connect-start", attempt=self.attempt, peer=self.peer)
        if self.args.connect_timeout is None:
            # Blocking connect: the kernel decides how long it may take
            # (TCP_SYNCNT, SO_SNDTIMEO); an RST in answer gives ECONNREFUSED.
            try:
                self.sock.connect(self.addr)
            except OSError as e:
                self.fail("connect", e)
        else:
            self.connect_with_timeout(self.args.connect_timeout)
        t = now()
        self.connected = True
        self.ev.emit("connected", t=t, attempt=self.attempt,
                     local=lab.addr_str(self.sock.getsockname()), peer=self.peer)

    def connect_with_timeout(self, limit):
        # An application timeout: a non-blocking connect() returns EINPROGRESS
        # while the handshake goes on; poll for writability, then read the
        # outcome from SO_ERROR (connect(2)).
        start = now()
        self.sock.setblocking(False)
        err = self.sock.connect_ex(self.addr)
        if err == errno.EINPROGRESS:
            poller = select.poll()
            poller.register(self.sock, select.POLLOUT)
            if not poller.poll(limit * 1000):
                self.ev.emit("timeout", op="connect", after=round(now() - start, 6))
                raise Failed("connect")
            err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        t = now()
        self.sock.setblocking(True)
        if err:
            self.fail("connect", lab.oserror(err), t)

    def step_send(self, size=None):
        data = PING if size is None else b"x" * (size - 1) + b"\n"
        try:
            n = self.sock.send(data)  # one send(): report what it accepted
        except OSError as e:
            self.fail("send", e)
        self.tx += n
        self.ev.emit("sent", bytes=n, total=self.tx)

    def step_recv(self):
        self.recv_once()

    def step_request(self):
        self.send_all(PING)
        return self.read_line() is True

    def step_requests(self, interval, count=None):
        done = 0
        while count is None or done < count:
            if not self.step_request():
                return
            done += 1
            if count is None or done < count:
                time.sleep(interval)

    def step_sleep(self, secs):
        time.sleep(secs)

    def step_idle(self):
        # A blocking recv() on a silent connection waits forever unless
        # something ends it: keepalive, TCP_USER_TIMEOUT, SO_RCVTIMEO or a
        # packet from the peer. This is the half-open connection test.
        while self.recv_once() is not None:
            pass

    def step_poll(self):
        if self.sock.fileno() < 0:
            self.fail("poll", lab.oserror(errno.EBADF))
        poller = select.poll()
        poller.register(self.sock, select.POLLIN | select.POLLPRI | select.POLLRDHUP)
        try:
            ready = poller.poll()  # no timeout
        except OSError as e:
            self.fail("poll", e)
        t = now()
        revents = ready[0][1] if ready else 0
        # Reading SO_ERROR also clears it (socket(7)): report what we got.
        so = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        self.ev.emit("poll", t=t, revents=lab.revent_names(revents),
                     so_error=errno.errorcode.get(so) if so else None, so_errno=so)
        if revents & select.POLLERR and so:
            self.fail("poll", lab.oserror(so), t)
        if revents & select.POLLIN:
            self.recv_once()

    def step_heartbeat(self, every, max_misses):
        # Application-level liveness: the kernel cannot tell a silent peer
        # from a dead one until its own timers fire, so ask for an echo.
        misses, last_pong = 0, now()
        while True:
            deadline = now() + every
            self.send_all(PING)
            got = self.read_line(deadline)
            if got is None:
                return
            if got:
                misses, last_pong = 0, now()
                time.sleep(max(0.0, deadline - now()))
                continue
            misses += 1
            self.ev.emit("heartbeat-miss", misses=misses)
            if misses >= max_misses:
                self.ev.emit("dead", reason="heartbeat", misses=misses,
                             after=round(now() - last_pong, 6))
                raise Failed("heartbeat")

    def step_write_loop(self, block=DEFAULT_BLOCK):
        # A blocking send() sleeps while the send buffer is full. If the peer
        # stops ACKing, the kernel retransmits (tcp_retries2, or until
        # TCP_USER_TIMEOUT) and finally fails the send with ETIMEDOUT.
        chunk = b"x" * block
        state = {"busy_since": None, "total": self.tx}
        stop = threading.Event()

        def watchdog():
            reported_at = None
            while not stop.wait(0.1):
                since, total = state["busy_since"], state["total"]
                if since is None or now() - since < 0.5:
                    continue
                if reported_at != total:  # one report per blocking episode
                    reported_at = total
                    self.ev.emit("blocked", op="write", total=total)

        threading.Thread(target=watchdog, daemon=True).start()
        reported, reported_at = self.tx, 0.0
        try:
            while True:
                state["busy_since"] = now()
                n = self.sock.send(chunk)
                state["busy_since"] = None
                self.tx += n
                state["total"] = self.tx
                # Progress, not every write: on loopback a fast writer does tens of
                # thousands of writes a second, and the reader of the events must keep up.
                if self.tx - reported >= 65536 and now() - reported_at >= 0.1:
                    reported_at = now()
                    self.ev.emit("sent", bytes=self.tx - reported, total=self.tx)
                    reported = self.tx
        except OSError as e:
            t = now()
            stop.set()
            if self.tx > reported:
                self.ev.emit("sent", t=t, bytes=self.tx - reported, total=self.tx)
            self.fail("write", e, t)
        finally:
            stop.set()

    def step_close(self):
        how = lab.close_how(self.sock, self.args.linger == 0)
        self.sock.close()
        self.ev.emit("closed", how=how)

    def step_shutdown(self):
        try:
            self.sock.shutdown(socket.SHUT_WR)  # sends our FIN, keeps reading
        except OSError as e:
            self.fail("shutdown", e)

    # ---- runs and reconnects -----------------------------------------------

    def run_once(self):
        """All steps on one new socket: 'ok', or 'failed' (error/eof)."""
        self.connected = False
        try:
            self.open_socket()
            for name, values in self.args.steps:
                getattr(self, "step_" + name.replace("-", "_"))(*values)
            return "ok"
        except (Failed, PeerClosed):
            return "failed"

    def run(self):
        a = self.args
        delay = a.backoff
        self.attempt = 0
        while True:
            self.attempt += 1
            if self.run_once() == "ok":
                return 0
            if not a.reconnect or (a.max_attempts and self.attempt >= a.max_attempts):
                return 1
            if self.sock is not None and self.sock.fileno() >= 0:
                live = lab.is_live(self.sock)
                how = lab.close_how(self.sock, a.linger == 0)
                self.sock.close()
                if live:  # closing a dead connection sends nothing
                    self.ev.emit("closed", how=how)
            if self.connected:
                delay = a.backoff  # the peer was reachable: start over gently
            self.ev.emit("reconnect", attempt=self.attempt + 1, delay=delay)
            time.sleep(delay)
            delay = min(delay * 2, a.backoff_max)


def parse_args(argv):
    p = argparse.ArgumentParser(
        allow_abbrev=False,
        description="TCP Failure Lab client: run STEPS on one TCP socket and report "
                    "every outcome as an event, with the kernel's errno.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="""steps (comma-separated, run in order):
  connect               connect() (honours --connect-timeout, --sndtimeo, --syncnt)
  send[:N]              one send() of N bytes (default "ping\\n")
  recv                  one recv(65536) (honours --read-timeout)
  request               send "ping\\n", read until "\\n" (needs an echo server)
  requests:INT[:COUNT]  request every INT seconds until error/EOF or COUNT times
  sleep:S               sleep S seconds
  idle                  block in recv() until EOF or error (half-open test)
  poll                  poll(POLLIN|POLLPRI|POLLRDHUP), report revents and SO_ERROR
  heartbeat:H:M         ping every H s; M missed echoes in a row = dead, exit 1
  write-loop[:BLOCK]    blocking writes of BLOCK bytes (16384) until an error
  close                 close() (RST with --linger 0)
  shutdown              shutdown(SHUT_WR): send FIN, keep reading

examples:
  %(prog)s --port 7000 --steps connect,request,requests:0.1:3,close
  %(prog)s --port 7000 --read-timeout 0.5 --steps connect,recv
  %(prog)s --port 7000 --keepalive 2,1,3 --steps connect,idle
exit code: 0 all steps done, 1 a step failed, 2 bad usage, 128+N on signal N.""")
    p.add_argument("--host", default="127.0.0.1", help="server address (default 127.0.0.1)")
    p.add_argument("--port", type=lab.port, required=True, help="server port")
    p.add_argument("--steps", type=parse_steps, required=True, metavar="STEPS",
                   help="comma-separated steps, see below")
    t = p.add_argument_group("timeouts and socket options (set before connect)")
    t.add_argument("--connect-timeout", type=lab.seconds, metavar="S",
                   help="non-blocking connect + poll; emit timeout after S seconds")
    t.add_argument("--sndtimeo", type=lab.seconds, metavar="S",
                   help="SO_SNDTIMEO: a blocking connect fails with EINPROGRESS after S")
    t.add_argument("--syncnt", type=lab.ranged(int, 1, 127), metavar="N",
                   help="TCP_SYNCNT: SYN retransmissions before ETIMEDOUT (1-127)")
    t.add_argument("--keepalive", type=lab.keepalive, metavar="IDLE,INTVL,CNT",
                   help="SO_KEEPALIVE with TCP_KEEPIDLE/TCP_KEEPINTVL/TCP_KEEPCNT")
    t.add_argument("--user-timeout", type=lab.ranged(int, 0, 2**31 - 1), metavar="MS",
                   help="TCP_USER_TIMEOUT in milliseconds (0 = system default)")
    t.add_argument("--nodelay", action="store_true", help="TCP_NODELAY (Nagle off)")
    t.add_argument("--cork", action="store_true", help="TCP_CORK")
    t.add_argument("--quickack", action="store_true", help="TCP_QUICKACK")
    t.add_argument("--linger", type=lab.linger_seconds, metavar="S",
                   help="SO_LINGER on with S seconds; 0 makes close() send RST")
    t.add_argument("--read-timeout", type=lab.seconds, metavar="S",
                   help="SO_RCVTIMEO: recv() fails with EAGAIN after S seconds")
    t.add_argument("--bind", type=lambda v: lab.host_port(v, need_port=False),
                   metavar="HOST[:PORT]", help="bind() the socket before connecting")
    r = p.add_argument_group("reconnecting")
    r.add_argument("--reconnect", action="store_true",
                   help="on error or EOF, wait and run all steps again on a new socket")
    r.add_argument("--backoff", type=lab.seconds, default=0.1, metavar="S",
                   help="first reconnect delay (default 0.1), doubled each failure")
    r.add_argument("--backoff-max", type=lab.seconds, default=2.0, metavar="S",
                   help="largest reconnect delay (default 2)")
    r.add_argument("--max-attempts", type=lab.ranged(int, 1), metavar="N",
                   help="give up after N attempts (default: unlimited)")
    lab.add_common_args(p, "client")
    args = p.parse_args(argv)
    if args.backoff_max < args.backoff:
        p.error("argument --backoff-max: must not be smaller than --backoff")
    return args


def main(argv=None):
    args = parse_args(argv)
    family, addr = lab.resolve(args.host, args.port, "--host")
    if args.bind:
        _, args.bind = lab.resolve(args.bind[0] or "0.0.0.0", args.bind[1], "--bind")
    ev = lab.Emitter(args.name, args.events, args.json)
    ev.emit("start", pid=os.getpid(), argv=sys.argv)
    lab.install_stop_handlers()
    try:
        code = Client(args, ev, family, addr).run()
    except lab.Stopped as stop:
        code = stop.code
    ev.finish(code)


if __name__ == "__main__":
    main()
