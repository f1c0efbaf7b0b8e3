import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
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
