/**
 * Tuning end to end through bin/pgpilot with real PostgreSQL 15 and etcd, on one shared 3-node
 * cluster (home under /tmp/tuning-*, destroyed in `after`):
 * - an invalid value (out of range, unknown name, managed setting) is refused with the valid range
 *   or a suggestion, exit 2, and changes nothing: same stored config, same values, no restart;
 * - a reloadable setting reaches every member by a reload (no postmaster restarted), and --reset
 *   takes it back;
 * - raising max_connections takes effect on every member by a rolling restart (replicas,
 *   switchover, former leader) while a client opening a new connection every 50 ms through one
 *   node's leader port writes: failed writes, if any, fit in the switchover pause the CLI reports,
 *   and every acknowledged write is in the table; without --yes and without a terminal it is
 *   refused (exit 2) and nothing changes; lowering it restarts the leader first, without a
 *   switchover;
 * - extensions: list, a contrib extension without preloading (no restart), pg_stat_statements
 *   (preloaded by a rolling restart, then usable), timescaledb (installed when its package is, else
 *   refused naming timescaledb-2-postgresql-15);
 * - scale vm: --dry-run prints the plan and changes nothing; applied, every member shows it.
 */
import { writerLoop } from '../helpers/writer-loop.js';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import type { ClusterStatus } from '../../src/operations/cluster-status.js';
import { removeTempHome, runCli } from '../helpers/cli.js';
import { clusterStatusOf, leaderOf, pgAccess, withNode } from '../helpers/cluster.js';
import { waitUntil } from '../helpers/wait.js';

const NAME = 'tune';
const statusOf = (home: string): Promise<ClusterStatus> => clusterStatusOf(home, NAME);

/** `SHOW name` on every running member, straight to its postgres (a session without settings of its own). */
async function showOnAll(status: ClusterStatus, name: string): Promise<Record<string, string>> {
  const values: Record<string, string> = {};
  for (const member of status.members.filter((m) => m.role === 'primary' || m.role === 'replica')) {
    values[member.name] = await withNode(status, member, async (client) => (await client.query<{ v: string }>('SELECT current_setting($1) AS v', [name])).rows[0]?.v ?? '?');
  }
  return values;
}

function postmasterPids(status: ClusterStatus): Record<string, number | null> {
  return Object.fromEntries(status.members.map((m) => [m.name, m.postgresPid]));
}

async function storedConfig(home: string): Promise<unknown> {
  const shown = await runCli(['config', 'show', NAME, '--json'], { home });
  assert.equal(shown.code, 0, shown.stderr);
  return JSON.parse(shown.stdout);
}

async function leaderQuery<T extends pg.QueryResultRow>(home: string, sql: string): Promise<T[]> {
  const status = await statusOf(home);
  return withNode(status, leaderOf(status), async (client) => (await client.query<T>(sql)).rows);
}

void describe('config update, extensions and scale vm on a running cluster', () => {
  let home = '';
  before(async () => {
    home = mkdtempSync('/tmp/tuning-');
    chmodSync(home, 0o755);
    const created = await runCli(['create', NAME, '--json', '--show-secrets'], { home });
    assert.equal(created.code, 0, created.stderr);
  });
  after(async () => {
    if (process.env['PGPILOT_TEST_KEEP'] === '1') return;
    await runCli(['destroy', NAME, '--yes'], { home });
    await removeTempHome(home);
  });

  void it('an invalid value is refused with the valid range and changes nothing', async () => {
    const before = await statusOf(home);
    const configBefore = await storedConfig(home);
    const refused = await runCli(['config', 'update', NAME, '--set', 'max_connections=999999', '--yes'], { home });
    assert.equal(refused.code, 2, refused.stderr);
    assert.match(refused.stderr, /error: max_connections must be between 1 and 262143 \(got "999999"\)/);
    assert.match(refused.stderr, /hint: nothing was changed/);
    const typo = await runCli(['config', 'update', NAME, '--set', 'max_conections=200', '--set', 'work_mem=1XB', '--set', 'archive_command=cp %p /tmp', '--yes'], { home });
    assert.equal(typo.code, 2);
    assert.match(typo.stderr, /max_conections: unknown parameter; did you mean max_connections\?/);
    assert.match(typo.stderr, /work_mem: unknown unit "XB"/);
    assert.match(typo.stderr, /archive_command is managed by pgpilot/);
    const badZone = await runCli(['config', 'update', NAME, '--set', 'TimeZone=Mars/Base'], { home });
    assert.equal(badZone.code, 2);
    assert.match(badZone.stderr, /postgres rejects "Mars\/Base"/);
    assert.deepEqual(await storedConfig(home), configBefore, 'the stored config did not change');
    const afterStatus = await statusOf(home);
    assert.deepEqual(postmasterPids(afterStatus), postmasterPids(before), 'no postmaster restarted');
    assert.deepEqual(Object.values(await showOnAll(afterStatus, 'max_connections')), ['100', '100', '100']);
  });

  void it('a reloadable setting reaches every member by a reload; --reset takes it back', async () => {
    const before = await statusOf(home);
    const set = await runCli(['config', 'update', NAME, '--set', 'work_mem=12MB', '--set', 'log_min_duration_statement=2s'], { home });
    assert.equal(set.code, 0, set.stderr);
    assert.match(set.stdout, /work_mem +4MB +12MB +reload/);
    assert.match(set.stdout, /plan: every member rewrites postgresql.conf and reloads/);
    const status = await statusOf(home);
    assert.deepEqual(Object.values(await showOnAll(status, 'work_mem')), ['12MB', '12MB', '12MB']);
    assert.deepEqual(Object.values(await showOnAll(status, 'log_min_duration_statement')), ['2s', '2s', '2s']);
    assert.deepEqual(postmasterPids(status), postmasterPids(before), 'a reload, not a restart');
    const shown = (await storedConfig(home)) as { postgresParameters: Array<{ name: string; value: unknown; source: string }> };
    assert.deepEqual(shown.postgresParameters.find((p) => p.name === 'work_mem'), { name: 'work_mem', value: '12MB', source: 'override' });
    const reset = await runCli(['config', 'update', NAME, '--reset', 'work_mem'], { home });
    assert.equal(reset.code, 0, reset.stderr);
    assert.deepEqual(Object.values(await showOnAll(await statusOf(home), 'work_mem')), ['4MB', '4MB', '4MB']);
  });

  void it('max_connections: refused without --yes off a terminal; applied on every member by a rolling restart without failed writes beyond the switchover pause', async () => {
    const before = await statusOf(home);
    const configBefore = await storedConfig(home);
    const unconfirmed = await runCli(['config', 'update', NAME, '--set', 'max_connections=150'], { home });
    assert.equal(unconfirmed.code, 2, unconfirmed.stderr);
    assert.match(unconfirmed.stdout, /max_connections needs a restart of every member \(rolling: replicas, switchover, leader\)/);
    assert.match(unconfirmed.stderr, /--yes/);
    assert.deepEqual(await storedConfig(home), configBefore, 'nothing stored without confirmation');

    const leader = leaderOf(before);
    const via = before.members.find((m) => m.name !== leader.name);
    assert.ok(via?.proxyPort);
    await leaderQuery(home, 'CREATE TABLE rolling_writes (id bigserial PRIMARY KEY, at timestamptz DEFAULT now())');
    const load = writerLoop(via.proxyPort, pgAccess(before), 'rolling_writes');
    await waitUntil('10 writes before the update', () => Promise.resolve(load.okSoFar() >= 10), 15_000, 50);
    const applied = await runCli(['config', 'update', NAME, '--set', 'max_connections=150', '--yes'], { home });
    const mark = load.okSoFar();
    await waitUntil('10 writes after the update', () => Promise.resolve(load.okSoFar() >= mark + 10), 15_000, 50);
    const result = await load.stop();
    assert.equal(applied.code, 0, applied.stderr);
    const pauseMs = Number(/leads \(timeline \d+\) after (\d+) ms/.exec(applied.stderr)?.[1] ?? NaN);
    assert.ok(Number.isFinite(pauseMs), `no switchover in the rollout: ${applied.stderr}`);
    console.log(`rolling restart through the proxy: ${result.ok} writes, ${result.failed} failed, switchover pause ${pauseMs} ms`);
    // One write is tried every 50 ms: only the ones that fall into the switchover pause may fail.
    assert.ok(result.failed <= Math.ceil(pauseMs / 50) + 1, `failed writes beyond the switchover pause: ${result.failed} (${result.errors.join(' | ')})`);
    assert.ok(result.ok > 20, `only ${result.ok} writes`);
    const rows = await leaderQuery<{ n: string }>(home, 'SELECT count(*) AS n FROM rolling_writes');
    assert.equal(Number(rows[0]?.n), result.ok, 'every acknowledged write is in the table');

    const status = await statusOf(home);
    assert.deepEqual(Object.values(await showOnAll(status, 'max_connections')), ['150', '150', '150']);
    for (const member of status.members) assert.notEqual(member.postgresPid, before.members.find((m) => m.name === member.name)?.postgresPid, `${member.name} restarted`);
    assert.notEqual(status.leader, before.leader, 'the leader changed by a switchover');
    assert.match(applied.stdout, /NODE +ROLE +max_connections/);
  });

  void it('lowering max_connections restarts the leader first, in place', async () => {
    const before = await statusOf(home);
    const lowered = await runCli(['config', 'update', NAME, '--set', 'max_connections=120', '--yes'], { home });
    assert.equal(lowered.code, 0, lowered.stderr);
    assert.match(lowered.stdout, /leader first/);
    assert.ok(lowered.stderr.indexOf(`${before.leader ?? '?'}: restarting (primary)`) >= 0, lowered.stderr);
    const status = await statusOf(home);
    assert.equal(status.leader, before.leader, 'no switchover');
    assert.deepEqual(Object.values(await showOnAll(status, 'max_connections')), ['120', '120', '120']);
  });

  void it('extensions: list; a contrib extension without a restart; pg_stat_statements preloaded by a rolling restart; timescaledb', async () => {
    const listed = await runCli(['extensions', 'list', NAME, '--json'], { home });
    assert.equal(listed.code, 0, listed.stderr);
    const list = JSON.parse(listed.stdout) as { extensions: Array<{ name: string; installedVersion: string | null; needsPreload: boolean }> };
    assert.equal(list.extensions.find((e) => e.name === 'hstore')?.installedVersion, null);
    assert.equal(list.extensions.find((e) => e.name === 'pg_stat_statements')?.needsPreload, true);

    const before = await statusOf(home);
    const hstore = await runCli(['extensions', 'enable', NAME, 'hstore'], { home });
    assert.equal(hstore.code, 0, hstore.stderr);
    assert.match(hstore.stdout, /hstore [\d.]+ enabled in database postgres/);
    assert.deepEqual(postmasterPids(await statusOf(home)), postmasterPids(before), 'no restart for hstore');
    assert.equal((await leaderQuery<{ v: string }>(home, "SELECT 'a=>1'::hstore -> 'a' AS v"))[0]?.v, '1');

    const stats = await runCli(['extensions', 'enable', NAME, 'pg_stat_statements', '--yes'], { home });
    assert.equal(stats.code, 0, stats.stderr);
    assert.match(stats.stdout, /shared_preload_libraries +'' +pg_stat_statements +restart/);
    assert.match(stats.stdout, /pg_stat_statements [\d.]+ enabled in database postgres \(pg_stat_statements preloaded\)/);
    const status = await statusOf(home);
    assert.deepEqual(Object.values(await showOnAll(status, 'shared_preload_libraries')), ['pg_stat_statements', 'pg_stat_statements', 'pg_stat_statements']);
    const calls = await leaderQuery<{ n: string }>(home, 'SELECT count(*) AS n FROM pg_stat_statements');
    assert.ok(Number(calls[0]?.n) > 0, 'pg_stat_statements collects');
    const again = await runCli(['extensions', 'enable', NAME, 'pg_stat_statements', '--yes'], { home });
    assert.equal(again.code, 0, again.stderr);
    assert.deepEqual(postmasterPids(await statusOf(home)), postmasterPids(status), 'enabling it again restarts nothing');

    const timescale = await runCli(['extensions', 'enable', NAME, 'timescaledb', '--yes'], { home });
    if (existsSync('/usr/share/postgresql/15/extension/timescaledb.control')) {
      assert.equal(timescale.code, 0, timescale.stderr);
      assert.match(timescale.stdout, /timescaledb [\d.]+ enabled/);
    } else {
      assert.equal(timescale.code, 1, timescale.stderr);
      assert.match(timescale.stderr, /error: extension timescaledb is not installed on node1, node2, node3/);
      assert.match(timescale.stderr, /hint: install Debian package timescaledb-2-postgresql-15 from TimescaleDB's apt repository.* on every node/);
    }
  });

  void it('scale vm: --dry-run prints the plan and changes nothing; applied, every member shows it', async () => {
    const configBefore = await storedConfig(home);
    const dry = await runCli(['scale', 'vm', NAME, '--memory', '1GB', '--cpus', '2', '--dry-run'], { home });
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /plan for 1GB of memory and 2 CPUs \(max_connections 120\)/);
    assert.match(dry.stdout, /shared_buffers +128MB +256MB +restart/);
    assert.match(dry.stdout, /effective_cache_size +4GB +768MB +reload/);
    assert.match(dry.stdout, /dry run: nothing was changed/);
    assert.deepEqual(await storedConfig(home), configBefore);

    const applied = await runCli(['scale', 'vm', NAME, '--memory', '1GB', '--cpus', '2', '--yes', '--json'], { home });
    assert.equal(applied.code, 0, applied.stderr);
    const outcome = JSON.parse(applied.stdout) as { applied: boolean; settings: Record<string, unknown>; members: Array<{ settings: Record<string, string> }> };
    assert.equal(outcome.applied, true);
    assert.equal(outcome.settings['max_connections'], 120, 'max_connections kept');
    const status = await statusOf(home);
    assert.deepEqual(Object.values(await showOnAll(status, 'shared_buffers')), ['256MB', '256MB', '256MB']);
    assert.deepEqual(Object.values(await showOnAll(status, 'effective_cache_size')), ['768MB', '768MB', '768MB']);
    assert.deepEqual(Object.values(await showOnAll(status, 'max_parallel_workers_per_gather')), ['1', '1', '1']);
    assert.equal(outcome.members.length, 3);
  });
});
