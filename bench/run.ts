/**
 * npm run bench: wall time of the single-host catalog (sections A, B, E and F) serial
 * (--jobs 1) and in parallel (the default jobs), measured in one run on this machine, and their
 * ratio. Prints figures; asserts nothing.
 *
 *   npm run bench                          one serial and one parallel run
 *   npm run bench -- --runs 5              five of each: the stability figure (failed verdicts)
 *   npm run bench -- --runs 5 --unprivileged
 *                                          the same as the test user, in rootless namespaces
 *                                          (run as root: it creates the user)
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { cpus } from 'node:os';
import { cliArgv, ensureTestUser, isRoot, TEST_USER } from '../test/support/lab';
import { benchMonitor } from './monitor';
import { benchSsParse } from './ss';
import { benchTopology } from './topology';

const sections = 'connect,established,pitfalls,detection';

function option(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i < 0 ? undefined : process.argv[i + 1];
}
const runs = Number(option('--runs') ?? 1);
const unprivileged = process.argv.includes('--unprivileged');
if (!Number.isInteger(runs) || runs < 1 || runs > 100) {
  console.error('bench: --runs takes a whole number from 1 to 100');
  process.exit(2);
}
if (unprivileged && !isRoot) {
  console.error(`bench: --unprivileged runs the lab as ${TEST_USER}, which needs root to set up; you are not root, so run without it (you are unprivileged already)`);
  process.exit(2);
}
if (unprivileged) ensureTestUser();

interface Run {
  wall: number;
  passed: number;
  failed: string[];
}

function run(jobs: string[]): Run {
  const argv = cliArgv(['run', '--section', sections, '--json', ...jobs], unprivileged ? 'user' : 'self');
  const t0 = process.hrtime.bigint();
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  let results: { id: string; verdict: string }[];
  try {
    results = JSON.parse(r.stdout) as { id: string; verdict: string }[];
  } catch {
    console.error(`bench: tcp-lab printed no JSON (exit ${r.status}):\n${r.stderr.slice(-2000)}`);
    process.exit(1);
  }
  return { wall, passed: results.filter((x) => x.verdict === 'pass').length, failed: results.filter((x) => x.verdict !== 'pass').map((x) => x.id) };
}

async function main(): Promise<void> {
  benchSsParse();
  await benchMonitor();
  await benchTopology();
  const kernel = execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim();
  const who = unprivileged ? `${TEST_USER} (rootless)` : `uid ${process.getuid?.()}`;
  console.log(`catalog sections ${sections} on ${cpus().length} cores, kernel ${kernel}, as ${who}, ${runs} run(s) of each`);

  const line = (label: string, r: Run) =>
    console.log(`${label} ${r.wall.toFixed(1).padStart(6)} s wall, ${r.passed} passed, ${r.failed.length} failed${r.failed.length ? `: ${r.failed.join(' ')}` : ''}`);
  const serial: Run[] = [];
  const parallel: Run[] = [];
  for (let i = 1; i <= runs; i++) {
    serial.push(run(['--jobs', '1']));
    line(`serial   (--jobs 1) #${i}:`, serial.at(-1)!);
    parallel.push(run([]));
    line(`parallel (default)  #${i}:`, parallel.at(-1)!);
  }
  const mean = (rs: Run[]) => rs.reduce((s, r) => s + r.wall, 0) / rs.length;
  const failures = [...serial, ...parallel].flatMap((r) => r.failed);
  const verdicts = [...serial, ...parallel].reduce((s, r) => s + r.passed + r.failed.length, 0);
  console.log(`serial mean ${mean(serial).toFixed(1)} s, parallel mean ${mean(parallel).toFixed(1)} s, ratio serial/parallel: ${(mean(serial) / mean(parallel)).toFixed(2)}`);
  console.log(`failed verdicts: ${failures.length} of ${verdicts}${failures.length ? ` (${[...new Set(failures)].map((id) => `${id} x${failures.filter((f) => f === id).length}`).join(', ')})` : ''}`);
}

void main();
