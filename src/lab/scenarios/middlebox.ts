import { dataTimeout, humanDuration, type KernelTimers } from '../timers';
import type { BalancerSpec, Topology } from '../topology';
import { AT_ONCE, around, on, PORT, PROXY_PORT } from './common';
import type { Check, Match, ProcSpec, Scenario } from './types';

/**
 * Section C: a load balancer between the client and the servers that forgets idle flows. The
 * topology: the client on the front network, the balancer on both (its VIP on the front), two
 * servers on the back network behind it. The servers route back through the balancer, so it
 * sees both directions, as a real L4 balancer in NAT mode does.
 */

const VIP = '198.18.0.10';
const VIP_PORT = 80;
const SERVERS = ['198.18.1.2', '198.18.1.3'] as const;
/** The balancer's idle timeout in the lab (the seed's was 1800 s). */
export const IDLE_TIMEOUT = 3;
/** Longer than the idle timeout, with room for its granularity. */
const SLEEP = 5;
/** The HTTP keep-alive the servers advertise: shorter than the balancer's idle timeout. */
const KEEP_ALIVE_HEADER = 2;
/** When the pool closes an idle connection: the advertised timeout less the pool's 1 s margin (Node's agent takes 1 s off too). */
const POOL_LIMIT = KEEP_ALIVE_HEADER - 1;

function topology(forgotten: BalancerSpec['forgotten'], idleTimeout = IDLE_TIMEOUT): Topology {
  return {
    nets: [{ name: 'front' }, { name: 'back' }],
    hosts: [
      { name: 'client', links: [{ net: 'front', address: '198.18.0.2/24' }], gateway: '198.18.0.1' },
      {
        name: 'lb',
        links: [{ net: 'front', address: '198.18.0.1/24' }, { net: 'back', address: '198.18.1.1/24' }],
        extraAddresses: [`${VIP}/24`],
        balancer: { vip: VIP, port: VIP_PORT, backends: SERVERS.map((a) => `${a}:${PORT}`), idleTimeout, forgotten },
      },
      ...SERVERS.map((a, i) => ({ name: `server${i + 1}`, links: [{ net: 'back', address: `${a}/24` }], gateway: '198.18.1.1' })),
    ],
  };
}

function servers(...flags: string[]): ProcSpec[] {
  return SERVERS.map((_, i) => ({
    name: `server${i + 1}`, program: 'server', host: `server${i + 1}`,
    args: ['--host', '0.0.0.0', '--port', String(PORT), '--mode', 'http', '--keep-alive-header', String(KEEP_ALIVE_HEADER), ...flags],
  }));
}

/** A pooled HTTP connection: one request, idle for `SLEEP` seconds, then the next request on it. */
function pooled(name: string, host: string, port: number, ...flags: string[]): ProcSpec {
  return { name, program: 'client', host: 'client', args: ['--host', host, '--port', String(port), '--proto', 'http', ...flags, '--steps', `connect,request,sleep:${SLEEP},request`] };
}

const first = (proc: string): Match => ({ proc, type: 'response' });
/** The second request leaves right after the sleep: what happens to it happens then. */
const afterSleep = [SLEEP - 0.05, SLEEP + 0.6] as const;

const products =
  'Which products do what: an AWS Network Load Balancer (idle timeout 350 s) and an AWS NAT gateway answer a packet of a timed-out flow with a RST; ' +
  'an Azure Load Balancer (4 minutes by default) drops it silently unless "TCP reset on idle" is enabled, which then resets both ends when the timeout fires; ' +
  'a Linux stateful firewall with `-m conntrack --ctstate INVALID -j DROP` drops it.';

const timeoutFixes = [
  { setting: 'setsockopt SO_KEEPALIVE with TCP_KEEPIDLE below the idle timeout (e.g. 60 s behind a 350 s balancer)', why: 'each keepalive is a packet of the flow: the balancer refreshes it and never forgets it' },
  { setting: 'pool: evict connections idle longer than the shortest idle timeout on the path', why: 'the pool opens a new connection instead of reusing one the balancer has forgotten (honour the server\'s Keep-Alive: timeout=N)' },
  { setting: 'retry an idempotent request once on ECONNRESET from a reused connection', why: 'what HTTP clients do for a stale pooled connection' },
];

const seedFigure = (how: string) => (_: KernelTimers) => ({ seconds: 1800, how });

/** The l4-sleep-matrix: the seed's sleeps, scaled to the lab's idle timeout. */
const MATRIX_IDLE = 4;
const SEED_IDLE = 1800;
const SEED_SLEEPS = [0, 33, 65, 125, 185, 305, 605, 1790, 1805, 3605];
/**
 * Each seed sleep scaled by MATRIX_IDLE / 1800, except the two beside the timeout (10 s under
 * and 5 s over 1800 s, which would land 22 ms and 11 ms from it): those are kept 0.5 s either side,
 * so that what decides the cell is the side of the timeout, not the jiffy the last ACK left in.
 */
export const MATRIX_SLEEPS = SEED_SLEEPS.map((s) =>
  s === 1790 ? MATRIX_IDLE - 0.5 : s === 1805 ? MATRIX_IDLE + 0.5 : Math.round((s * MATRIX_IDLE / SEED_IDLE) * 1000) / 1000);

function matrixChecks(): Check[] {
  const checks: Check[] = [];
  for (const target of ['vip', 'direct']) {
    for (const keepalive of [false, true]) {
      for (const sleep of MATRIX_SLEEPS) {
        // The seed's result: only through the VIP, without keepalive, idle past the timeout.
        const fails = target === 'vip' && !keepalive && sleep > MATRIX_IDLE;
        // The headline: the first cell past the timeout, reset about when its sleep ends.
        const primary = fails && sleep === MATRIX_IDLE + 0.5;
        checks.push({
          match: { proc: 'probes', type: 'probe', ...(fails ? { errno: 'ECONNRESET' } : {}), where: { target, keepalive, sleep, ok: !fails } },
          // Timed from the cell's own connection, not from the lab's start: the servers and the
          // probes take a second or more to start on a loaded machine.
          from: { proc: 'probes', type: 'connected', where: { target, keepalive, sleep } },
          ...(primary ? { primary, within: [sleep, sleep + 2] as const } : {}),
          says: `${target}, keepalive ${keepalive ? 'on' : 'off'}, idle ${sleep} s: ${fails ? 'reset' : 'works'}`,
        });
      }
    }
  }
  return checks;
}

/** client -- front -- relay -- back -- server: a forwarding proxy on a host of its own. */
const RELAY: Topology = {
  nets: [{ name: 'front' }, { name: 'back' }],
  hosts: [
    { name: 'client', links: [{ net: 'front', address: '198.18.0.2/24' }] },
    { name: 'relay', links: [{ net: 'front', address: '198.18.0.1/24' }, { net: 'back', address: '198.18.1.1/24' }] },
    { name: 'server', links: [{ net: 'back', address: '198.18.1.2/24' }] },
  ],
};

export const middleboxScenarios: readonly Scenario[] = [
  {
    id: 'l4-idle-reset',
    title: `A load balancer forgets an idle pooled connection: ECONNRESET (104) on its next request`,
    section: 'middlebox',
    summary: `Client -> VIP ${VIP}:${VIP_PORT} -> two servers; the balancer forgets flows idle for ${IDLE_TIMEOUT} s and answers their packets with a RST. A pooled HTTP connection idles ${SLEEP} s, ignoring the servers' Keep-Alive: timeout=${KEEP_ALIVE_HEADER}; a second client goes to a server directly.`,
    topology: topology('reset'),
    procs: [...servers(), pooled('client', VIP, VIP_PORT), pooled('direct', SERVERS[0], PORT)],
    expect: [
      { match: on.client('error', { errno: 'ECONNRESET' }), from: first('client'), within: afterSleep, primary: true, says: 'the request on the forgotten connection is reset by the balancer' },
      { match: { proc: 'direct', type: 'response', nth: 2 }, from: first('direct'), within: afterSleep, says: 'the same idle time, direct to a server: the request works' },
    ],
    deadline: 12,
    explanation:
      `The balancer keeps one conntrack entry per flow, and forgets it after ${IDLE_TIMEOUT} s without a packet (nf_conntrack_tcp_timeout_established; the seed's load balancer: 30 minutes). ` +
      'Neither end knows: their sockets stay ESTABLISHED. The next request reaches the balancer as a mid-stream packet of no known flow; with no entry there is no DNAT to a server, so the VIP itself answers, with a RST, and the client\'s read fails with ECONNRESET. ' +
      'The server never sees the request and still holds its end, half-open, until its own timeouts. The direct connection crosses the same box as a router, which tracks but does not translate it: forgotten or not, it is forwarded. ' +
      products,
    defaults: seedFigure('a pooled connection idle for more than 30 minutes behind the seed\'s balancer; 350 s behind an AWS NLB, 4 minutes behind an Azure LB'),
    fixes: timeoutFixes,
  },
  {
    id: 'l4-idle-keepalive',
    title: 'TCP keepalive below the idle timeout keeps the flow alive: the request works',
    section: 'middlebox',
    summary: `As l4-idle-reset, with SO_KEEPALIVE on the client's socket (idle 1 s, interval 1 s): each probe is a packet of the flow, which the balancer refreshes.`,
    topology: topology('reset'),
    procs: [...servers(), pooled('client', VIP, VIP_PORT, '--keepalive', '1,1,3')],
    expect: [{ match: on.client('response', { nth: 2 }), from: first('client'), within: afterSleep, primary: true, says: 'the second request works after the idle time' }],
    deadline: 12,
    explanation:
      `A keepalive probe is an empty segment the peer must ACK; both cross the balancer, and each resets the flow's idle timer to ${IDLE_TIMEOUT} s (the conntrack view shows the flow refreshed every second). ` +
      'The keepalive idle time must be below the shortest idle timeout on the path: Linux\'s default of 7200 s is far above every cloud balancer\'s, so keepalive only helps when the application sets TCP_KEEPIDLE (or the sysctl is lowered).',
    defaults: seedFigure('with the default tcp_keepalive_time of 7200 s, no probe is sent before the balancer forgets the flow at 1800 s: keepalive must be tuned to help'),
    fixes: [timeoutFixes[0]!],
  },
  {
    id: 'l4-idle-silent-drop',
    title: 'A load balancer that drops forgotten flows: the request hangs, then ETIMEDOUT (110)',
    section: 'middlebox',
    summary: `As l4-idle-reset, but the balancer drops packets of forgotten flows instead of resetting them; the client sets TCP_USER_TIMEOUT=2000 ms.`,
    topology: topology('drop'),
    procs: [...servers(), pooled('client', VIP, VIP_PORT, '--user-timeout', '2000')],
    expect: [{
      match: on.client('error', { errno: 'ETIMEDOUT' }), from: first('client'), primary: true,
      within: () => { const [lo, hi] = around(dataTimeout(0, { userTimeoutMs: 2000 }).failAt); return [SLEEP + lo, SLEEP + hi]; },
      says: 'the request is retransmitted into the void until TCP_USER_TIMEOUT',
    }],
    deadline: 14,
    explanation:
      'Same cause as l4-idle-reset, another symptom: no RST comes back, so the client\'s kernel retransmits the request with a doubling RTO until TCP_USER_TIMEOUT (here 2 s from the first retransmission) or, without it, tcp_retries2 (15: about 15 minutes) gives up with ETIMEDOUT. ' +
      'In the logs it looks like a slow or hung server, not a reset: that is why a silent drop is the harder one to diagnose. ' +
      products,
    defaults: (d) => ({ seconds: SEED_IDLE + dataTimeout(d.retries2).failAt, how: `idle past the balancer's timeout, then tcp_retries2=${d.retries2}: about ${humanDuration(dataTimeout(d.retries2).failAt)} of retransmissions before ETIMEDOUT` }),
    fixes: [{ setting: 'setsockopt(IPPROTO_TCP, TCP_USER_TIMEOUT, 10000) and an application request timeout', why: 'the hang ends in seconds, and the pool drops the connection' }, ...timeoutFixes],
  },
  {
    id: 'l4-idle-pool-eviction',
    title: 'An HTTP pool that honours Keep-Alive: timeout=N drops the idle connection first: no error',
    section: 'middlebox',
    summary: `As l4-idle-reset; the servers advertise Keep-Alive: timeout=${KEEP_ALIVE_HEADER} (below the balancer's ${IDLE_TIMEOUT} s) and the client's pool honours it.`,
    topology: topology('reset'),
    procs: [...servers(), pooled('client', VIP, VIP_PORT, '--pool', 'honour')],
    expect: [
      { match: on.client('pool-evict'), from: first('client'), within: [POOL_LIMIT - 0.05, POOL_LIMIT + 0.5], says: `the pool closes the connection once idle ${POOL_LIMIT} s (timeout=${KEEP_ALIVE_HEADER} less its 1 s margin)` },
      { match: { proc: 'server1', type: 'eof' }, from: first('client'), within: [POOL_LIMIT - 0.05, POOL_LIMIT + 0.6], says: 'the server sees that close: the FIN crossed a balancer that still knew the flow' },
      { match: on.client('response', { nth: 2 }), from: first('client'), within: afterSleep, primary: true, says: 'the request goes out on a new connection and works' },
    ],
    deadline: 12,
    explanation:
      `The server's Keep-Alive header says how long it will keep an idle connection; a pool that reads it closes the connection once idle that long (less a safety margin) and opens a new one for the next request. ` +
      'It closes it on a timer, not at the next request: the FIN then crosses a balancer that still knows the flow and reaches the server, which frees its end too. ' +
      `Set below the balancer's idle timeout, the pool never reuses a connection the balancer may have forgotten. l4-idle-reset runs the same servers with a pool that ignores the header (as many clients' defaults do): reset.`,
    defaults: seedFigure('never fails while the advertised keep-alive is below every idle timeout on the path'),
    fixes: [timeoutFixes[1]!],
  },
  {
    id: 'l4-sleep-matrix',
    title: 'The seed\'s experiment: idle times around the timeout, with and without keepalive, via the VIP and direct',
    section: 'middlebox',
    summary: `Connections idle ${MATRIX_SLEEPS.join(', ')} s (the seed's sleeps scaled to a ${MATRIX_IDLE} s timeout) between two requests, each through the VIP and direct to a server, with keepalive off and on; all at once.`,
    topology: topology('reset', MATRIX_IDLE),
    procs: [
      ...servers(),
      {
        name: 'probes', program: 'probes', host: 'client',
        args: ['--target', `vip=${VIP}:${VIP_PORT}`, '--target', `direct=${SERVERS[0]}:${PORT}`, '--sleeps', MATRIX_SLEEPS.join(','), '--keepalive', '1,1,3', '--proto', 'http', '--user-timeout', '3000'],
      },
    ],
    expect: matrixChecks(),
    deadline: 20,
    explanation:
      `The seed's table, reproduced: only the connections through the VIP, without keepalive, idle longer than the balancer's timeout fail (with ECONNRESET, the balancer answering for a flow it forgot). ` +
      'Below the timeout the flow is still known; with keepalive the probes refresh it; direct to the server, the same box only routes and forwards even a flow it forgot. ' +
      `Times are the seed's scaled by ${MATRIX_IDLE}/${SEED_IDLE}, except the two beside the timeout (1790 s and 1805 s), kept half a second either side of it.`,
    defaults: seedFigure('the seed\'s run: 3605 s for the longest sleep, about an hour'),
    fixes: timeoutFixes,
  },
  {
    id: 'relay-host-kill',
    title: 'A forwarding proxy on its own host is killed: each end sees only its own leg close',
    section: 'middlebox',
    summary: 'client -> relay host (a byte-forwarding proxy like rinetd) -> server host, echo requests; the proxy process is killed with SIGKILL mid-connection.',
    topology: RELAY,
    procs: [
      { name: 'server', program: 'server', host: 'server', args: ['--host', '0.0.0.0', '--port', String(PORT), '--mode', 'echo'] },
      { name: 'proxy', program: 'proxy', host: 'relay', args: ['--listen-host', '198.18.0.1', '--listen-port', String(PROXY_PORT), '--target', `198.18.1.2:${PORT}`] },
      { name: 'client', program: 'client', host: 'client', args: ['--host', '198.18.0.1', '--port', String(PROXY_PORT), '--steps', 'connect,request,idle'] },
    ],
    triggers: [{ on: on.client('received'), delay: 0.3, do: [{ kill: 'proxy', signal: 'SIGKILL' }] }],
    expect: [
      { match: on.client('eof'), from: on.lab('killed'), within: AT_ONCE, primary: true, says: 'the client leg closed with a FIN from the relay host' },
      { match: on.server('eof'), from: on.lab('killed'), within: AT_ONCE, says: 'the server leg closed too, on another wire' },
    ],
    deadline: 6,
    explanation:
      'The relay holds two connections per client, one on each network: 198.18.0.2 to the relay, the relay\'s 198.18.1.1 to the server. When the process dies, the relay host\'s kernel closes both with a FIN; the client and the server each see their own leg end, at their own host, and neither learns anything about the other. ' +
      'The sockets view shows the four sockets on three hosts: the client\'s, the relay\'s two, the server\'s. Had the relay host lost power instead, no FIN would come: both legs would stay open until keepalive or a timeout (see half-open-idle).',
    defaults: () => ({ seconds: 0, how: 'immediate' }),
    fixes: [{ setting: 'clients: reconnect on EOF; servers: an idle timeout or keepalive', why: 'each side only learns of the relay through its own leg' }],
  },
];
