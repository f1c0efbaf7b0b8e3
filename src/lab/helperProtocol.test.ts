import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeLine, encodeMessage, errorMessage, LineSplitter, parseToHelper, scenarioRef } from './helperProtocol';
import { LabError } from './errors';
import type { LabProcess } from './processes';
import type { LabProgram } from './remoteProcess';
import { findScenario } from './scenarios';
import { manualScenario } from './scenarios/manual';

test('a result\'s open-ended band survives the pipe: Infinity, not null', () => {
  const line = encodeMessage({ type: 'progress', runId: 'r1', progress: { id: 'x', elapsed: 1, waitingFor: null, band: [3, Infinity], since: -Infinity } });
  assert.ok(line.endsWith('\n') && !line.slice(0, -1).includes('\n'), 'one line');
  const back = decodeLine(line.trim()) as { progress: { band: number[]; since: number } };
  assert.deepEqual(back.progress.band, [3, Infinity]);
  assert.equal(back.progress.since, -Infinity);
});

test('a line that is not JSON is refused without being repeated', () => {
  const secret = 'Tcp-Lab-not-json';
  assert.throws(() => decodeLine(secret), (e: LabError) => e.field === 'message' && !e.describe().includes(secret));
});

test('lines split across chunks are joined; an overlong line is dropped whole', () => {
  const lines: string[] = [];
  let overflows = 0;
  const s = new LineSplitter((l) => lines.push(l), () => overflows++, 10);
  s.push('{"a"');
  s.push(':1}\n{"b":2}\n0123456789ABC');
  s.push('DEF\nok\n');
  assert.deepEqual(lines, ['{"a":1}', '{"b":2}', 'ok']);
  assert.equal(overflows, 1);
});

test('run requests are checked field by field', () => {
  const run = (options: unknown) => parseToHelper({ type: 'run', runId: 'r1', scenario: 'connect-refused', options });
  assert.deepEqual(run({ pollInterval: 50, sysctls: { 'net.ipv4.tcp_syn_retries': 2 }, clientCommand: ['curl', '{host}'] }).type, 'run');
  const field = (options: unknown) => {
    try {
      run(options);
      return 'accepted';
    } catch (e) {
      return (e as LabError).field;
    }
  };
  assert.equal(field({ python: '' }), 'options.python');
  assert.equal(field({ python: 'python3\n' }), 'options.python');
  assert.equal(field({ capture: 'wireshark' }), 'options.capture');
  assert.equal(field({ pollInterval: 5 }), 'options.pollInterval');
  assert.equal(field({ sysctls: { 'net.ipv4.ip_local_port_range': [9, 1] } }), 'options.sysctls.net.ipv4.ip_local_port_range');
  assert.equal(field({ clientCommand: [] }), 'options.clientCommand');
  assert.equal(field({ clientCommand: ['a\0b'] }), 'options.clientCommand[0]');
  assert.equal(field([]), 'options');
});

test('an error message keeps a refused value short', () => {
  const m = errorMessage(new LabError('no', { field: 'x', value: 'y'.repeat(10_000) }), 'r1');
  assert.equal(m.runId, 'r1');
  assert.ok(String(m.value).length <= 200);
});

test('the catalog\'s scenarios and the manual lab cross by name; anything else does not', () => {
  assert.deepEqual(scenarioRef(findScenario('connect-refused')), { scenario: 'connect-refused' });
  assert.deepEqual(scenarioRef(manualScenario('idle')), { scenario: 'manual', manual: 'idle' });
  assert.throws(() => scenarioRef({ ...findScenario('connect-refused') }), (e: LabError) => e.field === 'scenario');
});

test('a LabProcess is a LabProgram: the editor takes either', () => {
  const asProgram = (p: LabProcess): LabProgram => p;
  assert.equal(typeof asProgram, 'function');
});
