// Manual mode: a lab with no script, faults applied and lifted by hand through LiveLab.perform,
// as the editor's Lab Session view does. Real namespace, real iptables, real programs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runScenario, type LiveLab } from '../src/lab/runner';
import { silentLogger } from '../src/lab/log';
import { manualScenario } from '../src/lab/scenarios/manual';
import type { TimelineEvent } from '../src/lab/timeline';
import { settledLeftovers } from './support/lab';

async function until(what: string, ok: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('manual lab: a dropped path stalls the requests, lifting the rule lets the retransmission through', { timeout: 60_000 }, async () => {
  const events: TimelineEvent[] = [];
  let live: LiveLab | undefined;
  const controller = new AbortController();
  const done = runScenario(manualScenario('requests'), {
    log: silentLogger, signal: controller.signal, capture: 'off',
    onLive: (l) => { live = l; },
    onEvent: (e) => events.push(e),
  });
  try {
    const responses = () => events.filter((e) => e.proc === 'client' && e.type === 'response').length;
    await until('two answered requests', () => responses() >= 2, 15_000);

    // The server's replies dropped: the client's next request goes unanswered, its kernel
    // retransmits (RTO 200 ms doubling on loopback) while the rule holds.
    await live!.perform([{ apply: { id: 'manual-1', action: 'drop', direction: 'from-port', port: 7000, chain: 'INPUT' } }]);
    const atFault = responses();
    await new Promise((r) => setTimeout(r, 2500));
    // At most the one reply that was already on its way when the rule went in.
    assert.ok(responses() <= atFault + 1, `requests kept being answered through a DROP: ${atFault} -> ${responses()}`);
    const counters = await live!.counters();
    assert.ok((counters.get('manual-1')?.packets ?? 0) > 0, 'the rule counted the dropped replies');
    const stalled = responses();

    await live!.perform([{ remove: 'manual-1' }]);
    await until('the stalled request answered once the rule is lifted', () => responses() > stalled, 10_000);
    const lab = events.filter((e) => e.source === 'lab').map((e) => e.type);
    assert.ok(lab.includes('fault') && lab.includes('removed'), `the timeline marks the fault and its removal: ${lab.join(', ')}`);

    // Kill the server by hand: the client's connection ends (EOF or RST), on the timeline.
    await live!.perform([{ kill: 'server' }]);
    await until('the client noticing the killed server', () => events.some((e) => e.proc === 'client' && (e.type === 'eof' || e.type === 'error')), 10_000);
  } finally {
    controller.abort();
  }
  const result = await done;
  // Nothing judged: the run ends when stopped, and says so.
  assert.equal(result.error, 'cancelled');
  assert.deepEqual(result.applied.map((a) => a.id), ['manual-1']);
  assert.deepEqual(await settledLeftovers(), []);
});
