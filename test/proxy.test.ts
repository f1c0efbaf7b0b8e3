/**
 * Section D for real: a real nginx proxying to a real nginx, curl in front, iptables between.
 * What is asserted is what a user sees: curl's HTTP status and time, curl's exit code, the
 * sockets the kernel shows; expected values are written here from SCENARIOS.md, not read from
 * the catalog.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { labEnv } from '../src/lab/exec';
import { missingTools } from '../src/lab/preflight';
import { ensureTestUser, isRoot, runJson, settledLeftovers } from './support/lab';
import { becameEstablished, type StreamEvent } from './support/transitions';

type Ev = StreamEvent & Record<string, unknown>;

const UPSTREAM = '198.18.1.2:7000';
/** A 2 s nginx timer, as the client sees it: never early, late by an event-loop turn and a curl exit. */
const TWO_SECONDS: [number, number] = [1.94, 2.5];

interface Json {
  id: string;
  verdict: string;
  mode: string;
  measured: { outcome: string | null; seconds: number | null };
  checks: { says: string; status: string; reason?: string }[];
  error?: string;
}

/** What each scenario must show, from its own events and the kernel's sockets. */
const SPEC: Record<string, { outcome: string; seconds: [number, number]; see(ev: Ev[]): string[] }> = {
  'nginx-connect-timeout': {
    outcome: 'response',
    seconds: TWO_SECONDS,
    see: (ev) => [
      ...gatewayTimeout(ev, 'connect'),
      // A new connection: the proxy's socket to the upstream sat in SYN-SENT.
      ...(ev.some((e) => e.source === 'socket' && e.state === 'SYN-SENT' && e.conn?.endsWith(`>${UPSTREAM}`)) ? [] : ['no SYN-SENT socket to the upstream']),
    ],
  },
  'nginx-send-timeout': { outcome: 'response', seconds: TWO_SECONDS, see: (ev) => [...gatewayTimeout(ev, 'send', 'uploaded'), ...afterTheFault(ev)] },
  'nginx-read-timeout': {
    outcome: 'response',
    seconds: TWO_SECONDS,
    see: (ev) => {
      // Both legs of the proxied request, each seen at both of its hosts: curl's on the front
      // wire, the proxy's on the back one.
      const legs = new Set(ev.filter(becameEstablished)
        .map((e) => `${e.at} ${String(e.conn).replace(/:\d+(?=>)|:\d+$/g, (m) => (m === ':7000' || m === ':7001' ? m : ':*'))}`));
      const want = ['client 198.18.0.2:*>198.18.0.1:7001', 'proxy 198.18.0.1:7001>198.18.0.2:*', 'proxy 198.18.1.1:*>198.18.1.2:7000', 'upstream 198.18.1.2:7000>198.18.1.1:*'];
      return [...gatewayTimeout(ev, 'read'), ...afterTheFault(ev), ...want.filter((w) => !legs.has(w)).map((w) => `no socket ${w}`)];
    },
  },
  'nginx-upstream-idle-close': {
    outcome: 'idle-close',
    seconds: TWO_SECONDS,
    see: (ev) => {
      const problems: string[] = [];
      // The side that closes first ends in TIME-WAIT: here the upstream's end of the pooled connection.
      if (!ev.some((e) => e.source === 'socket' && e.state === 'TIME-WAIT' && e.conn?.startsWith(`${UPSTREAM}>`))) problems.push('the upstream\'s socket never reached TIME-WAIT: it did not close first');
      const statuses = ev.filter((e) => e.proc === 'curl' && e.type === 'response').map((e) => e.status);
      if (JSON.stringify(statuses) !== '[200,200]') problems.push(`curl statuses ${JSON.stringify(statuses)}, expected two 200s`);
      return problems;
    },
  },
  'slow-client-speed-limit': {
    outcome: 'error',
    seconds: [3, 4.6],
    see: (ev) => {
      const problems: string[] = [];
      const err = ev.find((e) => e.proc === 'curl' && e.type === 'error');
      if (err?.curl !== 28) problems.push(`curl ended with ${JSON.stringify(err ?? null)}, expected exit 28`);
      if (ev.some((e) => e.proc === 'curl' && e.type === 'response')) problems.push('curl got a response: something answered the trickle');
      if (ev.some((e) => e.proc === 'nginx' && /timeout$/.test(e.type))) problems.push('an nginx timeout fired');
      return problems;
    },
  },
};

/**
 * curl got a 504 about 2 s after the timer's start, and nginx said which of its timers fired. The
 * start is curl's own (its time_total), or for the send timer, the end of curl's upload: the 4 MB
 * before it take a while on a loaded machine.
 */
function gatewayTimeout(ev: Ev[], op: string, from?: 'uploaded'): string[] {
  const problems: string[] = [];
  const last = ev.filter((e) => e.proc === 'curl' && e.type === 'response').at(-1);
  const start = from && ev.find((e) => e.proc === 'curl' && e.type === from && e.n === last?.n);
  const took = !last ? null : from ? (start ? last.t - start.t : null) : last.took;
  if (last?.status !== 504) problems.push(`last curl response ${JSON.stringify(last ?? null)}, expected status 504`);
  else if (typeof took !== 'number' || took < TWO_SECONDS[0] || took > TWO_SECONDS[1]) problems.push(`curl took ${took} s for the 504${from ? ` from ${from}` : ''} (${last.took} s in all)`);
  if (!ev.some((e) => e.proc === 'nginx' && e.type === 'upstream-timeout' && e.op === op)) problems.push(`nginx logged no upstream timeout while ${op}`);
  return problems;
}

/**
 * The second request left only once the drop was in place: curl waited for the lab's word, which
 * came after the rule was applied. (A fixed sleep lost that race on a loaded machine: the rule
 * took 0.5 s to apply, and the request went through before it.)
 */
function afterTheFault(ev: Ev[]): string[] {
  const fault = ev.find((e) => e.source === 'lab' && e.type === 'fault');
  const resumed = ev.find((e) => e.proc === 'curl' && e.type === 'resumed');
  const second = ev.find((e) => e.proc === 'curl' && e.type === 'request' && e.n === 2);
  if (!fault || !second) return [`no fault (${!!fault}) or no second request (${!!second})`];
  if (resumed?.by !== 'lab') return [`curl went on without the lab's word: ${JSON.stringify(resumed ?? null)}`];
  const inPlace = fault.t + (fault.took as number);
  return second.t >= inPlace ? [] : [`the second request left ${(inPlace - second.t).toFixed(3)} s before the rule was in place`];
}

async function runSection(as: 'self' | 'user', mode: string, t: { diagnostic(m: string): void }): Promise<void> {
  const run = await runJson<Json, Ev>(['--section', 'proxy'], as);
  t.diagnostic(`${mode}: ${run.summary}`);
  const { results, events } = run;
  assert.deepEqual(results.map((r) => r.id).sort(), Object.keys(SPEC).sort(), 'the run covers exactly section D');
  const problems: string[] = [];
  for (const r of results) {
    const spec = SPEC[r.id]!;
    const say = (m: string) => problems.push(`${r.id}: ${m}`);
    if (r.mode !== mode) say(`ran in ${r.mode} mode`);
    if (r.verdict !== 'pass') say(`${r.verdict}: ${r.error ?? r.checks.filter((c) => c.status !== 'pass').map((c) => `${c.says}: ${c.reason ?? c.status}`).join('; ')}`);
    if (r.measured.outcome !== spec.outcome) say(`outcome ${r.measured.outcome}, expected ${spec.outcome}`);
    const s = r.measured.seconds;
    if (s === null || s < spec.seconds[0] || s > spec.seconds[1]) say(`${s} s, outside ${spec.seconds[0]}-${spec.seconds[1]} s`);
    for (const p of spec.see(events.filter((e) => e.scenario === r.id))) say(p);
  }
  assert.deepEqual(problems, []);
  assert.equal(run.code, 0, 'exit status 0 when every verdict passes');
  assert.deepEqual(await settledLeftovers(), [], 'nothing left behind');
  assert.equal(execFileSync('ps', ['-eo', 'args='], { encoding: 'utf8' }).split('\n').filter((l) => /nginx -p .*tcp-lab-/.test(l)).length, 0, 'no nginx outlives its lab');
}

const missing = missingTools(['nginx', 'curl'], labEnv().PATH ?? '');

describe('section D (a real nginx), run for real', { skip: missing.length ? `needs ${missing.join(' and ')}: apt-get install ${missing.join(' ')}` : false }, () => {
  before(() => {
    if (isRoot) ensureTestUser();
  });
  after(async () => assert.deepEqual(await settledLeftovers(), []));

  test('as root', { skip: isRoot ? false : 'needs root (the rootless path runs below)' }, async (t) => {
    await runSection('self', 'root', t);
  });

  test('as an unprivileged user (rootless namespaces)', async (t) => {
    await runSection(isRoot ? 'user' : 'self', 'rootless', t);
  });
});

test('a scenario whose program is not installed says which, before building anything', async () => {
  const { runScenario } = await import('../src/lab/runner');
  const { findScenario } = await import('../src/lab/scenarios');
  const { silentLogger } = await import('../src/lab/log');
  const r = await runScenario({ ...findScenario('nginx-read-timeout'), requires: ['nginx', 'curl', 'tcp-lab-no-such-proxy'] }, { log: silentLogger });
  assert.equal(r.verdict, 'fail');
  assert.match(r.error ?? '', /^nginx-read-timeout needs tcp-lab-no-such-proxy, not installed here/);
  assert.equal(r.mode, null, 'no namespace was made');
});
