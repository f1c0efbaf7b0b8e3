/**
 * The privileged lab helper (`dist/lab-helper.js`): what the editor starts once per session
 * through `sudo` where the host forbids unprivileged user namespaces. It runs as root and
 * takes orders only from its stdin, a pipe the editor holds: one JSON message per line
 * (src/lab/helperProtocol.ts), each validated before the engine sees it. It never reads a
 * password (sudo consumed that line before this process existed) and never prints one.
 *
 * When stdin closes, the editor is gone (however it died): every run stops, its namespace
 * goes with it, the host rules it applied for the editor are removed, and this process exits.
 * Host rules are owned by this process: if it is killed before it can remove them, the sweep
 * the editor asks of the next helper as it starts removes them (their owner is dead).
 */
import { LabError } from './lab/errors';
import { Logger, type LogLevel } from './lab/log';
import {
  errorBody, errorMessage, encodeMessage, decodeLine, hostSeqOf, HOST_REQUESTS, LineSplitter, MAX_REQUEST_LINE, parseToHelper, runIdOf, scenarioOf,
  type FromHelper, type HelperRunOptions, type HostRequest, type ToHelper,
} from './lab/helperProtocol';
import { processOwner, ownerText } from './lab/hostRules';
import { HostSession, sweepHost } from './lab/hostSession';
import type { LabProcess } from './lab/processes';
import { runScenario, type LiveLab } from './lab/runner';
import type { Scenario } from './lab/scenarios';
import { sweepStaleRunDirs } from './lab/tempDirs';

interface HelperRun {
  controller: AbortController;
  procs: Map<number, LabProcess>;
  live?: LiveLab;
  finished: Promise<void>;
}

/** How long runs get to tear down after the editor has gone, before the helper exits anyway. */
const SHUTDOWN_GRACE_MS = 10_000;

const runs = new Map<string, HelperRun>();
let nextProc = 1;
let outputClosed = false;
let shuttingDown = false;
/** The editor's host rules, made on the first host request. */
let host: HostSession | undefined;

function send(message: FromHelper): void {
  if (outputClosed) return;
  try {
    process.stdout.write(encodeMessage(message));
  } catch {
    outputClosed = true;
  }
}

function logger(runId?: string): Logger {
  // Every level the engine uses goes across; the editor's own Logger filters.
  return new Logger({ write: (level: LogLevel, message: string) => send({ type: 'log', ...(runId ? { runId } : {}), level, message }) }, 'debug');
}

const log = logger();

/**
 * The user who ran sudo (sudo sets SUDO_UID and SUDO_GID): the programs of a run go back to
 * them, so their own command is never run as root by the lab. None when root ran the helper.
 */
const programsAs = sudoUser(process.env);

function sudoUser(env: NodeJS.ProcessEnv): { uid: number; gid: number } | undefined {
  const uid = Number(env.SUDO_UID ?? NaN);
  const gid = Number(env.SUDO_GID ?? NaN);
  return Number.isInteger(uid) && uid > 0 && Number.isInteger(gid) && gid >= 0 ? { uid, gid } : undefined;
}

function startRun(runId: string, scenario: Scenario, options: HelperRunOptions): void {
  if (shuttingDown) {
    send(errorMessage(new LabError('the lab helper is shutting down'), runId));
    return;
  }
  if (runs.has(runId)) {
    send(errorMessage(new LabError('a run with this id is already going', { field: 'runId', value: runId }), runId));
    return;
  }
  const controller = new AbortController();
  const run: HelperRun = { controller, procs: new Map(), finished: Promise.resolve() };
  runs.set(runId, run);
  run.finished = runScenario(scenario, {
    ...options,
    log: logger(runId),
    mode: 'root',
    ...(programsAs ? { programsAs } : {}),
    signal: controller.signal,
    onEvent: (event) => send({ type: 'event', runId, event }),
    onProgress: (progress) => send({ type: 'progress', runId, progress }),
    onLive: (live) => {
      run.live = live;
      send({ type: 'live', runId, mode: live.mode, pid: live.pid, ...(live.hosts?.length ? { hosts: live.hosts } : {}) });
    },
    onProcess: (p) => {
      const proc = nextProc++;
      run.procs.set(proc, p);
      send({ type: 'process', runId, proc, name: p.name, pid: p.pid, argv: [...p.argv] });
      p.onData((data) => send({ type: 'data', runId, proc, data }));
      p.onExit((e) => send({ type: 'exit', runId, proc, code: e.code, signal: e.signal }));
    },
  }).then(
    (result) => send({ type: 'result', runId, result }),
    (e: unknown) => send(errorMessage(e, runId)),
  ).finally(() => runs.delete(runId));
}

type HostReply = Extract<FromHelper, { type: 'host' }>;

/** Every host request gets one `host` reply: the rules after it, and its result or refusal. */
async function handleHost(m: HostRequest): Promise<void> {
  const reply: HostReply = { type: 'host', seq: m.seq, rules: [] };
  try {
    if (m.type === 'hostApply' && shuttingDown) throw new LabError('the lab helper is shutting down: no new host rule');
    if (m.type === 'hostSweep') {
      reply.swept = await sweepHost(log);
      if (reply.swept.removed.length) log.info(`removed ${reply.swept.removed.length} host rule(s) left by a lab that was killed`);
    } else {
      // The owner is this process: its exit path (shutdown) removes what it applied.
      const session = (host ??= new HostSession(log));
      if (m.type === 'hostApply') reply.applied = await session.apply(m.rule, m.backend, m.protect);
      else if (m.type === 'hostRemove') await session.remove(m.id);
      else if (m.type === 'hostRemoveAll') {
        const errors = await session.removeAll();
        if (errors.length) reply.errors = errors.map(errorBody);
      }
    }
  } catch (e) {
    reply.error = errorBody(e);
  }
  try {
    reply.rules = host ? await host.list() : [];
  } catch (e) {
    reply.error ??= errorBody(e);
  }
  send(reply);
}

function isHostRequest(m: ToHelper): m is HostRequest {
  return (HOST_REQUESTS as readonly string[]).includes(m.type);
}

async function handle(m: ToHelper): Promise<void> {
  if (m.type === 'shutdown') return shutdown('the editor asked');
  if (isHostRequest(m)) return handleHost(m);
  if (m.type === 'run') return startRun(m.runId, scenarioOf(m), m.options);
  const run = runs.get(m.runId);
  switch (m.type) {
    case 'stop':
      run?.controller.abort();
      return;
    case 'input':
      run?.procs.get(m.proc)?.write(m.data);
      return;
    case 'resize':
      run?.procs.get(m.proc)?.resize(m.cols, m.rows);
      return;
    case 'kill':
      run?.procs.get(m.proc)?.kill(m.signal);
      return;
    case 'counters': {
      const counters = run?.live ? await run.live.counters().catch(() => new Map()) : new Map();
      send({ type: 'counters', runId: m.runId, seq: m.seq, counters: [...counters] });
      return;
    }
    case 'perform': {
      // Manual mode: the user's own step, run and marked like a scripted trigger's.
      let error;
      if (!run?.live) error = errorBody(new LabError('the run is not live (not started yet, or over)', { field: 'runId', value: m.runId }));
      else await run.live.perform(m.actions).catch((e: unknown) => { error = errorBody(e); });
      send({ type: 'performed', runId: m.runId, seq: m.seq, ...(error ? { error } : {}) });
      return;
    }
    default: {
      const never: never = m;
      throw new Error(`unhandled message ${JSON.stringify(never)}`);
    }
  }
}

function onLine(line: string): void {
  let value: unknown;
  try {
    value = decodeLine(line);
    void handle(parseToHelper(value)).catch((e: unknown) => send(errorMessage(e, runIdOf(value))));
  } catch (e) {
    // A refused host request is answered by its seq, so the editor's wait ends with the reason.
    const seq = hostSeqOf(value);
    if (seq !== undefined) send({ type: 'host', seq, rules: [], error: errorBody(e) });
    else send(errorMessage(e, runIdOf(value)));
  }
}

/** Stops every run, waits for their teardown (bounded), and exits. */
async function shutdown(why: string): Promise<void> {
  if (shuttingDown) return;
  shuttingDown = true;
  if (runs.size) log.info(`lab helper: ${why}: stopping ${runs.size} run(s)`);
  const finished = [...runs.values()].map((r) => {
    r.controller.abort();
    return r.finished;
  });
  const force = setTimeout(() => process.exit(1), SHUTDOWN_GRACE_MS);
  await Promise.all(finished);
  if (host) {
    const left = await host.close();
    log.info(`lab helper: ${why}: host rules removed${left.length ? ` (${left.length} could not be: the next helper's sweep takes them)` : ''}`);
  }
  clearTimeout(force);
  process.exit(0);
}

function main(): void {
  // stdout is the protocol: a stray console.log from anywhere must not corrupt it.
  for (const k of ['log', 'info', 'debug'] as const) console[k] = (...args: unknown[]) => console.error(...args);
  process.stdout.on('error', () => {
    outputClosed = true;
    void shutdown('the editor stopped reading');
  });
  const uid = process.getuid?.() ?? -1;
  if (uid !== 0) {
    send({ type: 'error', message: `the lab helper must run as root (uid 0), not uid ${uid}`, hint: 'start it through sudo' });
    process.exit(1);
  }
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(signal, () => void shutdown(`got ${signal}`));
  const swept = sweepStaleRunDirs();
  if (swept) log.info(`removed ${swept} run folder(s) left by a lab that was killed`);

  const lines = new LineSplitter(onLine, () => send(errorMessage(new Error(`a message longer than ${MAX_REQUEST_LINE} bytes was dropped`))), MAX_REQUEST_LINE);
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (chunk: string) => lines.push(chunk));
  process.stdin.on('end', () => void shutdown('the editor closed the pipe'));
  process.stdin.on('error', () => void shutdown('the pipe from the editor broke'));
  // The editor asks for a hostSweep once this is ready (PrivilegedLab.start): every message
  // after this line answers one of the editor's.
  send({ type: 'ready', pid: process.pid, uid, owner: ownerText(processOwner()) });
}

main();
