import { cpus } from 'node:os';
import { LabError } from './lab/errors';
import { parseRule, type Backend, type FaultRule } from './lab/rules';

export interface CliOptions {
  command: 'list' | 'run' | 'watch' | 'host' | 'help';
  ids: string[];
  all: boolean;
  json: boolean;
  jobs: number;
  eventsFile?: string;
  mode: 'auto' | 'root' | 'rootless';
  firewall: 'iptables' | 'nft';
  python?: string;
  verbose: boolean;
  explain: boolean;
  sections: string[];
  /** watch: a port to follow, a command to run and follow, the poll interval (ms), a time limit (s). */
  port?: number;
  watchCommand?: string[];
  /** run <id> -- COMMAND: the user's own program as the scenario's client. */
  clientCommand?: string[];
  interval: number;
  seconds?: number;
  tool: 'auto' | 'ss' | 'netstat';
  capture: 'auto' | 'tcpdump' | 'af_packet' | 'off';
  /** tcp-lab host …: the lab's rules on this host's own traffic. */
  host?: HostCommand;
}

/** `firewalls`: the backends to look at; apply takes one (default iptables), the others both. */
export type HostCommand =
  | { action: 'apply'; rule: FaultRule; yes: boolean; firewall: Backend }
  | { action: 'list'; json: boolean; firewalls: Backend[] }
  | { action: 'remove'; id?: string; all: boolean; force: boolean; firewalls: Backend[] }
  | { action: 'sweep'; firewalls: Backend[] };

/**
 * Several scenarios at once: each spends most of its time waiting on kernel timers in its own
 * namespace, so more jobs than cores is fine, and measurement is done by timestamps in the
 * programs, not by the lab's event loop. But every job also starts programs and polls ss ten
 * times a second, and on a VM where a fork+exec costs 7 ms (2 cores), 10 jobs left servers
 * unable to listen within 5 s and 46 of 49 verdicts failed, while 4 jobs passed all 49 in
 * 40.5 s. Two per core, at least 2; the cap bounds namespaces and processes on big machines.
 */
export const DEFAULT_JOBS = Math.min(16, Math.max(2, cpus().length * 2));

export const USAGE = `tcp-lab: run TCP failure scenarios in private network namespaces

usage:
  tcp-lab list [--section S] [--json]
  tcp-lab run <id>... [options]
  tcp-lab run --all [options]
  tcp-lab run <id> [options] -- COMMAND [ARGS...]
  tcp-lab watch --port N [--interval MS] [--for S] [--tool ss|netstat] [--json]
  tcp-lab watch [options] -- COMMAND [ARGS...]
  tcp-lab host apply --id ID --action drop|reject --direction to-port|from-port --port N
                     [--reject-with X] [--address A] [--chain C] [--firewall F] [--yes]
  tcp-lab host apply '{"id":"db-drop","action":"drop","direction":"to-port","port":5432}' [--yes]
  tcp-lab host list [--json] [--firewall F]
  tcp-lab host remove <id> | --all [--force] [--firewall F]
  tcp-lab host sweep [--firewall F]

options:
  --json            results as a JSON array on stdout (progress stays on stderr)
  --jobs N          scenarios at once, each in its own namespace (default ${DEFAULT_JOBS}; 1 = serial)
  --events FILE     write the run's event stream as JSON lines, in time order: the programs'
                    events, the lab's steps, socket transitions (ss), failing syscalls
  --capture M       packets from auto (default: tcpdump, or an AF_PACKET socket where tcpdump
                    cannot run), tcpdump, af_packet, or off
  --section S,...   only scenarios of these sections (connect, established, pitfalls, detection, ...)
  --mode M          auto (default), root, or rootless
  --firewall F      iptables (default) or nft
  --python PATH     the Python 3 that runs the samples (default: python3)
  --explain         print each scenario's explanation
  --verbose         log every command the lab runs (stderr)

run <id> -- COMMAND runs your own program as the scenario's client, under strace:
its failing calls (connect, recv, send...) are its events and judged like a sample's.
{host} and {port} in the command become the server's address.

watch follows sockets on this host (read-only, no privilege needed for your own
programs): those of a port, or those a command and its children own, one line per
transition (new, state, timer, retrans, gone). --json prints the events as JSON lines.

host mode applies the same fault rules to this host's own traffic, for a program
that runs outside the lab (your service and its real database). It needs root (the
editor asks for sudo). apply shows what it would do and applies only with --yes; it
refuses a rule that would cut the SSH session it runs in (SSH_CONNECTION, SSH_CLIENT,
and the connections of its parent processes). Rules are IPv4 only: a client that
reaches localhost over ::1 is not affected. Each rule is tagged tcp-lab-host:<owner>:<id>
(an iptables comment; with nft, a table inet tcplab_host_<owner> of its own).
  owner "cli"    rules from tcp-lab host apply: they stay after the command exits, until
                 tcp-lab host remove takes them away; sweep never touches them.
  owner a pid    rules of a lab process (the editor) that removes them when it stops;
                 sweep removes them once that process is dead (crash, kill -9), never while
                 it runs. remove touches a live owner's rules only with --force.
  list           every host rule: backend, tag, owner (alive, dead, or unknown when it
                 is in another pid namespace), chain, counters.
  remove <id>    the rule(s) with that id of the CLI or of a dead owner; --all: all of them.
  sweep          the rules of dead owners only.
  --reject-with  tcp-reset or icmp-port-unreachable (default), icmp-host-unreachable, ...
  --chain C      INPUT (default: packets to this host), OUTPUT (packets it sends: use it for
                 a server elsewhere), FORWARD

exit status: 0 when every verdict passes, 1 when one fails, 2 for bad usage
(watch -- COMMAND: the command's own exit status, 128+N when signal N ended it; host: 0 done, 1 a firewall command
failed or no rule matched, 2 refused: bad input, no --yes, a rule that would cut the
editor's connection, or not root).`;

/** The value after a flag; a missing one (or another flag in its place) is an error naming it. */
function takeValue(rest: string[], flag: string): string {
  const v = rest.shift();
  if (v === undefined || v.startsWith('--')) throw new LabError(`${flag} needs a value`, { field: flag });
  return v;
}

export function parseArgs(argv: readonly string[]): CliOptions {
  const o: CliOptions = { command: 'help', ids: [], all: false, json: false, jobs: DEFAULT_JOBS, mode: 'auto', firewall: 'iptables', verbose: false, explain: false, sections: [], interval: 100, tool: 'auto', capture: 'auto' };
  const rest = [...argv];
  const cmd = rest.shift();
  if (cmd === undefined || cmd === 'help' || cmd === '--help' || cmd === '-h') return o;
  if (cmd === 'host') return { ...o, command: 'host', host: parseHostArgs(rest), verbose: rest.includes('--verbose') };
  if (cmd !== 'list' && cmd !== 'run' && cmd !== 'watch') throw new LabError(`unknown command ${JSON.stringify(cmd.slice(0, 40))}`, { hint: 'commands: list, run, watch, host' });
  o.command = cmd;
  const value = (flag: string): string => takeValue(rest, flag);
  while (rest.length) {
    const a = rest.shift()!;
    switch (a) {
      case '--': {
        if (o.command === 'list') throw new LabError('list takes no command', { field: '--' });
        if (rest.length === 0) throw new LabError(`${o.command} -- needs a command after --`, { field: '--' });
        if (o.command === 'watch') o.watchCommand = rest.splice(0);
        else o.clientCommand = rest.splice(0);
        break;
      }
      case '--port': o.port = integer(a, value(a), 1, 65535); break;
      case '--interval': o.interval = integer(a, value(a), 20, 60_000); break;
      case '--for': o.seconds = integer(a, value(a), 1, 86_400); break;
      case '--capture': o.capture = oneOf(a, value(a), ['auto', 'tcpdump', 'af_packet', 'off']); break;
      case '--tool': o.tool = oneOf(a, value(a), ['ss', 'netstat']); break;
      case '--all': o.all = true; break;
      case '--json': o.json = true; break;
      case '--verbose': o.verbose = true; break;
      case '--explain': o.explain = true; break;
      case '--jobs': o.jobs = integer(a, value(a), 1, 64); break;
      case '--events': o.eventsFile = value(a); break;
      case '--section': o.sections.push(...value(a).split(',').filter(Boolean)); break;
      case '--python': o.python = value(a); break;
      case '--mode': o.mode = oneOf(a, value(a), ['auto', 'root', 'rootless']); break;
      case '--firewall': o.firewall = oneOf(a, value(a), ['iptables', 'nft']); break;
      default:
        if (a.startsWith('-')) throw new LabError(`unknown option ${JSON.stringify(a.slice(0, 40))}`, { hint: 'tcp-lab --help lists the options' });
        if (o.command !== 'run') throw new LabError(`${o.command} takes no scenario ids`, { field: 'id', value: a });
        o.ids.push(a);
    }
  }
  if (o.command === 'run' && !o.all && o.ids.length === 0 && o.sections.length === 0) {
    throw new LabError('run needs scenario ids, --section S, or --all', { hint: 'tcp-lab list shows the ids' });
  }
  if (o.all && o.ids.length) throw new LabError('give scenario ids or --all, not both');
  if (o.clientCommand && (o.ids.length !== 1 || o.all || o.sections.length)) {
    throw new LabError('run <id> -- COMMAND runs your command as the client of one scenario', { field: '--', hint: 'tcp-lab run connect-refused -- curl -sS http://{host}:{port}/' });
  }
  if (o.command === 'watch' && o.port === undefined && !o.watchCommand) {
    throw new LabError('watch needs --port N or a command after --', { hint: 'tcp-lab watch --port 7000, or tcp-lab watch -- curl -s http://127.0.0.1:7000/' });
  }
  if (o.command !== 'watch' && (o.port !== undefined || o.seconds !== undefined)) throw new LabError('--port and --for are options of watch', { field: o.port !== undefined ? '--port' : '--for' });
  return o;
}

/** The rule's fields as flags; errors about a field name the flag it came from. */
const RULE_FLAGS: Record<string, keyof FaultRule> = {
  '--id': 'id', '--action': 'action', '--direction': 'direction', '--port': 'port',
  '--reject-with': 'rejectWith', '--address': 'address', '--chain': 'chain',
};
const HOST_ACTIONS = ['apply', 'list', 'remove', 'sweep'] as const;

/** `host <apply|list|remove|sweep> …`; the rule is validated here, so bad input exits 2. */
export function parseHostArgs(argv: readonly string[]): HostCommand {
  const rest = [...argv];
  const action = rest.shift();
  if (!(HOST_ACTIONS as readonly (string | undefined)[]).includes(action)) {
    throw new LabError(action === undefined ? 'host needs apply, list, remove or sweep' : `unknown host command ${JSON.stringify(action.slice(0, 40))}`, { hint: 'tcp-lab host apply|list|remove|sweep; tcp-lab --help shows the flags' });
  }
  const fields: Record<string, string> = {};
  const given = new Set<string>();
  const positional: string[] = [];
  let firewall: Backend | undefined;
  const value = (flag: string): string => takeValue(rest, flag);
  while (rest.length) {
    const a = rest.shift()!;
    if (a in RULE_FLAGS) {
      if (fields[RULE_FLAGS[a]!] !== undefined) throw new LabError(`${a} is given twice`, { field: a });
      fields[RULE_FLAGS[a]!] = value(a);
      given.add(a);
    } else if (a === '--firewall') {
      firewall = oneOf<Backend>(a, value(a), ['iptables', 'nft']);
    } else if (['--yes', '--json', '--all', '--force', '--verbose'].includes(a)) {
      given.add(a);
    } else if (a.startsWith('-')) {
      throw new LabError(`unknown option ${JSON.stringify(a.slice(0, 40))}`, { hint: 'tcp-lab --help lists the options' });
    } else {
      positional.push(a);
    }
  }
  const only = (flags: string[], where: string): void => {
    const stray = [...given].find((f) => !flags.includes(f) && f !== '--verbose');
    if (stray) throw new LabError(`${stray} is not an option of host ${action}`, { field: stray, hint: `host ${action} takes ${flags.join(' ') || 'no options'}${where}` });
  };
  const firewalls: Backend[] = firewall ? [firewall] : ['iptables', 'nft'];
  switch (action) {
    case 'apply': {
      only([...Object.keys(RULE_FLAGS), '--yes'], ' and --firewall');
      if (positional.length > 1) throw new LabError('host apply takes one rule', { field: 'rule', value: positional[1] });
      const flagged = Object.keys(fields).length > 0;
      if (positional.length && flagged) throw new LabError('give the rule as JSON or as flags, not both', { field: 'rule' });
      if (!positional.length && !flagged) throw new LabError('host apply needs a rule: --id, --action, --direction, --port, or one JSON object', { field: 'rule' });
      return { action, rule: flagged ? ruleFromFlags(fields) : ruleFromJson(positional[0]!), yes: given.has('--yes'), firewall: firewall ?? 'iptables' };
    }
    case 'list':
      only(['--json'], ' and --firewall');
      if (positional.length) throw new LabError('host list takes no arguments', { field: 'id', value: positional[0] });
      return { action, json: given.has('--json'), firewalls };
    case 'remove': {
      only(['--all', '--force'], ' and --firewall');
      const all = given.has('--all');
      if (positional.length > 1 || (all && positional.length) || (!all && !positional.length)) {
        throw new LabError('host remove takes one rule id, or --all', { field: 'id', value: positional[all ? 0 : 1] });
      }
      const id = positional[0];
      if (id !== undefined) parseRule({ id, action: 'drop', direction: 'to-port', port: 1 });
      return { action, ...(id !== undefined ? { id } : {}), all, force: given.has('--force'), firewalls };
    }
    default:
      only([], ' but --firewall');
      if (positional.length) throw new LabError('host sweep takes no arguments', { field: 'id', value: positional[0] });
      return { action: 'sweep', firewalls };
  }
}

function ruleFromFlags(fields: Record<string, string>): FaultRule {
  try {
    return parseRule(fields);
  } catch (e) {
    if (!(e instanceof LabError) || e.field === undefined) throw e;
    const flag = Object.keys(RULE_FLAGS).find((f) => RULE_FLAGS[f] === e.field);
    if (!flag) throw e;
    const message = e.message.replace(/^missing field \w+/, `missing ${flag}`).replace(new RegExp(`^${e.field}\\b`), flag);
    throw new LabError(message, { field: flag, value: e.value, ...(e.hint ? { hint: e.hint } : {}) });
  }
}

function ruleFromJson(text: string): FaultRule {
  let input: unknown;
  try {
    input = JSON.parse(text);
  } catch {
    throw new LabError('the rule must be one JSON object, or flags (--id, --action, --direction, --port)', { field: 'rule', value: text });
  }
  return parseRule(input);
}

/** A whole number in [lo, hi], or an error naming the flag. */
function integer(flag: string, v: string, lo: number, hi: number): number {
  const n = /^\d{1,6}$/.test(v) ? Number(v) : NaN;
  if (!(n >= lo && n <= hi)) throw new LabError(`${flag} must be an integer from ${lo} to ${hi}`, { field: flag, value: v });
  return n;
}

/** One of `choices`, or an error naming the flag and the choices. */
function oneOf<T extends string>(flag: string, v: string, choices: readonly T[]): T {
  if ((choices as readonly string[]).includes(v)) return v as T;
  const list = choices.length === 2 ? choices.join(' or ') : `${choices.slice(0, -1).join(', ')} or ${choices.at(-1)}`;
  throw new LabError(`${flag} must be ${list}`, { field: flag, value: v });
}
