/**
 * Runs test/electron/suite.ts inside a real VS Code desktop (Electron) with the extension
 * loaded from this checkout: `node --import tsx test/electron/runTests.ts`. Exits non-zero
 * when the suite fails or VS Code cannot be had.
 *
 * VS Code is TCPLAB_VSCODE_EXECUTABLE when set, otherwise downloaded once (version
 * TCPLAB_VSCODE_VERSION, default stable) into node_modules/.cache/vscode-test, which git and
 * npm ci already treat as disposable.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { build } from 'esbuild';
import { downloadAndUnzipVSCode, runTests } from '@vscode/test-electron';

const ROOT = resolve(__dirname, '..', '..');

async function main(): Promise<number> {
  // The manifest's main is dist/extension.js: test the sources as they are now, not a stale build.
  execFileSync(process.execPath, ['esbuild.mjs'], { cwd: ROOT, stdio: 'inherit' });
  const tmp = mkdtempSync(join(tmpdir(), 'tcplab-electron-'));
  const userData = join(tmp, 'user-data');
  try {
    const suite = join(tmp, 'suite.js');
    // The extension host require()s the suite: one CommonJS file; `vscode` is the host's to give.
    await build({
      entryPoints: [join(ROOT, 'test', 'electron', 'suite.ts')],
      outfile: suite,
      bundle: true,
      platform: 'node',
      format: 'cjs',
      target: 'node20',
      external: ['vscode'],
      sourcemap: 'inline',
      logLevel: 'warning',
    });
    const executable = process.env.TCPLAB_VSCODE_EXECUTABLE || await downloadAndUnzipVSCode({
      version: process.env.TCPLAB_VSCODE_VERSION || 'stable',
      cachePath: join(ROOT, 'node_modules', '.cache', 'vscode-test'),
      timeout: 30_000,
    });
    await runTests({
      vscodeExecutablePath: executable,
      extensionDevelopmentPath: ROOT,
      extensionTestsPath: suite,
      // A fresh profile and no other extension: whatever the suite sees comes from ours.
      launchArgs: ['--disable-extensions', `--user-data-dir=${userData}`, `--extensions-dir=${join(tmp, 'extensions')}`],
    });
    return 0;
  } catch (e) {
    console.error(`electron suite failed: ${e instanceof Error ? e.message : String(e)}`);
    printLabLog(userData);
    return 1;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/**
 * The commands catch their errors and log them to the "TCP Lab" channel; its file in the
 * profile is the only place a failed run says why, and the profile is deleted next.
 */
function printLabLog(userData: string): void {
  let files: string[];
  try {
    files = readdirSync(join(userData, 'logs'), { recursive: true, encoding: 'utf8' }).filter((f) => basename(f) === 'TCP Lab.log');
  } catch {
    return; // VS Code never started: there is no log to show
  }
  for (const f of files) console.error(`--- ${f}\n${readFileSync(join(userData, 'logs', f), 'utf8')}`);
}

void main().then((code) => {
  process.exitCode = code;
});
