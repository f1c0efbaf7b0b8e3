/**
 * Starting one program as root through sudo with the user's password, which goes to sudo's
 * stdin and nowhere else: not in argv (`ps` shows argv to everyone), not in the environment
 * (/proc/PID/environ), not in a file (SUDO_ASKPASS would need a program that prints it), not
 * in a log line.
 *
 * `-S` reads the password from stdin, one byte at a time up to the newline, so the program
 * sudo then starts inherits the same pipe with nothing of the password left in it. `-p` sets
 * the prompt sudo writes to stderr each time it wants the password: a random marker, so the
 * password is written only when sudo asks for it. A second prompt means the first answer was
 * refused: stdin is closed, sudo stops at once instead of reading two more tries, and a
 * program that speaks first (the lab helper) never receives a password line even where sudo
 * asks for none (NOPASSWD). `-k` ignores a cached sudo credential and caches none: the prompt
 * is then predictable, and typing the password into the editor does not quietly give every
 * later `sudo` of this user a free pass.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { userInfo } from 'node:os';
import { LabError } from './errors';
import type { Logger } from './log';

export interface SudoOptions {
  /** The user's own password (sudo asks for the invoking user's, not root's). */
  password: string;
  /** What to run as root. */
  argv: readonly string[];
  log: Logger;
  /** The sudo binary (default: sudo from PATH). */
  sudo?: string;
  /** Time for sudo to check the password and the program to say its first word. */
  timeoutMs?: number;
}

export interface SudoStarted {
  child: ChildProcessWithoutNullStreams;
  /** The program's first output on stdout. stdout and stderr are paused: resume them to read on. */
  first: string;
}

export function sudoArgs(marker: string, argv: readonly string[]): string[] {
  return ['-S', '-k', '-p', marker, '--', ...argv];
}

/**
 * Starts `argv` as root; resolves once the program writes to stdout (so it runs, as root or
 * not: the caller checks what it says). Rejects with a LabError a person can act on, which
 * never contains the password.
 */
export function startWithSudo(options: SudoOptions): Promise<SudoStarted> {
  let secret: string | undefined = options.password;
  if (/[\n\r\0]/.test(secret)) return Promise.reject(new LabError('the password cannot contain a line break or a NUL byte'));
  const sudo = options.sudo ?? 'sudo';
  // No `%` in it: sudo expands %u, %h and the like in a prompt.
  const marker = `[tcp-lab-sudo-${randomBytes(8).toString('hex')}]`;
  const args = sudoArgs(marker, options.argv);
  options.log.command([sudo, ...args], 'sudo');
  // C messages: the hints below read sudo's words. sudo resets the environment anyway.
  const child = spawn(sudo, args, { stdio: ['pipe', 'pipe', 'pipe'], cwd: '/', env: { ...process.env, LC_ALL: 'C' } });
  child.stdin.on('error', () => { /* sudo exited before reading: its exit says why */ });
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');

  return new Promise<SudoStarted>((resolve, reject) => {
    let stderr = '';
    let prompts = 0;
    let refused = false;
    let settled = false;
    const said = () => clean(stderr, marker, secret);
    const finish = (settle: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      child.stdout.pause();
      child.stderr.pause();
      child.stdout.off('data', onOut);
      child.stderr.off('data', onErr);
      child.off('exit', onExit);
      child.off('error', onError);
      settle();
      secret = undefined;
    };
    const onErr = (d: string) => {
      stderr += d;
      const asked = stderr.split(marker).length - 1;
      for (; prompts < asked; prompts++) {
        if (prompts === 0 && secret !== undefined) child.stdin.write(`${secret}\n`);
        else if (!refused) {
          refused = true;
          child.stdin.end();
        }
      }
    };
    const onOut = (first: string) => finish(() => resolve({ child, first }));
    const onExit = (code: number | null, signal: NodeJS.Signals | null) =>
      finish(() => reject(refusal(code, signal, said(), refused, prompts)));
    const onError = (e: NodeJS.ErrnoException) =>
      finish(() => reject(e.code === 'ENOENT'
        ? new LabError('sudo is not installed', { hint: 'install it (apt-get install sudo), or run the editor as root' })
        : new LabError(`cannot start sudo: ${e.message}`)));
    const timeoutMs = options.timeoutMs ?? 30_000;
    const timer = setTimeout(() => {
      const text = said();
      finish(() => reject(new LabError(`sudo did not start the lab helper within ${Math.round(timeoutMs / 1000)} s${text ? `: ${text}` : ''}`, {
        hint: prompts === 0 ? 'sudo asked for something other than the password (a second factor?): start the editor as root instead' : '',
      })));
      child.stdin.end();
      try { child.kill('SIGKILL'); } catch { /* already root's: the closed stdin ends it */ }
    }, timeoutMs);
    child.stdout.on('data', onOut);
    child.stderr.on('data', onErr);
    child.once('exit', onExit);
    child.once('error', onError);
  });
}

/** sudo's words without the prompts, and without the password should anything echo it. */
function clean(stderr: string, marker: string, secret: string | undefined): string {
  let text = stderr.split(marker).join('');
  if (secret) text = text.split(secret).join('***');
  return text.replace(/\s+/g, ' ').trim().slice(-500);
}

function refusal(code: number | null, signal: string | null, said: string, refused: boolean, prompts: number): LabError {
  const user = userInfo().username;
  if (refused || /incorrect password attempt/.test(said)) {
    return new LabError('sudo refused the password', { hint: `sudo asks for the password of ${user}, the account the editor runs as (not root's)` });
  }
  if (/not in the sudoers|not allowed to (run|execute)|may not run sudo/.test(said)) {
    return new LabError(`sudo does not let ${user} run the lab helper as root: ${said}`, {
      hint: 'ask an administrator to allow it, or to allow unprivileged user namespaces (the lab then needs no root)',
    });
  }
  if (/terminal is required|must have a tty|no tty present/.test(said)) {
    return new LabError('sudo needs a terminal here (Defaults requiretty), and the editor has none', {
      hint: 'run the lab from a terminal as root (sudo tcp-lab run ...), or ask an administrator to drop requiretty for this user',
    });
  }
  const how = signal ? `signal ${signal}` : `exit ${code}`;
  // Past the password, what fails is the program itself (a missing file, a crash), not sudo.
  const program = prompts > 0 && said !== '' && !/\bsudo:/.test(said);
  return new LabError(`${program ? 'the lab helper did not start' : 'sudo failed'} (${how}): ${said || 'no message'}`);
}
