#!/usr/bin/env python3
"""TCP Failure Lab sample proxy: a byte-forwarding relay in the spirit of
rinetd. Each accepted "client" leg gets its own "upstream" leg to --target;
bytes are copied both ways, and when either leg ends (EOF or error) both are
closed. That last rule is the interesting part: a proxy turns one side's RST
into a plain FIN on the other side, and a dead upstream into a connection the
client sees accepted and then closed.
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


class Relay:
    """One client connection and its upstream connection."""

    def __init__(self, proxy, cid, client):
        self.ev, self.args, self.cid = proxy.ev, proxy.args, cid
        self.target = proxy.target
        self.socks = {"client": client}

    def emit(self, type_, leg, **fields):
        self.ev.emit(type_, conn=self.cid, leg=leg, **fields)

    def error(self, leg, op, exc, t=None):
        self.emit("error", leg, t=t, op=op, **lab.errno_fields(exc))

    def connect_upstream(self):
        family, addr = self.target
        try:
            up = socket.socket(family, socket.SOCK_STREAM)
        except OSError as e:
            self.error("upstream", "socket", e)
            return False
        start = now()
        if self.args.connect_timeout:
            up.settimeout(self.args.connect_timeout)
        try:
            up.connect(addr)
        except OSError as e:
            up.close()
            if isinstance(e, TimeoutError) and e.errno is None:  # our own timeout
                self.emit("timeout", "upstream", op="connect", after=round(now() - start, 6))
                return False
            self.error("upstream", "connect", e)
            return False
        up.settimeout(None)
        self.socks["upstream"] = up
        self.emit("connected", "upstream", attempt=1,
                  local=lab.addr_str(up.getsockname()), peer=lab.addr_str(addr))
        return True

    def pump(self):
        """Copy bytes until one leg reports EOF or an error."""
        other = {"client": "upstream", "upstream": "client"}
        by_fd = {s.fileno(): leg for leg, s in self.socks.items()}
        poller = select.poll()
        for fd in by_fd:
            poller.register(fd, select.POLLIN)
        while True:
            for fd, _revents in poller.poll():
                # POLLIN, POLLHUP or POLLERR: recv() tells which it was.
                leg = by_fd[fd]
                try:
                    data = self.socks[leg].recv(65536)
                except OSError as e:
                    self.error(leg, "recv", e)
                    return
                if not data:
                    self.emit("eof", leg, op="recv")
                    return
                try:
                    # Blocking sendall: if the far side stops reading, this
                    # relay stalls too, as simple proxies do.
                    self.socks[other[leg]].sendall(data)
                except OSError as e:
                    self.error(other[leg], "send", e)
                    return

    def run(self):
        try:
            if self.connect_upstream():
                self.pump()
        finally:
            for leg, sock in self.socks.items():
                live = lab.is_live(sock)
                how = lab.close_how(sock, False)
                sock.close()
                if live:  # after a reset or a timeout, close() sends nothing
                    self.emit("closed", leg, how=how)


class Proxy:
    def __init__(self, args, ev, target):
        self.args, self.ev, self.target = args, ev, target

    def serve(self):
        a = self.args
        lsock = lab.open_listener(self.ev, a.listen_host, a.listen_port, a.backlog,
                                  "--listen-host")
        if lsock is None:
            return 1
        for cid in itertools.count(1):
            try:
                sock, peer = lsock.accept()
            except OSError as e:
                self.ev.emit("error", op="accept", **lab.errno_fields(e))
                time.sleep(0.1)  # e.g. EMFILE: do not spin
                continue
            t = now()
            self.ev.emit("accepted", t=t, conn=cid, leg="client",
                         local=lab.addr_str(sock.getsockname()), peer=lab.addr_str(peer))
            threading.Thread(target=Relay(self, cid, sock).run, daemon=True).start()


def parse_args(argv):
    p = argparse.ArgumentParser(
        allow_abbrev=False,
        description="TCP Failure Lab proxy: forward each accepted connection to "
                    "--target over a new upstream connection, copying bytes both "
                    "ways; when either side ends, close both.",
        epilog="example: %(prog)s --listen-port 7001 --target 127.0.0.1:7000")
    p.add_argument("--listen-host", default="0.0.0.0", metavar="HOST",
                   help="address to listen on (default 0.0.0.0)")
    p.add_argument("--listen-port", type=lab.listen_port, required=True, metavar="PORT",
                   help="port to listen on (0: any free port)")
    p.add_argument("--target", type=lab.host_port, required=True, metavar="HOST:PORT",
                   help="where to forward connections")
    p.add_argument("--connect-timeout", type=lab.seconds, metavar="S",
                   help="give up an upstream connect after S seconds (emit timeout)")
    p.add_argument("--backlog", type=lab.ranged(int, 0, 65535), default=128, metavar="N",
                   help="listen() backlog (default 128)")
    lab.add_common_args(p, "proxy")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    target = lab.resolve(args.target[0], args.target[1], "--target")
    ev = lab.Emitter(args.name, args.events, args.json)
    ev.emit("start", pid=os.getpid(), argv=sys.argv)
    lab.install_stop_handlers()
    proxy = Proxy(args, ev, target)
    try:
        code = proxy.serve()
    except lab.Stopped as stop:
        code = stop.code
    ev.finish(code)


if __name__ == "__main__":
    main()
