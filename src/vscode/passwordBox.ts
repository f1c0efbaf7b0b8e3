import * as vscode from 'vscode';

export interface PasswordBoxOptions {
  title: string;
  prompt: string;
}

/**
 * A password box (`password: true`, stays open when focus leaves) that empties itself before it
 * closes. The workbench has one quick-input widget for every box and pick, and hiding it does not
 * clear its <input>: after `showInputBox({ password: true })` the typed password stays in the
 * page's DOM, as the value of that hidden input, until the next quick input replaces it (seen in
 * code-server 4.139 / Code 1.139; test/vscodeSudo.test.ts checks it). Setting `value` to '' and
 * then hiding sends both in one update, value first, so the input is emptied while still shown.
 * A box closed with Escape is hidden by the workbench itself, before the extension hears of it:
 * what was typed then stays until the next quick input, and the extension cannot reach it.
 * Resolves with the password, or undefined when the box was dismissed.
 */
export function askPassword(options: PasswordBoxOptions): Promise<string | undefined> {
  const box = vscode.window.createInputBox();
  box.title = options.title;
  box.prompt = options.prompt;
  box.password = true;
  box.ignoreFocusOut = true;
  return new Promise((resolve) => {
    let answer: string | undefined;
    box.onDidAccept(() => {
      answer = box.value;
      box.value = '';
      box.hide();
    });
    box.onDidHide(() => {
      box.dispose();
      resolve(answer);
    });
    box.show();
  });
}
