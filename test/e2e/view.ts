// The workbench as a user meets it in the TCP Lab tests: rows of the view, toasts, a scenario
// run from its inline ▶, the quick input, the extension host. Shared by the e2e test files.
import { readFileSync } from 'node:fs';
import { processTree, runCommand, type CodeServer, type PwLocator, type PwPage } from './codeServer';

export function row(page: PwPage, text: string | RegExp): PwLocator {
  return page.locator('.pane-body .monaco-list-row').filter({ hasText: text }).first();
}

export function toast(page: PwPage, text: string | RegExp): PwLocator {
  return page.locator('.notifications-toasts .notification-toast').filter({ hasText: text }).first();
}

/** The quick input (palette, pick or input box) while it shows `text` (its title or prompt). */
export function quickInput(page: PwPage, text: string | RegExp): PwLocator {
  return page.locator('.quick-input-widget').filter({ hasText: text }).first();
}

/**
 * Runs a scenario the way a user does from the catalog: hover its row, click the inline ▶.
 * The tree renders only the rows in view: when the row is not there, collapse every section
 * (the view's own Collapse All) and open the scenario's. Resolves once the click is done and
 * the palette's scenario pick did not open (see below); whatever the run opens next (a
 * password box, a progress toast) is the caller's to wait for.
 */
export async function runFromView(page: PwPage, id: string, section: string, started?: () => boolean): Promise<void> {
  // The row's aria-label is "<id>: <title>" (the tree item's accessibility label).
  const r = page.locator(`.pane-body .monaco-list-row[aria-label^="${id}: "]`).first();
  if (!(await r.isVisible())) {
    await page.locator('.pane-header[aria-label^="Scenarios"]').hover();
    await page.locator('.pane-header .action-label[aria-label^="Collapse All"]').first().click();
    // A click toggles the section: if the tree was still settling it may have closed it again.
    for (let i = 0; i < 3 && !(await r.isVisible()); i++) {
      await row(page, section).click();
      await r.waitFor({ state: 'visible', timeout: 3_000 }).catch(() => undefined);
    }
    await r.waitFor({ state: 'visible', timeout: 2_000 });
  }
  // A row the list has just re-rendered can carry an action bar whose element is not bound
  // yet: VS Code then runs the command with no argument and the palette's scenario pick opens
  // (test/vscode.test.ts saw it 2 times in about 20 runs). Close it and click again. With
  // `started` (the extension's log says the run began), a click that reached nothing at all is
  // seen too, and made again.
  await page.waitForTimeout(300);
  const pick = quickInput(page, 'Run a scenario in a private network namespace');
  for (let attempt = 1; ; attempt++) {
    await r.hover();
    await r.locator('.actions .action-label[aria-label^="Run Scenario"]').click();
    await page.waitForTimeout(200);
    const picked = await pick.isVisible();
    if (picked) await page.keyboard.press('Escape');
    else if (!started) return;
    else if (await waitFor(`the log to say ${id} began`, started, 5_000).then(() => true, () => false)) return;
    if (attempt === 3) throw new Error(`the inline Run action on ${id} ran nothing in 3 clicks (${picked ? 'the scenario pick opened: no element was passed' : 'the extension logged no run'})`);
  }
}

/** Counts the runs of `id` the TCP Lab log holds ("run <id> (mode …"): a run began when it grows. */
export function runsLogged(log: string, id: string): number {
  return log.split('\n').filter((l) => l.includes(`] run ${id} (`) || l.includes(`] run ${id} with `)).length;
}

/** The extension host of a code-server: the node process forked with --type=extensionHost. */
export function extensionHostPid(server: CodeServer): number | undefined {
  return processTree(server.pid).find((pid) => {
    try { return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('--type=extensionHost'); } catch { return false; }
  });
}

export async function waitFor(what: string, fn: () => boolean | Promise<boolean>, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Everything the page holds as text, by where it is: each frame's serialized DOM (the
 * workbench, webviews' nested frames) and the live value of each input and textarea, which the
 * serialization leaves out (a typed value is a property, not an attribute).
 */
export async function pageText(page: PwPage): Promise<{ where: string; text: string }[]> {
  const parts: { where: string; text: string }[] = [];
  for (const [i, f] of page.frames().entries()) {
    const frame = `frame ${i} (${f.url().slice(0, 80)})`;
    const got = await f.evaluate<{ html: string; values: { where: string; value: string }[] }>(`(() => ({
      html: document.documentElement ? document.documentElement.outerHTML : '',
      values: Array.from(document.querySelectorAll('input, textarea'), (e) => ({
        where: e.tagName.toLowerCase() + (e.type ? '[type=' + e.type + ']' : '') + ' in ' +
          ((e.parentElement && e.parentElement.closest('[class]') && e.parentElement.closest('[class]').className) || '?').toString().slice(0, 80),
        value: e.value,
      })),
    }))()`).catch(() => ({ html: '', values: [] }));
    parts.push({ where: `${frame}: DOM`, text: got.html });
    for (const v of got.values) parts.push({ where: `${frame}: value of ${v.where}`, text: v.value });
  }
  return parts;
}

/** Where in the page `secret` is (none: an empty list). */
export async function pageLeaks(page: PwPage, secret: string): Promise<string[]> {
  return (await pageText(page)).filter((p) => p.text.includes(secret)).map((p) => p.where);
}

/**
 * Opens the TCP Lab output (*TCP Lab: Show Log*) and waits for a line holding `text`. Once
 * more if the Output view did not come up: code-server sometimes ignores the first Show Log
 * (seen on a loaded machine).
 */
export async function showLogLine(page: PwPage, text: string): Promise<PwLocator> {
  const line = page.locator('.part.panel .view-lines .view-line').filter({ hasText: text }).first();
  for (let attempt = 1; ; attempt++) {
    await runCommand(page, 'TCP Lab: Show Log');
    try {
      await line.waitFor({ state: 'visible', timeout: 10_000 });
      return line;
    } catch (e) {
      if (attempt === 2) throw e;
    }
  }
}
