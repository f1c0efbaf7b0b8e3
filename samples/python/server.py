#!/usr/bin/env python3
"""TCP Failure Lab sample server.

Accepts connections and treats each one according to --mode, one thread per
connection, reporting every system call outcome as an event (labevents.py).
Several modes misbehave on purpose (never reply, close with unread data,
reset) so a client can see what the kernel turns that into.
"""

import argparse
import itertools
import os
import select
import socket
import sys
import threading
import time

import labevents as lab
from labevents import now

MODES = ["echo", "silent", "close", "close-unread", "rst", "hold", "http"]
HTTP_BODY = b"hello from tcp-failure-lab\n"


class Conn:
    """One accepted connection and its byte counters."""

    def __init__(self, server, cid, sock):
        self.server, self.cid, self.sock = server, cid, sock
        self.args = server.args
        self.tx = self.rx = 0
        self.last_rx = now()
        self.open = True

    def emit(self, type_, **fields):
        self.server.ev.emit(type_, conn=self.cid, **fields)

    def error(self, op, exc, t=None):
        self.emit("error", t=t, op=op, **lab.errno_fields(exc))

    def wait(self, events):
        """poll() for events, bounded by --idle-timeout. Returns the revents,
        or 0 after emitting idle-close when the connection stayed idle."""
        poller = select.poll()
        poller.register(self.sock, events)
        limit = self.args.idle_timeout
        while True:
            left = None if limit is None else (self.last_rx + limit - now()) * 1000
            ready = poller.poll(None if left is None else max(left, 0))
            if ready:
                return ready[0][1]
            self.emit("idle-close", idle=round(now() - self.last_rx, 6))
            return 0

    def recv(self):
        """Wait for data (with the idle timeout), then one recv(65536).
        Returns bytes, or None when the connection is over."""
        if not self.wait(select.POLLIN):
            return None
        try:
            data = self.sock.recv(65536)
        except OSError as e:
            # Keepalive probes that went unanswered end up here: the kernel
            # drops the connection and recv() fails with ETIMEDOUT (tcp(7)).
            self.error("recv", e)
            return None
        t = now()
        if not data:
            self.emit("eof", t=t, op="recv")
            return None
        self.rx += len(data)
        self.last_rx = t
        self.emit("received", t=t, bytes=len(data), total=self.rx)
        return data

    def send(self, data):
        try:
            self.sock.sendall(data)
        except OSError as e:
            self.error("send", e)
            return False
        self.tx += len(data)
        self.emit("sent", bytes=len(data), total=self.tx)
        return True

    def close(self, linger_zero=False):
        if not self.open:
            return
        self.open = False
        live = lab.is_live(self.sock)
        how = lab.close_how(self.sock, linger_zero or self.args.linger == 0)
        self.sock.close()
        if live:  # after a reset or a timeout, close() sends nothing
            self.emit("closed", how=how)


# --------------------------------------------------------------------------
# Modes: each gets a Conn and returns when the connection should be closed
# --------------------------------------------------------------------------

def mode_echo(c):
    while (data := c.recv()) is not None:
        if not c.send(data):
            return


def mode_silent(c):
    # Read and discard: the client's sends succeed, nothing ever comes back.
    while c.recv() is not None:
        pass


def mode_close(c):
    pass  # close at once: the client sees EOF (our FIN) on its next recv


def mode_close_unread(c):
    # Wait until the client's data has arrived, do not read it, close. Closing
    # with unread data makes the kernel send RST instead of FIN (RFC 2525
    # 2.17); the client's recv() then fails with ECONNRESET.
    c.wait(select.POLLIN)


def mode_rst(c):
    # SO_LINGER {on, 0} then close(): the connection is aborted with an RST
    # (socket(7)), no FIN handshake, no TIME_WAIT on our side.
    try:
        c.sock.setsockopt(*lab.linger_opt(0))
    except OSError as e:
        c.error("setsockopt", e)
    c.close(linger_zero=True)


def mode_hold(c):
    # Never read or write. poll() with no events still reports POLLERR and
    # POLLHUP (poll(2)), so a keepalive failure is noticed without reading;
    # the client's data piles up in our receive buffer and its window closes.
    revents = c.wait(0)
    if revents & select.POLLERR:
        so = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if so:
            c.error("poll", lab.oserror(so))


def mode_http(c):
    buf = b""
    while True:
        while b"\r\n\r\n" not in buf:
            data = c.recv()
            if data is None:
                return
            buf += data
            if len(buf) > 65536:
                c.send(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                       b"Content-Length: 0\r\nConnection: close\r\n\r\n")
                return
        head, buf = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        request = lines[0].split()
        headers = {}
        for line in lines[1:]:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            length = -1
        if len(request) != 3 or not request[2].startswith("HTTP/1.") or length < 0:
            c.send(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                   b"Connection: close\r\n\r\n")
            return
        while len(buf) < length:  # skip a request body, if any
            data = c.recv()
            if data is None:
                return
            buf += data
        buf = buf[length:]
        keep = (request[2] == "HTTP/1.1"
                and headers.get("connection", "").lower() != "close")
        if not http_reply(c, keep):
            return
        if not keep:
            return


def http_reply(c, keep):
    header = (f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
              f"Content-Length: {len(HTTP_BODY)}\r\n").encode()
    if not keep:
        header += b"Connection: close\r\n"
    elif c.args.keep_alive_header is not None:
        # A promise, not a timer: Keep-Alive is advisory (no current HTTP/1.1
        # RFC defines it), and pools that read it (undici, Node's Agent) stop
        # reusing a connection idle about N seconds. This server keeps it
        # open regardless; in the lab, what forgets the flow is the
        # middlebox in front, after T > N idle seconds.
        header += (f"Connection: keep-alive\r\n"
                   f"Keep-Alive: timeout={c.args.keep_alive_header}\r\n").encode()
    header += b"\r\n"
    cork = c.args.cork
    try:
        if cork:  # cork, write, uncork: the kernel flushes on uncork (tcp(7))
            c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
        if c.args.reply_writes == "two":
            # Two small writes: without TCP_NODELAY, Nagle holds the body
            # until the header is ACKed, and the client delays that ACK
            # (up to ~40 ms on Linux) hoping to piggyback it: a stall.
            ok = c.send(header) and c.send(HTTP_BODY)
        else:
            ok = c.send(header + HTTP_BODY)
        if cork:
            c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)
    except OSError as e:
        c.error("setsockopt", e)
        return False
    return ok


# --------------------------------------------------------------------------
# The listener
# --------------------------------------------------------------------------

class Server:
    def __init__(self, args, ev):
        self.args, self.ev = args, ev

    def serve(self):
        a = self.args
        lsock = lab.open_listener(self.ev, a.host, a.port, a.backlog, "--host")
        if lsock is None:
            return 1
        for cid in itertools.count(1):
            if self.args.accept_delay:
                # Not accepting fills the accept queue (listen(2) backlog);
                # further SYNs are then dropped and clients retransmit.
                time.sleep(self.args.accept_delay)
            try:
                sock, peer = lsock.accept()
            except OSError as e:
                self.ev.emit("error", op="accept", **lab.errno_fields(e))
                time.sleep(0.1)  # e.g. EMFILE: do not spin
                continue
            t = now()
            self.ev.emit("accepted", t=t, conn=cid, local=lab.addr_str(sock.getsockname()),
                         peer=lab.addr_str(peer))
            threading.Thread(target=self.handle, args=(Conn(self, cid, sock),),
                             daemon=True).start()

    def handle(self, c):
        try:
            for level, opt, value in lab.sockopts_from_args(self.args):
                c.sock.setsockopt(level, opt, value)
        except OSError as e:
            c.error("setsockopt", e)
        else:
            globals()["mode_" + self.args.mode.replace("-", "_")](c)
        c.close()


def parse_args(argv):
    p = argparse.ArgumentParser(
        allow_abbrev=False,
        description="TCP Failure Lab server: accept TCP connections and treat them "
                    "according to --mode, reporting every outcome as an event.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="""modes:
  echo          send every byte received back (request/heartbeat need this)
  silent        read and discard everything, never reply
  close         close each accepted connection at once (FIN)
  close-unread  wait until data arrives, close without reading it (RST)
  rst           SO_LINGER {on, 0} and close at once (RST)
  hold          never read or write; the connection just sits
  http          minimal HTTP/1.1 keep-alive responder (see --reply-writes)

examples:
  %(prog)s --port 7000 --mode echo
  %(prog)s --port 7000 --mode http --reply-writes two
  %(prog)s --port 7000 --mode http --keep-alive-header 2
  %(prog)s --port 7000 --mode silent --keepalive 2,1,3
exit code: 1 if the port cannot be bound, 128+N on signal N.""")
    p.add_argument("--host", default="0.0.0.0", help="address to bind (default 0.0.0.0)")
    p.add_argument("--port", type=lab.listen_port, required=True,
                   help="port to listen on (0: any free port)")
    p.add_argument("--mode", choices=MODES, required=True, help="what to do with connections")
    p.add_argument("--reply-writes", choices=["two", "one"], default="two",
                   help="http: header and body in two send() calls or one (default two)")
    p.add_argument("--keep-alive-header", type=lab.ranged(int, 0, 2**31 - 1), metavar="N",
                   help="http: add Connection: keep-alive and Keep-Alive: timeout=N to "
                        "every keep-alive reply (the server itself does not close idle "
                        "connections after N; see --idle-timeout)")
    p.add_argument("--idle-timeout", type=lab.seconds, metavar="T",
                   help="close a connection that received nothing for T seconds")
    p.add_argument("--keepalive", type=lab.keepalive, metavar="IDLE,INTVL,CNT",
                   help="SO_KEEPALIVE with TCP_KEEPIDLE/INTVL/CNT on accepted sockets")
    p.add_argument("--linger", type=lab.linger_seconds, metavar="S",
                   help="SO_LINGER on with S seconds on accepted sockets (0: close sends RST)")
    p.add_argument("--nodelay", action="store_true", help="TCP_NODELAY on accepted sockets")
    p.add_argument("--cork", action="store_true",
                   help="TCP_CORK on accepted sockets (http: cork/uncork around each reply)")
    p.add_argument("--backlog", type=lab.ranged(int, 0, 65535), default=128, metavar="N",
                   help="listen() backlog (default 128)")
    p.add_argument("--accept-delay", type=lab.seconds, metavar="S",
                   help="sleep S seconds before each accept()")
    lab.add_common_args(p, "server")
    args = p.parse_args(argv)
    if args.keep_alive_header is not None and args.mode != "http":
        p.error("argument --keep-alive-header: only with --mode http")
    return args


def main(argv=None):
    args = parse_args(argv)
    ev = lab.Emitter(args.name, args.events, args.json)
    ev.emit("start", pid=os.getpid(), argv=sys.argv)
    lab.install_stop_handlers()
    try:
        code = Server(args, ev).serve()
    except lab.Stopped as stop:
        code = stop.code
    ev.finish(code)


if __name__ == "__main__":
    main()
