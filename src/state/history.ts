/**
 * The timeline history kept under /history: a JSON list of leader changes (timeline, LSN, reason,
 * time, new leader), appended with compare-and-set so concurrent writers cannot lose entries.
 */
import { z } from 'zod';
import type { Dcs } from '../dcs/dcs.js';
import type { ClusterKeys } from '../dcs/keys.js';
import { appendJsonList, parseJsonList } from './json-list.js';

export const historyEntrySchema = z.object({
  timeline: z.number().int(),
  lsn: z.string().nullable(),
  reason: z.string(),
  at: z.string(),
  newLeader: z.string(),
});
export type HistoryEntry = z.infer<typeof historyEntrySchema>;

const MAX_ENTRIES = 1000;

export function parseHistory(text: string | null): HistoryEntry[] {
  return parseJsonList(historyEntrySchema, text);
}

export async function appendHistory(dcs: Dcs, keys: ClusterKeys, entry: HistoryEntry): Promise<void> {
  await appendJsonList(dcs, keys.history, historyEntrySchema, entry, MAX_ENTRIES);
}
