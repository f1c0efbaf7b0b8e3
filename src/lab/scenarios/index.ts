import { LabError } from '../errors';
import { connectScenarios } from './connect';
import { detectionScenarios } from './detection';
import { establishedScenarios } from './established';
import { middleboxScenarios } from './middlebox';
import { proxyScenarios } from './proxy';
import { pitfallsScenarios } from './pitfalls';
import { timersWith } from '../sysctl';
import type { Scenario } from './types';

export * from './types';

/** The catalog, in the order of SCENARIOS.md. */
export const CATALOG: readonly Scenario[] = [...connectScenarios, ...establishedScenarios, ...middleboxScenarios, ...proxyScenarios, ...pitfallsScenarios, ...detectionScenarios];

export function findScenario(id: string): Scenario {
  const s = CATALOG.find((x) => x.id === id);
  if (!s) {
    const close = CATALOG.filter((x) => x.id.includes(id) || id.includes(x.id.split('-')[0]!)).map((x) => x.id).slice(0, 5);
    throw new LabError(`no scenario with id ${JSON.stringify(id.slice(0, 64))}`, {
      field: 'scenario',
      value: id,
      hint: close.length ? `did you mean: ${close.join(', ')}? (tcp-lab list shows all)` : 'tcp-lab list shows all',
    });
  }
  return s;
}

/** How long a scenario may run: its deadline, with its own sysctls over the Linux defaults. */
export function deadlineOf(s: Scenario): number {
  return typeof s.deadline === 'function' ? s.deadline(timersWith(s.sysctls)) : s.deadline;
}

/**
 * The order to start scenarios in when several run at once: longest first (by deadline), so a
 * long one does not start last and stretch the run's tail. Returns indices into `scenarios`.
 */
export function startOrder(scenarios: readonly Scenario[]): number[] {
  return scenarios.map((s, i) => [deadlineOf(s), i] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]).map(([, i]) => i);
}
