#!/usr/bin/env python3
"""TCP Failure Lab sample client.

Runs a list of steps on one TCP socket and reports what each system call did,
as events (see labevents.py and samples/README.md). The point is to show the
errno the kernel really returns: nothing here translates or hides errors.

Requests speak --proto: echo ("ping\\n" and its echo) or a minimal HTTP/1.1
GET. Each completed request emits `response` with how long it took, timed
around the system calls only. The `connections` step opens its own sockets,
one short-lived connection per request, and leaves each in TIME_WAIT.
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
from labevents import HTTP_GET, PING


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
    "connections": ([_pos_int, _nonneg_float], 1),
    "sleep": ([_nonneg_float], 1),
    "idle": ([], 0),
    "poll": ([], 0),
    "heartbeat": ([_pos_float, _pos_int], 2),
    "write-loop": ([_pos_int], 0),
    "close": ([], 0),
    "shutdown": ([], 0),
}


# Steps that do not use the run's socket: with only these, no socket is opened
# for the run (it would sit unused, and hold the port of --bind HOST:PORT).
OWN_SOCKET_STEPS = {"connections", "sleep"}


def keep_alive_timeout(head):
    """timeout=N (whole seconds) of a reply's Keep-Alive header, e.g.
    "Keep-Alive: timeout=5, max=100"; None without one. head is the reply's
    header, lowercased. A value that is not a whole number is ignored, as
    clients ignore hints they cannot read."""
    at = head.find(b"\r\nkeep-alive:")
    if at < 0:
        return None
    value = head[at + 13:].split(b"\r\n", 1)[0].decode("latin-1")
    for param in value.split(","):
        key, _, number = param.partition("=")
        if key.strip() == "timeout" and number.strip().isdigit():
            return int(number.strip())
    return None


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
        self.requests_done = 0  # numbers `response` events, over the whole run
        self.keep_alive = None  # (timeout=N of the last reply, when it ended): --pool
        self.evicted = False  # --pool closed the run's connection; the next request reconnects
        self.connections_made = 0  # numbers the `connections` step's connections

    # ---- reporting helpers ------------------------------------------------

    def fail(self, op, exc, t=None, **extra):
        self.ev.emit("error", t=t, op=op, **lab.errno_fields(exc), **extra)
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
        while b"\n" not in self.inbuf:
            if deadline is not None:
                left = deadline - now()
                if left <= 0 or not self.wait_readable(left):
                    return False
            data = self.recv_once()
            if data is None:
                return None
            self.inbuf += data
        self.inbuf = self.inbuf.split(b"\n", 1)[1]
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
        """The run's socket, which the steps but `connections` use."""
        self.tx = self.rx = 0
        self.inbuf = b""  # received bytes not yet consumed by a request
        self.keep_alive = None
        self.evicted = False
        self.sock = None
        self.sock = self.new_socket()

    def new_socket(self, **extra):
        """A socket with every option flag set, bound if --bind. On failure
        emit error (op socket, setsockopt or bind) with `extra`, and fail."""
        a = self.args
        try:
            sock = socket.socket(self.family, socket.SOCK_STREAM)
        except OSError as e:
            self.fail("socket", e, **extra)
        op = "setsockopt"
        try:
            for level, opt, value in lab.sockopts_from_args(a):
                sock.setsockopt(level, opt, value)
            if a.bind:
                op = "bind"
                sock.bind(a.bind)
        except OSError as e:
            sock.close()
            self.fail(op, e, **extra)
        return sock

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

    def connect_with_timeout(self, limit, **extra):
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
                self.ev.emit("timeout", op="connect", after=round(now() - start, 6), **extra)
                raise Failed("connect")
            err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        t = now()
        self.sock.setblocking(True)
        if err:
            self.fail("connect", lab.oserror(err), t, **extra)

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

    # ---- requests: --proto echo or http, timed around the syscalls only ----

    def fill(self):
        """One recv() into inbuf, nothing else: no event, so that it can run
        inside a timed request. False at EOF; an OSError propagates."""
        data = self.sock.recv(65536)
        if not data:
            return False
        self.inbuf += data
        self.rx += len(data)
        return True

    def read_echo_reply(self):
        """Until a line is buffered: its size with the newline, None at EOF."""
        while (end := self.inbuf.find(b"\n")) < 0:
            if not self.fill():
                return None
        self.inbuf = self.inbuf[end + 1:]
        return end + 1

    def read_http_reply(self):
        """One HTTP/1.1 response: the header up to the blank line, then
        exactly Content-Length bytes of body (server.py always sends it; we
        keep the connection, so reading until EOF is no way to find the end).
        Its size, or None at EOF."""
        while (end := lab.http_header_end(self.inbuf)) < 0:
            if not self.fill():
                return None
        self.reply_head = self.inbuf[:end].lower()
        size = lab.http_reply_size(self.inbuf, end)
        while len(self.inbuf) < size:
            if not self.fill():
                return None
        self.inbuf = self.inbuf[size:]
        return size

    def request(self, connect_took=None, **extra):
        """One request of --proto, its whole reply read. True when a reply
        came (`response` emitted), False at EOF (`eof` emitted). `extra`
        goes into error events; connect_took, if given, into `response`.

        With --proto http, between the first now() and the last one only the
        send() and recv() calls run: an event costs tens of microseconds,
        about what a whole request takes on loopback, so `sent`/`received`/
        `response` are emitted afterwards, stamped with the moments they
        happened. With echo (the fault scenarios) `sent` goes out at once:
        whoever watches sees the request leave, not only when it fails."""
        data, read_reply = ((PING, self.read_echo_reply) if self.args.proto == "echo"
                            else (HTTP_GET, self.read_http_reply))
        self.requests_done += 1
        n, rx_before = self.requests_done, self.rx
        start = now()
        try:
            self.sock.sendall(data)  # one send() unless the send buffer is full
        except OSError as e:
            # EPIPE: we already got an RST (or shut down our side); Python
            # ignores SIGPIPE, so this is an exception, not a dead process.
            self.fail("send", e, now(), **extra)
        sent_at = now()
        live = self.args.proto == "echo"
        if live:
            self.tx += len(data)
            self.ev.emit("sent", t=sent_at, bytes=len(data), total=self.tx)
        try:
            size = read_reply()
        except OSError as e:
            # As in recv_once: EAGAIN from SO_RCVTIMEO, ECONNRESET, ETIMEDOUT.
            t = now()
            self.report_request(None if live else data, sent_at, rx_before, t)
            self.fail("recv", e, t, **extra)
        end = now()
        self.report_request(None if live else data, sent_at, rx_before, end)
        if size is None:
            self.eof("recv", end)
            return False
        if not live:
            self.keep_alive = (keep_alive_timeout(self.reply_head), end)
        timing = {} if connect_took is None else {"connect_took": connect_took}
        self.ev.emit("response", t=end, took=round(end - start, 6), n=n, bytes=size, **timing)
        return True

    def report_request(self, data, sent_at, rx_before, t):
        """The request's `sent`, and one `received` for all of its reply
        bytes, after the fact. Also when the reply failed: the request did
        go out, and a fault's timing is measured from that moment. data is
        None when `sent` was emitted already."""
        if data is not None:
            self.tx += len(data)
            self.ev.emit("sent", t=sent_at, bytes=len(data), total=self.tx)
        if self.rx > rx_before:
            self.ev.emit("received", t=t, bytes=self.rx - rx_before, total=self.rx)

    def step_request(self):
        self.pool_check()
        return self.request()

    def step_requests(self, interval, count=None):
        done = 0
        while count is None or done < count:
            self.pool_check()
            if not self.request():
                return
            done += 1
            if count is None or done < count:
                self.pool_sleep(interval)

    # ---- --pool honour: the run's connection idle between requests ---------
    #
    # Like HTTP pools that read the hint (Node's http.Agent sets the socket's
    # timeout to N minus its buffer; undici arms a timer), the connection is
    # closed the moment it has been idle for the last reply's Keep-Alive
    # timeout=N minus --pool-margin, not when the next request wants it. The
    # difference shows behind a middlebox that forgets idle flows after
    # T > N s: closed early, our FIN crosses it while it still knows the flow
    # and the server sees the close; closed late, the FIN (or the request)
    # reaches a middlebox that forgot the flow and gets a RST, and the server
    # keeps a half-open connection. Nothing tells a pool about the middlebox:
    # the hint only protects it if N is below that middlebox's idle timeout.
    #
    # The connection sits idle in the pool during `sleep`, `idle` and the
    # interval of `requests`, where the wait is cut at the limit (pool_sleep,
    # step_idle). Elsewhere (busy in `connections`, say) the limit is checked
    # when the next request starts (pool_check).

    def pool_deadline(self):
        """(when the run's connection reaches the idle limit, on the now()
        clock, the limit, N); None when the pool does not limit it: --pool
        ignore, no reply yet, a reply without Keep-Alive: timeout=N, or no
        open connection."""
        if self.args.pool != "honour" or self.keep_alive is None:
            return None
        timeout, reply_end = self.keep_alive
        if timeout is None or self.sock is None or self.sock.fileno() < 0:
            return None
        limit = timeout - self.args.pool_margin
        return reply_end + limit, limit, timeout

    def pool_evict(self, limit, timeout):
        """Close the idle connection: pool-evict, then closed (unless it was
        over already). The next request connects anew."""
        idle = now() - self.keep_alive[1]
        self.ev.emit("pool-evict", idle=round(idle, 6), limit=round(limit, 6), timeout=timeout)
        live = lab.is_live(self.sock)
        how = lab.close_how(self.sock, self.args.linger == 0)
        self.sock.close()
        if live:  # a connection already reset or timed out sends nothing
            self.ev.emit("closed", how=how)
        self.keep_alive, self.evicted = None, True

    def pool_sleep(self, secs):
        """Sleep secs seconds; if the idle limit falls inside, evict the
        connection right then and sleep the rest."""
        end = now() + secs
        pooled = self.pool_deadline()
        if pooled is not None and pooled[0] < end:
            time.sleep(max(0.0, pooled[0] - now()))
            self.pool_evict(*pooled[1:])
        time.sleep(max(0.0, end - now()))

    def pool_check(self):
        """Before a request on the run's connection: connect anew if the pool
        closed it; if it has passed its idle limit unnoticed (the program was
        busy elsewhere), evict it now (pool-evict with idle > limit) and
        connect anew."""
        if not self.evicted:
            pooled = self.pool_deadline()
            if pooled is None or now() < pooled[0]:
                return
            self.pool_evict(*pooled[1:])
        self.open_socket()
        self.step_connect()

    def step_connections(self, count, gap=0.0):
        # Each connection: a new socket, connect, one request, and close()
        # by us first, so our side goes through TIME_WAIT (TCP_TIMEWAIT_LEN,
        # 60 s) and keeps its local port meanwhile. connect() picks a port
        # of net.ipv4.ip_local_port_range that no connection to the same
        # server address holds; when every one is held, it fails with
        # EADDRNOTAVAIL. Unless net.ipv4.tcp_tw_reuse allows taking over a
        # TIME_WAIT entry whose last timestamp is over 1 s old: 1 for all
        # connections, 2 (the default) for loopback ones only.
        saved = self.sock, self.tx, self.rx, self.inbuf, self.keep_alive
        try:
            for i in range(count):
                if i:
                    time.sleep(gap)
                self.connections_made += 1
                self.one_connection(self.connections_made)
        finally:
            if self.sock is not saved[0] and self.sock.fileno() >= 0:
                # Left by a failure or a signal: report it like run() does.
                live = lab.is_live(self.sock)
                how = lab.close_how(self.sock, self.args.linger == 0)
                self.sock.close()
                if live:
                    self.ev.emit("closed", how=how, n=self.connections_made)
            self.sock, self.tx, self.rx, self.inbuf, self.keep_alive = saved

    def one_connection(self, n):
        """connect, request, close on a socket of its own, with the same
        options as the run's socket; the request helpers see it as self.sock."""
        self.sock, self.tx, self.rx, self.inbuf = self.new_socket(n=n), 0, 0, b""
        self.keep_alive = None
        start = now()
        if self.args.connect_timeout is None:
            try:
                self.sock.connect(self.addr)
            except OSError as e:
                self.fail("connect", e, now(), n=n)
        else:
            self.connect_with_timeout(self.args.connect_timeout, n=n)
        t = now()
        self.connected = True
        self.ev.emit("connected", t=t, attempt=self.attempt, n=n,
                     local=lab.addr_str(self.sock.getsockname()), peer=self.peer)
        # At EOF there is no reply: eof is reported, we still close, go on.
        self.request(connect_took=round(t - start, 6), n=n)
        how = lab.close_how(self.sock, self.args.linger == 0)
        self.sock.close()
        self.ev.emit("closed", how=how, n=n)

    def step_sleep(self, secs):
        self.pool_sleep(secs)

    def step_idle(self):
        # A blocking recv() on a silent connection waits forever unless
        # something ends it: keepalive, TCP_USER_TIMEOUT, SO_RCVTIMEO or a
        # packet from the peer. This is the half-open connection test.
        # With --pool honour the pool may hold the connection: wait in poll()
        # until the idle limit, then evict it and end the step.
        if self.evicted:
            return  # the pool closed it already: nothing left to wait on
        while True:
            pooled = self.pool_deadline()
            if pooled is not None and not self.wait_readable(max(0.0, pooled[0] - now())):
                self.pool_evict(*pooled[1:])
                return
            if self.recv_once() is None:
                return

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
        if self.evicted:
            return  # the pool closed it already (its `closed` was emitted then)
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
            if all(name in OWN_SOCKET_STEPS for name, _ in self.args.steps):
                self.sock, self.tx, self.rx, self.inbuf = None, 0, 0, b""
            else:
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
  request               one request of --proto, its whole reply read; then a
                        "response" event with the time it took
  requests:INT[:COUNT]  request every INT seconds until error/EOF or COUNT times
  connections:N[:GAP]   N times: new socket (same options), connect, one request,
                        close (we close first: TIME_WAIT on our side); GAP s apart
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
  %(prog)s --port 7000 --proto http --steps connect,requests:0:30,close
  %(prog)s --port 7000 --steps connections:100
  %(prog)s --port 7000 --proto http --pool honour --steps connect,request,sleep:5,request
exit code: 0 all steps done, 1 a step failed, 2 bad usage, 128+N on signal N.""")
    p.add_argument("--host", default="127.0.0.1", help="server address (default 127.0.0.1)")
    p.add_argument("--port", type=lab.port, required=True, help="server port")
    p.add_argument("--steps", type=parse_steps, required=True, metavar="STEPS",
                   help="comma-separated steps, see below")
    p.add_argument("--proto", choices=["echo", "http"], default="echo",
                   help='a request: echo sends "ping\\n" and reads a line back '
                        "(server.py --mode echo); http sends GET / HTTP/1.1 and reads "
                        "the header and Content-Length bytes of body (--mode http). "
                        "Default echo")
    p.add_argument("--pool", choices=["ignore", "honour"], default="ignore",
                   help="http: honour closes the connection once it has been idle for "
                        "the last reply's Keep-Alive timeout=N minus --pool-margin "
                        "(pool-evict event, during sleep/idle/requests waits), and the "
                        "next request connects anew; default ignore")
    p.add_argument("--pool-margin", type=lab.ranged(float, 0), metavar="S",
                   help="with --pool honour: seconds taken off the server's timeout=N "
                        "(default 1, the figure Node's http.Agent subtracts; undici "
                        "subtracts 1 or 2 depending on its version)")
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
    if args.pool == "honour" and args.proto != "http":
        p.error("argument --pool: honour needs --proto http (echo replies carry no Keep-Alive)")
    if args.pool_margin is None:
        args.pool_margin = 1.0
    elif args.pool != "honour":
        p.error("argument --pool-margin: only with --pool honour")
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
