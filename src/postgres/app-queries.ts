/**
 * The SQL behind the app workflows (attach, detach, users, db, import), as small functions over a
 * node-postgres Client connected as the cluster superuser to the leader, plus the pure name checks
 * and SQL builders they use. Invariants:
 * - Every name that reaches SQL first passed `validateName` (lower-case letters, digits, `_`, `-`,
 *   starting with a letter, at most 63 bytes, not `pg_*`, not a reserved role or database), and is
 *   still quoted with pg's escapeIdentifier; values travel as bind parameters.
 * - Passwords reach the server only as SCRAM-SHA-256 verifiers computed here (scram.ts), so a clear
 *   password never lands in the server's memory, logs or pg_stat_activity.
 * - A database made for an app is private: CONNECT (and TEMPORARY) are revoked from PUBLIC and
 *   granted to its owner only, so one app's role cannot even open another app's database.
 * - Dropping a role first hands what it owns to the superuser and drops its privileges in every
 *   database where it has any (pg_shdepend says where), so DROP ROLE cannot fail half-way on
 *   "role cannot be dropped because some objects depend on it".
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { PgpilotError } from '../shared/errors.js';
import type { PgClient } from './queries.js';
import { scramSha256Verifier } from './scram.js';

export type NameKind = 'app' | 'user' | 'database';

/** 1-63 characters: a lower-case letter, then lower-case letters, digits, `_` or `-`. */
export const APP_NAME_PATTERN = /^[a-z][a-z0-9_-]{0,62}$/;

/**
 * Role names no app or user may take: pgpilot's own roles (superuser, replication), the names
 * postgres reserves or treats specially, and a `pgpilot` prefix kept for pgpilot's future roles.
 */
export const RESERVED_ROLE_NAMES: readonly string[] = ['postgres', 'replicator', 'pgpilot', 'public', 'none', 'current_user', 'current_role', 'session_user', 'all'];

/** Databases no command may create, attach or drop. */
export const RESERVED_DATABASE_NAMES: readonly string[] = ['postgres', 'template0', 'template1', 'pgpilot'];

const KIND_FLAG: Record<NameKind, string> = { app: '--app', user: 'the user name', database: 'the database name' };

/**
 * The checked name (pure). `extraReserved` adds the cluster's own role names from secrets.json
 * when they differ from the defaults. Throws INPUT_INVALID (exit 2) with the accepted form.
 */
export function validateName(kind: NameKind, value: string, extraReserved: readonly string[] = []): string {
  const hint = `use 1-63 lower-case letters, digits, "_" or "-", starting with a letter (e.g. shop, blog_api); ${KIND_FLAG[kind]} may not start with pg_ or be reserved`;
  if (!APP_NAME_PATTERN.test(value)) {
    throw new PgpilotError('INPUT_INVALID', `invalid ${kind} name ${JSON.stringify(value)}`, { hint, exitCode: 2 });
  }
  if (value.startsWith('pg_') || value.startsWith('pgpilot')) {
    throw new PgpilotError('INPUT_INVALID', `${kind} name ${JSON.stringify(value)} is reserved (pg_ and pgpilot prefixes belong to postgres and pgpilot)`, { hint, exitCode: 2 });
  }
  const reserved = new Set([...(kind === 'database' ? RESERVED_DATABASE_NAMES : RESERVED_ROLE_NAMES), ...extraReserved]);
  if (reserved.has(value)) {
    throw new PgpilotError('INPUT_INVALID', `${kind} name ${JSON.stringify(value)} is reserved`, {
      hint: `choose another name; reserved: ${[...reserved].sort().join(', ')}`,
      exitCode: 2,
    });
  }
  return value;
}

/** The database and role an app gets by default: its name with `-` turned into `_` (plain SQL identifiers). */
export function defaultAppNames(app: string): { database: string; user: string } {
  const plain = app.replace(/-/g, '_');
  return { database: plain, user: plain };
}

/** A generated password: 24 random bytes, base64url (URL- and env-file-safe, 32 characters). */
export function generatePassword(): string {
  return randomBytes(24).toString('base64url');
}

const ident = (name: string): string => pg.escapeIdentifier(name);
const literal = (text: string): string => pg.escapeLiteral(text);

/** CREATE ROLE with a SCRAM verifier (pure). Created roles never get CREATEDB, CREATEROLE or REPLICATION. */
export function createRoleSql(role: string, verifier: string, options: { superuser: boolean }): string {
  if (!verifier.startsWith('SCRAM-SHA-256$')) throw new PgpilotError('INTERNAL', 'a role password must be a SCRAM verifier');
  const attributes = ['LOGIN', options.superuser ? 'SUPERUSER' : 'NOSUPERUSER', 'NOCREATEDB', 'NOCREATEROLE', 'NOREPLICATION', 'INHERIT'];
  return `CREATE ROLE ${ident(role)} WITH ${attributes.join(' ')} PASSWORD ${literal(verifier)}`;
}

/** CREATE DATABASE, owned by `owner` when given (pure). */
export function createDatabaseSql(database: string, owner: string | null): string {
  return `CREATE DATABASE ${ident(database)}${owner === null ? '' : ` OWNER ${ident(owner)}`}`;
}

/** Makes a database private: only its owner (and superusers) may connect or create temp tables (pure). */
export function privateDatabaseSql(database: string, owner: string | null): string[] {
  const statements = [`REVOKE CONNECT, TEMPORARY ON DATABASE ${ident(database)} FROM PUBLIC`];
  if (owner !== null) statements.push(`GRANT CONNECT, TEMPORARY ON DATABASE ${ident(database)} TO ${ident(owner)}`);
  return statements;
}

/**
 * Run inside the new database: PG 15 already makes the `public` schema owner-only for CREATE
 * (owned by pg_database_owner, PUBLIC keeps USAGE); this states it explicitly in case template1
 * was changed, so no other role can ever create objects there.
 */
export const HARDEN_PUBLIC_SCHEMA_SQL = 'REVOKE CREATE ON SCHEMA public FROM PUBLIC';

/** Per-database cleanup before DROP ROLE (pure): ownership to the superuser, then the role's privileges. */
export function releaseRoleSql(role: string, superuser: string): string[] {
  return [`REASSIGN OWNED BY ${ident(role)} TO ${ident(superuser)}`, `DROP OWNED BY ${ident(role)}`];
}

export function dropRoleSql(role: string): string {
  return `DROP ROLE IF EXISTS ${ident(role)}`;
}

export function dropDatabaseSql(database: string): string {
  return `DROP DATABASE IF EXISTS ${ident(database)} WITH (FORCE)`;
}

export async function roleExists(client: PgClient, role: string): Promise<boolean> {
  const result = await client.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [role]);
  return (result.rowCount ?? 0) > 0;
}

export async function databaseExists(client: PgClient, database: string): Promise<boolean> {
  const result = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
  return (result.rowCount ?? 0) > 0;
}

/** Creates a login role whose password reaches the server only as a SCRAM verifier. */
export async function createLoginRole(client: PgClient, role: string, password: string, options: { superuser: boolean }): Promise<void> {
  await client.query(createRoleSql(role, scramSha256Verifier(password), options));
}

/** Creates a private database (see `privateDatabaseSql`). CREATE DATABASE cannot run in a transaction. */
export async function createPrivateDatabase(client: PgClient, database: string, owner: string | null): Promise<void> {
  await client.query(createDatabaseSql(database, owner));
  for (const statement of privateDatabaseSql(database, owner)) await client.query(statement);
}

/** Ends every session of `role` (its server processes); returns how many were signalled. */
export async function terminateRoleSessions(client: PgClient, role: string): Promise<number> {
  const result = await client.query<{ ok: boolean }>(
    'SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE usename = $1 AND pid <> pg_backend_pid()',
    [role],
  );
  return result.rows.filter((r) => r.ok).length;
}

/** Ends every session connected to `database`; returns how many were signalled. */
export async function terminateDatabaseSessions(client: PgClient, database: string): Promise<number> {
  const result = await client.query<{ ok: boolean }>(
    'SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()',
    [database],
  );
  return result.rows.filter((r) => r.ok).length;
}

/** Connectable databases where `role` owns objects or holds privileges (pg_shdepend), the current database first and always included (shared objects are handled from any database). */
export async function databasesDependingOnRole(client: PgClient, role: string): Promise<string[]> {
  const result = await client.query<{ datname: string }>(
    `SELECT DISTINCT d.datname
       FROM pg_shdepend s
       JOIN pg_database d ON d.oid = s.dbid
      WHERE s.refclassid = 'pg_authid'::regclass
        AND s.refobjid = (SELECT oid FROM pg_roles WHERE rolname = $1)
        AND d.datallowconn
      ORDER BY 1`,
    [role],
  );
  const current = (await client.query<{ db: string }>('SELECT current_database() AS db')).rows[0]?.db ?? 'postgres';
  return [...new Set([current, ...result.rows.map((r) => r.datname)])];
}

export interface DropRoleDeps {
  /** The superuser connection the caller holds (to any database). */
  client: PgClient;
  superuser: string;
  /** A new superuser connection to `database`; `dropRoleEverywhere` ends it when done. */
  connectTo(database: string): Promise<PgClient>;
}

/**
 * Removes `role` completely: its sessions are ended, what it owns in each database goes to the
 * superuser, its privileges are dropped, then the role. Returns the databases that were cleaned.
 * Idempotent: an absent role is not an error (returns []).
 */
export async function dropRoleEverywhere(deps: DropRoleDeps, role: string): Promise<string[]> {
  if (!(await roleExists(deps.client, role))) return [];
  await terminateRoleSessions(deps.client, role);
  const current = (await deps.client.query<{ db: string }>('SELECT current_database() AS db')).rows[0]?.db;
  const databases = await databasesDependingOnRole(deps.client, role);
  for (const database of databases) {
    const client = database === current ? deps.client : await deps.connectTo(database);
    try {
      for (const statement of releaseRoleSql(role, deps.superuser)) await client.query(statement);
    } finally {
      if (client !== deps.client) await client.end().catch(() => undefined);
    }
  }
  await deps.client.query(dropRoleSql(role));
  return databases;
}

/** Ends the database's sessions and drops it (FORCE: sessions that arrive meanwhile are ended too). */
export async function dropDatabase(client: PgClient, database: string): Promise<void> {
  await terminateDatabaseSessions(client, database);
  await client.query(dropDatabaseSql(database));
}

export interface UserRow {
  name: string;
  superuser: boolean;
  login: boolean;
  replication: boolean;
  createdb: boolean;
  createrole: boolean;
  connectionLimit: number;
}

/** Every role except postgres's built-in `pg_*` roles, by name. */
export async function listUsers(client: PgClient): Promise<UserRow[]> {
  const result = await client.query<{
    rolname: string;
    rolsuper: boolean;
    rolcanlogin: boolean;
    rolreplication: boolean;
    rolcreatedb: boolean;
    rolcreaterole: boolean;
    rolconnlimit: number;
  }>(
    `SELECT rolname, rolsuper, rolcanlogin, rolreplication, rolcreatedb, rolcreaterole, rolconnlimit
       FROM pg_roles WHERE rolname !~ '^pg_' ORDER BY rolname`,
  );
  return result.rows.map((r) => ({
    name: r.rolname,
    superuser: r.rolsuper,
    login: r.rolcanlogin,
    replication: r.rolreplication,
    createdb: r.rolcreatedb,
    createrole: r.rolcreaterole,
    connectionLimit: Number(r.rolconnlimit),
  }));
}

export interface DatabaseRow {
  name: string;
  owner: string;
  sizeBytes: number;
  /** False when PUBLIC may not connect (private to its owner and granted roles). */
  publicConnect: boolean;
}

/** Every database except the templates, by name. */
export async function listDatabases(client: PgClient): Promise<DatabaseRow[]> {
  const result = await client.query<{ datname: string; owner: string; size_bytes: string; public_connect: boolean }>(
    `SELECT datname, pg_get_userbyid(datdba) AS owner, pg_database_size(oid)::text AS size_bytes,
            has_database_privilege('public', oid, 'CONNECT') AS public_connect
       FROM pg_database WHERE NOT datistemplate ORDER BY datname`,
  );
  return result.rows.map((r) => ({ name: r.datname, owner: r.owner, sizeBytes: Number(r.size_bytes), publicConnect: r.public_connect }));
}

export interface TableName {
  schema: string;
  name: string;
}

/** `schema.table`, quoted where needed (pure). */
export function qualifiedName(table: TableName): string {
  return `${ident(table.schema)}.${ident(table.name)}`;
}

/** Plain and partitioned tables in every schema except the system ones, by schema and name. */
export async function listUserTables(client: PgClient): Promise<TableName[]> {
  const result = await client.query<{ nspname: string; relname: string }>(
    `SELECT n.nspname, c.relname
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('r', 'p')
        AND n.nspname NOT IN ('pg_catalog', 'information_schema')
        AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'
      ORDER BY n.nspname, c.relname`,
  );
  return result.rows.map((r) => ({ schema: r.nspname, name: r.relname }));
}

/** Exact `count(*)` of each table, keyed by `schema.table` as written by `tableKey`. */
export async function countRows(client: PgClient, tables: readonly TableName[]): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (const table of tables) {
    const result = await client.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${qualifiedName(table)}`);
    counts.set(tableKey(table), Number(result.rows[0]?.n ?? Number.NaN));
  }
  return counts;
}

/** The readable key of a table in count maps and messages: `schema.table`. */
export function tableKey(table: TableName): string {
  return `${table.schema}.${table.name}`;
}

export interface CountMismatch {
  table: string;
  source: number | null;
  target: number | null;
}

/** Tables whose row counts differ, or that exist on one side only (pure). */
export function compareCounts(source: ReadonlyMap<string, number>, target: ReadonlyMap<string, number>): CountMismatch[] {
  const mismatches: CountMismatch[] = [];
  for (const table of [...new Set([...source.keys(), ...target.keys()])].sort()) {
    const s = source.get(table) ?? null;
    const t = target.get(table) ?? null;
    if (s !== t) mismatches.push({ table, source: s, target: t });
  }
  return mismatches;
}
