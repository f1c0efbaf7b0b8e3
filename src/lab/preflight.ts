import { accessSync, constants } from 'node:fs';
import { join } from 'node:path';
import { LabError } from './errors';
import { installHint, labEnv } from './exec';

/**
 * The programs a single-host scenario runs, inside or outside the namespace. The socket monitor
 * needs ss or, with less detail, netstat: checked apart (`missingSocketTool`).
 */
export function requiredTools(firewall: 'iptables' | 'nft', python = 'python3'): string[] {
  return ['unshare', 'nsenter', 'ip', 'sysctl', firewall, python];
}

/** `ss` when neither ss nor netstat is on `path` (ss is the one to install), else nothing. */
export function missingSocketTool(path: string): string[] {
  return missingTools(['ss'], path).length && missingTools(['netstat'], path).length ? ['ss'] : [];
}

/** Which of `tools` are not executable anywhere on `path` (absolute names are checked as they are). */
export function missingTools(tools: readonly string[], path: string): string[] {
  const dirs = path.split(':').filter(Boolean);
  const executable = (file: string) => {
    try {
      accessSync(file, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  };
  return tools.filter((t) => (t.includes('/') ? !executable(t) : !dirs.some((d) => executable(join(d, t)))));
}

/** Refuses to start, naming every missing program and the package that brings it. */
export function checkTools(firewall: 'iptables' | 'nft', python?: string): void {
  const path = labEnv().PATH ?? '';
  const missing = [...missingTools(requiredTools(firewall, python), path), ...missingSocketTool(path)];
  if (missing.length === 0) return;
  const hints = [...new Set(missing.map((m) => installHint(m)).filter(Boolean))];
  throw new LabError(`the lab needs ${missing.join(', ')}, not found on this machine`, {
    field: 'tools',
    value: missing,
    hint: hints.length ? hints.join('; ') : 'install them and run again',
  });
}
