/**
 * What several hosts cost: building the load-balancer topology of section C (a client, a
 * balancer with its VIP, DNAT and conntrack settings, two servers: four namespaces, two
 * bridges, five veth pairs) inside a fresh sandbox, and tearing it down with the sandbox,
 * against a sandbox alone. Medians of several runs. Prints figures; asserts nothing.
 *
 *   node --import tsx bench/topology.ts
 */
import { monotonic } from '../src/lab/clock';
import { silentLogger } from '../src/lab/log';
import { Sandbox } from '../src/lab/sandbox';
import { findScenario } from '../src/lab/scenarios';
import { buildTopology } from '../src/lab/topology';

const RUNS = 7;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

export async function benchTopology(): Promise<void> {
  const topology = findScenario('l4-idle-reset').topology!;
  const alone: number[] = [];
  const build: number[] = [];
  const down: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    let t = monotonic();
    const bare = await Sandbox.create({ log: silentLogger, label: 'bench' });
    alone.push((monotonic() - t) * 1000);
    await bare.dispose();
    const sandbox = await Sandbox.create({ log: silentLogger, label: 'bench' });
    t = monotonic();
    const hosts = await buildTopology(sandbox, topology, silentLogger);
    build.push((monotonic() - t) * 1000);
    t = monotonic();
    for (const h of hosts.values()) h.dispose();
    await sandbox.dispose();
    down.push((monotonic() - t) * 1000);
  }
  const mode = (await Sandbox.create({ log: silentLogger, label: 'bench' }).then(async (s) => { await s.dispose(); return s.mode; }));
  console.log(`topology (${topology.hosts.length} hosts, ${topology.nets.length} bridges, ${mode}): sandbox alone ${median(alone).toFixed(0)} ms, ` +
    `hosts, veths, routes and the balancer built in ${median(build).toFixed(0)} ms more, torn down with the sandbox in ${median(down).toFixed(0)} ms ` +
    `(medians of ${RUNS}); build / sandbox alone: ${(median(build) / median(alone)).toFixed(1)}x`);
}

if (require.main === module) void benchTopology();
