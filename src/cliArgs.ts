import { cpus } from 'node:os';
import { LabError } from './lab/errors';

export interface CliOptions {
  command: 'list' | 'run' | 'watch' | 'help';
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
}

/**
 * Several scenarios at once: each spends most of its time waiting on kernel timers in its own
 * namespace, so many more jobs than cores is fine (2 cores: 10 jobs ran sections A, B, E and F
 * in 13.5 s, 6 jobs in 17.9 s), and measurement is done by timestamps in the programs, not by
 * the lab's event loop. The cap bounds namespaces and processes on big machines.
 */
export const DEFAULT_JOBS = Math.min(16, Math.max(4, cpus().length * 5));

export const USAGE = `tcp-lab: run TCP failure scenarios in private network namespaces

usage:
  tcp-lab list [--section S] [--json]
  tcp-lab run <id>... [options]
  tcp-lab run --all [options]
  tcp-lab run <id> [options] -- COMMAND [ARGS...]
  tcp-lab watch --port N [--interval MS] [--for S] [--tool ss|netstat] [--json]
  tcp-lab watch [options] -- COMMAND [ARGS...]

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

exit status: 0 when every verdict passes, 1 when one fails, 2 for bad usage
(watch -- COMMAND: the command's own exit status).`;

export function parseArgs(argv: readonly string[]): CliOptions {
  const o: CliOptions = { command: 'help', ids: [], all: false, json: false, jobs: DEFAULT_JOBS, mode: 'auto', firewall: 'iptables', verbose: false, explain: false, sections: [], interval: 100, tool: 'auto', capture: 'auto' };
  const rest = [...argv];
  const cmd = rest.shift();
  if (cmd === undefined || cmd === 'help' || cmd === '--help' || cmd === '-h') return o;
  if (cmd !== 'list' && cmd !== 'run' && cmd !== 'watch') throw new LabError(`unknown command ${JSON.stringify(cmd.slice(0, 40))}`, { hint: 'commands: list, run, watch' });
  o.command = cmd;
  const value = (flag: string): string => {
    const v = rest.shift();
    if (v === undefined || v.startsWith('--')) throw new LabError(`${flag} needs a value`, { field: flag });
    return v;
  };
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
