/**
 * Synchronous quorum mode on a real 3-node cluster (PostgreSQL 15 + etcd) driven through
 * bin/pgpilot: `config update --synchronous quorum` makes the leader set
 * `synchronous_standby_names = ANY 1 (...)` over both replicas and publish the set (visible in
 * `status --json`); a row committed (so acknowledged by a synchronous replica) is still there
 * after kill -9 of the leader agent and the failover that follows; the new leader rebuilds its own
 * synchronous set.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { isPidAlive, waitUntil } from '../helpers/wait.js';
import { killAgentForGood } from '../helpers/local-node.js';
import { makeTempHome, removeTempHome, runCli } from '../helpers/cli.js';
import { clusterStatusOf, leaderOf, waitConverged, withNode } from '../helpers/cluster.js';

const NAME = 'syncq';

void describe('sync mode: quorum commit on a real cluster', () => {
  let home = '';
  before(async () => {
    home = makeTempHome('sync');
    const created = await runCli(['create', NAME, '--json', '--show-secrets'], { home });
    assert.equal(created.code, 0, created.stderr);
  });
  after(async () => {
    if (process.env['PGPILOT_TEST_KEEP'] === '1') return;
    await runCli(['destroy', NAME, '--yes'], { home });
    await removeTempHome(home);
  });

  void it('config update turns quorum mode on; the leader names both replicas and status shows the set', async () => {
    const bad = await runCli(['config', 'update', NAME, '--synchronous-node-count', '0'], { home });
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, /error: invalid config: --synchronous-node-count/);
    const updated = await runCli(['config', 'update', NAME, '--synchronous', 'quorum', '--json'], { home });
    assert.equal(updated.code, 0, updated.stderr);
    assert.deepEqual((JSON.parse(updated.stdout) as { changes: Array<{ key: string }> }).changes.map((c) => c.key), ['synchronous']);
    const shown = await runCli(['config', 'show', NAME, '--json'], { home });
    assert.equal((JSON.parse(shown.stdout) as { synchronous: string }).synchronous, 'quorum');
    let status = await waitConverged(home, NAME, null);
    const leader = leaderOf(status);
    const replicas = status.members.filter((m) => m.name !== leader.name).map((m) => m.name).sort();
    const expected = `ANY 1 (${replicas.map((r) => `"${r}"`).join(', ')})`;
    await waitUntil(`synchronous_standby_names = ${expected} on ${leader.name}`, async () => {
      const value = await withNode(status, leader, async (c) => (await c.query<{ v: string }>("SELECT current_setting('synchronous_standby_names') AS v")).rows[0]?.v);
      return value === expected;
    }, 30_000);
    status = await waitUntil('status shows the synchronous set', async () => {
      const s = await clusterStatusOf(home, NAME);
      return JSON.stringify(s.synchronous?.members) === JSON.stringify(replicas) ? s : null;
    }, 30_000);
    assert.equal(status.synchronous?.mode, 'quorum');
    assert.equal(status.synchronous?.quorum, 1);
    assert.deepEqual(status.members.filter((m) => m.sync === true).map((m) => m.name).sort(), replicas);
    const text = await runCli(['status', NAME], { home });
    assert.match(text.stdout, /sync quorum: ANY 1 of /);
  });

  void it('kill -9 of the leader agent: the new leader has the committed row, and builds its own set', async () => {
    let status = await waitConverged(home, NAME, null);
    const old = leaderOf(status);
    await withNode(status, old, async (c) => {
      await c.query('CREATE TABLE IF NOT EXISTS acked (id int)');
      // synchronous_commit = on (default): returns only once a synchronous replica flushed it.
      await c.query('INSERT INTO acked VALUES (42)');
      const mode = await c.query<{ v: string }>("SELECT current_setting('synchronous_standby_names') AS v");
      assert.match(mode.rows[0]?.v ?? '', /^ANY 1 /, 'the commit waited for a synchronous replica');
    });
    await killAgentForGood(home, NAME, old.name, old.pid);
    await waitUntil('the old postmaster to die with its agent', () => Promise.resolve(!isPidAlive(old.postgresPid ?? -1)), 10_000);
    status = await waitUntil('a new writable leader', async () => {
      const s = await clusterStatusOf(home, NAME);
      const leader = s.members.find((m) => m.name === s.leader && m.role === 'primary');
      return leader !== undefined && leader.name !== old.name ? s : null;
    }, 60_000);
    const rows = await withNode(status, leaderOf(status), async (c) => (await c.query<{ id: number }>('SELECT id FROM acked')).rows.map((r) => r.id));
    assert.deepEqual(rows, [42]);
    const leader = leaderOf(status).name;
    const remaining = status.members.filter((m) => m.name !== leader && m.name !== old.name).map((m) => m.name);
    await waitUntil('the new leader publishes its own synchronous set', async () => {
      const s = await clusterStatusOf(home, NAME);
      return s.leader === leader && JSON.stringify(s.synchronous?.members) === JSON.stringify(remaining) ? s : null;
    }, 30_000);
  });
});
