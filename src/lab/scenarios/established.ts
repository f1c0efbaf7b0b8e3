import { dataTimeout, humanDuration, keepaliveTimeout, LOOPBACK_RTO, modelTimeout, RTO_MIN, type KernelTimers } from '../timers';
import { AT_ONCE, around, client, DROP, fromServer, on, PORT, PROXY_PORT, server, toServer } from './common';
import type { Scenario } from './types';

const immediate = () => ({ seconds: 0, how: 'immediate' });
const forever = (how: string) => () => ({ seconds: Infinity, how });

const retriesFigure = (d: KernelTimers) => ({
  seconds: dataTimeout(d.retries2).failAt,
  how: `tcp_retries2=${d.retries2}: model time ${humanDuration(modelTimeout(d.retries2, RTO_MIN))} from the first retransmission, RTO doubling from 200 ms to 120 s; on loopback it fails at ${humanDuration(dataTimeout(d.retries2).failAt)}`,
});

const retriesFixes = [
  { setting: 'setsockopt(IPPROTO_TCP, TCP_USER_TIMEOUT, 10000)', why: 'unacknowledged data fails the connection after 10 s instead of about 15 minutes (tcp(7))' },
  { setting: 'sysctl net.ipv4.tcp_retries2=8', why: 'host-wide: about 100 s with a 200 ms RTO (RFC 1122 asks for at least 100 s)' },
  { setting: 'an application request timeout', why: 'the request fails, and the client reconnects, on its own schedule' },
];

/** A request every 0.2 s on an echo connection, the fault after the second reply. */
const chatty = client('connect,requests:0.2');
const afterSecondReply = on.client('received', { nth: 2 });

export const establishedScenarios: readonly Scenario[] = [
  {
    id: 'server-fin',
    title: 'The server closes: EOF, then EPIPE (32) on the second write',
    section: 'established',
    summary: 'The server closes each connection at once; the client reads, then writes twice.',
    procs: [server('close'), client('connect,recv,send,sleep:0.2,send')],
    expect: [
      { match: on.client('eof'), from: on.client('connected'), within: AT_ONCE, says: 'read() returned 0 (FIN)' },
      { match: on.client('sent'), says: 'the first write after the FIN succeeds' },
      { match: on.client('error', { op: 'send', errno: 'EPIPE' }), within: [0.15, 0.8], primary: true },
    ],
    deadline: 5,
    explanation:
      'The FIN only says the server will send no more; the client\'s kernel cannot know the server closed for reading too, so the first write is accepted and sent. ' +
      'The server\'s socket is gone, so its kernel answers that data with a RST. A RST in CLOSE-WAIT sets EPIPE, not ECONNRESET (tcp_reset), and the next write fails with it (SIGPIPE too, unless ignored, as Python does).',
    defaults: immediate,
    fixes: [
      { setting: 'treat read() == 0 as the end: close and reconnect', why: 'a half-closed connection is not worth writing to' },
      { setting: 'MSG_NOSIGNAL or SIGPIPE ignored', why: 'so the EPIPE is an error value, not a process killed by a signal' },
    ],
  },
  {
    id: 'server-close-unread',
    title: 'The server closes with unread data: ECONNRESET (104)',
    section: 'established',
    summary: 'The client sends 100 bytes; the server closes without reading them.',
    procs: [server('close-unread'), client('connect,send:100,recv')],
    expect: [{ match: on.client('error', { op: 'recv', errno: 'ECONNRESET' }), from: on.client('sent'), within: AT_ONCE, primary: true }],
    deadline: 5,
    explanation:
      'Closing a socket whose receive queue still holds data throws that data away, and the kernel says so with a RST instead of a FIN (RFC 2525 section 2.17, tcp_close). The client\'s pending read fails with ECONNRESET; anything the server wrote just before may be lost with it.',
    defaults: immediate,
    fixes: [{ setting: 'servers: read the request to the end (or shutdown(SHUT_WR) and drain) before close()', why: 'a clean FIN lets the client read the last reply' }],
  },
  {
    id: 'server-kill',
    title: 'kill -9 the server: EOF, then the client reconnects',
    section: 'established',
    summary: 'The client holds an idle connection with reconnect on; the server process is killed with SIGKILL, then started again.',
    procs: [server('hold'), client('connect,idle', '--reconnect', '--backoff', '0.1', '--backoff-max', '0.4')],
    triggers: [
      { on: on.client('connected'), delay: 0.2, do: [{ kill: 'server', signal: 'SIGKILL' }] },
      { on: on.lab('killed'), delay: 0.5, do: [{ start: 'server' }] },
    ],
    expect: [
      { match: on.client('eof'), from: on.lab('killed'), within: AT_ONCE, primary: true, says: 'the kernel closed the dead process\'s socket with a FIN' },
      { match: on.client('connected'), within: [0.3, 2.5], says: 'reconnected once the server was back' },
    ],
    deadline: 8,
    explanation:
      'A killed process does not close its sockets; the kernel does, as for any exit. With nothing unread it sends a FIN and the client reads EOF; with unread data it sends a RST and the client gets ECONNRESET (see server-close-unread). Either way the client must notice, close, and reconnect with backoff: until the server is back its connects are refused.',
    defaults: immediate,
    fixes: [{ setting: 'reconnect with exponential backoff and jitter', why: 'a restarted server is not hammered by every client at once' }],
  },
  {
    id: 'proxy-kill',
    title: 'A forwarding proxy is killed: both legs close',
    section: 'established',
    summary: 'client -> proxy (like rinetd) -> server; the proxy process is killed mid-connection.',
    procs: [
      server('echo'),
      { name: 'proxy', program: 'proxy', args: ['--listen-host', '127.0.0.1', '--listen-port', String(PROXY_PORT), '--target', `127.0.0.1:${PORT}`] },
      { name: 'client', program: 'client', args: ['--host', '127.0.0.1', '--port', String(PROXY_PORT), '--steps', 'connect,request,idle'] },
    ],
    triggers: [{ on: on.client('received'), delay: 0.2, do: [{ kill: 'proxy', signal: 'SIGKILL' }] }],
    expect: [
      { match: on.client('eof'), from: on.lab('killed'), within: AT_ONCE, primary: true, says: 'the client leg closed' },
      { match: on.server('eof'), from: on.lab('killed'), within: AT_ONCE, says: 'the server leg closed too' },
    ],
    deadline: 5,
    explanation:
      'A proxy holds two connections per client. When it dies the kernel closes both: the client and the server each see their own leg end, neither sees the other. The client must reconnect to the proxy; the server must not wait for more from a client that is gone.',
    defaults: immediate,
    fixes: [{ setting: 'clients: reconnect on EOF; servers: an idle timeout', why: 'each side only learns of the proxy through its own leg' }],
  },
  {
    id: 'reject-reset-established',
    title: 'REJECT tcp-reset on a live connection: ECONNRESET (104)',
    section: 'established',
    summary: 'A request every 0.2 s; then iptables rejects the client\'s packets with tcp-reset.',
    procs: [server('echo'), chatty],
    triggers: [{ on: afterSecondReply, hold: 'client', do: [{ apply: toServer({ action: 'reject', rejectWith: 'tcp-reset' }) }] }],
    expect: [
      { match: on.client('sent'), from: on.lab('fault'), says: 'the next request goes out' },
      { match: on.client('error', { errno: 'ECONNRESET' }), within: AT_ONCE, primary: true },
    ],
    deadline: 5,
    explanation:
      'The next segment the client sends is answered with a forged RST carrying the right sequence number, so the client\'s kernel accepts it and tears the connection down: the pending call fails with ECONNRESET. The server never learns; its socket stays ESTABLISHED until its own traffic or keepalive finds out.',
    defaults: immediate,
    fixes: [{ setting: 'reconnect on ECONNRESET, then replay only idempotent requests', why: 'the request in flight may or may not have reached the server' }],
  },
  {
    id: 'reject-icmp-established',
    title: 'ICMP unreachable on a live connection: a soft error, then EHOSTUNREACH (113)',
    section: 'established',
    summary: 'A request every 0.2 s; then the client\'s packets are rejected with icmp-host-unreachable. tcp_retries2=3.',
    sysctls: { 'net.ipv4.tcp_retries2': 3 },
    procs: [server('echo'), chatty],
    triggers: [{ on: afterSecondReply, hold: 'client', do: [{ apply: toServer({ action: 'reject', rejectWith: 'icmp-host-unreachable' }) }] }],
    expect: [
      { match: on.client('sent'), from: on.lab('fault'), says: 'the next request goes out' },
      {
        match: on.client('error', { errno: 'EHOSTUNREACH' }),
        // The ICMP reverts the RTO backoff (RFC 6069), so retransmissions stay dense and the
        // failure follows the model time closely.
        within: (t) => [modelTimeout(t.retries2, RTO_MIN), (0.21 + LOOPBACK_RTO + modelTimeout(t.retries2, RTO_MIN) + 2 * LOOPBACK_RTO) * 1.1 + 0.3],
        primary: true,
      },
    ],
    deadline: (t) => modelTimeout(t.retries2, RTO_MIN) * 1.5 + 4,
    explanation:
      'On an established connection an ICMP unreachable is only a soft error (RFC 1122 4.2.3.9): routes change, so the kernel keeps the connection ESTABLISHED and keeps retransmitting, remembering the error. ' +
      'When tcp_retries2 runs out, the call fails with that remembered error, EHOSTUNREACH, not ETIMEDOUT. The ICMP also cancels the RTO backoff (RFC 6069), so the end comes at the model time without the usual overshoot.',
    defaults: retriesFigure,
    fixes: retriesFixes,
  },
  {
    id: 'drop-with-traffic',
    title: 'The server\'s packets dropped while the client sends: ETIMEDOUT (110)',
    section: 'established',
    summary: 'A request every 0.2 s; then everything from the server is dropped. tcp_retries2=3.',
    sysctls: { 'net.ipv4.tcp_retries2': 3 },
    procs: [server('echo'), chatty],
    triggers: [{ on: afterSecondReply, hold: 'client', do: [{ apply: fromServer(DROP) }] }],
    expect: [
      { match: on.client('sent'), from: on.lab('fault'), says: 'the first request nobody acknowledges' },
      { match: on.client('error', { errno: 'ETIMEDOUT' }), within: (t) => around(dataTimeout(t.retries2).failAt), primary: true },
    ],
    deadline: (t) => dataTimeout(t.retries2).failAt * 1.3 + 3,
    explanation:
      'The request leaves, no ACK comes back, and the client retransmits: a tail-loss probe first, then RTO retransmissions doubling from about 200 ms. tcp_retries2 does not count retransmissions: it sets a time, the time that many doubling retransmissions from 200 ms would take, counted from the first retransmission. ' +
      'The check runs when the timer fires, so the failure lands on the first expiry past that time. With tcp_retries2=3 the model time is 3 s, and on loopback the 4th retransmission fires 0.15 s short of it, so the connection dies at the 5th, about 6.5 s after the request. With the default 15, 924.6 s of model time: about 15.5 minutes of a hung request.',
    defaults: retriesFigure,
    fixes: retriesFixes,
  },
  {
    id: 'half-open-idle',
    title: 'Half-open and idle: nothing happens, forever',
    section: 'established',
    summary: 'One request, then the client waits for data; everything from the server is dropped from then on.',
    procs: [server('echo'), client('connect,request,idle')],
    triggers: [{ on: on.client('received'), do: [{ apply: fromServer(DROP) }] }],
    expect: [{ kind: 'quiet', proc: 'client', types: ['error', 'eof', 'exit'], for: 4, from: on.lab('fault'), primary: true, says: 'still ESTABLISHED, still blocked in recv()' }],
    deadline: 8,
    explanation:
      'A connection with nothing to send has nothing to retransmit, so no timer runs and nothing can fail: the client blocks in recv() with its socket ESTABLISHED for as long as the machine stays up. This is the half-open connection: the peer\'s host may have crashed, rebooted or been cut off by a firewall, and only traffic can tell.',
    defaults: forever('forever: an idle connection has no timer running'),
    fixes: [
      { setting: 'SO_KEEPALIVE + TCP_KEEPIDLE/TCP_KEEPINTVL/TCP_KEEPCNT', why: 'the kernel probes the idle connection and fails it with ETIMEDOUT (keepalive-detects)' },
      { setting: 'an application heartbeat or read timeout', why: 'detects a dead peer on the application\'s schedule (heartbeat-detects)' },
    ],
  },
  {
    id: 'keepalive-detects',
    title: 'TCP keepalive finds the half-open connection: ETIMEDOUT (110)',
    section: 'established',
    summary: 'As half-open-idle, with keepalive on the client socket: idle 2 s, interval 1 s, 2 probes.',
    procs: [server('echo'), client('connect,request,idle', '--keepalive', '2,1,2')],
    triggers: [{ on: on.client('received'), do: [{ apply: fromServer(DROP) }] }],
    expect: [{
      match: on.client('error', { op: 'recv', errno: 'ETIMEDOUT' }),
      from: on.client('received'),
      within: around(keepaliveTimeout({ keepaliveTime: 2, keepaliveIntvl: 1, keepaliveProbes: 2 })),
      primary: true,
    }],
    deadline: 10,
    explanation:
      'After TCP_KEEPIDLE seconds without traffic the kernel sends a probe (an ACK carrying an old sequence number, which a live peer must answer), then one every TCP_KEEPINTVL; after TCP_KEEPCNT unanswered probes it fails the connection with ETIMEDOUT, waking the blocked recv(). Idle + interval x count: 2 + 1 x 2 = 4 s here.',
    defaults: (d) => ({ seconds: keepaliveTimeout(d), how: `with SO_KEEPALIVE and the default tcp_keepalive_time=${d.keepaliveTime}, intvl=${d.keepaliveIntvl}, probes=${d.keepaliveProbes}: ${humanDuration(keepaliveTimeout(d))}` }),
    fixes: [
      { setting: 'setsockopt TCP_KEEPIDLE=60, TCP_KEEPINTVL=10, TCP_KEEPCNT=3', why: 'a dead peer is found in about 90 s; stay below any middlebox idle timeout (see section C)' },
      { setting: 'TCP_USER_TIMEOUT as well', why: 'keepalive only helps idle connections; the user timeout covers data in flight' },
    ],
  },
  {
    id: 'server-keepalive-rst',
    title: 'The server\'s keepalive gives up and resets: the client gets ECONNRESET (104)',
    section: 'established',
    summary: 'Keepalive on the server (2 s, 1 s, 2 probes); the client\'s packets to the server are dropped; the client idles.',
    procs: [server('echo', '--keepalive', '2,1,2'), client('connect,request,idle')],
    triggers: [{ on: on.client('received'), do: [{ apply: toServer(DROP) }] }],
    expect: [
      // Both clocks start at the last reply: the server's error and the client's RST come in the
      // same millisecond from two processes, in either order.
      { match: on.server('error', { errno: 'ETIMEDOUT' }), from: on.client('received'), within: around(4), says: 'the server\'s probes went unanswered' },
      { match: on.client('error', { errno: 'ECONNRESET' }), from: on.client('received'), within: around(4), primary: true, says: 'the server\'s RST got through' },
    ],
    deadline: 10,
    explanation:
      'The server probes, the probes reach the client, but the client\'s answers are dropped. When the server gives up it sends a RST as it closes (tcp_keepalive_timer). Whether the client hears it depends on the direction that is broken: here only the client-to-server direction is, so the RST arrives and the idle client learns at once. With the other direction broken, the RST would be lost too and the client would stay half-open.',
    defaults: (d) => ({ seconds: keepaliveTimeout(d), how: `the server's keepalive with the defaults: ${humanDuration(keepaliveTimeout(d))}` }),
    fixes: [{ setting: 'keepalive on both ends', why: 'each side only learns about the connection from the packets it receives' }],
  },
  {
    id: 'heartbeat-detects',
    title: 'An application heartbeat declares the peer dead',
    section: 'established',
    summary: 'The client pings every 0.5 s and gives up after 3 missed pongs; then everything from the server is dropped.',
    procs: [server('echo'), client('connect,heartbeat:0.5:3')],
    triggers: [{ on: afterSecondReply, do: [{ apply: fromServer(DROP) }] }],
    expect: [{ match: on.client('dead'), from: on.lab('fault'), within: [1.0, 2.3], primary: true, says: 'dead after 3 missed heartbeats' }],
    deadline: 8,
    explanation:
      'The application sends a ping every H seconds and expects an answer within H; after M misses in a row it declares the peer dead, closes, and reconnects: H x M = 1.5 s here. The kernel is not involved, so it works through proxies and for peers that are alive but stuck, which TCP keepalive cannot see.',
    defaults: () => ({ seconds: 1.5, how: 'the application\'s own H x M; the kernel alone would wait forever (half-open-idle)' }),
    fixes: [{ setting: 'heartbeat interval x misses below the idle timeout of every middlebox on the path', why: 'the heartbeat then also keeps NAT and load-balancer state alive' }],
  },
  {
    id: 'peer-reboot',
    title: 'The server host reboots: the next packet gets ECONNRESET (104)',
    section: 'established',
    summary: 'The server host goes dark (its packets dropped), its process dies and its kernel forgets the connection; a new server listens on the same port; the client, idle meanwhile, sends a request.',
    sysctls: { 'net.ipv4.tcp_orphan_retries': 1 },
    procs: [server('hold'), client('connect,sleep:3.5,request')],
    triggers: [
      { on: on.client('connected'), delay: 0.2, do: [{ apply: fromServer(DROP, 'host-down') }, { kill: 'server', signal: 'SIGKILL' }] },
      // With tcp_orphan_retries=1 the orphaned socket, whose FIN is being dropped, dies within
      // about a second: the old connection is then gone from the server's kernel, as after a reboot.
      { on: on.lab('killed'), delay: 2, do: [{ remove: 'host-down' }, { start: 'server' }] },
    ],
    expect: [
      { kind: 'quiet', proc: 'client', types: ['error', 'eof'], for: 2, from: on.lab('killed'), says: 'the client noticed nothing while the host was down' },
      { match: on.client('error', { errno: 'ECONNRESET' }), from: on.client('sent'), within: AT_ONCE, primary: true },
    ],
    deadline: 8,
    explanation:
      'While the server host was down the client was idle, so nothing told it. The rebooted host has no record of the connection: a segment for an unknown connection is answered with a RST (RFC 793), whether a new server listens on the port or not. The client learns on its next send; with keepalive on it would learn on the next probe.',
    defaults: () => ({ seconds: 0, how: 'at the next packet the client sends; if it never sends, never' }),
    fixes: [{ setting: 'reconnect on ECONNRESET; keepalive or heartbeat for idle connections', why: 'the error comes at the first use, which may be long after the reboot' }],
  },
  {
    id: 'write-timeout-buffer-full',
    title: 'Writes fill the send buffer, block, then fail with ETIMEDOUT (110)',
    section: 'established',
    summary: 'The client writes 16 KiB blocks in a loop; everything from the server is dropped. tcp_retries2=3.',
    sysctls: { 'net.ipv4.tcp_retries2': 3 },
    procs: [server('silent'), client('connect,write-loop:16384')],
    triggers: [{ on: on.client('connected'), delay: 0.1, do: [{ apply: fromServer(DROP) }] }],
    expect: [
      { match: on.client('blocked', { op: 'write' }), from: on.lab('fault'), within: [0, 2], says: 'the send buffer is full: write() blocks' },
      {
        match: on.client('error', { op: 'write', errno: 'ETIMEDOUT' }),
        from: on.lab('fault'),
        // Many segments in flight, so the retransmissions start almost at once, and the 4th
        // lands within tens of ms of the model time, on either side: the kernel gives up at
        // the 4th (about 3.1 s, seen 1 run in 10) or at the 5th (about 6.4 s). Both are its rule.
        within: (t) => [modelTimeout(t.retries2, RTO_MIN), dataTimeout(t.retries2).failAt * 1.08 + 0.6],
        primary: true,
      },
    ],
    deadline: (t) => dataTimeout(t.retries2).failAt * 1.3 + 4,
    explanation:
      'write() only copies into the socket\'s send buffer; it returns as soon as there is room, long before the peer has the data. With no ACKs the buffer never drains: writes succeed until it is full (its size autotunes up to net.ipv4.tcp_wmem\'s maximum), then block, and Send-Q in ss stops growing. The blocked write fails only when tcp_retries2 runs out. ' +
      'The limit is a time (3 s of model time for tcp_retries2=3) checked only when the retransmit timer fires: here the 4th retransmission falls within a few tens of ms of it, so the kernel gives up either there (about 3.1 s) or one doubling later (about 6.4 s).',
    defaults: retriesFigure,
    fixes: [
      ...retriesFixes,
      { setting: 'SO_SNDTIMEO or a poll() with a timeout before each write', why: 'a write that cannot make progress returns EAGAIN on the application\'s schedule' },
    ],
  },
  {
    id: 'read-timeout',
    title: 'A server that never answers: only a read timeout ends the wait (EAGAIN 11)',
    section: 'established',
    summary: 'The server accepts and reads, but never replies; the client reads with SO_RCVTIMEO of 1 s.',
    procs: [server('silent'), client('connect,send,recv', '--read-timeout', '1')],
    expect: [{ match: on.client('error', { op: 'recv', errno: 'EAGAIN' }), from: on.client('sent'), within: [1, 1.3], primary: true, says: 'SO_RCVTIMEO expired' }],
    deadline: 5,
    explanation:
      'The connection is healthy: every segment is acknowledged, so no TCP timer will ever fire and keepalive has nothing to do (the connection is not idle from the kernel\'s view once the server acks). Only the application can decide it has waited long enough: SO_RCVTIMEO makes recv() fail with EAGAIN (11, also EWOULDBLOCK) after the timeout; poll() with a timeout does the same without an errno.',
    defaults: forever('forever: without a read timeout recv() blocks as long as the server stays silent'),
    fixes: [{ setting: 'setsockopt(SO_RCVTIMEO) or poll() with a timeout around every read', why: 'a stuck server is the application\'s problem to time out, not the kernel\'s' }],
  },
  {
    id: 'server-idle-timeout',
    title: 'The server closes idle connections: FIN after its idle timeout',
    section: 'established',
    summary: 'The server closes connections idle for 1 s (like nginx keepalive_timeout); the client sends one request and waits.',
    procs: [server('echo', '--idle-timeout', '1'), client('connect,request,idle')],
    expect: [
      { match: on.server('idle-close'), from: on.client('received'), within: around(1, 0.2), says: 'the server gave up on the idle connection' },
      { match: on.client('eof'), within: AT_ONCE, primary: true, says: 'the client read EOF' },
    ],
    deadline: 5,
    explanation:
      'Servers close keep-alive connections that stay idle (nginx keepalive_timeout, 75 s by default). A client that does not read the FIN and sends its next request on that connection races the close: the request is answered with a RST, or lost. Pooled clients must drop connections idle close to the server\'s limit, or check for EOF before reuse.',
    defaults: () => ({ seconds: 75, how: 'nginx\'s default keepalive_timeout, 75 s; every server has its own' }),
    fixes: [{ setting: 'client pool idle timeout shorter than the server\'s (honour Keep-Alive: timeout=N)', why: 'the client closes first, so no request is sent on a closing connection' }],
  },
];
