// One build script, two kinds of bundle: the Node side (the tcp-lab CLI, the extension host,
// the sudo helper) as CommonJS with node-pty and vscode left external, and the webview pages.
import * as esbuild from 'esbuild';

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
  { ...node, entryPoints: ['src/extension.ts'], outfile: 'dist/extension.js' },
  // The root helper the extension starts through sudo where user namespaces are forbidden.
  { ...node, entryPoints: ['src/labHelper.ts'], outfile: 'dist/lab-helper.js' },
  // The webview: browser code, no Node APIs, one IIFE per page.
  { bundle: true, platform: 'browser', format: 'iife', target: 'chrome114', minify: true, sourcemap: true, logLevel: 'warning', entryPoints: ['webview/socketPanel.ts'], outfile: 'dist/webview/socketPanel.js' },
];

if (watch) {
  for (const b of builds) await (await esbuild.context(b)).watch();
} else {
  await Promise.all(builds.map((b) => esbuild.build(b)));
}
