/**
 * The timeline history kept under /history: a JSON list of leader changes (timeline, LSN, reason,
 * time, new leader), appended with compare-and-set so concurrent writers cannot lose entries.
 */
import { z } from 'zod';
import type { Dcs } from '../dcs/dcs.js';
import type { ClusterKeys } from '../dcs/keys.js';

export const historyEntrySchema = z.object({
  timeline: z.number().int(),
  lsn: z.string().nullable(),
  reason: z.string(),
  at: z.string(),
  newLeader: z.string(),
});
export type HistoryEntry = z.infer<typeof historyEntrySchema>;

export function parseHistory(text: string | null): HistoryEntry[] {
  if (text === null) return [];
  try {
    const result = z.array(historyEntrySchema).safeParse(JSON.parse(text));
    return result.success ? result.data : [];
  } catch {
    return [];
  }
}

const MAX_ATTEMPTS = 5;
const MAX_ENTRIES = 1000;

export async function appendHistory(dcs: Dcs, keys: ClusterKeys, entry: HistoryEntry): Promise<void> {
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt += 1) {
    const current = await dcs.get(keys.history);
    const next = JSON.stringify([...parseHistory(current), entry].slice(-MAX_ENTRIES));
    const written = current === null ? await dcs.createIfAbsent(keys.history, next) : await dcs.replaceIfEquals(keys.history, current, next);
    if (written) return;
  }
}
