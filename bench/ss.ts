/**
 * Parse time of `ss -tanoie` output for 1,000 and 10,000 sockets (issue 3's target: 10,000 in
 * under 20 ms), and of `netstat -tanoe` output for 10,000.
 *
 * The input is made of the real records in src/lab/fixtures (ss-tanoie.txt, ss-tanoie-sockets.txt,
 * netstat-tanoe.txt), with other client ports, inodes and cookies, in the mix of a busy host: per
 * 20 sockets, 14 ESTAB, 3 TIME-WAIT, one SYN-SENT, one half-closed and one LISTEN. It is laid out
 * as ss lays it out into a pipe: every record (a socket's line and its -i line) padded with
 * spaces to the width of the widest record, the header too. A real capture of 9,743 sockets was
 * 5.95 MB, 611 bytes a socket; this makes about as much.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { diffSnapshots, EMPTY_TABLE } from '../src/lab/monitor';
import { parseNetstat } from '../src/lab/netstat';
import { parseSs, type SsParse } from '../src/lab/ss';

const fixture = (name: string) => readFileSync(join(__dirname, '..', 'src', 'lab', 'fixtures', name), 'utf8');

/** Per 20 sockets. */
const MIX: [string[], number][] = [
  [['ESTAB', 'ESTABLISHED'], 14],
  [['TIME-WAIT', 'TIME_WAIT'], 3],
  [['SYN-SENT', 'SYN_SENT'], 1],
  [['CLOSE-WAIT', 'FIN-WAIT-2', 'CLOSE_WAIT', 'FIN_WAIT2'], 1],
  [['LISTEN'], 1],
];

/** The records of the captures by state, and the pick of the i-th socket of the mix. */
function picker<R>(records: R[], stateOf: (r: R) => string): (i: number) => R {
  const slots: R[][] = [];
  for (const [states, count] of MIX) {
    const pool = records.filter((r) => states.includes(stateOf(r)));
    if (pool.length === 0) throw new Error(`bench: no ${states[0]} record in the fixtures`);
    for (let k = 0; k < count; k++) slots.push(pool);
  }
  return (i) => {
    const pool = slots[i % slots.length]!;
    return pool[Math.floor(i / slots.length) % pool.length]!;
  };
}

/** Another socket like this one: a client port of the same width, its own inode and cookie. */
function vary(text: string, i: number): string {
  return text
    .replace(/([\d\]]):\d{5}\b/g, (_, c: string) => `${c}:${20000 + (i % 40000)}`)
    .replace(/ino:\d+/, `ino:${1_000_000 + i}`)
    .replace(/sk:[0-9a-f]+/, `sk:${(0x10000 + i).toString(16)}`);
}

interface SsRecord {
  state: string;
  main: string;
  details: string;
}

function ssRecords(): SsRecord[] {
  const out: SsRecord[] = [];
  for (const name of ['ss-tanoie.txt', 'ss-tanoie-sockets.txt']) {
    const lines = fixture(name).split('\n');
    for (let i = 1; i < lines.length; i++) {
      const main = lines[i]!.trimEnd();
      if (!main || main.startsWith('\t')) continue;
      // A TIME-WAIT socket's -i line is a tab and padding.
      const next = lines[i + 1] ?? '';
      const details = next.startsWith('\t') ? next.trimEnd() || '\t' : '';
      out.push({ state: main.split(' ')[0]!, main, details });
    }
  }
  return out;
}

export function ssOutput(n: number): string {
  const pick = picker(ssRecords(), (r) => r.state);
  const records = Array.from({ length: n }, (_, i) => {
    const r = pick(i);
    return { main: vary(r.main, i), details: r.details };
  });
  // ss's last column holds the extra fields, a newline and the -i details: it is padded to the
  // widest, which puts the padding at the end of the -i line.
  const width = Math.max(...records.map((r) => r.main.length + 1 + r.details.length));
  const header = 'State      Recv-Q Send-Q      Local Address:Port        Peer Address:Port Process';
  const out = [header.padEnd(width)];
  for (const r of records) out.push(r.main, r.details.padEnd(width - r.main.length - 1));
  // Joined in one go: a flat string, as execFile hands it over (a string built by += would be
  // a tree of pieces, ~20% slower to read by index).
  out.push('');
  return out.join('\n');
}

export function netstatOutput(n: number): string {
  const lines = fixture('netstat-tanoe.txt').split('\n');
  const records = lines.slice(2).filter((l) => l.startsWith('tcp'));
  const pick = picker(records, (l) => l.split(/ +/)[5]!);
  const out = lines.slice(0, 2);
  for (let i = 0; i < n; i++) {
    out.push(pick(i).replace(/(\d):\d{5}\b/g, (_, c: string) => `${c}:${20000 + (i % 40000)}`).replace(/ (\d{7}) /, ` ${1_000_000 + i} `));
  }
  out.push('');
  return out.join('\n');
}

function measure(label: string, text: string, n: number, parse: (t: string) => { sockets: unknown[]; rejected: unknown[] }): void {
  for (let w = 0; w < 5; w++) parse(text); // warm up the JIT
  const times: number[] = [];
  let parsed = 0;
  let rejected = 0;
  for (let r = 0; r < 20; r++) {
    const t0 = process.hrtime.bigint();
    const result = parse(text);
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    parsed = result.sockets.length;
    rejected = result.rejected.length;
  }
  times.sort((a, b) => a - b);
  console.log(`${label} ${String(n).padStart(6)} sockets (${(text.length / 1024).toFixed(0)} KiB): median ${times[10]!.toFixed(2)} ms, max ${times.at(-1)!.toFixed(2)} ms, ${parsed} parsed${rejected ? `, ${rejected} REJECTED` : ''}`);
}

/** The parse, then every socket's -i details read (they are read lazily: this is the full cost). */
function parseAndReadDetails(text: string): SsParse {
  const parsed = parseSs(text);
  for (const s of parsed.sockets) void s.details?.rto;
  return parsed;
}

export function benchSsParse(): void {
  for (const n of [1000, 10_000]) measure('ss parse     ', ssOutput(n), n, parseSs);
  const text = ssOutput(10_000);
  measure('ss + details ', text, 10_000, parseAndReadDetails);
  // The monitor's steady poll: a fresh parse diffed against the last one, nothing changed.
  let last = diffSnapshots(EMPTY_TABLE, parseSs(text).sockets, 0, 0).now;
  measure('ss + diff    ', text, 10_000, (t) => {
    const parsed = parseSs(t);
    last = diffSnapshots(last, parsed.sockets, 1, 0).now;
    return parsed;
  });
  measure('netstat parse', netstatOutput(10_000), 10_000, parseNetstat);
}

if (require.main === module) benchSsParse();
