/**
 * Three agents over one in-memory etcd, fake postgres nodes and a fake clock, ticked in turn
 * (sim-cluster.ts). Proves, end to end through HaLoop + decide + executor: (a) bootstrap — exactly
 * one node runs initdb, the others clone from it and stream, one leader key, every member
 * published; (b) a graceful stop of every agent and a restart leave the same leader on the same
 * timeline, without a promotion; (c) a leader cut off from etcd fences (its postgres stops)
 * before its lease can expire, and only after the lease expires does another node take the key
 * and promote while the third follows it; the old leader then rejoins as a replica (a crashed
 * former primary: started as a standby of the new leader, no rewind needed).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { leaseDeadlineMs } from '../../src/ha/timing.js';
import { SimCluster, WORLD, bootstrappedSim as bootstrapped } from './sim-cluster.js';


void describe('scenario: bootstrap of three nodes', () => {
  void it('exactly one node initializes; the others clone from it and stream', async () => {
    const sim = new SimCluster({ world: WORLD });
    sim.startAll();
    await sim.round();
    assert.equal(sim.store.get(sim.keys.initialize), 'pending:node1', 'node1 ticked first and claimed initialization');
    assert.equal(sim.agent('node1').loop.snapshot().decision?.actions[0]?.kind, 'initialize-cluster');
    assert.match(sim.agent('node2').loop.snapshot().decision?.summary ?? '', /node1 is initializing/);

    // During initdb the long task makes node1's ticks no-ops and its record says so.
    await sim.round();
    assert.match(sim.agent('node1').loop.snapshot().decision?.summary ?? '', /busy: initialize-cluster/);
    assert.equal(sim.member('node1')?.state, 'initializing');

    const rounds = await sim.until('node1 leads and both others stream from it', () =>
      sim.leader() === 'node1' && sim.isStreamingFrom('node2', 'node1') && sim.isStreamingFrom('node3', 'node1'),
    );
    assert.ok(rounds < 60, `bootstrap took ${rounds} rounds`);

    assert.equal(sim.world.count('initdb'), 1, 'one initdb across the cluster');
    assert.equal(sim.world.count('initdb', 'node1'), 1);
    assert.deepEqual(
      sim.world.events.filter((e) => e.kind === 'clone').map((e) => [e.node, e.detail]),
      [
        ['node2', 'node1'],
        ['node3', 'node1'],
      ],
    );
    assert.equal(sim.world.count('promote'), 0);

    const snapshot = sim.store.snapshot();
    assert.deepEqual([...snapshot.keys()].filter((k) => k === sim.keys.leader), [sim.keys.leader], 'one leader key');
    const systemIdentifier = sim.world.dataOf('node1')?.systemIdentifier;
    assert.equal(snapshot.get(sim.keys.initialize), systemIdentifier, 'initialize key holds the system identifier');
    assert.ok(snapshot.has(sim.keys.config), 'dynamic config written by the initializer');
    assert.deepEqual(
      sim.history().map((h) => [h.timeline, h.newLeader, h.reason]),
      [[1, 'node1', 'cluster initialized']],
    );

    const leader = sim.member('node1');
    assert.equal(leader?.role, 'primary');
    assert.equal(leader?.state, 'running');
    assert.equal(leader?.timeline, 1);
    for (const name of ['node2', 'node3']) {
      const record = sim.member(name);
      assert.equal(record?.role, 'replica', name);
      assert.equal(record?.state, 'running', name);
      assert.equal(record?.following, 'node1', name);
      assert.equal(record?.systemIdentifier, systemIdentifier, name);
      assert.equal(sim.world.dataOf(name)?.systemIdentifier, systemIdentifier, name);
    }

    // The leader keeps a slot per member and publishes its position; writes reach the replicas.
    assert.deepEqual([...(sim.world.dataOf('node1')?.slots ?? [])].sort(), ['node2', 'node3']);
    const written = sim.world.write('node1', 1_000_000n);
    await sim.until('replicas caught up and the leader published its LSN', () =>
      sim.world.lsnOf('node2') === written && sim.world.lsnOf('node3') === written && sim.store.get(sim.keys.lastLsn) === written,
    );
    await sim.until('the leader record lists both standbys with zero lag', () => {
      const replication = sim.member('node1')?.replication ?? [];
      return replication.length === 2 && replication.every((r) => r.lagBytes === 0 && r.replayLsn === written);
    });
    assert.throws(() => sim.world.write('node2'), /read-only transaction/);
  });

  void it('a node that loses the initialize race never runs initdb even when all tick together', async () => {
    const sim = new SimCluster({ world: WORLD, names: ['node1', 'node2', 'node3'] });
    sim.startAll(['node3', 'node2', 'node1']);
    await sim.until('a leader with two streaming replicas', () => {
      const leader = sim.leader();
      return leader !== null && sim.names.filter((n) => n !== leader).every((n) => sim.isStreamingFrom(n, leader));
    });
    assert.equal(sim.leader(), 'node3', 'the first to tick wins the race');
    assert.equal(sim.world.count('initdb'), 1);
  });
});

void describe('scenario: graceful stop and restart', () => {
  void it('the same node leads again on the same timeline, without a promotion', async () => {
    const sim = await bootstrapped();
    const written = sim.world.write('node1', 4096n);
    await sim.until('replicas caught up', () => sim.world.lsnOf('node2') === written && sim.world.lsnOf('node3') === written);

    // Followers first, then the leader (as stopAll in the local provider does).
    await sim.stopAgent('node2');
    await sim.stopAgent('node3');
    await sim.round();
    assert.equal(sim.leader(), 'node1', 'the leader keeps leading while the followers stop');
    await sim.stopAgent('node1');

    const keys = [...sim.store.snapshot().keys()];
    assert.ok(!keys.includes(sim.keys.leader), 'leader key released');
    assert.deepEqual(keys.filter((k) => k.startsWith(sim.keys.membersPrefix)), [], 'member keys released');
    assert.deepEqual(sim.store.liveLeaseIds(), [], 'leases revoked');
    assert.equal(sim.world.dataOf('node1')?.controlState, 'shut down');
    assert.equal(sim.world.dataOf('node2')?.controlState, 'shut down in recovery');
    const promotionsBefore = sim.world.count('promote');

    sim.clock.advance(60_000);
    // The replicas' agents come back first: they must not take the lead from the former primary.
    sim.startAll(['node2', 'node3', 'node1']);
    await sim.until('node1 leads again and both others stream from it', () =>
      sim.leader() === 'node1' && sim.isStreamingFrom('node2', 'node1') && sim.isStreamingFrom('node3', 'node1'),
    );
    assert.equal(sim.world.count('promote'), promotionsBefore, 'no promotion');
    for (const name of sim.names) assert.equal(sim.world.dataOf(name)?.timeline, 1, `${name} on timeline 1`);
    assert.equal(sim.member('node1')?.role, 'primary');
    assert.equal(sim.history().length, 1, 'no new history entry');
    assert.equal(sim.world.eventsOf('node1', 'start').at(-1)?.detail, 'primary');
    assert.equal(sim.world.count('rewind'), 0, 'nothing to rewind');
    sim.world.write('node1');
  });
});

void describe('scenario: the leader loses etcd', () => {
  void it('fences before its lease expires; another node takes over after expiry; the third follows; the old leader rejoins', async () => {
    const sim = await bootstrapped();
    const written = sim.world.write('node1', 65_536n);
    await sim.until('replicas caught up and the leader LSN published', () =>
      sim.world.lsnOf('node2') === written && sim.world.lsnOf('node3') === written && sim.store.get(sim.keys.lastLsn) === written,
    );
    const ttlMs = sim.agent('node1').loop.currentConfig().ttlSeconds * 1000;

    sim.agent('node1').client.setReachable(false);
    const lastRenewedMs = sim.agent('node1').memory.lastRenewedMs;
    assert.ok(lastRenewedMs !== null);
    const leaseExpiresMs = lastRenewedMs + ttlMs;

    const deadlineMs = leaseDeadlineMs(lastRenewedMs, ttlMs / 1000);
    await sim.until('node1 fenced', () => !sim.world.isRunning('node1'));
    const fence = sim.world.eventsOf('node1', 'stop').at(-1);
    assert.equal(fence?.detail, 'immediate', 'fencing is an immediate stop');
    // The loop's in-process fence timer (armed at the deadline by the last renewal) stops postgres
    // as soon as the clock passes the deadline, before the next tick's decide() could: the last
    // decision still saw a valid lease.
    assert.match(sim.agent('node1').loop.snapshot().decision?.summary ?? '', /lease still valid for \d+ ms/);
    assert.ok(fence !== undefined && fence.atMs >= deadlineMs, 'not before its own deadline');
    assert.ok(fence !== undefined && fence.atMs < deadlineMs + sim.stepMs, `fenced at ${fence?.atMs}: in the clock step that passed the deadline ${deadlineMs}`);
    assert.ok(fence !== undefined && fence.atMs < leaseExpiresMs, `fenced at ${fence?.atMs}, lease expires at ${leaseExpiresMs}`);
    assert.equal(sim.world.eventsOf('node1', 'stop').length, 1, 'stopped once');
    assert.equal(sim.leader(), 'node1', 'the key is still node1\'s when it fences: nobody else could have been writable');
    assert.equal(sim.world.isWritable('node1'), false);
    assert.equal(sim.agent('node1').memory.holdsLeader, false);
    assert.equal(sim.world.count('promote'), 0, 'nobody promoted while the lease was live');

    await sim.until('a new leader', () => sim.leader() !== null && sim.leader() !== 'node1');
    assert.ok(sim.clock.nowMs() >= leaseExpiresMs, 'the key changed hands only after the lease expired');
    assert.equal(sim.leader(), 'node2', 'equal positions: the lower name wins');
    const promote = sim.world.eventsOf('node2', 'promote');
    assert.equal(promote.length, 1);
    assert.ok((promote[0]?.atMs ?? 0) >= leaseExpiresMs);
    assert.equal(sim.world.count('promote'), 1, 'exactly one promotion');

    await sim.until('node3 follows node2', () => sim.isStreamingFrom('node3', 'node2'));
    assert.equal(sim.world.dataOf('node2')?.timeline, 2);
    assert.equal(sim.world.dataOf('node3')?.timeline, 2, 'node3 crossed to the new timeline');
    assert.deepEqual(
      sim.history().map((h) => [h.timeline, h.newLeader]),
      [
        [1, 'node1'],
        [2, 'node2'],
      ],
    );
    assert.equal(sim.history()[1]?.lsn, written, 'the switch happened at the last written position: nothing lost');
    const next = sim.world.write('node2', 100n);
    await sim.until('node3 replays writes of the new leader', () => sim.world.lsnOf('node3') === next);
    assert.equal(sim.world.dataOf('node1')?.running, false, 'the cut-off node stays down while it cannot see etcd');

    sim.agent('node1').client.setReachable(true);
    await sim.until('node1 rejoins as a replica of node2', () => sim.isStreamingFrom('node1', 'node2'));
    // Fenced = crashed primary ("in production"): it recovers as a standby of the new leader
    // directly (rule C4), no pg_rewind; its WAL ends at the fork point, so it can follow as is.
    assert.deepEqual(
      sim.world.eventsOf('node1', 'start').slice(-1).map((e) => e.detail),
      ['standby of node2'],
      'the fenced primary starts as a standby of the new leader',
    );
    assert.equal(sim.world.count('rewind'), 0, 'the fenced primary had nothing the new leader lacks: no rewind');
    assert.equal(sim.world.count('moved-aside'), 0);
    assert.equal(sim.leader(), 'node2');
    assert.equal(sim.world.dataOf('node1')?.timeline, 2);
    assert.equal(sim.world.count('promote'), 1);
  });
});
