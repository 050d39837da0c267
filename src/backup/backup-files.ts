/**
 * Bringing a stored base backup back to disk, checked twice: every stored file against the sha256
 * recorded when it was stored (a flipped byte anywhere is caught before anything is unpacked),
 * then the unpacked copy with pg_verifybackup (every data file against PostgreSQL's own manifest
 * checksums, and the WAL needed for consistency parsed with pg_waldump). `backup verify` and the
 * restore both go through here, so a backup that verifies is exactly one that restores.
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { runVerifybackup } from '../postgres/verifybackup.js';
import type { BackupRecord } from './backup-record.js';
import type { ObjectStore } from './object-store.js';
import type { StoreLayout } from './store-layout.js';
import { extractTarGz } from './tar.js';

export const BASE_ARCHIVE = 'base.tar.gz';
export const WAL_ARCHIVE = 'pg_wal.tar.gz';
export const MANIFEST_FILE = 'backup_manifest';

/** Downloads every file of `record` into `stageDir`; returns the problems found (empty: all match). */
export async function downloadBackupFiles(
  store: ObjectStore,
  layout: StoreLayout,
  record: BackupRecord,
  stageDir: string,
  progress: (line: string) => void,
): Promise<string[]> {
  await mkdir(stageDir, { recursive: true, mode: 0o700 });
  const problems: string[] = [];
  for (const expected of record.files) {
    const body = await store.get(layout.backupFileKey(record.id, expected.name));
    if (body === null) {
      problems.push(`${expected.name}: missing from the store`);
      continue;
    }
    const hash = createHash('sha256');
    let sizeBytes = 0;
    const meter = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        hash.update(chunk);
        sizeBytes += chunk.length;
        done(null, chunk);
      },
    });
    await pipeline(body, meter, createWriteStream(path.join(stageDir, expected.name), { mode: 0o600 }));
    const sha256 = hash.digest('hex');
    if (sizeBytes !== expected.sizeBytes) problems.push(`${expected.name}: ${sizeBytes} bytes stored, ${expected.sizeBytes} expected`);
    else if (sha256 !== expected.sha256) problems.push(`${expected.name}: checksum mismatch (sha256 ${sha256.slice(0, 16)}..., expected ${expected.sha256.slice(0, 16)}...)`);
    else progress(`backup ${record.id}: ${expected.name} checksum ok (${(sizeBytes / 1024 / 1024).toFixed(1)} MiB)`);
  }
  for (const required of [BASE_ARCHIVE, WAL_ARCHIVE, MANIFEST_FILE]) {
    if (!record.files.some((f) => f.name === required)) problems.push(`${required}: not part of the backup record`);
  }
  return problems;
}

/**
 * Unpacks the staged backup into `dataDir` (base) and `dataDir/pg_wal` (the WAL needed for
 * consistency), then runs pg_verifybackup on it. Returns the problems found.
 */
export async function unpackAndVerify(options: { binDir: string; stageDir: string; dataDir: string; progress: (line: string) => void; id: string }): Promise<string[]> {
  const { stageDir, dataDir, id } = options;
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  try {
    await extractTarGz(path.join(stageDir, BASE_ARCHIVE), dataDir);
    await mkdir(path.join(dataDir, 'pg_wal'), { recursive: true, mode: 0o700 });
    await extractTarGz(path.join(stageDir, WAL_ARCHIVE), path.join(dataDir, 'pg_wal'));
  } catch (error) {
    return [error instanceof Error ? error.message : String(error)];
  }
  options.progress(`backup ${id}: unpacked; checking every file and the WAL with pg_verifybackup`);
  const result = await runVerifybackup({
    binDir: options.binDir,
    backupDir: dataDir,
    manifestPath: path.join(stageDir, MANIFEST_FILE),
    walDir: path.join(dataDir, 'pg_wal'),
  });
  return result.problems;
}

export interface VerifyOutcome {
  record: BackupRecord;
  problems: string[];
}

/** `backup verify`: download, check, unpack and pg_verifybackup in a scratch directory, removed afterwards. */
export async function verifyBackupCopy(options: {
  store: ObjectStore;
  layout: StoreLayout;
  record: BackupRecord;
  binDir: string;
  workRoot: string;
  progress: (line: string) => void;
}): Promise<VerifyOutcome> {
  const { record } = options;
  const scratch = path.join(options.workRoot, `verify-${record.id}-${process.pid}`);
  try {
    const stageDir = path.join(scratch, 'stage');
    const problems = await downloadBackupFiles(options.store, options.layout, record, stageDir, options.progress);
    if (problems.length > 0) return { record, problems };
    return {
      record,
      problems: await unpackAndVerify({ binDir: options.binDir, stageDir, dataDir: path.join(scratch, 'data'), progress: options.progress, id: record.id }),
    };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}
