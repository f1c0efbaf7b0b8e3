#!/usr/bin/env node
// TCP Failure Lab sample client, Node version: the same steps and events as
// samples/python/client.py, limited to what Node's net module can express.
// Node reads the socket in the background (libuv), so a "received" event is
// stamped when a step takes the data, and errors that arrive between steps
// are reported by the next step that uses the socket.

import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import * as lab from './labevents.mjs';

const { now } = lab;
const PING = Buffer.from('ping\n');

const USAGE = 'usage: client.mjs --port PORT --steps STEPS [--host HOST] [options]';
const HELP = `${USAGE}

TCP Failure Lab client (Node): run STEPS on one TCP socket and report every
outcome as an event. Same protocol and events as samples/python/client.py.

steps (comma-separated, run in order):
  connect               connect() (honours --connect-timeout)
  send[:N]              one write of N bytes (default "ping\\n")
  recv                  take what the socket has read (honours --read-timeout)
  request               send "ping\\n", read until "\\n" (needs an echo server)
  requests:INT[:COUNT]  request every INT seconds until error/EOF or COUNT times
  sleep:S               sleep S seconds
  idle                  wait for data until EOF or error (half-open test)
  heartbeat:H:M         ping every H s; M missed echoes in a row = dead, exit 1
  write-loop[:BLOCK]    write BLOCK bytes (16384) again and again until an error
  close                 destroy() the socket (RST with --linger 0)
  shutdown              end(): send FIN, keep reading

options:
  --host HOST             server address (default 127.0.0.1)
  --port PORT             server port (required)
  --connect-timeout S     give up connecting after S seconds (timeout event)
  --keepalive IDLE        setKeepAlive(true, IDLE s); Node (libuv) then also
                          sets TCP_KEEPINTVL 1 and TCP_KEEPCNT 10 by itself
  --nodelay               setNoDelay(true): Nagle off
  --read-timeout S        setTimeout(): a read waiting S s ends with a timeout event
  --bind HOST[:PORT]      local address (localAddress/localPort)
  --linger 0              close with RST (resetAndDestroy); other values unsupported
  --reconnect             on error or EOF, run all steps again on a new socket
  --backoff S             first reconnect delay (default 0.1), doubled each failure
  --backoff-max S         largest reconnect delay (default 2)
  --max-attempts N        give up after N attempts (default unlimited)
  --name NAME             "proc" of every event (default client)
  --events PATH           also write JSON events to this Unix socket
  --json                  JSON lines on stdout instead of readable lines
  -h, --help              this text

not available in Node (use samples/python/client.py): --syncnt, --user-timeout,
--sndtimeo, --quickack, --cork, --keepalive IDLE,INTVL,CNT, --linger N>0, poll.

exit code: 0 all steps done, 1 a step failed, 2 bad usage, 128+N on signal N.`;

class Failed extends Error {}     // a step failed; its event has been emitted
class PeerClosed extends Error {} // EOF seen and --reconnect asks to start over

// ---------------------------------------------------------------------------
// Flags and steps
// ---------------------------------------------------------------------------

const posInt = (f, t) => lab.num(f, t, { kind: 'int', lo: 1 });
const posFloat = (f, t) => lab.num(f, t, { above: 0 });
const nonNeg = (f, t) => lab.num(f, t, { lo: 0 });
const STEP_ARGS = {
  connect: [[], 0], send: [[posInt], 0], recv: [[], 0], request: [[], 0],
  requests: [[nonNeg, posInt], 1], sleep: [[nonNeg], 1], idle: [[], 0],
  heartbeat: [[posFloat, posInt], 2], 'write-loop': [[posInt], 0],
  close: [[], 0], shutdown: [[], 0],
};

function parseSteps(text) {
  return text.split(',').map((item) => {
    const [name, ...raw] = item.trim().split(':');
    if (name === 'poll') lab.unsupported('--steps poll', "Node's net has no poll(2)");
    if (!(name in STEP_ARGS)) {
      throw new lab.UsageError(`--steps: unknown step '${name}' (steps: ${Object.keys(STEP_ARGS).join(', ')})`);
    }
    const [convs, required] = STEP_ARGS[name];
    if (raw.length < required || raw.length > convs.length) {
      throw new lab.UsageError(`--steps: step '${item}' takes ${required === convs.length ? required : `${required} to ${convs.length}`} argument(s)`);
    }
    return [name, raw.map((r, i) => convs[i](`--steps ${name}`, r))];
  });
}

function parseOptions(argv) {
  const str = { type: 'string' };
  const bool = { type: 'boolean' };
  const { values: v } = parseArgs({
    args: argv,
    options: {
      host: str, port: str, steps: str, 'connect-timeout': str, keepalive: str,
      nodelay: bool, 'read-timeout': str, bind: str, linger: str, reconnect: bool,
      backoff: str, 'backoff-max': str, 'max-attempts': str, name: str, events: str,
      json: bool, help: { type: 'boolean', short: 'h' },
      // Accepted only to be refused with a clear message:
      syncnt: str, 'user-timeout': str, sndtimeo: str, quickack: bool, cork: bool,
    },
  });
  if (v.help) {
    process.stdout.write(HELP + '\n');
    process.exit(0);
  }
  if (v.syncnt !== undefined) lab.unsupported('--syncnt', "Node's net has no TCP_SYNCNT option");
  if (v['user-timeout'] !== undefined) lab.unsupported('--user-timeout', "Node's net has no TCP_USER_TIMEOUT option");
  if (v.sndtimeo !== undefined) lab.unsupported('--sndtimeo', "Node's net has no SO_SNDTIMEO option");
  if (v.quickack) lab.unsupported('--quickack', "Node's net has no TCP_QUICKACK option");
  if (v.cork) lab.unsupported('--cork', "Node's net has no TCP_CORK option (socket.cork() only buffers writes inside Node)");
  if (v.port === undefined) throw new lab.UsageError('--port is required');
  if (v.steps === undefined) throw new lab.UsageError('--steps is required');
  const o = {
    host: v.host ?? '127.0.0.1',
    port: lab.num('--port', v.port, { kind: 'int', lo: 1, hi: 65535 }),
    steps: parseSteps(v.steps),
    nodelay: Boolean(v.nodelay), reconnect: Boolean(v.reconnect), json: Boolean(v.json),
    name: lab.procName(v.name ?? 'client'), events: v.events,
    backoff: v.backoff === undefined ? 0.1 : posFloat('--backoff', v.backoff),
    backoffMax: v['backoff-max'] === undefined ? 2 : posFloat('--backoff-max', v['backoff-max']),
  };
  if (v['connect-timeout'] !== undefined) o.connectTimeout = posFloat('--connect-timeout', v['connect-timeout']);
  if (v['read-timeout'] !== undefined) o.readTimeout = posFloat('--read-timeout', v['read-timeout']);
  if (v['max-attempts'] !== undefined) o.maxAttempts = posInt('--max-attempts', v['max-attempts']);
  if (v.bind !== undefined) o.bind = lab.hostPort('--bind', v.bind, false);
  lab.socketOptions(v, o);
  if (o.backoffMax < o.backoff) throw new lab.UsageError('--backoff-max: must not be smaller than --backoff');
  return o;
}

// ---------------------------------------------------------------------------
// One socket: what libuv has read so far, and how the connection ended
// ---------------------------------------------------------------------------

class Conn {
  constructor(sock) {
    this.sock = sock;
    this.chunks = [];
    this.ended = false;
    this.error = null;
    this.timedOut = false;
    this.wake = null;
    const notify = () => { const w = this.wake; this.wake = null; w?.(); };
    sock.on('data', (b) => { this.chunks.push(b); notify(); });
    sock.on('end', () => { this.ended = true; notify(); });
    sock.on('error', (e) => { this.error ??= e; notify(); });
    sock.on('timeout', () => { this.timedOut = true; notify(); });
  }

  // Wait for the next thing a read step can report. readTimeout re-arms
  // socket.setTimeout (Node's inactivity timer); deadline is a time on our
  // monotonic clock after which {late} is returned.
  async read(readTimeout, deadline) {
    const start = now();
    this.timedOut = false;
    if (readTimeout) this.sock.setTimeout(readTimeout * 1000);
    try {
      for (;;) {
        if (this.chunks.length) {
          const data = Buffer.concat(this.chunks);
          this.chunks = [];
          return { data };
        }
        if (this.error) return { error: this.error };
        if (this.ended) return { eof: true };
        if (this.timedOut) return { timeout: now() - start };
        if (deadline !== undefined && now() >= deadline) return { late: true };
        let timer;
        await new Promise((resolve) => {
          this.wake = resolve;
          if (deadline !== undefined) timer = setTimeout(resolve, Math.max(0, (deadline - now()) * 1000));
        });
        clearTimeout(timer);
      }
    } finally {
      if (readTimeout) this.sock.setTimeout(0);
    }
  }

  // One write; resolves with null or the error. libuv calls back once the
  // kernel took all of it, so awaiting this is a blocking write.
  write(buf) {
    if (this.error) return Promise.resolve(this.error);
    return new Promise((resolve) => this.sock.write(buf, (err) => resolve(err ? this.error ?? err : null)));
  }
}

// ---------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------

class Client {
  constructor(opts, ev) {
    this.o = opts;
    this.ev = ev;
    this.peer = lab.addrStr(opts.host, opts.port);
  }

  fail(op, err) {
    this.ev.emit('error', { op, ...lab.errnoFields(err) });
    throw new Failed(op);
  }

  notConnected(op) {
    this.fail(op, Object.assign(new Error('not connected'), { code: 'ENOTCONN' }));
  }

  async recvOnce(op = 'recv', deadline) {
    if (!this.conn) this.notConnected(op);
    // The read timeout is for plain reads; heartbeat has its own deadline.
    const r = await this.conn.read(deadline === undefined ? this.o.readTimeout : undefined, deadline);
    if (r.data) {
      this.rx += r.data.length;
      this.ev.emit('received', { bytes: r.data.length, total: this.rx });
      return r.data;
    }
    if (r.error) this.fail(op, r.error);
    if (r.timeout !== undefined) {
      this.ev.emit('timeout', { op, after: Math.round(r.timeout * 1e6) / 1e6 });
      throw new Failed(op);
    }
    if (r.late) return undefined;
    this.ev.emit('eof', { op });
    if (this.o.reconnect) throw new PeerClosed(op);
    return null;
  }

  async send(buf, op = 'send') {
    if (!this.conn) this.notConnected(op);
    const err = await this.conn.write(buf);
    if (err) this.fail(op, err);
    this.tx += buf.length;
    this.ev.emit('sent', { bytes: buf.length, total: this.tx });
  }

  // true when a line was consumed, false if deadline passed, null at EOF.
  async readLine(deadline) {
    while (!this.linebuf.includes(10)) {
      const data = await this.recvOnce('recv', deadline);
      if (data === undefined) return false;
      if (data === null) return null;
      this.linebuf = Buffer.concat([this.linebuf, data]);
    }
    this.linebuf = this.linebuf.subarray(this.linebuf.indexOf(10) + 1);
    return true;
  }

  async connect() {
    const o = this.o;
    this.ev.emit('connect-start', { attempt: this.attempt, peer: this.peer });
    const start = now();
    const sock = new net.Socket({ allowHalfOpen: true }); // keep writing after EOF, as in C
    this.sock = sock;
    if (o.nodelay) sock.setNoDelay(true);
    if (o.keepalive) sock.setKeepAlive(true, o.keepalive * 1000);
    const outcome = await new Promise((resolve) => {
      const timer = o.connectTimeout && setTimeout(() => resolve('timeout'), o.connectTimeout * 1000);
      sock.once('connect', () => { clearTimeout(timer); resolve(null); });
      sock.once('error', (err) => { clearTimeout(timer); resolve(err); });
      const [localAddress, localPort] = o.bind ?? [];
      sock.connect({ host: o.host, port: o.port, localAddress: localAddress || undefined, localPort: localPort || undefined });
    });
    if (outcome === 'timeout') {
      sock.destroy();
      this.ev.emit('timeout', { op: 'connect', after: Math.round((now() - start) * 1e6) / 1e6 });
      throw new Failed('connect');
    }
    if (outcome) this.fail('connect', outcome);
    this.conn = new Conn(sock);
    this.connected = true;
    this.ev.emit('connected', {
      attempt: this.attempt,
      local: lab.addrStr(sock.localAddress, sock.localPort),
      peer: lab.addrStr(sock.remoteAddress, sock.remotePort),
    });
  }

  // ---- steps ---------------------------------------------------------------

  async step_connect() { await this.connect(); }

  async step_send(size) {
    await this.send(size ? Buffer.concat([Buffer.alloc(size - 1, 'x'), Buffer.from('\n')]) : PING);
  }

  async step_recv() { await this.recvOnce(); }

  async step_request() {
    await this.send(PING);
    return (await this.readLine()) === true;
  }

  async step_requests(interval, count) {
    for (let done = 0; count === undefined || done < count;) {
      if (!(await this.step_request())) return;
      done += 1;
      if (count === undefined || done < count) await sleep(interval * 1000);
    }
  }

  async step_sleep(s) { await sleep(s * 1000); }

  async step_idle() {
    // Nothing ends this wait on a silent connection except keepalive, the
    // read timeout or a packet from the peer: the half-open connection test.
    while ((await this.recvOnce()) !== null);
  }

  async step_heartbeat(every, maxMisses) {
    let misses = 0;
    let lastPong = now();
    for (;;) {
      const deadline = now() + every;
      await this.send(PING);
      const got = await this.readLine(deadline);
      if (got === null) return;
      if (got) {
        misses = 0;
        lastPong = now();
        await sleep(Math.max(0, (deadline - now()) * 1000));
        continue;
      }
      misses += 1;
      this.ev.emit('heartbeat-miss', { misses });
      if (misses >= maxMisses) {
        this.ev.emit('dead', { reason: 'heartbeat', misses, after: Math.round((now() - lastPong) * 1e6) / 1e6 });
        throw new Failed('heartbeat');
      }
    }
  }

  async step_write_loop(block = 16384) {
    if (!this.conn) this.notConnected('write');
    const chunk = Buffer.alloc(block, 'x');
    let busySince = null;
    let blockedAt = null;
    const dog = setInterval(() => {
      if (busySince !== null && now() - busySince >= 0.5 && blockedAt !== this.tx) {
        blockedAt = this.tx; // once per blocking episode
        this.ev.emit('blocked', { op: 'write', total: this.tx });
      }
    }, 100);
    let reported = this.tx;
    try {
      for (;;) {
        busySince = now();
        const err = await this.conn.write(chunk);
        busySince = null;
        if (err) {
          if (this.tx > reported) this.ev.emit('sent', { bytes: this.tx - reported, total: this.tx });
          this.fail('write', err);
        }
        this.tx += block;
        if (this.tx - reported >= 65536) {
          this.ev.emit('sent', { bytes: this.tx - reported, total: this.tx });
          reported = this.tx;
        }
      }
    } finally {
      clearInterval(dog);
    }
  }

  async step_close() {
    if (!this.sock) this.notConnected('close');
    if (this.o.lingerZero) this.sock.resetAndDestroy(); // SO_LINGER {1, 0} + close: RST
    else this.sock.destroy();
    this.ev.emit('closed', { how: this.o.lingerZero ? 'rst' : 'fin' });
  }

  async step_shutdown() {
    if (!this.conn) this.notConnected('shutdown');
    const err = await new Promise((resolve) => this.sock.end((e) => resolve(e)));
    if (err) this.fail('shutdown', err);
  }

  // ---- runs and reconnects -------------------------------------------------

  async runOnce() {
    this.sock = this.conn = null;
    this.connected = false;
    this.tx = this.rx = 0;
    this.linebuf = Buffer.alloc(0);
    try {
      for (const [name, args] of this.o.steps) await this[`step_${name.replace('-', '_')}`](...args);
      return true;
    } catch (e) {
      if (e instanceof Failed || e instanceof PeerClosed) return false;
      throw e;
    }
  }

  async run() {
    let delay = this.o.backoff;
    for (this.attempt = 1; ; this.attempt += 1) {
      if (await this.runOnce()) return 0;
      if (!this.o.reconnect || (this.o.maxAttempts && this.attempt >= this.o.maxAttempts)) return 1;
      if (this.sock && !this.sock.destroyed) {
        const live = this.connected && !this.conn.error;
        if (this.o.lingerZero) this.sock.resetAndDestroy();
        else this.sock.destroy();
        if (live) this.ev.emit('closed', { how: this.o.lingerZero ? 'rst' : 'fin' });
      }
      if (this.connected) delay = this.o.backoff; // the peer was reachable
      this.ev.emit('reconnect', { attempt: this.attempt + 1, delay });
      await sleep(delay * 1000);
      delay = Math.min(delay * 2, this.o.backoffMax);
    }
  }
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
ev.finish(await new Client(opts, ev).run());
