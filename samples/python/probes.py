#!/usr/bin/env python3
"""TCP Failure Lab sleep matrix: which idle connections survive a middlebox?

For every target x keepalive (off, and on with --keepalive) x sleep, one
connection in its own thread: connect, one request, sleep, one more request
on the same connection. Each cell reports a `probe` event saying whether the
second request got its reply, and if not, what the kernel said (ECONNRESET
when a middlebox that forgot the flow answers with RST, ETIMEDOUT when it
drops the packets and TCP_USER_TIMEOUT runs out, EOF when the server closed).

All cells start together, so the matrix takes about the longest sleep plus
the slowest failure. Events: see samples/README.md (labevents.py writes them).
"""

import argparse
import os
import socket
import sys
import threading
import time

import labevents as lab
from labevents import now

from labevents import HTTP_GET, PING
MAX_CELLS = 1000  # one thread each


class PeerClosed(Exception):
    """recv() returned 0 before the reply was complete."""


class CellFailed(Exception):
    """A cell's step failed; its error/eof event has been emitted."""

    def __init__(self, stage, op, fields):
        super().__init__(stage)
        self.stage, self.op, self.fields = stage, op, fields


def read_reply(sock, proto, buf):
    """Read one reply of `proto` (the same two the client speaks). Returns
    (size, leftover bytes); PeerClosed at EOF; an OSError propagates."""
    def fill(b):
        data = sock.recv(65536)
        if not data:
            raise PeerClosed()
        return b + data

    if proto == "echo":
        while (end := buf.find(b"\n")) < 0:
            buf = fill(buf)
        return end + 1, buf[end + 1:]
    # HTTP/1.1 with Content-Length (server.py --mode http always sends it).
    while (end := lab.http_header_end(buf)) < 0:
        buf = fill(buf)
    size = lab.http_reply_size(buf, end)
    while len(buf) < size:
        buf = fill(buf)
    return size, buf[size:]


class Cell:
    """One connection of the matrix."""

    def __init__(self, matrix, target, addr, family, keepalive, sleep):
        self.m, self.ev, self.args = matrix, matrix.ev, matrix.args
        self.target, self.addr, self.family = target, addr, family
        self.keepalive, self.sleep = keepalive, sleep
        self.peer = lab.addr_str(addr)
        # On every event of this cell, so the lab can tell the cells apart.
        self.tag = {"target": target, "keepalive": keepalive is not None, "sleep": sleep}
        self.sock = None
        self.buf = b""

    def fail(self, stage, op, exc, t):
        if isinstance(exc, PeerClosed):
            # Not an errno: recv() returned 0, the peer sent FIN.
            self.ev.emit("eof", t=t, op=op, **self.tag)
            fields = {"errno": 0, "name": "EOF", "message": "the peer closed the connection"}
        else:
            fields = lab.errno_fields(exc)
            self.ev.emit("error", t=t, op=op, **fields, **self.tag)
        raise CellFailed(stage, op, fields)

    def open(self):
        try:
            self.sock = socket.socket(self.family, socket.SOCK_STREAM)
        except OSError as e:
            self.fail("connect", "socket", e, now())
        opts = list(self.m.sockopts)
        if self.keepalive is not None:
            opts += lab.keepalive_opts(*self.keepalive)
        for level, opt, value in opts:
            try:
                self.sock.setsockopt(level, opt, value)
            except OSError as e:
                self.fail("connect", "setsockopt", e, now())
        try:
            self.sock.connect(self.addr)
        except OSError as e:
            self.fail("connect", "connect", e, now())
        self.ev.emit("connected", local=lab.addr_str(self.sock.getsockname()),
                     peer=self.peer, **self.tag)

    def request(self, stage):
        """One request, its reply read. (start, end) around the syscalls;
        no event is emitted in between."""
        data = PING if self.args.proto == "echo" else HTTP_GET
        start = now()
        try:
            self.sock.sendall(data)
        except OSError as e:
            # EPIPE or ECONNRESET here: an RST came in before this send.
            self.fail(stage, "send", e, now())
        try:
            _, self.buf = read_reply(self.sock, self.args.proto, self.buf)
        except (OSError, PeerClosed) as e:
            self.fail(stage, "recv", e, now())
        return start, now()

    def run(self, go):
        go.wait()
        result = {"ok": False, "took": None, "idle": None}
        try:
            self.open()
            _, first_end = self.request("first")
            # Sleep from the end of the first reply: that is when the flow
            # went quiet (give or take our ACK of it) for the middlebox.
            time.sleep(max(0.0, first_end + self.sleep - now()))
            start = now()
            result["idle"] = round(start - first_end, 6)
            try:
                self.request("second")
            finally:
                result["took"] = round(now() - start, 6)
            result["ok"] = True
        except CellFailed as f:
            result.update(stage=f.stage, op=f.op, **f.fields)
        finally:
            self.close()
        self.ev.emit("probe", peer=self.peer, **self.tag, **result)
        self.m.record(self, result)

    def close(self):
        if self.sock is None or self.sock.fileno() < 0:
            return
        live = lab.is_live(self.sock)
        how = lab.close_how(self.sock, False)
        self.sock.close()
        if live:  # a reset or timed-out connection sends nothing when closed
            self.ev.emit("closed", how=how, **self.tag)


class Matrix:
    def __init__(self, args, ev, targets):
        self.args, self.ev = args, ev
        self.lock = threading.Lock()
        self.results = []
        # What every socket gets (--user-timeout, --syncnt, --read-timeout);
        # keepalive is the cell's own, so it is left out here.
        common = {k: v for k, v in vars(args).items() if k != "keepalive"}
        self.sockopts = lab.sockopts_from_args(argparse.Namespace(**common))
        variants = [None] + ([args.keepalive] if args.keepalive else [])
        self.cells = [Cell(self, name, addr, family, ka, s)
                      for name, family, addr in targets
                      for ka in variants
                      for s in args.sleeps]

    def record(self, cell, result):
        with self.lock:
            self.results.append((cell, result))

    def run(self):
        start = now()
        go = threading.Event()
        threads = [threading.Thread(target=c.run, args=(go,), daemon=True)
                   for c in self.cells]
        for t in threads:
            t.start()
        go.set()  # every cell starts at once: the matrix lasts max(sleep) + a little
        for t in threads:
            while t.is_alive():
                t.join(0.2)  # short joins: SIGINT/SIGTERM get through
        ok = sum(1 for _, r in self.results if r["ok"])
        early = sum(1 for _, r in self.results if r.get("stage") in ("connect", "first"))
        self.ev.emit("done", cells=len(self.cells), ok=ok, failed=len(self.results) - ok,
                     setup_failed=early, took=round(now() - start, 6))
        # A cell whose second request failed is a result; one that never got
        # that far (connect or first request failed) measured nothing.
        return 1 if early else 0


def sleeps(text):
    values = []
    for part in text.split(","):
        try:
            value = lab.ranged(float, 0, 86400)(part.strip())
        except argparse.ArgumentTypeError as e:
            raise argparse.ArgumentTypeError(f"sleep {e}") from None
        if value in values:
            raise argparse.ArgumentTypeError(f"sleep {part.strip()!r} is listed twice")
        values.append(value)
    return values


def target(text):
    name, sep, rest = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r} must be NAME=HOST:PORT")
    try:
        name = lab.proc_name(name)
    except argparse.ArgumentTypeError as e:
        raise argparse.ArgumentTypeError(f"NAME {e}") from None
    host, port_number = lab.host_port(rest)
    return name, host, port_number


def parse_args(argv):
    p = argparse.ArgumentParser(
        allow_abbrev=False,
        description="TCP Failure Lab sleep matrix: for every target, keepalive off/on "
                    "and sleep, connect, request, sleep, request again on the same "
                    "connection, all cells at once; one probe event per cell.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="""examples:
  %(prog)s --target vip=198.18.0.1:80 --target direct=198.18.1.2:7000 \\
      --proto http --sleeps 0,1,2,4,6 --keepalive 1,1,3 --user-timeout 3000
  %(prog)s --target local=127.0.0.1:7000 --sleeps 0,0.5
exit code: 0 every cell reached its second request (whatever it got), 1 some
cell failed to connect or on its first request, 2 bad usage, 128+N on signal N.""")
    p.add_argument("--target", type=target, action="append", required=True,
                   metavar="NAME=HOST:PORT", help="a server to probe (repeatable); NAME "
                   "goes into every event of its cells")
    p.add_argument("--sleeps", type=sleeps, required=True, metavar="S,S,...",
                   help="idle seconds between the two requests, one cell per value")
    p.add_argument("--keepalive", type=lab.keepalive, metavar="IDLE,INTVL,CNT",
                   help="also run every cell with SO_KEEPALIVE and these "
                        "TCP_KEEPIDLE/INTVL/CNT (without it: keepalive off only)")
    p.add_argument("--proto", choices=["echo", "http"], default="echo",
                   help="echo (server.py --mode echo) or http (--mode http); default echo")
    p.add_argument("--user-timeout", type=lab.ranged(int, 0, 2**31 - 1), metavar="MS",
                   help="TCP_USER_TIMEOUT on every socket: a request whose data stays "
                        "unacknowledged this long fails ETIMEDOUT (silent drops)")
    p.add_argument("--syncnt", type=lab.ranged(int, 1, 127), metavar="N",
                   help="TCP_SYNCNT: SYN retransmissions before connect fails ETIMEDOUT")
    p.add_argument("--read-timeout", type=lab.seconds, metavar="S",
                   help="SO_RCVTIMEO: a reply that does not come fails EAGAIN after S")
    lab.add_common_args(p, "probes")
    args = p.parse_args(argv)
    names = [name for name, _, _ in args.target]
    if len(set(names)) != len(names):
        p.error("argument --target: each NAME once")
    cells = len(args.target) * len(args.sleeps) * (2 if args.keepalive else 1)
    if cells > MAX_CELLS:
        p.error(f"{cells} cells (targets x keepalive x sleeps): at most {MAX_CELLS}")
    return args


def main(argv=None):
    args = parse_args(argv)
    targets = []
    for name, host, port_number in args.target:
        family, addr = lab.resolve(host, port_number, "--target")
        targets.append((name, family, addr))
    ev = lab.Emitter(args.name, args.events, args.json)
    ev.emit("start", pid=os.getpid(), argv=sys.argv)
    lab.install_stop_handlers()
    matrix = Matrix(args, ev, targets)
    try:
        code = matrix.run()
    except lab.Stopped as stop:
        code = stop.code
    ev.finish(code)


if __name__ == "__main__":
    main()
