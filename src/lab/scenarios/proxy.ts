/**
 * Section D: timeouts at a reverse proxy, with a real nginx in front of a real nginx.
 *
 * Three hosts: curl on `client`, the proxy on `proxy` (PROXY:PROXY_PORT on the front network,
 * 198.18.1.1 on the back one), its upstream on `upstream` (UPSTREAM:PORT). Faults sit where a
 * real one would: SYNs dropped at the upstream's own firewall, the upstream's packets dropped
 * on their way into the proxy. The client's leg and the upstream leg are on different wires. nginx reports its own timers only in its error log; the
 * nginx sample turns those lines into events (`upstream-timeout` op connect/send/read,
 * `idle-close`, `pool-closed`), and the curl sample reports the HTTP status and curl's time.
 */
import { humanDuration, synTimeout } from '../timers';
import { AT_ONCE, around, DROP, fromServer, on, PORT, PROXY_PORT, toServer } from './common';
import type { Topology } from '../topology';
import type { Band, DefaultFigure, Match, ProcSpec, RuleSpec, Scenario } from './types';

export const PROXY = '198.18.0.1';
export const UPSTREAM = '198.18.1.2';
const PROXY_URL = `http://${PROXY}:${PROXY_PORT}/`;

/** client -- front -- proxy -- back -- upstream. */
const HOSTS: Topology = {
  nets: [{ name: 'front' }, { name: 'back' }],
  hosts: [
    { name: 'client', links: [{ net: 'front', address: '198.18.0.2/24' }] },
    { name: 'proxy', links: [{ net: 'front', address: `${PROXY}/24` }, { net: 'back', address: '198.18.1.1/24' }] },
    { name: 'upstream', links: [{ net: 'back', address: `${UPSTREAM}/24` }] },
  ],
};

/** nginx's default for proxy_connect_timeout, proxy_send_timeout and proxy_read_timeout. */
const NGINX_PROXY_DEFAULT = 60;
/** nginx's default keepalive_timeout for the connections it serves. */
const NGINX_KEEPALIVE_DEFAULT = 75;
/** The timeout every scenario here configures: short, and well clear of any kernel timer. */
const T = 2;
const UPLOAD = 4 * 1024 * 1024;

const at = {
  curl: (type: string, extra: Partial<Match> = {}): Match => ({ proc: 'curl', type, ...extra }),
  proxy: (type: string, extra: Partial<Match> = {}): Match => ({ proc: 'nginx', type, ...extra }),
  upstream: (type: string, extra: Partial<Match> = {}): Match => ({ proc: 'upstream', type, ...extra }),
};
/** curl's response with this HTTP status (the first one after the check's reference). */
const status = (code: number): Match => at.curl('response', { where: { status: code } });

function upstream(...flags: string[]): ProcSpec {
  return { name: 'upstream', program: 'nginx', host: 'upstream', args: ['--role', 'upstream', '--listen', `${UPSTREAM}:${PORT}`, ...flags] };
}

function proxy(...flags: string[]): ProcSpec {
  return { name: 'nginx', program: 'nginx', host: 'proxy', args: ['--listen', `${PROXY}:${PROXY_PORT}`, '--upstream', `${UPSTREAM}:${PORT}`, ...flags] };
}

function curl(steps: string, ...flags: string[]): ProcSpec {
  return { name: 'curl', program: 'curl', host: 'client', args: ['--url', PROXY_URL, ...flags, '--steps', steps] };
}

/** Packets to the upstream (the proxy's SYNs and requests) dropped, by the upstream host's firewall. */
const toUpstream: RuleSpec = { ...toServer(DROP), address: UPSTREAM, host: 'upstream' };
/** Packets from the upstream (its SYN-ACKs, ACKs and replies) dropped as they reach the proxy host. */
const fromUpstream: RuleSpec = { ...fromServer(DROP), address: UPSTREAM, host: 'proxy' };

const proxyDefault = (what: string) => (): DefaultFigure => ({
  seconds: NGINX_PROXY_DEFAULT,
  how: `${what} defaults to ${NGINX_PROXY_DEFAULT} s: the client waits a minute for its 504`,
});

/** The 504 band: nginx's timer never fires early and is checked on its event loop, a few ms late. */
const GATEWAY_TIMEOUT: Band = around(T);

const requires = ['nginx', 'curl'] as const;

/** curl checks the speed about once a second: exit 28 comes between --speed-time and a second later. */
const SPEED_WINDOW: Band = [3, 4.6];

export const proxyScenarios: readonly Scenario[] = [
  {
    id: 'nginx-connect-timeout',
    title: 'nginx cannot reach its upstream: 504 after proxy_connect_timeout',
    section: 'proxy',
    summary: `SYNs to the upstream are dropped; nginx (no connection pool, so every request connects anew) has proxy_connect_timeout ${T}s.`,
    topology: HOSTS,
    requires,
    procs: [upstream(), proxy('--connect-timeout', String(T)), curl('get')],
    triggers: [{ on: 'begin', do: [{ apply: toUpstream }] }],
    expect: [
      { match: at.proxy('upstream-timeout', { op: 'connect', errno: 'ETIMEDOUT' }), from: at.curl('request'), within: GATEWAY_TIMEOUT, says: 'nginx gave up connecting ("upstream timed out ... while connecting to upstream")' },
      { match: status(504), from: at.curl('request'), within: GATEWAY_TIMEOUT, primary: true, says: `504 Gateway Time-out after proxy_connect_timeout (${T} s)` },
    ],
    deadline: 10,
    explanation:
      'nginx opens a new connection to the upstream and starts its own timer; the kernel meanwhile retransmits the SYN (after 1 s, then with backoff), which the socket view shows as a SYN-SENT socket with a running retransmit timer. ' +
      `When proxy_connect_timeout expires nginx closes that socket, logs "upstream timed out (110: Connection timed out) while connecting to upstream", and answers the client 504. The 110 is nginx's own wording: the kernel never failed the connect, nginx stopped waiting. ` +
      'A connect timeout needs a new connection: with a pool of idle upstream connections (keepalive in the upstream block) nginx would reuse one, and the same dropped packets would end as a read or send timeout instead (see nginx-read-timeout). ' +
      'With the defaults, nginx gives up after 60 s, long before the kernel would (tcp_syn_retries=6: about two minutes).',
    defaults: (d) => ({
      seconds: Math.min(NGINX_PROXY_DEFAULT, synTimeout(d).failAt),
      how: `proxy_connect_timeout defaults to ${NGINX_PROXY_DEFAULT} s (nginx allows up to about 75 s); the kernel's own SYN retries (tcp_syn_retries=${d.synRetries}) would last ${humanDuration(synTimeout(d).failAt)}`,
    }),
    fixes: [
      { setting: 'proxy_connect_timeout 2s;', why: 'a handshake on a LAN takes well under a millisecond: a few seconds already means the upstream is gone, and the client should not wait a minute to learn it' },
      { setting: 'several servers in the upstream block, proxy_next_upstream error timeout;', why: 'nginx then tries the next server after the connect timeout instead of answering 504' },
    ],
  },
  {
    id: 'nginx-send-timeout',
    title: 'A large upload to a silent upstream: 504 after proxy_send_timeout',
    section: 'proxy',
    summary: `A GET puts an upstream connection in nginx's pool; then the upstream's packets are dropped and curl POSTs 4 MiB. proxy_send_timeout ${T}s.`,
    topology: HOSTS,
    requires,
    procs: [upstream(), proxy('--send-timeout', String(T), '--upstream-keepalive', '4'), curl(`get,wait:5,upload:${UPLOAD}`)],
    triggers: [{ on: at.curl('response'), do: [{ apply: fromUpstream }, { resume: 'curl' }] }],
    expect: [
      { match: at.curl('uploaded'), from: on.lab('fault'), says: 'curl sent the whole body to nginx' },
      { match: at.proxy('upstream-timeout', { op: 'send', errno: 'ETIMEDOUT' }), from: at.curl('uploaded'), within: GATEWAY_TIMEOUT, says: 'nginx gave up writing ("upstream timed out ... while sending request to upstream")' },
      { match: status(504), from: at.curl('uploaded'), within: GATEWAY_TIMEOUT, primary: true, says: `504 Gateway Time-out after proxy_send_timeout (${T} s)` },
    ],
    deadline: 12,
    explanation:
      'nginx reads the whole body from the client first (proxy_request_buffering is on by default; its log warns that the body went to a temporary file), then writes it to the pooled upstream connection. ' +
      'Nothing comes back, not even ACKs, so the first window of data stays unacknowledged, the kernel retransmits it with a growing RTO, and the socket\'s send buffer stays full: nginx\'s write returns EAGAIN and it waits for the socket to become writable. ' +
      'proxy_send_timeout is the longest wait between two successful writes, not a limit on the whole upload: when it expires nginx logs "upstream timed out (110: Connection timed out) while sending request to upstream" and answers 504. ' +
      'The connection needed to exist before the fault: a new one would have failed at the handshake, a connect timeout. The socket nginx closes keeps its unsent megabytes and retransmits on its own (FIN-WAIT-1) until the kernel gives up on the orphan.',
    defaults: proxyDefault('proxy_send_timeout'),
    fixes: [
      { setting: 'proxy_send_timeout 10s;', why: 'a stalled upstream is noticed in seconds, while a slow but moving upload (each write progresses) is never cut off' },
      { setting: 'proxy_request_buffering on; (the default)', why: 'nginx holds the whole body before it talks to the upstream, so a slow client cannot tie up an upstream connection' },
    ],
  },
  {
    id: 'nginx-read-timeout',
    title: 'The upstream\'s replies are dropped: 504 after proxy_read_timeout',
    section: 'proxy',
    summary: `A GET pools an upstream connection; then everything the upstream sends is dropped and curl GETs again over the pooled connection. proxy_read_timeout ${T}s.`,
    topology: HOSTS,
    requires,
    procs: [upstream(), proxy('--read-timeout', String(T), '--upstream-keepalive', '4'), curl('get,wait:5,get')],
    triggers: [{ on: at.curl('response'), do: [{ apply: fromUpstream }, { resume: 'curl' }] }],
    expect: [
      { match: at.proxy('upstream-timeout', { op: 'read', errno: 'ETIMEDOUT' }), from: at.curl('request', { nth: 2 }), within: GATEWAY_TIMEOUT, says: 'nginx gave up reading ("upstream timed out ... while reading response header from upstream")' },
      { match: status(504), from: at.curl('request', { nth: 2 }), within: GATEWAY_TIMEOUT, primary: true, says: `504 Gateway Time-out after proxy_read_timeout (${T} s)` },
    ],
    deadline: 10,
    explanation:
      'nginx reuses the pooled connection and writes the request, which reaches the upstream: only the upstream\'s packets are dropped. The upstream answers at once, but its reply never arrives, and neither do its ACKs, so both ends retransmit: nginx its request, the upstream its reply. ' +
      'proxy_read_timeout is the longest wait between two reads: after it nginx logs "upstream timed out (110: Connection timed out) while reading response header from upstream", closes the connection (a timed-out connection never goes back to the pool) and answers 504. ' +
      'For an application that really is slow, this is also the timeout that cuts it off: it must be longer than the slowest legitimate response.',
    defaults: proxyDefault('proxy_read_timeout'),
    fixes: [
      { setting: 'proxy_read_timeout set from the upstream\'s slowest legitimate response, plus a margin', why: 'shorter cuts off real answers; much longer keeps clients waiting on a dead upstream' },
      { setting: 'proxy_next_upstream timeout; with several servers (idempotent requests only)', why: 'nginx retries elsewhere; a non-idempotent request is never resent once it was sent' },
    ],
  },
  {
    id: 'nginx-upstream-idle-close',
    title: 'The upstream closes an idle pooled connection at its keepalive_timeout',
    section: 'proxy',
    summary: `The upstream nginx has keepalive_timeout ${T}s; the proxy pools its connection after a GET, and curl waits 3 s before the next one.`,
    topology: HOSTS,
    requires,
    procs: [upstream('--keepalive-timeout', String(T)), proxy('--upstream-keepalive', '4'), curl('get,sleep:3,get')],
    expect: [
      // From the upstream's own log line of the request: its keepalive timer starts right after.
      { match: at.upstream('idle-close'), from: at.upstream('access'), within: around(T), primary: true, says: `the upstream closed the idle connection (FIN) after keepalive_timeout (${T} s)` },
      // Timed from the same origin, not from the upstream's event: the two nginx logs are read
      // by two processes, and the proxy's line can be stamped a hair before the upstream's.
      { match: at.proxy('pool-closed'), from: at.upstream('access'), within: around(T), says: 'nginx saw the FIN and dropped the connection from its pool' },
      { match: at.proxy('upstream-connect'), from: at.curl('request', { nth: 2 }), within: AT_ONCE, says: 'the next request needed a new upstream connection' },
      { match: status(200), within: AT_ONCE, says: 'and it worked: 200' },
    ],
    deadline: 10,
    explanation:
      'After a response the upstream keeps the connection open for keepalive_timeout, waiting for the next request; when none comes it closes the connection with a FIN (the socket view shows it go to FIN-WAIT-2 and then TIME-WAIT on the upstream\'s side, and to CLOSE-WAIT and gone on the proxy\'s). ' +
      'nginx watches its pooled connections, so it notices the FIN and drops the connection from the pool; the next request opens a new one. Neither side logs this above the debug level. ' +
      'The danger is the race: a request written into a pooled connection at the moment the upstream closes it meets a FIN or a RST. nginx retries such a request once on a new connection when it can, but other clients report a failed request. The cure is ordering: the pool must give up on an idle connection before the server does.',
    defaults: () => ({
      seconds: NGINX_KEEPALIVE_DEFAULT,
      how: `an nginx upstream closes idle connections after keepalive_timeout ${NGINX_KEEPALIVE_DEFAULT} s by default; nginx's pool (keepalive_timeout in the upstream block) forgets them after 60 s, first`,
    }),
    fixes: [
      { setting: 'keepalive_timeout in the proxy\'s upstream block below the upstream server\'s idle timeout', why: 'the pool closes idle connections before the server does, so no request races a FIN (a Node.js server\'s default is 5 s, far below nginx\'s 60 s)' },
      { setting: 'keepalive 16; with proxy_http_version 1.1; proxy_set_header Connection "";', why: 'without these nginx opens a connection per request and there is no pool at all' },
    ],
  },
  {
    id: 'slow-client-speed-limit',
    title: 'A client trickling a byte a second: no timeout fires, only a speed limit ends it',
    section: 'proxy',
    summary: `curl POSTs a body at 1 byte/s through nginx (client_body_timeout, proxy timeouts all ${T}s); curl has --speed-limit 100 --speed-time 3.`,
    topology: HOSTS,
    requires,
    procs: [
      upstream(),
      proxy('--client-body-timeout', String(T), '--send-timeout', String(T), '--read-timeout', String(T)),
      curl('slow-upload:1:30', '--speed-limit', '100', '--speed-time', '3'),
    ],
    expect: [
      { kind: 'quiet', proc: 'nginx', types: ['client-timeout', 'upstream-timeout', 'access'], for: 2.5, from: at.curl('request'), says: `nginx's ${T} s timeouts never fire: a byte arrives every second` },
      { match: at.proxy('client-eof'), from: at.curl('request'), within: SPEED_WINDOW, says: 'nginx only learns of it when curl hangs up' },
      { match: at.curl('error', { where: { curl: 28 } }), from: at.curl('request'), within: SPEED_WINDOW, primary: true, says: 'curl exit 28: "Operation too slow" after its 3 s speed window' },
    ],
    deadline: 12,
    explanation:
      'Every nginx timeout measures the gap between two reads or two writes, never the total: client_body_timeout, proxy_send_timeout and proxy_read_timeout all restart with each byte. A client that sends one byte a second keeps a connection, a buffer and (without request buffering) an upstream connection busy for as long as it likes. ' +
      'A rate rule is what catches it: curl\'s --speed-limit B --speed-time S ends a transfer that stays below B bytes/s for S seconds (curl checks about once a second, so the exit comes between S and S + 1 s) with exit code 28, "Operation too slow". ' +
      'On the server side the equivalents are a total deadline or a minimum rate, not a longer or shorter idle timeout.',
    defaults: () => ({ seconds: Infinity, how: 'curl has no speed limit by default, and nginx\'s client_body_timeout (60 s) restarts with every byte: the trickle goes on for as long as the client likes' }),
    fixes: [
      { setting: 'curl --speed-limit 1000 --speed-time 10 (CURLOPT_LOW_SPEED_LIMIT / CURLOPT_LOW_SPEED_TIME)', why: 'ends a transfer that crawls, which no idle timeout can detect' },
      { setting: 'on the server: a total deadline per request (e.g. an application timeout), limit_conn per client address', why: 'bounds what one slow client can hold, however it paces its bytes' },
    ],
  },
];
