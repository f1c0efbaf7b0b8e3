/**
 * Parse time of `ss -tanoie` output for 1,000 and 10,000 sockets (issue 3's target: 10,000 in
 * under 20 ms). The input is the real capture in src/lab/fixtures, repeated with other ports.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseSs } from '../src/lab/ss';

const lines = readFileSync(join(__dirname, '..', 'src', 'lab', 'fixtures', 'ss-tanoie.txt'), 'utf8').split('\n');
const header = lines[0]!;
// Socket records: a main line and its tab-indented details line.
const records: string[] = [];
for (let i = 1; i < lines.length; i++) if (lines[i] && !lines[i]!.startsWith('\t')) records.push(`${lines[i]}\n${lines[i + 1] ?? ''}`);

function output(n: number): string {
  const out = [header];
  for (let i = 0; i < n; i++) out.push(records[i % records.length]!.replace(/:(4\d{4}|5\d{4})\b/g, `:${20000 + (i % 40000)}`));
  return out.join('\n');
}

export function benchSsParse(): void {
  for (const n of [1000, 10_000]) {
    const text = output(n);
    for (let w = 0; w < 5; w++) parseSs(text); // warm up the JIT
    const times: number[] = [];
    let parsed = 0;
    for (let r = 0; r < 20; r++) {
      const t0 = process.hrtime.bigint();
      parsed = parseSs(text).sockets.length;
      times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    times.sort((a, b) => a - b);
    console.log(`ss parse ${String(n).padStart(6)} sockets (${(text.length / 1024).toFixed(0)} KiB): median ${times[10]!.toFixed(2)} ms, max ${times.at(-1)!.toFixed(2)} ms, ${parsed} parsed`);
  }
}

if (require.main === module) benchSsParse();
