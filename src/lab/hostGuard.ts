/**
 * The guard of host mode: a host rule must never cut the connection the editor itself runs
 * over (the SSH session of Remote-SSH, the VS Code server's ports). The check is a pure
 * function of the rule and a list of protected endpoints; protectedEndpoints() gathers those
 * from the environment and from the sockets of given processes (/proc).
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { LabError } from './errors';
import { describe, effectiveChain, type FaultRule, type IptablesChain } from './rules';
import { ppidFromStat } from './hostRulesBackend';

/**
 * One end of a connection on this host that must keep working. A listener, or a port the
 * caller names, has no remote end: its clients' ports are unknown, and they may be on this
 * host too (ssh forwards Remote-SSH to the server's port on 127.0.0.1).
 */
export interface ProtectedEndpoint {
  /** The port on this host's side (the SSH server's 22, a listening port). */
  localPort: number;
  localAddress?: string;
  /** The peer's port and address, when it is a connection. */
  remotePort?: number;
  remoteAddress?: string;
  /** What it is, for the refusal: "the SSH session this runs over (SSH_CONNECTION …)". */
  why: string;
}

export interface GuardHit {
  endpoint: ProtectedEndpoint;
  /** Why the rule hits it, naming the port and the packets. */
  reason: string;
}

interface Packet {
  sport?: number;
  dport?: number;
  saddr?: string;
  daddr?: string;
  chains: IptablesChain[];
  what: string;
}

/**
 * The packets of the endpoint's connection and the chains they pass. A packet this host sends
 * passes OUTPUT, one it receives INPUT; when both ends are on this host (loopback, or a
 * listener whose clients may be local) every packet passes both. FORWARD is counted for every
 * packet: it normally sees only routed traffic, but the editor may reach this host through a
 * container or VM bridge, and a refused rule costs less than a lost session.
 */
function packetsOf(ep: ProtectedEndpoint): Packet[] {
  const local = ep.remotePort === undefined || isLoopback(ep.remoteAddress) || isLoopback(ep.localAddress) ||
    (ep.remoteAddress !== undefined && ep.remoteAddress === ep.localAddress);
  const both: IptablesChain[] = ['INPUT', 'OUTPUT', 'FORWARD'];
  return [
    { sport: ep.remotePort, dport: ep.localPort, saddr: ep.remoteAddress, daddr: ep.localAddress,
      chains: local ? both : ['INPUT', 'FORWARD'], what: 'the packets that arrive at it' },
    { sport: ep.localPort, dport: ep.remotePort, saddr: ep.localAddress, daddr: ep.remoteAddress,
      chains: local ? both : ['OUTPUT', 'FORWARD'], what: 'the packets it sends' },
  ];
}

/**
 * Which protected endpoints the rule would hit. A rule hits a packet when the packet passes
 * the rule's chain and its port is the rule's port on the rule's side (to-port: the
 * destination port; from-port: the source port), and the rule's address, if any, may be the
 * packet's address on that side. An unknown port never matches (a listener's clients use
 * ports nobody can know); an unknown address always may.
 */
export function checkHostRule(rule: FaultRule, endpoints: readonly ProtectedEndpoint[]): GuardHit[] {
  const chain = effectiveChain(rule);
  const hits: GuardHit[] = [];
  for (const endpoint of endpoints) {
    for (const p of packetsOf(endpoint)) {
      if (!p.chains.includes(chain)) continue;
      const [port, address] = rule.direction === 'to-port' ? [p.dport, p.daddr] : [p.sport, p.saddr];
      if (port !== rule.port || !addressMayMatch(rule.address, address)) continue;
      const forward = chain === 'FORWARD' ? ' (FORWARD: the lab also refuses it there, in case the connection is routed through this host)' : '';
      hits.push({ endpoint, reason: `a ${rule.direction} ${rule.port} rule in ${chain} drops ${p.what}${forward}` });
      break;
    }
  }
  return hits;
}

/** Throws a LabError naming the port and what it would cut, when checkHostRule finds a hit. */
export function assertHostRuleSafe(rule: FaultRule, endpoints: readonly ProtectedEndpoint[]): void {
  const hits = checkHostRule(rule, endpoints);
  if (hits.length === 0) return;
  const lines = hits.map((h) => `  port ${rule.port} is ${h.endpoint.why}: ${h.reason}`);
  throw new LabError(`refusing host rule ${rule.id} (${describe(rule)}): it would cut the connection this session runs over\n${lines.join('\n')}`, {
    field: 'port',
    value: rule.port,
    hint: 'pick another port, or narrow the rule with an address (--address) or a chain that does not carry this connection',
  });
}

// ---------------------------------------------------------------------------------------------
// where the endpoints come from

/**
 * The SSH session this process runs in: SSH_CONNECTION is "client_ip client_port server_ip
 * server_port" (ssh(1)); SSH_CLIENT, the older one, is "client_ip client_port server_port".
 * This host is the server side: its port (22) is the local end.
 */
export function sshEndpoints(env: NodeJS.ProcessEnv): ProtectedEndpoint[] {
  const conn = env.SSH_CONNECTION?.trim().split(/\s+/);
  if (conn?.length === 4 && isPort(conn[1]) && isPort(conn[3])) {
    return [{
      localPort: Number(conn[3]), localAddress: conn[2], remotePort: Number(conn[1]), remoteAddress: conn[0],
      why: `the SSH session this runs over (SSH_CONNECTION: ${conn[0]}:${conn[1]} -> ${conn[2]}:${conn[3]}, this host's sshd on ${conn[3]})`,
    }];
  }
  const client = env.SSH_CLIENT?.trim().split(/\s+/);
  if (client?.length === 3 && isPort(client[1]) && isPort(client[2])) {
    return [{
      localPort: Number(client[2]), remotePort: Number(client[1]), remoteAddress: client[0],
      why: `the SSH session this runs over (SSH_CLIENT: ${client[0]}:${client[1]} -> this host's sshd on ${client[2]})`,
    }];
  }
  return [];
}

/** One line of /proc/net/tcp or tcp6 (proc(5)). */
export interface ProcSocket {
  localAddress: string;
  localPort: number;
  remoteAddress: string;
  remotePort: number;
  /** The kernel's TCP state number: 0x0A LISTEN, 0x01 ESTABLISHED, 0x06 TIME_WAIT, … */
  state: number;
  inode: number;
}

export const TCP_LISTEN = 0x0a;
const TCP_TIME_WAIT = 0x06;
const TCP_CLOSE = 0x07;

/**
 * Parses /proc/net/tcp{,6}: `sl local rem st … inode`, addresses as hex in the kernel's byte
 * order (IPv4: one little-endian word; IPv6: four), ports as big-endian hex.
 */
export function parseProcNetTcp(text: string): ProcSocket[] {
  const out: ProcSocket[] = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10) continue;
    const local = hexEndpoint(f[1]!);
    const remote = hexEndpoint(f[2]!);
    if (!local || !remote || !/^[0-9A-Fa-f]{2}$/.test(f[3]!) || !/^\d+$/.test(f[9]!)) continue;
    out.push({ localAddress: local[0], localPort: local[1], remoteAddress: remote[0], remotePort: remote[1], state: parseInt(f[3]!, 16), inode: Number(f[9]) });
  }
  return out;
}

function hexEndpoint(text: string): [string, number] | undefined {
  const m = /^([0-9A-Fa-f]{8}|[0-9A-Fa-f]{32}):([0-9A-Fa-f]{4})$/.exec(text);
  if (!m) return undefined;
  const words = m[1]!.match(/.{8}/g)!.map((w) => w.match(/../g)!.reverse().map((b) => parseInt(b, 16)));
  const bytes = words.flat();
  const port = parseInt(m[2]!, 16);
  if (bytes.length === 4) return [bytes.join('.'), port];
  // An IPv4 peer of an IPv6 socket is ::ffff:a.b.c.d; on the wire it is plain IPv4.
  if (bytes.slice(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff) return [bytes.slice(12).join('.'), port];
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  return [groups.join(':'), port];
}

/**
 * The endpoints of the sockets a process holds: listeners (when asked), and connections that
 * are still up. A wildcard listening address (0.0.0.0, ::) names no address.
 */
export function endpointsOfSockets(sockets: readonly ProcSocket[], inodes: ReadonlySet<number>, who: string, listening: boolean): ProtectedEndpoint[] {
  const out: ProtectedEndpoint[] = [];
  for (const s of sockets) {
    if (!inodes.has(s.inode) || s.inode === 0) continue;
    const address = isWildcard(s.localAddress) ? undefined : s.localAddress;
    if (s.state === TCP_LISTEN) {
      if (listening) out.push({ localPort: s.localPort, ...(address ? { localAddress: address } : {}), why: `the port ${who} listens on (${s.localAddress}:${s.localPort})` });
    } else if (s.state !== TCP_TIME_WAIT && s.state !== TCP_CLOSE) {
      out.push({
        localPort: s.localPort, localAddress: s.localAddress, remotePort: s.remotePort, remoteAddress: s.remoteAddress,
        why: `a connection of ${who} (${s.localAddress}:${s.localPort} <-> ${s.remoteAddress}:${s.remotePort})`,
      });
    }
  }
  return out;
}

export interface ProtectOptions {
  /** Ports the caller knows the editor needs (the VS Code server's port). */
  ports?: ReadonlyArray<number | { port: number; why: string }>;
  /** Protect the listening ports of the pids too (default true); connections always. */
  listening?: boolean;
}

/**
 * Everything the editor's connection could run through: the SSH session in `env`, the
 * listening ports and open connections of `pids` (the extension host's parents: the VS Code
 * server, sshd), and the ports the caller names. Reading another user's /proc/<pid>/fd needs
 * root; a process that cannot be read (gone, or not ours) is skipped.
 */
export function protectedEndpoints(env: NodeJS.ProcessEnv, pids: readonly number[], options: ProtectOptions = {}): ProtectedEndpoint[] {
  const endpoints = sshEndpoints(env);
  for (const p of options.ports ?? []) {
    const [port, why] = typeof p === 'number' ? [p, `port ${p}, named as one the editor uses`] : [p.port, p.why];
    endpoints.push({ localPort: port, why });
  }
  for (const pid of new Set(pids)) {
    const inodes = socketInodes(pid);
    if (inodes.size === 0) continue;
    const who = `${readText(`/proc/${pid}/comm`)?.trim() ?? 'process'} (pid ${pid})`;
    const sockets = ['tcp', 'tcp6'].flatMap((f) => parseProcNetTcp(readText(`/proc/${pid}/net/${f}`) ?? ''));
    endpoints.push(...endpointsOfSockets(sockets, inodes, who, options.listening ?? true));
  }
  return endpoints;
}

/**
 * The process and its ancestors, up to but without pid 1: init holds the listeners of
 * socket-activated services that have nothing to do with the editor.
 */
export function ancestorPids(pid: number = process.pid): number[] {
  const out: number[] = [];
  for (let p: number | undefined = pid; p !== undefined && p > 1 && out.length < 64; ) {
    out.push(p);
    const stat = readText(`/proc/${p}/stat`);
    p = stat === undefined ? undefined : ppidFromStat(stat);
  }
  return out;
}

function socketInodes(pid: number): Set<number> {
  const inodes = new Set<number>();
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return inodes;
  }
  for (const fd of fds) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(Number(m[1]));
    } catch {
      // closed between readdir and readlink
    }
  }
  return inodes;
}

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

function isPort(text: string | undefined): boolean {
  return text !== undefined && /^\d{1,5}$/.test(text) && Number(text) >= 1 && Number(text) <= 65535;
}

function isWildcard(address: string): boolean {
  return address === '0.0.0.0' || /^[0:]+$/.test(address);
}

function isLoopback(address: string | undefined): boolean {
  if (address === undefined) return false;
  return address.startsWith('127.') || address === '::1' || /^(0+:){7}0*1$/.test(address) || address === '::ffff:127.0.0.1';
}

/**
 * Whether a rule's IPv4 address or network may match the endpoint's address. Unknown or IPv6
 * endpoint addresses (the rules are IPv4 only today, but that may change) count as a match.
 */
export function addressMayMatch(ruleAddress: string | undefined, address: string | undefined): boolean {
  if (ruleAddress === undefined || address === undefined) return true;
  const ip = ipv4Number(address.replace(/^::ffff:/i, ''));
  if (ip === undefined) return true;
  const [net, bits] = ruleAddress.split('/');
  const base = ipv4Number(net!);
  if (base === undefined) return true;
  const size = 2 ** (32 - (bits === undefined ? 32 : Number(bits)));
  return ip - (ip % size) === base - (base % size);
}

function ipv4Number(text: string): number | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text);
  if (!m) return undefined;
  const octets = m.slice(1, 5).map(Number);
  return octets.every((o) => o <= 255) ? octets.reduce((acc, o) => acc * 256 + o, 0) : undefined;
}
