#!/usr/bin/env python3
"""TCP Failure Lab sample: a real nginx, as a reverse proxy or as its upstream.

Writes a config into a private directory (pid file, temp paths and logs all
there), runs nginx in the foreground as a child, emits `listening` once the
listen socket exists, and turns nginx's own log lines into events: the proxy
timeouts (`upstream-timeout` with op connect, send or read), premature closes,
client timeouts, the upstream connection pool and keepalive closes, and one
`access` event per request. SIGTERM/SIGINT are passed on to nginx; this
program exits when nginx does.

Roles:
  proxy     proxy_pass to --upstream, with proxy_connect/send/read_timeout and
            (--upstream-keepalive N) a pool of idle upstream connections.
  upstream  the HTTP server behind it: GET and HEAD get 200 with a short body
            at once; a request with a body gets 200 once the whole body was
            read (nginx reads it in full before handing it to an internal
            sink), so an upload really flows and the connection stays usable.
"""

import argparse
import ctypes
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading

import labevents as lab
import nginxlog
from nginxconf import config, listen_addr
from labevents import now

PR_SET_PDEATHSIG = 1  # include/uapi/linux/prctl.h
_libc = ctypes.CDLL(None, use_errno=True)

# How the new event types read on stdout (the rest: labevents' generic form).
lab._DESCRIBE.update({
    "upstream-timeout": lambda e: f"{e['op']}: nginx's timer fired while {e['phase']}",
    "upstream-error": lambda e: f"{e['op']}: {e['call']}() {e['name']} ({e['errno']}) while {e['phase']}",
    "upstream-eof": lambda e: f"the upstream closed the connection while {e['phase']}",
    "client-timeout": lambda e: f"{e['op']}: nginx's timer fired while {e['phase']}",
    "client-eof": lambda e: f"the client closed the connection{' while ' + e['phase'] if e['phase'] else ''}",
    "upstream-connect": lambda e: f"new upstream connection to {e['peer']}",
    "upstream-reuse": lambda e: "an idle pooled upstream connection reused",
    "upstream-pooled": lambda e: "the upstream connection went back to the pool",
    "pool-closed": lambda e: "a pooled upstream connection was closed by its peer",
    "idle-close": lambda e: f"keepalive_timeout: closed after {e.get('idle', 0):.3f} s idle",
    "access": lambda e: (f"{e['request']} -> {e['status']} in {e['request_time']} s"
                         + (f" (upstream {e['upstream_response_time']} s)"
                            if e["upstream_response_time"] else "")),
    "nginx-log": lambda e: f"[{e['level']}] {e['message']}",
})


# --------------------------------------------------------------------------
# Finding nginx
# --------------------------------------------------------------------------

def find_nginx(given):
    """The nginx binary: --nginx, then PATH, then the sbin folders a
    user's PATH often lacks (Debian installs it as /usr/sbin/nginx)."""
    if given:
        return given if os.access(given, os.X_OK) else None
    found = shutil.which("nginx")
    if found:
        return found
    for d in ("/usr/sbin", "/usr/local/sbin", "/sbin", "/usr/local/nginx/sbin"):
        p = os.path.join(d, "nginx")
        if os.access(p, os.X_OK):
            return p
    return None


def nginx_build(binary):
    """(version tuple, has a debug log) from `nginx -V`, which prints on stderr."""
    out = subprocess.run([binary, "-V"], capture_output=True, text=True, timeout=10).stderr
    m = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", out)
    version = tuple(int(x) for x in m.groups()) if m else (0, 0, 0)
    return version, "--with-debug" in out


# --------------------------------------------------------------------------
# Running it
# --------------------------------------------------------------------------

def private_dir(events_path):
    """A fresh directory for nginx's files. Beside the lab's events socket when
    there is one: the lab removes that folder after the run (and sweeps it
    after a crash), so nothing is left even when this process is SIGKILLed.
    nginx's config takes the path unquoted: plain characters only."""
    base = os.path.dirname(events_path) if events_path else None
    if not base or not re.fullmatch(r"[A-Za-z0-9/_.-]+", base) or not os.access(base, os.W_OK):
        base = tempfile.gettempdir()
        if not re.fullmatch(r"[A-Za-z0-9/_.-]+", base):
            base = "/tmp"
    return tempfile.mkdtemp(prefix="nginx-", dir=base)


def proc_net_key(host, port):
    """The local address as /proc/net/tcp{,6} prints it: each 32-bit word of
    the address in host byte order (little endian here), then the port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    raw = socket.inet_pton(family, host)
    words = struct.unpack(f"<{len(raw) // 4}I", raw)
    return "tcp6" if family == socket.AF_INET6 else "tcp", "".join(f"{w:08X}" for w in words) + f":{port:04X}"


def is_listening(host, port):
    """Whether a socket in LISTEN (state 0A) is bound to host:port in this
    network namespace. Asked of the kernel, not by connecting: a probe
    connection would show on the lab's timeline and in nginx's logs."""
    table, key = proc_net_key(host, port)
    try:
        with open(f"/proc/net/{table}") as f:
            next(f)
            return any(fields[1] == key and fields[3] == "0A"
                       for fields in (line.split() for line in f))
    except OSError:
        return False


def die_with_parent(parent_pid):
    """preexec_fn: the kernel SIGKILLs nginx when this program dies, however
    it dies (PR_SET_PDEATHSIG, prctl(2)); a daemon left behind would keep
    the lab's namespace alive."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:
        os._exit(1)


class Nginx:
    def __init__(self, args, ev):
        self.args, self.ev = args, ev
        self.proc = None
        self.dir = None
        self.reader = nginxlog.LogReader(args.role)
        self.log_fd = self.keep_fd = None
        self.stop_reading = threading.Event()
        self.threads = []

    def run(self):
        a = self.args
        binary = find_nginx(a.nginx)
        if binary is None:
            why = (f"--nginx {a.nginx}: not an executable file" if a.nginx else
                   "nginx is not installed (looked in PATH and /usr/sbin): apt-get install nginx")
            print(f"{os.path.basename(sys.argv[0])}: {why}", file=sys.stderr, flush=True)
            self.ev.emit("error", op="spawn", errno=2, name="ENOENT", message="nginx not found")
            return 1
        version, debug = nginx_build(binary)
        self.dir = private_dir(a.events)
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(config(a, self.dir, debug))
        # The logs go through a FIFO: each line arrives the moment nginx
        # writes it. The read end is opened first (nginx's open for writing
        # would block without a reader) and a write end is kept too, so the
        # reader never sees EOF between nginx's opens.
        fifo = os.path.join(self.dir, "log.fifo")
        os.mkfifo(fifo, 0o600)
        self.log_fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        self.keep_fd = os.open(fifo, os.O_WRONLY)
        argv = [binary, "-p", self.dir + "/", "-c", conf]
        if version >= (1, 19, 5):
            argv += ["-e", "stderr"]  # not the build's default path, which may not be writable
        self.start_thread(self.read_logs)
        me = os.getpid()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, preexec_fn=lambda: die_with_parent(me))
        self.start_thread(self.relay_output)
        host, port = a.listen
        deadline = now() + 5
        while not is_listening(host, port):
            if self.proc.poll() is not None or now() > deadline:
                self.stop()
                print(f"{os.path.basename(sys.argv[0])}: nginx did not start listening on "
                      f"{listen_addr(host, port)}", file=sys.stderr, flush=True)
                return 1
            select.select([], [], [], 0.005)
        self.ev.emit("listening", host=host, port=port, role=a.role,
                     nginx=".".join(map(str, version)), debug=debug)
        if not debug:
            self.ev.emit("nginx-log", level="warn", message=(
                "this nginx was built without --with-debug: no upstream-connect, "
                "upstream-reuse, pool-closed or idle-close events"))
        code = self.proc.wait()
        self.finish_logs()
        return code if code >= 0 else 128 - code

    def start_thread(self, target):
        t = threading.Thread(target=target, daemon=True)
        t.start()
        self.threads.append(t)

    def relay_output(self):
        """nginx's own stderr (start-up errors: a bad config, a port in use)."""
        for raw in self.proc.stdout:
            sys.stderr.write(raw.decode(errors="replace"))
            sys.stderr.flush()

    def read_logs(self):
        poller = select.poll()
        poller.register(self.log_fd, select.POLLIN)
        pending = b""
        while True:
            ready = poller.poll(100)
            if not ready and self.stop_reading.is_set():
                break
            try:
                chunk = os.read(self.log_fd, 65536)
            except BlockingIOError:
                continue
            if not chunk:
                break
            t = now()
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                for type_, fields in self.reader.feed(line.decode(errors="replace"), t):
                    self.ev.emit(type_, t=t, **fields)

    def finish_logs(self):
        """After nginx is gone: what it wrote last, then the FIFO closed."""
        self.stop_reading.set()
        for t in self.threads:
            t.join(timeout=2)
        for fd in (self.log_fd, self.keep_fd):
            if fd is not None:
                os.close(fd)
        self.log_fd = self.keep_fd = None

    def stop(self, signo=signal.SIGTERM):
        """SIGTERM is nginx's fast shutdown; SIGKILL if it takes over 3 s."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signo)
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.finish_logs()
        return self.proc.returncode

    def cleanup(self):
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)


def size(text):
    """BYTES, or with a k/m/g suffix (as nginx reads client_max_body_size)."""
    m = re.fullmatch(r"(\d{1,12})([kKmMgG]?)", text)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size like 64m or 1048576")
    return text.lower()


def parse_args(argv):
    p = argparse.ArgumentParser(
        allow_abbrev=False,
        description="TCP Failure Lab: run a real nginx as a reverse proxy (or as its "
                    "upstream) and report what its timers do as events.",
        epilog="example: %(prog)s --listen 198.18.0.1:7001 --upstream 198.18.0.2:7000 "
               "--read-timeout 2 --upstream-keepalive 4")
    p.add_argument("--role", choices=["proxy", "upstream"], default="proxy",
                   help="proxy (default): proxy_pass to --upstream; upstream: the HTTP "
                        "server behind the proxy")
    p.add_argument("--listen", type=lab.host_port, required=True, metavar="HOST:PORT",
                   help="address nginx listens on")
    p.add_argument("--upstream", type=lab.host_port, metavar="HOST:PORT",
                   help="the proxy's upstream server (role proxy)")
    p.add_argument("--connect-timeout", type=lab.seconds, metavar="S",
                   help="proxy_connect_timeout (nginx default 60 s)")
    p.add_argument("--send-timeout", type=lab.seconds, metavar="S",
                   help="proxy_send_timeout: longest wait between two writes to the "
                        "upstream (default 60 s)")
    p.add_argument("--read-timeout", type=lab.seconds, metavar="S",
                   help="proxy_read_timeout: longest wait between two reads from the "
                        "upstream (default 60 s)")
    p.add_argument("--upstream-keepalive", type=lab.ranged(int, 0, 10000), default=0, metavar="N",
                   help="keep up to N idle upstream connections for reuse (keepalive N; "
                        "default 0: a new connection per request)")
    p.add_argument("--keepalive-timeout", type=lab.seconds, metavar="S",
                   help="keepalive_timeout: close a client connection idle for S s "
                        "(default 75 s); in role upstream, the proxy is that client")
    p.add_argument("--client-body-timeout", type=lab.seconds, metavar="S",
                   help="client_body_timeout: longest wait between two reads of a "
                        "request body (default 60 s)")
    p.add_argument("--max-body-size", type=size, default="64m", metavar="SIZE",
                   help="client_max_body_size (default 64m; nginx's own is 1m: 413 above)")
    p.add_argument("--nginx", metavar="PATH", help="the nginx binary (default: from PATH)")
    lab.add_common_args(p, "nginx")
    a = p.parse_args(argv)
    if a.listen[1] == 0:
        p.error("argument --listen: nginx needs a port (1-65535)")
    if a.role == "proxy" and a.upstream is None:
        p.error("the proxy role needs --upstream HOST:PORT")
    if a.role == "upstream":
        for flag in ("upstream", "connect_timeout", "send_timeout", "read_timeout"):
            if getattr(a, flag) is not None:
                p.error(f"argument --{flag.replace('_', '-')}: only with --role proxy")
        if a.upstream_keepalive:
            p.error("argument --upstream-keepalive: only with --role proxy")
    return a


def main(argv=None):
    args = parse_args(argv)
    ev = lab.Emitter(args.name, args.events, args.json)
    ev.emit("start", pid=os.getpid(), argv=sys.argv)
    lab.install_stop_handlers()
    nginx = Nginx(args, ev)
    try:
        code = nginx.run()
    except lab.Stopped as stop:
        nginx.stop(signal.SIGTERM)
        code = stop.code
    finally:
        nginx.cleanup()
    ev.finish(code)


if __name__ == "__main__":
    main()
