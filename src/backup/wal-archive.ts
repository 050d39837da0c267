/**
 * The continuous WAL archive: what `archive_command` (`wal push`) and `restore_command`
 * (`wal fetch`) do, over any ObjectStore. Every member archives (`archive_mode = always`), so a
 * segment the old leader had not archived before it died is still archived by the replicas that
 * received it, and the archive continues across failovers with no gap.
 *
 * Invariants:
 * - A push is idempotent: a name already archived with the same content (sha256 of the raw file,
 *   kept as metadata) is success. A name archived with DIFFERENT content is never overwritten: the
 *   second copy is kept aside under `<key>.conflict-<sha>` and the push reports `conflict` (the
 *   caller logs it loudly but lets postgres go on, so pg_wal cannot fill up behind a file that
 *   can never be archived). Restore only ever reads the first copy.
 * - A fetch verifies the content against the sha256 recorded at push time before it writes
 *   anything, and writes through a temporary file + rename, so postgres never reads a partial or
 *   corrupted segment.
 * - Only WAL file names (segments, .partial, .history, .backup) are accepted: nothing else can be
 *   read from or written to the store through these commands.
 */
import { createHash } from 'node:crypto';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { gunzip, gzip } from 'node:zlib';
import { PgpilotError } from '../shared/errors.js';
import type { ObjectStore } from './object-store.js';
import { CONFLICT_MARKER, storeLayout, walFileNameOfKey, type StoreLayout } from './store-layout.js';
import { isValidWalRequestName } from './wal-names.js';

const gzipAsync = promisify(gzip);
const gunzipAsync = promisify(gunzip);

/** gzip level for WAL: mostly-empty segments shrink by 100x at level 1 already, and archiving must keep up with the writer. */
const WAL_GZIP_LEVEL = 1;

export type WalPushResult =
  | { kind: 'archived'; key: string; rawBytes: number; storedBytes: number }
  | { kind: 'already-archived'; key: string }
  | { kind: 'conflict'; key: string; keptAt: string };

export type WalFetchResult = { kind: 'restored'; rawBytes: number } | { kind: 'not-found' };

function checkName(fileName: string): void {
  if (!isValidWalRequestName(fileName)) {
    throw new PgpilotError('INPUT_INVALID', `${JSON.stringify(fileName)} is not a WAL file name`, {
      hint: 'wal push/fetch take the %f / %p arguments postgres passes to archive_command and restore_command',
      exitCode: 2,
    });
  }
}

export function sha256Hex(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

export class WalArchive {
  readonly layout: StoreLayout;

  constructor(
    private readonly store: ObjectStore,
    cluster: string,
  ) {
    this.layout = storeLayout(cluster);
  }

  /** Archives the WAL file at `filePath` (its base name is the WAL file name). */
  async push(filePath: string): Promise<WalPushResult> {
    const fileName = path.basename(filePath);
    checkName(fileName);
    const raw = await readFile(filePath);
    const sha256 = sha256Hex(raw);
    const key = this.layout.walKey(fileName);
    const existing = await this.store.head(key);
    if (existing !== null) {
      if (existing.metadata['sha256'] === sha256) return { kind: 'already-archived', key };
      const keptAt = `${key}${CONFLICT_MARKER}${sha256.slice(0, 16)}`;
      await this.store.put(keptAt, await gzipAsync(raw, { level: WAL_GZIP_LEVEL }), { metadata: { sha256, 'raw-size': String(raw.length) } });
      return { kind: 'conflict', key, keptAt };
    }
    const stored = await gzipAsync(raw, { level: WAL_GZIP_LEVEL });
    await this.store.put(key, stored, { metadata: { sha256, 'raw-size': String(raw.length) } });
    return { kind: 'archived', key, rawBytes: raw.length, storedBytes: stored.length };
  }

  /** Restores WAL file `fileName` to `destPath`; `not-found` is the ordinary end of the archive. */
  async fetch(fileName: string, destPath: string): Promise<WalFetchResult> {
    checkName(fileName);
    const key = this.layout.walKey(fileName);
    const head = await this.store.head(key);
    if (head === null) return { kind: 'not-found' };
    const stored = await this.store.getBuffer(key);
    if (stored === null) return { kind: 'not-found' };
    let raw: Buffer;
    try {
      raw = await gunzipAsync(stored);
    } catch (error) {
      throw new PgpilotError('BACKUP_CORRUPT', `archived WAL file ${fileName} cannot be decompressed`, {
        hint: `the copy in ${this.store.description} is damaged; a replica of the source cluster may still have it in pg_wal`,
        cause: error,
      });
    }
    const expected = head.metadata['sha256'];
    const actual = sha256Hex(raw);
    if (expected === undefined || expected !== actual) {
      throw new PgpilotError('BACKUP_CORRUPT', `archived WAL file ${fileName} does not match its checksum`, {
        hint: `the copy in ${this.store.description} is damaged (expected sha256 ${expected ?? 'missing'}, got ${actual})`,
      });
    }
    const temp = `${destPath}.pgpilot-partial`;
    try {
      await writeFile(temp, raw, { mode: 0o600 });
      await rename(temp, destPath);
    } catch (error) {
      await rm(temp, { force: true });
      throw error;
    }
    return { kind: 'restored', rawBytes: raw.length };
  }

  /** Every archived WAL file name with its archive time (the store's modification time). */
  async list(): Promise<Array<{ name: string; archivedAtMs: number; sizeBytes: number }>> {
    const objects = await this.store.list(this.layout.walPrefix);
    const files: Array<{ name: string; archivedAtMs: number; sizeBytes: number }> = [];
    for (const object of objects) {
      const name = walFileNameOfKey(this.layout, object.key);
      if (name === null || !isValidWalRequestName(name)) continue;
      files.push({ name, archivedAtMs: object.lastModifiedMs, sizeBytes: object.sizeBytes });
    }
    return files;
  }

  async delete(fileNames: readonly string[]): Promise<void> {
    for (const name of fileNames) checkName(name);
    await this.store.delete(fileNames.map((name) => this.layout.walKey(name)));
  }
}
