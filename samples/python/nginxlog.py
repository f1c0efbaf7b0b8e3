"""nginx's error and access log lines turned into lab events (for nginx.py).

nginx says what its timers did only in its error log, in its own words:
"upstream timed out (110: Connection timed out) while reading response header
from upstream". The 110 there is not an errno the kernel returned: nginx
writes NGX_ETIMEDOUT itself when one of its own timers (proxy_read_timeout and
the like) expires, so the socket underneath is still fine.

What each line means was read off a real nginx 1.22 (Debian's) with the
timeouts of section D; levels: the timeouts and premature closes are `error`
or `info`, the connection pool and keepalive closes only `debug` (they appear
only when nginx was built with --with-debug, as Debian's is).

Pure functions and a small state machine: no I/O here.
"""

import errno
import json
import re

# 2026/12/02 06:35:13 [error] 10525#10525: *3 upstream timed out (...) while ...
_LINE = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[(\w+)\] \d+#\d+: (?:\*(\d+) )?(.*)$")

_TIMED_OUT = re.compile(r"^(upstream|client) timed out \((\d+): ([^)]*)\) while (.+)$")
_FAILED = re.compile(r"^(\w+)\(\) failed \((\d+): ([^)]*)\) while (.+)$")
_PREMATURE = re.compile(r"^(upstream|client) prematurely closed connection(?: while (.+))?$")
_CONNECT = re.compile(r"^connect to (\S+), fd:(\d+) #(\d+)$")

# Levels worth a generic event when no rule below knows the line.
_LOUD = {"warn", "error", "crit", "alert", "emerg"}


def _op(phase):
    """nginx's "while ..." phrase as the operation the lab names: connect,
    send or read (reading the response header, or the body)."""
    if phase.startswith("connecting"):
        return "connect"
    if phase.startswith("sending"):
        return "send"
    if phase.startswith("reading") or phase.startswith("waiting"):
        return "read"
    return phase.split(" ", 1)[0]


def _context(message):
    """Splits "what, client: 1.2.3.4, server: , request: "GET /", upstream:
    "http://..."" into the text and the fields worth keeping."""
    text, sep, rest = message.partition(", client: ")
    fields = {}
    if sep:
        for key in ("request", "upstream"):
            m = re.search(rf'{key}: "([^"]*)"', rest)
            if m:
                fields[key] = m.group(1)
    return text, fields


def _errno_fields(number, text):
    num = int(number)
    return {"errno": num, "name": errno.errorcode.get(num, f"E{num}"), "message": text}


class LogReader:
    """Feeds on nginx log lines, returns (type, fields) events.

    Keeps the little state the debug lines need: when each connection went
    idle ("set http keepalive handler"), and whether the keepalive handler
    was just called for it (a close right after that, with nothing read in
    between, is the keepalive_timeout expiring)."""

    def __init__(self, role):
        self.role = role
        self.idle_since = {}      # nginx connection number -> t it went idle
        self.in_handler = set()   # connections whose keepalive handler just ran

    def feed(self, line, t):
        if line.startswith("access "):
            return self._access(line[7:])
        m = _LINE.match(line)
        if not m:
            return []  # a continuation line of a multi-line debug dump
        level, conn, message = m.group(1), m.group(2), m.group(3)
        conn = int(conn) if conn else None
        if level == "debug":
            return self._debug(conn, message, t)
        return self._logged(level, conn, message)

    def _access(self, text):
        try:
            fields = json.loads(text)
        except ValueError:
            return []
        return [("access", fields)]

    def _logged(self, level, conn, message):
        text, ctx = _context(message)
        where = {"conn": conn} if conn is not None else {}
        m = _TIMED_OUT.match(text)
        if m:
            side, number, reason, phase = m.groups()
            return [(f"{side}-timeout", {**where, "op": _op(phase), "phase": phase,
                                         **_errno_fields(number, reason), **ctx})]
        m = _FAILED.match(text)
        if m:
            call, number, reason, phase = m.groups()
            side = "upstream" if "upstream" in phase else "client"
            return [(f"{side}-error", {**where, "op": _op(phase), "call": call, "phase": phase,
                                       **_errno_fields(number, reason), **ctx})]
        m = _PREMATURE.match(text)
        if m:
            side, phase = m.group(1), m.group(2) or ""
            return [(f"{side}-eof", {**where, "op": _op(phase) if phase else "read",
                                     "phase": phase, **ctx})]
        if level in _LOUD:
            return [("nginx-log", {**where, "level": level, "message": message})]
        return []

    def _debug(self, conn, message, t):
        if conn is None:
            # An idle pooled upstream connection logs without a request's
            # number (ngx_http_upstream_keepalive_module puts it on the cycle
            # log): its close handler runs when the upstream closes it (FIN),
            # sends something, or resets it.
            if message == "keepalive close handler":
                return [("pool-closed", {})]
            return []
        if message == "set http keepalive handler":
            self.idle_since[conn] = t
            return []
        if message == "http keepalive handler":
            self.in_handler.add(conn)
            return []
        if conn in self.in_handler:
            self.in_handler.discard(conn)
            if message.startswith("close http connection"):
                # Straight from the handler to the close, nothing read: the
                # keepalive_timeout timer fired (ngx_http_keepalive_handler).
                since = self.idle_since.pop(conn, None)
                fields = {"conn": conn}
                if since is not None:
                    fields["idle"] = round(t - since, 6)
                return [("idle-close", fields)]
        if message.startswith("close http connection"):
            self.idle_since.pop(conn, None)
            return []
        m = _CONNECT.match(message)
        if m and not m.group(1).startswith("unix:"):
            # A new upstream connection (the upstream role's own body sink
            # over a Unix socket is not one the lab shows).
            return [("upstream-connect", {"conn": conn, "peer": m.group(1)})]
        if message.startswith("get keepalive peer: using connection"):
            return [("upstream-reuse", {"conn": conn})]
        if message.startswith("free keepalive peer: saving connection"):
            return [("upstream-pooled", {"conn": conn})]
        return []
