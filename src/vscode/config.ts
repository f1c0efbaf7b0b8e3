import * as vscode from 'vscode';
import type { CaptureMethod } from '../lab/packets';
import type { Backend } from '../lab/rules';
import type { SandboxMode } from '../lab/sandbox';
import { checkSysctl, type SysctlValue } from '../lab/sysctl';

/** The extension's settings, typed, read fresh for each run (a change applies to the next run). */
export interface LabConfig {
  /** `sudo`: always through the root helper (asks for the password once per window). */
  mode: 'auto' | SandboxMode | 'sudo';
  firewall: Backend;
  capture: 'auto' | CaptureMethod | 'off';
  pythonPath: string;
  sampleLanguage: 'python';
  pollInterval: number;
  timers: Record<string, SysctlValue>;
}

const oneOf = <T extends string>(value: unknown, allowed: readonly T[], fallback: T): T =>
  allowed.includes(value as T) ? (value as T) : fallback;

/**
 * Reads `tcpLab.*`. An unknown enum value falls back to the default (the settings editor already
 * refuses it); a timer the lab cannot set throws a LabError naming it, shown before any run.
 */
export function readConfig(): LabConfig {
  const c = vscode.workspace.getConfiguration('tcpLab');
  const poll = Number(c.get('pollInterval', 100));
  const timers: Record<string, SysctlValue> = {};
  for (const [name, value] of Object.entries(c.get<Record<string, unknown>>('timers', {}) ?? {})) {
    checkSysctl(name, value);
    timers[name] = value as SysctlValue;
  }
  return {
    mode: oneOf(c.get('mode'), ['auto', 'rootless', 'root', 'sudo'], 'auto'),
    firewall: oneOf(c.get('firewall'), ['iptables', 'nft'], 'iptables'),
    capture: oneOf(c.get('capture'), ['auto', 'tcpdump', 'af_packet', 'off'], 'auto'),
    pythonPath: (c.get<string>('pythonPath') ?? '').trim() || 'python3',
    sampleLanguage: 'python',
    pollInterval: Number.isFinite(poll) ? Math.min(2000, Math.max(20, Math.round(poll))) : 100,
    timers,
  };
}
