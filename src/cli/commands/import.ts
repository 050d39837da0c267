/**
 * `pgpilot import NAME --source URL [--database DB] [--owner USER] [--jobs N] [--force] [--json]`:
 * copies a whole database from another PostgreSQL into the cluster's leader, then proves it by
 * exact row counts. Steps and invariants:
 * 1. Connect to the source first, with a bounded timeout: an unreachable source (or a bad
 *    password) stops here, and nothing was created in the cluster.
 * 2. Open a REPEATABLE READ, READ ONLY transaction on the source and export its snapshot: pg_dump
 *    (`-Fd -j N --snapshot`) dumps exactly that snapshot and the source counts are taken in it too,
 *    so writes to the source during the import cannot make the check lie.
 * 3. The dump goes to a 0700 temp directory under the cluster directory, removed afterwards
 *    whatever happens. Only after a complete dump is the target touched.
 * 4. The target database (default: the source's name) is created private if missing; if it exists
 *    and already has tables, the import refuses unless `--force` (then pg_restore `--clean`).
 *    pg_restore (`-j N`, no source owners or grants) creates objects as the cluster superuser, or
 *    as the owner: `--owner`, else the user of the app attached to that database.
 * 5. Every user table (all schemas but pg_catalog / information_schema) is counted on both sides;
 *    any difference names the tables and fails the import. A database this call created is dropped
 *    again when a later step fails, so a failed import leaves no new database behind.
 * Passwords reach pg_dump / pg_restore only through PGPASSWORD, never through argv.
 */
import { connectionUrl } from '../../postgres/connection-url.js';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import {
  HARDEN_PUBLIC_SCHEMA_SQL,
  compareCounts,
  countRows,
  createPrivateDatabase,
  databaseExists,
  dropDatabase,
  listUserTables,
  roleExists,
  validateName,
  type CountMismatch,
} from '../../postgres/app-queries.js';
import { parseSourceUrl, pgDumpArgs, pgRestoreArgs, runDumpRestore, type DumpRestoreEvent, type SourceUrl } from '../../postgres/dump-restore.js';
import { sqlState, type PgClient } from '../../postgres/queries.js';
import { listAttachments } from '../../providers/local/app-attachments.js';
import { SystemClock, type Clock } from '../../shared/clock.js';
import { makeDirectories } from '../../shared/fs-safe.js';
import { PgpilotError, errorMessage } from '../../shared/errors.js';
import { redactSecrets } from '../../shared/logger.js';
import { withAppContext, type AppContext } from '../../operations/app-context.js';
import { openClusterHandle } from '../../cluster/open-cluster-handle.js';
import { requireLocal } from '../../cluster/require-local.js';
import { printJson, type Output } from '../output.js';

export interface ImportOptions {
  home: string;
  name: string;
  /** `--context FILE` (else PGPILOT_CONTEXT, else the local cluster). */
  context?: string | undefined;
  source: string;
  database?: string;
  owner?: string;
  jobs: number;
  force: boolean;
  timeoutSeconds: number;
  json: boolean;
}

export interface ImportResult {
  database: string;
  createdDatabase: boolean;
  owner: string;
  tables: Array<{ table: string; rows: number }>;
  rows: number;
  durationMs: number;
}

const SOURCE_CONNECT_TIMEOUT_MS = 10_000;
const MAX_JOBS = 16;

/** Checks --jobs and --timeout (pure). */
export function checkImportLimits(options: Pick<ImportOptions, 'jobs' | 'timeoutSeconds'>): void {
  if (!Number.isInteger(options.jobs) || options.jobs < 1 || options.jobs > MAX_JOBS) {
    throw new PgpilotError('INPUT_INVALID', `--jobs must be from 1 to ${MAX_JOBS}`, { hint: 'use about as many jobs as the source and this machine have cores', exitCode: 2 });
  }
  if (!Number.isInteger(options.timeoutSeconds) || options.timeoutSeconds < 1) {
    throw new PgpilotError('INPUT_INVALID', '--timeout must be a positive number of seconds', { hint: 'e.g. --timeout 7200', exitCode: 2 });
  }
}

/** The one-line message for tables whose counts differ (pure). */
export function describeMismatches(mismatches: readonly CountMismatch[]): string {
  const shown = mismatches.slice(0, 10).map((m) => `${m.table} (source ${m.source ?? 'missing'}, target ${m.target ?? 'missing'})`);
  return `${shown.join(', ')}${mismatches.length > 10 ? ` and ${mismatches.length - 10} more` : ''}`;
}

async function connectSource(source: SourceUrl, raw: string, statementTimeoutMs: number): Promise<PgClient> {
  const client = new pg.Client({
    connectionString: raw,
    connectionTimeoutMillis: SOURCE_CONNECT_TIMEOUT_MS,
    application_name: 'pgpilot-import',
    statement_timeout: statementTimeoutMs,
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (error) {
    await client.end().catch(() => undefined);
    const state = sqlState(error);
    const auth = state === '28P01' || state === '28000';
    throw new PgpilotError('POSTGRES_FAILED', `cannot reach the source ${source.urlWithoutPassword}: ${redactSecrets(errorMessage(error))}`, {
      hint: auth
        ? 'check the user and password in --source; nothing was imported or created'
        : `check that the source runs and accepts connections from here (${source.host}:${source.port}); nothing was imported or created`,
      retryable: !auth,
      cause: error,
    });
  }
  return client;
}

/** The owner of imported objects: --owner, else the attached app's user for that database, else the superuser (null). */
async function importOwner(ctx: AppContext, database: string, owner: string | undefined): Promise<string | null> {
  if (owner !== undefined) {
    if (!(await roleExists(ctx.client, owner))) {
      throw new PgpilotError('INPUT_INVALID', `no user ${owner} in ${ctx.cluster}`, { hint: `pgpilot users list ${ctx.cluster}`, exitCode: 2 });
    }
    return owner === ctx.secrets.superuser.name ? null : owner;
  }
  return (await listAttachments(ctx.dcs, ctx.keys)).find((a) => a.database === database)?.user ?? null;
}

function progressPrinter(output: Output): (event: DumpRestoreEvent) => void {
  return (event) => {
    if (event.kind === 'table') output.err(`${event.program === 'pg_dump' ? 'dumping' : 'restoring'} table ${event.table}`);
    else if (event.kind === 'error') output.err(`${event.program}: ${event.message}`);
  };
}

export async function run(options: ImportOptions, output: Output, clock: Clock = new SystemClock()): Promise<number> {
  checkImportLimits(options);
  const source = parseSourceUrl(options.source);
  const timeoutMs = options.timeoutSeconds * 1000;
  const startedMs = clock.nowMs();
  const handle = await openClusterHandle(options);
  // pg_dump and pg_restore run here, against the cluster's binaries and disk (issue 18: an agent's REST route later).
  const { manifest } = requireLocal(handle, 'pgpilot import');
  const result = await withAppContext(handle, async (ctx): Promise<ImportResult> => {
    const sourceClient = await connectSource(source, options.source, timeoutMs);
    let workDir: string | null = null;
    try {
      const sourceDb = (await sourceClient.query<{ db: string }>('SELECT current_database() AS db')).rows[0]?.db ?? '';
      const database = validateName('database', options.database ?? sourceDb);
      const owner = await importOwner(ctx, database, options.owner);
      const exists = await databaseExists(ctx.client, database);
      if (exists && !options.force) {
        const target = await ctx.connectTo(database);
        try {
          const tables = await listUserTables(target);
          if (tables.length > 0) {
            throw new PgpilotError('INPUT_INVALID', `database ${database} in ${ctx.cluster} already has ${tables.length} table(s); import does not overwrite data silently`, {
              hint: `import into another database with --database, or add --force to drop and replace the objects the dump contains`,
              exitCode: 2,
            });
          }
        } finally {
          await target.end().catch(() => undefined);
        }
      }

      // One snapshot for the dump and the source counts (see the header).
      await sourceClient.query('SET idle_in_transaction_session_timeout = 0');
      await sourceClient.query('BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY');
      const snapshot = (await sourceClient.query<{ s: string }>('SELECT pg_export_snapshot() AS s')).rows[0]?.s ?? null;

      const importsDir = path.join(manifest.clusterDir, 'imports');
      await makeDirectories(importsDir, 0o700);
      workDir = await mkdtemp(path.join(importsDir, 'import-'));
      await chmod(workDir, 0o700);
      const dumpDir = path.join(workDir, 'dump');
      const onEvent = progressPrinter(output);

      output.err(`dumping ${source.urlWithoutPassword} with ${options.jobs} job(s)`);
      const dumped = await runDumpRestore({
        binDir: manifest.binDir,
        program: 'pg_dump',
        args: pgDumpArgs({ sourceUrl: source.urlWithoutPassword, dumpDir, jobs: options.jobs, snapshot }),
        password: source.password,
        timeoutMs,
        onEvent,
      });
      if (dumped.exitCode !== 0) {
        throw new PgpilotError('COMMAND_FAILED', `pg_dump failed (exit ${dumped.exitCode ?? dumped.signal}): ${(dumped.errors.length > 0 ? dumped.errors : dumped.tail).slice(-3).join(' | ')}`, {
          hint: 'nothing was created in the cluster; pg_dump 15 cannot dump servers newer than PostgreSQL 15',
        });
      }
      const sourceTables = await listUserTables(sourceClient);
      output.err(`counting rows of ${sourceTables.length} table(s) on the source`);
      const sourceCounts = await countRows(sourceClient, sourceTables);
      await sourceClient.query('COMMIT');

      let createdDatabase = false;
      if (!exists) {
        await createPrivateDatabase(ctx.client, database, owner);
        createdDatabase = true;
        output.err(`created database ${database}${owner === null ? '' : ` owned by ${owner}`} (private)`);
      }
      try {
        if (createdDatabase) {
          const inDatabase = await ctx.connectTo(database);
          try {
            await inDatabase.query(HARDEN_PUBLIC_SCHEMA_SQL);
          } finally {
            await inDatabase.end().catch(() => undefined);
          }
        }
        const leader = ctx.leader;
        const targetUrl = connectionUrl({ user: ctx.secrets.superuser.name, endpoints: [{ host: leader.host, port: leader.port }], database, caFile: handle.caFile, applicationName: 'pgpilot-import' });
        output.err(`restoring into ${database} on ${leader.name} with ${options.jobs} job(s)`);
        const restored = await runDumpRestore({
          binDir: manifest.binDir,
          program: 'pg_restore',
          args: pgRestoreArgs({ targetUrl, dumpDir, jobs: options.jobs, role: owner, clean: exists && options.force }),
          password: ctx.secrets.superuser.password,
          timeoutMs,
          onEvent,
        });

        const target = await ctx.connectTo(database, { statementTimeoutMs: timeoutMs });
        let targetCounts: Map<string, number>;
        try {
          const targetTables = await listUserTables(target);
          output.err(`counting rows of ${targetTables.length} table(s) in ${database}`);
          targetCounts = await countRows(target, targetTables);
        } finally {
          await target.end().catch(() => undefined);
        }
        const mismatches = compareCounts(sourceCounts, targetCounts);
        if (mismatches.length > 0) {
          throw new PgpilotError('COMMAND_FAILED', `import check failed: row counts differ in ${mismatches.length} table(s): ${describeMismatches(mismatches)}`, {
            hint: restored.exitCode === 0 ? 'the target had tables the source does not, or the restore lost rows; re-run with --force into an empty database' : `pg_restore reported: ${restored.errors.slice(0, 3).join(' | ')}`,
          });
        }
        if (restored.exitCode !== 0) {
          throw new PgpilotError('COMMAND_FAILED', `pg_restore reported errors (every table has its rows): ${(restored.errors.length > 0 ? restored.errors : restored.tail).slice(0, 3).join(' | ')}`, {
            hint: 'some objects were not restored (see the lines above); fix the cause (a missing extension or role) and run the import again with --force',
          });
        }
      } catch (error) {
        if (createdDatabase) {
          await dropDatabase(ctx.client, database).catch(() => undefined);
          output.err(`dropped database ${database} again (created by this import)`);
        }
        throw error;
      }
      const tables = [...sourceCounts].map(([table, rows]) => ({ table, rows }));
      return {
        database,
        createdDatabase,
        owner: owner ?? ctx.secrets.superuser.name,
        tables,
        rows: tables.reduce((sum, t) => sum + t.rows, 0),
        durationMs: clock.nowMs() - startedMs,
      };
    } finally {
      await sourceClient.end().catch(() => undefined);
      if (workDir !== null) await rm(workDir, { recursive: true, force: true });
    }
  });
  if (options.json) printJson(output, result);
  else {
    output.out(
      `imported ${result.tables.length} table(s), ${result.rows} row(s) into ${result.database} (owner ${result.owner}) in ${(result.durationMs / 1000).toFixed(1)} s; row counts match on every table`,
    );
  }
  return 0;
}
