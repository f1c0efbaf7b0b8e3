/**
 * What a reader of each scenario of sections A and B expects to see on the timeline, written
 * from SCENARIOS.md and the kernel's behaviour, not read from the lab: each sequence must occur
 * in order (other events may come between), and no `never` event may occur at all.
 *
 * Tokens: `P:c>s:syn` a packet from the client side to the server side (port 7000/7001) or
 * `P:s>c:rst` back; `S:new:SYN-SENT(on,0):127.0.0.1:7000` a socket transition with its state,
 * timer and, for a new socket, its peer; `A:client:error:ETIMEDOUT` a program's event;
 * `L:fault` a step of the lab. A step matches a token it is a prefix of; `A|B` matches either
 * (where the kernel has two honest paths to the same outcome).
 */
export interface Expected {
  sequences: string[][];
  never?: string[];
}

export interface StreamEvent {
  scenario: string;
  t: number;
  source: string;
  proc: string;
  type: string;
  conn?: string;
  state?: string;
  timer?: { kind: string; count: number };
  name?: string;
  of?: string;
  icmp?: string;
  /** A lab `fault` mark (at the command's start): seconds the command ran. */
  took?: number;
}

/**
 * A socket that is established at its host: first seen so, or moved there. A 100 ms poll may
 * catch a connect in SYN-SENT on a loaded machine, so `new` alone would miss it.
 */
export function becameEstablished(e: StreamEvent): boolean {
  return e.source === 'socket' && (e.type === 'new' || e.type === 'state') && e.state === 'ESTAB';
}

const SERVER_PORTS = new Set(['7000', '7001']);

function direction(conn = ''): string {
  const [from, to] = conn.split('>');
  const port = (side = '') => side.slice(side.lastIndexOf(':') + 1);
  if (SERVER_PORTS.has(port(to))) return 'c>s';
  if (SERVER_PORTS.has(port(from))) return 's>c';
  return '?';
}

export function token(e: StreamEvent): string | null {
  switch (e.source) {
    case 'packet':
      return `P:${direction(e.conn)}:${e.type}${e.of ? `/${e.of}` : ''}${e.icmp ? `/${e.icmp}` : ''}`;
    case 'socket': {
      const timer = e.timer ? `(${e.timer.kind},${e.timer.count})` : '';
      return `S:${e.type}:${e.state}${timer}${e.type === 'new' ? `:${e.conn?.split('>')[1]}` : ''}`;
    }
    case 'app':
    case 'strace':
      return `A:${e.proc}:${e.type}${e.name ? `:${e.name}` : ''}`;
    case 'lab':
      return `L:${e.type}`;
    default:
      return null;
  }
}

/** The problems with one scenario's stream: each missing step, each forbidden event seen. */
export function checkTransitions(id: string, events: readonly StreamEvent[], expected: Expected): string[] {
  const tokens = events.map(token).filter((x): x is string => x !== null);
  const problems: string[] = [];
  for (const seq of expected.sequences) {
    let at = 0;
    for (const step of seq) {
      const options = step.split('|');
      const found = tokens.findIndex((tk, i) => i >= at && options.some((o) => tk.startsWith(o)));
      if (found < 0) {
        problems.push(`${id}: no ${step} after ${seq.slice(0, seq.indexOf(step)).join(' ') || 'the start'} (stream: ${tokens.join(' ').slice(0, 1500)})`);
        break;
      }
      at = found + 1;
    }
  }
  for (const bad of expected.never ?? []) {
    if (tokens.some((tk) => tk.startsWith(bad))) problems.push(`${id}: ${bad} should never happen`);
  }
  return problems;
}

const icmpConnect = (icmp: string, errno: string): Expected => ({
  // On loopback the first ICMP error is soft (the socket is busy in connect()): the SYN is sent
  // again a second later and the second error fails the connect.
  sequences: [['L:fault', 'P:c>s:syn', `P:c>s:icmp/${icmp}`, 'S:new:SYN-SENT(on', 'P:c>s:retransmit/syn', `P:c>s:icmp/${icmp}`, `A:client:error:${errno}`, 'S:gone:SYN-SENT']],
  never: ['A:client:connected', 'P:s>c:syn-ack'],
});

export const TRANSITIONS: Record<string, Expected> = {
  // A: connect
  'connect-refused': { sequences: [['P:c>s:syn', 'P:s>c:rst', 'A:client:error:ECONNREFUSED']], never: ['S:new:LISTEN', 'A:client:connected'] },
  'reject-tcp-reset': { sequences: [['L:fault', 'P:c>s:syn', 'P:s>c:rst', 'A:client:error:ECONNREFUSED']], never: ['P:s>c:syn-ack'] },
  'reject-icmp-port-unreachable': icmpConnect('port-unreachable', 'ECONNREFUSED'),
  'reject-icmp-host-unreachable': icmpConnect('host-unreachable', 'EHOSTUNREACH'),
  'reject-icmp-host-prohibited': icmpConnect('host-prohibited', 'EHOSTUNREACH'),
  'reject-icmp-admin-prohibited': icmpConnect('admin-prohibited', 'EHOSTUNREACH'),
  'reject-icmp-net-unreachable': icmpConnect('net-unreachable', 'ENETUNREACH'),
  'reject-icmp-net-prohibited': icmpConnect('net-prohibited', 'ENETUNREACH'),
  'reject-icmp-proto-unreachable': icmpConnect('protocol-unreachable', 'ENOPROTOOPT'),
  'connect-timeout-drop-syn': {
    sequences: [['L:fault', 'P:c>s:syn', 'S:new:SYN-SENT(on,0)', 'P:c>s:retransmit/syn', 'S:timer:SYN-SENT(on,1)', 'P:c>s:retransmit/syn', 'S:timer:SYN-SENT(on,2)', 'A:client:error:ETIMEDOUT', 'S:gone:SYN-SENT']],
    never: ['P:s>c:syn-ack', 'A:client:connected'],
  },
  'connect-timeout-drop-synack': {
    sequences: [
      ['L:fault', 'P:c>s:syn', 'S:new:SYN-SENT(on,0)', 'P:c>s:retransmit/syn', 'S:timer:SYN-SENT(on,1)', 'A:client:error:ETIMEDOUT', 'S:gone:SYN-SENT'],
      // The server answers every SYN; its half-open request socket retransmits the SYN-ACK too.
      ['P:s>c:syn-ack', 'S:new:SYN-RECV(on', 'P:s>c:retransmit/syn-ack'],
    ],
    never: ['A:client:connected'],
  },
  'connect-app-timeout': {
    sequences: [['L:fault', 'P:c>s:syn', 'S:new:SYN-SENT(on,0)', 'A:client:timeout', 'S:gone:SYN-SENT']],
    never: ['A:client:error'],
  },
  // B: established
  // The server closes as soon as it accepts: its FIN can beat the client's own `connected` event.
  'server-fin': { sequences: [['P:c>s:syn', 'P:s>c:syn-ack', 'P:s>c:fin', 'A:client:eof', 'P:c>s:data', 'P:s>c:rst', 'A:client:error:EPIPE']] },
  'server-close-unread': { sequences: [['A:client:connected', 'P:c>s:data', 'P:s>c:rst', 'A:client:error:ECONNRESET']], never: ['P:s>c:fin'] },
  'server-kill': {
    sequences: [
      ['S:new:ESTAB', 'L:killed', 'P:s>c:fin', 'A:client:eof', 'P:c>s:syn', 'P:s>c:rst', 'A:client:error:ECONNREFUSED'],
      // The killed server closed first: its side waits in TIME-WAIT.
      ['L:killed', 'S:state:TIME-WAIT(timewait'],
    ],
  },
  'proxy-kill': {
    sequences: [['S:new:ESTAB', 'L:killed', 'P:s>c:fin', 'A:client:eof'], ['L:killed', 'A:server:eof'], ['L:killed', 'S:gone:ESTAB']],
    never: ['P:s>c:rst', 'P:c>s:rst'],
  },
  'reject-reset-established': { sequences: [['S:new:ESTAB', 'L:fault', 'P:c>s:data', 'P:s>c:rst', 'A:client:error:ECONNRESET', 'S:gone:ESTAB']] },
  'reject-icmp-established': {
    sequences: [['S:new:ESTAB', 'L:fault', 'P:c>s:data', 'P:c>s:icmp/host-unreachable', 'S:timer:ESTAB(on', 'P:c>s:retransmit/data', 'S:retrans:ESTAB', 'A:client:error:EHOSTUNREACH', 'S:gone:ESTAB']],
  },
  'drop-with-traffic': {
    sequences: [['S:new:ESTAB', 'L:fault', 'P:c>s:data', 'S:timer:ESTAB(on', 'P:c>s:retransmit/data', 'S:retrans:ESTAB', 'A:client:error:ETIMEDOUT', 'S:gone:ESTAB']],
    never: ['P:s>c:rst', 'P:c>s:rst'],
  },
  'half-open-idle': {
    // Nothing is sent, so nothing is lost and nothing is noticed: both ends stay ESTABLISHED.
    sequences: [['S:new:ESTAB'], ['A:client:connected', 'L:fault']],
    never: ['S:gone:ESTAB', 'S:state', 'P:c>s:retransmit', 'P:c>s:keepalive', 'A:client:error'],
  },
  'keepalive-detects': {
    sequences: [
      ['S:new:ESTAB(keepalive,0)'],
      ['L:fault', 'P:c>s:keepalive', 'S:timer:ESTAB(keepalive,1)', 'P:c>s:keepalive', 'S:timer:ESTAB(keepalive,2)', 'P:c>s:rst', 'A:client:error:ETIMEDOUT', 'S:gone:ESTAB'],
    ],
  },
  'server-keepalive-rst': {
    sequences: [['L:fault', 'P:s>c:keepalive', 'S:timer:ESTAB(keepalive,1)', 'P:s>c:rst', 'A:client:error:ECONNRESET'], ['P:s>c:rst', 'A:server:error:ETIMEDOUT']],
  },
  'heartbeat-detects': {
    sequences: [['S:new:ESTAB', 'L:fault', 'P:c>s:data', 'S:timer:ESTAB(on', 'P:c>s:retransmit/data', 'A:client:dead']],
  },
  'peer-reboot': {
    sequences: [['L:fault', 'L:killed', 'P:s>c:fin', 'S:state:FIN-WAIT-1', 'P:s>c:retransmit/fin', 'L:removed', 'P:c>s:data', 'P:s>c:rst', 'A:client:error:ECONNRESET']],
  },
  'write-timeout-buffer-full': {
    // Two paths, depending on whether the server's receive window had closed before the fault:
    // data retransmitted on the `on` timer, or zero-window probes on the `persist` timer (the
    // window updates are dropped too). Both end in ETIMEDOUT after tcp_retries2.
    sequences: [['L:fault', 'P:c>s:retransmit/data|P:c>s:window-probe', 'S:timer:ESTAB(on,1)|S:timer:ESTAB(persist,1)', 'A:client:error:ETIMEDOUT', 'S:gone:ESTAB']],
    never: ['P:c>s:keepalive'],
  },
  'read-timeout': {
    sequences: [['A:client:connected', 'S:new:ESTAB', 'A:client:error:EAGAIN', 'P:c>s:fin']],
    never: ['P:s>c:rst', 'P:c>s:rst'],
  },
  'server-idle-timeout': {
    sequences: [['S:new:ESTAB', 'P:s>c:fin', 'A:client:eof', 'S:state:TIME-WAIT(timewait']],
    never: ['P:s>c:rst', 'P:c>s:rst'],
  },
};
