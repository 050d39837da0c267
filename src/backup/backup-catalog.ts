/**
 * The catalog of a cluster's base backups is the store itself: one `backup.json` per backup
 * (src/backup/backup-record.ts). Reading it needs nothing but the store, so backups can be listed
 * and restored after the cluster (and its etcd) is gone.
 */
import { PgpilotError } from '../shared/errors.js';
import { parseJsonOrNull } from '../shared/json.js';
import { backupRecordSchema, type BackupRecord } from './backup-record.js';
import type { ObjectStore } from './object-store.js';
import type { StoreLayout } from './store-layout.js';

/** Every readable backup record of the cluster, oldest first (ids sort by time). */
export async function listBackups(store: ObjectStore, layout: StoreLayout): Promise<BackupRecord[]> {
  const objects = await store.list(layout.backupsPrefix);
  const records: BackupRecord[] = [];
  for (const object of objects) {
    if (!object.key.endsWith('/backup.json')) continue;
    const text = await store.getBuffer(object.key);
    if (text === null) continue;
    const record = parseJsonOrNull(backupRecordSchema, text.toString('utf8'));
    if (record !== null) records.push(record);
  }
  return records.sort((a, b) => a.id.localeCompare(b.id));
}

export async function readBackup(store: ObjectStore, layout: StoreLayout, id: string): Promise<BackupRecord> {
  const text = /^[0-9A-Za-z-]+$/.test(id) ? await store.getBuffer(layout.backupRecordKey(id)) : null;
  const record = text === null ? null : parseJsonOrNull(backupRecordSchema, text.toString('utf8'));
  if (record === null) {
    throw new PgpilotError('BACKUP_NOT_FOUND', `no backup ${JSON.stringify(id)} in ${store.description} for cluster ${layout.cluster}`, {
      hint: `list the backups with: pgpilot backup list ${layout.cluster}`,
      exitCode: 2,
    });
  }
  return record;
}

export async function writeBackupRecord(store: ObjectStore, layout: StoreLayout, record: BackupRecord): Promise<void> {
  await store.put(layout.backupRecordKey(record.id), Buffer.from(`${JSON.stringify(record, null, 2)}\n`));
}

/** Deletes a backup's files, its record last (a half-deleted backup stays visible as such). */
export async function deleteBackup(store: ObjectStore, layout: StoreLayout, id: string): Promise<void> {
  const objects = await store.list(layout.backupPrefix(id));
  const recordKey = layout.backupRecordKey(id);
  await store.delete(objects.map((o) => o.key).filter((key) => key !== recordKey));
  await store.delete([recordKey]);
}
