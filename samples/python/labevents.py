"""Shared helpers for the TCP Failure Lab Python samples.

Mostly the event output (the contract with the lab engine): every event is one
JSON object on one line with "t" (CLOCK_MONOTONIC seconds), "proc" and "type".
Events go to the lab's Unix socket (--events PATH) and to stdout, either as a
readable line or, with --json, as the JSON line itself.

Also here, because client.py, server.py and proxy.py all need them: argparse
value checkers (bad values exit 2 naming the flag) and the few socket-option
helpers that more than one program sets.
"""

import argparse
import errno
import fcntl
import json
import math
import os
import re
import select
import signal
import socket
import struct
import sys
import termios
import threading
import time

now = time.monotonic  # CLOCK_MONOTONIC on Linux, the same clock as Node's hrtime


# --------------------------------------------------------------------------
# Events
# --------------------------------------------------------------------------

def _fmt_seconds(v):
    return f"{v:.3f} s"


def _fmt_ms(v):
    return f"{v * 1000:.3f} ms"


def _nth(e):
    """Which connection: the client's `connections` step numbers them with
    n; probes.py names its cells by target, keepalive and sleep."""
    if "target" in e:
        return f" [{_cell(e)}]"
    return f" (connection {e['n']})" if "n" in e else ""


def _cell(e):
    return (f"{e['target']}, keepalive {'on' if e['keepalive'] else 'off'}, "
            f"sleep {e['sleep']:g} s")


def _probe(e):
    if e["ok"]:
        return f"{_cell(e)}: ok, second request {_fmt_ms(e['took'])}"
    where = e["op"] if e["stage"] == "connect" else f"the {e['stage']} request's {e['op']}"
    after = "" if e["took"] is None else f" after {_fmt_ms(e['took'])}"
    return f"{_cell(e)}: FAILED in {where}: {e['name']} ({e['errno']}){after}"


def _response(e):
    text = f"#{e['n']}: {e['bytes']} bytes in {_fmt_ms(e['took'])}"
    if "connect_took" in e:
        text += f" (connect {_fmt_ms(e['connect_took'])})"
    return text


# How each event type reads on stdout when --json is not given.
_DESCRIBE = {
    "start": lambda e: f"pid {e['pid']}: {' '.join(e['argv'])}",
    "listening": lambda e: f"on {e['host']}:{e['port']}",
    "accepted": lambda e: f"{e['peer']} -> {e['local']}",
    "connect-start": lambda e: f"attempt {e['attempt']} to {e['peer']}",
    "connected": lambda e: f"{e['local']} -> {e['peer']}{_nth(e)}",
    "sent": lambda e: f"{e['bytes']} bytes (total {e['total']})",
    "received": lambda e: f"{e['bytes']} bytes (total {e['total']})",
    "eof": lambda e: f"on {e['op']}: the peer sent FIN{_nth(e)}",
    "error": lambda e: f"{e['op']}: {e['name']} ({e['errno']}) {e['message']}{_nth(e)}",
    "timeout": lambda e: (f"{e['op']} after {_fmt_seconds(e['after'])} "
                          f"(application timeout){_nth(e)}"),
    "poll": lambda e: (f"revents {'|'.join(e['revents']) or '-'}, "
                       f"SO_ERROR {e['so_error'] or 0}"),
    "blocked": lambda e: f"{e['op']} blocked, send buffer full: {e['total']} bytes accepted",
    "heartbeat-miss": lambda e: f"{e['misses']} in a row",
    "dead": lambda e: (f"{e['reason']}: {e['misses']} misses, "
                       f"{_fmt_seconds(e['after'])} since the last pong"),
    "closed": lambda e: f"how {e['how']}{_nth(e)}",
    "idle-close": lambda e: f"idle for {_fmt_seconds(e['idle'])}",
    "reconnect": lambda e: f"attempt {e['attempt']} in {_fmt_seconds(e['delay'])}",
    "response": _response,
    "pool-evict": lambda e: (f"idle {_fmt_seconds(e['idle'])} >= {_fmt_seconds(e['limit'])} "
                             f"(Keep-Alive timeout={e['timeout']} minus the margin): "
                             "closing it; the next request connects anew"),
    "probe": _probe,
    "done": lambda e: (f"{e['cells']} cells in {_fmt_seconds(e['took'])}: {e['ok']} ok, "
                       f"{e['failed']} failed ({e['setup_failed']} before the sleep)"),
    "worker-started": lambda e: f"pid {e['pid']}",
    "worker-killed": lambda e: (f"pid {e['pid']} with {e['signal']} after "
                                f"{_fmt_seconds(e['silent'])} without a line"),
    "worker-exit": lambda e: (f"code {e['code']}" if e["signal"] is None
                              else f"killed by {e['signal']}"),
    "exit": lambda e: f"code {e['code']}",
}


def describe(ev):
    """One human-readable line for an event, e.g.
    [12345.678] client connected 127.0.0.1:41234 -> 127.0.0.1:7000"""
    extra = {k: v for k, v in ev.items() if k not in ("t", "proc", "type", "conn", "leg")}
    where = ""
    if "conn" in ev:
        where += f" #{ev['conn']}"
    if "leg" in ev:
        where += f" ({ev['leg']})"
    try:
        text = _DESCRIBE[ev["type"]](ev)
    except KeyError:
        text = " ".join(f"{k}={v}" for k, v in extra.items())
    return f"[{ev['t']:.3f}] {ev['proc']}{where} {ev['type']} {text}".rstrip()


class Emitter:
    """Writes events. Thread-safe: connection threads share one Emitter."""

    def __init__(self, name, events_path=None, json_lines=False):
        self.name = name
        self.json_lines = json_lines
        self.lock = threading.Lock()
        self.sink = None
        self.stdout_ok = True
        if events_path:
            sink = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sink.connect(events_path)
            except OSError as e:
                print(f"{os.path.basename(sys.argv[0])}: --events {events_path}: "
                      f"cannot connect: {e.strerror}", file=sys.stderr, flush=True)
                sys.exit(2)
            self.sink = sink

    def emit(self, type_, t=None, **fields):
        """Emit one event. Pass t= when the moment of interest (a syscall
        returning) was earlier than this call."""
        ev = {"t": round(now() if t is None else t, 6), "proc": self.name, "type": type_}
        ev.update(fields)
        line = json.dumps(ev, separators=(",", ":"))
        with self.lock:
            if self.sink is not None:
                try:
                    self.sink.sendall(line.encode() + b"\n")
                except OSError as e:
                    # The lab went away: keep running, report on stdout only.
                    print(f"{self.name}: events socket failed ({e.strerror}); "
                          "events now go to stdout only", file=sys.stderr, flush=True)
                    self.sink.close()
                    self.sink = None
            if self.stdout_ok:
                try:
                    sys.stdout.write((line if self.json_lines else describe(ev)) + "\n")
                    sys.stdout.flush()  # line-flushed: the lab reads stdout through a pty
                except OSError:
                    self.stdout_ok = False
        return ev

    def finish(self, code):
        """Emit exit {code} and leave with that code."""
        self.emit("exit", code=code)
        with self.lock:
            if self.sink is not None:
                self.sink.close()
                self.sink = None
        sys.exit(code)


# --------------------------------------------------------------------------
# HTTP/1.1 replies, as the samples read them on a kept-alive connection
# --------------------------------------------------------------------------

PING = b"ping\n"
HTTP_GET = b"GET / HTTP/1.1\r\nHost: lab\r\n\r\n"
MAX_HTTP_HEADER = 65536


class BadReply(OSError):
    """An HTTP reply we cannot read (no Content-Length, header too long).
    No errno: the error event says errno 0 and name BadReply."""


def http_header_end(buf):
    """Where the header in `buf` ends (the index of its blank line), or -1
    while it is incomplete; BadReply once it is longer than we accept."""
    end = buf.find(b"\r\n\r\n")
    if end < 0 and len(buf) > MAX_HTTP_HEADER:
        raise BadReply(f"no end of the header in {MAX_HTTP_HEADER} bytes")
    return end


def http_reply_size(buf, end):
    """The size of the whole reply whose header ends at `end`: the header,
    its blank line and exactly Content-Length bytes of body (the servers
    always send it; on a kept connection, EOF cannot mark the end)."""
    head = buf[:end].lower()
    at = head.find(b"\r\ncontent-length:")
    if at < 0:
        raise BadReply("reply without Content-Length")
    value = head[at + 17:].split(b"\r\n", 1)[0].strip()
    if not value.isdigit():
        raise BadReply(f"bad Content-Length {value.decode('latin-1')!r}")
    return end + 4 + int(value)


def errno_fields(exc):
    """errno/name/message of an OSError, as the kernel reported them."""
    num = exc.errno
    if num is None and isinstance(exc, TimeoutError):
        # socket.timeout from a Python-level timeout: the syscall underneath
        # would have returned EAGAIN, which is what SO_RCVTIMEO gives.
        num = errno.EAGAIN
    if num is None:
        return {"errno": 0, "name": type(exc).__name__, "message": str(exc)}
    return {"errno": num, "name": errno.errorcode.get(num, f"E{num}"),
            "message": exc.strerror or os.strerror(num)}


def oserror(num):
    """An OSError for an errno value read with getsockopt(SO_ERROR)."""
    return OSError(num, os.strerror(num))


def addr_str(sockaddr):
    host, port = sockaddr[0], sockaddr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# --------------------------------------------------------------------------
# Signals: SIGINT and SIGTERM both become Stopped, so main can emit exit.
# --------------------------------------------------------------------------

class Stopped(BaseException):
    """Raised in the main thread by SIGINT/SIGTERM."""

    def __init__(self, signo):
        super().__init__(signo)
        self.code = 128 + signo


def install_stop_handlers():
    def handler(signo, _frame):
        raise Stopped(signo)
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    # SIGPIPE stays ignored (Python's default): a send() to a reset peer then
    # fails with EPIPE instead of killing the process, which is what we report.


class GoAhead:
    """The lab's "go on" for a `wait` step: SIGUSR1, sent once the fault it
    waits for is in place (a trigger's `resume` action). A signal that comes
    before the step is kept, so the order of the two does not matter. The
    handler only writes a byte to a pipe (safe whatever the main thread is
    doing); the step waits on the pipe."""

    def __init__(self):
        self.r, self.w = os.pipe()
        os.set_blocking(self.w, False)
        signal.signal(signal.SIGUSR1, self._said_go)

    def _said_go(self, _signo, _frame):
        try:
            os.write(self.w, b"g")
        except BlockingIOError:
            pass  # already said, and not yet used

    def wait(self, secs):
        """True when the lab said go within secs; one "go" is used up."""
        ready, _, _ = select.select([self.r], [], [], secs)
        if not ready:
            return False
        os.read(self.r, 1)
        return True


# --------------------------------------------------------------------------
# argparse value checkers: a bad value makes argparse exit 2 with
# "argument --flag: <message>".
# --------------------------------------------------------------------------

def ranged(kind, lo=None, hi=None, above=None):
    """A converter to int or float with an inclusive range [lo, hi], or an
    exclusive lower bound `above`."""
    def convert(text):
        try:
            value = kind(text)
        except ValueError:
            noun = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        if above is not None and value <= above:
            raise argparse.ArgumentTypeError(f"{text!r} must be greater than {above}")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            bounds = (f"between {lo} and {hi}" if lo is not None and hi is not None
                      else f"at least {lo}" if lo is not None else f"at most {hi}")
            raise argparse.ArgumentTypeError(f"{text!r} must be {bounds}")
        return value
    convert.__name__ = kind.__name__  # argparse names the type in some messages
    return convert


port = ranged(int, 1, 65535)
listen_port = ranged(int, 0, 65535)        # 0: let the kernel pick one
seconds = ranged(float, above=0)           # a strictly positive duration
linger_seconds = ranged(int, 0, 65535)     # struct linger.l_linger is whole seconds


def keepalive(text):
    """IDLE,INTVL,CNT for TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT.
    The bounds are the kernel's: tcp(7) says the setsockopt fails with EINVAL
    outside them (MAX_TCP_KEEPIDLE/KEEPINTVL 32767, MAX_TCP_KEEPCNT 127)."""
    parts = text.split(",")
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"{text!r} must be IDLE,INTVL,CNT (e.g. 2,1,3)")
    values = []
    for part, label, hi in zip(parts, ("IDLE", "INTVL", "CNT"), (32767, 32767, 127)):
        try:
            values.append(ranged(int, 1, hi)(part))
        except argparse.ArgumentTypeError as e:
            raise argparse.ArgumentTypeError(f"{label} {e}") from None
    return tuple(values)


def host_port(text, need_port=True):
    """HOST:PORT, [V6ADDR]:PORT, or (need_port=False) HOST alone."""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise argparse.ArgumentTypeError(f"{text!r} is not [ADDR]:PORT")
        port_text = rest[1:] if rest else None
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host, port_text = text, None
    if port_text is None:
        if need_port:
            raise argparse.ArgumentTypeError(f"{text!r} has no port (want HOST:PORT)")
        return host, 0
    return host, ranged(int, 0 if not need_port else 1, 65535)(port_text)


def proc_name(text):
    """--name: 1 to 32 of A-Z a-z 0-9 _ . - (what the lab accepts as "proc")."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,32}", text):
        raise argparse.ArgumentTypeError(
            f"{text!r} must be 1 to 32 letters, digits, '_', '.' or '-'")
    return text


def add_common_args(parser, default_name):
    group = parser.add_argument_group("event output")
    group.add_argument("--name", type=proc_name, default=default_name,
                       help=f'"proc" field of every event (default: {default_name})')
    group.add_argument("--events", metavar="PATH",
                       help="Unix stream socket of the lab: each event is written "
                            "there as one JSON line (exit 2 if it cannot be reached)")
    group.add_argument("--json", action="store_true",
                       help="print the JSON lines on stdout instead of readable lines")


def resolve(host, port_number, flag):
    """The first TCP address for host, or exit 2 naming the flag."""
    try:
        infos = socket.getaddrinfo(host, port_number, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        print(f"{os.path.basename(sys.argv[0])}: {flag} {host}: {e.strerror}",
              file=sys.stderr)
        sys.exit(2)
    family, _, _, _, sockaddr = infos[0]
    return family, sockaddr


# --------------------------------------------------------------------------
# Socket options shared by client and server
# --------------------------------------------------------------------------

def keepalive_opts(idle, intvl, cnt):
    """SO_KEEPALIVE (socket(7)) turns probes on; tcp(7): after IDLE s without
    traffic the kernel sends a probe every INTVL s, and after CNT unanswered
    probes it drops the connection: the next recv()/send() fails ETIMEDOUT."""
    return [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
            (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle),
            (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, intvl),
            (socket.IPPROTO_TCP, socket.TCP_KEEPCNT, cnt)]


def linger_opt(secs):
    """SO_LINGER {on, secs} (socket(7)): close() waits up to secs for unsent
    data; with 0 the kernel drops the connection at once with an RST."""
    return (socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, secs))


def timeval(secs):
    """struct timeval for SO_RCVTIMEO / SO_SNDTIMEO."""
    whole = int(secs)
    return struct.pack("ll", whole, int(round((secs - whole) * 1_000_000)))


def unread_bytes(sock):
    """Bytes waiting in the receive queue (FIONREAD/SIOCINQ, tcp(7))."""
    try:
        raw = fcntl.ioctl(sock.fileno(), termios.FIONREAD, struct.pack("i", 0))
        return struct.unpack("i", raw)[0]
    except (OSError, ValueError):
        return 0


def close_how(sock, linger_zero):
    """What close() will put on the wire. RST when SO_LINGER is {on, 0}, and
    also when received data was never read: the kernel then resets the
    connection instead of a FIN (RFC 2525 2.17, tcp_close() in Linux)."""
    if linger_zero or unread_bytes(sock) > 0:
        return "rst"
    return "fin"


# Kernel TCP states (include/net/tcp_states.h) in which close() still sends
# something: a FIN, or an RST (unread data, SO_LINGER 0).
_LIVE_STATES = {1, 3, 4, 5, 8}  # ESTABLISHED, SYN_RECV, FIN_WAIT1/2, CLOSE_WAIT


def is_live(sock):
    """False when the connection is already over (reset, timed out, never
    connected): closing it then sends nothing, so no closed event is due."""
    try:
        state = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]
    except (OSError, ValueError):
        return False
    return state in _LIVE_STATES


REVENT_NAMES = [(getattr(select, n), n) for n in
                ("POLLIN", "POLLPRI", "POLLOUT", "POLLERR", "POLLHUP", "POLLNVAL",
                 "POLLRDNORM", "POLLRDBAND", "POLLWRNORM", "POLLWRBAND", "POLLMSG",
                 "POLLRDHUP") if hasattr(select, n)]


def revent_names(mask):
    """poll(2) revents bits by name, e.g. ["POLLIN", "POLLRDHUP"]."""
    return [name for bit, name in REVENT_NAMES if mask & bit]


def sockopts_from_args(a):
    """(level, option, value) for every socket-option flag present in the
    argparse namespace `a`. Client and server set them before connect() or
    right after accept()."""
    opts = []
    if getattr(a, "keepalive", None):
        opts += keepalive_opts(*a.keepalive)
    if getattr(a, "user_timeout", None) is not None:
        # tcp(7): sent data may stay unacknowledged at most this many ms, then
        # the connection is dropped with ETIMEDOUT, however many retransmissions
        # that leaves; it also bounds how long keepalive probing may last.
        opts.append((socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, a.user_timeout))
    if getattr(a, "syncnt", None) is not None:
        # tcp(7): SYN retransmissions before connect() gives up with ETIMEDOUT
        # (default net.ipv4.tcp_syn_retries = 6, about 127 s).
        opts.append((socket.IPPROTO_TCP, socket.TCP_SYNCNT, a.syncnt))
    if getattr(a, "nodelay", False):
        # tcp(7): Nagle off; a small write leaves at once even while earlier
        # data is unacknowledged (Nagle + the peer's delayed ACK = ~40 ms stalls).
        opts.append((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1))
    if getattr(a, "cork", False):
        # tcp(7): hold partial segments until uncorked, at most 200 ms.
        opts.append((socket.IPPROTO_TCP, socket.TCP_CORK, 1))
    if getattr(a, "quickack", False):
        # tcp(7): ACK at once instead of delaying; not permanent, the kernel
        # may go back to delayed ACKs on its own.
        opts.append((socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1))
    if getattr(a, "linger", None) is not None:
        opts.append(linger_opt(a.linger))
    if getattr(a, "read_timeout", None) is not None:
        # socket(7): a blocking recv() then fails with EAGAIN after this long.
        opts.append((socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval(a.read_timeout)))
    if getattr(a, "sndtimeo", None) is not None:
        # socket(7): bounds a blocking send() and, on Linux, a blocking
        # connect(), which then fails with EINPROGRESS.
        opts.append((socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval(a.sndtimeo)))
    return opts


def open_listener(ev, host, port_number, backlog, flag):
    """Bind and listen, emit listening; on failure emit error (op setsockopt,
    bind or listen) and return None."""
    family, addr = resolve(host, port_number, flag)
    lsock = socket.socket(family, socket.SOCK_STREAM)
    # SO_REUSEADDR (socket(7)): rebind while old connections on this port are
    # still in TIME_WAIT, so the lab can restart a server at once.
    calls = [("setsockopt", lambda: lsock.setsockopt(
                 socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)),
             ("bind", lambda: lsock.bind(addr)),
             ("listen", lambda: lsock.listen(backlog))]
    for op, call in calls:
        try:
            call()
        except OSError as e:
            ev.emit("error", op=op, **errno_fields(e))
            lsock.close()
            return None
    bound = lsock.getsockname()
    ev.emit("listening", host=bound[0], port=bound[1])
    return lsock
