/**
 * Attached apps: the record pgpilot keeps in etcd for each `attach` (`/pgpilot/<cluster>/apps/<app>`,
 * JSON { app, database, user, createdAt }), the DATABASE_URL an app gets, and the env file it can be
 * written to. Invariants: the record never holds a password (the generated one is shown once and
 * written only to the env file the user asked for); a record is created only if absent, so two
 * concurrent `attach` of one app cannot both succeed; a malformed record reads as absent rather
 * than crashing a reader (shared/json.ts); the env file is written 0600 through a temp file and a
 * rename, so it is never readable by others, not even for a moment.
 */
import { connectionUrl } from '../../postgres/connection-url.js';
import { clusterPathsIn } from './paths.js';
import { chmod, readFile, rename, writeFile } from 'node:fs/promises';
import { z } from 'zod';
import type { Dcs } from '../../dcs/dcs.js';
import type { ClusterKeys } from '../../dcs/keys.js';
import type { ClusterManifest } from '../../config/schema.js';
import { parseJsonOrNull } from '../../shared/json.js';

export const appAttachmentSchema = z
  .object({
    app: z.string().min(1),
    database: z.string().min(1),
    user: z.string().min(1),
    /** ISO 8601, from the injected clock of the command that attached it. */
    createdAt: z.string(),
  })
  .strict();
export type AppAttachment = z.infer<typeof appAttachmentSchema>;

/** The attachments under `keys.appsPrefix` in a prefix read (pure), sorted by app; malformed ones are skipped. */
export function attachmentsIn(all: ReadonlyMap<string, string>, keys: ClusterKeys): AppAttachment[] {
  const found: AppAttachment[] = [];
  for (const [key, value] of all) {
    if (!key.startsWith(keys.appsPrefix)) continue;
    const record = parseJsonOrNull(appAttachmentSchema, value);
    if (record !== null && keys.app(record.app) === key) found.push(record);
  }
  return found.sort((a, b) => a.app.localeCompare(b.app));
}

export async function listAttachments(dcs: Dcs, keys: ClusterKeys): Promise<AppAttachment[]> {
  return attachmentsIn(await dcs.getPrefix(keys.appsPrefix), keys);
}

export async function readAttachment(dcs: Dcs, keys: ClusterKeys, app: string): Promise<AppAttachment | null> {
  return parseJsonOrNull(appAttachmentSchema, await dcs.get(keys.app(app)));
}

/** Records the attachment unless the app is already attached; true when this call created it. */
export async function reserveAttachment(dcs: Dcs, keys: ClusterKeys, record: AppAttachment): Promise<boolean> {
  return dcs.createIfAbsent(keys.app(record.app), JSON.stringify(record));
}

export async function removeAttachment(dcs: Dcs, keys: ClusterKeys, app: string): Promise<void> {
  await dcs.delete(keys.app(app));
}

/**
 * The app's DATABASE_URL over every node's leader proxy port (pure), like the cluster's own
 * connection string: libpq tries the hosts in order and `target_session_attrs=read-write` skips
 * one that does not reach the leader. Drivers without multi-host support use one `host:port`.
 */
export function appDatabaseUrl(manifest: Pick<ClusterManifest, 'nodes' | 'clusterDir'>, user: string, password: string, database: string): string {
  return connectionUrl({
    user,
    password,
    endpoints: manifest.nodes.map((n) => ({ host: n.host, port: n.proxyPort })),
    database,
    caFile: clusterPathsIn(manifest.clusterDir).caFile,
    targetSessionAttrs: 'read-write',
  });
}

const ENV_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * `content` with `KEY=value` set (pure): an existing `KEY=` line (optionally `export KEY=`) is
 * replaced in place, otherwise the line is appended; every other line is kept as it was.
 */
export function upsertEnvLine(content: string, key: string, value: string): string {
  if (!ENV_KEY.test(key)) throw new Error(`invalid environment variable name ${key}`);
  if (/[\r\n]/.test(value)) throw new Error('an env file value cannot contain a line break');
  const line = `${key}=${value}`;
  const lines = content.length === 0 ? [] : content.replace(/\n$/, '').split('\n');
  const pattern = new RegExp(`^\\s*(export\\s+)?${key}\\s*=`);
  let replaced = false;
  const next = lines.map((existing) => {
    if (!pattern.test(existing)) return existing;
    if (replaced) return null;
    replaced = true;
    return line;
  });
  const kept = next.filter((l): l is string => l !== null);
  if (!replaced) kept.push(line);
  return `${kept.join('\n')}\n`;
}

/** Sets `KEY=value` in the env file (created if missing), leaving it mode 0600. */
export async function writeEnvFile(file: string, key: string, value: string, pid: number = process.pid): Promise<void> {
  let current = '';
  try {
    current = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  const temp = `${file}.tmp-${pid}`;
  await writeFile(temp, upsertEnvLine(current, key, value), { mode: 0o600 });
  await chmod(temp, 0o600);
  await rename(temp, file);
}
