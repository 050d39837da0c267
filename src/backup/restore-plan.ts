/**
 * Which backup a restore starts from and whether its target can be reached (pure). Everything a
 * user can get wrong is refused here, before anything is created: an unknown or unusable backup
 * id, a target time or LSN before the backup that would have to be used (recovery cannot stop
 * before the copy is consistent), or after the newest archived WAL (recovery would end early).
 *
 * Time targets keep the user's text (postgres parses it, to the microsecond); the millisecond value
 * is only for these checks.
 */
import { PgpilotError } from '../shared/errors.js';
import { compareLsn } from '../shared/lsn.js';
import type { BackupRecord } from './backup-record.js';
import { parseWalFileName, segmentEndLsn } from './wal-names.js';

export type RestoreTarget = { kind: 'latest' } | { kind: 'time'; text: string; timeMs: number } | { kind: 'lsn'; lsn: string };

export interface ArchivedWal {
  name: string;
  archivedAtMs: number;
}

export interface RestorePlan {
  backup: BackupRecord;
  target: RestoreTarget;
  /** Newest archive time of any WAL file (null: the archive is empty). */
  newestWalAtMs: number | null;
}

const TIME_PATTERN = /^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}(?::\d{2})?)(\.\d{1,6})?\s*(Z|[+-]\d{2}(?::?\d{2})?)$/i;

/**
 * Parses a `--target-time` value; a timezone is required (a restore must not depend on the
 * machine's zone). `text` is what postgres gets: the same instant with a NUMERIC offset, because
 * postgres reads recovery_target_time before its time zone abbreviations are loaded and refuses
 * `Z` there ("invalid value for parameter").
 */
export function parseTargetTime(text: string): RestoreTarget & { kind: 'time' } {
  const trimmed = text.trim();
  const match = TIME_PATTERN.exec(trimmed);
  const hint = 'use an ISO 8601 time with a timezone, e.g. 2026-11-26T07:30:00Z or "2026-11-26 07:30:00.123456+00"';
  const invalid = (): PgpilotError => new PgpilotError('INPUT_INVALID', `invalid --target-time ${JSON.stringify(text)}`, { hint, exitCode: 2 });
  if (match === null) throw invalid();
  const [, date = '', clockText = '', fraction = '', zone = 'Z'] = match;
  const zoneNumeric = zone.toUpperCase() === 'Z' ? '+00:00' : /^[+-]\d{2}$/.test(zone) ? `${zone}:00` : zone.length === 5 ? `${zone.slice(0, 3)}:${zone.slice(3)}` : zone;
  const clock = clockText.length === 5 ? `${clockText}:00` : clockText;
  // Date.parse rolls impossible dates over (Feb 30 -> Mar 2): check the calendar date itself.
  const [year, month, day] = date.split('-').map(Number) as [number, number, number];
  const calendar = new Date(Date.UTC(year, month - 1, day));
  if (calendar.getUTCFullYear() !== year || calendar.getUTCMonth() !== month - 1 || calendar.getUTCDate() !== day) throw invalid();
  const [hours, minutes, seconds] = clock.split(':').map(Number) as [number, number, number];
  if (hours > 23 || minutes > 59 || seconds > 59) throw invalid();
  const timeMs = Date.parse(`${date}T${clock}${fraction.slice(0, 4)}${zoneNumeric}`);
  if (!Number.isFinite(timeMs)) throw invalid();
  return { kind: 'time', text: `${date} ${clock}${fraction}${zoneNumeric}`, timeMs };
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function finishedMs(backup: BackupRecord): number {
  return backup.finishedAt === null ? Number.POSITIVE_INFINITY : Date.parse(backup.finishedAt);
}

/** End LSN of the newest archived segment (any timeline), or null. */
function newestArchivedLsn(wal: readonly ArchivedWal[]): string | null {
  let newest: string | null = null;
  for (const file of wal) {
    const parsed = parseWalFileName(file.name);
    if (parsed === null || (parsed.kind !== 'segment' && parsed.kind !== 'partial')) continue;
    const end = segmentEndLsn(parsed.kind === 'partial' ? file.name.replace(/\.partial$/, '') : file.name);
    if (newest === null || compareLsn(end, newest) > 0) newest = end;
  }
  return newest;
}

export function planRestore(input: { cluster: string; backups: readonly BackupRecord[]; wal: readonly ArchivedWal[]; backupId?: string; target: RestoreTarget }): RestorePlan {
  const { cluster, target } = input;
  const complete = input.backups.filter((b) => b.status === 'complete').sort((a, b) => a.id.localeCompare(b.id));
  const newestWalAtMs = input.wal.length === 0 ? null : Math.max(...input.wal.map((w) => w.archivedAtMs));
  const listHint = `list them with: pgpilot backup list ${cluster}`;
  if (complete.length === 0) {
    throw new PgpilotError('BACKUP_NOT_FOUND', `cluster ${cluster} has no complete backup to restore from`, {
      hint: `take one with: pgpilot backup create ${cluster}`,
      exitCode: 2,
    });
  }
  let chosen: BackupRecord | undefined;
  if (input.backupId !== undefined) {
    const named = input.backups.find((b) => b.id === input.backupId);
    if (named === undefined) throw new PgpilotError('BACKUP_NOT_FOUND', `no backup ${JSON.stringify(input.backupId)} for cluster ${cluster}`, { hint: listHint, exitCode: 2 });
    if (named.status !== 'complete') throw new PgpilotError('INPUT_INVALID', `backup ${named.id} is ${named.status}, not complete`, { hint: listHint, exitCode: 2 });
    chosen = named;
  }

  if (target.kind === 'time') {
    if (chosen === undefined) chosen = [...complete].reverse().find((b) => finishedMs(b) <= target.timeMs);
    const oldest = complete[0] as BackupRecord;
    if (chosen === undefined) {
      throw new PgpilotError('INPUT_INVALID', `target time ${target.text} is before the oldest backup (${oldest.id}, consistent at ${oldest.finishedAt ?? '?'})`, {
        hint: `choose a time after ${oldest.finishedAt ?? oldest.startedAt}; ${listHint}`,
        exitCode: 2,
      });
    }
    if (finishedMs(chosen) > target.timeMs) {
      throw new PgpilotError('INPUT_INVALID', `target time ${target.text} is before backup ${chosen.id} was consistent (${chosen.finishedAt ?? '?'})`, {
        hint: `choose an earlier backup with --backup, or a later time; ${listHint}`,
        exitCode: 2,
      });
    }
    if (newestWalAtMs === null || target.timeMs > newestWalAtMs) {
      throw new PgpilotError('INPUT_INVALID', `target time ${target.text} is after the newest archived WAL (${newestWalAtMs === null ? 'the archive is empty' : `archived ${iso(newestWalAtMs)}`})`, {
        hint: 'choose an earlier time, or restore without --target-time to recover everything archived',
        exitCode: 2,
      });
    }
    return { backup: chosen, target, newestWalAtMs };
  }

  if (target.kind === 'lsn') {
    const reached = (b: BackupRecord): boolean => b.stopLsn !== null && compareLsn(b.stopLsn, target.lsn) <= 0;
    if (chosen === undefined) chosen = [...complete].reverse().find(reached);
    if (chosen === undefined || !reached(chosen)) {
      const which = chosen ?? complete[0];
      if (which === undefined) throw new PgpilotError('INTERNAL', 'no complete backup');
      throw new PgpilotError('INPUT_INVALID', `target LSN ${target.lsn} is before backup ${which.id} was consistent (${which.stopLsn ?? '?'})`, {
        hint: `choose an LSN after ${which.stopLsn ?? '?'}${input.backupId === undefined ? '' : ', or an earlier backup'}; ${listHint}`,
        exitCode: 2,
      });
    }
    const newestLsn = newestArchivedLsn(input.wal);
    const coveredByBackup = chosen.stopLsn !== null && compareLsn(target.lsn, chosen.stopLsn) <= 0;
    if (!coveredByBackup && (newestLsn === null || compareLsn(target.lsn, newestLsn) > 0)) {
      throw new PgpilotError('INPUT_INVALID', `target LSN ${target.lsn} is after the newest archived WAL (${newestLsn ?? 'the archive is empty'})`, {
        hint: 'choose an earlier LSN, or restore without a target to recover everything archived',
        exitCode: 2,
      });
    }
    return { backup: chosen, target, newestWalAtMs };
  }

  return { backup: chosen ?? (complete.at(-1) as BackupRecord), target, newestWalAtMs };
}
