/**
 * Append-only JSON lists in one etcd key (history, events): appended with compare-and-set so that
 * concurrent writers never lose an entry, capped to the newest `maxEntries`, and read leniently
 * entry by entry. Invariants: one malformed entry (or one of a kind this version does not know,
 * written by a newer agent) never hides the others; an append keeps every stored entry verbatim,
 * readable or not, so an older writer never erases what a newer one wrote; only a value that is
 * not a JSON list at all reads as empty (and is replaced by the next append).
 */
import type { z } from 'zod';
import type { Dcs } from '../dcs/dcs.js';

/**
 * Each compare-and-set round lets at least one concurrent writer through, so N writers need at
 * most N rounds; 64 covers far more concurrent writers than a cluster has members.
 */
const MAX_ATTEMPTS = 64;

/** The stored entries as raw JSON values; [] for a missing key or a value that is not a JSON list. */
function rawEntries(text: string | null): unknown[] {
  if (text === null) return [];
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return [];
  }
  return Array.isArray(raw) ? raw : [];
}

/** Every entry that validates against `schema`, in stored order (malformed entries are skipped). */
export function parseJsonList<T>(schema: z.ZodType<T>, text: string | null): T[] {
  const entries: T[] = [];
  for (const raw of rawEntries(text)) {
    const parsed = schema.safeParse(raw);
    if (parsed.success) entries.push(parsed.data);
  }
  return entries;
}

/** True when appended; false only if every compare-and-set attempt lost to another writer. */
export async function appendJsonList<T>(dcs: Dcs, key: string, schema: z.ZodType<T>, entry: T, maxEntries: number): Promise<boolean> {
  // The new entry is checked like a stored one would be: a writer never stores what readers drop.
  const checked = schema.parse(entry);
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt += 1) {
    const current = await dcs.get(key);
    const next = JSON.stringify([...rawEntries(current), checked].slice(-maxEntries));
    const written = current === null ? await dcs.createIfAbsent(key, next) : await dcs.replaceIfEquals(key, current, next);
    if (written) return true;
  }
  return false;
}
