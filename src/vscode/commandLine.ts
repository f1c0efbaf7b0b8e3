import { LabError } from '../lab/errors';

/**
 * Splits a command line typed by the user into argv, the way a POSIX shell splits words, but
 * without a shell: no variables, globs, pipes or redirections, so what runs is exactly the
 * words shown. Quotes ('...' literal, "..." with \" \\ \$ \` escapes) and backslashes work;
 * an operator a shell would act on is refused, with the reason, instead of passed as a word.
 */
export function splitCommandLine(line: string): string[] {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (c === ' ' || c === '\t') {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
      continue;
    }
    if (c === '\n' || c === '\r') throw new LabError('one command line only', { field: 'command', value: line });
    inWord = true;
    if (c === "'") {
      const end = line.indexOf("'", i + 1);
      if (end < 0) throw new LabError('unclosed single quote', { field: 'command', value: line });
      word += line.slice(i + 1, end);
      i = end;
    } else if (c === '"') {
      let j = i + 1;
      for (; j < line.length && line[j] !== '"'; j++) {
        if (line[j] === '\\' && j + 1 < line.length && '"\\$`'.includes(line[j + 1]!)) j++;
        word += line[j];
      }
      if (j >= line.length) throw new LabError('unclosed double quote', { field: 'command', value: line });
      i = j;
    } else if (c === '\\') {
      if (i + 1 >= line.length) throw new LabError('a backslash at the end of the line', { field: 'command', value: line });
      word += line[++i];
    } else if ('|&;<>()`'.includes(c) || (c === '$' && /[({\w]/.test(line[i + 1] ?? ''))) {
      throw new LabError(`"${c}" would need a shell: the lab runs one program with its arguments, no shell`, {
        field: 'command', value: line, hint: `quote it if it is meant literally, or wrap it: sh -c '...'`,
      });
    } else {
      word += c;
    }
  }
  if (inWord) words.push(word);
  if (!words.length) throw new LabError('the command is empty', { field: 'command', value: line });
  return words;
}
