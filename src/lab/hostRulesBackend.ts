/**
 * Host rules as the kernel holds them: the owner tag and the argv for iptables and nft
 * (hostListing.ts reads their listings back). Pure (no I/O); hostRules.ts runs these through an
 * Exec.
 *
 * The match syntax is the lab's own (iptablesArgs, nftRuleBody from rulesBackend.ts): a host
 * rule differs from a lab rule only in its tag and, with nft, in its table.
 *
 * ## The tag
 * `tcp-lab-host:<owner>:<id>`, where owner is `cli` or `<pid>.<starttime>.<pidns>`:
 * - Its own prefix, not `tcp-lab:`: the lab's listing parsers (parseIptablesListing) read
 *   `tcp-lab:<id>` as a lab rule, so a host rule must not look like one, and the other way
 *   round. Both still contain `tcp-lab`, so `iptables -S | grep tcp-lab` finds everything.
 * - The pid says which lab process owns the rule; the start time (field 22 of /proc/<pid>/stat,
 *   clock ticks since boot) tells that process from a later one that got the same pid after
 *   the owner died; the pid namespace (inode of /proc/<pid>/ns/pid) says where that pid means
 *   anything: a sweeper in another pid namespace sharing this network namespace (a container
 *   with host networking) cannot judge the owner, so it leaves the rule alone.
 * - `cli` rules are applied by `tcp-lab host apply`, which exits at once by design: their owner
 *   is the person, not a process, so no sweep removes them; `tcp-lab host remove` does.
 * - At most 13 + 44 + 1 + 32 = 90 characters: under iptables' 256 for a comment and nft's 128.
 *
 * ## nft: one table per owner
 * `inet tcplab_host_<pid>_<starttime>_<pidns>` (or `inet tcplab_host_cli`), never the lab's
 * `inet tcplab`: removing everything of one owner, or of a dead one, is one atomic
 * `nft delete table`, and no owner ever deletes a table another live owner's rules are in (the
 * lab's RuleSet deletes `inet tcplab` when it looks empty, which races with a second owner).
 * The rules carry the same comment as with iptables, so a listing shows the same tag.
 */
import { LabError } from './errors';
import {
  effectiveChain,
  iptablesArgs,
  iptablesDisplayArgs,
  nftChain,
  nftRuleBody,
  IPTABLES_WAIT_SECONDS,
  NFT_FAMILY,
  NFT_PRIORITY_WORDS,
  type Backend,
  type FaultRule,
} from './rules';
// Type only: at run time the listing parsers import this module, never the other way round.
import type { HostRuleEntry } from './hostListing';

export type HostOwner =
  | { kind: 'cli' }
  | { kind: 'process'; pid: number; start: number; pidns: number };

export const HOST_TAG_PREFIX = 'tcp-lab-host:';
export const CLI_OWNER: HostOwner = Object.freeze({ kind: 'cli' });
const NFT_HOST_TABLE_PREFIX = 'tcplab_host_';

const TAG = /^tcp-lab-host:(cli|(\d{1,10})\.(\d{1,20})\.(\d{1,12})):([a-z0-9][a-z0-9-]{0,31})$/;
const TABLE = /^tcplab_host_(?:cli|(\d{1,10})_(\d{1,20})_(\d{1,12}))$/;

export function ownerText(owner: HostOwner): string {
  return owner.kind === 'cli' ? 'cli' : `${owner.pid}.${owner.start}.${owner.pidns}`;
}

export function sameOwner(a: HostOwner, b: HostOwner): boolean {
  return ownerText(a) === ownerText(b);
}

/** `tcp-lab-host:<owner>:<id>`. */
export function hostTag(owner: HostOwner, id: string): string {
  return `${HOST_TAG_PREFIX}${ownerText(owner)}:${id}`;
}

export function parseHostTag(tag: string): { owner: HostOwner; id: string } | undefined {
  const m = TAG.exec(tag);
  if (!m) return undefined;
  return { owner: m[1] === 'cli' ? CLI_OWNER : processOwnerOf(m[2]!, m[3]!, m[4]!), id: m[5]! };
}

/** The owner's nft table: `tcplab_host_cli` or `tcplab_host_<pid>_<start>_<pidns>`. */
export function hostNftTable(owner: HostOwner): string {
  return `${NFT_HOST_TABLE_PREFIX}${owner.kind === 'cli' ? 'cli' : `${owner.pid}_${owner.start}_${owner.pidns}`}`;
}

export function parseHostNftTable(name: string): HostOwner | undefined {
  const m = TABLE.exec(name);
  if (!m) return undefined;
  return m[1] === undefined ? CLI_OWNER : processOwnerOf(m[1], m[2]!, m[3]!);
}

function processOwnerOf(pid: string, start: string, pidns: string): HostOwner {
  return { kind: 'process', pid: Number(pid), start: Number(start), pidns: Number(pidns) };
}

/**
 * The process owner in `/proc/<pid>/stat` and the `/proc/<pid>/ns/pid` link (`pid:[4026531836]`).
 * Fields after the command name, which is in parentheses and may hold spaces or `)`: state is
 * field 3, starttime field 22 (proc(5)).
 */
export function ownerFromProc(pid: number, stat: string, pidnsLink: string): HostOwner {
  const start = startTimeFromStat(stat);
  const ns = /^pid:\[(\d+)\]$/.exec(pidnsLink.trim());
  if (start === undefined || !ns) {
    throw new LabError(`cannot read the start time of process ${pid} from /proc`, { field: 'pid', value: pid });
  }
  return { kind: 'process', pid, start, pidns: Number(ns[1]) };
}

/**
 * Whether a `/proc/<pid>/stat` line is of a process that still runs: a zombie (Z) or a dying
 * one (X) keeps its entry, start time included, until its parent reaps it, yet it will never
 * remove its rules.
 */
export function runningFromStat(stat: string): boolean {
  const state = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
  return state !== undefined && state !== 'Z' && state !== 'X' && state !== 'x';
}

/** Field 22 of a `/proc/<pid>/stat` line: the start time, in clock ticks since boot. */
export function startTimeFromStat(stat: string): number | undefined {
  const start = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  return start !== undefined && /^\d+$/.test(start) ? Number(start) : undefined;
}

/** The parent pid in a `/proc/<pid>/stat` line (field 4). */
export function ppidFromStat(stat: string): number | undefined {
  const ppid = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1];
  return ppid !== undefined && /^\d+$/.test(ppid) ? Number(ppid) : undefined;
}

// ---------------------------------------------------------------------------------------------
// argv

/**
 * The lab's iptables argv for the rule, with the host tag as its comment: `iptables -w 5 -I
 * INPUT -p tcp --dport 5432 -m comment --comment tcp-lab-host:cli:db -j DROP`.
 */
export function hostIptablesArgs(rule: FaultRule, owner: HostOwner, op: 'insert' | 'delete'): string[] {
  const argv = iptablesArgs(rule, op);
  const at = argv.indexOf('--comment');
  if (at < 0) throw new LabError('iptablesArgs gave no --comment to replace');
  argv[at + 1] = hostTag(owner, rule.id);
  return argv;
}

/** `iptables -w 5 -v -S`: every rule of the filter table as its spec, with `-c packets bytes`. */
export function hostIptablesListArgs(): string[] {
  return ['iptables', '-w', IPTABLES_WAIT_SECONDS, '-v', '-S'];
}

/** Deletes a listed rule by the very spec iptables printed for it. */
export function hostIptablesDeleteArgs(entry: Pick<HostRuleEntry, 'chain' | 'spec' | 'tag'>): string[] {
  // Without a spec, `iptables -D <chain>` would be refused at best; never send it.
  if (!entry.spec?.length) throw new LabError(`iptables rule ${entry.tag} has no spec to delete it by`, { field: 'id', value: entry.tag });
  return ['iptables', '-w', IPTABLES_WAIT_SECONDS, '-D', entry.chain, ...entry.spec];
}

/**
 * The owner's table and its three base chains, as nft words for the front of one command line
 * (nft reads `;` between commands). `add` leaves an existing table or chain alone.
 */
export function hostNftSetupWords(owner: HostOwner): string[] {
  const table = hostNftTable(owner);
  return [
    'add', 'table', NFT_FAMILY, table, ';',
    ...(['input', 'output', 'forward'] as const).flatMap((hook) => [
      'add', 'chain', NFT_FAMILY, table, hook,
      '{', 'type', 'filter', 'hook', hook, 'priority', ...NFT_PRIORITY_WORDS, ';', 'policy', 'accept', ';', '}', ';',
    ]),
  ];
}

/**
 * `nft --echo --handle add rule inet tcplab_host_… input … comment "tcp-lab-host:…"`, after the
 * table and chains when `withSetup`: one nft process, one transaction, so a kill in between
 * cannot leave a table without its chains. `--echo --handle` prints the rule's handle.
 */
export function hostNftRuleArgs(rule: FaultRule, owner: HostOwner, withSetup = false): string[] {
  const body = nftRuleBody(rule);
  if (body.at(-2) !== 'comment') throw new LabError('nftRuleBody gave no comment to replace');
  body[body.length - 1] = `"${hostTag(owner, rule.id)}"`;
  return ['nft', '--echo', '--handle', ...(withSetup ? hostNftSetupWords(owner) : []),
    'add', 'rule', NFT_FAMILY, hostNftTable(owner), nftChain(effectiveChain(rule)), ...body];
}

/** What a person would type to make the rule by hand (display only). */
export function hostDisplayArgs(rule: FaultRule, owner: HostOwner, backend: Backend): string[] {
  if (backend === 'iptables') return iptablesDisplayArgs(rule);
  return hostNftRuleArgs(rule, owner).filter((w) => w !== '--echo' && w !== '--handle');
}

export function hostNftDeleteRuleArgs(table: string, chain: string, handle: number): string[] {
  return ['nft', 'delete', 'rule', NFT_FAMILY, table, chain, 'handle', String(handle)];
}

export function hostNftDeleteTableArgs(table: string): string[] {
  return ['nft', 'delete', 'table', NFT_FAMILY, table];
}

/** The whole ruleset as JSON: every owner's table at once, empty ones included. */
export function hostNftListArgs(): string[] {
  return ['nft', '-j', 'list', 'ruleset'];
}
