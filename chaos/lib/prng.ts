/**
 * The seeded pseudo-random generator of the chaos suite (mulberry32): the same seed gives the
 * same fault plan (kinds, targets rules, durations), so a run is reproducible from its seed.
 * Invariant: nothing in the plan is drawn from Math.random(); only from a `Prng` made from the seed.
 */
export interface Prng {
  /** A float in [0, 1). */
  next(): number;
  /** An integer in [min, max] (both inclusive). */
  int(min: number, max: number): number;
  /** One element of a non-empty list. */
  pick<T>(items: readonly T[]): T;
}

export function mulberry32(seed: number): Prng {
  let state = seed >>> 0;
  const next = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
  return {
    next,
    int: (min, max) => min + Math.floor(next() * (max - min + 1)),
    pick: <T>(items: readonly T[]): T => {
      if (items.length === 0) throw new Error('pick from an empty list');
      return items[Math.floor(next() * items.length)] as T;
    },
  };
}

/** A seed for a run that was given none (printed, so the run can be repeated). */
export function randomSeed(): number {
  return Math.floor(Math.random() * 2_147_483_647) + 1;
}
