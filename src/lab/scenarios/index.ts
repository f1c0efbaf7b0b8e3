import { LabError } from '../errors';
import { connectScenarios } from './connect';
import { detectionScenarios } from './detection';
import { establishedScenarios } from './established';
import { pitfallsScenarios } from './pitfalls';
import type { Scenario } from './types';

export * from './types';

/** The catalog, in the order of SCENARIOS.md. */
export const CATALOG: readonly Scenario[] = [...connectScenarios, ...establishedScenarios, ...pitfallsScenarios, ...detectionScenarios];

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

