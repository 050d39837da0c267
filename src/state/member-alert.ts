/**
 * A standing alert as an agent publishes it in its member record (`alerts`): what it refused to
 * trust, or could not read, in etcd. `pgpilot status` turns alerts into a `warning` or
 * `critical` health verdict (src/providers/local/cluster-status.ts). The agent side (raising,
 * clearing, reporting once) is src/ha/alerts.ts.
 * Invariant: any `kind` is read (a newer agent's), never a reason to drop the whole record.
 */
import { z } from 'zod';
import type { EventKind } from './events.js';

/** Kinds an agent raises; each is also the event kind written when it is raised. */
export type AlertKind = Extract<EventKind, 'config-rejected' | 'config-unreadable' | 'leader-key-ignored' | 'member-ignored'>;

/** As stored in a member record: any kind (a newer agent's) is read, never a reason to drop the record. */
export const memberAlertSchema = z.object({
  kind: z.string().min(1),
  severity: z.enum(['warning', 'critical']),
  message: z.string(),
});
export type MemberAlert = z.infer<typeof memberAlertSchema>;

export interface RaisedAlert extends MemberAlert {
  kind: AlertKind;
}
