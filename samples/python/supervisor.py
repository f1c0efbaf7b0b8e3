#!/usr/bin/env python3
"""TCP Failure Lab sample supervisor.

Runs client.py as a worker and kills it once it has printed nothing for
--silence seconds, like the process monitors that kill a worker silent for
60 s. Each line on the worker's stdout is a sign of life, relayed to our own
stdout; nothing else is watched. The point: a worker blocked in a connect()
without a timeout is killed by SIGKILL while the kernel is still
retransmitting SYNs, so the kernel's own answer (ETIMEDOUT after
tcp_syn_retries) never shows; what the logs show is the supervisor's kill.
"""

import argparse
import ctypes
import os
import select
import signal
import subprocess
import sys

import labevents as lab
from labevents import now

CLIENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "client.py")
STOP_GRACE = 1.0  # seconds a worker gets to exit after our SIGTERM, then SIGKILL
DRAIN_LIMIT = 1.0  # seconds to wait for the pipe's end after killing the worker
PR_SET_PDEATHSIG = 1  # include/uapi/linux/prctl.h

# Loaded before any fork: the child only calls into it.
_libc = ctypes.CDLL(None, use_errno=True)


def die_with_parent(parent_pid):
    """preexec_fn, run in the child between fork() and exec(): PR_SET_PDEATHSIG
    (prctl(2)) has the kernel SIGKILL the worker when we die, even by a
    SIGKILL that leaves us no time to clean up. It survives exec(). If we died
    before the prctl took effect, the child has been reparented: give up."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:
        os._exit(1)


class Supervisor:
    def __init__(self, args, ev):
        self.args, self.ev = args, ev
        self.proc = None
        self.last = None  # when the last line came (at first: the spawn)
        self.killed = False
        self.pending = b""  # a partial line: not a sign of life yet
        self.relay_ok = True

    def start(self):
        a = self.args
        cmd = [sys.executable, CLIENT, "--name", a.worker_name]
        if a.events:
            cmd += ["--events", a.events]
        cmd += a.client_args
        parent = os.getpid()
        # stderr is inherited: the worker's usage errors reach the terminal as is.
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     preexec_fn=lambda: die_with_parent(parent))
        self.last = now()
        self.ev.emit("worker-started", t=self.last, pid=self.proc.pid)

    # ---- stdout of the worker ----------------------------------------------

    def relay(self, data, t, final=False):
        """Pass complete lines on unchanged; each restarts the silence clock."""
        self.pending += data
        end = len(self.pending) if final else self.pending.rfind(b"\n") + 1
        if end <= 0:
            return
        lines, self.pending = self.pending[:end], self.pending[end:]
        if not final:
            self.last = t
        if self.relay_ok:
            try:
                sys.stdout.buffer.write(lines)
                sys.stdout.flush()
            except OSError:
                self.relay_ok = False  # our reader is gone; keep supervising

    def watch(self):
        """Relay the worker's stdout until it closes (the worker exited, or
        closed it); kill the worker when no line came for --silence s."""
        fd = self.proc.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        drain_until = None
        while True:
            if self.killed:
                # SIGKILL closes the pipe at once; do not wait for ever if a
                # process we do not know about holds the write end.
                left = drain_until - now()
                if left <= 0:
                    return
            else:
                left = self.last + self.args.silence - now()
                if left <= 0:
                    self.kill_silent()
                    drain_until = now() + DRAIN_LIMIT
                    continue
            # poll() sleeps in the kernel until data, EOF (POLLHUP) or the
            # timeout: no busy waiting. It takes milliseconds and rounds up.
            if not poller.poll(left * 1000):
                continue
            data = os.read(fd, 65536)
            t = now()
            if not data:  # EOF: every write end is closed
                self.relay(b"", t, final=True)
                return
            self.relay(data, t)

    def kill_silent(self):
        if self.proc.poll() is not None:
            return  # it exited just now on its own: nothing to kill
        t = now()
        # SIGKILL cannot be caught: the worker gets no chance to report
        # anything, and whatever the kernel was doing for it (a connect()
        # retransmitting SYNs) ends with the process; its sockets are closed.
        self.proc.send_signal(signal.SIGKILL)
        self.killed = True
        self.ev.emit("worker-killed", t=t, pid=self.proc.pid,
                     silent=round(t - self.last, 6), signal="SIGKILL")

    # ---- the end -------------------------------------------------------------

    def reap(self):
        """Wait for the worker (still killing it if it stays silent: it may
        close its stdout and live on), emit worker-exit, return our code."""
        while not self.killed:
            left = self.last + self.args.silence - now()
            try:
                # A rare case (the pipe closed before the process ended), so
                # Popen.wait()'s short sleeps between waitpid() calls will do.
                self.proc.wait(timeout=max(left, 0))
                break
            except subprocess.TimeoutExpired:
                self.kill_silent()
        return self.exit_status()

    def exit_status(self):
        """waitpid() status as worker-exit, and the code we exit with:
        the worker's, or 128+N for signal N (what a shell reports)."""
        status = self.proc.wait()  # Popen: negative when killed by a signal
        t = now()
        if status < 0:
            self.ev.emit("worker-exit", t=t, code=None, signal=signal.Signals(-status).name)
            return 128 - status
        self.ev.emit("worker-exit", t=t, code=status, signal=None)
        return status

    def stop_worker(self):
        """We were told to stop: take the worker with us. SIGTERM first, so
        it can report its own exit, then SIGKILL if it does not go."""
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # no second Stopped in here
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait()
        self.relay_rest()
        self.exit_status()  # we exit with 128 + our own signal, like the other samples

    def relay_rest(self):
        """What the worker printed while we were not reading (non-blocking)."""
        fd = self.proc.stdout.fileno()
        os.set_blocking(fd, False)
        try:
            while data := os.read(fd, 65536):
                self.relay(data, now())
        except BlockingIOError:
            pass
        self.relay(b"", now(), final=True)


def parse_args(argv):
    if "--" in argv:
        cut = argv.index("--")
        own, client_args = argv[:cut], argv[cut + 1:]
    else:
        own, client_args = argv, []
    p = argparse.ArgumentParser(
        allow_abbrev=False,
        usage="%(prog)s --silence S [--worker-name NAME] [--name NAME] [--events PATH] "
              "[--json] -- CLIENT_ARGS...",
        description="TCP Failure Lab supervisor: run client.py as a worker, relay its "
                    "output, and SIGKILL it when it prints no line for S seconds.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="""The worker is `python3 client.py --name NAME [--events PATH] CLIENT_ARGS...`:
it reports to the same --events socket under its own name. Every line it
prints is relayed unchanged and restarts the silence clock (counted from the
spawn until the first line).

events: worker-started {pid}, worker-killed {pid, silent, signal},
worker-exit {code, signal}.

examples:
  %(prog)s --silence 2 -- --port 7000 --steps connect
  %(prog)s --silence 4 -- --port 7000 --syncnt 1 --steps connect
exit code: the worker's, 128+N if it was killed by signal N (137 after the
silence kill), 2 bad usage, 128+N when we are stopped by signal N.""")
    p.add_argument("--silence", type=lab.seconds, required=True, metavar="S",
                   help="kill the worker after S seconds without a line on its stdout")
    p.add_argument("--worker-name", type=lab.proc_name, default="worker", metavar="NAME",
                   help='--name given to the worker (default: worker)')
    lab.add_common_args(p, "supervisor")
    args = p.parse_args(own)
    if not client_args:
        p.error("the worker's client.py arguments are missing: give them after --, "
                "e.g. -- --port 7000 --steps connect")
    args.client_args = client_args
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    ev = lab.Emitter(args.name, args.events, args.json)
    ev.emit("start", pid=os.getpid(), argv=sys.argv)
    lab.install_stop_handlers()
    sup = Supervisor(args, ev)
    try:
        try:
            sup.start()
        except OSError as e:
            ev.emit("error", op="spawn", **lab.errno_fields(e))
            ev.finish(1)
        sup.watch()
        code = sup.reap()
    except lab.Stopped as stop:
        sup.stop_worker()
        code = stop.code
    ev.finish(code)


if __name__ == "__main__":
    main()
