// The conntrack watch on a table file the test writes: what it reports and when, measured with
// the lab's own clock while the lab's event loop is kept busy, as on a loaded runner.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monotonic, sleep } from './clock';
import { ConntrackWatch, parseConntrack } from './conntrack';
import { Logger } from './log';
import type { TimelineEvent } from './timeline';

const line = (timeout: number) =>
  `ipv4     2 tcp      6 ${timeout} ESTABLISHED src=198.18.0.2 dst=198.18.0.10 sport=43256 dport=80 src=198.18.1.2 dst=198.18.0.2 sport=7000 dport=43256 [ASSURED] mark=0 zone=0 use=2\n`;

function table(t: { after(fn: () => void): void }) {
  const dir = mkdtempSync(join(tmpdir(), 'tcplab-conntrack-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'nf_conntrack');
  // Written whole, by rename: the poller never reads half a table.
  const write = (text: string) => {
    writeFileSync(`${file}.new`, text);
    renameSync(`${file}.new`, file);
  };
  return { file, write };
}

function watch(file: string, warnings: string[] = []) {
  const events: TimelineEvent[] = [];
  const log = new Logger({ write: (level, m) => { if (level === 'warn') warnings.push(m); } }, 'warn');
  const w = new ConntrackWatch({ host: 'lb', pid: 0, file, interval: 100, log, onEvent: (e) => events.push(e) }).start();
  return { w, events };
}

/** Keeps this process's event loop busy, as four labs' captures and monitors can. */
function busy(ms: number): void {
  const end = monotonic() + ms / 1000;
  while (monotonic() < end) { /* spin */ }
}

test('parse: the flow as the client names it, where it really goes, its state and seconds left', () => {
  assert.deepEqual(parseConntrack(`${line(299)}ipv4     2 udp      17 29 src=1.1.1.1 dst=2.2.2.2 sport=1 dport=2 src=2.2.2.2 dst=1.1.1.1 sport=2 dport=1 mark=0 use=1\n`), [
    { key: '198.18.0.2:43256>198.18.0.10:80', state: 'ESTABLISHED', timeout: 299, to: '198.18.1.2:7000', assured: true },
  ]);
});

test('a flow forgotten while the lab is busy is dated when the table lost it, not when the lab got to it', async (t) => {
  const { file, write } = table(t);
  write(line(1));
  const { w, events } = watch(file);
  t.after(() => w.stop());
  await sleep(500);
  assert.equal(events.filter((e) => e.type === 'flow-new').length, 1, 'the flow appears');
  write('');
  const gone = monotonic();
  busy(800);
  await sleep(300);
  await w.stop();
  const e = events.find((x) => x.type === 'flow-gone');
  assert.ok(e, 'the flow is reported gone');
  const late = e.t - gone;
  assert.ok(late >= 0 && late < 0.25, `reported ${late.toFixed(3)} s after it left the table (polled every 0.1 s, the lab busy for 0.8 s)`);
  assert.equal(e.why, 'timed out in ESTABLISHED', 'its last seen timeout was about to run out');
});

test('a packet of the flow is a refresh: its timeout jumps back up', async (t) => {
  const { file, write } = table(t);
  write(line(3));
  const { w, events } = watch(file);
  t.after(() => w.stop());
  await sleep(350);
  write(line(300));
  await sleep(350);
  await w.stop();
  assert.deepEqual(events.map((e) => e.type), ['flow-new', 'flow-refresh']);
});

test('stop ends the poller and reads once more when asked; an unreadable table is said once', async (t) => {
  const { file, write } = table(t);
  write('');
  const { w, events } = watch(file);
  await sleep(300);
  write(line(100));
  await w.stop(true);
  assert.deepEqual(events.map((e) => e.type), ['flow-new'], 'the final read sees the flow written just before');
  const n = events.length;
  write('');
  await sleep(300);
  assert.equal(events.length, n, 'nothing is read after stop');

  const warnings: string[] = [];
  const missing = watch(join(file, 'none'), warnings);
  await sleep(400);
  await missing.w.stop();
  assert.equal(warnings.length, 1, warnings.join('\n'));
  assert.match(warnings[0]!, /\[conntrack lb\] cannot read the table: .*(No such file|Not a directory)/);
});
