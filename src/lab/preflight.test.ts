import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { missingSocketTool, missingTools, requiredTools } from './preflight';

test('missing programs are found by searching the given PATH', () => {
  const dir = mkdtempSync(join(tmpdir(), 'preflight-'));
  writeFileSync(join(dir, 'ip'), '#!/bin/sh\n', { mode: 0o755 });
  writeFileSync(join(dir, 'nsenter'), 'not executable', { mode: 0o644 });
  assert.deepEqual(missingTools(['ip', 'nsenter', 'iptables'], dir), ['nsenter', 'iptables']);
  assert.deepEqual(missingTools([join(dir, 'ip')], ''), []);
});

test('the firewall chosen is the one required', () => {
  assert.ok(requiredTools('nft').includes('nft'));
  assert.ok(!requiredTools('nft').includes('iptables'));
});

test('the socket monitor needs ss, or netstat where ss is missing', () => {
  const dir = mkdtempSync(join(tmpdir(), 'preflight-'));
  assert.deepEqual(missingSocketTool(dir), ['ss'], 'neither: ss is the one to install');
  writeFileSync(join(dir, 'netstat'), '#!/bin/sh\n', { mode: 0o755 });
  assert.deepEqual(missingSocketTool(dir), [], 'netstat alone will do');
});
