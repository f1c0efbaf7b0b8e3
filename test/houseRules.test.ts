import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './support/lab';

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

test('the engine (src/lab) never imports vscode: it runs in plain Node and in tcp-lab', () => {
  const offenders = files(join(ROOT, 'src', 'lab')).filter((f) => /from ['"]vscode['"]|require\(['"]vscode['"]\)/.test(readFileSync(f, 'utf8')));
  assert.deepEqual(offenders, []);
});

test('no command is built as a shell string', () => {
  const offenders = files(join(ROOT, 'src')).filter((f) => /\bexecSync\(|\bexec\(\s*`|shell:\s*true|spawn\(['"](sh|bash)['"]/.test(readFileSync(f, 'utf8')));
  assert.deepEqual(offenders, []);
});
