/**
 * Append-only JSON lists in one etcd key (history, events): appended with compare-and-set so that
 * concurrent writers never lose an entry, capped to the newest `maxEntries`, and read leniently
 * (a malformed value reads as an empty list rather than breaking the reader).
 */
import { z } from 'zod';
import type { Dcs } from '../dcs/dcs.js';
import { parseJsonOrNull } from '../shared/json.js';

/**
 * Each compare-and-set round lets at least one concurrent writer through, so N writers need at
 * most N rounds; 64 covers far more concurrent writers than a cluster has members.
 */
const MAX_ATTEMPTS = 64;

export function parseJsonList<T>(schema: z.ZodType<T>, text: string | null): T[] {
  return parseJsonOrNull(z.array(schema), text) ?? [];
}

/** True when appended; false only if every compare-and-set attempt lost to another writer. */
export async function appendJsonList<T>(dcs: Dcs, key: string, schema: z.ZodType<T>, entry: T, maxEntries: number): Promise<boolean> {
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt += 1) {
    const current = await dcs.get(key);
    const next = JSON.stringify([...parseJsonList(schema, current), entry].slice(-maxEntries));
    const written = current === null ? await dcs.createIfAbsent(key, next) : await dcs.replaceIfEquals(key, current, next);
    if (written) return true;
  }
  return false;
}
