/**
 * `tcp-lab host …`: host mode on a command line. Rules applied here belong to the owner `cli`:
 * the command exits at once and the rule is meant to stay (it is host state by design), so no
 * sweep removes it; `tcp-lab host remove` does.
 */
import type { HostCommand } from './cliArgs';
import { LabError } from './lab/errors';
import { hostExec, type Exec } from './lab/exec';
import { Logger, quoteArg, stderrSink } from './lab/log';
import type { FaultRule, Backend } from './lab/rules';
import { ancestorPids, assertHostRuleSafe, protectedEndpoints } from './lab/hostGuard';
import {
  CLI_OWNER,
  HostRules,
  hostDisplayArgs,
  hostIptablesArgs,
  hostNftDeleteRuleArgs,
  listHostRules,
  ownerText,
  removeHostEntries,
  sweepHostRules,
  type HostOwner,
  type HostRuleEntry,
  type ListedHostRule,
} from './lab/hostRules';

const shown = (rule: FaultRule, owner: HostOwner, backend: Backend): string => hostDisplayArgs(rule, owner, backend).map(quoteArg).join(' ');
const out = (line = ''): boolean => process.stdout.write(`${line}\n`);
const err = (line: string): boolean => process.stderr.write(`tcp-lab: ${line}\n`);

export async function hostCommand(cmd: HostCommand, verbose: boolean): Promise<number> {
  if (process.getuid?.() !== 0) {
    err(`host mode needs root (the editor asks for sudo): run sudo tcp-lab host ${cmd.action} …\n  it changes this host's own firewall (iptables or nft), which only root may do`);
    return 2;
  }
  const log = new Logger(stderrSink, verbose ? 'debug' : 'warn');
  const exec = hostExec(log);
  try {
    switch (cmd.action) {
      case 'apply': return await apply(cmd, exec, log);
      case 'list': return await list(cmd, exec, log);
      case 'remove': return await remove(cmd, exec, log);
      case 'sweep': return await sweep(cmd, exec, log);
    }
  } catch (e) {
    err(e instanceof LabError ? e.describe() : String(e));
    return e instanceof LabError && e.field !== 'command' ? 2 : 1;
  }
}

async function apply(cmd: Extract<HostCommand, { action: 'apply' }>, exec: Exec, log: Logger): Promise<number> {
  const { rule, firewall } = cmd;
  // sudo clears SSH_CONNECTION; the session's socket is still held by sshd, an ancestor.
  const protect = protectedEndpoints(process.env, ancestorPids(), { listening: false });
  assertHostRuleSafe(rule, protect);
  const tag = `tcp-lab-host:${ownerText(CLI_OWNER)}:${rule.id}`;
  if (!cmd.yes) {
    err(`would apply on this host (${firewall}): ${shown(rule, CLI_OWNER, firewall)}\n  tagged ${tag}; it stays until tcp-lab host remove ${rule.id}\n  add --yes to apply it`);
    return 2;
  }
  const rules = await HostRules.open(exec, firewall, log, CLI_OWNER, { protect });
  const entry = await rules.apply(rule);
  const sudo = process.env.SUDO_USER ? 'sudo ' : '';
  const byHand = firewall === 'iptables'
    ? hostIptablesArgs(rule, CLI_OWNER, 'delete').filter((_, i) => i < 1 || i > 2)
    : hostNftDeleteRuleArgs(entry.table!, entry.chain, entry.handle!);
  out(`applied on this host (${firewall}): ${shown(rule, CLI_OWNER, firewall)}`);
  out(`  tag       ${entry.tag} (owner cli: it stays after this command exits)`);
  out(`  remove    ${sudo}tcp-lab host remove ${rule.id}`);
  out(`  by hand   ${byHand.map(quoteArg).join(' ')}`);
  out('  IPv4 only: a client that connects over IPv6 (::1) is not affected');
  return 0;
}

function ownerLabel(e: ListedHostRule): string {
  switch (e.status) {
    case 'cli': return 'cli (kept)';
    case 'unknown': return `pid ${ownerPid(e)} unknown`;
    default: return `pid ${ownerPid(e)} ${e.status}`;
  }
}

function ownerPid(e: HostRuleEntry): number | string {
  return e.owner.kind === 'process' ? e.owner.pid : 'cli';
}

function what(e: HostRuleEntry): string {
  if (e.rule) return shown(e.rule, e.owner, e.backend);
  return e.spec ? e.spec.join(' ') : '(not a rule the lab makes)';
}

async function list(cmd: Extract<HostCommand, { action: 'list' }>, exec: Exec, log: Logger): Promise<number> {
  const rules = await listHostRules(exec, log, cmd.firewalls);
  if (cmd.json) {
    out(JSON.stringify(rules.map((e) => ({
      backend: e.backend, tag: e.tag, id: e.id, owner: ownerText(e.owner), status: e.status, chain: e.chain,
      packets: e.packets, bytes: e.bytes, rule: e.rule ?? null,
    })), null, 2));
    return 0;
  }
  if (rules.length === 0) {
    out('no host rules');
    return 0;
  }
  const rows = [['BACKEND', 'TAG', 'OWNER', 'CHAIN', 'PACKETS', 'BYTES', 'RULE'],
    ...rules.map((e) => [e.backend, e.tag, ownerLabel(e), e.chain, String(e.packets), String(e.bytes), what(e)])];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const r of rows) out(r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  '));
  return 0;
}

async function remove(cmd: Extract<HostCommand, { action: 'remove' }>, exec: Exec, log: Logger): Promise<number> {
  const all = await listHostRules(exec, log, cmd.firewalls);
  const matching = cmd.all ? all : all.filter((e) => e.id === cmd.id);
  if (!cmd.all && matching.length === 0) {
    err(`no host rule with id ${JSON.stringify(cmd.id)}; tcp-lab host list shows them`);
    return 1;
  }
  const kept = cmd.force ? [] : matching.filter((e) => e.status === 'alive' || e.status === 'unknown');
  const gone = matching.filter((e) => !kept.includes(e));
  const errors = await removeHostEntries(exec, log, gone);
  const failed = new Set(errors.map((e) => e.message));
  for (const e of gone) out(`removed ${e.tag} (${e.backend})`);
  for (const e of kept) {
    out(`left ${e.tag} (${e.backend}): its owner, pid ${ownerPid(e)}, ${e.status === 'alive' ? 'is running and removes it when it stops' : 'cannot be seen from here (another pid namespace, or /proc hidepid)'}; --force removes it now`);
  }
  for (const message of failed) err(message);
  if (cmd.all && matching.length === 0) out('no host rules');
  return errors.length || (!cmd.all && gone.length === 0) ? 1 : 0;
}

async function sweep(cmd: Extract<HostCommand, { action: 'sweep' }>, exec: Exec, log: Logger): Promise<number> {
  const result = await sweepHostRules(exec, log, cmd.firewalls);
  for (const e of result.removed) out(`swept ${e.tag} (${e.backend}): owner pid ${ownerPid(e)} is gone`);
  const emptyTables = result.tables.filter((t) => !result.removed.some((e) => e.table === t));
  for (const t of emptyTables) out(`swept the empty nft table inet ${t}: its owner is gone`);
  for (const e of result.errors) err(e.describe());
  if (!result.removed.length && !emptyTables.length && !result.errors.length) out('nothing to sweep: no host rule of a dead owner');
  return result.errors.length ? 1 : 0;
}
