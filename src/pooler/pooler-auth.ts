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
 * - Trusted only when ours: the schema or the function may already exist because someone else
 *   created them first (a database owner can create a schema named `pgpilot` in their database)
 *   to hand PgBouncer verifiers of their choosing. So an existing schema or function is used only
 *   when owned by the cluster superuser; otherwise `ensureLookupFunction` refuses with
 *   POOLER_AUTH_UNTRUSTED and changes nothing, and `lookupTrustProblem` (read-only, so it also
 *   runs on a standby) gives every agent the reason not to start PgBouncer. Our own function is
 *   repaired when its search_path pin or the PUBLIC revoke is missing, and the objects are checked
 *   again after creating them (a concurrent CREATE by someone else would otherwise win silently).
 */
import { randomBytes } from 'node:crypto';
import { PgpilotError } from '../shared/errors.js';
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

/** The pooler's schema and lookup function in one database, as the catalog shows them (null owner: absent). */
export interface LookupObjects {
  schemaOwner: string | null;
  functionOwner: string | null;
  securityDefiner: boolean;
  /** `proconfig` of the function: per-function settings such as `search_path=pg_catalog`. */
  config: string[];
  /** Whether PUBLIC may execute the function (the default unless revoked). */
  publicExecute: boolean;
}

/** Reads `LookupObjects` in the database `client` is connected to (read-only: works on a standby). */
export async function readLookupObjects(client: PgClient): Promise<LookupObjects> {
  const result = await client.query<{ schema_owner: string | null; function_owner: string | null; secdef: boolean | null; config: string[] | null; public_execute: boolean | null }>(
    `SELECT CASE WHEN n.oid IS NULL THEN NULL ELSE pg_catalog.pg_get_userbyid(n.nspowner)::text END AS schema_owner,
            CASE WHEN p.oid IS NULL THEN NULL ELSE pg_catalog.pg_get_userbyid(p.proowner)::text END AS function_owner,
            p.prosecdef AS secdef,
            p.proconfig AS config,
            CASE WHEN p.oid IS NULL THEN NULL
                 ELSE EXISTS (SELECT 1 FROM pg_catalog.aclexplode(COALESCE(p.proacl, pg_catalog.acldefault('f', p.proowner))) a
                               WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE') END AS public_execute
       FROM (SELECT 1) one
       LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = $1
       LEFT JOIN pg_catalog.pg_proc p ON p.pronamespace = n.oid AND p.proname = $2 AND p.proargtypes = '25'::pg_catalog.oidvector`,
    [POOLER_SCHEMA, LOOKUP_FUNCTION],
  );
  const row = result.rows[0];
  return {
    schemaOwner: row?.schema_owner ?? null,
    functionOwner: row?.function_owner ?? null,
    securityDefiner: row?.secdef === true,
    config: row?.config ?? [],
    publicExecute: row?.public_execute === true,
  };
}

/**
 * Why the existing schema or function must not be used (pure); null when they are the cluster
 * superuser's, or absent (then pgpilot creates them).
 */
export function lookupTrustProblem(objects: LookupObjects, superuser: string): string | null {
  if (objects.schemaOwner !== null && objects.schemaOwner !== superuser) {
    return `schema ${POOLER_SCHEMA} is owned by ${objects.schemaOwner}, not by the cluster superuser ${superuser}`;
  }
  if (objects.functionOwner !== null && objects.functionOwner !== superuser) {
    return `function ${POOLER_SCHEMA}.${LOOKUP_FUNCTION}(text) is owned by ${objects.functionOwner}, not by the cluster superuser ${superuser}`;
  }
  return null;
}

/** What our own function lacks (pure): the search_path pin and the PUBLIC revoke. */
export function lookupRepairs(objects: LookupObjects): Array<'search-path' | 'revoke-public' | 'security-definer'> {
  if (objects.functionOwner === null) return [];
  const repairs: Array<'search-path' | 'revoke-public' | 'security-definer'> = [];
  if (!objects.securityDefiner) repairs.push('security-definer');
  if (!objects.config.includes('search_path=pg_catalog')) repairs.push('search-path');
  if (objects.publicExecute) repairs.push('revoke-public');
  return repairs;
}

export function untrustedLookupError(database: string, problem: string): PgpilotError {
  return new PgpilotError('POOLER_AUTH_UNTRUSTED', `database ${database}: ${problem}; the pooler will not use it`, {
    hint: `someone else created it, possibly to hijack PgBouncer's authentication: check who, then as the superuser DROP SCHEMA ${POOLER_SCHEMA} CASCADE in ${database} and run pgpilot pooler enable again`,
  });
}

/**
 * In the database `client` is connected to: the schema, the function and the grants, each only
 * when missing. Returns what it had to do (empty: everything was there). POOLER_AUTH_UNTRUSTED,
 * with nothing changed, when the schema or function exists but is not `superuser`'s.
 */
export async function ensureLookupFunction(client: PgClient, superuser: string, database = '?'): Promise<string[]> {
  const before = await readLookupObjects(client);
  const problem = lookupTrustProblem(before, superuser);
  if (problem !== null) throw untrustedLookupError(database, problem);
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
  // After creating: still ours (a concurrent CREATE SCHEMA by someone else makes IF NOT EXISTS a no-op)?
  const after = hasSchema && hasFunction ? before : await readLookupObjects(client);
  const late = lookupTrustProblem(after, superuser);
  if (late !== null) throw untrustedLookupError(database, late);
  for (const repair of lookupRepairs(after)) {
    if (repair === 'security-definer') await client.query(`ALTER FUNCTION ${fn} SECURITY DEFINER`);
    if (repair === 'search-path') await client.query(`ALTER FUNCTION ${fn} SET search_path = pg_catalog`);
    if (repair === 'revoke-public') await client.query(`REVOKE ALL ON FUNCTION ${fn} FROM PUBLIC`);
    done.push(repair);
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

/**
 * Read-only audit of every database the pooler serves (works on a standby): the first trust
 * problem found, as `database: reason`, or null when every schema and function present is the
 * superuser's. `connectTo` opens a connection to one database (closed here).
 */
export async function auditLookupFunctions(client: PgClient, connectTo: (database: string) => Promise<PgClient>, superuser: string): Promise<{ database: string; problem: string } | null> {
  for (const db of await connectableDatabases(client)) {
    const dbClient = await connectTo(db.name);
    try {
      const problem = lookupTrustProblem(await readLookupObjects(dbClient), superuser);
      if (problem !== null) return { database: db.name, problem };
    } finally {
      await dbClient.end().catch(() => undefined);
    }
  }
  return null;
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
