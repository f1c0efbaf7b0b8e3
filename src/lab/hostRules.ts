/**
 * Host mode: the lab's fault rules on the host's own traffic, for a program running outside the
 * lab. An explicit, privileged choice: every function takes an Exec that runs as root. Rules are
 * tagged with their owner (see hostRulesBackend.ts), so a later start sweeps the rules of an
 * owner that died (crash, kill -9) and never touches those of a live one (a second editor
 * window). The kernel's listing is the only record: nothing here trusts memory of what was
 * applied, so a process that did not apply a rule can still find, count and remove it.
 */
import { LabError } from './errors';
import type { Exec, ExecResult } from './exec';
import { quoteArg, type Logger } from './log';
import { effectiveChain, nftChain, parseNftEchoHandle, parseRule, type Backend, type FaultRule } from './rules';
import { ancestorPids, assertHostRuleSafe, protectedEndpoints, type ProtectedEndpoint } from './hostGuard';
import {
  hostDisplayArgs,
  hostIptablesArgs,
  hostIptablesDeleteArgs,
  hostIptablesListArgs,
  hostNftDeleteRuleArgs,
  hostNftDeleteTableArgs,
  hostNftListArgs,
  hostNftRuleArgs,
  hostNftTable,
  hostTag,
  ownerText,
  sameOwner,
  type HostOwner,
} from './hostRulesBackend';
import { parseHostIptables, parseHostNft, type HostRuleEntry } from './hostListing';
import { ownerStatus, processOwner, type OwnerStatus } from './hostOwner';

export * from './hostRulesBackend';
export * from './hostListing';
export * from './hostOwner';
export { checkHostRule, protectedEndpoints, ancestorPids, type ProtectedEndpoint } from './hostGuard';

export const BACKENDS: readonly Backend[] = ['iptables', 'nft'];

export interface ListedHostRule extends HostRuleEntry {
  status: OwnerStatus;
}

/**
 * Every host rule of every owner, with counters, from the given backends. A backend whose tool
 * is not installed has no rules.
 */
export async function listHostRules(exec: Exec, log: Logger, backends: readonly Backend[] = BACKENDS): Promise<ListedHostRule[]> {
  const self = processOwner();
  const out: ListedHostRule[] = [];
  for (const backend of backends) {
    const entries = (await readBackend(exec, log, backend))?.rules ?? [];
    out.push(...entries.map((e) => ({ ...e, status: ownerStatus(e.owner, self) })));
  }
  return out;
}

export interface SweepResult {
  /** The rules removed, each with the dead owner it had. */
  removed: HostRuleEntry[];
  /** nft tables of dead owners deleted (with their rules, if any). */
  tables: string[];
  /** What could not be removed; the rest was still tried. */
  errors: LabError[];
}

/**
 * Removes the host rules of owners that are dead, from both backends, and leaves everything
 * else alone: rules of live owners, of the CLI, of other pid namespaces. Best effort: errors are
 * collected, not thrown. The editor runs it when it starts.
 */
export async function sweepHostRules(exec: Exec, log: Logger, backends: readonly Backend[] = BACKENDS): Promise<SweepResult> {
  const self = processOwner();
  const result: SweepResult = { removed: [], tables: [], errors: [] };
  for (const backend of backends) {
    let listing: BackendListing | undefined;
    try {
      listing = await readBackend(exec, log, backend);
    } catch (error) {
      result.errors.push(asLabError(error));
      continue;
    }
    if (!listing) continue;
    const dead = listing.rules.filter((e) => ownerStatus(e.owner, self) === 'dead');
    if (backend === 'iptables') {
      for (const entry of dead) {
        try {
          // Another editor starting at the same time may sweep it first.
          await run(exec, hostIptablesDeleteArgs(entry), true);
          result.removed.push(entry);
        } catch (error) {
          result.errors.push(asLabError(error));
        }
      }
      continue;
    }
    for (const { table, owner } of listing.tables) {
      if (ownerStatus(owner, self) !== 'dead') continue;
      try {
        await run(exec, hostNftDeleteTableArgs(table), true);
        result.tables.push(table);
        result.removed.push(...dead.filter((e) => e.table === table));
      } catch (error) {
        result.errors.push(asLabError(error));
      }
    }
  }
  for (const e of result.removed) log.info(`swept ${e.tag} (${e.backend}): its owner is gone`);
  for (const e of result.errors) log.warn(`sweep left a rule behind: ${e.message}`);
  return result;
}

/**
 * Removes listed rules whoever owns them (for an explicit `tcp-lab host remove`), deleting an
 * nft table once its owner has no rules left in it (unless `keepTables`). Returns the errors;
 * the rest is still tried.
 */
export async function removeHostEntries(exec: Exec, log: Logger, entries: readonly HostRuleEntry[], keepTables = false): Promise<LabError[]> {
  const errors: LabError[] = [];
  const tables = new Set<string>();
  for (const entry of entries) {
    try {
      if (entry.backend === 'iptables') {
        await run(exec, hostIptablesDeleteArgs(entry));
      } else {
        if (entry.table === undefined || entry.handle === undefined) throw new LabError(`nft rule ${entry.tag} has no handle`, { field: 'id', value: entry.id });
        await run(exec, hostNftDeleteRuleArgs(entry.table, entry.chain, entry.handle));
        tables.add(entry.table);
      }
      log.info(`removed ${entry.tag} (${entry.backend})`);
    } catch (error) {
      errors.push(asLabError(error));
    }
  }
  if (tables.size && !keepTables) {
    try {
      const listing = await readBackend(exec, log, 'nft');
      for (const table of tables) {
        if (listing && !listing.rules.some((r) => r.table === table)) await run(exec, hostNftDeleteTableArgs(table), true);
      }
    } catch (error) {
      errors.push(asLabError(error));
    }
  }
  return errors;
}

export interface HostRulesOptions {
  /**
   * What the rules must not cut. Default: the SSH session in this process's environment and the
   * connections of this process and its ancestors (sshd holds the session's socket even where
   * sudo cleared SSH_CONNECTION). The editor passes more: protectedEndpoints(env, pids of the
   * VS Code server, { ports }) with its listening ports.
   */
  protect?: readonly ProtectedEndpoint[];
}

/**
 * The host rules of one owner, with one backend. apply() refuses a rule that would cut the
 * editor's own connection, and an id this owner already has. Dispose (or removeAll) on stop.
 */
export class HostRules {
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly exec: Exec,
    readonly backend: Backend,
    private readonly log: Logger,
    readonly owner: HostOwner,
    private readonly protect: readonly ProtectedEndpoint[],
  ) {}

  /** Checks the backend's tool runs (and may list the host's rules) before anything is applied. */
  static async open(exec: Exec, backend: Backend, log: Logger, owner: HostOwner = processOwner(), options: HostRulesOptions = {}): Promise<HostRules> {
    if (backend !== 'iptables' && backend !== 'nft') throw new LabError('backend must be "iptables" or "nft"', { field: 'backend', value: backend });
    const protect = options.protect ?? protectedEndpoints(process.env, ancestorPids(), { listening: false });
    const rules = new HostRules(exec, backend, log, owner, protect);
    await readBackend(exec, log, backend, true);
    return rules;
  }

  /** `tcp-lab-host:<owner>:<id>`. */
  tag(id: string): string {
    return hostTag(this.owner, id);
  }

  apply(input: FaultRule): Promise<HostRuleEntry> {
    return this.serial(async () => {
      const rule = parseRule(input);
      assertHostRuleSafe(rule, this.protect);
      const listing = await this.listing();
      if (listing.rules.some((e) => e.id === rule.id)) {
        throw new LabError(`a host rule with id ${JSON.stringify(rule.id)} is already applied by ${ownerText(this.owner)}`, { field: 'id', value: rule.id, hint: 'remove it first or pick another id' });
      }
      const entry: HostRuleEntry = { backend: this.backend, owner: this.owner, id: rule.id, tag: this.tag(rule.id), chain: effectiveChain(rule), packets: 0, bytes: 0, rule };
      if (this.backend === 'iptables') {
        await run(this.exec, hostIptablesArgs(rule, this.owner, 'insert'));
        // The spec it was made with deletes it as well as the one iptables lists.
        entry.spec = hostIptablesArgs(rule, this.owner, 'delete').slice(5);
      } else {
        // The table and chains go in the same transaction every time: another process of the
        // same owner (the CLI) may have deleted them since, and `add` keeps existing ones.
        const handle = parseNftEchoHandle((await run(this.exec, hostNftRuleArgs(rule, this.owner, true))).stdout);
        if (handle === undefined) throw new LabError(`nft added ${entry.tag} but printed no handle for it`, { field: 'id', value: rule.id, hint: 'removeAll() deletes the owner\'s table to take it back' });
        Object.assign(entry, { chain: nftChain(effectiveChain(rule)), table: hostNftTable(this.owner), handle });
      }
      this.log.info(`applied host rule ${entry.tag}: ${hostDisplayArgs(rule, this.owner, this.backend).map(quoteArg).join(' ')}`);
      return entry;
    });
  }

  /** Removes this owner's rule(s) with the id; throws when it has none. */
  remove(id: string): Promise<void> {
    return this.serial(async () => {
      const entries = (await this.listing()).rules.filter((e) => e.id === id);
      if (entries.length === 0) throw new LabError(`no host rule ${this.tag(id)}`, { field: 'id', value: id });
      // A process keeps its empty table until removeAll (or the sweep after its death): dropping
      // it here would cost another listing and nft transaction, half of a remove. The CLI has
      // no later moment, so its table goes as soon as it is empty.
      const errors = await removeHostEntries(this.exec, this.log, entries, this.owner.kind === 'process');
      if (errors.length) throw errors[0]!;
    });
  }

  /** This owner's rules, with packet and byte counters. */
  list(): Promise<HostRuleEntry[]> {
    return this.serial(async () => (await this.listing()).rules);
  }

  /**
   * Removes every rule of this owner, best effort: returns the errors, throws nothing. With nft
   * the owner's table goes in one step, rules and chains with it.
   */
  removeAll(): Promise<LabError[]> {
    return this.serial(async () => {
      try {
        if (this.backend === 'nft') {
          const table = hostNftTable(this.owner);
          if ((await this.listing()).tables.some((t) => t.table === table)) await run(this.exec, hostNftDeleteTableArgs(table), true);
          return [];
        }
        return await removeHostEntries(this.exec, this.log, (await this.listing()).rules);
      } catch (error) {
        return [asLabError(error)];
      }
    });
  }

  async dispose(): Promise<void> {
    for (const e of await this.removeAll()) this.log.warn(`host rule left behind: ${e.message}`);
  }

  /** This owner's rules and nft table, as the kernel has them now. */
  private async listing(): Promise<BackendListing> {
    const all = (await readBackend(this.exec, this.log, this.backend, true))!;
    return { rules: all.rules.filter((e) => sameOwner(e.owner, this.owner)), tables: all.tables.filter((t) => sameOwner(t.owner, this.owner)) };
  }

  /** One operation at a time: an apply must not see the table a concurrent removeAll deletes. */
  private serial<T>(op: () => Promise<T>): Promise<T> {
    const next = this.queue.then(op, op);
    this.queue = next.catch(() => undefined);
    return next;
  }
}

// ---------------------------------------------------------------------------------------------

interface BackendListing {
  rules: HostRuleEntry[];
  tables: Array<{ table: string; owner: HostOwner }>;
}

/** The backend's host rules; undefined when its tool is not installed (unless `required`). */
async function readBackend(exec: Exec, log: Logger, backend: Backend, required = false): Promise<BackendListing | undefined> {
  let result: ExecResult;
  try {
    result = await run(exec, backend === 'iptables' ? hostIptablesListArgs() : hostNftListArgs());
  } catch (error) {
    if (!required && error instanceof LabError && error.message.startsWith('command not found')) {
      log.debug(`${backend} is not installed: no host rules there`);
      return undefined;
    }
    throw error;
  }
  if (backend === 'iptables') return { rules: parseHostIptables(result.stdout), tables: [] };
  try {
    return parseHostNft(result.stdout);
  } catch (error) {
    throw new LabError(`could not read nft -j output: ${(error as Error).message}`, { field: 'command', value: 'nft' });
  }
}

async function run(exec: Exec, argv: string[], allowMissing = false): Promise<ExecResult> {
  const result = await exec(argv, { allowFailure: true, timeoutMs: 20_000 });
  // allowMissing: "already gone" is success (nft: No such file; iptables: Bad rule).
  if (result.code !== 0 && !(allowMissing && /No such file or directory|does a matching rule exist/.test(result.stderr))) {
    const detail = (result.stderr.trim() || result.stdout.trim()).split('\n').slice(0, 3).join(' | ');
    throw new LabError(`${argv.map(quoteArg).join(' ')} failed (exit ${result.code ?? 'signal'}): ${detail}`.slice(0, 2000), {
      field: 'command',
      value: argv[0],
      hint: /Permission denied|Operation not permitted|you must be root/i.test(result.stderr)
        ? 'host mode needs root (the editor asks for sudo; on a command line, run it with sudo)'
        : undefined,
    });
  }
  return result;
}

function asLabError(error: unknown): LabError {
  return error instanceof LabError ? error : new LabError(error instanceof Error ? error.message : String(error));
}
