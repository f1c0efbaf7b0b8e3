/**
 * Host mode's editor logic without the editor: what the port box accepts, which chain a fault
 * goes in, what the confirm says, what the guard protects, how a rule reads in the view, and
 * the two ways to root (the window's helper, or the editor itself when it is root). Kept apart
 * from hostMode.ts so it runs under node --test, and in the sudo test's stand-in editor.
 */
import { readFileSync } from 'node:fs';
import { LabError } from '../lab/errors';
import type { HostRuleInfo, HostSweepInfo } from '../lab/helperProtocol';
import { ancestorPids, checkHostRule, parseProcNetTcp, protectedEndpoints, TCP_LISTEN, type GuardHit, type ProtectedEndpoint } from '../lab/hostGuard';
import { CLI_OWNER, hostDisplayArgs, hostIptablesArgs, ownerText, parseHostTag, type HostOwner } from '../lab/hostRulesBackend';
import type { HostSession } from '../lab/hostSession';
import { quoteArg } from '../lab/log';
import type { PrivilegedLab } from '../lab/privileged';
import { describe, type Backend, type FaultRule, type IptablesChain } from '../lab/rules';
import type { RuleSpec } from '../lab/scenarios/types';

/** The port box's check: undefined when fine, else what is wrong, in words. */
export function portProblem(text: string): string | undefined {
  const t = text.trim();
  if (t === '') return 'Type the TCP port of the traffic to fault, e.g. 5432 for PostgreSQL.';
  if (!/^\d+$/.test(t)) return 'A port is a whole number from 1 to 65535 (digits only).';
  const n = Number(t);
  if (n < 1 || n > 65535) return `${t} is not a TCP port: ports go from 1 to 65535.`;
  return undefined;
}

/** The TCP ports something listens on in this network namespace (/proc/net/tcp and tcp6). */
export function listeningPorts(read: (path: string) => string = (p) => readFileSync(p, 'utf8')): Set<number> {
  const ports = new Set<number>();
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = read(f);
    } catch {
      continue;
    }
    for (const s of parseProcNetTcp(text)) if (s.state === TCP_LISTEN) ports.add(s.localPort);
  }
  return ports;
}

/**
 * Where the fault's packets pass on this host. When the server listens here, packets to it
 * arrive (INPUT) and its replies leave (OUTPUT); when it is elsewhere (the user's service talks
 * to a remote database), this host's requests leave (OUTPUT) and the replies arrive (INPUT).
 * On loopback every packet passes both, so either works.
 */
export function hostChain(direction: FaultRule['direction'], serverHere: boolean): { chain: IptablesChain; why: string } {
  const toServer = direction === 'to-port';
  const chain: IptablesChain = toServer === serverHere ? 'INPUT' : 'OUTPUT';
  const what = toServer ? 'the packets to the port' : 'the packets from the port';
  const where = serverHere ? 'a program on this host listens on the port' : 'nothing on this host listens on the port, so the server is elsewhere';
  return { chain, why: `${chain}: ${where}; ${what} ${chain === 'INPUT' ? 'arrive' : 'leave'} through ${chain}` };
}

/** The host rule for a manual-mode fault choice on `port`. */
export function hostRule(spec: Omit<RuleSpec, 'id'>, id: string, port: number, serverHere: boolean): FaultRule {
  const rule: FaultRule = { id, action: spec.action, direction: spec.direction, port, chain: hostChain(spec.direction, serverHere).chain };
  if (spec.rejectWith) rule.rejectWith = spec.rejectWith;
  return rule;
}

/** `host-N`, N one past the highest this window has. */
export function nextHostId(existing: Iterable<string>): string {
  let n = 0;
  for (const id of existing) {
    const m = /^host-(\d+)$/.exec(id);
    if (m) n = Math.max(n, Number(m[1]));
  }
  return `host-${n + 1}`;
}

/**
 * What the editor runs over, as the editor process sees it: its SSH session (SSH_CONNECTION
 * of a Remote-SSH window) and the listening ports and connections of the extension host and
 * its ancestors (the VS Code server, code-server). It goes with each request to the helper,
 * which cannot see the environment (sudo clears SSH_CONNECTION).
 */
export function editorEndpoints(env: NodeJS.ProcessEnv = process.env, pids: readonly number[] = ancestorPids(process.pid)): ProtectedEndpoint[] {
  // A process may name itself anything (prctl): the helper takes one printable line per reason.
  return protectedEndpoints(env, pids, { listening: true }).map((e) => ({ ...e, why: e.why.replace(/[\0-\x1f\x7f]/g, '?').slice(0, 400) }));
}

/**
 * The guard's refusal, for a person; undefined when the rule cuts nothing the editor needs.
 * The SSH session and a listening port say more than the many connections to them: those come
 * first, and the rest are counted, not listed.
 */
export function guardRefusal(rule: FaultRule, endpoints: readonly ProtectedEndpoint[], shown = 2): string | undefined {
  const hits = checkHostRule(rule, endpoints);
  if (!hits.length) return undefined;
  const rank = (h: GuardHit) => (/SSH/.test(h.endpoint.why) ? 0 : h.endpoint.remotePort === undefined ? 1 : 2);
  const sorted = [...hits].sort((a, b) => rank(a) - rank(b));
  const more = sorted.length - Math.min(shown, sorted.length);
  return [
    `refusing host rule ${rule.id} (${describe(rule)}): it would cut this editor's own connection`,
    ...sorted.slice(0, shown).map((h) => `  port ${rule.port} is ${h.endpoint.why}: ${h.reason}`),
    ...(more ? [`  and ${more} more connection${more === 1 ? '' : 's'} of the editor on port ${rule.port}`] : []),
    'Pick another port: the lab never cuts the connection the editor runs over.',
  ].join('\n');
}

/**
 * The command that will run, word for word. The owner is in the tag; before the helper has
 * started it is not known yet, and `<helper>` stands in for it.
 */
export function hostCommandText(rule: FaultRule, backend: Backend, owner?: HostOwner): string {
  const argv = backend === 'iptables' ? hostIptablesArgs(rule, owner ?? CLI_OWNER, 'insert') : hostDisplayArgs(rule, owner ?? CLI_OWNER, backend);
  const text = argv.map(quoteArg).join(' ');
  return owner ? text : text.replaceAll('tcp-lab-host:cli:', 'tcp-lab-host:<helper>:').replaceAll('tcplab_host_cli', 'tcplab_host_<helper>');
}

export type RootPath = 'root' | 'helper' | 'sudo';

/** The modal confirm: the exact command, what it touches, how it goes away, and how root is had. */
export function confirmText(rule: FaultRule, backend: Backend, fault: string, chainWhy: string, root: RootPath, owner?: HostOwner): { message: string; detail: string } {
  const tag = `tcp-lab-host:${owner ? ownerText(owner) : '<helper>'}:${rule.id}`;
  const how = {
    root: 'The editor runs as root: it applies the rule itself.',
    helper: 'This window\'s root helper (started with sudo) applies it.',
    sudo: 'Root is needed: unless this window already has its root helper, your sudo password is asked next (once per window).',
  }[root];
  return {
    message: `Apply "${fault}" to this host's own traffic on port ${rule.port}?`,
    detail: [
      hostCommandText(rule, backend, owner),
      '',
      `This changes this host's firewall: it affects EVERY program on this host that uses TCP port ${rule.port}, not a lab.`,
      `Chain ${chainWhy}.`,
      'IPv4 only: a client that connects over IPv6 (::1) is not affected.',
      `Tagged ${tag}. It is removed from the Host Rules view, when this window closes, or, if the editor is killed, when the lab next starts.`,
      how,
    ].join('\n'),
  };
}

const formatBytes = (n: number): string => (n < 1024 ? `${n} B` : n < 1024 * 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1024 / 1024).toFixed(1)} MiB`);

/** One row of the Host Rules view. */
export function ruleRow(info: HostRuleInfo): { label: string; description: string; tooltip: string } {
  const r = info.rule;
  const label = r
    ? `${r.action === 'drop' ? 'DROP' : `REJECT ${r.rejectWith ?? 'icmp-port-unreachable'}`} ${r.direction === 'to-port' ? 'to' : 'from'} port ${r.port}${r.address ? ` ${r.direction === 'to-port' ? 'at' : 'of'} ${r.address}` : ''}`
    : `${info.id} (changed by hand: not a rule the lab makes)`;
  const counts = Number.isFinite(info.packets) ? `${info.packets} packet${info.packets === 1 ? '' : 's'}, ${formatBytes(info.bytes)}` : 'counters unreadable';
  const owner = parseHostTag(info.tag)?.owner;
  const command = r && owner ? hostDisplayArgs(r, owner, info.backend).map(quoteArg).join(' ') : '';
  return {
    label,
    description: `${counts} · ${info.chain} · ${info.backend}`,
    tooltip: [command, `tag ${info.tag}`, `${counts} matched so far`].filter(Boolean).join('\n'),
  };
}

/** The line shown once when a sweep removed something. */
export function sweepNotice(s: HostSweepInfo | undefined): string | undefined {
  if (!s) return undefined;
  const parts: string[] = [];
  if (s.removed.length) parts.push(`removed ${s.removed.length} host rule${s.removed.length === 1 ? '' : 's'} left by a crashed session (${s.removed.map((r) => r.tag).join(', ')})`);
  if (s.errors.length) parts.push(`the sweep of host rules left by a crashed session failed: ${s.errors[0]!.message}`);
  return parts.length ? parts.join('; ') : undefined;
}

/** Host rules through whichever root this window has. */
export interface HostClient {
  readonly kind: 'helper' | 'root';
  /** The owner in the rules' tags. */
  readonly owner: HostOwner | undefined;
  /** False once the helper has exited (its rules went with it). */
  readonly alive: boolean;
  apply(rule: FaultRule, backend: Backend, protect: readonly ProtectedEndpoint[]): Promise<HostRuleInfo[]>;
  remove(id: string): Promise<HostRuleInfo[]>;
  list(): Promise<HostRuleInfo[]>;
  removeAll(): Promise<{ rules: HostRuleInfo[]; errors: LabError[] }>;
}

export function helperClient(lab: PrivilegedLab): HostClient {
  return {
    kind: 'helper',
    get owner() { return lab.owner; },
    get alive() { return lab.alive; },
    apply: async (rule, backend, protect) => (await lab.hostApply(rule, backend, protect)).rules,
    remove: (id) => lab.hostRemove(id),
    list: () => lab.hostList(),
    removeAll: () => lab.hostRemoveAll(),
  };
}

/** The editor is root: the rules are the extension host's, applied here. */
export function rootClient(session: HostSession): HostClient {
  return {
    kind: 'root',
    owner: session.owner,
    alive: true,
    apply: async (rule, backend, protect) => {
      await session.apply(rule, backend, protect);
      return session.list();
    },
    remove: async (id) => {
      await session.remove(id);
      return session.list();
    },
    list: () => session.list(),
    removeAll: async () => {
      const errors = await session.removeAll();
      return { rules: await session.list(), errors };
    },
  };
}
