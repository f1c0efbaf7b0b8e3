"""The nginx.conf that nginx.py runs: a reverse proxy, or the upstream behind it.

Every path nginx writes (pid, lock, temp folders, logs) is inside one private
directory; both logs go to a FIFO there that nginx.py reads line by line.
"""

UPSTREAM_BODY = "hello from the upstream\n"


def ms(seconds):
    """nginx time value in milliseconds (it accepts "ms"), at least 1."""
    return f"{max(1, round(seconds * 1000))}ms"


def listen_addr(host, port):
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def config(a, d, debug):
    """The whole nginx.conf. Every path nginx writes is inside d.

    `master_process off`: one process, no workers. A worker would drop to
    its `user` with setgid/initgroups/setuid; inside an unprivileged user
    namespace without sub-ids mapped (unshare --map-root-user alone)
    initgroups fails (setgroups is denied) and the default user nobody's uid
    is not mapped at all, so even the chown of the temp paths fails. With
    `user root` (uid 0 of the lab's namespace: the lab's own uid outside) and
    no worker, none of that runs: the same config works as root and rootless.
    """
    log = f"{d}/log.fifo"
    timeouts = []
    if a.keepalive_timeout is not None:
        timeouts.append(f"keepalive_timeout {ms(a.keepalive_timeout)};")
    if a.client_body_timeout is not None:
        timeouts.append(f"client_body_timeout {ms(a.client_body_timeout)};")
    head = [
        "daemon off;",
        "master_process off;",
        "user root;",
        f"pid {d}/nginx.pid;",
        f"lock_file {d}/nginx.lock;",
        f"error_log {log} {'debug' if debug else 'info'};",
        "events { worker_connections 512; }",
        "http {",
        # One line per request, as JSON after the word "access" (nginx's
        # error log lines never start with it).
        "  log_format lab escape=json 'access {\"conn\":$connection,\"status\":$status,"
        "\"request_time\":$request_time,\"request\":\"$request_method $request_uri\","
        "\"request_length\":$request_length,\"bytes_sent\":$bytes_sent,"
        "\"upstream_status\":\"$upstream_status\","
        "\"upstream_connect_time\":\"$upstream_connect_time\","
        "\"upstream_header_time\":\"$upstream_header_time\","
        "\"upstream_response_time\":\"$upstream_response_time\"}';",
        f"  access_log {log} lab;",
        f"  client_body_temp_path {d}/body;",
        f"  proxy_temp_path {d}/proxy;",
        f"  fastcgi_temp_path {d}/fastcgi;",
        f"  uwsgi_temp_path {d}/uwsgi;",
        f"  scgi_temp_path {d}/scgi;",
        f"  client_max_body_size {a.max_body_size};",
        *(f"  {t}" for t in timeouts),
    ]
    listen = listen_addr(*a.listen)
    if a.role == "upstream":
        sink = f"unix:{d}/sink.sock"
        body = [
            "  server {",
            f"    listen {listen};",
            "    location / {",
            f"      if ($request_method ~ ^(GET|HEAD)$) {{ return 200 \"{UPSTREAM_BODY[:-1]}\\n\"; }}",
            # `return` would answer before the body arrived and leave nginx
            # discarding it in the background; proxying reads it in full
            # first (proxy_request_buffering), as an application would.
            f"      proxy_pass http://{sink};",
            "    }",
            "  }",
            "  server {",
            f"    listen {sink};",
            "    access_log off;",
            "    location / { return 200 \"received $content_length bytes\\n\"; }",
            "  }",
        ]
    else:
        pool = a.upstream_keepalive
        body = [
            "  upstream backend {",
            f"    server {listen_addr(*a.upstream)};",
            *([f"    keepalive {pool};"] if pool else []),
            "  }",
            "  server {",
            f"    listen {listen};",
            "    location / {",
            "      proxy_pass http://backend;",
            # A pooled connection needs HTTP/1.1 without "Connection: close"
            # (nginx's defaults are HTTP/1.0 and close).
            *(["      proxy_http_version 1.1;", "      proxy_set_header Connection \"\";"] if pool else []),
            *(f"      {name} {ms(v)};" for name, v in (
                ("proxy_connect_timeout", a.connect_timeout),
                ("proxy_send_timeout", a.send_timeout),
                ("proxy_read_timeout", a.read_timeout)) if v is not None),
            "    }",
            "  }",
        ]
    return "\n".join(head + body + ["}", ""])
