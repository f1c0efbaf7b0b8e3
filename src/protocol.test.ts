import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LabError } from './lab/errors';
import { describeTarget, parseFromWebview, type FromWebview } from './protocol';

test('parseFromWebview accepts each message the page sends, as it sends it', () => {
  const good: FromWebview[] = [
    { type: 'ready' },
    { type: 'setTarget', target: { kind: 'lab' } },
    { type: 'setTarget', target: { kind: 'port', port: 1 } },
    { type: 'setTarget', target: { kind: 'port', port: 65535 } },
    { type: 'setTarget', target: { kind: 'pid', pid: 1 } },
    { type: 'setTarget', target: { kind: 'pid', pid: 4_194_304 } },
    { type: 'pause', paused: true },
    { type: 'pause', paused: false },
    { type: 'setInterval', ms: 100 },
    { type: 'setInterval', ms: 60_000 },
  ];
  // What postMessage delivers is a structured clone: a fresh plain object.
  for (const m of good) assert.deepEqual(parseFromWebview(structuredClone(m)), m);
});

/** The refusal, with the field it names. */
function refusal(msg: unknown): LabError {
  try {
    parseFromWebview(msg);
  } catch (e) {
    assert.ok(e instanceof LabError, `a LabError for ${JSON.stringify(msg)?.slice(0, 80)}`);
    return e;
  }
  assert.fail(`accepted ${JSON.stringify(msg)?.slice(0, 80)}`);
}

test('parseFromWebview refuses what is malformed, naming the field', () => {
  const long = 'x'.repeat(1_000_000);
  const cases: [unknown, string][] = [
    [null, 'message'],
    [undefined, 'message'],
    ['ready', 'message'],
    [42, 'message'],
    [[{ type: 'ready' }], 'message'],
    [new Date(), 'message'],
    [{}, 'type'],
    [{ type: 'Ready' }, 'type'],
    [{ type: 'exec', argv: ['rm', '-rf', '/'] }, 'type'],
    [{ type: long }, 'type'],
    [{ type: ['ready'] }, 'type'],
    [{ type: 'ready', extra: 1 }, 'message.extra'],
    [{ type: 'ready', [long]: 1 }, `message.${'x'.repeat(40)}`],
    [{ type: 'setTarget' }, 'target'],
    [{ type: 'setTarget', target: 'lab' }, 'target'],
    [{ type: 'setTarget', target: { kind: 'host' } }, 'target.kind'],
    [{ type: 'setTarget', target: { kind: long } }, 'target.kind'],
    [{ type: 'setTarget', target: { kind: 'port' } }, 'target.port'],
    [{ type: 'setTarget', target: { kind: 'port', port: 0 } }, 'target.port'],
    [{ type: 'setTarget', target: { kind: 'port', port: 65536 } }, 'target.port'],
    [{ type: 'setTarget', target: { kind: 'port', port: -1 } }, 'target.port'],
    [{ type: 'setTarget', target: { kind: 'port', port: 80.5 } }, 'target.port'],
    [{ type: 'setTarget', target: { kind: 'port', port: '7000' } }, 'target.port'],
    [{ type: 'setTarget', target: { kind: 'port', port: Number.NaN } }, 'target.port'],
    [{ type: 'setTarget', target: { kind: 'port', port: Infinity } }, 'target.port'],
    [{ type: 'setTarget', target: { kind: 'port', port: 7000, pid: 1 } }, 'target.pid'],
    [{ type: 'setTarget', target: { kind: 'lab', port: 7000 } }, 'target.port'],
    [{ type: 'setTarget', target: { kind: 'pid', pid: 0 } }, 'target.pid'],
    [{ type: 'setTarget', target: { kind: 'pid', pid: 4_194_305 } }, 'target.pid'],
    [{ type: 'setTarget', target: { kind: 'pid', pid: '1; reboot' } }, 'target.pid'],
    [{ type: 'pause' }, 'paused'],
    [{ type: 'pause', paused: 'true' }, 'paused'],
    [{ type: 'pause', paused: 1 }, 'paused'],
    [{ type: 'setInterval', ms: 99 }, 'ms'],
    [{ type: 'setInterval', ms: 60_001 }, 'ms'],
    [{ type: 'setInterval', ms: 500.5 }, 'ms'],
    [{ type: 'setInterval', ms: '500' }, 'ms'],
  ];
  for (const [msg, field] of cases) {
    const e = refusal(msg);
    assert.equal(e.field, field, `${JSON.stringify(msg)?.slice(0, 80)}: ${e.message}`);
    // What the panel shows of it stays short, whatever was sent.
    assert.ok(e.describe().length < 300, e.describe().slice(0, 300));
  }
});

test('a target as a person names it', () => {
  assert.equal(describeTarget({ kind: 'lab' }), 'the lab');
  assert.equal(describeTarget({ kind: 'port', port: 7000 }), 'port 7000');
  assert.equal(describeTarget({ kind: 'pid', pid: 42 }), 'process 42');
});
