/**
 * Attached apps: the record pgpilot keeps in etcd for each `attach` (`/pgpilot/<cluster>/apps/<app>`,
 * JSON { app, database, user, createdAt }), the DATABASE_URL an app gets, and the env file it can be
 * written to. Invariants: the record never holds a password (the generated one is shown once and
 * written only to the env file the user asked for); a record is created only if absent, so two
 * concurrent `attach` of one app cannot both succeed; a malformed record reads as absent rather
 * than crashing a reader (shared/json.ts); the env file is a new file created 0600 by
 * `createPrivateFile` (src/shared/fs-safe.ts: O_EXCL | O_NOFOLLOW), so it is never readable by
 * others, an existing file (or a symlink planted there) is refused instead of overwritten, and the
 * refusal comes before anything is attached.
 */
import { connectionUrl } from '../../postgres/connection-url.js';
import type { ClusterTopology } from '../../cluster/cluster-topology.js';
import { lstat, type FileHandle } from 'node:fs/promises';
import { z } from 'zod';
import type { Dcs } from '../../dcs/dcs.js';
import type { ClusterKeys } from '../../dcs/keys.js';
import { PgpilotError } from '../../shared/errors.js';
import { createPrivateFile } from '../../shared/fs-safe.js';
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
export function appDatabaseUrl(topology: Pick<ClusterTopology, 'nodes' | 'caFile'>, user: string, password: string, database: string): string {
  return connectionUrl({
    user,
    password,
    endpoints: topology.nodes.map((n) => ({ host: n.host, port: n.proxyPort })),
    database,
    caFile: topology.caFile,
    targetSessionAttrs: 'read-write',
  });
}

const ENV_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** The env file's content (pure): the one line `KEY=value`. */
export function envFileContent(key: string, value: string): string {
  if (!ENV_KEY.test(key)) throw new Error(`invalid environment variable name ${key}`);
  if (/[\r\n]/.test(value)) throw new Error('an env file value cannot contain a line break');
  return `${key}=${value}\n`;
}

/**
 * Creates the env file `attach --env-file` will write (empty, mode 0600) and returns its handle.
 * Called before anything is attached, so a refusal changes nothing: INPUT_INVALID (exit 2) when
 * anything is at the path (a file, a directory, a symlink, dangling or not) or it cannot be created.
 */
export async function createEnvFile(file: string): Promise<FileHandle> {
  try {
    return await createPrivateFile(file, 0o600);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'error';
    if (code === 'EEXIST' || code === 'ELOOP') {
      const symlink = await lstat(file).then((info) => info.isSymbolicLink(), () => false);
      throw new PgpilotError('INPUT_INVALID', `${file} already exists${symlink ? ' (a symbolic link)' : ''}; pgpilot never overwrites an env file`, {
        hint: 'name a new file with --env-file, or move the existing one away first; nothing was attached',
        exitCode: 2,
      });
    }
    throw new PgpilotError('INPUT_INVALID', `cannot create the env file ${file} (${code})`, {
      hint: 'name a file in an existing directory you can write; nothing was attached',
      exitCode: 2,
    });
  }
}
