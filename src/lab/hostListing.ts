/**
 * Host rules read back from the kernel: the parsers for `iptables -v -S` and `nft -j list
 * ruleset`, which find the rules by their tag (see hostRulesBackend.ts) and read each back as
 * the lab rule that made it, with its counters and what its removal needs. Pure.
 */
import { NFT_FAMILY, NFT_REJECT, parseRule, type Backend, type FaultRule, type RejectWith } from './rules';
import { HOST_TAG_PREFIX, parseHostNftTable, parseHostTag, sameOwner, type HostOwner } from './hostRulesBackend';

/** One host rule as listed by the kernel. */
export interface HostRuleEntry {
  backend: Backend;
  owner: HostOwner;
  id: string;
  tag: string;
  /** As the tool names it: `INPUT` (iptables) or `input` (nft). */
  chain: string;
  packets: number;
  bytes: number;
  /** What the rule does, when the listing reads back as a lab rule. */
  rule?: FaultRule;
  /** iptables: the spec after `-A <chain>`, counters left out, for `-D <chain> <spec>`. */
  spec?: string[];
  /** nft: the owner's table and the rule's handle. */
  table?: string;
  handle?: number;
}

/** Splits an `iptables -S` line into words; iptables double-quotes words with spaces or `:`. */
export function splitIptablesLine(line: string): string[] {
  const words: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|(\S+)/g;
  for (const m of line.matchAll(re)) words.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : m[2]!);
  return words;
}

/** The host rules in `iptables -v -S` output: rules whose comment is a host tag. */
export function parseHostIptables(output: string): HostRuleEntry[] {
  const entries: HostRuleEntry[] = [];
  for (const line of output.split('\n')) {
    if (!line.startsWith('-A ') || !line.includes(HOST_TAG_PREFIX)) continue;
    const words = splitIptablesLine(line);
    const chain = words[1]!;
    const at = words.indexOf('--comment');
    const tag = at > 0 ? parseHostTag(words[at + 1] ?? '') : undefined;
    if (!tag) continue;
    const spec: string[] = [];
    let packets = NaN;
    let bytes = NaN;
    for (let i = 2; i < words.length; i++) {
      if (words[i] === '-c' && /^\d+$/.test(words[i + 1] ?? '') && /^\d+$/.test(words[i + 2] ?? '')) {
        packets = Number(words[i + 1]);
        bytes = Number(words[i + 2]);
        i += 2;
      } else {
        spec.push(words[i]!);
      }
    }
    const entry: HostRuleEntry = { backend: 'iptables', owner: tag.owner, id: tag.id, tag: words[at + 1]!, chain, packets, bytes, spec };
    const rule = ruleFromIptablesSpec(tag.id, chain, spec);
    if (rule) entry.rule = rule;
    entries.push(entry);
  }
  return entries;
}

/** Reads a spec back as the lab rule that makes it; undefined for anything else. */
function ruleFromIptablesSpec(id: string, chain: string, spec: readonly string[]): FaultRule | undefined {
  const raw: Record<string, unknown> = { id, chain };
  let addressFlag: string | undefined;
  for (let i = 0; i < spec.length; i += 2) {
    const [flag, value] = [spec[i]!, spec[i + 1]];
    if (value === undefined) return undefined;
    if ((flag === '-p' || flag === '-m') && /^(tcp|comment)$/.test(value)) continue;
    if (flag === '--comment') continue;
    if (flag === '-d' || flag === '-s') {
      addressFlag = flag;
      raw.address = value.endsWith('/32') ? value.slice(0, -3) : value;
    } else if (flag === '--dport' || flag === '--sport') {
      raw.direction = flag === '--dport' ? 'to-port' : 'from-port';
      raw.port = value;
    } else if (flag === '-j' && (value === 'DROP' || value === 'REJECT')) {
      raw.action = value.toLowerCase();
    } else if (flag === '--reject-with') {
      raw.rejectWith = value;
    } else {
      return undefined;
    }
  }
  if (addressFlag && addressFlag !== (raw.direction === 'to-port' ? '-d' : '-s')) return undefined;
  try {
    return parseRule(raw);
  } catch {
    return undefined;
  }
}

export interface HostNftListing {
  rules: HostRuleEntry[];
  /** Every host table with its owner, empty ones too (an owner killed between table and rule). */
  tables: Array<{ table: string; owner: HostOwner }>;
}

/** The host tables and their tagged rules in `nft -j list ruleset`. Throws on non-JSON. */
export function parseHostNft(json: string): HostNftListing {
  const doc: unknown = JSON.parse(json);
  const listing: HostNftListing = { rules: [], tables: [] };
  for (const item of items(doc)) {
    const table = record(record(item)?.table);
    if (table && table.family === NFT_FAMILY && typeof table.name === 'string') {
      const owner = parseHostNftTable(table.name);
      if (owner) listing.tables.push({ table: table.name, owner });
      continue;
    }
    const rule = record(record(item)?.rule);
    if (!rule || rule.family !== NFT_FAMILY || typeof rule.table !== 'string') continue;
    const owner = parseHostNftTable(rule.table);
    const tag = typeof rule.comment === 'string' ? parseHostTag(rule.comment) : undefined;
    // The table says who owns the rule; a comment naming someone else is not ours to read.
    if (!owner || !tag || !sameOwner(owner, tag.owner)) continue;
    const chain = typeof rule.chain === 'string' ? rule.chain : '';
    const exprs = Array.isArray(rule.expr) ? rule.expr : [];
    const counter = exprs.map((e) => record(record(e)?.counter)).find((c) => c && isCount(c.packets) && isCount(c.bytes));
    const entry: HostRuleEntry = {
      backend: 'nft', owner, id: tag.id, tag: rule.comment as string, chain,
      packets: counter ? (counter.packets as number) : NaN, bytes: counter ? (counter.bytes as number) : NaN,
      table: rule.table,
    };
    if (isCount(rule.handle)) entry.handle = rule.handle;
    const parsed = ruleFromNftExprs(tag.id, chain, exprs);
    if (parsed) entry.rule = parsed;
    listing.rules.push(entry);
  }
  return listing;
}

const NFT_REJECT_BY_ICMP = new Map<string, RejectWith>(
  Object.entries(NFT_REJECT).filter(([, words]) => words[0] === 'icmp').map(([name, words]) => [words[2]!, name as RejectWith]),
);

/** Reads nft's JSON statements back as the lab rule that makes them; undefined for anything else. */
function ruleFromNftExprs(id: string, chain: string, exprs: readonly unknown[]): FaultRule | undefined {
  const raw: Record<string, unknown> = { id, chain: chain.toUpperCase() };
  for (const expr of exprs) {
    const e = record(expr);
    const match = record(e?.match);
    if (match) {
      const payload = record(record(match.left)?.payload);
      const meta = record(record(match.left)?.meta);
      if (meta?.key === 'nfproto') continue;
      if (payload?.protocol === 'tcp' && (payload.field === 'dport' || payload.field === 'sport')) {
        raw.direction = payload.field === 'dport' ? 'to-port' : 'from-port';
        raw.port = match.right;
        continue;
      }
      if (payload?.protocol === 'ip' && (payload.field === 'daddr' || payload.field === 'saddr')) {
        const prefix = record(record(match.right)?.prefix);
        raw.address = prefix ? `${String(prefix.addr)}/${String(prefix.len)}` : match.right;
        raw.addressField = payload.field;
        continue;
      }
      return undefined;
    }
    if (e && 'counter' in e) continue;
    if (e && 'drop' in e) {
      raw.action = 'drop';
      continue;
    }
    const reject = record(e?.reject);
    if (reject) {
      raw.action = 'reject';
      raw.rejectWith = reject.type === 'tcp reset' ? 'tcp-reset' : NFT_REJECT_BY_ICMP.get(String(reject.expr));
      continue;
    }
    return undefined;
  }
  if (raw.addressField !== undefined && raw.addressField !== (raw.direction === 'to-port' ? 'daddr' : 'saddr')) return undefined;
  delete raw.addressField;
  try {
    return parseRule(raw);
  } catch {
    return undefined;
  }
}

function items(doc: unknown): unknown[] {
  const list = record(doc)?.nftables;
  return Array.isArray(list) ? list : [];
}

function record(value: unknown): Record<string, unknown> | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}
