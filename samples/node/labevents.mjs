// Shared helpers for the TCP Failure Lab Node samples: the event output (the
// same contract as samples/python/labevents.py) and flag checking.
//
// Every event is one JSON object on one line with "t" (CLOCK_MONOTONIC
// seconds: process.hrtime is libuv's uv_hrtime, which reads CLOCK_MONOTONIC,
// the clock Python's time.monotonic() reads too), "proc" and "type". Events go
// to the lab's Unix socket (--events PATH) and to stdout, as a readable line
// or, with --json, as the JSON line itself.

import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import util from 'node:util';

export const now = () => Number(process.hrtime.bigint()) / 1e9;

const PROG = path.basename(process.argv[1] ?? 'node');
const secs = (v) => `${v.toFixed(3)} s`;

// How each event type reads on stdout without --json.
const DESCRIBE = {
  start: (e) => `pid ${e.pid}: ${e.argv.join(' ')}`,
  listening: (e) => `on ${e.host}:${e.port}`,
  accepted: (e) => `${e.peer} -> ${e.local}`,
  'connect-start': (e) => `attempt ${e.attempt} to ${e.peer}`,
  connected: (e) => `${e.local} -> ${e.peer}`,
  sent: (e) => `${e.bytes} bytes (total ${e.total})`,
  received: (e) => `${e.bytes} bytes (total ${e.total})`,
  eof: (e) => `on ${e.op}: the peer sent FIN`,
  error: (e) => `${e.op}: ${e.name} (${e.errno}) ${e.message}`,
  timeout: (e) => `${e.op} after ${secs(e.after)} (application timeout)`,
  blocked: (e) => `${e.op} blocked: send buffer full, ${e.total} bytes accepted so far`,
  'heartbeat-miss': (e) => `${e.misses} in a row`,
  dead: (e) => `${e.reason}: ${e.misses} misses, ${secs(e.after)} since the last pong`,
  closed: (e) => `how ${e.how}`,
  'idle-close': (e) => `idle for ${secs(e.idle)}`,
  reconnect: (e) => `attempt ${e.attempt} in ${secs(e.delay)}`,
  exit: (e) => `code ${e.code}`,
};

export function describe(ev) {
  let where = '';
  if ('conn' in ev) where += ` #${ev.conn}`;
  if ('leg' in ev) where += ` (${ev.leg})`;
  const fmt = DESCRIBE[ev.type];
  const text = fmt ? fmt(ev) : Object.entries(ev)
    .filter(([k]) => !['t', 'proc', 'type', 'conn', 'leg'].includes(k))
    .map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(' ');
  return `[${ev.t.toFixed(3)}] ${ev.proc}${where} ${ev.type} ${text}`.trimEnd();
}

export class Emitter {
  constructor(name, json) {
    this.name = name;
    this.json = json;
    this.sink = null;
    this.finishing = false;
  }

  // Connect to the lab's socket; on failure print an error and exit 2.
  async open(eventsPath) {
    if (!eventsPath) return;
    this.sink = await new Promise((resolve) => {
      const s = net.createConnection({ path: eventsPath });
      s.once('connect', () => resolve(s));
      s.once('error', (err) => {
        process.stderr.write(`${PROG}: --events ${eventsPath}: cannot connect: ${err.code}\n`);
        process.exit(2);
      });
    });
    this.sink.on('error', (err) => {
      process.stderr.write(`${this.name}: events socket failed (${err.code}); events now go to stdout only\n`);
      this.sink = null;
    });
  }

  // Emit one event; pass t when the moment of interest was earlier.
  emit(type, fields = {}, t = now()) {
    const ev = { t: Math.round(t * 1e6) / 1e6, proc: this.name, type, ...fields };
    const line = JSON.stringify(ev);
    this.sink?.write(line + '\n');
    // On Linux, writes to a pty, a file or a pipe from process.stdout are
    // synchronous, so each line is out before the next event happens.
    process.stdout.write((this.json ? line : describe(ev)) + '\n');
    return ev;
  }

  // Emit exit {code}, let the events socket drain, and leave.
  finish(code) {
    if (this.finishing) return;
    this.finishing = true;
    this.emit('exit', { code });
    if (!this.sink) process.exit(code);
    setTimeout(() => process.exit(code), 1000).unref();
    this.sink.end(() => process.exit(code));
  }
}

const SYSTEM_ERRORS = util.getSystemErrorMap();

// errno/name/message of a Node error. err.code is the symbolic name (libuv
// uses the kernel's names); os.constants.errno gives the positive number.
// Errors made by Node itself (ERR_STREAM_DESTROYED...) have no errno: 0.
export function errnoFields(err) {
  const num = os.constants.errno[err.code] ?? 0;
  const sys = SYSTEM_ERRORS.get(-num);
  const message = sys ? sys[1][0].toUpperCase() + sys[1].slice(1) : err.message;
  return { errno: num, name: err.code ?? err.name, message };
}

export const addrStr = (host, port) => (host?.includes(':') ? `[${host}]:${port}` : `${host}:${port}`);

// ---------------------------------------------------------------------------
// Flag checking: bad values exit 2 with a message naming the flag.
// ---------------------------------------------------------------------------

export class UsageError extends Error {}

export function usageExit(err, usage) {
  if (!(err instanceof UsageError) && !String(err.code).startsWith('ERR_PARSE_ARGS')) throw err;
  process.stderr.write(`${usage}\n${PROG}: error: ${err.message}\n`);
  process.exit(2);
}

// Parse a number for `flag`: kind 'int' or 'float', inclusive lo/hi, or an
// exclusive lower bound `above`.
export function num(flag, text, { kind = 'float', lo, hi, above } = {}) {
  const value = Number(text);
  const bad = (msg) => { throw new UsageError(`${flag}: '${text}' ${msg}`); };
  if (text === undefined || text.trim() === '' || !Number.isFinite(value)) bad('is not a number');
  if (kind === 'int' && !Number.isInteger(value)) bad('is not an integer');
  if (above !== undefined && value <= above) bad(`must be greater than ${above}`);
  if ((lo !== undefined && value < lo) || (hi !== undefined && value > hi)) {
    bad(lo !== undefined && hi !== undefined ? `must be between ${lo} and ${hi}`
      : lo !== undefined ? `must be at least ${lo}` : `must be at most ${hi}`);
  }
  return value;
}

// HOST:PORT, [V6]:PORT, or HOST alone when needPort is false.
export function hostPort(flag, text, needPort = true) {
  let host = text;
  let port;
  const m = /^\[([^\]]+)\](?::(.*))?$/.exec(text);
  if (m) [, host, port] = m;
  else if (text.split(':').length === 2) [host, port] = text.split(':');
  if (port === undefined) {
    if (needPort) throw new UsageError(`${flag}: '${text}' has no port (want HOST:PORT)`);
    return [host, 0];
  }
  return [host, num(flag, port, { kind: 'int', lo: needPort ? 1 : 0, hi: 65535 })];
}

// --name: 1 to 32 of A-Z a-z 0-9 _ . - (what the lab accepts as "proc").
export function procName(text) {
  if (!/^[A-Za-z0-9_.-]{1,32}$/.test(text)) {
    throw new UsageError(`--name: '${text}' must be 1 to 32 letters, digits, '_', '.' or '-'`);
  }
  return text;
}

// A flag Node's net module cannot express: refuse it, pointing at Python.
export function unsupported(flag, why) {
  throw new UsageError(`${flag}: ${why}; use the Python sample (samples/python/) for this`);
}

// Stop on SIGINT/SIGTERM with exit code 128+N, after emitting exit.
export function onStopSignals(ev) {
  process.on('SIGINT', () => ev.finish(130));
  process.on('SIGTERM', () => ev.finish(143));
}

/** --keepalive IDLE and --linger 0, the two socket options Node's net can set, into `o`. */
export function socketOptions(v, o) {
  if (v.keepalive !== undefined) {
    if (v.keepalive.includes(',')) {
      unsupported('--keepalive', "Node's net has no TCP_KEEPINTVL/TCP_KEEPCNT options (setKeepAlive() sets only the idle time: give --keepalive IDLE)");
    }
    o.keepalive = num('--keepalive', v.keepalive, { kind: 'int', lo: 1, hi: 32767 });
  }
  if (v.linger !== undefined) {
    if (num('--linger', v.linger, { kind: 'int', lo: 0 }) !== 0) {
      unsupported('--linger', "Node's net has no SO_LINGER option (only --linger 0 works, as resetAndDestroy())");
    }
    o.lingerZero = true;
  }
}
