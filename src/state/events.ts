/**
 * The cluster's event log under /events: role changes, failovers, switchovers, restarts, fencing,
 * rejoins, each with time, node and reason, newest last (capped). Written by agents as they act
 * and by the CLI when it records an intent; read by `pgpilot events`. Losing an event to an etcd
 * outage is acceptable (it is a log, not state): callers never fail an action because of it.
 */
import { z } from 'zod';
import type { Dcs } from '../dcs/dcs.js';
import type { ClusterKeys } from '../dcs/keys.js';
import { appendJsonList, parseJsonList } from './json-list.js';

export const eventKindSchema = z.enum([
  'initialized',
  'cloned',
  'leader-acquired',
  'leader-adopted',
  'leader-released',
  'promoted',
  'demoted',
  'fenced',
  'rewound',
  'reinitialized',
  'restarted',
  'crashed',
  'switchover-requested',
  'switchover-completed',
  'switchover-failed',
  'failover-requested',
  'failover-completed',
  'restored',
  'backup-completed',
  'backup-failed',
  // Operations (src/cli/commands/scale-count.ts, image.ts, pooler.ts).
  'member-added',
  'member-removed',
  'image-update-started',
  'image-update-completed',
  'image-update-failed',
  'pooler-enabled',
  'pooler-disabled',
  // An agent refused an auth schema or function not owned by the superuser (src/pooler/pooler-supervisor.ts).
  'pooler-auth-refused',
  // Agents that trust nothing they read (docs/ha-loop.md "What agents read from etcd").
  'config-rejected',
  'config-unreadable',
  'config-repaired',
  'leader-key-ignored',
  'member-ignored',
]);
export type EventKind = z.infer<typeof eventKindSchema>;

/**
 * An event as stored. `kind` is any non-empty string when read: an entry of a kind this version
 * does not know (a newer agent's) is kept and shown as it is, never dropped with the others.
 */
export const clusterEventSchema = z.object({
  at: z.string(),
  kind: z.string().min(1),
  node: z.string(),
  message: z.string(),
  timeline: z.number().int().nullable().default(null),
});
export type ClusterEvent = z.infer<typeof clusterEventSchema>;
/** An event this version writes: one of the known kinds. */
export type NewClusterEvent = ClusterEvent & { kind: EventKind };

const MAX_EVENTS = 500;

export function parseEvents(text: string | null): ClusterEvent[] {
  return parseJsonList(clusterEventSchema, text);
}

export async function recordEvent(dcs: Dcs, keys: ClusterKeys, event: NewClusterEvent): Promise<void> {
  try {
    await appendJsonList(dcs, keys.events, clusterEventSchema, event, MAX_EVENTS);
  } catch {
    // A log entry lost to an etcd outage must not fail the action it describes.
  }
}
