/**
 * Where a cluster's backups live inside an object store. One place, so that the WAL archive, the
 * base backups, verify and restore agree on every key:
 *
 *   <cluster>/wal/<walfile>.gz                 WAL segments, .partial segments, timeline .history
 *                                              files (gzip; metadata sha256 = of the raw file)
 *   <cluster>/wal/<walfile>.gz.conflict-<sha>  a second, different copy of an archived name (kept
 *                                              aside for inspection, never used by restore)
 *   <cluster>/basebackups/<id>/backup.json     the catalog record (src/backup/backup-record.ts)
 *   <cluster>/basebackups/<id>/<file>          base.tar.gz, pg_wal.tar.gz, backup_manifest
 *
 * Invariant: the cluster name is a validated DNS-like label (config/schema.ts), so no key built
 * here can leave the cluster's prefix.
 */
import { nameSchema } from '../config/schema.js';
import { PgpilotError } from '../shared/errors.js';

export interface StoreLayout {
  cluster: string;
  walPrefix: string;
  walKey(fileName: string): string;
  backupsPrefix: string;
  backupPrefix(id: string): string;
  backupRecordKey(id: string): string;
  backupFileKey(id: string, file: string): string;
}

export const WAL_SUFFIX = '.gz';
export const CONFLICT_MARKER = '.conflict-';

export function storeLayout(cluster: string): StoreLayout {
  if (!nameSchema.safeParse(cluster).success) throw new PgpilotError('INPUT_INVALID', `invalid cluster name ${JSON.stringify(cluster)}`);
  const root = `${cluster}/`;
  const backupsPrefix = `${root}basebackups/`;
  return {
    cluster,
    walPrefix: `${root}wal/`,
    walKey: (fileName) => `${root}wal/${fileName}${WAL_SUFFIX}`,
    backupsPrefix,
    backupPrefix: (id) => `${backupsPrefix}${id}/`,
    backupRecordKey: (id) => `${backupsPrefix}${id}/backup.json`,
    backupFileKey: (id, file) => `${backupsPrefix}${id}/${file}`,
  };
}

/** The WAL file name of an archive key (`.../wal/<name>.gz`), or null for anything else (conflict copies included). */
export function walFileNameOfKey(layout: StoreLayout, key: string): string | null {
  if (!key.startsWith(layout.walPrefix) || !key.endsWith(WAL_SUFFIX)) return null;
  const name = key.slice(layout.walPrefix.length, -WAL_SUFFIX.length);
  return name.length > 0 && !name.includes('/') && !name.includes(CONFLICT_MARKER) ? name : null;
}
