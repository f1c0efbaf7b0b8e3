import { execFileSync } from 'node:child_process';
import { existsSync, realpathSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { LabError } from './errors';
import { labEnv } from './exec';
import type { Program } from './scenarios/types';

let cached: string | undefined;

/** The samples/ folder: beside dist/ in the package, beside src/ in the repository. */
export function samplesDir(): string {
  if (cached) return cached;
  for (let dir = __dirname, i = 0; i < 5; i++, dir = dirname(dir)) {
    if (existsSync(join(dir, 'samples', 'python', 'client.py'))) return (cached = join(dir, 'samples'));
  }
  throw new LabError('cannot find the samples/ folder next to the lab', { hint: 'reinstall the package: samples/ ships with it' });
}

export function pythonSample(program: Program): string {
  return join(samplesDir(), 'python', `${program}.py`);
}

const interpreters = new Map<string, string>();

/**
 * The interpreter behind `python` (sys.executable), found once per process. A version manager's
 * shim (pyenv's is a shell script that runs `pyenv exec`) costs 0.4 s of CPU at every start;
 * with ten scenarios starting servers and clients at once on two cores, that alone pushed
 * servers past their 5 s to listen. Where the question fails, `python` itself is used (the
 * preflight names a missing one).
 */
export function realPython(python = 'python3'): string {
  const known = interpreters.get(python);
  if (known) return known;
  let found = python;
  try {
    const out = execFileSync(python, ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8', timeout: 10_000, env: labEnv(), stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    if (out.startsWith('/') && existsSync(out)) found = out;
  } catch {
    /* not there, or not Python: the caller's checks say so */
  }
  interpreters.set(python, found);
  return found;
}

/**
 * Whether a user (by uid and primary gid, no other groups: how the lab drops privileges) may
 * run `path`: search permission on every folder on the way and execute permission on the file,
 * read from the mode bits as the kernel checks them. A root's version manager keeps its Python
 * under /root (mode 700): a program dropped to the user cannot start it, nor a worker with it.
 */
export function executableBy(path: string, uid: number, gid: number): boolean {
  let real: string;
  try {
    real = realpathSync(path);
  } catch {
    return false;
  }
  // The folders of the path as given (a link in a closed folder cannot be reached), then those
  // of where it leads, and the file itself.
  const walk = (p: string, withFile: boolean) => {
    const parts = p.split('/').filter(Boolean);
    const upTo = withFile ? parts.length : parts.length - 1;
    return Array.from({ length: upTo + 1 }, (_, i) => `/${parts.slice(0, i).join('/')}`);
  };
  for (const at of [...walk(path, false), ...walk(real, true)]) {
    let st;
    try {
      st = statSync(at);
    } catch {
      return false;
    }
    const bits = st.uid === uid ? (st.mode >> 6) & 7 : st.gid === gid ? (st.mode >> 3) & 7 : st.mode & 7;
    if (!(bits & 1)) return false;
  }
  return true;
}

/**
 * The interpreter for programs run as `as`: `python` resolved as usual when that user can run
 * it, else the system's /usr/bin/python3; a LabError when neither is theirs to run.
 */
export function pythonFor(python: string | undefined, as: { uid: number; gid: number } | undefined): string {
  const found = realPython(python);
  if (!as || executableBy(found, as.uid, as.gid)) return found;
  const system = realPython('/usr/bin/python3');
  if (executableBy(system, as.uid, as.gid)) return system;
  throw new LabError(`the programs run as uid ${as.uid}, who cannot run ${found}`, {
    field: 'python', value: found, hint: 'set tcpLab.pythonPath (or --python) to a Python that user can run, e.g. /usr/bin/python3',
  });
}
