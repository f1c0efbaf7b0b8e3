/**
 * The socket monitor's cost on a real socket table: a namespace holding 1,000 and then 10,000
 * TCP sockets (established pairs with their -i details, and TIME-WAIT), and for each size:
 *   - a bare `ss -tanoie` run from Node (spawn, nsenter, ss),
 *   - one monitor poll (the same command, then parse, diff and events): target at most 1.3x,
 *   - `netstat -tanoe` against `ss -tanoie` on the same sockets, run and parsed.
 * Medians of several runs. Prints figures; asserts nothing.
 *
 *   node --import tsx bench/monitor.ts
 */
import { spawn } from 'node:child_process';
import { monotonic, sleep } from '../src/lab/clock';
import { labEnv } from '../src/lab/exec';
import { silentLogger } from '../src/lab/log';
import { diffSnapshots, EMPTY_TABLE, SocketMonitor } from '../src/lab/monitor';
import { parseNetstat } from '../src/lab/netstat';
import { missingTools } from '../src/lab/preflight';
import { Sandbox } from '../src/lab/sandbox';
import { parseSs } from '../src/lab/ss';

const RUNS = 9;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function timed(fn: () => Promise<unknown> | unknown): Promise<number> {
  const times: number[] = [];
  await fn(); // warm-up
  for (let i = 0; i < RUNS; i++) {
    const t = monotonic();
    await fn();
    times.push((monotonic() - t) * 1000);
  }
  return median(times);
}

/**
 * Fills the namespace: `pairs` established connections (two sockets each, with rto, cwnd,
 * bytes...) held open, and `timeWait` connections closed by the client (one TIME-WAIT each).
 * Prints `ready` and holds until stdin closes.
 */
const FILL = `
import resource, socket, sys
pairs, tw = int(sys.argv[1]), int(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 2 * pairs + 100), hard))
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); l.bind(("127.0.0.1", 7000)); l.listen(4096)
keep = []
for i in range(pairs):
    c = socket.create_connection(("127.0.0.1", 7000)); a, _ = l.accept(); c.send(b"x"); keep += [c, a]
for i in range(tw):
    c = socket.create_connection(("127.0.0.1", 7000)); a, _ = l.accept(); c.close(); a.close()
print("ready", flush=True)
sys.stdin.read()
`;

async function withSockets(sandbox: Sandbox, pairs: number, timeWait: number): Promise<() => void> {
  const argv = sandbox.enter(['python3', '-c', FILL, String(pairs), String(timeWait)]);
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'inherit'], env: labEnv() });
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => { if (d.toString().includes('ready')) resolve(); });
    child.on('exit', (code) => reject(new Error(`the socket filler exited (${code})`)));
  });
  return () => child.stdin.end();
}

export async function benchMonitor(): Promise<void> {
  const sandbox = await Sandbox.create({ log: silentLogger, label: 'bench-monitor' });
  const haveNetstat = missingTools(['netstat'], labEnv().PATH ?? '').length === 0;
  try {
    for (const [pairs, timeWait] of [[300, 400], [3000, 4000]] as const) {
      const release = await withSockets(sandbox, pairs, timeWait);
      const ssOut = (await sandbox.exec(['ss', '-tanoie'])).stdout;
      const count = parseSs(ssOut).sockets.length;
      const bare = await timed(() => sandbox.exec(['ss', '-tanoie']));
      const monitor = new SocketMonitor({ exec: sandbox.exec, log: silentLogger, onEvent: () => {} });
      const poll = await timed(() => monitor.poll());
      const parse = await timed(() => parseSs(ssOut));
      const sockets = parseSs(ssOut).sockets;
      const before = diffSnapshots(EMPTY_TABLE, sockets, 0, 0).now;
      // A steady table (the common poll) and one where every socket changed (a storm's worst).
      const diff = await timed(() => diffSnapshots(before, sockets, 1, 0));
      const diffAll = await timed(() => diffSnapshots(EMPTY_TABLE, sockets, 1, 0));
      console.log(`monitor, ${count} sockets (${pairs} established pairs, ${timeWait} TIME-WAIT, ${(ssOut.length / 1e6).toFixed(2)} MB of ss output):`);
      console.log(`  bare ss -tanoie from Node  ${bare.toFixed(1)} ms`);
      console.log(`  one monitor poll           ${poll.toFixed(1)} ms (ss, parse ${parse.toFixed(1)} ms, diff ${diff.toFixed(1)} ms; ${diffAll.toFixed(1)} ms when every socket is new): ${(poll / bare).toFixed(2)}x bare ss (target 1.3x)`);
      // The runner's way: one shell in the namespace runs ss in a loop, Node parses what it prints.
      const shell = new SocketMonitor({ exec: sandbox.exec, enter: (argv) => sandbox.enter(argv), log: silentLogger, onEvent: () => {} }).start();
      await sleep(3000);
      await shell.stop();
      console.log(`  polling shell, 3 s            ${shell.stats.polls} snapshots (${(shell.stats.polls / 3).toFixed(1)} a second at a 100 ms interval), parse and diff at most ${shell.stats.maxMs.toFixed(1)} ms, widest gap ${shell.stats.maxGapMs.toFixed(0)} ms`);
      if (haveNetstat) {
        const nsOut = (await sandbox.exec(['netstat', '-tanoe'])).stdout;
        const nsRun = await timed(() => sandbox.exec(['netstat', '-tanoe']));
        const nsParse = await timed(() => parseNetstat(nsOut));
        console.log(`  netstat -tanoe             ${nsRun.toFixed(1)} ms run + ${nsParse.toFixed(1)} ms parse, ${parseNetstat(nsOut).sockets.length} sockets: ${((nsRun + nsParse) / (bare + parse)).toFixed(2)}x ss (run + parse)`);
      } else console.log('  netstat: not installed (apt-get install net-tools), not compared');
      release();
      await sleep(200);
    }
  } finally {
    await sandbox.dispose();
  }
}

if (require.main === module) void benchMonitor();
