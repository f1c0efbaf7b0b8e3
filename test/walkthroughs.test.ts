/**
 * The walkthroughs (`contributes.walkthroughs` in package.json, pages in media/walkthroughs/)
 * against the catalog: a run link VS Code cannot parse, or one naming a scenario that does not
 * exist, fails silently in the editor, so it must fail here.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CATALOG, type Scenario } from '../src/lab/scenarios';
import { ERRNO } from '../src/lab/errno';
import { ROOT } from './support/lab';

interface Step {
  id: string;
  title: string;
  description: string;
  media: { markdown?: string };
  completionEvents: string[];
}
interface Walkthrough {
  id: string;
  title: string;
  description: string;
  steps: Step[];
}

const DIR = join(ROOT, 'media', 'walkthroughs');
const WALKTHROUGHS: Walkthrough[] = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).contributes.walkthroughs;
const STEPS = WALKTHROUGHS.flatMap((w) => w.steps.map((s) => ({ w, s })));
const byId = new Map<string, Scenario>(CATALOG.map((s) => [s.id, s]));
const page = (s: Step): string => readFileSync(join(ROOT, s.media.markdown!), 'utf8');

/** The topics the tutorials must cover: walkthrough id, title, scenarios its steps must run. */
const TOPICS: Record<string, { title: string; runs: string[] }> = {
  refusedOrTimedOut: { title: 'Refused or timed out?', runs: ['connect-refused', 'connect-timeout-drop-syn', 'connect-app-timeout'] },
  halfOpenKeepalive: { title: 'Half-open connections and keepalive', runs: ['half-open-idle', 'keepalive-detects', 'heartbeat-detects'] },
  timeWaitPorts: { title: 'TIME-WAIT eats the ports', runs: ['time-wait-exhaustion', 'time-wait-reuse', 'time-wait-pool'] },
  nagleDelayedAck: { title: 'Nagle meets delayed ACK', runs: ['nagle-delayed-ack', 'nagle-nodelay', 'nagle-one-write'] },
  // Section C needs the multi-host lab; keepalive below the idle timeout is the fix it can show now.
  loadBalancerIdle: { title: 'The load balancer that forgets idle flows', runs: ['l4-idle-reset', 'l4-idle-keepalive', 'l4-sleep-matrix'] },
};

/** What every step page explains, in this order. */
const SECTIONS = ['**On the wire.**', '**What `ss` shows.**', '**What the client gets.**', '**Lab vs Linux defaults.**', '**The fix'];

interface CommandLink {
  text: string;
  command: string;
  query: string | undefined;
}

function commandLinks(markdown: string): CommandLink[] {
  return [...markdown.matchAll(/\[([^\]]*)\]\(command:([^)?\s]+)(?:\?([^)\s]*))?\)/g)].map((m) => ({ text: m[0], command: m[2]!, query: m[3] }));
}

/** The scenario a run link starts, or a reason VS Code would not run it as meant. */
function scenarioOf(link: CommandLink): string {
  assert.equal(link.command, 'tcpLab.runScenario', `${link.text}: only tcpLab.runScenario links belong here`);
  assert.ok(link.query, `${link.text}: no argument, so the command would ask for a scenario`);
  // VS Code decodes the query and JSON.parses it; unencoded [ or " breaks the markdown link.
  assert.match(link.query, /^(%[0-9A-F]{2}|[A-Za-z0-9\-_.!~*'()])+$/, `${link.text}: the argument is not URL-encoded`);
  const args: unknown = JSON.parse(decodeURIComponent(link.query));
  assert.ok(Array.isArray(args) && args.length === 1 && typeof args[0] === 'string', `${link.text}: the argument must be a JSON array of one string`);
  const id = args[0] as string;
  assert.equal(link.query, encodeURIComponent(JSON.stringify([id])), `${link.text}: not the canonical encoding of ["${id}"]`);
  assert.ok(byId.has(id), `${link.text}: no scenario "${id}" in the catalog`);
  return id;
}

/** The scenario a step runs (undefined when it only explains); throws on a bad link. */
const runOf = (s: Step): string | undefined => commandLinks(s.description).map(scenarioOf)[0];

test('contributes.walkthroughs has the shape VS Code takes', () => {
  assert.ok(Array.isArray(WALKTHROUGHS) && WALKTHROUGHS.length > 0);
  for (const w of WALKTHROUGHS) {
    assert.match(w.id, /^[a-z][a-zA-Z0-9]*$/, `walkthrough id ${w.id} is not camelCase`);
    assert.ok(w.title && w.description && w.steps.length > 0, `${w.id}: title, description and steps`);
    for (const s of w.steps) {
      assert.ok(s.id && s.title && s.description, `${w.id}/${s.id}: id, title, description`);
      assert.ok(Array.isArray(s.completionEvents) && s.completionEvents.length > 0, `${w.id}/${s.id}: completionEvents`);
    }
  }
});

test('every step has its own markdown page, and every page belongs to a step', () => {
  const ids = STEPS.map(({ s }) => s.id);
  assert.deepEqual(ids.filter((id, i) => ids.indexOf(id) !== i), [], 'step ids name the media files, so they must be unique');
  for (const { w, s } of STEPS) {
    assert.equal(s.media.markdown, `media/walkthroughs/${s.id}.md`, `${w.id}/${s.id}`);
    assert.ok(existsSync(join(ROOT, s.media.markdown!)), `${s.media.markdown} is missing`);
  }
  const pages = readdirSync(DIR).filter((f) => f.endsWith('.md')).map((f) => f.slice(0, -3));
  assert.deepEqual(pages.filter((p) => !ids.includes(p)), [], 'pages no step shows');
});

test('every command link is a run link to a scenario in the catalog', () => {
  const texts = [...STEPS.map(({ s }) => s.description), ...STEPS.map(({ s }) => page(s))];
  for (const text of texts) {
    const links = commandLinks(text);
    // A command: that the link pattern missed is a malformed link the editor shows as text.
    assert.equal(links.length, text.split('command:').length - 1, `a malformed command link in: ${text.slice(0, 80)}`);
    links.forEach(scenarioOf);
  }
});

test('a step runs at most one scenario, from a link on its own line', () => {
  for (const { w, s } of STEPS) {
    const links = commandLinks(s.description);
    assert.ok(links.length <= 1, `${w.id}/${s.id}: ${links.length} run links`);
    if (links.length) assert.ok(s.description.split('\n').includes(links[0]!.text), `${w.id}/${s.id}: the run link must stand on its own line (VS Code shows it as a button)`);
  }
});

test('a step completes when its own scenario has run, and only then', () => {
  for (const { w, s } of STEPS) {
    const runs = runOf(s);
    for (const event of s.completionEvents) {
      const ran = /^onContext:tcpLab\.ran\.([a-z0-9_]+)$/.exec(event);
      if (ran) assert.equal(ran[1]!.replace(/_/g, '-'), runs, `${w.id}/${s.id}: ${event} names a scenario the step does not run`);
      else assert.equal(event, 'onStepSelected', `${w.id}/${s.id}: unexpected completion event ${event}`);
    }
    const expected = runs ? `onContext:tcpLab.ran.${runs.replace(/-/g, '_')}` : 'onStepSelected';
    assert.ok(s.completionEvents.includes(expected), `${w.id}/${s.id}: needs ${expected}`);
  }
});

test('the five topics are there, each running its scenarios', () => {
  for (const [id, topic] of Object.entries(TOPICS)) {
    const w = WALKTHROUGHS.find((x) => x.id === id);
    assert.ok(w, `walkthrough ${id} is missing`);
    assert.equal(w.title, topic.title);
    const runs = w.steps.map((s) => runOf(s)).filter((r): r is string => r !== undefined);
    for (const r of topic.runs) assert.ok(runs.includes(r), `${id} does not run ${r}`);
  }
  const refused = WALKTHROUGHS.find((x) => x.id === 'refusedOrTimedOut')!;
  assert.ok(refused.steps.some((s) => runOf(s)?.startsWith('reject-icmp-')), 'refusedOrTimedOut runs no ICMP REJECT variant');
});

test('every page explains the wire, ss, the result, lab vs defaults and the fix', () => {
  for (const { s } of STEPS) {
    const text = page(s);
    const at = SECTIONS.map((h) => text.indexOf(h));
    assert.ok(at.every((i, k) => i >= 0 && (k === 0 || i > at[k - 1]!)), `${s.media.markdown}: sections ${SECTIONS.join(', ')} in order`);
  }
});

test('errnos carry their right numbers, and each step names its scenario\'s errno', () => {
  for (const { s } of STEPS) {
    const text = `${s.description}\n${page(s)}`;
    for (const m of text.matchAll(/\b(E[A-Z]{3,})`? \((\d+)\)/g)) {
      assert.equal(Number(m[2]), ERRNO[m[1]!], `${s.id}: ${m[0]}`);
    }
    const runs = runOf(s);
    const primary = runs ? byId.get(runs)!.expect.find((c) => c.primary && (c.kind ?? 'event') === 'event') : undefined;
    const errno = primary && 'match' in primary ? primary.match.errno : undefined;
    if (errno) assert.ok(new RegExp(`${errno}\`? \\(${ERRNO[errno]}\\)`).test(page(s)), `${s.media.markdown}: name ${errno} (${ERRNO[errno]})`);
  }
});
