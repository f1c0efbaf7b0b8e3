import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const PREFIX = 'tcp-lab-';

/** A private directory for one run, named after this process so a later run can sweep it. */
export function makeRunDir(): string {
  return mkdtempSync(join(tmpdir(), `${PREFIX}${process.pid}-`));
}

/**
 * Removes the run directories of lab processes that died without cleaning up (kill -9): the
 * namespace went with them by construction, but a directory is a file-system object and stays.
 */
export function sweepStaleRunDirs(): number {
  let removed = 0;
  let names: string[];
  try {
    names = readdirSync(tmpdir());
  } catch {
    return 0;
  }
  const me = process.getuid?.();
  for (const name of names) {
    const m = new RegExp(`^${PREFIX}(\\d+)-`).exec(name);
    if (!m || alive(Number(m[1]))) continue;
    const path = join(tmpdir(), name);
    try {
      if (me !== undefined && me !== 0 && statSync(path).uid !== me) continue;
      rmSync(path, { recursive: true, force: true });
      removed++;
    } catch {
      /* another user's, or gone already */
    }
  }
  return removed;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
