import { cpus } from 'node:os';
import { LabError } from './lab/errors';

export interface CliOptions {
  command: 'list' | 'run' | 'help';
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

options:
  --json            results as a JSON array on stdout (progress stays on stderr)
  --jobs N          scenarios at once, each in its own namespace (default ${DEFAULT_JOBS}; 1 = serial)
  --events FILE     write every event (app events and lab markers) as JSON lines
  --section S,...   only scenarios of these sections (connect, established, pitfalls, detection, ...)
  --mode M          auto (default), root, or rootless
  --firewall F      iptables (default) or nft
  --python PATH     the Python 3 that runs the samples (default: python3)
  --explain         print each scenario's explanation
  --verbose         log every command the lab runs (stderr)

exit status: 0 when every verdict passes, 1 when one fails, 2 for bad usage.`;

export function parseArgs(argv: readonly string[]): CliOptions {
  const o: CliOptions = { command: 'help', ids: [], all: false, json: false, jobs: DEFAULT_JOBS, mode: 'auto', firewall: 'iptables', verbose: false, explain: false, sections: [] };
  const rest = [...argv];
  const cmd = rest.shift();
  if (cmd === undefined || cmd === 'help' || cmd === '--help' || cmd === '-h') return o;
  if (cmd !== 'list' && cmd !== 'run') throw new LabError(`unknown command ${JSON.stringify(cmd.slice(0, 40))}`, { hint: 'commands: list, run' });
  o.command = cmd;
  const value = (flag: string): string => {
    const v = rest.shift();
    if (v === undefined || v.startsWith('--')) throw new LabError(`${flag} needs a value`, { field: flag });
    return v;
  };
  while (rest.length) {
    const a = rest.shift()!;
    switch (a) {
      case '--all': o.all = true; break;
      case '--json': o.json = true; break;
      case '--verbose': o.verbose = true; break;
      case '--explain': o.explain = true; break;
      case '--jobs': {
        const v = value(a);
        if (!/^\d{1,3}$/.test(v) || Number(v) < 1 || Number(v) > 64) throw new LabError('--jobs must be an integer from 1 to 64', { field: '--jobs', value: v });
        o.jobs = Number(v);
        break;
      }
      case '--events': o.eventsFile = value(a); break;
      case '--section': o.sections.push(...value(a).split(',').filter(Boolean)); break;
      case '--python': o.python = value(a); break;
      case '--mode': {
        const v = value(a);
        if (v !== 'auto' && v !== 'root' && v !== 'rootless') throw new LabError('--mode must be auto, root or rootless', { field: '--mode', value: v });
        o.mode = v;
        break;
      }
      case '--firewall': {
        const v = value(a);
        if (v !== 'iptables' && v !== 'nft') throw new LabError('--firewall must be iptables or nft', { field: '--firewall', value: v });
        o.firewall = v;
        break;
      }
      default:
        if (a.startsWith('-')) throw new LabError(`unknown option ${JSON.stringify(a.slice(0, 40))}`, { hint: 'tcp-lab --help lists the options' });
        if (o.command !== 'run') throw new LabError(`list takes no scenario ids`, { field: 'id', value: a });
        o.ids.push(a);
    }
  }
  if (o.command === 'run' && !o.all && o.ids.length === 0 && o.sections.length === 0) {
    throw new LabError('run needs scenario ids, --section S, or --all', { hint: 'tcp-lab list shows the ids' });
  }
  if (o.all && o.ids.length) throw new LabError('give scenario ids or --all, not both');
  return o;
}
