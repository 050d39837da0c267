/**
 * `pgpilot detach NAME --app APP [--drop-database --yes] [--json]`: takes an attached app's access
 * away and removes its role. The role's sessions are ended, what it owns goes to the cluster
 * superuser (REASSIGN OWNED), its privileges are dropped (DROP OWNED) in every database where it has
 * any, and the role is dropped; the database and its data stay unless `--drop-database --yes`
 * (then its sessions are ended and it is dropped first). `--drop-database` without `--yes` changes
 * nothing (CONFIRMATION_REQUIRED, exit 2). The attachment record is removed last, so a detach that
 * fails half-way can simply be run again.
 */
import { databaseExists, dropDatabase, dropRoleEverywhere, validateName } from '../../postgres/app-queries.js';
import { listAttachments, readAttachment, removeAttachment } from '../../providers/local/app-attachments.js';
import { PgpilotError } from '../../shared/errors.js';
import { withAppContext } from '../../operations/app-context.js';
import { openClusterHandle } from '../../cluster/open-cluster-handle.js';
import { printJson, type Output } from '../output.js';

export interface DetachOptions {
  home: string;
  name: string;
  /** `--context FILE` (else PGPILOT_CONTEXT, else the local cluster). */
  context?: string | undefined;
  app: string;
  dropDatabase: boolean;
  yes: boolean;
  json: boolean;
}

export interface DetachResult {
  app: string;
  database: string;
  user: string;
  roleDropped: boolean;
  databaseDropped: boolean;
  /** Databases where the role's objects were reassigned and its privileges dropped. */
  cleanedDatabases: string[];
}

/** Refuses a destructive detach without confirmation (pure); nothing has been touched when it throws. */
export function checkDetachConfirmation(options: Pick<DetachOptions, 'name' | 'app' | 'dropDatabase' | 'yes'>): void {
  if (options.dropDatabase && !options.yes) {
    throw new PgpilotError('CONFIRMATION_REQUIRED', `--drop-database deletes the database of ${options.app} and all its data`, {
      hint: `add --yes to confirm: pgpilot detach ${options.name} --app ${options.app} --drop-database --yes (or leave out --drop-database to keep the data)`,
      exitCode: 2,
    });
  }
}

export async function run(options: DetachOptions, output: Output): Promise<number> {
  const app = validateName('app', options.app);
  checkDetachConfirmation(options);
  const result = await withAppContext(await openClusterHandle(options), async (ctx): Promise<DetachResult> => {
    const record = await readAttachment(ctx.dcs, ctx.keys, app);
    if (record === null) {
      const attached = (await listAttachments(ctx.dcs, ctx.keys)).map((a) => a.app);
      throw new PgpilotError('INPUT_INVALID', `app ${app} is not attached to ${ctx.cluster}`, {
        hint: attached.length > 0 ? `attached apps: ${attached.join(', ')}` : `no app is attached; pgpilot attach ${ctx.cluster} --app APP`,
        exitCode: 2,
      });
    }
    let databaseDropped = false;
    if (options.dropDatabase && (await databaseExists(ctx.client, record.database))) {
      await dropDatabase(ctx.client, record.database);
      databaseDropped = true;
      if (!options.json) output.err(`dropped database ${record.database}`);
    }
    const cleanedDatabases = await dropRoleEverywhere(
      { client: ctx.client, superuser: ctx.secrets.superuser.name, connectTo: (db) => ctx.connectTo(db) },
      record.user,
    );
    await removeAttachment(ctx.dcs, ctx.keys, app);
    return { app, database: record.database, user: record.user, roleDropped: cleanedDatabases.length > 0, databaseDropped, cleanedDatabases };
  });
  if (options.json) printJson(output, result);
  else {
    const kept = result.databaseDropped ? '' : `; database ${result.database} kept, now owned by the cluster superuser`;
    output.out(`detached ${result.app}: role ${result.user} ${result.roleDropped ? 'dropped' : 'was already gone'}${kept}`);
  }
  return 0;
}
