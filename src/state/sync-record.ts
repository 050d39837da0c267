/**
 * The published synchronous set under /pgpilot/<cluster>/sync, `{ leader, members: P, quorum: q }`,
 * as stored in etcd: written only by the leader (by compare-and-set, src/ha/executor.ts), read by
 * every candidate, the CLI (`status`) and the local provider. The rules that decide what the set
 * may be, and the order in which it changes, live in src/ha/sync-set.ts.
 * Invariants: members are stored and parsed sorted and de-duplicated; a malformed value parses
 * to null (never a partial set), so a reader can tell "no set" from "a set it cannot read".
 */
import { z } from 'zod';
import { parseJsonOrNull } from '../shared/json.js';

/** The published set under /sync. */
export interface SyncSet {
  leader: string;
  members: string[];
  quorum: number;
}

const syncSetSchema = z
  .object({
    leader: z.string().min(1),
    members: z.array(z.string().min(1)),
    quorum: z.number().int().min(0),
  })
  .strict();

export function parseSyncSet(text: string | null): SyncSet | null {
  if (text === null) return null;
  const parsed = parseJsonOrNull(syncSetSchema, text);
  if (parsed === null) return null;
  return { leader: parsed.leader, members: sortedUnique(parsed.members), quorum: parsed.quorum };
}

export function formatSyncSet(set: SyncSet): string {
  return JSON.stringify({ leader: set.leader, members: sortedUnique(set.members), quorum: set.quorum });
}

function sortedUnique(names: readonly string[]): string[] {
  return [...new Set(names)].sort();
}
