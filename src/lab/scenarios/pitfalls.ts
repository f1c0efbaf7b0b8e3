import { DELAYED_ACK_MIN, humanDuration, synTimeout, TIME_WAIT_LEN, type KernelTimers } from '../timers';
import { AT_ONCE, around, client, DROP, on, PORT, server, toServer } from './common';
import type { Band, Check, DefaultFigure, Fix, MatrixCell, ProcSpec, Scenario, Stat } from './types';

// ---------------------------------------------------------------------------------------------
// Connect without a timeout, under a supervisor
// ---------------------------------------------------------------------------------------------

/**
 * The supervisor's patience: the article's monitor killed workers silent for 60 s while their
 * connect() waited out the kernel's SYN retries (63 s then, 131 s on 6.18). Scaled down so the
 * lab shows it in seconds, with the kernel's SYN timers left at their defaults: the worker is
 * killed between the SYNs at 4 s and 5 s, and every fix below finishes well before.
 */
export const SUPERVISOR_SILENCE = 4.5;

/** A supervisor running the sample client as its `worker`, connecting with `flags`. */
function supervised(...flags: string[]): ProcSpec {
  return {
    name: 'supervisor',
    program: 'supervisor',
    args: ['--silence', String(SUPERVISOR_SILENCE), '--worker-name', 'worker', '--',
      '--host', '127.0.0.1', '--port', String(PORT), ...flags, '--steps', 'connect'],
  };
}

const worker = (type: string, extra: Parameters<typeof on.client>[1] = {}) => ({ ...on.client(type, extra), proc: 'worker' });
const supervisor = (type: string) => ({ proc: 'supervisor', type });

const blockingConnect = (t: Pick<KernelTimers, 'synRetries' | 'synLinearTimeouts'>) => {
  const s = synTimeout(t);
  return `a blocking connect() with no timeout returns ETIMEDOUT only after ${humanDuration(s.failAt)} ` +
    `(${s.sends.length} SYNs, tcp_syn_retries=${t.synRetries}${t.synLinearTimeouts === null ? '' : `, tcp_syn_linear_timeouts=${t.synLinearTimeouts}`}), ` +
    'past the article\'s 60 s supervisor';
};

const TIMEOUT_FIXES: readonly Fix[] = [
  { setting: 'non-blocking connect() + poll(POLLOUT, timeout), then getsockopt(SO_ERROR)', why: 'the classic bound (Stevens): the application picks the limit, and SO_ERROR tells a refusal from a success' },
  { setting: 'setsockopt(SOL_SOCKET, SO_SNDTIMEO, {1, 0}) before a blocking connect()', why: 'bounds the call, but it fails with EINPROGRESS (115), not ETIMEDOUT: the handshake goes on in the kernel until the socket is closed' },
  { setting: 'setsockopt(IPPROTO_TCP, TCP_SYNCNT, 1)', why: 'fewer SYN retransmissions for this socket: a real ETIMEDOUT (110) after about 3 s' },
  { setting: 'a supervisor limit above the worst connect time, or a heartbeat from a thread that does not block', why: 'a worker that is waiting is not a worker that is stuck' },
];

const SUPERVISOR_TAIL =
  ` The supervisor here (samples/python/supervisor.py) reads its worker's output and kills it after ${SUPERVISOR_SILENCE} s of silence; the kernel's SYN timers are left at their defaults, so only the timeout chosen by the worker bounds its connect.`;

function supervisedFix(id: string, title: string, flag: string[], check: Check, explanation: string, defaults: (d: KernelTimers) => DefaultFigure): Scenario {
  return {
    id,
    title,
    section: 'pitfalls',
    summary: `SYNs to the server are dropped; the supervised worker connects with ${flag.join(' ')} and finishes before the supervisor's ${SUPERVISOR_SILENCE} s.`,
    procs: [server('echo'), supervised(...flag)],
    triggers: [{ on: 'begin', do: [{ apply: toServer(DROP) }] }],
    expect: [
      check,
      { match: supervisor('worker-exit'), within: AT_ONCE, says: 'the worker exits on its own: the supervisor never has to kill it' },
    ],
    deadline: SUPERVISOR_SILENCE + 6,
    explanation: explanation + SUPERVISOR_TAIL,
    defaults,
    fixes: TIMEOUT_FIXES,
  };
}

const connectScenarios: Scenario[] = [
  {
    id: 'connect-no-timeout',
    title: `A connect with no timeout outlives the supervisor: killed after ${SUPERVISOR_SILENCE} s`,
    section: 'pitfalls',
    summary: `A supervised worker connects with no timeout to a port whose SYNs are dropped; the supervisor kills workers silent for ${SUPERVISOR_SILENCE} s.`,
    procs: [server('echo'), supervised()],
    triggers: [{ on: 'begin', do: [{ apply: toServer(DROP) }] }],
    expect: [
      { match: worker('connect-start'), says: 'the worker calls connect() and blocks' },
      {
        match: supervisor('worker-killed'),
        within: [SUPERVISOR_SILENCE, SUPERVISOR_SILENCE * 1.05 + 0.5],
        primary: true,
        says: 'the supervisor kills the worker while the kernel is still retransmitting its SYN',
      },
    ],
    deadline: SUPERVISOR_SILENCE + 8,
    explanation:
      'connect() on a blocking socket has no timeout argument: it sleeps until the handshake completes or the kernel gives up, and with the default tcp_syn_retries=6 the kernel gives up after about 2 minutes (127 s of doubling RTOs, 131 s on kernels with tcp_syn_linear_timeouts). ' +
      'A supervisor that takes silence for a hang kills the worker first, in the middle of the SYN retries: the DROP rule\'s packet counter below is the number of SYNs the kernel had sent by then. ' +
      'The kill looks like a crash of the worker; the cause is a missing connect timeout and an unreachable backend.' + SUPERVISOR_TAIL,
    defaults: (d) => ({ seconds: synTimeout(d).failAt, how: blockingConnect(d) }),
    fixes: TIMEOUT_FIXES,
  },
  supervisedFix(
    'connect-timeout-poll',
    'Non-blocking connect + poll: the worker gives up after its own 2 s',
    ['--connect-timeout', '2'],
    { match: worker('timeout', { op: 'connect' }), from: worker('connect-start'), within: [2, 2.4], primary: true, says: 'poll() returns nothing after 2 s: the application\'s timeout, no errno from the kernel' },
    'The worker sets O_NONBLOCK, calls connect() (EINPROGRESS at once), and waits in poll() for POLLOUT with a 2 s limit. Nothing comes, so the application decides the connect failed: there is no errno, since the kernel has not failed anything; closing the socket ends the SYN retries. When poll() does report POLLOUT, SO_ERROR says whether the connect succeeded or why not.',
    () => ({ seconds: 2, how: 'the same 2 s: the application\'s own timeout does not depend on the kernel\'s timers' }),
  ),
  supervisedFix(
    'connect-sndtimeo',
    'SO_SNDTIMEO bounds a blocking connect: EINPROGRESS (115), not ETIMEDOUT',
    ['--sndtimeo', '1'],
    {
      match: worker('error', { op: 'connect', errno: 'EINPROGRESS' }),
      from: worker('connect-start'),
      within: [1, 1.3],
      primary: true,
      says: 'after 1 s connect() fails with EINPROGRESS (115), not ETIMEDOUT (110): code that only checks for ETIMEDOUT misreads it',
    },
    'A blocking connect() waits for the handshake as long as the socket\'s send timeout allows (inet_stream_connect takes it from sock_sndtimeo). When SO_SNDTIMEO expires first, the call returns -1 with errno EINPROGRESS, the errno of a non-blocking connect: the connection attempt is not over, the SYNs go on in the kernel, and the socket may still connect later. ' +
      'So the result reads "in progress", not "timed out": an application that tests for ETIMEDOUT, or retries connect() on the same socket (EALREADY), gets it wrong. Treat EINPROGRESS from a blocking connect as the timeout, and close the socket.',
    () => ({ seconds: 1, how: 'the same 1 s: SO_SNDTIMEO does not depend on the kernel\'s SYN timers' }),
  ),
  supervisedFix(
    'connect-syncnt',
    'TCP_SYNCNT=1: ETIMEDOUT (110) after about 3 s',
    ['--syncnt', '1'],
    {
      match: worker('error', { op: 'connect', errno: 'ETIMEDOUT' }),
      from: worker('connect-start'),
      within: (t) => around(synTimeout({ synRetries: 1, synLinearTimeouts: t.synLinearTimeouts }).failAt),
      primary: true,
      says: 'the kernel gives up on the SYN retries it allowed: a real ETIMEDOUT',
    },
    'TCP_SYNCNT sets tcp_syn_retries for one socket. The number is turned into a time: the kernel fails the connect with ETIMEDOUT once the time that many doubling retransmissions would take has passed, 1 + 2 = 3 s for 1, checked when the retransmit timer fires. ' +
      'On kernels with tcp_syn_linear_timeouts the first retransmissions come 1 s apart, so two of them fit in those 3 s: the DROP rule counts 3 SYNs, not 2. ' +
      'It is the kernel\'s own timeout, so the errno is the honest one; the bound moves in steps (3, 7, 15 s... for 1, 2, 3 without linear timeouts), not to any value.',
    (d) => {
      const s = synTimeout({ synRetries: 1, synLinearTimeouts: d.synLinearTimeouts });
      return { seconds: s.failAt, how: `the same with the default timers: TCP_SYNCNT=1 overrides tcp_syn_retries (SYNs at ${s.sends.join(', ')} s)` };
    },
  ),
];

// ---------------------------------------------------------------------------------------------
// TIME_WAIT
// ---------------------------------------------------------------------------------------------

/** Ten ephemeral ports: the range runs out after ten short connections. */
const TEN_PORTS = [40000, 40009] as const;
const RANGE_SYSCTL = { 'net.ipv4.ip_local_port_range': TEN_PORTS } as const;
/** The default ip_local_port_range, 32768-60999. */
const DEFAULT_PORTS = 60999 - 32768 + 1;

/** The most TIME-WAIT sockets `ss` counted during the run. */
const timeWaitPeak = (band: Band, says: string, primary = false): Check => ({
  kind: 'stat', proc: 'lab', type: 'time-wait', field: 'count', stat: 'max', unit: 'sockets', label: 'TIME-WAIT sockets', within: band, says, primary,
});

const timeWaitDefaults = (): DefaultFigure => ({
  seconds: TIME_WAIT_LEN,
  how: `each closed port stays in TIME-WAIT for ${TIME_WAIT_LEN} s (TCP_TIMEWAIT_LEN, no sysctl): with the default ${DEFAULT_PORTS} ports a client runs out above ` +
    `${Math.floor(DEFAULT_PORTS / TIME_WAIT_LEN)} new connections a second to one server address and port`,
});

const TW_RECYCLE =
  'net.ipv4.tcp_tw_recycle, the old advice, is gone since Linux 4.12: it dropped SYNs whose TCP timestamp went backwards per source address, which broke clients behind one NAT (their clocks differ), and no scenario here sets it.';

const TIME_WAIT_FIXES: readonly Fix[] = [
  { setting: 'a connection pool (keep-alive)', why: 'no close per request, so no TIME-WAIT per request: the fix that removes the cause (time-wait-pool)' },
  { setting: 'sysctl net.ipv4.tcp_tw_reuse=1', why: 'outgoing connects may take a port whose TIME-WAIT socket is over 1 s old (tcp_tw_reuse_delay, in ms, on recent kernels); needs TCP timestamps; 2, the default, allows it for loopback only' },
  { setting: 'sysctl net.ipv4.ip_local_port_range="1024 65000"', why: 'more ports, more room: moves the limit, does not remove it' },
  { setting: 'let the server close first, or spread connects over more server addresses or ports', why: 'TIME-WAIT belongs to the side that closes first, and a port is only taken for one destination address and port' },
];

const timeWaitScenarios: Scenario[] = [
  {
    id: 'time-wait-exhaustion',
    title: 'TIME-WAIT eats every port: EADDRNOTAVAIL (99)',
    section: 'pitfalls',
    summary: 'The client opens and closes short connections in a loop with 10 ephemeral ports (ip_local_port_range 40000 40009).',
    sysctls: { ...RANGE_SYSCTL, 'net.ipv4.tcp_tw_reuse': 1 },
    watch: ['time-wait'],
    procs: [server('echo'), client('connections:12')],
    expect: [
      { match: on.client('connected', { nth: 10 }), says: 'ten short connections, each closed by the client' },
      { match: on.client('error', { op: 'connect', errno: 'EADDRNOTAVAIL' }), within: AT_ONCE, primary: true, says: 'the 11th connect(): every port of the range is in TIME-WAIT' },
      timeWaitPeak([10, 10], 'one TIME-WAIT socket per port of the range'),
    ],
    deadline: 6,
    explanation:
      'The side that closes first keeps the connection in TIME-WAIT for 60 s (TCP_TIMEWAIT_LEN, twice the maximum segment life), so a late segment of the old connection cannot be taken for part of a new one on the same four addresses and ports, and so a lost last ACK can be answered again. ' +
      'A client that opens a new connection per request, to one server address and port, leaves one port in TIME-WAIT per request; once the whole ephemeral range is waiting, connect() finds no free port and fails with EADDRNOTAVAIL ("cannot assign requested address"). ' +
      'tcp_tw_reuse does not help a fast loop: 1 (set here) allows reuse only of a TIME-WAIT socket over 1 s old, and 2, the default, does the same for loopback only. ' +
      TW_RECYCLE,
    defaults: timeWaitDefaults,
    fixes: TIME_WAIT_FIXES,
  },
  {
    id: 'time-wait-reuse',
    title: 'tcp_tw_reuse=1: a TIME-WAIT port over 1 s old is reused',
    section: 'pitfalls',
    summary: 'Ten ports, all in TIME-WAIT; with tcp_tw_reuse=1 the client waits 1.2 s and connects again.',
    sysctls: { ...RANGE_SYSCTL, 'net.ipv4.tcp_tw_reuse': 1 },
    watch: ['time-wait'],
    procs: [server('echo'), client('connections:10,sleep:1.2,connections:1')],
    expect: [
      { match: on.client('connected', { nth: 10 }) },
      { match: on.client('connected', { nth: 2 }), within: [1.2, 1.8], primary: true, says: 'the 11th connect succeeds on a port taken over from a TIME-WAIT socket' },
      timeWaitPeak([10, 10], 'still one TIME-WAIT socket per port: the reused one is back in TIME-WAIT after its close'),
    ],
    deadline: 6,
    explanation:
      'With tcp_tw_reuse=1 an outgoing connect() may take over the port of a TIME-WAIT socket to the same destination once the last TCP timestamp it got from the peer is over 1 s old (tcp_twsk_unique; recent kernels make the delay tunable as net.ipv4.tcp_tw_reuse_delay, in ms). ' +
      'It is safe because both ends use TCP timestamps: a segment of the old connection carries an older timestamp and is discarded (PAWS). It applies only to connect(), never to a server\'s accepted connections. ' +
      'The 1 s rule is why time-wait-exhaustion still fails with the same setting: its loop comes back within milliseconds.',
    defaults: timeWaitDefaults,
    fixes: TIME_WAIT_FIXES,
  },
  {
    id: 'time-wait-reuse-off',
    title: 'tcp_tw_reuse=0: waiting 1.2 s does not help, EADDRNOTAVAIL (99)',
    section: 'pitfalls',
    summary: 'Ten ports, all in TIME-WAIT; with tcp_tw_reuse=0 the client waits 1.2 s and connects again.',
    sysctls: { ...RANGE_SYSCTL, 'net.ipv4.tcp_tw_reuse': 0 },
    watch: ['time-wait'],
    procs: [server('echo'), client('connections:10,sleep:1.2,connections:1')],
    expect: [
      { match: on.client('connected', { nth: 10 }) },
      { match: on.client('error', { op: 'connect', errno: 'EADDRNOTAVAIL' }), within: [1.2, 1.8], primary: true, says: 'the 11th connect still finds no port: TIME-WAIT lasts 60 s' },
      timeWaitPeak([10, 10], 'ten TIME-WAIT sockets'),
    ],
    deadline: 6,
    explanation:
      'Without tcp_tw_reuse a TIME-WAIT port to the same destination is free again only when its 60 s are over, whatever its age. The only way around it without the sysctl is not to close (a pool), or to close on the other side.',
    defaults: timeWaitDefaults,
    fixes: TIME_WAIT_FIXES,
  },
  {
    id: 'time-wait-reuse-loopback-only',
    title: 'tcp_tw_reuse=2 (the default) reuses for loopback only: EADDRNOTAVAIL (99) to 10.0.0.1',
    section: 'pitfalls',
    summary: 'Ten ports, all in TIME-WAIT to 10.0.0.1 (a non-loopback address on lo); with the default tcp_tw_reuse=2 the client waits 1.2 s and connects again.',
    addresses: ['10.0.0.1/32'],
    sysctls: { ...RANGE_SYSCTL, 'net.ipv4.tcp_tw_reuse': 2 },
    watch: ['time-wait'],
    procs: [
      { name: 'server', program: 'server', args: ['--host', '10.0.0.1', '--port', String(PORT), '--mode', 'echo'] },
      { name: 'client', program: 'client', args: ['--host', '10.0.0.1', '--port', String(PORT), '--steps', 'connections:10,sleep:1.2,connections:1'] },
    ],
    expect: [
      { match: on.client('connected', { nth: 10 }) },
      { match: on.client('error', { op: 'connect', errno: 'EADDRNOTAVAIL' }), within: [1.2, 1.8], primary: true, says: 'no reuse: the destination is not a loopback address' },
      timeWaitPeak([10, 10], 'ten TIME-WAIT sockets'),
    ],
    deadline: 6,
    explanation:
      'tcp_tw_reuse=2, the default since Linux 4.19, allows the reuse of tcp_tw_reuse=1 only when the TIME-WAIT socket\'s addresses are loopback ones (127.0.0.0/8, ::1) or it is bound to the loopback device. ' +
      'Here both ends are on one host, but the address, 10.0.0.1, is not a loopback address, so the port is not reused and connect() fails as with 0. The same client against 127.0.0.1 would succeed: a test on localhost can hide the exhaustion production will see.',
    defaults: timeWaitDefaults,
    fixes: TIME_WAIT_FIXES,
  },
  {
    id: 'time-wait-buckets',
    title: 'tcp_max_tw_buckets=5: the TIME-WAIT count stops at 5',
    section: 'pitfalls',
    summary: 'tcp_max_tw_buckets is 5 in the namespace; the client opens and closes 20 short connections.',
    sysctls: { 'net.ipv4.tcp_max_tw_buckets': 5 },
    watch: ['time-wait'],
    procs: [server('echo'), client('connections:20')],
    expect: [
      { match: on.client('connected', { nth: 20 }), says: 'all 20 connections succeed' },
      timeWaitPeak([5, 5], 'the count never goes above 5: the kernel destroys the others at once', true),
    ],
    deadline: 6,
    explanation:
      'When tcp_max_tw_buckets TIME-WAIT sockets exist, the kernel does not create another: a closing connection goes straight to CLOSED (and "TCP: time wait bucket table overflow" is logged). ' +
      'That keeps the count, and the memory, bounded, but it throws away what TIME-WAIT is for: a delayed segment or a retransmitted FIN of the old connection can now meet a new connection on the same ports and reset it. A cap, not a fix; the default depends on memory (ip-sysctl.rst).',
    defaults: () => ({ seconds: TIME_WAIT_LEN, how: `without the cap, all 20 ports would stay in TIME-WAIT for ${TIME_WAIT_LEN} s` }),
    fixes: TIME_WAIT_FIXES,
  },
  {
    id: 'time-wait-pool',
    title: 'A connection pool: 20 requests, no TIME-WAIT pile-up',
    section: 'pitfalls',
    summary: 'The same 10 ports, but 20 requests over one kept-alive connection, closed at the end.',
    sysctls: RANGE_SYSCTL,
    watch: ['time-wait'],
    procs: [server('echo'), client('connect,requests:0:20,close')],
    expect: [
      { kind: 'stat', proc: 'client', type: 'response', field: 'took', stat: 'count', unit: 'requests', label: 'answered', within: [20, 20], says: 'all 20 requests answered, where new connections failed at the 11th' },
      timeWaitPeak([0, 1], 'at most one TIME-WAIT socket: the pool\'s own connection, after its final close', true),
    ],
    deadline: 6,
    explanation:
      'Reusing one connection for many requests costs no port per request: the TIME-WAIT count stays at zero until the pool closes its connection. It also saves the handshake\'s round trip and the slow start of each new connection. A real pool bounds idle connections and checks them before use (see the detection section).',
    defaults: () => ({ seconds: 0, how: 'no TIME-WAIT per request, whatever the timers' }),
    fixes: TIME_WAIT_FIXES.slice(0, 1),
  },
];

// ---------------------------------------------------------------------------------------------
// Nagle meets delayed ACK: the matrix
// ---------------------------------------------------------------------------------------------

/** Requests per cell: enough for a 95th percentile, under 2 s at 40 ms each. */
const REQUESTS = 40;

const took = (stat: Stat['stat']): Stat => ({ proc: 'client', type: 'response', field: 'took', stat, unit: 's', label: 'per request' });

const STALL: Band = [0.035, 0.12];
/**
 * No timer in the way: under half the delayed-ACK minimum. The medians are 0.1-0.5 ms on an
 * idle machine; with ten scenarios on two cores a new connection per request (accept and a
 * server thread inside the timed window) reached 3 ms, so the band asks only the question the
 * cell is about: did a 40 ms timer fire?
 */
const FAST: Band = [0, DELAYED_ACK_MIN / 2];

interface Variant {
  row: string;
  serverFlags: string[];
  why: string;
}

const VARIANTS: Record<'two' | 'one' | 'nodelay' | 'cork', Variant> = {
  two: { row: 'two writes', serverFlags: ['--reply-writes', 'two'], why: 'the server sends the header and the body with two send() calls' },
  one: { row: 'one write', serverFlags: ['--reply-writes', 'one'], why: 'the server sends header and body with one send()' },
  nodelay: { row: 'TCP_NODELAY', serverFlags: ['--reply-writes', 'two', '--nodelay'], why: 'two send() calls, Nagle off (TCP_NODELAY)' },
  cork: { row: 'TCP_CORK', serverFlags: ['--reply-writes', 'two', '--cork'], why: 'two send() calls between TCP_CORK on and off' },
};

const COLUMNS = { keep: 'keep-alive', fresh: 'new connection' } as const;

const NAGLE =
  'Nagle\'s algorithm (RFC 896) holds a small segment while an earlier one is unacknowledged. Delayed ACK (RFC 1122) holds the ACK of received data, hoping to ride on a reply, for at least 40 ms on Linux (TCP_ATO_MIN). ';

const NAGLE_FIXES: readonly Fix[] = [
  { setting: 'build the whole reply and send() it once (or writev())', why: 'one segment: nothing for Nagle to hold' },
  { setting: 'setsockopt(IPPROTO_TCP, TCP_NODELAY, 1)', why: 'small writes go out at once; the cost is more, smaller packets from code that writes in pieces' },
  { setting: 'setsockopt(IPPROTO_TCP, TCP_CORK, 1) around the writes', why: 'the kernel gathers the pieces and sends full segments when uncorked' },
  { setting: 'TCP_QUICKACK on the receiver', why: 'acks at once, but the kernel resets it: it must be set again after each read' },
];

function nagleCell(id: string, variant: Variant, column: keyof typeof COLUMNS, band: Band, title: string, explanation: string): Scenario {
  const steps = column === 'keep' ? `connect,requests:0:${REQUESTS},close` : `connections:${REQUESTS}`;
  const cell: MatrixCell = { matrix: 'Nagle x delayed ACK', row: variant.row, column: COLUMNS[column] };
  const stall = band === STALL;
  return {
    id,
    title,
    section: 'pitfalls',
    summary: `${variant.why}; the client sends ${REQUESTS} HTTP requests ${column === 'keep' ? 'on one kept-alive connection' : 'each on a new connection'}, the next after the whole reply.`,
    procs: [server('http', ...variant.serverFlags), client(steps, '--proto', 'http')],
    expect: [
      { kind: 'stat', ...took('count'), unit: 'requests', label: 'answered', within: [REQUESTS, REQUESTS], says: `all ${REQUESTS} requests answered` },
      {
        kind: 'stat', ...took('median'), within: band, primary: true, minSamples: REQUESTS,
        says: stall ? 'about 40 ms per request: the body waits for the delayed ACK of the header' : 'well under the 40 ms of a delayed ACK: nothing waits for a timer',
      },
    ],
    figures: [took('p95'), took('max')],
    deadline: 8,
    matrix: cell,
    explanation: NAGLE + explanation,
    defaults: () => (stall
      ? { seconds: REQUESTS * DELAYED_ACK_MIN, how: `the same as in the lab: delayed ACK has no sysctl, so ${REQUESTS} requests wait at least ${humanDuration(DELAYED_ACK_MIN)} each after the first` }
      : { seconds: 0, how: 'the same as in the lab: no timer is involved' }),
    fixes: stall ? NAGLE_FIXES : NAGLE_FIXES.slice(0, 3),
  };
}

const QUICKACK_START =
  'A new connection starts in quick-ACK mode (the receiver acks its first segments at once, to open the sender\'s window fast), so the header is acknowledged immediately and Nagle releases the body after one round trip: each request on a fresh connection is fast, which is why the stall shows only with keep-alive (and why a benchmark of short connections misses it).';

const nagleScenarios: Scenario[] = [
  nagleCell('nagle-delayed-ack', VARIANTS.two, 'keep', STALL, 'Nagle meets delayed ACK: about 40 ms per keep-alive request',
    'The server writes the header: it goes out at once, nothing being in flight. It writes the body: Nagle holds it, the header being unacknowledged. The client has the header and no reason to answer before the body, so its kernel delays the ACK; only when the delayed-ACK timer fires (40 ms) does the ACK go, and the body follows. ' +
    'The first request is fast (quick-ACK at the start of a connection); from then on the connection is interactive and every reply pays the timer: a latency floor no amount of CPU or bandwidth removes.'),
  nagleCell('nagle-one-write', VARIANTS.one, 'keep', FAST, 'One write per reply: no delay on keep-alive',
    'With the header and the body in one send(), the reply is one segment: there is no second small segment for Nagle to hold, and the client\'s delayed ACK rides on its next request. The seed\'s fix.'),
  nagleCell('nagle-nodelay', VARIANTS.nodelay, 'keep', FAST, 'TCP_NODELAY on the server: no delay on keep-alive',
    'TCP_NODELAY turns Nagle off: the body goes out right behind the header, in its own segment, without waiting for the ACK. The cost is one more packet per reply.'),
  nagleCell('nagle-cork', VARIANTS.cork, 'keep', FAST, 'TCP_CORK around the two writes: no delay on keep-alive',
    'With TCP_CORK set the kernel sends only full segments; the server writes header and body, then clears the cork, and the reply leaves as one segment (the kernel also pushes a corked partial segment after 200 ms, a limit the server never reaches).'),
  nagleCell('nagle-short-connection', VARIANTS.two, 'fresh', FAST, 'Two writes, a new connection per request: no 40 ms', QUICKACK_START),
  nagleCell('nagle-short-one-write', VARIANTS.one, 'fresh', FAST, 'One write, a new connection per request: no delay', QUICKACK_START),
  nagleCell('nagle-short-nodelay', VARIANTS.nodelay, 'fresh', FAST, 'TCP_NODELAY, a new connection per request: no delay', QUICKACK_START),
  nagleCell('nagle-short-cork', VARIANTS.cork, 'fresh', FAST, 'TCP_CORK, a new connection per request: no delay', QUICKACK_START),
];

export const pitfallsScenarios: readonly Scenario[] = [...connectScenarios, ...timeWaitScenarios, ...nagleScenarios];
