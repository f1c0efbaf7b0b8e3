/**
 * The backend layer of the fault rules: argv for iptables and nft, and parsers for what those
 * tools print back. Everything here is pure (no I/O); `rules.ts` validates rules and runs these
 * argv through an Exec. Commands are argv arrays handed to execve, never a shell string.
 *
 * Checked against iptables v1.8.9 (nf_tables) and nftables v1.0.6 on Linux 6.x.
 */
import type { Direction, FaultRule, RejectWith } from './rules';

export type Backend = 'iptables' | 'nft';
export type IptablesChain = 'INPUT' | 'OUTPUT' | 'FORWARD';
export type NftChain = 'input' | 'output' | 'forward';

/** Every lab rule carries this comment, so it can be found again in a listing. */
export const TAG_PREFIX = 'tcp-lab:';
/** The id syntax, shared with the validator in rules.ts and the listing parsers. */
export const ID_PATTERN = /^[a-z0-9][a-z0-9-]{0,31}$/;

/** `iptables -w 5`: wait up to 5 s for the xtables lock instead of failing at once. */
export const IPTABLES_WAIT_SECONDS = '5';

/** The lab's own nft table: `inet tcplab`. */
export const NFT_FAMILY = 'inet';
export const NFT_TABLE = 'tcplab';

/**
 * Base-chain priority of the lab's nft chains, as nft words: `filter - 1` (= -1).
 *
 * In nft every base chain on a hook sees the packet; `accept` only ends that one chain, while
 * `drop` (and `reject`, which drops) is final for the packet. Lower priority runs first. At -1
 * the lab's chains run just before every chain at `filter` (0): iptables-nft's own `ip filter`
 * table and a typical default-accept `inet filter` table, so the lab's verdict (and the ICMP
 * type the client sees) wins and its counters see every packet even when another filter chain
 * would drop or reject it. Equal priorities would leave the order to registration order. It
 * stays after conntrack (-200), mangle (-150) and DNAT (`dstnat`, -100), so it sees a packet the
 * same way iptables' filter table does (after DNAT, with conntrack state).
 */
export const NFT_PRIORITY_WORDS: readonly string[] = ['filter', '-', '1'];
export const NFT_PRIORITY = -1;

/** iptables `--reject-with` name → nft `reject with …` words. Names checked against nft 1.0.6. */
export const NFT_REJECT: Readonly<Record<RejectWith, readonly string[]>> = Object.freeze({
  'tcp-reset': ['tcp', 'reset'],
  'icmp-port-unreachable': ['icmp', 'type', 'port-unreachable'],
  'icmp-host-unreachable': ['icmp', 'type', 'host-unreachable'],
  'icmp-host-prohibited': ['icmp', 'type', 'host-prohibited'],
  'icmp-admin-prohibited': ['icmp', 'type', 'admin-prohibited'],
  'icmp-net-unreachable': ['icmp', 'type', 'net-unreachable'],
  'icmp-net-prohibited': ['icmp', 'type', 'net-prohibited'],
  // nft calls ICMP code 2 "prot-unreachable", iptables "icmp-proto-unreachable".
  'icmp-proto-unreachable': ['icmp', 'type', 'prot-unreachable'],
});

/** The comment a rule is tagged with: `tcp-lab:<id>`. */
export function ruleTag(id: string): string {
  return `${TAG_PREFIX}${id}`;
}

export function effectiveChain(rule: FaultRule): IptablesChain {
  return rule.chain ?? 'INPUT';
}

/** iptables' own default for `-j REJECT` without `--reject-with`. */
export function effectiveRejectWith(rule: FaultRule): RejectWith | undefined {
  return rule.action === 'reject' ? (rule.rejectWith ?? 'icmp-port-unreachable') : undefined;
}

export function nftChain(chain: IptablesChain): NftChain {
  return chain.toLowerCase() as NftChain;
}

function portFlag(direction: Direction): '--dport' | '--sport' {
  return direction === 'to-port' ? '--dport' : '--sport';
}

/** `-d` limits packets to the server (to-port), `-s` packets from it (from-port). */
function addressFlag(direction: Direction): '-d' | '-s' {
  return direction === 'to-port' ? '-d' : '-s';
}

// ---------------------------------------------------------------------------------------------
// iptables

/** The match and target of a rule, shared by insert, delete and describe. */
function iptablesSpec(rule: FaultRule, withComment: boolean): string[] {
  const spec = ['-p', 'tcp'];
  if (rule.address !== undefined) spec.push(addressFlag(rule.direction), rule.address);
  spec.push(portFlag(rule.direction), String(rule.port));
  if (withComment) spec.push('-m', 'comment', '--comment', ruleTag(rule.id));
  if (rule.action === 'drop') {
    spec.push('-j', 'DROP');
  } else {
    spec.push('-j', 'REJECT', '--reject-with', effectiveRejectWith(rule)!);
  }
  return spec;
}

/**
 * `iptables -w 5 -I INPUT -p tcp --dport 7000 -m comment --comment tcp-lab:r1 -j REJECT
 * --reject-with icmp-host-prohibited`. Insert (-I) puts the rule at the top of the chain, so it
 * wins over anything already there; delete (-D) takes the identical spec.
 */
export function iptablesArgs(rule: FaultRule, op: 'insert' | 'delete'): string[] {
  return ['iptables', '-w', IPTABLES_WAIT_SECONDS, op === 'insert' ? '-I' : '-D', effectiveChain(rule), ...iptablesSpec(rule, true)];
}

/** `iptables -w 5 -L INPUT -v -x -n`: the chain with exact packet and byte counters. */
export function iptablesListArgs(chain: IptablesChain): string[] {
  return ['iptables', '-w', IPTABLES_WAIT_SECONDS, '-L', chain, '-v', '-x', '-n'];
}

/** What a person would type, without the lock wait and the lab's comment. */
export function iptablesDisplayArgs(rule: FaultRule): string[] {
  return ['iptables', '-I', effectiveChain(rule), ...iptablesSpec(rule, false)];
}

export interface ListedRule {
  id: string;
  /** The chain as the tool names it (`INPUT` for iptables, `input` for nft). */
  chain: string;
  packets: number;
  bytes: number;
  /** nft only: the rule handle. */
  handle?: number;
}

export interface RuleCounters {
  packets: number;
  bytes: number;
}

const IPTABLES_CHAIN_HEADER = /^Chain (\S+) \(/;
// pkts and bytes are always the first two columns (-x: exact digits); the comment match is
// printed as `/* text */` near the end of the line. The target column may be empty, so the
// columns in between are not counted.
const IPTABLES_RULE_LINE = /^\s*(\d+)\s+(\d+)\s.*\/\* tcp-lab:([a-z0-9][a-z0-9-]{0,31}) \*\/(?:\s|$)/;

/**
 * The lab's rules in `iptables -L [CHAIN] -v -x -n` output (one chain or all of them): the rules
 * whose comment is `tcp-lab:<id>`, with their counters, in listing order.
 */
export function parseIptablesListing(output: string): ListedRule[] {
  const rules: ListedRule[] = [];
  let chain = '';
  for (const line of output.split('\n')) {
    const header = IPTABLES_CHAIN_HEADER.exec(line);
    if (header) {
      chain = header[1]!;
      continue;
    }
    const m = IPTABLES_RULE_LINE.exec(line);
    if (!m) continue;
    rules.push({ id: m[3]!, chain, packets: Number(m[1]), bytes: Number(m[2]) });
  }
  return rules;
}

/** Counters by rule id; rules listed twice under one id are summed. */
export function parseIptablesCounters(output: string): Map<string, RuleCounters> {
  return sumById(parseIptablesListing(output));
}

// ---------------------------------------------------------------------------------------------
// nft

/**
 * Creates the lab's table and its three base chains. Idempotent: `nft add` leaves an existing
 * table or chain (with the same definition) alone.
 */
export function nftSetupArgs(): string[][] {
  const chains: Array<[NftChain, string]> = [['input', 'input'], ['output', 'output'], ['forward', 'forward']];
  return [
    ['nft', 'add', 'table', NFT_FAMILY, NFT_TABLE],
    ...chains.map(([chain, hook]) => [
      'nft', 'add', 'chain', NFT_FAMILY, NFT_TABLE, chain,
      '{', 'type', 'filter', 'hook', hook, 'priority', ...NFT_PRIORITY_WORDS, ';', 'policy', 'accept', ';', '}',
    ]),
  ];
}

/** Deletes the lab's table with all its chains and rules. */
export function nftTeardownArgs(): string[] {
  return ['nft', 'delete', 'table', NFT_FAMILY, NFT_TABLE];
}

/**
 * The rule body after `add rule inet tcplab <chain>`, one nft word per argv element. nft joins
 * its argv with spaces and parses the result, so the comment goes in as one word with its
 * double quotes (`"tcp-lab:r1"`): unquoted, the colon is a syntax error. The id syntax keeps
 * quotes and spaces out of it.
 *
 * `meta nfproto ipv4` keeps the inet table to IPv4, as iptables is: rules are IPv4 only for now
 * (nft adds it itself for `reject with icmp` and `ip daddr`).
 */
export function nftRuleBody(rule: FaultRule): string[] {
  const words = ['meta', 'nfproto', 'ipv4'];
  if (rule.address !== undefined) words.push('ip', rule.direction === 'to-port' ? 'daddr' : 'saddr', rule.address);
  words.push('tcp', rule.direction === 'to-port' ? 'dport' : 'sport', String(rule.port), 'counter');
  if (rule.action === 'drop') {
    words.push('drop');
  } else {
    words.push('reject', 'with', ...NFT_REJECT[effectiveRejectWith(rule)!]);
  }
  words.push('comment', `"${ruleTag(rule.id)}"`);
  return words;
}

/**
 * `nft --echo --handle add rule inet tcplab input meta nfproto ipv4 tcp dport 7000 counter reject
 * with icmp type host-prohibited comment "tcp-lab:r1"`. `--echo --handle` prints the added rule
 * with `# handle N`, the handle its removal needs (see parseNftEchoHandle).
 */
export function nftRuleArgs(rule: FaultRule): string[] {
  return ['nft', '--echo', '--handle', 'add', 'rule', NFT_FAMILY, NFT_TABLE, nftChain(effectiveChain(rule)), ...nftRuleBody(rule)];
}

export function nftDeleteArgs(chain: NftChain, handle: number): string[] {
  return ['nft', 'delete', 'rule', NFT_FAMILY, NFT_TABLE, chain, 'handle', String(handle)];
}

/** `nft -j list table inet tcplab`: the table as JSON, with counters and handles. */
export function nftListArgs(): string[] {
  return ['nft', '-j', 'list', 'table', NFT_FAMILY, NFT_TABLE];
}

/** What a person would type (quote the comment word for the shell). */
export function nftDisplayArgs(rule: FaultRule): string[] {
  return ['nft', 'add', 'rule', NFT_FAMILY, NFT_TABLE, nftChain(effectiveChain(rule)), ...nftRuleBody(rule)];
}

/**
 * The handle in the output of `nft --echo --handle add rule …`: text
 * (`add rule inet tcplab input … comment "tcp-lab:r1" # handle 3`) or, with -j, JSON
 * (`{"nftables":[{"add":{"rule":{…,"handle":3,…}}}]}`). Undefined when there is none.
 */
export function parseNftEchoHandle(output: string): number | undefined {
  const trimmed = output.trim();
  if (trimmed.startsWith('{')) {
    let doc: unknown;
    try {
      doc = JSON.parse(trimmed);
    } catch {
      return undefined;
    }
    for (const item of nftItems(doc)) {
      const rule = record(record(item)?.add)?.rule;
      const handle = record(rule)?.handle;
      if (isCount(handle) && handle > 0) return handle;
    }
    return undefined;
  }
  for (const line of trimmed.split('\n')) {
    if (!/^add rule /.test(line)) continue;
    const m = /# handle (\d{1,10})\s*$/.exec(line);
    if (m) return Number(m[1]);
  }
  return undefined;
}

/**
 * The lab's rules in `nft -j list table inet tcplab` (or `list ruleset`) JSON: rules of the
 * inet tcplab table whose comment is `tcp-lab:<id>`, with handle and counter. A rule without a
 * counter statement gets NaN counters. Throws a SyntaxError on output that is not JSON.
 */
export function parseNftListing(json: string, family: string = NFT_FAMILY, table: string = NFT_TABLE): ListedRule[] {
  const doc: unknown = JSON.parse(json);
  const rules: ListedRule[] = [];
  for (const item of nftItems(doc)) {
    const rule = record(record(item)?.rule);
    if (!rule || rule.family !== family || rule.table !== table) continue;
    const comment = rule.comment;
    if (typeof comment !== 'string' || !comment.startsWith(TAG_PREFIX)) continue;
    const id = comment.slice(TAG_PREFIX.length);
    if (!ID_PATTERN.test(id)) continue;
    let packets = NaN;
    let bytes = NaN;
    for (const expr of Array.isArray(rule.expr) ? rule.expr : []) {
      const counter = record(record(expr)?.counter);
      if (counter && isCount(counter.packets) && isCount(counter.bytes)) {
        packets = counter.packets;
        bytes = counter.bytes;
        break;
      }
    }
    const listed: ListedRule = { id, chain: typeof rule.chain === 'string' ? rule.chain : '', packets, bytes };
    if (isCount(rule.handle)) listed.handle = rule.handle;
    rules.push(listed);
  }
  return rules;
}

/** Counters by rule id (rules with a counter only); rules listed twice under one id are summed. */
export function parseNftCounters(json: string): Map<string, RuleCounters> {
  return sumById(parseNftListing(json).filter((r) => !Number.isNaN(r.packets)));
}

function sumById(rules: readonly ListedRule[]): Map<string, RuleCounters> {
  const out = new Map<string, RuleCounters>();
  for (const r of rules) {
    const prev = out.get(r.id);
    out.set(r.id, prev ? { packets: prev.packets + r.packets, bytes: prev.bytes + r.bytes } : { packets: r.packets, bytes: r.bytes });
  }
  return out;
}

function nftItems(doc: unknown): unknown[] {
  const items = record(doc)?.nftables;
  return Array.isArray(items) ? items : [];
}

function record(value: unknown): Record<string, unknown> | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}
