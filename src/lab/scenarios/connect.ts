import { errnoNumber } from '../errno';
import type { RejectWith } from '../rules';
import { synTimeout, humanDuration } from '../timers';
import { AT_ONCE, around, client, DROP, fromServer, on, server, toServer } from './common';
import type { Scenario } from './types';

const immediate = () => ({ seconds: 0, how: 'immediate: the answer comes back in one round trip' });

const synFigure = (t: Parameters<typeof synTimeout>[0]) => {
  const s = synTimeout(t);
  return {
    seconds: s.failAt,
    how: `${s.sends.length} SYNs (at ${s.sends.join(', ')} s), ETIMEDOUT at ${humanDuration(s.failAt)} ` +
      `(tcp_syn_retries=${t.synRetries}${t.synLinearTimeouts === null ? '' : `, tcp_syn_linear_timeouts=${t.synLinearTimeouts}`})`,
  };
};

const connectFixes = [
  { setting: 'a connect timeout in the application (non-blocking connect + poll)', why: 'bounds the wait at the application\'s choice instead of the kernel\'s 2 minutes' },
  { setting: 'setsockopt(IPPROTO_TCP, TCP_SYNCNT, 2)', why: 'fewer SYN retransmissions for this socket only: fails after about 7 s' },
];

/**
 * On one host the first SYN's ICMP error is handled inside the connect() call itself, while
 * the socket is locked: tcp_v4_err can then only record a soft error, and the connect fails
 * when the second SYN's ICMP arrives, one SYN RTO later. Measured on 6.18 over loopback: 1.02 s
 * in 12 runs of 12, idle or loaded; a RST (tcp-reset) is queued to the socket backlog instead
 * and fails the connect at once.
 */
const ICMP_ON_ONE_HOST = [0, 1.4] as const;
const ICMP_TIMING =
  'Across a real network the ICMP comes back a round trip later, while connect() sleeps, and fails it at once. ' +
  'In the lab the server is on the same host, so the first SYN\'s ICMP arrives inside the connect() call while its socket is locked; ' +
  'the kernel can then only note it as a soft error (tcp_v4_err), and the connect fails when the second SYN, 1 s later, meets the rule again: the 1 s you see is the SYN RTO, not the firewall. ' +
  'A DROP, by contrast, leaves the client retrying for minutes.';

/** What a REJECT variant looks like to the connecting client. */
const REJECTS: readonly { variant: RejectWith; errno: string; why: string }[] = [
  { variant: 'icmp-port-unreachable', errno: 'ECONNREFUSED', why: 'An ICMP port unreachable (type 3 code 3) is a hard error for a connecting socket: the kernel maps it to ECONNREFUSED (tcp_v4_err, icmp_err_convert), the same errno as a RST. Only the packets tell them apart: a RST comes back from the port, an ICMP message from the host. It is REJECT\'s default.' },
  { variant: 'icmp-host-unreachable', errno: 'EHOSTUNREACH', why: 'ICMP host unreachable (type 3 code 1) aborts a connect in SYN-SENT at once with EHOSTUNREACH. On an established connection the same message is only a soft error (see reject-icmp-established).' },
  { variant: 'icmp-host-prohibited', errno: 'EHOSTUNREACH', why: 'Host administratively prohibited (type 3 code 10) maps to EHOSTUNREACH like a plain host unreachable: a client cannot tell a firewall from a missing host by errno.' },
  { variant: 'icmp-admin-prohibited', errno: 'EHOSTUNREACH', why: 'Communication administratively prohibited (type 3 code 13, RFC 1812) also maps to EHOSTUNREACH.' },
  { variant: 'icmp-net-unreachable', errno: 'ENETUNREACH', why: 'Network unreachable (type 3 code 0) maps to ENETUNREACH: the errno a client also gets when it has no route at all.' },
  { variant: 'icmp-net-prohibited', errno: 'ENETUNREACH', why: 'Network administratively prohibited (type 3 code 9) maps to ENETUNREACH.' },
  { variant: 'icmp-proto-unreachable', errno: 'ENOPROTOOPT', why: 'Protocol unreachable (type 3 code 2) maps to ENOPROTOOPT, "protocol not available": a confusing errno for a connect, and a sign of a firewall rather than of the peer.' },
];

function rejectScenario(r: (typeof REJECTS)[number]): Scenario {
  return {
    id: `reject-${r.variant}`,
    title: `REJECT with ${r.variant}: ${r.errno} (${errnoNumber(r.errno)})`,
    section: 'connect',
    summary: `A server listens, but iptables rejects its port with --reject-with ${r.variant}.`,
    procs: [server('echo'), client('connect')],
    triggers: [{ on: 'begin', do: [{ apply: toServer({ action: 'reject', rejectWith: r.variant }) }] }],
    expect: [{
      match: on.client('error', { op: 'connect', errno: r.errno }),
      from: on.client('connect-start'),
      within: ICMP_ON_ONE_HOST,
      primary: true,
      says: 'after the second SYN: one RTO on a single host',
    }],
    deadline: 5,
    explanation: `${r.why} ${ICMP_TIMING}`,
    defaults: immediate,
    fixes: [
      { setting: `treat ${r.errno} as "not reachable now": retry with backoff`, why: 'a REJECT is an answer; retrying at once only hammers the firewall' },
      { setting: 'iptables -L -v -x -n (rule counters) or tcpdump icmp', why: 'tells a firewall REJECT from a closed port' },
    ],
  };
}

export const connectScenarios: readonly Scenario[] = [
  {
    id: 'connect-refused',
    title: 'Nothing listens: ECONNREFUSED (111)',
    section: 'connect',
    summary: 'The client connects to a port where no server listens.',
    procs: [client('connect')],
    expect: [{ match: on.client('error', { op: 'connect', errno: 'ECONNREFUSED' }), from: on.client('connect-start'), within: AT_ONCE, primary: true }],
    deadline: 5,
    explanation:
      'The peer\'s kernel has no socket for the port, so it answers the SYN with a RST (RFC 793, "reset generation"), and connect() fails with ECONNREFUSED at once. A refused connect is fast and certain: the host is up and the service is not.',
    defaults: immediate,
    fixes: [
      { setting: 'ss -tlnp on the server', why: 'shows whether anything listens on that address and port' },
      { setting: 'retry with backoff and a cap', why: 'the service may be restarting; a tight loop of refused connects burns CPU on both sides' },
    ],
  },
  {
    id: 'reject-tcp-reset',
    title: 'REJECT with tcp-reset: ECONNREFUSED (111)',
    section: 'connect',
    summary: 'A server listens, but iptables answers SYNs to its port with a forged RST.',
    procs: [server('echo'), client('connect')],
    triggers: [{ on: 'begin', do: [{ apply: toServer({ action: 'reject', rejectWith: 'tcp-reset' }) }] }],
    expect: [{ match: on.client('error', { op: 'connect', errno: 'ECONNREFUSED' }), from: on.client('connect-start'), within: AT_ONCE, primary: true }],
    deadline: 5,
    explanation:
      'iptables forges the RST the server\'s kernel would send if nothing listened: the client cannot tell the firewall from a closed port (same ECONNREFUSED, same timing). The server never sees the SYN.',
    defaults: immediate,
    fixes: [{ setting: 'iptables -L -v -x -n', why: 'the rule\'s packet counter rising with each connect shows the firewall, not the service, refused' }],
  },
  ...REJECTS.map(rejectScenario),
  {
    id: 'connect-timeout-drop-syn',
    title: 'SYNs dropped: ETIMEDOUT (110) after the SYN retries',
    section: 'connect',
    summary: 'iptables DROPs every SYN to the server\'s port; the client retransmits until tcp_syn_retries runs out.',
    sysctls: { 'net.ipv4.tcp_syn_retries': 1 },
    procs: [server('echo'), client('connect')],
    triggers: [{ on: 'begin', do: [{ apply: toServer(DROP) }] }],
    expect: [{ match: on.client('error', { op: 'connect', errno: 'ETIMEDOUT' }), from: on.client('connect-start'), within: (t) => around(synTimeout(t).failAt), primary: true }],
    deadline: (t) => synTimeout(t).failAt * 1.2 + 3,
    explanation:
      'A DROP gives no answer, so the client cannot tell a lost SYN from a slow network: it retransmits the SYN with a 1 s RTO that doubles (recent kernels first repeat it at 1 s intervals, tcp_syn_linear_timeouts). ' +
      'It gives up when the time tcp_syn_retries doubling retransmissions would take has passed, checked when the retransmit timer fires. With the default 6 that is 127 s of model time, 131 s on a kernel with linear timeouts.',
    defaults: synFigure,
    fixes: connectFixes,
  },
  {
    id: 'connect-timeout-drop-synack',
    title: 'SYN-ACKs dropped: ETIMEDOUT (110), the server in SYN-RECV',
    section: 'connect',
    summary: 'iptables DROPs what the server sends back: the server sees each SYN and answers, the client never hears it.',
    sysctls: { 'net.ipv4.tcp_syn_retries': 1 },
    procs: [server('echo'), client('connect')],
    triggers: [{ on: 'begin', do: [{ apply: fromServer(DROP) }] }],
    expect: [{ match: on.client('error', { op: 'connect', errno: 'ETIMEDOUT' }), from: on.client('connect-start'), within: (t) => around(synTimeout(t).failAt), primary: true }],
    deadline: (t) => synTimeout(t).failAt * 1.2 + 3,
    explanation:
      'For the client this looks exactly like lost SYNs: same retries, same ETIMEDOUT. The server side differs: each SYN creates a request socket in SYN-RECV that retransmits its SYN-ACK (tcp_synack_retries) and never reaches accept(). A firewall that blocks only one direction is found by looking at both ends.',
    defaults: synFigure,
    fixes: connectFixes,
  },
  {
    id: 'connect-app-timeout',
    title: 'The application\'s connect timeout fires first',
    section: 'connect',
    summary: 'SYNs dropped, kernel defaults left alone; the client bounds its connect at 1 s with a non-blocking connect and poll.',
    procs: [server('echo'), client('connect', '--connect-timeout', '1')],
    triggers: [{ on: 'begin', do: [{ apply: toServer(DROP) }] }],
    expect: [{ match: on.client('timeout', { op: 'connect' }), from: on.client('connect-start'), within: [1, 1.3], primary: true, says: 'the application gave up after its own 1 s' }],
    deadline: 6,
    explanation:
      'With the default tcp_syn_retries the kernel would keep the connect alive for over two minutes. The application\'s own timeout ends it at the moment it chose; no errno comes from the kernel, the application decides. ' +
      'The lesson runs the other way too: an application connect timeout longer than the kernel\'s never fires, because the kernel fails the connect first with ETIMEDOUT.',
    defaults: (d) => ({ seconds: synTimeout(d).failAt, how: `without the application's timeout: ${synFigure(d).how}` }),
    fixes: connectFixes,
  },
];
