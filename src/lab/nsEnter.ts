import { LabError } from './errors';
import type { SandboxMode } from './sandbox';

/** What the editor keeps of a running lab (runner.ts's LiveLab): enough to enter its namespaces. */
export interface LabHandle {
  mode: SandboxMode;
  /** Host PID of the namespace's init. */
  pid: number;
  /** A lab of several hosts: each host's name and the host PID holding its network namespace. */
  hosts?: readonly { name: string; pid: number }[];
}

/**
 * The argv that runs `argv` inside a lab: Sandbox.enter for the lab's own commands, and for a
 * lab held by someone else (the editor holds a LiveLab, not the Sandbox), so a command run
 * from a view sees what the lab's own commands see. Joining a network namespace (setns) takes CAP_SYS_ADMIN
 * in the user namespace that owns it: rootless, that is the lab's own, joined first with
 * `--user` (`--preserve-credentials`: keep our ids, nothing to set up). `--mount` brings the
 * lab's /proc, so `ss -p` names the lab's processes by the pids they have inside it.
 */
export function enterLab(lab: LabHandle, argv: readonly string[]): string[] {
  if (!Number.isInteger(lab.pid) || lab.pid < 1) throw new LabError('the lab has no namespace pid', { field: 'pid', value: lab.pid });
  return [
    'nsenter', '--target', String(lab.pid),
    ...(lab.mode === 'rootless' ? ['--user', '--preserve-credentials'] : []),
    '--net', '--pid', '--mount',
    '--', ...argv,
  ];
}
