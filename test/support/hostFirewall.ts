// What the host-mode tests share: a bounded connect probe, the host's rules carrying a test's
// ids (read with the firewall tools themselves, not the code under test), and their removal.
import { execFileSync } from 'node:child_process';
import { createConnection } from 'node:net';
import { ownerStatus, ownerText, parseHostIptables, parseHostNft, type HostRuleEntry } from '../../src/lab/hostRules';

export type Outcome = 'connected' | 'timeout' | string;

/** One connect to 127.0.0.1:port, bounded: `connected`, an errno name, or `timeout`. */
export function connectOutcome(port: number, timeoutMs: number): Promise<Outcome> {
  return new Promise((resolve) => {
    const s = createConnection({ port, host: '127.0.0.1' });
    const done = (o: Outcome) => {
      clearTimeout(timer);
      s.destroy();
      resolve(o);
    };
    const timer = setTimeout(() => done('timeout'), timeoutMs);
    s.once('connect', () => done('connected'));
    s.once('error', (e: NodeJS.ErrnoException) => done(e.code ?? e.message));
  });
}

/** The host's rules whose id starts with `prefix`. */
export function rulesWithPrefix(prefix: string): HostRuleEntry[] {
  const ipt = parseHostIptables(execFileSync('iptables', ['-w', '5', '-v', '-S'], { encoding: 'utf8' }));
  const nft = parseHostNft(execFileSync('nft', ['-j', 'list', 'ruleset'], { encoding: 'utf8' })).rules;
  return [...ipt, ...nft].filter((e) => e.id.startsWith(prefix));
}

/** Removes those rules, then the empty nft tables of `owners` and of dead owners. */
export function removeTestRules(prefix: string, owners: ReadonlySet<string>): void {
  for (const e of rulesWithPrefix(prefix)) {
    const argv = e.backend === 'iptables'
      ? ['iptables', '-w', '5', '-D', e.chain, ...e.spec!]
      : ['nft', 'delete', 'rule', 'inet', e.table!, e.chain, 'handle', String(e.handle)];
    execFileSync(argv[0]!, argv.slice(1), { stdio: 'ignore' });
  }
  const { tables, rules } = parseHostNft(execFileSync('nft', ['-j', 'list', 'ruleset'], { encoding: 'utf8' }));
  for (const { table, owner } of tables) {
    const ours = owners.has(ownerText(owner)) || ownerStatus(owner) === 'dead';
    if (ours && !rules.some((r) => r.table === table)) execFileSync('nft', ['delete', 'table', 'inet', table], { stdio: 'ignore' });
  }
}
