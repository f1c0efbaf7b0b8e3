/**
 * Fault rules as data: validated from untrusted input (CLI, JSON file, the editor's webview),
 * turned into argv for iptables or nft (see rulesBackend.ts), applied through an Exec, read back
 * with packet counters, and removed.
 */
import { LabError } from './errors';
import type { Exec, ExecResult } from './exec';
import { quoteArg, silentLogger, type Logger } from './log';
import {
  ID_PATTERN,
  effectiveChain,
  iptablesArgs,
  iptablesDisplayArgs,
  iptablesListArgs,
  nftChain,
  nftDeleteArgs,
  nftDisplayArgs,
  nftListArgs,
  nftRuleArgs,
  nftSetupArgs,
  nftTeardownArgs,
  parseIptablesListing,
  parseNftEchoHandle,
  parseNftListing,
  ruleTag,
  type Backend,
  type IptablesChain,
  type ListedRule,
  type NftChain,
  type RuleCounters,
} from './rulesBackend';

export * from './rulesBackend';

export type RejectWith =
  | 'tcp-reset'
  | 'icmp-port-unreachable'
  | 'icmp-host-unreachable'
  | 'icmp-host-prohibited'
  | 'icmp-admin-prohibited'
  | 'icmp-net-unreachable'
  | 'icmp-net-prohibited'
  | 'icmp-proto-unreachable';

export const REJECT_VARIANTS: readonly RejectWith[] = Object.freeze([
  'tcp-reset',
  'icmp-port-unreachable',
  'icmp-host-unreachable',
  'icmp-host-prohibited',
  'icmp-admin-prohibited',
  'icmp-net-unreachable',
  'icmp-net-prohibited',
  'icmp-proto-unreachable',
] as const);

/** to-port: `--dport P` (packets to the server); from-port: `--sport P` (packets the server sends). */
export type Direction = 'to-port' | 'from-port';

export interface FaultRule {
  /** `[a-z0-9][a-z0-9-]{0,31}`; becomes the tag `tcp-lab:<id>` (iptables -m comment, nft comment). */
  id: string;
  action: 'drop' | 'reject';
  /** Only with reject; default icmp-port-unreachable (iptables' own default). */
  rejectWith?: RejectWith;
  direction: Direction;
  /** 1-65535. */
  port: number;
  /** Default INPUT. */
  chain?: 'INPUT' | 'OUTPUT' | 'FORWARD';
  /** IPv4 address or network (`a.b.c.d` or `a.b.c.d/0-32`): `-d` for to-port, `-s` for from-port. */
  address?: string;
}

const ACTIONS = ['drop', 'reject'] as const;
const DIRECTIONS = ['to-port', 'from-port'] as const;
const CHAINS = ['INPUT', 'OUTPUT', 'FORWARD'] as const;
const FIELDS = ['id', 'action', 'rejectWith', 'direction', 'port', 'chain', 'address'] as const;
/** No string field of a rule is longer; anything longer is refused before it is looked at. */
const MAX_STRING = 64;

function refuse(field: string, value: unknown, message: string, hint?: string): never {
  throw new LabError(message, hint === undefined ? { field, value } : { field, value, hint });
}

function oneOf<T extends string>(field: string, value: unknown, allowed: readonly T[], what: string): T {
  if (typeof value === 'string' && value.length <= MAX_STRING && (allowed as readonly string[]).includes(value)) return value as T;
  return refuse(field, value, `${field} must be ${what}: ${allowed.join(', ')}`);
}

function parsePort(value: unknown): number {
  const message = 'port must be an integer from 1 to 65535';
  if (typeof value === 'number') {
    if (Number.isInteger(value) && value >= 1 && value <= 65535) return value;
    return refuse('port', value, message);
  }
  // From a command line: digits only (no sign, space, hex, exponent or decimal point).
  if (typeof value === 'string' && /^[0-9]{1,5}$/.test(value)) {
    const n = Number(value);
    if (n >= 1 && n <= 65535) return n;
  }
  return refuse('port', value, message);
}

const OCTET = '(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])';
const IPV4 = new RegExp(`^${OCTET}\\.${OCTET}\\.${OCTET}\\.${OCTET}(?:/(3[0-2]|[12][0-9]|[0-9]))?$`);

function parseAddress(value: unknown): string {
  const message = 'address must be an IPv4 address like 10.0.0.2 or a network like 10.0.0.0/24';
  if (typeof value !== 'string' || value.length > MAX_STRING) return refuse('address', value, message);
  if (value.includes(':')) {
    return refuse('address', value, 'address must be an IPv4 address: IPv6 is not supported yet', 'rules are IPv4 only for now (iptables, and the nft rules match meta nfproto ipv4)');
  }
  // No leading zeros: inet_aton would read "010" as octal 8.
  const m = IPV4.exec(value);
  if (!m) return refuse('address', value, message);
  if (m[5] !== undefined) {
    const bits = Number(m[5]);
    const ip = m.slice(1, 5).reduce((acc, o) => acc * 256 + Number(o), 0);
    const size = 2 ** (32 - bits);
    const network = ip - (ip % size);
    if (network !== ip) {
      const quad = [24, 16, 8, 0].map((s) => Math.floor(network / 2 ** s) % 256).join('.');
      return refuse('address', value, 'address has host bits set after the prefix', `did you mean ${quad}/${bits}? iptables and nft would silently use that`);
    }
  }
  return value;
}

function parseId(value: unknown): string {
  if (typeof value === 'string' && ID_PATTERN.test(value)) return value;
  return refuse('id', value, 'id must be 1 to 32 characters of a-z, 0-9 and "-", starting with a letter or digit');
}

/**
 * Validates untrusted input into a FaultRule. Refuses, with a LabError naming the field and the
 * value: a non-object, unknown or missing fields, and every value outside its syntax. A port
 * may be a string of digits (from a command line). The result is a fresh object holding only
 * the known fields; optional fields that are absent (or undefined) stay absent.
 */
export function parseRule(input: unknown): FaultRule {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    return refuse('rule', input, 'a rule must be an object with fields id, action, direction, port');
  }
  const proto = Object.getPrototypeOf(input) as unknown;
  if (proto !== Object.prototype && proto !== null) {
    return refuse('rule', input, 'a rule must be a plain object');
  }
  const source = input as Record<string, unknown>;
  for (const key of Reflect.ownKeys(source)) {
    if (typeof key !== 'string' || !(FIELDS as readonly string[]).includes(key)) {
      const name = (typeof key === 'string' ? key : String(key)).slice(0, MAX_STRING);
      return refuse(name, typeof key === 'string' ? source[key] : undefined, `unknown field ${JSON.stringify(name)}; a rule has the fields ${FIELDS.join(', ')}`);
    }
  }
  const own = (field: (typeof FIELDS)[number]): unknown => (Object.prototype.hasOwnProperty.call(source, field) ? source[field] : undefined);
  for (const field of ['id', 'action', 'direction', 'port'] as const) {
    if (own(field) === undefined) refuse(field, undefined, `missing field ${field}`);
  }

  const rule: FaultRule = {
    id: parseId(own('id')),
    action: oneOf('action', own('action'), ACTIONS, 'one of'),
    direction: oneOf('direction', own('direction'), DIRECTIONS, 'one of'),
    port: parsePort(own('port')),
  };
  const rejectWith = own('rejectWith');
  if (rejectWith !== undefined) {
    if (rule.action !== 'reject') {
      refuse('rejectWith', rejectWith, 'rejectWith is only allowed with action "reject"');
    }
    rule.rejectWith = oneOf('rejectWith', rejectWith, REJECT_VARIANTS, 'one of');
  }
  const chain = own('chain');
  if (chain !== undefined) rule.chain = oneOf('chain', chain, CHAINS, 'one of');
  const address = own('address');
  if (address !== undefined) rule.address = parseAddress(address);
  return rule;
}

/**
 * The command line a person would type for the rule (display only, quoted for a shell), e.g.
 * `iptables -I INPUT -p tcp --dport 7000 -j REJECT --reject-with icmp-host-prohibited`.
 */
export function describe(rule: FaultRule, backend: Backend = 'iptables'): string {
  const argv = backend === 'iptables' ? iptablesDisplayArgs(rule) : nftDisplayArgs(rule);
  return argv.map(quoteArg).join(' ');
}

export interface AppliedRule {
  readonly id: string;
  readonly rule: FaultRule;
  readonly backend: Backend;
  /** The chain as the backend names it: `INPUT` (iptables) or `input` (nft). */
  readonly chain: IptablesChain | NftChain;
  /** nft only: the rule handle, for `nft delete rule … handle N`. */
  readonly handle?: number;
}

/**
 * The rules applied through one Exec (the host, or one namespace), with one backend. Keeps what
 * it applied so removeAll() can take it all back. Use one RuleSet per namespace and backend:
 * with nft, removeAll() deletes the lab's table `inet tcplab` once it is empty (or when a rule
 * cannot be removed by handle).
 */
export class RuleSet {
  private readonly rules = new Map<string, AppliedRule>();
  private nftReady = false;

  constructor(
    private readonly exec: Exec,
    readonly backend: Backend,
    private readonly log: Logger = silentLogger,
  ) {
    if (backend !== 'iptables' && backend !== 'nft') refuse('backend', backend, 'backend must be "iptables" or "nft"');
  }

  /** What is applied now, in the order it was applied. */
  get applied(): readonly AppliedRule[] {
    return [...this.rules.values()];
  }

  /**
   * Validates the rule again (it may not have come through parseRule) and applies it. Nothing
   * runs for a refused rule. An id can be applied once per set.
   */
  async apply(input: FaultRule): Promise<AppliedRule> {
    const rule = parseRule(input);
    if (this.rules.has(rule.id)) {
      refuse('id', rule.id, `a rule with id ${JSON.stringify(rule.id)} is already applied`, 'remove it first or pick another id');
    }
    let applied: AppliedRule;
    if (this.backend === 'iptables') {
      await this.run(iptablesArgs(rule, 'insert'));
      applied = { id: rule.id, rule, backend: 'iptables', chain: effectiveChain(rule) };
    } else {
      await this.setupNft();
      const chain = nftChain(effectiveChain(rule));
      const result = await this.run(nftRuleArgs(rule));
      // The rule is in the kernel now: record it before anything else can fail, so removeAll()
      // takes it back (without a handle, by deleting the table).
      this.rules.set(rule.id, { id: rule.id, rule, backend: 'nft', chain });
      let handle = parseNftEchoHandle(result.stdout);
      if (handle === undefined) {
        // An nft that does not echo: find the newest rule with the tag.
        const listed = await this.listNft();
        const mine = listed.filter((r) => r.id === rule.id && r.chain === chain && r.handle !== undefined);
        handle = mine.length ? Math.max(...mine.map((r) => r.handle!)) : undefined;
      }
      if (handle === undefined) {
        throw new LabError(`nft added rule ${ruleTag(rule.id)} but printed no handle for it`, { field: 'id', value: rule.id, hint: 'removeAll() deletes the table inet tcplab to take it back' });
      }
      applied = { id: rule.id, rule, backend: 'nft', chain, handle };
    }
    this.rules.set(rule.id, applied);
    this.log.info(`applied ${ruleTag(rule.id)}: ${describe(rule, this.backend)}`);
    return applied;
  }

  /**
   * Removes one rule this set applied (an AppliedRule from apply(), or a copy of it). On failure
   * it stays in `applied`, for removeAll() to try again.
   */
  async remove(which: AppliedRule): Promise<void> {
    const applied = this.rules.get(which.id);
    if (!applied || applied.handle !== which.handle || applied.backend !== which.backend) {
      refuse('id', which.id, `rule ${JSON.stringify(which.id)} was not applied by this rule set`);
    }
    if (applied.backend === 'iptables') {
      await this.run(iptablesArgs(applied.rule, 'delete'));
    } else {
      if (applied.handle === undefined) {
        throw new LabError(`rule ${ruleTag(applied.id)} has no known nft handle`, { field: 'id', value: applied.id, hint: 'removeAll() deletes the table inet tcplab' });
      }
      await this.run(nftDeleteArgs(applied.chain as NftChain, applied.handle));
    }
    this.rules.delete(applied.id);
    this.log.info(`removed ${ruleTag(applied.id)}`);
  }

  /**
   * Packet and byte counters of every applied rule, read back from the kernel. Throws when an
   * applied rule is missing from the listing (someone removed it).
   */
  async counters(): Promise<Map<string, RuleCounters>> {
    if (this.rules.size === 0) return new Map();
    let listed: ListedRule[];
    if (this.backend === 'iptables') {
      listed = [];
      const chains = [...new Set(this.applied.map((a) => a.chain as IptablesChain))];
      for (const chain of chains) {
        const out = await this.run(iptablesListArgs(chain));
        listed.push(...parseIptablesListing(out.stdout).map((r) => ({ ...r, chain: r.chain || chain })));
      }
    } else {
      listed = await this.listNft();
    }
    const counters = new Map<string, RuleCounters>();
    for (const applied of this.rules.values()) {
      const found = listed.filter((r) =>
        r.id === applied.id && r.chain === applied.chain && (applied.handle === undefined || r.handle === applied.handle));
      if (found.length === 0 || found.some((r) => Number.isNaN(r.packets))) {
        throw new LabError(`rule ${ruleTag(applied.id)} is not in the ${applied.chain} chain any more`, { field: 'id', value: applied.id, hint: 'something else removed or replaced it' });
      }
      counters.set(applied.id, {
        packets: found.reduce((n, r) => n + r.packets, 0),
        bytes: found.reduce((n, r) => n + r.bytes, 0),
      });
    }
    return counters;
  }

  /**
   * Removes every rule this set applied, best effort: each removal is tried, errors are
   * collected and returned (empty when all went), nothing is thrown. With nft, when a rule
   * cannot be removed by handle, the whole table inet tcplab is deleted instead; the table is
   * also deleted once no rules are left in it.
   */
  async removeAll(): Promise<LabError[]> {
    const errors: LabError[] = [];
    for (const applied of [...this.rules.values()].reverse()) {
      try {
        await this.remove(applied);
      } catch (error) {
        errors.push(asLabError(error));
      }
    }
    if (this.backend === 'nft' && this.nftReady) {
      try {
        const left = errors.length ? -1 : (await this.listNftAll()).length;
        if (left === 0 || errors.length) {
          await this.run(nftTeardownArgs());
          this.nftReady = false;
          if (errors.length) {
            for (const e of errors) this.log.warn(`removing by handle failed, table deleted instead: ${e.message}`);
            errors.length = 0;
            this.rules.clear();
          }
        }
      } catch (error) {
        errors.push(asLabError(error));
      }
    }
    for (const e of errors) this.log.warn(`rule left behind: ${e.message}`);
    return errors;
  }

  private async setupNft(): Promise<void> {
    if (this.nftReady) return;
    for (const argv of nftSetupArgs()) await this.run(argv);
    this.nftReady = true;
  }

  private async listNft(): Promise<ListedRule[]> {
    return parseNftListingOrThrow((await this.run(nftListArgs())).stdout);
  }

  /** Every rule in the table, tagged or not (for "is the table empty"). */
  private async listNftAll(): Promise<unknown[]> {
    const out = await this.run(nftListArgs());
    const doc = JSON.parse(out.stdout) as { nftables?: unknown[] };
    return (doc.nftables ?? []).filter((item) => typeof item === 'object' && item !== null && 'rule' in item);
  }

  private async run(argv: string[]): Promise<ExecResult> {
    const result = await this.exec(argv, { allowFailure: true, timeoutMs: 20_000 });
    if (result.code !== 0) {
      const detail = (result.stderr.trim() || result.stdout.trim()).split('\n').slice(0, 3).join(' | ');
      throw new LabError(`${argv.map(quoteArg).join(' ')} failed (exit ${result.code ?? 'signal'}): ${detail}`.slice(0, 2000), {
        field: 'command',
        value: argv[0],
        hint: failureHint(argv[0]!, result.stderr),
      });
    }
    return result;
  }
}

function parseNftListingOrThrow(stdout: string): ListedRule[] {
  try {
    return parseNftListing(stdout);
  } catch (error) {
    throw new LabError(`could not read nft -j output: ${(error as Error).message}`, { field: 'command', value: 'nft' });
  }
}

function failureHint(command: string, stderr: string): string | undefined {
  if (/Permission denied|Operation not permitted|you must be root/i.test(stderr)) {
    return 'run as root, or inside the lab namespace (unshare --user --map-root-user --net)';
  }
  if (/Couldn't load match|Couldn't load target|Extension .* not supported|does not exist/i.test(stderr)) {
    return `the kernel lacks a netfilter module ${command} needs (xt_comment, xt_tcpudp, ipt_REJECT): modprobe it on the host`;
  }
  if (command === 'nft' && /Could not process rule: No such file or directory/.test(stderr)) {
    return 'the rule or the table inet tcplab is gone already';
  }
  if (command === 'iptables' && /Bad rule|does a matching rule exist/.test(stderr)) {
    return 'the rule is gone already';
  }
  return undefined;
}

function asLabError(error: unknown): LabError {
  return error instanceof LabError ? error : new LabError(error instanceof Error ? error.message : String(error));
}
