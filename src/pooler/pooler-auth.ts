/**
 * The postgres side of PgBouncer's authentication (the standard `auth_user` + `auth_query`
 * pattern): a login role that can do one thing, call a SECURITY DEFINER function that returns a
 * login role's SCRAM verifier, and that function in every database PgBouncer may be asked for
 * (pgbouncer 1.18 runs `auth_query` in the database the client names; `auth_dbname` came later).
 *
 * Invariants and why:
 * - The function lives in schema `pgpilot`, owned by the superuser, so that the owner of an app
 *   database (who owns its `public` schema) cannot drop or replace it. Its search_path is pinned
 *   to pg_catalog, EXECUTE is revoked from PUBLIC and granted to the pooler role only.
 * - It returns no verifier for a role that cannot log in, or whose VALID UNTIL has passed
 *   (PgBouncer's CVE-2025-2291 advice), so PgBouncer refuses exactly what postgres would refuse.
 * - The pooler role gets CONNECT on each database explicitly: app databases revoke it from PUBLIC
 *   (src/postgres/app-queries.ts). `template1` gets the function too, so databases created later
 *   from it inherit it; the leader's agent grants CONNECT on new databases (pooler-supervisor.ts).
 * - Idempotent and race-tolerant: everything checks before it creates, so running it on every
 *   `pooler enable` and on every agent start writes nothing when nothing is missing.
 */
import { randomBytes } from 'node:crypto';
import { ensureRole, sqlState, type PgClient } from '../postgres/queries.js';

export const POOLER_ROLE = 'pgpilot_pooler';
export const POOLER_SCHEMA = 'pgpilot';
export const LOOKUP_FUNCTION = 'pooler_lookup';
/** What PgBouncer runs (as POOLER_ROLE, in the client's database) to fetch a verifier. */
export const AUTH_QUERY = `SELECT usename, passwd FROM ${POOLER_SCHEMA}.${LOOKUP_FUNCTION}($1)`;

export function generatePoolerPassword(): string {
  return randomBytes(24).toString('base64url');
}

/** The CREATE FUNCTION statement (pure). */
export function lookupFunctionSql(): string {
  return `CREATE OR REPLACE FUNCTION ${POOLER_SCHEMA}.${LOOKUP_FUNCTION}(i_username text, OUT usename text, OUT passwd text)
RETURNS record
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog
AS $fn$
  SELECT rolname::text,
         CASE WHEN rolvaliduntil IS NULL OR rolvaliduntil > now() THEN rolpassword ELSE NULL END
    FROM pg_catalog.pg_authid
   WHERE rolname = i_username AND rolcanlogin
$fn$`;
}

/** Creates the pooler role or resets its password (sent as a SCRAM verifier only). */
export async function ensurePoolerRole(client: PgClient, password: string): Promise<'created' | 'altered'> {
  return ensureRole(client, { name: POOLER_ROLE, password, login: true, replication: false, superuser: false });
}

/**
 * In the database `client` is connected to: the schema, the function and the grants, each only
 * when missing. Returns what it had to do (empty: everything was there).
 */
export async function ensureLookupFunction(client: PgClient): Promise<string[]> {
  const done: string[] = [];
  const schema = client.escapeIdentifier(POOLER_SCHEMA);
  const role = client.escapeIdentifier(POOLER_ROLE);
  const fn = `${schema}.${client.escapeIdentifier(LOOKUP_FUNCTION)}(text)`;
  const signature = `${POOLER_SCHEMA}.${LOOKUP_FUNCTION}(text)`;
  // Existence first, privileges in a second query: has_*_privilege raises on a missing object, and
  // a CASE guard would not stop the planner from folding it with the bound values.
  const exists = await client.query<{ has_schema: boolean; has_function: boolean }>(
    'SELECT to_regnamespace($1) IS NOT NULL AS has_schema, to_regprocedure($2) IS NOT NULL AS has_function',
    [POOLER_SCHEMA, signature],
  );
  const hasSchema = exists.rows[0]?.has_schema === true;
  const hasFunction = exists.rows[0]?.has_function === true;
  let row: { usage: boolean; execute: boolean } | undefined;
  if (hasSchema && hasFunction) {
    const privileges = await client.query<{ usage: boolean; execute: boolean }>(
      "SELECT has_schema_privilege($1, $2, 'USAGE') AS usage, has_function_privilege($1, $3, 'EXECUTE') AS execute",
      [POOLER_ROLE, POOLER_SCHEMA, signature],
    );
    row = privileges.rows[0];
  }
  if (!hasSchema) {
    await ignoreDuplicate(client.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`));
    done.push('schema');
  }
  if (!hasFunction) {
    await client.query('BEGIN');
    try {
      await client.query(lookupFunctionSql());
      await client.query(`REVOKE ALL ON FUNCTION ${fn} FROM PUBLIC`);
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    }
    done.push('function');
  }
  if (row?.usage !== true) {
    await client.query(`GRANT USAGE ON SCHEMA ${schema} TO ${role}`);
    done.push('usage');
  }
  if (row?.execute !== true) {
    await client.query(`GRANT EXECUTE ON FUNCTION ${fn} TO ${role}`);
    done.push('execute');
  }
  return done;
}

export interface ConnectableDatabase {
  oid: number;
  name: string;
  /** The pooler role may connect (CONNECT privilege). */
  poolerCanConnect: boolean;
}

/** Every database clients can connect to (template0 excluded), and whether the pooler role may. */
export async function connectableDatabases(client: PgClient): Promise<ConnectableDatabase[]> {
  const result = await client.query<{ oid: string; datname: string; can: boolean }>(
    `SELECT oid::text AS oid, datname, has_database_privilege($1, oid, 'CONNECT') AS can
       FROM pg_database WHERE datallowconn ORDER BY datname`,
    [POOLER_ROLE],
  );
  return result.rows.map((r) => ({ oid: Number(r.oid), name: r.datname, poolerCanConnect: r.can }));
}

export async function grantConnect(client: PgClient, database: string): Promise<void> {
  await client.query(`GRANT CONNECT ON DATABASE ${client.escapeIdentifier(database)} TO ${client.escapeIdentifier(POOLER_ROLE)}`);
}

/** True when the pooler role exists (the agent waits for `pooler enable` to create it). */
export async function poolerRoleExists(client: PgClient): Promise<boolean> {
  const result = await client.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [POOLER_ROLE]);
  return (result.rowCount ?? 0) > 0;
}

async function ignoreDuplicate(query: Promise<unknown>): Promise<void> {
  try {
    await query;
  } catch (error) {
    // duplicate_schema / unique_violation: created concurrently by another session.
    if (sqlState(error) !== '42P06' && sqlState(error) !== '23505') throw error;
  }
}
