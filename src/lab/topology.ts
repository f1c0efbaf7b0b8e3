import { readFileSync } from 'node:fs';
import { LabError } from './errors';
import { hostExec, type Exec } from './exec';
import { quoteArg, type Logger } from './log';
import { enterLab } from './nsEnter';
import { firstChild, startHolder, type Holder, type Sandbox, type SandboxMode } from './sandbox';
import { parseIptablesListing, parseNftListing, type Backend } from './rulesBackend';
import { setSysctl, type SysctlValue } from './sysctl';

/**
 * Several hosts inside one lab: each host is a network namespace of its own, made inside the
 * sandbox's user, PID and mount namespaces, and joined to the others by veth pairs plugged into
 * a bridge per network. The bridges live in the sandbox's own network namespace, which no
 * program uses: it is the wire.
 *
 * A host's namespace is held by one process, `unshare --net cat` reading a pipe this process
 * holds: no `ip netns add` (that needs a writable /run/netns, which an unprivileged user lacks),
 * nothing bind-mounted, and every host dies with the sandbox's PID namespace, whatever kills
 * the lab. Everything runs in a host through nsenter into its holder, like the sandbox itself.
 */

/** A network segment: a bridge. Lab addresses come from 198.18.0.0/15 (RFC 2544). */
export interface NetSpec {
  name: string;
}

export interface LinkSpec {
  net: string;
  /** With its prefix: `198.18.0.2/24`. */
  address: string;
}

/**
 * An L4 load balancer on the host: a VIP with DNAT to the backends (round robin), conntrack
 * with a short idle timeout for established flows, and what happens to a packet of a flow it
 * has forgotten (not a SYN, so not a new flow: conntrack calls it INVALID once loose pick-up is
 * off). `reset` answers with a RST, as an LB that tracks flows and rejects unknown ones does;
 * `drop` discards it, as load balancers that forget silently do.
 */
export interface BalancerSpec {
  vip: string;
  port: number;
  /** `address:port` of each server. */
  backends: readonly string[];
  /** Seconds without a packet after which an established flow is forgotten. */
  idleTimeout: number;
  forgotten: 'reset' | 'drop';
}

export interface HostSpec {
  /** Lower-case, up to 8 characters: interface names (`<host>-<net>`) have 15 at most. */
  name: string;
  links: readonly LinkSpec[];
  /** Extra addresses on the first link (a VIP). */
  extraAddresses?: readonly string[];
  /** The default route's next hop. */
  gateway?: string;
  /** Forwards between its links. */
  router?: boolean;
  balancer?: BalancerSpec;
}

export interface Topology {
  nets: readonly NetSpec[];
  hosts: readonly HostSpec[];
}

const NAME = /^[a-z][a-z0-9]{0,7}$/;
const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** The tag of the balancer's rule for forgotten flows: its counter is a figure of the run. */
export const FORGOTTEN_RULE = 'forgotten-flows';

/** Refuses a topology the lab cannot build, naming what is wrong. */
export function validateTopology(t: Topology): void {
  const nets = new Set<string>();
  for (const n of t.nets) {
    if (!NAME.test(n.name)) throw new LabError('a network name must be 1-8 lower-case letters or digits', { field: 'net', value: n.name });
    if (nets.has(n.name)) throw new LabError('two networks have the same name', { field: 'net', value: n.name });
    nets.add(n.name);
  }
  const hosts = new Set<string>();
  for (const h of t.hosts) {
    if (!NAME.test(h.name)) throw new LabError('a host name must be 1-8 lower-case letters or digits', { field: 'host', value: h.name });
    if (hosts.has(h.name)) throw new LabError('two hosts have the same name', { field: 'host', value: h.name });
    hosts.add(h.name);
    if (!h.links.length) throw new LabError(`host ${h.name} has no link`, { field: 'host', value: h.name });
    for (const l of h.links) {
      if (!nets.has(l.net)) throw new LabError(`host ${h.name} links to an unknown network`, { field: 'net', value: l.net });
      labAddress(l.address, true);
    }
    for (const a of h.extraAddresses ?? []) labAddress(a, true);
    if (h.gateway) labAddress(h.gateway);
    if (h.balancer) {
      labAddress(h.balancer.vip);
      if (!h.balancer.backends.length) throw new LabError('a balancer needs at least one backend', { field: 'backends', value: h.balancer.backends });
      for (const b of h.balancer.backends) {
        const [address, port, ...rest] = b.split(':');
        labAddress(address ?? '');
        if (rest.length || !/^\d{1,5}$/.test(port ?? '') || Number(port) < 1 || Number(port) > 65535) throw new LabError('a backend is address:port', { field: 'backends', value: b });
      }
      if (!Number.isInteger(h.balancer.port) || h.balancer.port < 1 || h.balancer.port > 65535) throw new LabError('a VIP port is 1-65535', { field: 'port', value: h.balancer.port });
      if (!(h.balancer.idleTimeout >= 1)) throw new LabError('a balancer idle timeout is at least 1 s', { field: 'idleTimeout', value: h.balancer.idleTimeout });
    }
  }
}

/**
 * Lab hosts take addresses from 198.18.0.0/15 only, never one a real network may use; with
 * `prefix`, an interface address (`/8` to `/32`). Nothing else passes: these go into `ip -batch`.
 */
function labAddress(text: string, prefix = false): void {
  const [a, len, ...rest] = text.split('/');
  const m = IPV4.exec(a ?? '');
  const prefixOk = prefix ? len !== undefined && /^\d{1,2}$/.test(len) && Number(len) >= 8 && Number(len) <= 32 : len === undefined;
  const ok = m && rest.length === 0 && prefixOk && m.slice(1).every((x) => Number(x) <= 255) && m[1] === '198' && (m[2] === '18' || m[2] === '19');
  if (!ok) throw new LabError(`lab hosts take addresses from 198.18.0.0/15 only${prefix ? ', with a prefix length (/8 to /32)' : ''}`, { field: 'address', value: text });
}

/** One host of a topology: where its programs, rules and sysctls go. */
export class LabHost {
  readonly exec: Exec;
  private closed = false;

  constructor(
    readonly name: string,
    readonly mode: SandboxMode,
    /** Host PID of the process holding this host's network namespace. */
    readonly pid: number,
    /** Its PID inside the sandbox's PID namespace (`ip link ... netns N` reads it there). */
    readonly nsPid: number,
    /** As the sandbox's: a capture inside the host drops privileges the same way. */
    readonly mappedSubIds: boolean,
    private readonly holder: Holder,
    log: Logger,
    label: string,
  ) {
    const run = hostExec(log, `${label}/${name}`);
    this.exec = (argv, options) => run(this.enter(argv), options);
  }

  enter(argv: readonly string[]): string[] {
    if (this.closed) throw new LabError(`host ${this.name} is gone`);
    return enterLab(this, argv);
  }

  /** Ends the holder: the namespace goes once no program is left in it. */
  dispose(): void {
    this.closed = true;
    this.holder.stdin.end();
  }
}

/** Builds the topology inside the sandbox: bridges, hosts, veths, addresses, routes, balancers. */
export async function buildTopology(sandbox: Sandbox, t: Topology, log: Logger, backend: Backend = 'iptables'): Promise<Map<string, LabHost>> {
  validateTopology(t);
  const hosts = new Map<string, LabHost>();
  try {
    // The hosts' holders at once: each is a spawn of its own.
    const started = await Promise.allSettled(t.hosts.map((spec) => startHost(sandbox, spec.name, log)));
    for (const r of started) if (r.status === 'fulfilled') hosts.set(r.value.name, r.value);
    const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    // The wire in one `ip -batch`: bridges, then each host's veth pair, its inner end moved into
    // the host at once and its outer end plugged into the network's bridge.
    const wire: string[] = [];
    for (const n of t.nets) wire.push(`link add br-${n.name} type bridge`, `link set br-${n.name} up`);
    for (const spec of t.hosts) {
      for (const [i, link] of spec.links.entries()) {
        const outer = `${spec.name}-${link.net}`;
        wire.push(`link add ${outer} type veth peer name eth${i} netns ${hosts.get(spec.name)!.nsPid}`, `link set ${outer} master br-${link.net} up`);
      }
    }
    await ipBatch(sandbox.exec, wire);
    // Each host's addresses, links and route in one `ip -batch`, the hosts side by side.
    await Promise.all(t.hosts.map(async (spec) => {
      const host = hosts.get(spec.name)!;
      const lines = ['link set lo up'];
      for (const [i, link] of spec.links.entries()) {
        lines.push(`addr add ${link.address} dev eth${i}`);
        if (i === 0) for (const a of spec.extraAddresses ?? []) lines.push(`addr add ${a} dev eth${i}`);
        lines.push(`link set eth${i} up`);
      }
      if (spec.gateway) lines.push(`route add default via ${spec.gateway}`);
      await ipBatch(host.exec, lines);
      if (spec.router || spec.balancer) await setSysctl(host.exec, 'net.ipv4.ip_forward', 1);
      if (spec.balancer) await setUpBalancer(host, spec.balancer, backend);
    }));
    return hosts;
  } catch (e) {
    for (const h of hosts.values()) h.dispose();
    throw e;
  }
}

/** Runs `ip` commands in one process (`ip -batch -`, one per line), stopping at the first that fails. */
async function ipBatch(exec: Exec, lines: readonly string[]): Promise<void> {
  // Names and addresses are validated (validateTopology): no line can carry a newline or a quote.
  await exec(['ip', '-batch', '-'], { input: `${lines.join('\n')}\n` });
}

/** The nft table of a balancer: its own, apart from the lab's fault rules (`inet tcplab`). */
const LB_TABLE = 'tcplab_lb';

/**
 * The argv that set up a balancer, in order, with the firewall the run uses; each rule tagged
 * like the lab's own (`tcp-lab:<id>`), so its counter can be read back.
 */
export function balancerCommands(b: BalancerSpec, backend: Backend = 'iptables'): string[][] {
  const port = String(b.port);
  const n = b.backends.length;
  const reject = b.forgotten === 'reset';
  if (backend === 'nft') {
    // Round robin: numgen counts new flows (only a flow's first packet reaches a nat chain).
    const map = `{ ${b.backends.map((x, i) => `${i} : ${x.replace(':', ' . ')}`).join(', ')} }`;
    return [
      ['nft', 'add', 'table', 'ip', LB_TABLE],
      ['nft', 'add', 'chain', 'ip', LB_TABLE, 'prerouting', '{ type nat hook prerouting priority dstnat; }'],
      ['nft', 'add', 'rule', 'ip', LB_TABLE, 'prerouting', 'ip', 'daddr', b.vip, 'tcp', 'dport', port, 'counter',
        'dnat', 'to', 'numgen', 'inc', 'mod', String(n), 'map', map, 'comment', '"tcp-lab:vip"'],
      ['nft', 'add', 'chain', 'ip', LB_TABLE, 'input', '{ type filter hook input priority filter; }'],
      ['nft', 'add', 'rule', 'ip', LB_TABLE, 'input', 'ip', 'daddr', b.vip, 'tcp', 'dport', port, 'ct', 'state', 'invalid', 'counter',
        ...(reject ? ['reject', 'with', 'tcp', 'reset'] : ['drop']), 'comment', `"tcp-lab:${FORGOTTEN_RULE}"`],
    ];
  }
  // Round robin with the nth match: the first rule takes every n-th new flow, the next every
  // (n-1)-th of the rest, and the last takes what is left.
  const dnat = b.backends.map((backend, i) => [
    'iptables', '-t', 'nat', '-A', 'PREROUTING', '-d', b.vip, '-p', 'tcp', '--dport', port,
    ...(i < n - 1 ? ['-m', 'statistic', '--mode', 'nth', '--every', String(n - i), '--packet', '0'] : []),
    '-m', 'comment', '--comment', `tcp-lab:vip-${i + 1}`,
    '-j', 'DNAT', '--to-destination', backend,
  ]);
  return [
    ...dnat,
    // A packet of a forgotten flow reaches INPUT with the VIP as its destination: no NAT entry
    // maps it to a server any more.
    ['iptables', '-A', 'INPUT', '-d', b.vip, '-p', 'tcp', '--dport', port, '-m', 'conntrack', '--ctstate', 'INVALID',
      '-m', 'comment', '--comment', `tcp-lab:${FORGOTTEN_RULE}`,
      ...(reject ? ['-j', 'REJECT', '--reject-with', 'tcp-reset'] : ['-j', 'DROP'])],
  ];
}

/** The balancer's sysctls: its idle timeout, and no pick-up of a flow seen mid-stream. */
export function balancerSysctls(b: BalancerSpec): Record<string, SysctlValue> {
  return {
    'net.netfilter.nf_conntrack_tcp_timeout_established': b.idleTimeout,
    // With loose pick-up (the default) conntrack would adopt a mid-stream packet of a
    // forgotten flow as a new flow; real balancers do not.
    'net.netfilter.nf_conntrack_tcp_loose': 0,
  };
}

/** A balancer rule as the result lists it: what it does, and how many packets it took. */
export interface BalancerRule {
  id: string;
  command: string;
  packets: number | null;
  bytes: number | null;
}

/** The balancer's rules with their kernel counters: flows sent to the servers, packets of forgotten flows. */
export async function balancerCounters(host: LabHost, b: BalancerSpec, backend: Backend = 'iptables'): Promise<BalancerRule[]> {
  const listed = backend === 'nft'
    ? parseNftListing((await host.exec(['nft', '-j', 'list', 'table', 'ip', LB_TABLE])).stdout, 'ip', LB_TABLE)
    : [
      ...parseIptablesListing((await host.exec(['iptables', '-t', 'nat', '-L', 'PREROUTING', '-v', '-x', '-n'])).stdout),
      ...parseIptablesListing((await host.exec(['iptables', '-L', 'INPUT', '-v', '-x', '-n'])).stdout),
    ];
  return balancerCommands(b, backend).filter((argv) => argv.some((a) => a.includes('tcp-lab:'))).map((argv) => {
    const tag = argv.find((a) => a.includes('tcp-lab:'))!;
    const id = tag.replace(/^"?tcp-lab:|"$/g, '');
    const found = listed.find((r) => r.id === id);
    // As a person would type it: without the lab's comment.
    const at = argv.indexOf(tag);
    const shown = backend === 'nft' ? argv.slice(0, at - 1) : argv.filter((_, i) => i < at - 3 || i > at);
    return { id, command: `${host.name}: ${shown.map(quoteArg).join(' ')}`, packets: found?.packets ?? null, bytes: found?.bytes ?? null };
  });
}

async function setUpBalancer(host: LabHost, b: BalancerSpec, backend: Backend): Promise<void> {
  // The rules first: the conntrack match loads conntrack in this namespace if it is not yet.
  for (const argv of balancerCommands(b, backend)) await host.exec(argv);
  for (const [name, value] of Object.entries(balancerSysctls(b))) {
    try {
      await setSysctl(host.exec, name, value);
    } catch (e) {
      throw new LabError(`cannot set ${name} on host ${host.name}: ${e instanceof Error ? e.message : e}`, {
        hint: 'conntrack is not loaded on this machine: modprobe nf_conntrack (as root), then try again',
      });
    }
  }
}

/** Starts the process that holds a host's network namespace, and waits until it is in it. */
async function startHost(sandbox: Sandbox, name: string, log: Logger): Promise<LabHost> {
  const argv = sandbox.enter(['unshare', '--net', 'cat']);
  log.command(argv, `${sandbox.label}/${name}`);
  let holder: Holder;
  try {
    holder = await startHolder(argv);
  } catch (e) {
    throw new LabError(`host ${name} could not start: ${e instanceof Error ? e.message : e}`);
  }
  // nsenter forks once (to enter the PID namespace); unshare then execs cat in that child.
  const pid = firstChild(holder.pid!);
  if (pid === undefined) throw new LabError(`cannot find host ${name}'s process under nsenter (pid ${holder.pid})`);
  return new LabHost(name, sandbox.mode, pid, innermostPid(pid), sandbox.mappedSubIds, holder, log, sandbox.label);
}

/** A process's PID in the innermost PID namespace it belongs to (the last NSpid field). */
function innermostPid(pid: number): number {
  const line = /^NSpid:\s+(.+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  const last = Number(line?.trim().split(/\s+/).at(-1));
  if (!Number.isInteger(last) || last < 1) throw new LabError(`cannot read the namespace pid of ${pid}`);
  return last;
}
