/**
 * `pgpilot attach NAME --app APP [--database-name DB] [--user USER] [--env-file PATH] [--json]`:
 * gives an app its own database and login role and prints its DATABASE_URL. Order and rollback:
 * the attachment is reserved in etcd first (create-if-absent, so attaching one app twice, even
 * concurrently, fails with a hint), then the role (SCRAM verifier computed here), then the private
 * database it owns (CONNECT revoked from PUBLIC) and the owner-only `public` schema; if any step
 * fails, what this call created is dropped again and the reservation removed. The generated
 * password appears once, in the printed URL (and in the env file when asked, mode 0600); it is
 * never stored by pgpilot. The env file is created (new, O_EXCL | O_NOFOLLOW) before anything else,
 * so an existing file or symlink there is refused with nothing attached, and removed again when
 * the attach fails.
 */
import { unlink } from 'node:fs/promises';
import path from 'node:path';
import {
  HARDEN_PUBLIC_SCHEMA_SQL,
  createLoginRole,
  createPrivateDatabase,
  databaseExists,
  defaultAppNames,
  dropDatabase,
  dropRoleEverywhere,
  generatePassword,
  roleExists,
  validateName,
} from '../../postgres/app-queries.js';
import { appDatabaseUrl, createEnvFile, envFileContent, readAttachment, removeAttachment, reserveAttachment, type AppAttachment } from '../../providers/local/app-attachments.js';
import { SystemClock, type Clock } from '../../shared/clock.js';
import { PgpilotError, errorMessage } from '../../shared/errors.js';
import { clusterRoleNames, withAppContext } from '../../operations/app-context.js';
import { openClusterHandle } from '../../cluster/open-cluster-handle.js';
import { printJson, type Output } from '../output.js';

export interface AttachOptions {
  home: string;
  name: string;
  /** `--context FILE` (else PGPILOT_CONTEXT, else the local cluster). */
  context?: string | undefined;
  app: string;
  databaseName?: string;
  user?: string;
  envFile?: string;
  json: boolean;
}

export interface AttachDeps {
  clock: Clock;
}

export interface AttachResult extends AppAttachment {
  databaseUrl: string;
  envFile: string | null;
}

function alreadyAttached(cluster: string, record: AppAttachment): PgpilotError {
  return new PgpilotError('INPUT_INVALID', `app ${record.app} is already attached to ${cluster} (database ${record.database}, user ${record.user})`, {
    hint: `its DATABASE_URL was printed when it was attached; to start over: pgpilot detach ${cluster} --app ${record.app}, then attach again`,
    exitCode: 2,
  });
}

export async function run(options: AttachOptions, output: Output, deps: AttachDeps = { clock: new SystemClock() }): Promise<number> {
  const app = validateName('app', options.app);
  const defaults = defaultAppNames(app);
  const database = validateName('database', options.databaseName ?? defaults.database);
  const envFile = options.envFile === undefined ? null : path.resolve(options.envFile);
  // Claimed first: a path that is taken refuses the whole command before anything changes.
  const envHandle = envFile === null ? null : await createEnvFile(envFile);
  const dropEnvFile = async (): Promise<void> => {
    if (envHandle === null || envFile === null) return;
    await envHandle.close().catch(() => undefined);
    await unlink(envFile).catch(() => undefined);
  };
  let result: AttachResult;
  try {
    result = await attachApp(options, app, database, envFile, deps);
  } catch (error) {
    await dropEnvFile();
    throw error;
  }

  if (options.json) printJson(output, result);
  else {
    output.err(`attached ${result.app}: database ${result.database} owned by role ${result.user} (CONNECT revoked from PUBLIC)`);
    output.out(`DATABASE_URL=${result.databaseUrl}`);
    output.err('the password is shown only now; pgpilot does not store it');
    output.err('single-host drivers (node-postgres): use one host:port of the list; every one reaches the leader');
  }
  if (envHandle !== null) {
    try {
      await envHandle.writeFile(envFileContent('DATABASE_URL', result.databaseUrl));
      await envHandle.sync();
      await envHandle.close();
    } catch (error) {
      await dropEnvFile();
      throw new PgpilotError('COMMAND_FAILED', `the app is attached, but ${envFile ?? '?'} could not be written: ${errorMessage(error)}`, {
        hint: 'copy the DATABASE_URL printed above; it is not shown again',
      });
    }
    if (!options.json) output.err(`wrote DATABASE_URL to ${envFile ?? '?'} (mode 0600)`);
  }
  return 0;
}

async function attachApp(options: AttachOptions, app: string, database: string, envFile: string | null, deps: AttachDeps): Promise<AttachResult> {
  const defaults = defaultAppNames(app);
  return withAppContext(await openClusterHandle(options), async (ctx) => {
    const user = validateName('user', options.user ?? defaults.user, clusterRoleNames(ctx.secrets));
    const cluster = ctx.cluster;
    const existing = await readAttachment(ctx.dcs, ctx.keys, app);
    if (existing !== null) throw alreadyAttached(cluster, existing);
    if (await roleExists(ctx.client, user)) {
      throw new PgpilotError('INPUT_INVALID', `a role named ${user} already exists in ${cluster}`, {
        hint: `choose another with --user, or remove it first (pgpilot users delete ${cluster} ${user} --yes)`,
        exitCode: 2,
      });
    }
    if (await databaseExists(ctx.client, database)) {
      throw new PgpilotError('INPUT_INVALID', `a database named ${database} already exists in ${cluster}`, {
        hint: `choose another with --database-name (pgpilot db list ${cluster} shows the taken names)`,
        exitCode: 2,
      });
    }
    const record: AppAttachment = { app, database, user, createdAt: new Date(deps.clock.nowMs()).toISOString() };
    if (!(await reserveAttachment(ctx.dcs, ctx.keys, record))) {
      const raced = await readAttachment(ctx.dcs, ctx.keys, app);
      throw alreadyAttached(cluster, raced ?? record);
    }
    const password = generatePassword();
    let createdRole = false;
    let createdDatabase = false;
    try {
      await createLoginRole(ctx.client, user, password, { superuser: false });
      createdRole = true;
      await createPrivateDatabase(ctx.client, database, user);
      createdDatabase = true;
      const inDatabase = await ctx.connectTo(database);
      try {
        await inDatabase.query(HARDEN_PUBLIC_SCHEMA_SQL);
      } finally {
        await inDatabase.end().catch(() => undefined);
      }
    } catch (error) {
      // Undo what this call created, newest first; the original error is what the user sees.
      if (createdDatabase) await dropDatabase(ctx.client, database).catch(() => undefined);
      if (createdRole) await dropRoleEverywhere({ client: ctx.client, superuser: ctx.secrets.superuser.name, connectTo: (db) => ctx.connectTo(db) }, user).catch(() => undefined);
      await removeAttachment(ctx.dcs, ctx.keys, app).catch(() => undefined);
      throw error;
    }
    return { ...record, databaseUrl: appDatabaseUrl(ctx.handle.topology, user, password, database), envFile };
  });
}
