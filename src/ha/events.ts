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
]);
export type EventKind = z.infer<typeof eventKindSchema>;

export const clusterEventSchema = z.object({
  at: z.string(),
  kind: eventKindSchema,
  node: z.string(),
  message: z.string(),
  timeline: z.number().int().nullable().default(null),
});
export type ClusterEvent = z.infer<typeof clusterEventSchema>;

const MAX_EVENTS = 500;

export function parseEvents(text: string | null): ClusterEvent[] {
  return parseJsonList(clusterEventSchema, text);
}

export async function recordEvent(dcs: Dcs, keys: ClusterKeys, event: ClusterEvent): Promise<void> {
  try {
    await appendJsonList(dcs, keys.events, clusterEventSchema, event, MAX_EVENTS);
  } catch {
    // A log entry lost to an etcd outage must not fail the action it describes.
  }
}
