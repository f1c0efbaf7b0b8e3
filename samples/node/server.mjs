#!/usr/bin/env node
// TCP Failure Lab sample server, Node version: the modes and events of
// samples/python/server.py that Node's net module can express.
// Differences worth knowing: libuv reads every socket as soon as data arrives
// (except with pauseOnConnect, used by the modes that must not read), and a
// socket that is not being read is not watched at all, so a keepalive failure
// in "hold" mode goes unnoticed here (the Python server polls for it).

import net from 'node:net';
import { parseArgs } from 'node:util';
import * as lab from './labevents.mjs';

const { now } = lab;
const MODES = ['echo', 'silent', 'close', 'rst', 'hold', 'http'];
const HTTP_BODY = Buffer.from('hello from tcp-failure-lab\n');

const USAGE = 'usage: server.mjs --port PORT --mode MODE [--host HOST] [options]';
const HELP = `${USAGE}

TCP Failure Lab server (Node): accept TCP connections and treat them according
to --mode, reporting every outcome as an event (same events as server.py).

modes:
  echo      send every byte received back (request/heartbeat need this)
  silent    read and discard everything, never reply
  close     close each accepted connection at once (FIN)
  rst       close each accepted connection with RST (resetAndDestroy)
  hold      never read or write (pauseOnConnect); the connection just sits
  http      minimal HTTP/1.1 keep-alive responder (see --reply-writes)

options:
  --host HOST           address to bind (default 0.0.0.0)
  --port PORT           port to listen on (0: any free port; required)
  --reply-writes two|one  http: header and body as two writes or one (default two)
  --idle-timeout T      close a connection idle for T seconds (setTimeout; in
                        Node writes count as activity too)
  --keepalive IDLE      setKeepAlive(true, IDLE s) on accepted sockets
  --linger 0            close connections with RST (resetAndDestroy)
  --nodelay             setNoDelay(true) on accepted sockets
  --backlog N           listen() backlog (default 511, Node's default)
  --name NAME           "proc" of every event (default server)
  --events PATH         also write JSON events to this Unix socket
  --json                JSON lines on stdout instead of readable lines
  -h, --help            this text

not available in Node (use samples/python/server.py): --mode close-unread,
--cork, --accept-delay, --keepalive IDLE,INTVL,CNT, --linger N>0.

exit code: 1 if the port cannot be bound, 128+N on signal N.`;

function parseOptions(argv) {
  const str = { type: 'string' };
  const bool = { type: 'boolean' };
  const { values: v } = parseArgs({
    args: argv,
    options: {
      host: str, port: str, mode: str, 'reply-writes': str, 'idle-timeout': str,
      keepalive: str, linger: str, nodelay: bool, backlog: str, name: str,
      events: str, json: bool, help: { type: 'boolean', short: 'h' },
      cork: bool, 'accept-delay': str, // accepted only to be refused clearly
    },
  });
  if (v.help) {
    process.stdout.write(HELP + '\n');
    process.exit(0);
  }
  if (v.cork) lab.unsupported('--cork', "Node's net has no TCP_CORK option (socket.cork() only buffers writes inside Node)");
  if (v['accept-delay'] !== undefined) lab.unsupported('--accept-delay', "Node's net cannot delay accept() (libuv accepts connections as soon as they arrive)");
  if (v.mode === 'close-unread') {
    lab.unsupported('--mode close-unread', "Node's net cannot wait for data without reading it (no poll(2))");
  }
  if (v.port === undefined) throw new lab.UsageError('--port is required');
  if (!MODES.includes(v.mode)) throw new lab.UsageError(`--mode: '${v.mode ?? ''}' is not one of ${MODES.join(', ')}`);
  const o = {
    host: v.host ?? '0.0.0.0',
    port: lab.num('--port', v.port, { kind: 'int', lo: 0, hi: 65535 }),
    mode: v.mode, replyWrites: v['reply-writes'] ?? 'two',
    nodelay: Boolean(v.nodelay), json: Boolean(v.json), name: lab.procName(v.name ?? 'server'), events: v.events,
    backlog: v.backlog === undefined ? 511 : lab.num('--backlog', v.backlog, { kind: 'int', lo: 0, hi: 65535 }),
  };
  if (!['two', 'one'].includes(o.replyWrites)) throw new lab.UsageError(`--reply-writes: '${o.replyWrites}' is not two or one`);
  if (v['idle-timeout'] !== undefined) o.idleTimeout = lab.num('--idle-timeout', v['idle-timeout'], { above: 0 });
  lab.socketOptions(v, o);
  return o;
}

// Node names the failed syscall in err.syscall; report it as the lab does.
const opOf = (err) => ({ read: 'recv', write: 'send', writev: 'send' }[err.syscall] ?? err.syscall ?? 'socket');

function handle(sock, cid, o, ev) {
  const c = { tx: 0, rx: 0, lastRx: now(), open: true };
  const emit = (type, fields = {}, t = undefined) => ev.emit(type, { conn: cid, ...fields }, t);
  emit('accepted', {
    local: lab.addrStr(sock.localAddress, sock.localPort),
    peer: lab.addrStr(sock.remoteAddress, sock.remotePort),
  });
  if (o.nodelay) sock.setNoDelay(true);
  if (o.keepalive) sock.setKeepAlive(true, o.keepalive * 1000);

  const close = (rst = o.lingerZero) => {
    if (!c.open) return;
    c.open = false;
    if (rst) sock.resetAndDestroy(); // SO_LINGER {1, 0} + close(): RST at once
    else sock.destroy();
    emit('closed', { how: rst ? 'rst' : 'fin' });
  };
  // One write; `then` runs once the kernel has taken it.
  const send = (buf, then) => sock.write(buf, (err) => {
    if (err) return; // reported by the 'error' handler below
    c.tx += buf.length;
    emit('sent', { bytes: buf.length, total: c.tx });
    then?.();
  });

  sock.on('error', (err) => {
    // Node destroys the socket on error; after a reset or a timeout the
    // kernel has nothing left to send, so no closed event follows.
    c.open = false;
    emit('error', { op: opOf(err), ...lab.errnoFields(err) });
  });
  sock.on('end', () => {
    emit('eof', { op: 'recv' });
    close();
  });
  if (o.idleTimeout) {
    sock.setTimeout(o.idleTimeout * 1000);
    sock.on('timeout', () => {
      emit('idle-close', { idle: Math.round((now() - c.lastRx) * 1e6) / 1e6 });
      close(false);
    });
  }
  const onData = (fn) => sock.on('data', (data) => {
    const t = now();
    c.rx += data.length;
    c.lastRx = t;
    emit('received', { bytes: data.length, total: c.rx }, t);
    fn?.(data);
  });

  switch (o.mode) {
    case 'echo': onData((data) => send(data)); break;
    case 'silent': onData(); break;
    case 'close': close(); break;
    case 'rst': close(true); break;
    case 'hold': break; // paused from the start: never read, never write
    case 'http': httpMode(onData, send, close, o); break;
  }
}

function httpMode(onData, send, close, o) {
  let buf = Buffer.alloc(0);
  onData((data) => {
    buf = Buffer.concat([buf, data]);
    for (;;) {
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) {
        if (buf.length > 65536) {
          send(Buffer.from('HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n'), close);
        }
        return;
      }
      const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
      const request = lines[0].split(' ').filter(Boolean);
      const headers = {};
      for (const line of lines.slice(1)) {
        const i = line.indexOf(':');
        if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
      }
      const length = Number(headers['content-length'] ?? 0);
      if (request.length !== 3 || !request[2].startsWith('HTTP/1.') || !Number.isInteger(length) || length < 0) {
        send(Buffer.from('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n'), close);
        return;
      }
      if (buf.length < end + 4 + length) return; // wait for the request body
      buf = buf.subarray(end + 4 + length);
      const keep = request[2] === 'HTTP/1.1' && (headers.connection ?? '').toLowerCase() !== 'close';
      const header = Buffer.from('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n' +
        `Content-Length: ${HTTP_BODY.length}\r\n${keep ? '' : 'Connection: close\r\n'}\r\n`);
      const then = keep ? undefined : () => close(); // Connection: close
      if (o.replyWrites === 'two') {
        // Two small writes: without --nodelay, Nagle holds the body until the
        // header is ACKed, and the client delays that ACK (~40 ms on Linux).
        send(header);
        send(HTTP_BODY, then);
      } else {
        send(Buffer.concat([header, HTTP_BODY]), then);
      }
      if (!keep) return;
    }
  });
}

let opts;
try {
  opts = parseOptions(process.argv.slice(2));
} catch (err) {
  lab.usageExit(err, USAGE); // rethrows anything that is not a usage error
}
const ev = new lab.Emitter(opts.name, opts.json);
await ev.open(opts.events);
ev.emit('start', { pid: process.pid, argv: process.argv.slice(1) });
lab.onStopSignals(ev);

let nextId = 1;
// pauseOnConnect: libuv does not start reading, so hold/close/rst leave the
// client's data unread in the kernel, as the Python server does.
const server = net.createServer(
  { allowHalfOpen: true, pauseOnConnect: ['hold', 'close', 'rst'].includes(opts.mode) },
  (sock) => handle(sock, nextId++, opts, ev),
);
server.on('error', (err) => {
  ev.emit('error', { op: err.syscall ?? 'listen', ...lab.errnoFields(err) });
  ev.finish(1);
});
// libuv sets SO_REUSEADDR on listening sockets itself (socket(7)): a restart
// can bind while old connections are in TIME_WAIT.
server.listen({ host: opts.host, port: opts.port, backlog: opts.backlog }, () => {
  const a = server.address();
  ev.emit('listening', { host: a.address, port: a.port });
});
