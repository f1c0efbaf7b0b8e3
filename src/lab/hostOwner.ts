/**
 * Who owns a host rule, and whether that owner still runs: the process behind a tag, judged
 * from /proc (see the tag's design in hostRulesBackend.ts).
 */
import { readFileSync, readlinkSync } from 'node:fs';
import { LabError } from './errors';
import { ownerFromProc, runningFromStat, startTimeFromStat, type HostOwner } from './hostRulesBackend';

/** The owner tag of a running process (default: this one), from /proc. */
export function processOwner(pid: number = process.pid): HostOwner {
  try {
    return ownerFromProc(pid, readFileSync(`/proc/${pid}/stat`, 'utf8'), readlinkSync(`/proc/${pid}/ns/pid`));
  } catch (error) {
    if (error instanceof LabError) throw error;
    throw new LabError(`process ${pid} is not running or cannot be read in /proc`, { field: 'pid', value: pid });
  }
}

/**
 * `cli`: kept until removed by hand. `alive`: the owner runs. `dead`: it does not (or its pid
 * now belongs to a later process). `unknown`: this process cannot tell, because the owner lives
 * in another pid namespace or /proc hides other users' processes (hidepid); only an explicit
 * remove touches its rules.
 */
export type OwnerStatus = 'cli' | 'alive' | 'dead' | 'unknown';

/**
 * Judged from /proc/<pid>/stat alone, which every user may read: the ns/pid link of another
 * user's process is not readable without root, and the editor sweeps as itself.
 */
export function ownerStatus(owner: HostOwner, self: HostOwner = processOwner()): OwnerStatus {
  if (owner.kind === 'cli') return 'cli';
  if (self.kind === 'process' && owner.pidns !== self.pidns) return 'unknown';
  let stat: string;
  try {
    stat = readFileSync(`/proc/${owner.pid}/stat`, 'utf8');
  } catch {
    return procHidesOthers() ? 'unknown' : 'dead';
  }
  return startTimeFromStat(stat) === owner.start && runningFromStat(stat) ? 'alive' : 'dead';
}

let hidden: boolean | undefined;

/** /proc mounted with hidepid (proc(5)): other users' processes look absent to a non-root user. */
function procHidesOthers(): boolean {
  if (process.getuid?.() === 0) return false;
  if (hidden === undefined) {
    try {
      hidden = readFileSync('/proc/self/mountinfo', 'utf8').split('\n')
        .some((l) => / \/proc /.test(l) && /[ ,]hidepid=(?!0\b|off\b)/.test(l));
    } catch {
      hidden = true;
    }
  }
  return hidden;
}
