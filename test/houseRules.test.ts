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

test('the editor layer (src/vscode) never starts a process itself: it calls the lab', () => {
  const offenders = files(join(ROOT, 'src', 'vscode')).filter((f) => /from ['"](node:)?child_process['"]|from ['"]node-pty['"]|spawnInPty|hostExec/.test(readFileSync(f, 'utf8')));
  assert.deepEqual(offenders, []);
});

test('every command the extension registers is in the manifest, and every contributed one is registered', () => {
  const manifest = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
  const contributed = new Set<string>(manifest.contributes.commands.map((c: { command: string }) => c.command));
  const registered = new Set<string>();
  for (const f of [join(ROOT, 'src', 'extension.ts'), ...files(join(ROOT, 'src', 'vscode'))]) {
    for (const m of readFileSync(f, 'utf8').matchAll(/registerCommand\(\s*'([\w.]+)'/g)) registered.add(m[1]!);
  }
  // Commands only the views call (a process row showing its terminal) stay out of the palette.
  const internal = new Set(['tcpLab.showTerminal']);
  assert.deepEqual([...contributed].filter((c) => !registered.has(c)), [], 'contributed but never registered');
  assert.deepEqual([...registered].filter((c) => !contributed.has(c) && !internal.has(c)), [], 'registered but not in the manifest');
  for (const [menu, items] of Object.entries(manifest.contributes.menus as Record<string, { command: string }[]>)) {
    for (const item of items) assert.ok(contributed.has(item.command), `${menu} names ${item.command}, which is not contributed`);
  }
});
