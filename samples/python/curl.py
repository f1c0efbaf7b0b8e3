#!/usr/bin/env python3
"""TCP Failure Lab sample client: the real curl, one run per step.

Each request step runs curl once (a new connection each time: curl's own
keep-alive does not cross processes) with `-w '%{json}'`, and reports:
`request` as curl starts, `connected` and `uploaded` as curl's verbose trace
says so, then `response` (HTTP status, time_total) or, when curl itself
failed, `error` with curl's exit code and message (28: the --max-time or the
--speed-limit/--speed-time rule ended the transfer; 7: could not connect;
52: an empty reply; 56: a reset while receiving).

Steps (comma-separated, in order):
  get                      GET --url
  sleep:S                  wait S seconds
  wait:S                   wait until the lab says go (SIGUSR1: the fault this
                           step waits for is in place), at most S seconds
  upload:BYTES             POST a body of BYTES bytes (Content-Length known)
  slow-upload:RATE[:SECS]  POST a chunked body trickled from a pipe at RATE
                           bytes per second for SECS seconds (default 60),
                           then end it
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import labevents as lab
from labevents import now

CURL_ERRORS = {
    6: "CURLE_COULDNT_RESOLVE_HOST", 7: "CURLE_COULDNT_CONNECT", 18: "CURLE_PARTIAL_FILE",
    22: "CURLE_HTTP_RETURNED_ERROR", 26: "CURLE_READ_ERROR", 28: "CURLE_OPERATION_TIMEDOUT",
    52: "CURLE_GOT_NOTHING", 55: "CURLE_SEND_ERROR", 56: "CURLE_RECV_ERROR",
}

lab._DESCRIBE.update({
    "request": lambda e: f"#{e['n']}: {e['method']} ({e['step']})",
    "connected": lambda e: f"#{e['n']}: to {e['peer']}",
    "uploaded": lambda e: f"#{e['n']}: the whole body is sent",
    "response": lambda e: f"#{e['n']}: HTTP {e['status']} in {e['took']:.3f} s, {e['bytes']} bytes",
    "error": lambda e: f"#{e['n']}: curl exit {e['curl']} ({e['curl_error']}) {e['message']}",
    "sent": lambda e: f"#{e['n']}: {e['bytes']} bytes (total {e['total']})",
    "resumed": lambda e: (f"the lab said go after {e['waited']:.3f} s" if e["by"] == "lab"
                          else f"no word from the lab in {e['waited']:.3f} s: going on"),
})

# curl -v: "* Connected to 198.18.0.1 (198.18.0.1) port 7001 (#0)"
_CONNECTED = re.compile(r"^\* Connected to \S+ \(([^)]*)\) port (\d+)")


def find_curl(given):
    if given:
        return given if os.access(given, os.X_OK) else None
    return shutil.which("curl")


def parse_steps(text):
    steps = []
    for part in text.split(","):
        name, *rest = part.split(":")
        try:
            if name == "get" and not rest:
                steps.append(("get",))
            elif name == "sleep" and len(rest) == 1:
                steps.append(("sleep", lab.seconds(rest[0])))
            elif name == "wait" and len(rest) == 1:
                steps.append(("wait", lab.seconds(rest[0])))
            elif name == "upload" and len(rest) == 1:
                steps.append(("upload", lab.ranged(int, 0, 1 << 34)(rest[0])))
            elif name == "slow-upload" and len(rest) in (1, 2):
                secs = lab.seconds(rest[1]) if len(rest) == 2 else 60.0
                steps.append(("slow-upload", lab.ranged(int, 1, 1 << 30)(rest[0]), secs))
            else:
                raise argparse.ArgumentTypeError(
                    "steps are get, sleep:S, wait:S, upload:BYTES, slow-upload:RATE[:SECS]")
        except argparse.ArgumentTypeError as e:
            raise argparse.ArgumentTypeError(f"{part!r}: {e}") from None
    return steps


class Client:
    def __init__(self, args, ev, curl, go):
        self.args, self.ev, self.curl, self.go = args, ev, curl, go
        self.n = 0
        self.proc = None

    def run(self):
        for step in self.args.steps:
            if step[0] == "sleep":
                time.sleep(step[1])
            elif step[0] == "wait":
                start = now()
                said = self.go.wait(step[1])
                self.ev.emit("resumed", by="lab" if said else "timeout", waited=round(now() - start, 6))
            elif not self.request(step):
                return 1
        return 0

    def argv(self, step):
        a = self.args
        argv = [self.curl, "-sS", "-v", "-o", "/dev/null", "-w", "%{json}",
                # No "Expect: 100-continue" round trip before a body.
                "-H", "Expect:"]
        if a.max_time is not None:
            argv += ["--max-time", f"{a.max_time:g}"]
        if a.speed_limit is not None:
            argv += ["--speed-limit", str(a.speed_limit), "--speed-time", str(a.speed_time)]
        if step[0] == "upload":
            argv += ["--data-binary", "@-"]
        elif step[0] == "slow-upload":
            # -T - streams stdin as it comes (chunked); --data-binary @- would
            # read all of it before sending a byte.
            argv += ["-T", "-", "-X", "POST"]
        return argv + ["--url", a.url]

    def request(self, step):
        """One curl run. True when curl got a reply (any HTTP status)."""
        self.n += 1
        n = self.n
        body = None
        if step[0] == "upload":
            # An unlinked file as curl's stdin: nothing to clean up.
            body = tempfile.TemporaryFile()
            body.truncate(step[1])
            body.seek(0)
        stdin = body if body is not None else (subprocess.PIPE if step[0] == "slow-upload" else subprocess.DEVNULL)
        method = "GET" if step[0] == "get" else "POST"
        self.ev.emit("request", n=n, step=step[0], method=method,
                     **({"bytes": step[1]} if step[0] == "upload" else {}))
        self.proc = subprocess.Popen(self.argv(step), stdin=stdin, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        if body is not None:
            body.close()
        trace = threading.Thread(target=self.read_trace, args=(self.proc, n), daemon=True)
        trace.start()
        writer = None
        done = threading.Event()
        if step[0] == "slow-upload":
            writer = threading.Thread(target=self.trickle,
                                      args=(self.proc, n, step[1], step[2], done), daemon=True)
            writer.start()
        out = self.proc.stdout.read()
        self.proc.wait()
        t = now()
        done.set()  # the trickle stops at once, not at its next tick
        trace.join(timeout=2)
        if writer:
            writer.join(timeout=2)
        try:
            info = json.loads(out.decode(errors="replace") or "{}")
        except ValueError:
            info = {}
        code = info.get("exitcode", self.proc.returncode)
        took = round(float(info.get("time_total", 0)), 6)
        where = {}
        if info.get("local_port"):
            where["local"] = f"{info['local_ip']}:{info['local_port']}"
        if info.get("remote_port"):
            where["peer"] = f"{info['remote_ip']}:{info['remote_port']}"
        status = info.get("http_code", 0)
        if code == 0:
            self.ev.emit("response", t=t, n=n, status=status, took=took, curl=0,
                         bytes=info.get("size_download", 0), sent=info.get("size_upload", 0), **where)
            return True
        self.ev.emit("error", t=t, n=n, op=step[0], curl=code,
                     curl_error=CURL_ERRORS.get(code, f"CURLE_{code}"),
                     message=info.get("errormsg") or f"curl exited with {code}", took=took,
                     **({"status": status} if status else {}), **where)
        return False

    def read_trace(self, proc, n):
        """curl -v on stderr: a line per step of the transfer, as it happens."""
        for raw in proc.stderr:
            line = raw.decode(errors="replace").rstrip("\r\n")
            t = now()
            m = _CONNECTED.match(line)
            if m:
                self.ev.emit("connected", t=t, n=n, peer=f"{m.group(1)}:{m.group(2)}")
            elif line.startswith("* We are completely uploaded and fine"):
                self.ev.emit("uploaded", t=t, n=n)
            elif line.startswith("curl: ("):
                print(line, file=sys.stderr, flush=True)

    def trickle(self, proc, n, rate, secs, done):
        """RATE bytes a second, in pieces at most every second (one byte a
        second at RATE 1), for SECS seconds; then the body ends. `done` is
        set when curl has exited."""
        tick = max(1.0 / rate, 0.1)
        piece = max(1, round(rate * tick))
        total = 0
        end = now() + secs
        try:
            while now() < end and not done.is_set():
                proc.stdin.write(b"x" * piece)
                proc.stdin.flush()
                total += piece
                self.ev.emit("sent", n=n, bytes=piece, total=total)
                done.wait(tick)
            proc.stdin.close()
        except (BrokenPipeError, OSError, ValueError):
            pass  # curl gave up: its exit says why

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def parse_args(argv):
    p = argparse.ArgumentParser(
        allow_abbrev=False,
        description="TCP Failure Lab client: run the real curl for each step and report "
                    "HTTP statuses, times and curl's own failures as events.",
        epilog="example: %(prog)s --url http://198.18.0.1:7001/ --steps get,sleep:1,upload:4194304")
    p.add_argument("--url", required=True, help="http:// URL of every request")
    p.add_argument("--steps", type=parse_steps, required=True,
                   help="get, sleep:S, wait:S, upload:BYTES, slow-upload:RATE[:SECS], comma-separated")
    p.add_argument("--speed-limit", type=lab.ranged(int, 1, 1 << 30), metavar="B",
                   help="curl --speed-limit: abort (exit 28) a transfer slower than B bytes/s "
                        "for --speed-time seconds")
    p.add_argument("--speed-time", type=lab.ranged(int, 1, 3600), metavar="S",
                   help="curl --speed-time (whole seconds; curl's default 30)")
    p.add_argument("--max-time", type=lab.seconds, metavar="S",
                   help="curl --max-time: abort (exit 28) a request after S seconds")
    p.add_argument("--curl", metavar="PATH", help="the curl binary (default: from PATH)")
    lab.add_common_args(p, "curl")
    a = p.parse_args(argv)
    if not re.match(r"^http://[^\s]+$", a.url):
        p.error(f"argument --url: {a.url!r} is not an http:// URL")
    if a.speed_time is not None and a.speed_limit is None:
        p.error("argument --speed-time: only with --speed-limit")
    if a.speed_limit is not None and a.speed_time is None:
        a.speed_time = 30
    return a


def main(argv=None):
    args = parse_args(argv)
    # Before anything else: a "go" that came early must not end the process.
    go = lab.GoAhead()
    ev = lab.Emitter(args.name, args.events, args.json)
    ev.emit("start", pid=os.getpid(), argv=sys.argv)
    curl = find_curl(args.curl)
    if curl is None:
        print(f"{os.path.basename(sys.argv[0])}: curl is not installed: apt-get install curl",
              file=sys.stderr, flush=True)
        ev.emit("error", op="spawn", errno=2, name="ENOENT", message="curl not found")
        ev.finish(1)
    lab.install_stop_handlers()
    client = Client(args, ev, curl, go)
    try:
        code = client.run()
    except lab.Stopped as stop:
        client.stop()
        code = stop.code
    ev.finish(code)


if __name__ == "__main__":
    main()
