/**
 * Operator intents under /failover, written by the CLI (or REST API) and carried out only by
 * agents: a planned `switchover` (the leader checkpoints, stops taking writes, waits until the
 * target has replayed everything, then hands over) or a forced `failover` (no catch-up wait; the
 * named node takes the lead). An intent older than `INTENT_TIMEOUT_MS` is ignored, so a crashed
 * CLI or a vanished target cannot freeze elections forever.
 */
import { z } from 'zod';
import { parseJsonOrNull } from '../shared/json.js';

export const failoverIntentSchema = z.object({
  kind: z.enum(['switchover', 'failover']),
  /** The leader when the intent was written; the intent is void once someone else leads. */
  from: z.string().nullable(),
  /** The node that must become leader; null: the best-ranked replica. */
  to: z.string().nullable(),
  requestedAtMs: z.number(),
});
export type FailoverIntent = z.infer<typeof failoverIntentSchema>;

export const INTENT_TIMEOUT_MS = 60_000;
/** How long a stepping-down leader waits for the target to replay its last WAL. */
export const CATCH_UP_TIMEOUT_MS = 30_000;

export function parseIntent(text: string | null): FailoverIntent | null {
  return parseJsonOrNull(failoverIntentSchema, text);
}

export function isIntentLive(intent: FailoverIntent, nowMs: number): boolean {
  return nowMs - intent.requestedAtMs < INTENT_TIMEOUT_MS;
}

/** The intent when it is present and not stale, else null. */
export function liveIntent(intent: FailoverIntent | null, nowMs: number): FailoverIntent | null {
  return intent !== null && isIntentLive(intent, nowMs) ? intent : null;
}
