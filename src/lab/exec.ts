import { execFile } from 'node:child_process';
import { LabError } from './errors';
import type { Logger } from './log';

export interface ExecResult {
  stdout: string;
  stderr: string;
  /** Exit code; null when a signal ended the command. */
  code: number | null;
}

export interface ExecOptions {
  /** Resolve instead of rejecting on a non-zero exit. */
  allowFailure?: boolean;
  timeoutMs?: number;
  input?: string;
}

/**
 * Runs one argv, inside or outside a namespace. The sandbox hands out an Exec that prefixes
 * `nsenter`; everything that builds a command (rules, sysctls) takes an Exec, so it runs the
 * same against the host, a namespace, or a test double that records argv.
 */
export type Exec = (argv: readonly string[], options?: ExecOptions) => Promise<ExecResult>;

/**
 * The environment of every command the lab runs: on Debian an unprivileged user's PATH has no
 * /usr/sbin, where iptables, nft, ip and sysctl live; inside the namespace they run as its root.
 */
export function labEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const path = (env.PATH ?? '/usr/local/bin:/usr/bin:/bin').split(':');
  for (const dir of ['/usr/local/sbin', '/usr/sbin', '/sbin']) if (!path.includes(dir)) path.push(dir);
  return { ...env, PATH: path.join(':') };
}

/** Exec on this host, no shell: the argv goes to execve as it is. */
export function hostExec(log: Logger, where = 'host'): Exec {
  return (argv, options = {}) =>
    new Promise((resolve, reject) => {
      if (argv.length === 0) throw new LabError('empty command');
      log.command(argv, where);
      const child = execFile(
        argv[0]!,
        argv.slice(1),
        { encoding: 'utf8', timeout: options.timeoutMs ?? 20_000, maxBuffer: 64 * 1024 * 1024, env: labEnv() },
        (error, stdout, stderr) => {
          const code = error ? (typeof error.code === 'number' ? error.code : null) : 0;
          if (error && (error as NodeJS.ErrnoException).code === 'ENOENT') {
            reject(new LabError(`command not found: ${argv[0]}`, { field: 'command', value: argv[0], hint: installHint(argv[0]!) }));
            return;
          }
          const result = { stdout, stderr, code };
          if (code !== 0 && !options.allowFailure) {
            reject(new LabError(`${argv.join(' ')} failed (exit ${code ?? 'signal'}): ${stderr.trim() || stdout.trim()}`.slice(0, 2000)));
            return;
          }
          resolve(result);
        },
      );
      if (options.input !== undefined) child.stdin?.end(options.input);
    });
}

/** Which Debian package brings a command the lab runs. */
export function installHint(command: string): string {
  const base = command.split('/').pop() ?? command;
  const pkg: Record<string, string> = {
    iptables: 'iptables', nft: 'nftables', ip: 'iproute2', ss: 'iproute2', unshare: 'util-linux',
    nsenter: 'util-linux', strace: 'strace', tcpdump: 'tcpdump', sysctl: 'procps', python3: 'python3',
    nginx: 'nginx', curl: 'curl',
  };
  return pkg[base] ? `install it: apt-get install ${pkg[base]}` : '';
}
