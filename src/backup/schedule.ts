/**
 * When to take the next scheduled base backup. Schedules are standard 5-field cron expressions
 * (minute hour day-of-month month day-of-week) evaluated in UTC, parsed by `cron-parser`.
 * `decideBackupRun` is pure (the caller passes `nowMs` and what the catalog says) and keeps three
 * invariants:
 *  - never two backups at once: while one runs, the answer is `wait`;
 *  - a missed run is caught up once, not once per missed slot: the next run is due at the first
 *    cron time strictly after the newest attempt's start (or after `referenceMs` before any
 *    attempt), so after any outage there is exactly one due time in the past, and the run that
 *    answers it moves `lastStartedMs` past every missed slot;
 *  - after a failed attempt the next try waits `retryAfterFailureMs` from the failure, whatever
 *    the cron says, so a persistently failing backup is retried at that pace, not in a tight loop.
 */
import { CronExpressionParser } from 'cron-parser';
import { PgpilotError } from '../shared/errors.js';

/** 03:00 UTC every day. */
export const DEFAULT_BACKUP_SCHEDULE = '0 3 * * *';

const SCHEDULE_HINT = "e.g. '0 3 * * *' (03:00 UTC daily)";

function invalidSchedule(expr: string, detail: string): PgpilotError {
  return new PgpilotError('INPUT_INVALID', `invalid backup schedule ${JSON.stringify(expr)}: ${detail}`, { hint: SCHEDULE_HINT });
}

/**
 * Checks a cron expression and returns it normalized (fields separated by single spaces).
 * Rejected, beyond what cron-parser rejects: anything but exactly 5 fields (cron-parser would read
 * a 6th as seconds, accept 4 or even an empty string, and expand `@daily`), `H` (a random value
 * per parse, so the schedule would not be a pure function of the text), and expressions that
 * never fire (e.g. '0 0 30 2 *').
 */
export function validateSchedule(expr: string): string {
  const fields = expr.trim().split(/\s+/).filter((field) => field.length > 0);
  if (fields.length !== 5) throw invalidSchedule(expr, `expected 5 fields (minute hour day-of-month month day-of-week), got ${fields.length}`);
  // 'H' as a value (alone or before a range/step), not as a letter of a name such as THU.
  if (fields.some((field) => /(^|[^A-Za-z])H([^A-Za-z]|$)/.test(field))) throw invalidSchedule(expr, "'H' (random) values are not supported");
  const normalized = fields.join(' ');
  try {
    // Evaluating once proves the expression can fire (the parser rejects impossible dates and gives up on endless searches).
    CronExpressionParser.parse(normalized, { currentDate: 0, tz: 'UTC' }).next();
  } catch (error) {
    throw invalidSchedule(expr, error instanceof Error ? error.message : String(error));
  }
  return normalized;
}

/** The first time the schedule fires strictly after `afterMs` (UTC), in ms. */
export function nextRunAfterMs(expr: string, afterMs: number): number {
  const normalized = validateSchedule(expr);
  if (!Number.isFinite(afterMs)) throw new PgpilotError('INPUT_INVALID', `not a time: ${afterMs}`);
  try {
    // cron-parser's next() is strictly after currentDate (a time exactly on a slot yields the following slot).
    const next = CronExpressionParser.parse(normalized, { currentDate: afterMs, tz: 'UTC' }).next().getTime();
    // Invariant relied on by decideBackupRun; guards against a library change.
    if (!(next > afterMs)) throw new Error(`cron-parser returned ${next}, not after ${afterMs}`);
    return next;
  } catch (error) {
    throw invalidSchedule(expr, error instanceof Error ? error.message : String(error));
  }
}

export interface BackupRunInput {
  nowMs: number;
  /** Cron expression (UTC); null = scheduled backups disabled. */
  schedule: string | null;
  /** Start of the newest backup attempt of any outcome (running, complete or failed); null if none. */
  lastStartedMs: number | null;
  /** When scheduling began (e.g. cluster creation): the first run is the first slot after it. */
  referenceMs: number;
  /** A backup (scheduled or manual) is in progress. */
  running: boolean;
  /**
   * When the newest failed attempt failed (its finishedAt; its start is accepted too). It counts
   * only if it is the newest attempt, i.e. lastFailedMs >= lastStartedMs.
   */
  lastFailedMs: number | null;
  /** How long to wait after a failed attempt before the next try. */
  retryAfterFailureMs: number;
}

export type BackupRunDecision =
  | { kind: 'run'; dueMs: number; reason: string }
  /** `nextMs` is when to decide again; while a backup is running, decide again when it ends. */
  | { kind: 'wait'; nextMs: number; reason: string }
  | { kind: 'disabled' };

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

export function decideBackupRun(input: BackupRunInput): BackupRunDecision {
  const { nowMs, schedule, lastStartedMs, referenceMs, running, lastFailedMs, retryAfterFailureMs } = input;
  if (schedule === null) return { kind: 'disabled' };
  for (const [name, value] of Object.entries({ nowMs, referenceMs, lastStartedMs, lastFailedMs })) {
    if (value !== null && !Number.isFinite(value)) throw new PgpilotError('INPUT_INVALID', `${name} is not a time: ${value}`);
  }
  if (!Number.isFinite(retryAfterFailureMs) || retryAfterFailureMs < 0) {
    throw new PgpilotError('INPUT_INVALID', `retryAfterFailureMs must be >= 0, got ${retryAfterFailureMs}`);
  }

  // A failure matters only when no attempt started after it (that attempt supersedes it).
  const failureIsNewest = lastFailedMs !== null && (lastStartedMs === null || lastFailedMs >= lastStartedMs);
  const dueMs = failureIsNewest ? lastFailedMs + retryAfterFailureMs : nextRunAfterMs(schedule, lastStartedMs ?? referenceMs);

  if (running) {
    return { kind: 'wait', nextMs: Math.max(dueMs, nowMs), reason: 'a backup is running; deciding again when it ends' };
  }
  if (dueMs > nowMs) {
    const reason = failureIsNewest
      ? `the last attempt failed at ${iso(lastFailedMs)}; retrying at ${iso(dueMs)}`
      : `next scheduled run at ${iso(dueMs)}`;
    return { kind: 'wait', nextMs: dueMs, reason };
  }
  if (failureIsNewest) return { kind: 'run', dueMs, reason: `retry: the last attempt failed at ${iso(lastFailedMs)}` };
  // More than one slot passed since the last attempt (agent down, or backups were disabled): run once for all of them.
  const missedSeveral = nextRunAfterMs(schedule, dueMs) <= nowMs;
  const reason = missedSeveral ? `catch-up: the run due at ${iso(dueMs)} and later ones were missed; running once` : `scheduled run due at ${iso(dueMs)}`;
  return { kind: 'run', dueMs, reason };
}
