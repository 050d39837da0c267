/**
 * A replica that was down while the leader recycled the WAL it needs (its slot invalidated by
 * max_slot_wal_keep_size, wal_keep_size 0): on real PostgreSQL 15 the agent re-clones it (rule D8),
 * with its old data moved aside, the leader makes the invalidated slot anew, and it streams again.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { makeTempHome, removeTempHome, runCli } from '../helpers/cli.js';
import { clusterStatusOf, leaderOf, waitConverged, withNode } from '../helpers/cluster.js';
import { isPidAlive, waitUntil } from '../helpers/wait.js';
import { killAgentForGood } from '../helpers/local-node.js';

const NAME = 'slots';

void describe('a replica whose slot was invalidated is re-cloned', () => {
  let home = '';
  before(async () => {
    home = makeTempHome('slots');
    const created = await runCli(['create', NAME, '--nodes', '2', '--json', '--show-secrets'], { home });
    assert.equal(created.code, 0, created.stderr);
    const tuned = await runCli(['config', 'update', NAME, '--set', 'max_slot_wal_keep_size=32MB', '--set', 'wal_keep_size=0', '--yes'], { home });
    assert.equal(tuned.code, 0, tuned.stderr);
  });
  after(async () => {
    if (process.env['PGPILOT_TEST_KEEP'] === '1') return;
    await runCli(['destroy', NAME, '--yes'], { home });
    await removeTempHome(home);
  });

  void it('stops the replica, recycles its WAL on the leader, and gets it streaming again', async () => {
    let status = await waitConverged(home, NAME, null);
    const leader = leaderOf(status);
    const replica = status.members.find((m) => m.name !== leader.name);
    assert.ok(replica?.pid !== null && replica !== undefined);
    await withNode(status, leader, (c) => c.query('CREATE TABLE filler (id int, pad text)'));
    // The replica goes away (its postgres dies with its agent); it needs WAL from here on.
    const killedAt = await withNode(status, leader, async (c) => (await c.query<{ f: string }>('SELECT pg_walfile_name(pg_current_wal_lsn()) AS f')).rows[0]?.f ?? '');
    await killAgentForGood(home, NAME, replica.name, replica.pid);
    await waitUntil('the replica postmaster to die', () => Promise.resolve(!isPidAlive(replica.postgresPid ?? -1)), 15_000);
    // The limits are in force on the leader (a reload), then WAL is written in rounds of about
    // 25 MB, each closed by a segment switch and a checkpoint, until the checkpointer invalidates
    // the slot (bounded: 12 rounds, ~300 MB).
    await waitUntil('max_slot_wal_keep_size 32MB on the leader', async () =>
      (await withNode(status, leader, async (c) => (await c.query<{ v: string }>("SELECT current_setting('max_slot_wal_keep_size') AS v")).rows[0]?.v)) === '32MB' ? true : null, 30_000);
    let slot: string | undefined;
    let oldest = '';
    // Until the slot is invalidated AND the leader no longer has the segment the replica needs
    // (an invalidated slot alone may leave it in pg_wal for a while, and then the replica simply
    // streams again: no re-clone needed).
    for (let round = 0; round < 20 && (slot !== 'lost' || oldest <= killedAt); round += 1) {
      [slot, oldest] = await withNode(status, leader, async (c) => {
        await c.query("INSERT INTO filler SELECT g, repeat('x', 200) FROM generate_series(1, 100000) g");
        await c.query('SELECT pg_switch_wal()');
        await c.query('CHECKPOINT');
        const state = (await c.query<{ wal_status: string }>('SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1', [replica.name])).rows[0]?.wal_status;
        const first = (await c.query<{ name: string }>("SELECT min(name) AS name FROM pg_ls_waldir() WHERE name ~ '^[0-9A-F]{24}$'")).rows[0]?.name ?? '';
        return [state, first] as const;
      });
    }
    assert.ok(oldest > killedAt, `the leader recycled ${killedAt} (oldest segment now ${oldest})`);
    assert.equal(slot, 'lost', 'the replica slot was invalidated');
    const rows = await withNode(status, leader, async (c) => Number((await c.query<{ n: string }>('SELECT count(*) AS n FROM filler')).rows[0]?.n));

    // `start` waits until every member streams: that needs the re-clone.
    const started = await runCli(['start', NAME], { home });
    assert.equal(started.code, 0, started.stderr);
    status = await waitConverged(home, NAME, null, 60_000);
    assert.equal(status.leader, leader.name, 'the leader did not change');
    const back = status.members.find((m) => m.name === replica.name);
    assert.ok(back !== undefined && back.streaming);
    await waitUntil('the replica to hold every row', async () => {
      const s = await clusterStatusOf(home, NAME);
      const member = s.members.find((m) => m.name === replica.name);
      if (member === undefined) return null;
      const n = await withNode(s, member, async (c) => Number((await c.query<{ n: string }>('SELECT count(*) AS n FROM filler')).rows[0]?.n)).catch(() => -1);
      return n === rows ? true : null;
    }, 60_000);
    const nodeDir = path.join(home, 'clusters', NAME, 'nodes', replica.name);
    const eventsText = (await runCli(['events', NAME], { home })).stdout;
    // Rule D8 moved it aside. (Before stale socket locks were removed at start, a zombie of the
    // killed postmaster sometimes made the first starts fail and the crash-loop rule got there first.)
    assert.ok(readdirSync(nodeDir).some((f) => f.startsWith('pgdata.stale-')), `the old data directory was moved aside by D8: ${readdirSync(nodeDir).join(' ')}\n${eventsText}`);
    assert.ok(existsSync(path.join(nodeDir, 'pgdata', 'PG_VERSION')));
    const events = await runCli(['events', NAME], { home });
    assert.match(events.stdout, new RegExp(`${replica.name} +reinitialized .*the WAL from .* is gone from ${leader.name}`));
    const newSlot = await withNode(status, leaderOf(status), async (c) => (await c.query<{ wal_status: string; active: boolean }>('SELECT wal_status, active FROM pg_replication_slots WHERE slot_name = $1', [replica.name])).rows[0]);
    assert.equal(newSlot?.active, true, 'the replica streams through a new slot');
    assert.notEqual(newSlot?.wal_status, 'lost');
  });
});
