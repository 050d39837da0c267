/**
 * The pooler refuses an auth function it did not create (src/pooler/pooler-auth.ts,
 * pooler-supervisor.ts), with a real 1-node cluster: a non-superuser who owns a database creates
 * schema `pgpilot` and a `pooler_lookup(text)` of their own there (which would hand PgBouncer a
 * verifier of their choosing). `pooler enable` then refuses with POOLER_AUTH_UNTRUSTED and starts
 * no PgBouncer; once the impostor is dropped it succeeds, and the function it creates pins its
 * search_path with EXECUTE revoked from PUBLIC. An impostor planted later in a new database makes
 * the running agent stop its PgBouncer and record a `pooler-auth-refused` event. Waits are on
 * observed states with deadlines; the cluster is destroyed in `after`.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import type { ClusterEvent } from '../../src/state/events.js';
import type { ClusterStatus } from '../../src/operations/cluster-status.js';
import { makeTempHome, removeTempHome, runCli } from '../helpers/cli.js';
import { clusterStatusOf, leaderOf, pgClientOptions, withClient, withNode } from '../helpers/cluster.js';
import { waitUntil } from '../helpers/wait.js';

const NAME = 'poolauth';
const MALLORY_PASSWORD = 'mallory-password-0123456789';

/** The impostor: a SECURITY DEFINER lookup that would answer for any user with mallory's verifier. */
const IMPOSTOR_SQL = `CREATE SCHEMA pgpilot;
CREATE FUNCTION pgpilot.pooler_lookup(i_username text, OUT usename text, OUT passwd text) RETURNS record
LANGUAGE sql SECURITY DEFINER AS $$ SELECT i_username, (SELECT rolpassword FROM pg_authid WHERE rolname = 'mallory') $$;
GRANT USAGE ON SCHEMA pgpilot TO PUBLIC;`;

function asMallory<T>(status: ClusterStatus, database: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  return withClient(pgClientOptions(status, leaderOf(status), { user: 'mallory', password: MALLORY_PASSWORD, database, connectionTimeoutMillis: 5_000 }), fn);
}

/** mallory's own database, with her schema `pgpilot` in it (from template0, so nothing of pgpilot's is there). */
async function plantImpostor(status: ClusterStatus, database: string): Promise<void> {
  await asMallory(status, 'postgres', (c) => c.query(`CREATE DATABASE ${database} TEMPLATE template0`));
  await asMallory(status, database, (c) => c.query(IMPOSTOR_SQL));
}

void describe('pooler auth: an auth function pgpilot did not create is refused', () => {
  let home = '';
  before(async () => {
    home = makeTempHome('poolauth');
    const created = await runCli(['create', NAME, '--nodes', '1', '--json', '--show-secrets'], { home });
    assert.equal(created.code, 0, created.stderr);
    const status = await clusterStatusOf(home, NAME);
    await withNode(status, leaderOf(status), (c) => c.query(`CREATE ROLE mallory LOGIN CREATEDB PASSWORD '${MALLORY_PASSWORD}'`));
  });
  after(async () => {
    if (process.env['PGPILOT_TEST_KEEP'] === '1') return;
    if (home !== '') {
      await runCli(['destroy', NAME, '--yes'], { home });
      await removeTempHome(home);
    }
  });

  void it('pooler enable refuses a schema owned by someone else and starts no PgBouncer', async () => {
    const status = await clusterStatusOf(home, NAME);
    await plantImpostor(status, 'evil1');
    const refused = await runCli(['pooler', 'enable', NAME, '--timeout', '60'], { home });
    assert.equal(refused.code, 1, `${refused.stdout}\n${refused.stderr}`);
    assert.match(refused.stderr, /error: database evil1: schema pgpilot is owned by mallory, not by the cluster superuser postgres; the pooler will not use it/);
    assert.match(refused.stderr, /hint: .*DROP SCHEMA pgpilot CASCADE in evil1/);
    const after1 = await clusterStatusOf(home, NAME);
    assert.equal(after1.pooler?.enabled, false, 'the pooler was not enabled');
    assert.deepEqual(after1.pooler?.nodes.map((n) => n.pid), [null]);
    // Untouched: still mallory's function, nothing of pgpilot's was granted on it.
    const owner = await asMallory(status, 'evil1', async (c) => (await c.query<{ o: string }>("SELECT pg_get_userbyid(proowner) AS o FROM pg_proc WHERE proname = 'pooler_lookup'")).rows[0]?.o);
    assert.equal(owner, 'mallory');
  });

  void it('once the impostor is gone, enables the pooler with a pinned search_path and no PUBLIC execute', async () => {
    const status = await clusterStatusOf(home, NAME);
    const leader = leaderOf(status);
    await withClient(pgClientOptions(status, leader, { database: 'evil1' }), (inEvil) => inEvil.query('DROP SCHEMA pgpilot CASCADE'));
    const enabled = await runCli(['pooler', 'enable', NAME, '--timeout', '60'], { home });
    assert.equal(enabled.code, 0, enabled.stderr);
    const function_ = await withNode(status, leader, async (c) =>
      (
        await c.query<{ owner: string; config: string[] | null; secdef: boolean; public_execute: boolean }>(
          `SELECT pg_get_userbyid(proowner) AS owner, proconfig AS config, prosecdef AS secdef,
                  has_function_privilege('public', oid, 'EXECUTE') AS public_execute
             FROM pg_proc WHERE proname = 'pooler_lookup' AND pronamespace = 'pgpilot'::regnamespace`,
        )
      ).rows[0],
    );
    assert.deepEqual(function_, { owner: 'postgres', config: ['search_path=pg_catalog'], secdef: true, public_execute: false });
    await waitUntil('PgBouncer to run', async () => ((await clusterStatusOf(home, NAME)).pooler?.nodes.every((n) => n.pid !== null)) ?? false, 30_000);
  });

  void it('an impostor planted later makes the agent stop PgBouncer and record why', async () => {
    const status = await clusterStatusOf(home, NAME);
    // The leader's upkeep may create pgpilot's schema in a new database before mallory does: then
    // she tries again with another one (the race the owner check exists for).
    let planted: string | null = null;
    for (let attempt = 2; attempt <= 5 && planted === null; attempt += 1) {
      try {
        await plantImpostor(status, `evil${attempt}`);
        planted = `evil${attempt}`;
      } catch (error) {
        if (!/already exists/.test(String(error))) throw error;
      }
    }
    assert.ok(planted !== null, 'could not plant the impostor');
    await waitUntil('the agent to stop PgBouncer', async () => ((await clusterStatusOf(home, NAME)).pooler?.nodes.every((n) => n.pid === null)) ?? false, 90_000, 500);
    const events = JSON.parse((await runCli(['events', NAME, '--json', '--limit', '500'], { home })).stdout) as ClusterEvent[];
    const refusal = events.find((e) => e.kind === 'pooler-auth-refused');
    assert.ok(refusal, `no pooler-auth-refused event in ${events.map((e) => e.kind).join(', ')}`);
    assert.match(refusal.message, new RegExp(`database ${planted}: schema pgpilot is owned by mallory`));
    // Still enabled in the config: it is the agent that refuses, and says so.
    assert.equal((await clusterStatusOf(home, NAME)).pooler?.enabled, true);
  });
});
