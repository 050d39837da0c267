/**
 * The per-backup catalog record (`backup.json`, stored next to the backup's objects) and the
 * parsers around it. A record is written when a backup starts (`running`) and rewritten when it
 * ends (`complete` or `failed`); restore and retention trust only `complete` records, so the
 * schema makes a `complete` record carry everything a restore needs (start/stop LSN, timeline,
 * finish time) and a size that is the sum of its files. Backup ids are the UTC start second
 * (`20240105T030000Z`), so sorting ids as strings sorts backups by start time.
 * `parseBackupManifest` reads PostgreSQL's own `backup_manifest` (PG 13+) for the WAL range a
 * restore of the backup must replay.
 */
import { z } from 'zod';
import { PgpilotError } from '../shared/errors.js';
import { compareLsn, formatLsn, isLsn, parseLsn } from '../shared/lsn.js';

const BACKUP_ID = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/;

/** `YYYYMMDDTHHMMSSZ` of the UTC second containing `nowMs` (sortable as a string). */
export function newBackupId(nowMs: number): string {
  const date = new Date(nowMs);
  if (!Number.isFinite(nowMs) || Number.isNaN(date.getTime())) throw new Error(`not a time: ${nowMs}`);
  const year = date.getUTCFullYear();
  if (year < 0 || year > 9999) throw new Error(`year out of range for a backup id: ${year}`);
  const pad = (value: number, width = 2): string => String(value).padStart(width, '0');
  return (
    `${pad(year, 4)}${pad(date.getUTCMonth() + 1)}${pad(date.getUTCDate())}` +
    `T${pad(date.getUTCHours())}${pad(date.getUTCMinutes())}${pad(date.getUTCSeconds())}Z`
  );
}

/** The start time (ms, whole second) a backup id encodes, or null when `id` is not a backup id (incl. impossible dates). */
export function parseBackupId(id: string): number | null {
  const match = BACKUP_ID.exec(id);
  if (!match) return null;
  const [year, month, day, hour, minute, second] = match.slice(1).map(Number) as [number, number, number, number, number, number];
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  date.setUTCHours(hour, minute, second, 0);
  const ms = date.getTime();
  // Date.UTC rolls over (Feb 30 -> Mar 1, 24:00 -> next day): a round trip rejects those.
  return newBackupId(ms) === id ? ms : null;
}

const lsnSchema = z.string().refine(isLsn, 'not an LSN');
const isoTimeSchema = z.iso.datetime({ offset: true });

/**
 * A stored object's name, relative to the backup's own prefix: one path component, so a corrupt
 * or hostile record can never make restore read or write outside that prefix.
 */
const objectNameSchema = z
  .string()
  .regex(/^[A-Za-z0-9_][A-Za-z0-9._-]*$/, 'one path component of [A-Za-z0-9._-], not starting with "." or "-"')
  .refine((name) => !name.includes('..'), 'must not contain ".."');

export const backupFileSchema = z.object({
  name: objectNameSchema,
  /** Bytes as stored (after compression/encryption). */
  sizeBytes: z.number().int().nonnegative(),
  /** SHA-256 of the stored bytes, lower-case hex. */
  sha256: z.string().regex(/^[0-9a-f]{64}$/, 'lower-case hex SHA-256'),
  /** Bytes before compression (what pg_basebackup produced). */
  rawSizeBytes: z.number().int().nonnegative(),
});
export type BackupFile = z.infer<typeof backupFileSchema>;

export const backupStatusSchema = z.enum(['running', 'complete', 'failed']);
export type BackupStatus = z.infer<typeof backupStatusSchema>;

export const backupRecordSchema = z
  .object({
    version: z.literal(1),
    id: z.string().refine((id) => parseBackupId(id) !== null, 'not a backup id (YYYYMMDDTHHMMSSZ)'),
    cluster: z.string().min(1),
    /** pg_control's database system identifier (a uint64, kept as its decimal text). */
    systemIdentifier: z.string().regex(/^[0-9]{1,20}$/, 'decimal system identifier'),
    status: backupStatusSchema,
    kind: z.enum(['scheduled', 'manual']),
    sourceNode: z.string().min(1),
    sourceRole: z.enum(['primary', 'replica']),
    startedAt: isoTimeSchema,
    finishedAt: isoTimeSchema.nullable(),
    startLsn: lsnSchema.nullable(),
    stopLsn: lsnSchema.nullable(),
    timeline: z.number().int().min(1).max(0xffffffff).nullable(),
    /** The server version the backup was taken from, e.g. '15.4' (SHOW server_version). */
    pgVersion: z.string().min(1),
    /** Sum of `files[].sizeBytes` (enforced for complete records). */
    sizeBytes: z.number().int().nonnegative(),
    files: z.array(backupFileSchema),
    error: z.string().optional(),
  })
  .superRefine((record, ctx) => {
    const problem = (path: string, message: string): void => {
      ctx.addIssue({ code: 'custom', path: [path], message });
    };
    // Checked only where restore and listings rely on it: a failed record may be written mid-upload,
    // and a reader that rejected it would make the failed backup (and its objects) invisible to retention.
    const total = record.files.reduce((sum, file) => sum + file.sizeBytes, 0);
    if (record.status === 'complete' && total !== record.sizeBytes) problem('sizeBytes', `must equal the sum of files[].sizeBytes (${total})`);
    const names = record.files.map((file) => file.name);
    if (new Set(names).size !== names.length) problem('files', 'file names must be unique');
    if (record.status === 'running' && record.finishedAt !== null) problem('finishedAt', 'must be null while running');
    if (record.status !== 'running' && record.finishedAt === null) problem('finishedAt', `required when ${record.status}`);
    if (record.finishedAt !== null && Date.parse(record.finishedAt) < Date.parse(record.startedAt)) {
      problem('finishedAt', 'must not be before startedAt');
    }
    // Only a complete record is restorable, so it must carry the whole WAL range it needs.
    if (record.status === 'complete') {
      if (record.startLsn === null) problem('startLsn', 'required when complete');
      if (record.stopLsn === null) problem('stopLsn', 'required when complete');
      if (record.timeline === null) problem('timeline', 'required when complete');
      if (record.files.length === 0) problem('files', 'a complete backup has at least one file');
    }
    // zod runs this even when a field check failed: compare only well-formed LSNs (safeParse must never throw).
    const { startLsn, stopLsn } = record;
    if (startLsn !== null && stopLsn !== null && isLsn(startLsn) && isLsn(stopLsn) && compareLsn(stopLsn, startLsn) < 0) {
      problem('stopLsn', 'must not be before startLsn');
    }
  });
export type BackupRecord = z.infer<typeof backupRecordSchema>;

/** What a restore needs from PostgreSQL's `backup_manifest`. */
export interface BackupManifestSummary {
  /** Timeline the backup started on (backup_label's START TIMELINE). */
  timeline: number;
  /** Where replay must begin (on `timeline`). */
  startLsn: string;
  /** Timeline the backup ended on; differs from `timeline` only if a standby was promoted mid-backup. */
  endTimeline: number;
  /** The earliest LSN at which replay may end (on `endTimeline`). */
  endLsn: string;
  fileCount: number;
}

const manifestSchema = z.object({
  // 1 up to PG 16; PG 17 writes 2 (adds System-Identifier) with the same Files/WAL-Ranges shape.
  'PostgreSQL-Backup-Manifest-Version': z.union([z.literal(1), z.literal(2)]),
  Files: z.array(
    z
      .object({ Path: z.string().optional(), 'Encoded-Path': z.string().optional(), Size: z.number().int().nonnegative() })
      .refine((file) => file.Path !== undefined || file['Encoded-Path'] !== undefined, 'a file entry needs Path or Encoded-Path'),
  ),
  'WAL-Ranges': z
    .array(z.object({ Timeline: z.number().int().min(1).max(0xffffffff), 'Start-LSN': lsnSchema, 'End-LSN': lsnSchema }))
    .min(1),
  'Manifest-Checksum': z.string().regex(/^[0-9a-fA-F]{64}$/),
});

function invalidManifest(detail: string): PgpilotError {
  return new PgpilotError('POSTGRES_FAILED', `backup_manifest is invalid: ${detail}`, {
    hint: 'the base backup is unusable; take a new one (pg_basebackup writes backup_manifest on PostgreSQL 13+)',
  });
}

/**
 * Parses a `backup_manifest`. Postgres lists WAL ranges newest timeline first (it walks the end
 * timeline's history backwards), so the range with the lowest timeline holds the start and the
 * one with the highest timeline the end; this picks them by timeline, not by position, and
 * requires distinct timelines. The Manifest-Checksum is checked for shape only (pg_verifybackup
 * verifies it).
 */
export function parseBackupManifest(text: string): BackupManifestSummary {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw invalidManifest(`not JSON (${error instanceof Error ? error.message : String(error)})`);
  }
  const parsed = manifestSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw invalidManifest(`${issue?.path.join('.') || '(root)'}: ${issue?.message ?? 'unexpected shape'}`);
  }
  const ranges = parsed.data['WAL-Ranges'];
  const timelines = ranges.map((range) => range.Timeline);
  if (new Set(timelines).size !== timelines.length) throw invalidManifest('WAL-Ranges repeats a timeline');
  const byTimeline = [...ranges].sort((a, b) => a.Timeline - b.Timeline);
  const first = byTimeline[0]!;
  const last = byTimeline[byTimeline.length - 1]!;
  for (const range of ranges) {
    if (compareLsn(range['End-LSN'], range['Start-LSN']) < 0) throw invalidManifest(`WAL range of timeline ${range.Timeline} ends before it starts`);
  }
  return {
    timeline: first.Timeline,
    startLsn: formatLsn(parseLsn(first['Start-LSN'])),
    endTimeline: last.Timeline,
    endLsn: formatLsn(parseLsn(last['End-LSN'])),
    fileCount: parsed.data.Files.length,
  };
}
