// One build script, two kinds of bundle: the Node side (the tcp-lab CLI, and later the
// extension host) as CommonJS with node-pty and vscode left external, and (later) the webview.
import * as esbuild from 'esbuild';
import { existsSync } from 'node:fs';

const watch = process.argv.includes('--watch');
const node = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  sourcemap: true,
  external: ['vscode', 'node-pty'],
  logLevel: 'warning',
};
const builds = [
  { ...node, entryPoints: ['src/cli.ts'], outfile: 'dist/cli.js', banner: { js: '#!/usr/bin/env node' } },
];
if (existsSync('src/extension.ts')) builds.push({ ...node, entryPoints: ['src/extension.ts'], outfile: 'dist/extension.js' });

if (watch) {
  for (const b of builds) await (await esbuild.context(b)).watch();
} else {
  await Promise.all(builds.map((b) => esbuild.build(b)));
}
