/** Seeded fuzzing for the parsers: a failure is reproducible from its seed. */

/** A deterministic random number generator in [0, 1]. */
export function seeded(seed: number): () => number {
  let s = seed;
  return () => ((s = (s * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
}

/**
 * `count` inputs made from real ones, in turn: a real input cut short, a real input with four
 * characters replaced from `alphabet`, and random characters of `alphabet` (up to `maxRandom`).
 */
export function* fuzzInputs(pick: (rand: () => number) => string, alphabet: string, options: { count: number; seed: number; maxRandom: number }): Generator<string> {
  const rand = seeded(options.seed);
  const char = () => alphabet[Math.floor(rand() * alphabet.length)]!;
  for (let i = 0; i < options.count; i++) {
    const base = pick(rand);
    const mode = i % 3;
    if (mode === 0) yield base.slice(0, Math.floor(rand() * base.length));
    else if (mode === 1) {
      const chars = [...base];
      for (let k = 0; k < 4; k++) chars[Math.floor(rand() * chars.length)] = char();
      yield chars.join('');
    } else yield Array.from({ length: Math.floor(rand() * options.maxRandom) }, char).join('');
  }
}
