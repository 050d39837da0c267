/**
 * The backup catalog record and its parsers (src/backup/backup-record.ts): backup ids are the UTC
 * start second and sort like time; a `complete` record must carry what a restore needs and a size
 * that adds up; object names cannot escape the backup's prefix; and `parseBackupManifest` reads a
 * real PostgreSQL 15 `backup_manifest` (recorded with pg_basebackup, Files trimmed) plus the
 * multi-timeline shape postgres writes newest timeline first.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { backupRecordSchema, newBackupId, parseBackupId, parseBackupManifest, type BackupRecord } from '../../src/backup/backup-record.js';
import { isPgpilotError } from '../../src/shared/errors.js';

// dist/test/unit -> repository root -> test/fixtures
const fixture = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../test/fixtures/backup_manifest-15.json');
const recordedManifest = readFileSync(fixture, 'utf8');

const SHA = 'a'.repeat(64);

function completeRecord(overrides: Partial<BackupRecord> = {}): BackupRecord {
  return {
    version: 1,
    id: '20240105T030000Z',
    cluster: 'main',
    systemIdentifier: '7311234567890123456',
    status: 'complete',
    kind: 'scheduled',
    sourceNode: 'node2',
    sourceRole: 'replica',
    startedAt: '2024-01-05T03:00:00.000Z',
    finishedAt: '2024-01-05T03:04:10.123Z',
    startLsn: '0/2000028',
    stopLsn: '0/2000100',
    timeline: 1,
    pgVersion: '15.4',
    sizeBytes: 1000 + 24,
    files: [
      { name: 'base.tar.gz', sizeBytes: 1000, sha256: SHA, rawSizeBytes: 5000 },
      { name: 'backup_manifest', sizeBytes: 24, sha256: 'b'.repeat(64), rawSizeBytes: 24 },
    ],
    ...overrides,
  };
}

function problems(value: unknown): string[] {
  const result = backupRecordSchema.safeParse(value);
  return result.success ? [] : result.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`);
}

void describe('newBackupId / parseBackupId', () => {
  void it('formats the UTC start second, zero-padded', () => {
    assert.equal(newBackupId(Date.UTC(2024, 0, 5, 3, 0, 0)), '20240105T030000Z');
    assert.equal(newBackupId(Date.UTC(2024, 11, 31, 23, 59, 59, 999)), '20241231T235959Z', 'milliseconds are truncated, not rounded');
    assert.equal(newBackupId(0), '19700101T000000Z');
  });

  void it('sorts as strings in time order', () => {
    const times = [Date.UTC(2024, 8, 9, 23), Date.UTC(2024, 9, 1), Date.UTC(2024, 9, 1, 0, 0, 1), Date.UTC(2025, 0, 1), Date.UTC(2024, 1, 29, 12)];
    const ids = times.map(newBackupId);
    assert.deepEqual([...ids].sort(), [...times].sort((a, b) => a - b).map(newBackupId));
  });

  void it('parses back to the start second', () => {
    for (const ms of [0, Date.UTC(2024, 1, 29, 12, 34, 56), Date.UTC(2038, 0, 19, 3, 14, 8), Date.UTC(9999, 11, 31, 23, 59, 59)]) {
      assert.equal(parseBackupId(newBackupId(ms)), ms);
    }
    assert.equal(parseBackupId(newBackupId(Date.UTC(2024, 0, 1, 0, 0, 0, 750))), Date.UTC(2024, 0, 1));
  });

  void it('rejects non-ids and impossible dates', () => {
    for (const bad of ['', '20240105T030000', '20240105t030000Z', '2024-01-05T03:00:00Z', '20240105T0300Z', ' 20240105T030000Z', '20240230T000000Z', '20230229T000000Z', '20241301T000000Z', '20240100T000000Z', '20240105T240000Z', '20240105T036000Z', '20240105T030060Z', '../20240105T030000Z']) {
      assert.equal(parseBackupId(bad), null, bad);
    }
    assert.equal(parseBackupId('20240229T000000Z'), Date.UTC(2024, 1, 29), 'leap day exists in 2024');
  });

  void it('refuses times that do not make a 4-digit-year id', () => {
    assert.throws(() => newBackupId(Number.NaN), /not a time/);
    assert.throws(() => newBackupId(Date.UTC(10000, 0, 1)), /year out of range/);
  });
});

void describe('backupRecordSchema', () => {
  void it('accepts complete, running and failed records', () => {
    assert.deepEqual(problems(completeRecord()), []);
    const running = completeRecord({ status: 'running', finishedAt: null, startLsn: null, stopLsn: null, timeline: null, sizeBytes: 0, files: [] });
    assert.deepEqual(problems(running), []);
    const failed = completeRecord({ status: 'failed', stopLsn: null, timeline: null, sizeBytes: 0, files: [], error: 'pg_basebackup exited 1' });
    assert.deepEqual(problems(failed), []);
    assert.deepEqual(problems({ ...completeRecord(), finishedAt: '2024-01-05T04:04:10+01:00' }), [], 'an ISO time with an offset is accepted');
  });

  void it('requires a complete record to carry its WAL range, timeline, finish time and files', () => {
    assert.match(problems(completeRecord({ startLsn: null })).join('\n'), /startLsn: required when complete/);
    assert.match(problems(completeRecord({ stopLsn: null })).join('\n'), /stopLsn: required when complete/);
    assert.match(problems(completeRecord({ timeline: null })).join('\n'), /timeline: required when complete/);
    assert.match(problems(completeRecord({ finishedAt: null })).join('\n'), /finishedAt: required when complete/);
    assert.match(problems(completeRecord({ files: [], sizeBytes: 0 })).join('\n'), /files: a complete backup has at least one file/);
  });

  void it('requires a complete record size to be the sum of its files (a failed one may be mid-upload)', () => {
    assert.match(problems(completeRecord({ sizeBytes: 1000 })).join('\n'), /sizeBytes: must equal the sum of files\[\]\.sizeBytes \(1024\)/);
    const failedMidUpload = completeRecord({ status: 'failed', sizeBytes: 0, error: 'upload failed' });
    assert.deepEqual(problems(failedMidUpload), []);
  });

  void it('checks the lifecycle fields against the status', () => {
    assert.match(problems(completeRecord({ status: 'running' })).join('\n'), /finishedAt: must be null while running/);
    assert.match(problems(completeRecord({ status: 'failed', finishedAt: null })).join('\n'), /finishedAt: required when failed/);
    assert.match(problems(completeRecord({ finishedAt: '2024-01-05T02:59:59.000Z' })).join('\n'), /finishedAt: must not be before startedAt/);
    assert.match(problems(completeRecord({ startLsn: '0/2000100', stopLsn: '0/2000028' })).join('\n'), /stopLsn: must not be before startLsn/);
  });

  void it('rejects malformed fields', () => {
    const bad: Array<[string, Record<string, unknown>]> = [
      ['version', { version: 2 }],
      ['id', { id: '2024-01-05' }],
      ['cluster', { cluster: '' }],
      ['systemIdentifier', { systemIdentifier: '0x1234' }],
      ['status', { status: 'done' }],
      ['kind', { kind: 'auto' }],
      ['sourceRole', { sourceRole: 'leader' }],
      ['startedAt', { startedAt: 'yesterday' }],
      ['startLsn', { startLsn: '0:2000028' }],
      ['timeline', { timeline: 0 }],
      ['pgVersion', { pgVersion: '' }],
      ['sizeBytes', { sizeBytes: -1 }],
      ['files', { files: [{ name: 'base.tar.gz', sizeBytes: 1024, sha256: SHA.toUpperCase(), rawSizeBytes: 1 }] }],
      ['files', { files: [{ name: 'base.tar.gz', sizeBytes: 1024, sha256: 'abc', rawSizeBytes: 1 }] }],
      ['files', { files: [{ name: 'base.tar.gz', sizeBytes: 1024, sha256: SHA }] }],
    ];
    for (const [field, override] of bad) {
      const found = problems({ ...completeRecord(), ...override });
      assert.ok(found.some((p) => p.startsWith(field)), `${JSON.stringify(override)} -> ${found.join('; ')}`);
    }
  });

  void it('never throws on garbage (readers skip unreadable records), whatever fields are broken', () => {
    const garbage: unknown[] = [
      null,
      42,
      'text',
      [],
      {},
      { ...completeRecord(), startLsn: 'x', stopLsn: 'y' },
      { ...completeRecord(), startLsn: 'x' },
      { ...completeRecord(), files: 'none' },
      { ...completeRecord(), files: [null] },
      { ...completeRecord(), startedAt: 'x', finishedAt: 'y' },
    ];
    for (const value of garbage) {
      assert.equal(backupRecordSchema.safeParse(value).success, false, JSON.stringify(value));
    }
  });

  void it('keeps object names to one safe path component, unique', () => {
    for (const name of ['../base.tar', 'a/b.tar', '/etc/passwd', '.hidden', '-rf', '', 'a..b', 'base tar', 'a\\b']) {
      const files = [{ name, sizeBytes: 1, sha256: SHA, rawSizeBytes: 1 }];
      assert.ok(problems(completeRecord({ files, sizeBytes: 1 })).some((p) => p.startsWith('files.0.name')), JSON.stringify(name));
    }
    for (const name of ['base.tar', 'base.tar.gz', 'pg_wal.tar.zst', '16385.tar', 'backup_manifest']) {
      assert.deepEqual(problems(completeRecord({ files: [{ name, sizeBytes: 1, sha256: SHA, rawSizeBytes: 1 }], sizeBytes: 1 })), [], name);
    }
    const duplicate = { name: 'base.tar', sizeBytes: 1, sha256: SHA, rawSizeBytes: 1 };
    assert.match(problems(completeRecord({ files: [duplicate, duplicate], sizeBytes: 2 })).join('\n'), /files: file names must be unique/);
  });

  void it('round-trips through JSON unchanged', () => {
    const record = completeRecord({ error: undefined });
    delete record.error;
    assert.deepEqual(backupRecordSchema.parse(JSON.parse(JSON.stringify(record))), record);
  });
});

void describe('parseBackupManifest', () => {
  void it('reads the recorded PostgreSQL 15 manifest', () => {
    assert.deepEqual(parseBackupManifest(recordedManifest), { timeline: 1, startLsn: '0/2000028', endTimeline: 1, endLsn: '0/2000100', fileCount: 6 });
  });

  void it('takes the start from the oldest timeline and the end from the newest (postgres lists newest first)', () => {
    const manifest = JSON.parse(recordedManifest) as Record<string, unknown>;
    // A backup of a standby that was promoted twice while it ran: timelines 3 <- 2 <- 1.
    manifest['WAL-Ranges'] = [
      { Timeline: 3, 'Start-LSN': '0/5000100', 'End-LSN': '0/6000200' },
      { Timeline: 2, 'Start-LSN': '0/4000000', 'End-LSN': '0/5000100' },
      { Timeline: 1, 'Start-LSN': '0/3000028', 'End-LSN': '0/4000000' },
    ];
    assert.deepEqual(parseBackupManifest(JSON.stringify(manifest)), { timeline: 1, startLsn: '0/3000028', endTimeline: 3, endLsn: '0/6000200', fileCount: 6 });
  });

  void it('normalizes LSNs to the form postgres prints', () => {
    const manifest = JSON.parse(recordedManifest) as Record<string, unknown>;
    manifest['WAL-Ranges'] = [{ Timeline: 1, 'Start-LSN': '0/02000028', 'End-LSN': '0/2000a00' }];
    const summary = parseBackupManifest(JSON.stringify(manifest));
    assert.equal(summary.startLsn, '0/2000028');
    assert.equal(summary.endLsn, '0/2000A00');
  });

  void it('accepts a version 2 manifest (PostgreSQL 17)', () => {
    // PG 17 prints System-Identifier as a bare uint64 (beyond 2^53): spliced in as text, as postgres writes it.
    const manifest = { ...(JSON.parse(recordedManifest) as Record<string, unknown>), 'PostgreSQL-Backup-Manifest-Version': 2 };
    const text = JSON.stringify(manifest).replace('{', '{"System-Identifier": 7311234567890123456, ');
    assert.equal(parseBackupManifest(text).startLsn, '0/2000028');
  });

  void it('fails with POSTGRES_FAILED on a manifest it cannot trust', () => {
    const base = JSON.parse(recordedManifest) as Record<string, unknown>;
    const variants: Array<[string, string]> = [
      ['not JSON', recordedManifest.slice(0, 200)],
      ['version', JSON.stringify({ ...base, 'PostgreSQL-Backup-Manifest-Version': 3 })],
      ['no WAL ranges', JSON.stringify({ ...base, 'WAL-Ranges': [] })],
      ['missing WAL ranges', JSON.stringify({ ...base, 'WAL-Ranges': undefined })],
      ['bad LSN', JSON.stringify({ ...base, 'WAL-Ranges': [{ Timeline: 1, 'Start-LSN': '0:2000028', 'End-LSN': '0/2000100' }] })],
      ['timeline 0', JSON.stringify({ ...base, 'WAL-Ranges': [{ Timeline: 0, 'Start-LSN': '0/2000028', 'End-LSN': '0/2000100' }] })],
      ['backwards range', JSON.stringify({ ...base, 'WAL-Ranges': [{ Timeline: 1, 'Start-LSN': '0/2000100', 'End-LSN': '0/2000028' }] })],
      [
        'repeated timeline',
        JSON.stringify({
          ...base,
          'WAL-Ranges': [
            { Timeline: 1, 'Start-LSN': '0/2000028', 'End-LSN': '0/2000100' },
            { Timeline: 1, 'Start-LSN': '0/2000028', 'End-LSN': '0/2000100' },
          ],
        }),
      ],
      ['no checksum', JSON.stringify({ ...base, 'Manifest-Checksum': undefined })],
      ['file without path', JSON.stringify({ ...base, Files: [{ Size: 3 }] })],
      ['not an object', '[]'],
    ];
    for (const [label, text] of variants) {
      assert.throws(
        () => parseBackupManifest(text),
        (error: unknown) => isPgpilotError(error) && error.code === 'POSTGRES_FAILED' && /backup_manifest is invalid/.test(error.message),
        label,
      );
    }
  });
});
