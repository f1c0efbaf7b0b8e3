/**
 * The host rules of one editor window, wherever root is: in the privileged helper (the owner is
 * the helper process) or in an editor that runs as root (the owner is the extension host). Both
 * use this one class, so the two paths apply, list and remove alike. A rule is checked against
 * the endpoints the editor names and against what this process sees itself, every time: the
 * connections that must survive change while the window is open.
 */
import { LabError } from './errors';
import { hostExec, type Exec } from './exec';
import { Logger, type LogLevel } from './log';
import { errorBody, type HostRuleInfo, type HostSweepInfo } from './helperProtocol';
import { ancestorPids, assertHostRuleSafe, protectedEndpoints, type ProtectedEndpoint } from './hostGuard';
import { HostRules, ownerText, processOwner, sweepHostRules, type HostOwner, type HostRuleEntry } from './hostRules';
import { parseRule, type Backend } from './rules';

/** A rule as the editor shows it: no spec or handle (those stay where root is). */
export function hostRuleInfo(e: HostRuleEntry): HostRuleInfo {
  return { id: e.id, tag: e.tag, backend: e.backend, chain: e.chain, packets: e.packets, bytes: e.bytes, rule: e.rule ?? null };
}

/**
 * What the process that applies the rules sees on its own: the SSH session in its environment,
 * the listening ports and connections of itself and its ancestors (the helper's ancestors are
 * sudo, the extension host and the VS Code server; as root it can read all their sockets).
 */
export function ownView(): ProtectedEndpoint[] {
  return protectedEndpoints(process.env, ancestorPids(), { listening: true });
}

/**
 * The listings run every second while the view shows counters: their commands go to the log at
 * trace, the changes at debug as usual.
 */
function quietListings(log: Logger): Exec {
  const loud = hostExec(log);
  const quiet = hostExec(new Logger({ write: (level: LogLevel, m: string) => log.log(level === 'debug' ? 'trace' : level, m) }, 'trace'));
  return (argv, options) => ((argv[0] === 'iptables' && argv.includes('-S')) || (argv[0] === 'nft' && argv[1] === '-j') ? quiet : loud)(argv, options);
}

export class HostSession {
  private readonly opened = new Map<Backend, HostRules>();
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;

  constructor(
    private readonly log: Logger,
    readonly owner: HostOwner = processOwner(),
    private readonly view: () => ProtectedEndpoint[] = ownView,
    private readonly exec: Exec = quietListings(log),
  ) {}

  get ownerText(): string {
    return ownerText(this.owner);
  }

  /**
   * Applies an untrusted rule after the guard: refused, with the port and the reason, when it
   * would hit one of `given` (the editor's view) or of this process's own view.
   */
  apply(input: unknown, backend: Backend, given: readonly ProtectedEndpoint[]): Promise<HostRuleInfo> {
    return this.serial(async () => {
      if (this.closed) throw new LabError('host mode is stopping: no new host rule');
      const rule = parseRule(input);
      assertHostRuleSafe(rule, [...given, ...this.view()]);
      for (const [other, rules] of this.opened) {
        if (other !== backend && (await rules.list()).some((e) => e.id === rule.id)) {
          throw new LabError(`a host rule with id ${JSON.stringify(rule.id)} is already applied with ${other}`, { field: 'id', value: rule.id });
        }
      }
      let rules = this.opened.get(backend);
      if (!rules) {
        // The guard ran just above, with endpoints read now; the instance's own list would be
        // the first request's, stale for every later one.
        rules = await HostRules.open(this.exec, backend, this.log, this.owner, { protect: [] });
        this.opened.set(backend, rules);
      }
      return hostRuleInfo(await rules.apply(rule));
    });
  }

  /** Removes this owner's rule with the id, from whichever backend has it. */
  remove(id: string): Promise<void> {
    return this.serial(async () => {
      let found = false;
      for (const rules of this.opened.values()) {
        if ((await rules.list()).some((e) => e.id === id)) {
          await rules.remove(id);
          found = true;
        }
      }
      if (!found) throw new LabError(`this window has no host rule ${JSON.stringify(id)} (removed already?)`, { field: 'id', value: id });
    });
  }

  /** This owner's rules with their counters, as the kernel lists them now. */
  list(): Promise<HostRuleInfo[]> {
    return this.serial(async () => {
      const out: HostRuleInfo[] = [];
      for (const rules of this.opened.values()) out.push(...(await rules.list()).map(hostRuleInfo));
      return out;
    });
  }

  /** Removes every rule of this owner, best effort; returns what could not be removed. */
  removeAll(): Promise<LabError[]> {
    return this.serial(async () => {
      const errors: LabError[] = [];
      for (const rules of this.opened.values()) errors.push(...(await rules.removeAll()));
      return errors;
    });
  }

  /** removeAll, after which nothing more is applied: the helper's exit, the editor's deactivate. */
  async close(): Promise<LabError[]> {
    this.closed = true;
    const errors = await this.removeAll();
    for (const e of errors) this.log.warn(`host rule left behind: ${e.message}`);
    return errors;
  }

  /** One operation at a time, so a removeAll on exit runs after an apply in flight. */
  private serial<T>(op: () => Promise<T>): Promise<T> {
    const next = this.queue.then(op, op);
    this.queue = next.catch(() => undefined);
    return next;
  }
}

/** The sweep of dead owners' rules, as the editor is told of it. */
export async function sweepHost(log: Logger, exec: Exec = quietListings(log)): Promise<HostSweepInfo> {
  const result = await sweepHostRules(exec, log);
  return { removed: result.removed.map(hostRuleInfo), errors: result.errors.map(errorBody) };
}
