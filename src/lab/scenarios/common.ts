import type { Band, Match, ProcSpec, RuleSpec } from './types';

/**
 * The server port. Every scenario runs in its own network namespace, so they can all use the
 * same one, also when several run at once.
 */
export const PORT = 7000;
export const PROXY_PORT = 7001;

export function client(steps: string, ...flags: string[]): ProcSpec {
  return { name: 'client', program: 'client', args: ['--host', '127.0.0.1', '--port', String(PORT), ...flags, '--steps', steps] };
}

export function server(mode: string, ...flags: string[]): ProcSpec {
  return { name: 'server', program: 'server', args: ['--host', '127.0.0.1', '--port', String(PORT), '--mode', mode, ...flags] };
}

/** Packets to the server's port (what the client sends) meet `action`. */
export function toServer(action: Pick<RuleSpec, 'action' | 'rejectWith'>, id = 'fault'): RuleSpec {
  return { id, direction: 'to-port', chain: 'INPUT', ...action };
}

/** Packets from the server's port (what the server sends back) meet `action`. */
export function fromServer(action: Pick<RuleSpec, 'action' | 'rejectWith'>, id = 'fault'): RuleSpec {
  return { id, direction: 'from-port', chain: 'INPUT', ...action };
}

export const DROP = { action: 'drop' } as const;

export const on = {
  client: (type: string, extra: Partial<Match> = {}): Match => ({ proc: 'client', type, ...extra }),
  server: (type: string, extra: Partial<Match> = {}): Match => ({ proc: 'server', type, ...extra }),
  /** Markers the runner writes: `fault` (a rule applied), `killed`, `started`, `removed`. */
  lab: (type: string, extra: Partial<Match> = {}): Match => ({ proc: 'lab', type, ...extra }),
};

/** Something the kernel does at once: well inside a scheduler hiccup. */
export const AT_ONCE: Band = [0, 0.5];

/**
 * The band around a time the kernel's timers predict: never earlier (a timer does not fire
 * early), and later only by the timer slack seen in practice (1-3 % on 6.18) plus wake-up.
 */
export function around(seconds: number, slack = 0.3): Band {
  return [seconds * 0.97, seconds * 1.08 + slack];
}
