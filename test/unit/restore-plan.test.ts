/**
 * The restore planner (src/backup/restore-plan.ts): which complete backup a restore starts from
 * (the newest, a named one, or the newest consistent before a target time / LSN), and every
 * target it refuses before anything is created: before the oldest usable backup, before the named
 * backup is consistent, after the newest archived WAL (by archive time for time targets, by the
 * end of the newest archived segment for LSN targets). Plus `parseTargetTime`: timezones are
 * required, the user's text is kept verbatim for postgres, the millisecond value is exact.
 * Every BackupRecord used here is checked against the real schema.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { backupRecordSchema, newBackupId, type BackupRecord } from '../../src/backup/backup-record.js';
import { parseTargetTime, planRestore, type ArchivedWal, type RestoreTarget } from '../../src/backup/restore-plan.js';
import { isPgpilotError } from '../../src/shared/errors.js';

const at = (iso: string): number => Date.parse(iso);

interface RecordSpec {
  started: string;
  finished?: string | null;
  status?: BackupRecord['status'];
  startLsn?: string | null;
  stopLsn?: string | null;
  timeline?: number | null;
}

/** A BackupRecord that the schema accepts (parsed, so a mistake here fails loudly). */
function record(spec: RecordSpec): BackupRecord {
  const status = spec.status ?? 'complete';
  const complete = status === 'complete';
  const files = complete ? [{ name: 'base.tar.gz', sizeBytes: 4096, sha256: 'a'.repeat(64), rawSizeBytes: 16384 }] : [];
  return backupRecordSchema.parse({
    version: 1,
    id: newBackupId(at(spec.started)),
    cluster: 'shop',
    systemIdentifier: '7321456789012345678',
    status,
    kind: 'scheduled',
    sourceNode: 'node2',
    sourceRole: 'replica',
    startedAt: spec.started,
    finishedAt: spec.finished === undefined ? null : spec.finished,
    startLsn: spec.startLsn ?? null,
    stopLsn: spec.stopLsn ?? null,
    timeline: spec.timeline === undefined ? (complete ? 1 : null) : spec.timeline,
    pgVersion: '15.4',
    sizeBytes: complete ? 4096 : 0,
    files,
    ...(status === 'failed' ? { error: 'pg_basebackup failed' } : {}),
  });
}

const B1 = record({ started: '2026-11-20T03:00:00Z', finished: '2026-11-20T03:10:00Z', startLsn: '0/2000028', stopLsn: '0/2000100' });
const B2 = record({ started: '2026-11-21T03:00:00Z', finished: '2026-11-21T03:12:00Z', startLsn: '0/5000028', stopLsn: '0/5000138' });
const FAILED = record({ started: '2026-11-22T03:00:00Z', finished: '2026-11-22T03:01:00Z', status: 'failed' });
const RUNNING = record({ started: '2026-11-23T03:00:00Z', status: 'running' });
const ALL = [B1, B2, FAILED, RUNNING];

/** Segments ...02 to ...0A on timeline 1, one archived every 8 hours from Nov 20 03:00 (the newest at Nov 22 19:00). */
const WAL: ArchivedWal[] = Array.from({ length: 9 }, (_, i) => ({
  name: `0000000100000000000000${(i + 2).toString(16).toUpperCase().padStart(2, '0')}`,
  archivedAtMs: at('2026-11-20T03:00:00Z') + i * 8 * 3_600_000,
}));
const NEWEST_WAL_MS = at('2026-11-22T19:00:00Z');

function plan(overrides: { backups?: BackupRecord[]; wal?: ArchivedWal[]; backupId?: string; target?: RestoreTarget } = {}): ReturnType<typeof planRestore> {
  return planRestore({
    cluster: 'shop',
    backups: overrides.backups ?? ALL,
    wal: overrides.wal ?? WAL,
    ...(overrides.backupId === undefined ? {} : { backupId: overrides.backupId }),
    target: overrides.target ?? { kind: 'latest' },
  });
}

function time(iso: string): RestoreTarget {
  return { kind: 'time', text: iso, timeMs: at(iso) };
}

function fails(code: string, pattern: RegExp): (error: unknown) => boolean {
  return (error: unknown) => {
    assert.ok(isPgpilotError(error), `a PgpilotError, got ${String(error)}`);
    assert.equal(error.code, code);
    assert.match(error.message, pattern);
    return true;
  };
}

void describe('planRestore fixtures', () => {
  void it('are what the tests assume', () => {
    assert.equal(B1.id, '20261120T030000Z');
    assert.equal(B2.id, '20261121T030000Z');
    assert.equal(WAL.length, 9);
    assert.equal(Math.max(...WAL.map((w) => w.archivedAtMs)), NEWEST_WAL_MS);
    assert.equal(WAL.at(-1)?.name, '00000001000000000000000A');
  });
});

void describe('planRestore: choosing the backup', () => {
  void it('refuses when there is no complete backup', () => {
    assert.throws(() => plan({ backups: [] }), fails('BACKUP_NOT_FOUND', /cluster shop has no complete backup/));
    assert.throws(() => plan({ backups: [FAILED, RUNNING] }), fails('BACKUP_NOT_FOUND', /no complete backup/));
    assert.throws(() => plan({ backups: [FAILED], backupId: FAILED.id }), fails('BACKUP_NOT_FOUND', /no complete backup/));
  });

  void it('refuses an unknown backup id', () => {
    assert.throws(() => plan({ backupId: '20261119T030000Z' }), fails('BACKUP_NOT_FOUND', /no backup "20261119T030000Z" for cluster shop/));
    assert.throws(() => plan({ backupId: 'latest' }), fails('BACKUP_NOT_FOUND', /no backup "latest"/));
  });

  void it('refuses a failed or running backup id', () => {
    assert.throws(() => plan({ backupId: FAILED.id }), fails('INPUT_INVALID', new RegExp(`backup ${FAILED.id} is failed, not complete`)));
    assert.throws(() => plan({ backupId: RUNNING.id }), fails('INPUT_INVALID', new RegExp(`backup ${RUNNING.id} is running, not complete`)));
  });

  void it('latest: the newest complete backup, whatever the input order; newer failed/running ones do not count', () => {
    const expected = { backup: B2, target: { kind: 'latest' }, newestWalAtMs: NEWEST_WAL_MS };
    assert.deepEqual(plan(), expected);
    assert.deepEqual(plan({ backups: [RUNNING, B2, FAILED, B1] }), expected);
    assert.deepEqual(plan({ backups: [B1, FAILED] }).backup, B1);
  });

  void it('latest with --backup: the named one; an empty archive is allowed (the backup carries its own WAL)', () => {
    assert.deepEqual(plan({ backupId: B1.id }), { backup: B1, target: { kind: 'latest' }, newestWalAtMs: NEWEST_WAL_MS });
    assert.deepEqual(plan({ wal: [] }), { backup: B2, target: { kind: 'latest' }, newestWalAtMs: null });
  });
});

void describe('planRestore: time targets', () => {
  void it('picks the newest backup consistent (finished) at or before the target', () => {
    assert.equal(plan({ target: time('2026-11-21T03:12:00Z') }).backup.id, B2.id, 'exactly at B2 finishing');
    assert.equal(plan({ target: time('2026-11-21T03:11:59.999Z') }).backup.id, B1.id, 'a millisecond before');
    assert.equal(plan({ target: time('2026-11-21T03:05:00Z') }).backup.id, B1.id, 'while B2 was being copied');
    assert.equal(plan({ target: time('2026-11-20T03:10:00Z') }).backup.id, B1.id, 'exactly at B1 finishing');
    assert.deepEqual(plan({ target: time('2026-11-20T10:00:00Z') }), { backup: B1, target: time('2026-11-20T10:00:00Z'), newestWalAtMs: NEWEST_WAL_MS });
  });

  void it('refuses a time before the oldest backup was consistent', () => {
    for (const iso of ['2026-11-20T03:09:59.999Z', '2026-11-20T03:05:00Z', '2025-01-01T00:00:00Z']) {
      assert.throws(() => plan({ target: time(iso) }), fails('INPUT_INVALID', new RegExp(`target time ${iso.replace(/\./g, '\\.')} is before the oldest backup \\(${B1.id}, consistent at 2026-11-20T03:10:00Z\\)`)), iso);
    }
  });

  void it('refuses a time after the newest archived WAL; the newest archive time itself is fine', () => {
    const newestIso = new Date(NEWEST_WAL_MS).toISOString();
    assert.equal(plan({ target: time(newestIso) }).backup.id, B2.id);
    const later = new Date(NEWEST_WAL_MS + 1).toISOString();
    assert.throws(() => plan({ target: time(later) }), fails('INPUT_INVALID', new RegExp(`target time ${later.replace(/\./g, '\\.')} is after the newest archived WAL \\(archived ${newestIso.replace(/\./g, '\\.')}\\)`)));
  });

  void it('refuses any time target with an empty archive', () => {
    assert.throws(() => plan({ wal: [], target: time('2026-11-21T04:00:00Z') }), fails('INPUT_INVALID', /after the newest archived WAL \(the archive is empty\)/));
  });

  void it('with --backup, refuses a time before that backup was consistent and accepts a later one', () => {
    assert.throws(
      () => plan({ backupId: B2.id, target: time('2026-11-21T03:11:00Z') }),
      fails('INPUT_INVALID', new RegExp(`target time 2026-11-21T03:11:00Z is before backup ${B2.id} was consistent \\(2026-11-21T03:12:00Z\\)`)),
    );
    // An older backup with a later target replays more WAL, but is allowed.
    assert.equal(plan({ backupId: B1.id, target: time('2026-11-21T04:00:00Z') }).backup.id, B1.id);
    assert.throws(() => plan({ backupId: FAILED.id, target: time('2026-11-23T00:00:00Z') }), fails('INPUT_INVALID', /is failed, not complete/));
  });

  void it('prefers the newer backup when an older one finished later (both are consistent)', () => {
    const slow = record({ started: '2026-11-20T01:00:00Z', finished: '2026-11-20T05:00:00Z', startLsn: '0/1000028', stopLsn: '0/2000200' });
    const quick = record({ started: '2026-11-20T02:00:00Z', finished: '2026-11-20T02:30:00Z', startLsn: '0/1800028', stopLsn: '0/1800100' });
    assert.equal(plan({ backups: [slow, quick], target: time('2026-11-20T06:00:00Z') }).backup.id, quick.id);
    assert.equal(plan({ backups: [slow, quick], target: time('2026-11-20T03:00:00Z') }).backup.id, quick.id);
  });
});

void describe('planRestore: LSN targets', () => {
  const lsn = (value: string): RestoreTarget => ({ kind: 'lsn', lsn: value });

  void it('picks the newest backup whose stop LSN is at or before the target', () => {
    assert.deepEqual(plan({ target: lsn('0/5000138') }), { backup: B2, target: lsn('0/5000138'), newestWalAtMs: NEWEST_WAL_MS });
    assert.equal(plan({ target: lsn('0/5000137') }).backup.id, B1.id);
    assert.equal(plan({ target: lsn('0/2000100') }).backup.id, B1.id);
    assert.equal(plan({ target: lsn('0/9000000') }).backup.id, B2.id);
  });

  void it('refuses a target before the oldest backup\'s stop LSN', () => {
    assert.throws(() => plan({ target: lsn('0/20000FF') }), fails('INPUT_INVALID', new RegExp(`target LSN 0/20000FF is before backup ${B1.id} was consistent \\(0/2000100\\)`)));
    assert.throws(() => plan({ target: lsn('0/1000000') }), fails('INPUT_INVALID', /before backup 20261120T030000Z was consistent/));
  });

  void it('with --backup, refuses a target before that backup\'s stop LSN (and says an earlier backup would do)', () => {
    assert.throws(
      () => plan({ backupId: B2.id, target: lsn('0/3000000') }),
      (error: unknown) =>
        isPgpilotError(error) && error.code === 'INPUT_INVALID' && error.message === `target LSN 0/3000000 is before backup ${B2.id} was consistent (0/5000138)` && (error.hint ?? '').includes('or an earlier backup'),
    );
    assert.equal(plan({ backupId: B1.id, target: lsn('0/6000000') }).backup.id, B1.id);
  });

  void it('refuses a target beyond the end of the newest archived segment; the end itself is fine', () => {
    // Newest segment ...0A covers 0/A000000 .. 0/AFFFFFF; its end (exclusive) is 0/B000000.
    assert.equal(plan({ target: lsn('0/AFFFFFF') }).backup.id, B2.id);
    assert.equal(plan({ target: lsn('0/B000000') }).backup.id, B2.id);
    assert.throws(() => plan({ target: lsn('0/B000001') }), fails('INPUT_INVALID', /target LSN 0\/B000001 is after the newest archived WAL \(0\/B000000\)/));
    assert.throws(() => plan({ target: lsn('1/0') }), fails('INPUT_INVALID', /after the newest archived WAL/));
  });

  void it('counts .partial segments, but not .history or .backup files, as archived WAL', () => {
    const partial: ArchivedWal[] = [{ name: '00000001000000000000000C.partial', archivedAtMs: 1 }];
    assert.equal(plan({ wal: partial, target: lsn('0/D000000') }).backup.id, B2.id);
    assert.throws(() => plan({ wal: partial, target: lsn('0/D000001') }), fails('INPUT_INVALID', /\(0\/D000000\)/));
    const noSegments: ArchivedWal[] = [
      { name: '00000002.history', archivedAtMs: 1 },
      { name: '000000010000000000000005.00000028.backup', archivedAtMs: 2 },
    ];
    assert.throws(() => plan({ wal: noSegments, target: lsn('0/5000200') }), fails('INPUT_INVALID', /after the newest archived WAL \(the archive is empty\)/));
  });

  void it('takes the newest segment end over every timeline', () => {
    const wal: ArchivedWal[] = [
      { name: '00000002000000000000000E', archivedAtMs: 1 },
      { name: '000000010000000000000010', archivedAtMs: 2 },
    ];
    assert.equal(plan({ wal, target: lsn('0/11000000') }).backup.id, B2.id);
    assert.throws(() => plan({ wal, target: lsn('0/11000001') }), fails('INPUT_INVALID', /\(0\/11000000\)/));
  });

  void it('accepts the backup\'s own stop LSN with an empty archive (the backup carries that WAL), nothing past it', () => {
    assert.deepEqual(plan({ wal: [], target: lsn('0/5000138') }), { backup: B2, target: lsn('0/5000138'), newestWalAtMs: null });
    assert.throws(() => plan({ wal: [], target: lsn('0/5000139') }), fails('INPUT_INVALID', /after the newest archived WAL \(the archive is empty\)/));
  });
});

void describe('parseTargetTime', () => {
  void it('parses ISO 8601 with Z; the text for postgres has a numeric offset (it refuses Z in recovery_target_time)', () => {
    assert.deepEqual(parseTargetTime('2026-11-26T07:30:00Z'), { kind: 'time', text: '2026-11-26 07:30:00+00:00', timeMs: Date.UTC(2026, 10, 26, 7, 30, 0) });
    assert.equal(parseTargetTime('2026-11-26t07:30:00z').timeMs, Date.UTC(2026, 10, 26, 7, 30, 0));
  });

  void it('parses postgres-style text with microseconds and a short offset, to the millisecond; the text keeps the microseconds', () => {
    assert.deepEqual(parseTargetTime('2026-11-26 07:30:00.123456+00'), { kind: 'time', text: '2026-11-26 07:30:00.123456+00:00', timeMs: Date.UTC(2026, 10, 26, 7, 30, 0, 123) });
    assert.equal(parseTargetTime('2026-11-26 07:30:00.9+00').timeMs, Date.UTC(2026, 10, 26, 7, 30, 0, 900));
    assert.equal(parseTargetTime('2026-11-26 07:30:00 +00').timeMs, Date.UTC(2026, 10, 26, 7, 30, 0));
  });

  void it('applies offsets in every accepted form', () => {
    const expected = Date.UTC(2026, 10, 26, 2, 0, 0); // 07:30 at +05:30
    for (const text of ['2026-11-26T07:30:00+05:30', '2026-11-26T07:30:00+0530', '2026-11-26 07:30+05:30']) {
      assert.equal(parseTargetTime(text).timeMs, expected, text);
    }
    assert.equal(parseTargetTime('2026-11-26T07:30:00-08').timeMs, Date.UTC(2026, 10, 26, 15, 30, 0));
    assert.equal(parseTargetTime('2026-12-31T23:30:00-01:00').timeMs, Date.UTC(2027, 0, 1, 0, 30, 0), 'across a year end');
  });

  void it('trims surrounding whitespace; seconds and offset minutes are spelled out', () => {
    const parsed = parseTargetTime('  2026-11-26 07:30:00+05:30\n');
    assert.equal(parsed.text, '2026-11-26 07:30:00+05:30');
    assert.equal(parseTargetTime('2026-11-26T07:30+0530').text, '2026-11-26 07:30:00+05:30');
    assert.equal(parsed.timeMs, Date.UTC(2026, 10, 26, 2, 0, 0));
  });

  void it('rejects a time without a timezone, and garbage', () => {
    const bad = [
      '2026-11-26T07:30:00',
      '2026-11-26 07:30:00.123456',
      '2026-11-26',
      '07:30:00Z',
      'yesterday',
      '',
      'now',
      '2026-11-26T07:30:00Z; select 1',
      '2026-11-26T07:30:00 UTC',
      '2026-13-01T00:00:00Z',
      '2026-11-26T25:00:00Z',
      '2026-11-26T07:60:00Z',
      '2026-11-26T07:30:00+25:00',
      '2026-11-26T07:30:00.1234567Z',
      '26-11-2026 07:30:00Z',
    ];
    for (const text of bad) {
      assert.throws(() => parseTargetTime(text), (error: unknown) => isPgpilotError(error) && error.code === 'INPUT_INVALID' && error.exitCode === 2 && (error.hint ?? '').includes('timezone'), JSON.stringify(text));
    }
  });

  void it('rejects a day that does not exist in its month', () => {
    for (const text of ['2026-02-30T00:00:00Z', '2026-02-29T12:00:00Z', '2026-04-31 07:30:00+00']) {
      assert.throws(() => parseTargetTime(text), (error: unknown) => isPgpilotError(error) && error.code === 'INPUT_INVALID', text);
    }
    assert.equal(parseTargetTime('2028-02-29T12:00:00Z').timeMs, Date.UTC(2028, 1, 29, 12), 'a leap day is fine');
  });
});
