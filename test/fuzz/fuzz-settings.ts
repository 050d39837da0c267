/**
 * Shared settings of the property tests under test/fuzz: a FIXED seed (a failure reproduces on
 * every run and machine) and a bounded number of runs, `FUZZ_RUNS` (default 200; `npm run fuzz --
 * --runs N` raises it). Each property scales its own runs from it (the simulations are costlier).
 */
import fc from 'fast-check';

export const FUZZ_SEED = 20_261_126;

export function fuzzRuns(): number {
  const raw = Number(process.env['FUZZ_RUNS'] ?? '200');
  return Number.isInteger(raw) && raw > 0 ? raw : 200;
}

/** fast-check parameters: the fixed seed, `fraction` of FUZZ_RUNS runs (at least `min`). */
export function fuzzParams<T>(fraction = 1, min = 5): fc.Parameters<T> {
  return { seed: FUZZ_SEED, numRuns: Math.max(min, Math.round(fuzzRuns() * fraction)), endOnFailure: true };
}

/** Text as etcd could hold it: any JSON, JSON-ish fragments, or arbitrary (binary-ish) strings. */
export function etcdText(valid: fc.Arbitrary<unknown> = fc.constant({})): fc.Arbitrary<string> {
  return fc.oneof(
    fc.json(),
    fc.string({ unit: 'binary' }),
    fc.string({ unit: 'grapheme' }),
    valid.map((v) => JSON.stringify(v)),
    mutated(valid).map((v) => JSON.stringify(v) ?? 'null'),
    fc.constantFrom('', 'null', '[]', '{}', '1e999', '-0', '"x"', '{"__proto__":{"a":1}}', '[{}]', '{"a":'),
  );
}

/** A valid value with one field replaced by anything (or removed), or extended with a stray field. */
export function mutated(valid: fc.Arbitrary<unknown>): fc.Arbitrary<unknown> {
  return fc.tuple(valid, fc.nat(), fc.anything(), fc.boolean()).map(([value, index, replacement, remove]) => {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) return replacement;
    const record = { ...(value as Record<string, unknown>) };
    const keys = Object.keys(record);
    if (keys.length === 0) return { stray: replacement };
    const key = keys[index % keys.length] ?? '';
    if (remove) delete record[key];
    else record[key] = replacement;
    return record;
  });
}
