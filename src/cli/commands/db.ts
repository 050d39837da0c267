/**
 * `pgpilot db list|create NAME ...`: databases on the leader.
 * - `list [--json]`: every database except the templates: owner, size, whether PUBLIC may connect,
 *   and the attached app using it.
 * - `create NAME DB [--owner USER] [--json]`: a private database (CONNECT revoked from PUBLIC;
 *   granted to `--owner`, which owns it), so creating a database never opens it to every role.
 */
import { HARDEN_PUBLIC_SCHEMA_SQL, createPrivateDatabase, databaseExists, listDatabases, roleExists, validateName, type DatabaseRow } from '../../postgres/app-queries.js';
import { listAttachments } from '../../providers/local/app-attachments.js';
import { formatBytes } from '../../operations/cluster-status.js';
import { PgpilotError } from '../../shared/errors.js';
import { withAppContext } from '../../operations/app-context.js';
import { openClusterHandle } from '../../cluster/open-cluster-handle.js';
import { printJson, renderTable, type Output } from '../output.js';

export interface DbListOptions {
  home: string;
  name: string;
  /** `--context FILE` (else PGPILOT_CONTEXT, else the local cluster). */
  context?: string | undefined;
  json: boolean;
}

export interface DatabaseListEntry extends DatabaseRow {
  app: string | null;
}

export async function runList(options: DbListOptions, output: Output): Promise<number> {
  const databases = await withAppContext(await openClusterHandle(options), async (ctx): Promise<DatabaseListEntry[]> => {
    const apps = await listAttachments(ctx.dcs, ctx.keys);
    return (await listDatabases(ctx.client)).map((d) => ({ ...d, app: apps.find((a) => a.database === d.name)?.app ?? null }));
  });
  if (options.json) printJson(output, databases);
  else {
    output.out(
      renderTable(
        ['DATABASE', 'OWNER', 'SIZE', 'ACCESS', 'APP'],
        databases.map((d) => [d.name, d.owner, formatBytes(d.sizeBytes), d.publicConnect ? 'public' : 'private', d.app ?? '-']),
      ),
    );
  }
  return 0;
}

export interface DbCreateOptions {
  home: string;
  name: string;
  /** `--context FILE` (else PGPILOT_CONTEXT, else the local cluster). */
  context?: string | undefined;
  database: string;
  owner?: string;
  json: boolean;
}

export async function runCreate(options: DbCreateOptions, output: Output): Promise<number> {
  const database = validateName('database', options.database);
  const owner = await withAppContext(await openClusterHandle(options), async (ctx) => {
    const cluster = ctx.cluster;
    const ownerName = options.owner ?? null;
    if (ownerName !== null && !(await roleExists(ctx.client, ownerName))) {
      throw new PgpilotError('INPUT_INVALID', `no user ${ownerName} in ${cluster}`, {
        hint: `create it first: pgpilot users create ${cluster} ${ownerName}`,
        exitCode: 2,
      });
    }
    if (await databaseExists(ctx.client, database)) {
      throw new PgpilotError('INPUT_INVALID', `database ${database} already exists in ${cluster}`, { hint: `pgpilot db list ${cluster}`, exitCode: 2 });
    }
    await createPrivateDatabase(ctx.client, database, ownerName);
    const inDatabase = await ctx.connectTo(database);
    try {
      await inDatabase.query(HARDEN_PUBLIC_SCHEMA_SQL);
    } finally {
      await inDatabase.end().catch(() => undefined);
    }
    return ownerName ?? ctx.secrets.superuser.name;
  });
  if (options.json) printJson(output, { database, owner, private: true });
  else output.out(`created database ${database} owned by ${owner} (private: only its owner and superusers may connect)`);
  return 0;
}
