/**
 * The retention planner: which backups and archived WAL files to delete. Pure: the caller lists
 * the catalog and the archive and passes `nowMs`; the executor deletes what the plan says.
 *
 * Backups (every input backup ends up in exactly one of `keep` / `delete`, with a reason):
 *  - Only `complete` backups are kept by the rules; the rules are a union (kept if any rule keeps it):
 *    - the newest complete backup is always kept;
 *    - keepMin N (default 1): the N newest complete backups;
 *    - keepDaily N: the newest complete backup of each of the N most recent UTC days that have one;
 *    - keepWeekly N: the newest complete backup of each of the N most recent ISO weeks (Monday to
 *      Sunday, UTC) that have one;
 *    - keepDays D: every complete backup started within D days (D x 24 h) before `nowMs`, or later.
 *    A complete backup no rule keeps is deleted.
 *  - `running` backups are never deleted.
 *  - `failed` backups started before the newest complete backup are deleted; newer ones are kept
 *    (for diagnosis) until a complete backup supersedes them.
 *
 * WAL (`deleteWal`): restoring a backup needs every WAL segment from its start segment onwards, on
 * its timeline and the timelines that follow, so the cut is the lowest start segment number among
 * the kept complete and running backups (by segment number, not by age: a backup on a timeline
 * branched from an older point can start below an older backup). Segment, `.partial` and `.backup`
 * files whose segment number is below the cut are deleted, whatever their timeline. `.history`
 * files are never deleted (recovery reads them to follow timelines; they are tiny). Names that are
 * not WAL file names are left alone. No WAL is deleted when no complete backup is kept, or when a
 * kept complete or running backup does not say where it starts (or names an invalid segment):
 * then the cut is unknown, and keeping WAL is the only safe answer.
 */
import { PgpilotError } from '../shared/errors.js';
import { DEFAULT_WAL_SEGMENT_SIZE_BYTES, parseWalFileName } from './wal-names.js';

export type RetentionBackupStatus = 'running' | 'complete' | 'failed';

export interface RetentionBackup {
  id: string;
  status: RetentionBackupStatus;
  startedAtMs: number;
  /** WAL segment file name holding the backup's start LSN (e.g. 000000010000000000000002). */
  startSegment?: string;
  timeline: number | null;
}

export interface RetentionPolicy {
  keepDaily?: number;
  keepWeekly?: number;
  keepDays?: number;
  /** Default 1. */
  keepMin?: number;
}

export interface RetentionInput {
  backups: RetentionBackup[];
  policy: RetentionPolicy;
  nowMs: number;
  /** File names in the WAL archive. */
  walFiles: string[];
  segmentSizeBytes?: number;
}

export interface RetentionPlan {
  /** Backup ids kept, newest first. */
  keep: string[];
  /** Backup ids to delete, newest first. */
  delete: string[];
  /** WAL archive file names to delete, sorted. */
  deleteWal: string[];
  /** Why each backup id is kept or deleted. */
  reasons: Record<string, string>;
  /** The lowest segment number kept (as the start segment's file name), or null when no WAL is deleted for lack of a cut. */
  walCutSegment: string | null;
  /** Why WAL is (or is not) deleted. */
  walReason: string;
}

const DAY_MS = 24 * 60 * 60 * 1000;

/** `YYYY-MM-DD` of the UTC day containing `ms`. */
export function utcDayKey(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

/** ISO 8601 week of the UTC day containing `ms`, as `YYYY-Www` (the ISO week-numbering year may differ from the calendar year). */
export function isoWeekKey(ms: number): string {
  const day = new Date(ms);
  const midnightMs = Date.UTC(day.getUTCFullYear(), day.getUTCMonth(), day.getUTCDate());
  const mondayBased = (day.getUTCDay() + 6) % 7;
  // A week belongs to the year of its Thursday; its Thursday is ordinal day 7w-6..7w of that year.
  const thursday = new Date(midnightMs + (3 - mondayBased) * DAY_MS);
  const isoYear = thursday.getUTCFullYear();
  const ordinal = Math.round((thursday.getTime() - Date.UTC(isoYear, 0, 1)) / DAY_MS) + 1;
  const week = Math.ceil(ordinal / 7);
  return `${String(isoYear).padStart(4, '0')}-W${String(week).padStart(2, '0')}`;
}

function checkCount(name: string, value: number | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!Number.isInteger(value) || value < 0) {
    throw new PgpilotError('INPUT_INVALID', `retention ${name} must be a whole number >= 0, got ${value}`);
  }
  return value;
}

/** Newest first; ties (same start ms) broken by id, descending, so the order is total and stable. */
function newestFirst(a: RetentionBackup, b: RetentionBackup): number {
  if (a.startedAtMs !== b.startedAtMs) return b.startedAtMs - a.startedAtMs;
  return a.id < b.id ? 1 : a.id > b.id ? -1 : 0;
}

/** The newest backup of each of the `count` most recent periods that have one (`sorted` is newest first). */
function newestPerPeriod(sorted: RetentionBackup[], count: number, periodOf: (ms: number) => string): Array<{ backup: RetentionBackup; period: string }> {
  const chosen: Array<{ backup: RetentionBackup; period: string }> = [];
  const seen = new Set<string>();
  for (const backup of sorted) {
    if (chosen.length >= count) break;
    const period = periodOf(backup.startedAtMs);
    if (seen.has(period)) continue;
    seen.add(period);
    chosen.push({ backup, period });
  }
  return chosen;
}

export function planRetention(input: RetentionInput): RetentionPlan {
  const { backups, policy, nowMs, walFiles } = input;
  const segmentSizeBytes = input.segmentSizeBytes ?? DEFAULT_WAL_SEGMENT_SIZE_BYTES;
  if (!Number.isFinite(nowMs)) throw new PgpilotError('INPUT_INVALID', `nowMs is not a time: ${nowMs}`);
  const keepDaily = checkCount('keepDaily', policy.keepDaily);
  const keepWeekly = checkCount('keepWeekly', policy.keepWeekly);
  const keepDays = checkCount('keepDays', policy.keepDays);
  const keepMin = checkCount('keepMin', policy.keepMin) ?? 1;

  const ids = new Set<string>();
  for (const backup of backups) {
    if (ids.has(backup.id)) throw new PgpilotError('INPUT_INVALID', `backup id ${backup.id} is listed twice`);
    ids.add(backup.id);
    if (!Number.isFinite(backup.startedAtMs)) throw new PgpilotError('INPUT_INVALID', `backup ${backup.id} has no valid start time`);
  }

  const sorted = [...backups].sort(newestFirst);
  const complete = sorted.filter((backup) => backup.status === 'complete');
  const keepReasons = new Map<string, string[]>();
  const keepFor = (backup: RetentionBackup, reason: string): void => {
    const list = keepReasons.get(backup.id) ?? [];
    list.push(reason);
    keepReasons.set(backup.id, list);
  };

  const newestComplete = complete[0];
  if (newestComplete) keepFor(newestComplete, 'newest complete backup');
  complete.slice(0, keepMin).forEach((backup, index) => keepFor(backup, `keepMin ${keepMin} (#${index + 1})`));
  if (keepDaily !== undefined) {
    for (const { backup, period } of newestPerPeriod(complete, keepDaily, utcDayKey)) keepFor(backup, `keepDaily ${keepDaily} (${period})`);
  }
  if (keepWeekly !== undefined) {
    for (const { backup, period } of newestPerPeriod(complete, keepWeekly, isoWeekKey)) keepFor(backup, `keepWeekly ${keepWeekly} (${period})`);
  }
  if (keepDays !== undefined) {
    const sinceMs = nowMs - keepDays * DAY_MS;
    for (const backup of complete) if (backup.startedAtMs >= sinceMs) keepFor(backup, `keepDays ${keepDays}`);
  }

  const keep: string[] = [];
  const del: string[] = [];
  const reasons: Record<string, string> = {};
  for (const backup of sorted) {
    const kept = keepReasons.get(backup.id);
    let reason: string;
    let keepIt: boolean;
    if (backup.status === 'running') {
      [keepIt, reason] = [true, 'running (never deleted)'];
    } else if (backup.status === 'failed') {
      const superseded = newestComplete !== undefined && newestFirst(backup, newestComplete) > 0;
      [keepIt, reason] = superseded
        ? [false, `failed, started before the newest complete backup ${newestComplete.id}`]
        : [true, 'failed, newer than any complete backup (kept for diagnosis)'];
    } else if (kept) {
      [keepIt, reason] = [true, kept.join('; ')];
    } else {
      [keepIt, reason] = [false, 'complete, kept by no retention rule'];
    }
    (keepIt ? keep : del).push(backup.id);
    reasons[backup.id] = reason;
  }

  const wal = planWalDeletion(
    sorted.filter((backup) => (backup.status === 'complete' && keepReasons.has(backup.id)) || backup.status === 'running'),
    walFiles,
    segmentSizeBytes,
  );
  return { keep, delete: del, reasons, ...wal };
}

function planWalDeletion(
  needed: RetentionBackup[],
  walFiles: string[],
  segmentSizeBytes: number,
): { deleteWal: string[]; walCutSegment: string | null; walReason: string } {
  const none = (walReason: string): { deleteWal: string[]; walCutSegment: null; walReason: string } => ({ deleteWal: [], walCutSegment: null, walReason });
  if (!needed.some((backup) => backup.status === 'complete')) return none('no complete backup is kept; keeping all WAL');

  let cut: { segmentNumber: number; name: string } | null = null;
  for (const backup of needed) {
    // Unknown start (a running backup that has not reported it yet, or an incomplete record): the
    // cut is unknown. Even a running backup can start below a kept one (a branched timeline), so no guessing.
    if (backup.startSegment === undefined) return none(`${backup.status} backup ${backup.id} has no start segment; keeping all WAL`);
    const parsed = parseWalFileName(backup.startSegment, segmentSizeBytes);
    if (parsed === null || parsed.kind !== 'segment') return none(`kept backup ${backup.id} has an invalid start segment ${JSON.stringify(backup.startSegment)}; keeping all WAL`);
    if (cut === null || parsed.segmentNumber < cut.segmentNumber) cut = { segmentNumber: parsed.segmentNumber, name: parsed.name };
  }
  if (cut === null) return none('no kept backup has a start segment; keeping all WAL'); // unreachable: a complete one sets it

  const deleteWal: string[] = [];
  for (const name of walFiles) {
    const parsed = parseWalFileName(name, segmentSizeBytes);
    if (parsed === null || parsed.kind === 'history') continue;
    if (parsed.segmentNumber < cut.segmentNumber) deleteWal.push(name);
  }
  deleteWal.sort();
  return { deleteWal, walCutSegment: cut.name, walReason: `deleting WAL below segment ${cut.name} (the lowest start among kept backups), on every timeline` };
}
