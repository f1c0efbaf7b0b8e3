/**
 * npm run bench: wall time of the catalog serial (--jobs 1) and in parallel (the default
 * jobs), measured in one run on this machine, and their ratio. Prints figures; asserts nothing.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { cpus } from 'node:os';
import { join, resolve } from 'node:path';

const root = resolve(__dirname, '..');
const cli = join(root, 'dist', 'cli.js');
const sections = 'connect,established,detection';

function run(jobs: string[]): { wall: number; passed: number; failed: number } {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(process.execPath, [cli, 'run', '--section', sections, '--json', ...jobs], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const results = JSON.parse(r.stdout) as { verdict: string }[];
  const passed = results.filter((x) => x.verdict === 'pass').length;
  return { wall, passed, failed: results.length - passed };
}

const kernel = execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim();
console.log(`catalog sections ${sections} on ${cpus().length} cores, kernel ${kernel}, uid ${process.getuid?.()}`);
const serial = run(['--jobs', '1']);
console.log(`serial    (--jobs 1): ${serial.wall.toFixed(1)} s wall, ${serial.passed} passed, ${serial.failed} failed`);
const parallel = run([]);
console.log(`parallel (default):   ${parallel.wall.toFixed(1)} s wall, ${parallel.passed} passed, ${parallel.failed} failed`);
console.log(`ratio serial/parallel: ${(serial.wall / parallel.wall).toFixed(2)}`);
