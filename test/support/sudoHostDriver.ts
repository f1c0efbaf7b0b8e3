/**
 * Stands in for the editor's host mode in test/sudoHost.test.ts, run as the unprivileged user:
 * the first line on stdin is the password, then one JSON command per line. It computes the
 * editor's protected endpoints as hostMode.ts does (its own environment, with `env` laid over
 * it, and its ancestors' sockets) and sends them with each rule.
 *
 *   {"apply": RULE, "backend": "iptables", "env"?: {...}, "protect"?: "editor" | "none"}
 *   {"list": true} | {"remove": ID} | {"removeAll": true} | {"sweep": true}
 *   {"hold": PORT}  keeps a connection to 127.0.0.1:PORT open (one the helper must not cut)
 *   {"quit": true}
 *
 * Usage: node sudo-host-driver.js HELPER_JS
 */
import { createConnection, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { LabError } from '../../src/lab/errors';
import { ownerText } from '../../src/lab/hostRulesBackend';
import { Logger, MemorySink } from '../../src/lab/log';
import { PrivilegedLab } from '../../src/lab/privileged';
import type { Backend, FaultRule } from '../../src/lab/rules';
import { editorEndpoints, guardRefusal, helperClient } from '../../src/vscode/hostModeModel';

interface Command {
  apply?: FaultRule;
  backend?: Backend;
  env?: Record<string, string>;
  protect?: 'editor' | 'none';
  list?: boolean;
  remove?: string;
  removeAll?: boolean;
  sweep?: boolean;
  hold?: number;
  quit?: boolean;
}

const say = (m: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(m)}\n`);
const body = (e: unknown) => (e instanceof LabError ? { message: e.message, field: e.field, described: e.describe() } : { message: String(e) });

async function main(): Promise<void> {
  const log = new Logger(new MemorySink(), 'debug');
  const input = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  const first = await input.next();
  if (first.done) throw new Error('no password on stdin');
  let lab: PrivilegedLab;
  try {
    lab = await PrivilegedLab.start({ password: first.value, helper: process.argv[2]!, log });
  } catch (e) {
    say({ type: 'error', ...body(e) });
    process.exitCode = 1;
    return;
  }
  say({ type: 'started', helperPid: lab.pid, uid: lab.uid, owner: lab.owner ? ownerText(lab.owner) : null });
  void lab.startSweep.then((swept) => say({ type: 'startSweep', swept: swept ?? null }));
  const client = helperClient(lab);
  const held: Socket[] = [];
  for (let next = await input.next(); !next.done; next = await input.next()) {
    const c = JSON.parse(next.value) as Command;
    if (c.quit) break;
    try {
      if (c.apply) {
        const endpoints = c.protect === 'none' ? [] : editorEndpoints({ ...process.env, ...c.env });
        // What the editor would refuse before asking for a password; sent anyway, to test the helper.
        const local = guardRefusal(c.apply, endpoints);
        const t0 = performance.now();
        const rules = await client.apply(c.apply, c.backend ?? 'iptables', endpoints).catch((e: unknown) => {
          say({ type: 'refused', ...body(e), local: local ?? null });
        });
        if (rules) say({ type: 'applied', rules, local: local ?? null, ms: performance.now() - t0 });
      } else if (c.list) {
        const t0 = performance.now();
        say({ type: 'rules', rules: await client.list(), ms: performance.now() - t0 });
      } else if (c.remove) {
        say({ type: 'rules', rules: await client.remove(c.remove) });
      } else if (c.removeAll) {
        const r = await client.removeAll();
        say({ type: 'rules', rules: r.rules, errors: r.errors.map(body) });
      } else if (c.sweep) {
        say({ type: 'swept', swept: await lab.hostSweep() });
      } else if (c.hold) {
        const s = createConnection({ host: '127.0.0.1', port: c.hold });
        await new Promise<void>((resolve, reject) => s.once('connect', resolve).once('error', reject));
        held.push(s);
        say({ type: 'held', localPort: s.localPort });
      }
    } catch (e) {
      say({ type: 'refused', ...body(e) });
    }
  }
  for (const s of held) s.destroy();
  await lab.dispose();
  say({ type: 'closed' });
}

main().catch((e) => {
  say({ type: 'error', ...body(e) });
  process.exitCode = 1;
}).finally(() => process.exit());
