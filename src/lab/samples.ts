import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { LabError } from './errors';
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
