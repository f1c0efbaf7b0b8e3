import { keepaliveTimeout, humanDuration } from '../timers';
import { AT_ONCE, around, client, DROP, fromServer, on, server, toServer } from './common';
import type { Scenario } from './types';

/** The peer's host vanishes: nothing gets through in either direction. */
const vanish = [{ apply: toServer(DROP, 'vanish-in') }, { apply: fromServer(DROP, 'vanish-out') }] as const;

export const detectionScenarios: readonly Scenario[] = [
  {
    id: 'detect-read-eof',
    title: 'Detect by read: recv() returns 0 on FIN',
    section: 'detection',
    summary: 'The server closes; the client waits readable and reads.',
    procs: [server('close'), client('connect,recv')],
    expect: [{ match: on.client('eof'), from: on.client('connected'), within: AT_ONCE, primary: true, says: 'recv() returned 0' }],
    deadline: 5,
    explanation:
      'A FIN makes the socket readable and recv() return 0: the cheapest and surest sign of an orderly close. It catches every FIN (a closing or dying process), and nothing else: a peer whose host vanished, or a path that broke, sends no FIN, and the read just waits (half-open-idle).',
    defaults: () => ({ seconds: 0, how: 'immediate, for a FIN; never, for a peer that vanished' }),
    fixes: [{ setting: 'combine with keepalive or a heartbeat', why: 'EOF only covers peers that could still send a FIN' }],
  },
  {
    id: 'detect-poll-events',
    title: 'Detect by poll(): POLLERR and POLLHUP on a RST',
    section: 'detection',
    summary: 'The server resets the connection (SO_LINGER 0); the client sits in poll().',
    procs: [server('rst'), client('connect,poll')],
    expect: [
      { match: on.client('poll', { revents: ['POLLERR', 'POLLHUP'] }), from: on.client('connected'), within: AT_ONCE, says: 'poll() woke with POLLERR|POLLHUP' },
      { match: on.client('error', { op: 'poll', errno: 'ECONNRESET' }), within: AT_ONCE, primary: true, says: 'SO_ERROR says ECONNRESET' },
    ],
    deadline: 5,
    explanation:
      'After a RST the socket is closed: poll() reports POLLHUP (both directions are down), POLLERR (an error is pending, ECONNRESET, read it with getsockopt SO_ERROR), and POLLIN|POLLRDHUP. ' +
      'A FIN alone gives POLLIN|POLLRDHUP, not POLLHUP: Linux sets POLLHUP only once both directions are shut (tcp_poll). POLLNVAL means the descriptor is not open: a bug in the program, and the fd must not be closed again. EINTR from poll() is a signal, not a connection error: poll again.',
    defaults: () => ({ seconds: 0, how: 'immediate, for FIN and RST; never, for a peer that vanished' }),
    fixes: [{ setting: 'handle POLLRDHUP (FIN), POLLERR + SO_ERROR (RST), retry on EINTR', why: 'each event means something different' }],
  },
  {
    id: 'detect-keepalive',
    title: 'Detect by TCP keepalive: the vanished peer found after idle + interval x count',
    section: 'detection',
    summary: 'Keepalive on the client (idle 1 s, interval 1 s, 2 probes); the server host vanishes (both directions dropped).',
    procs: [server('echo'), client('connect,request,idle', '--keepalive', '1,1,2')],
    triggers: [{ on: on.client('received'), do: vanish }],
    expect: [{
      match: on.client('error', { op: 'recv', errno: 'ETIMEDOUT' }),
      from: on.client('received'),
      within: around(keepaliveTimeout({ keepaliveTime: 1, keepaliveIntvl: 1, keepaliveProbes: 2 })),
      primary: true,
    }],
    deadline: 8,
    explanation:
      'Keepalive finds the peer that sends nothing at all, which EOF and poll() cannot. Its cost is tuning: too loose (the 2 hour default) and it finds nothing in time; too tight and a short network hiccup kills healthy connections. It also cannot see a peer process that is stuck while its kernel still answers the probes.',
    defaults: (d) => ({ seconds: keepaliveTimeout(d), how: `with the default keepalive timers: ${humanDuration(keepaliveTimeout(d))}` }),
    fixes: [{ setting: 'TCP_KEEPIDLE/TCP_KEEPINTVL/TCP_KEEPCNT per socket', why: 'the defaults are far too slow for any application' }],
  },
  {
    id: 'detect-heartbeat',
    title: 'Detect by application heartbeat',
    section: 'detection',
    summary: 'The client pings every 0.3 s, dead after 3 misses; the server host vanishes.',
    procs: [server('echo'), client('connect,heartbeat:0.3:3')],
    triggers: [{ on: on.client('received', { nth: 2 }), do: vanish }],
    expect: [{ match: on.client('dead'), from: on.lab('fault'), within: [0.6, 1.6], primary: true, says: 'dead after 3 missed heartbeats' }],
    deadline: 6,
    explanation:
      'The heartbeat tests the whole path, the peer\'s kernel and the peer application: anything that stops the answer is detected within interval x misses, here 0.9 s. The cost is code on both ends and a little traffic.',
    defaults: () => ({ seconds: 0.9, how: 'the application\'s own interval x misses' }),
    fixes: [{ setting: 'heartbeat in the protocol (e.g. WebSocket ping, gRPC keepalive, Redis PING)', why: 'most protocols already have one: turn it on' }],
  },
];
