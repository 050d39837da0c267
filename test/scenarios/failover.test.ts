/**
 * More three-node simulations over the same harness (sim-cluster.ts): a leader whose postgres
 * crashes is restarted in place while it holds the lease (docs/architecture.md, HA rule 6), and releases the
 * lead when postgres cannot come back within the TTL so a replica takes over; a planned
 * switchover (§4.4) hands the lead to the named replica with nothing lost, and the old leader
 * follows it without a rewind; malformed values in etcd (a member record with a garbage LSN, a
 * garbage /status/lastLsn) are ignored by every reader and never block an election; after a
 * failover to a replica that was behind, a standby and the crashed old primary that hold WAL past
 * the fork point cannot stream from the new leader: the crashed primary first starts as a standby
 * (rule C4), and both are rewound once they have not streamed for `divergedAfterMs` (rule D7).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseEvents } from '../../src/state/events.js';
import { isLsn, parseLsn } from '../../src/shared/lsn.js';
import { memberRecord } from '../builders/observation-builder.js';
import { divergedAfterMs } from '../../src/ha/timing.js';
import { SimCluster, WORLD, bootstrappedSim as bootstrapped } from './sim-cluster.js';


function eventKinds(sim: SimCluster): string[] {
  return parseEvents(sim.store.get(sim.keys.events)).map((e) => `${e.node}:${e.kind}`);
}

void describe('scenario: leader postgres crashes while its agent is alive', () => {
  void it('is restarted in place as primary, keeping the lead and the timeline', async () => {
    const sim = await bootstrapped();
    const written = sim.world.write('node1', 4096n);
    sim.world.crash('node1');
    assert.equal(sim.agent('node1').memory.crashed, true, 'the loop heard the unexpected exit');
    await sim.until('node1 writable again', () => sim.world.isWritable('node1'));
    assert.equal(sim.leader(), 'node1');
    assert.equal(sim.world.count('promote'), 0);
    assert.equal(sim.world.dataOf('node1')?.timeline, 1);
    assert.equal(sim.world.lsnOf('node1'), written, 'crash recovery keeps every committed write');
    assert.ok(eventKinds(sim).includes('node1:restarted'), eventKinds(sim).join(', '));
    await sim.until('replicas stream again', () => sim.isStreamingFrom('node2', 'node1') && sim.isStreamingFrom('node3', 'node1'));
  });

  void it('releases the lead when postgres cannot be restarted within the TTL; a replica takes over', async () => {
    const sim = await bootstrapped();
    const ttlMs = sim.agent('node1').loop.currentConfig().ttlSeconds * 1000;
    sim.world.failStarts('node1');
    const crashedAt = sim.clock.nowMs();
    sim.world.crash('node1');
    await sim.until('node1 released the leader key', () => sim.leader() !== 'node1');
    assert.ok(sim.clock.nowMs() - crashedAt > ttlMs, 'kept trying for one TTL first');
    assert.ok(sim.world.eventsOf('node1', 'start').some((e) => e.detail === 'primary failed'), 'restart attempts were made');
    assert.ok(eventKinds(sim).includes('node1:leader-released'), eventKinds(sim).join(', '));
    await sim.until('node2 leads and node3 follows it', () => sim.leader() === 'node2' && sim.isStreamingFrom('node3', 'node2'));
    assert.equal(sim.world.count('promote', 'node2'), 1);
    assert.equal(sim.world.isWritable('node1'), false);
  });
});

void describe('scenario: planned switchover', () => {
  void it('hands the lead to the named replica with nothing lost; the old leader follows it without a rewind', async () => {
    const sim = await bootstrapped();
    const written = sim.world.write('node1', 1_000_000n);
    await sim.until('replicas caught up', () => sim.world.lsnOf('node2') === written && sim.world.lsnOf('node3') === written);
    const intent = { kind: 'switchover', from: 'node1', to: 'node2', requestedAtMs: sim.clock.nowMs() };
    sim.store.put(sim.keys.failover, JSON.stringify(intent));

    await sim.until('node2 leads, both others stream from it, intent cleared', () =>
      sim.leader() === 'node2' &&
      sim.isStreamingFrom('node1', 'node2') &&
      sim.isStreamingFrom('node3', 'node2') &&
      sim.store.get(sim.keys.failover) === null,
    );
    assert.equal(sim.world.count('promote'), 1);
    assert.equal(sim.world.count('promote', 'node2'), 1);
    const switchLsn = sim.world.dataOf('node2')?.history.at(-1)?.switchLsn;
    const oldLeaderStop = sim.world.eventsOf('node1', 'stop').at(-1);
    assert.equal(oldLeaderStop?.detail, 'fast', 'the old leader shut down cleanly');
    assert.ok(switchLsn !== undefined && switchLsn > parseLsn(written), 'the new timeline starts after the last write and the shutdown checkpoint');
    // Depending on tick order it starts read-only before node2 leads (then follows), or rejoins node2
    // directly; either way its cleanly shut down data is on node2's history: nothing to rewind.
    assert.ok(sim.world.eventsOf('node1', 'rewind').every((e) => e.detail.startsWith('not-needed')));
    assert.equal(sim.world.count('moved-aside'), 0);
    assert.match(sim.world.eventsOf('node1', 'start').at(-1)?.detail ?? '', /^standby/);
    assert.equal(sim.history().at(-1)?.reason, 'switchover');
    assert.equal(sim.history().at(-1)?.newLeader, 'node2');
    const kinds = eventKinds(sim);
    assert.ok(kinds.includes('node2:switchover-completed'), kinds.join(', '));
    const next = sim.world.write('node2', 10n);
    await sim.until('both replicas replay the new leader', () => sim.world.lsnOf('node1') === next && sim.world.lsnOf('node3') === next);
  });
});

void describe('scenario: malformed LSNs in etcd', () => {
  void it('a member record with a garbage LSN and a garbage /status/lastLsn are ignored: the election still happens', async () => {
    const sim = await bootstrapped();
    const written = sim.world.write('node1', 4096n);
    await sim.until('replicas caught up and the leader LSN published', () =>
      sim.world.lsnOf('node2') === written && sim.world.lsnOf('node3') === written && sim.store.get(sim.keys.lastLsn) === written,
    );
    // The leader goes away (cut off from etcd: it fences, its lease expires) and, while it cannot
    // publish, etcd holds garbage: a record of a (phantom) member 'node0' that would rank first by
    // name if it were read (same timeline and position as the others), and a malformed lastLsn.
    sim.agent('node1').client.setReachable(false);
    const garbage = memberRecord({ name: 'node0', lsn: 'garbage', receiveLsn: written, timeline: 1 });
    sim.store.put(sim.keys.member('node0'), JSON.stringify(garbage));
    sim.store.put(sim.keys.lastLsn, 'not-an-lsn');
    assert.equal(sim.member('node0'), null, 'parseMemberRecord rejects the record');

    await sim.until('node2 leads and node3 follows it', () => sim.leader() === 'node2' && sim.isStreamingFrom('node3', 'node2'));
    assert.equal(sim.world.count('promote'), 1);
    for (const name of ['node2', 'node3']) {
      const snapshot = sim.agent(name).loop.snapshot();
      assert.equal(snapshot.lastError, null, `${name}: no failed tick`);
    }
    const node3View = sim.agent('node3').loop.snapshot().observation?.dcs;
    assert.ok(node3View?.kind === 'reachable');
    assert.ok(!node3View.members.some((m) => m.name === 'node0'), 'the malformed record is not among the members decide sees');
    // The new leader's routine overwrites the garbage lastLsn with its own position.
    await sim.until('the new leader publishes a valid lastLsn', () => {
      const lastLsn = sim.store.get(sim.keys.lastLsn);
      return lastLsn !== null && isLsn(lastLsn);
    });
  });

  void it('while /status/lastLsn is garbage, readers treat it as unknown (no lag limit), not as an error', async () => {
    const sim = await bootstrapped();
    sim.agent('node1').client.setReachable(false);
    sim.store.put(sim.keys.lastLsn, '0/xyz');
    await sim.round();
    for (const name of ['node2', 'node3']) {
      const { observation, lastError } = sim.agent(name).loop.snapshot();
      assert.equal(lastError, null, name);
      assert.ok(observation?.dcs.kind === 'reachable', name);
      assert.equal(observation.dcs.lastLeaderLsn, null, `${name} ignores the malformed lastLsn`);
    }
  });
});

void describe('scenario: failover to a replica that was behind (diverged standbys)', () => {
  void it('the crashed old primary starts as a standby of the new leader; it and the standby ahead of the fork are rewound after divergedAfterMs', async () => {
    // node3 may not lead, so the failover goes to node2 even though node3 is further ahead.
    const sim = new SimCluster({ world: WORLD, tags: { node3: { nofailover: true } } });
    sim.startAll();
    await sim.until('node1 leads and both others stream from it', () =>
      sim.leader() === 'node1' && sim.isStreamingFrom('node2', 'node1') && sim.isStreamingFrom('node3', 'node1'),
    );
    const before = sim.world.write('node1', 4096n);
    await sim.until('replicas caught up', () => sim.world.lsnOf('node2') === before && sim.world.lsnOf('node3') === before);

    // A last write reaches node3 (its WAL receiver polls now) but not node2, then node1 crashes
    // while cut off from etcd: it cannot restart, and node2 (behind) becomes the only candidate.
    const ahead = sim.world.write('node1', 8192n);
    await sim.agent('node3').pg.observe();
    assert.equal(sim.world.lsnOf('node3'), ahead);
    assert.equal(sim.world.lsnOf('node2'), before);
    sim.agent('node1').client.setReachable(false);
    sim.world.crash('node1');

    await sim.until('node2 leads', () => sim.leader() === 'node2');
    const fork = sim.world.dataOf('node2')?.history.at(-1);
    assert.deepEqual(fork, { timeline: 2, switchLsn: parseLsn(before) }, 'the new timeline forks at node2\'s position, before node3\'s and node1\'s end of WAL');

    // node3 follows node2 but cannot stream (it has WAL past the fork): no action until divergedAfterMs.
    await sim.until('node3 is configured for node2', () => sim.member('node3')?.following === 'node2');
    assert.equal(sim.isStreamingFrom('node3', 'node2'), false);
    // The not-streaming clock starts anew once node3 is pointed at node2 (not when node1 died).
    await sim.until('the loop tracks since when node3 has not streamed from node2', () => sim.agent('node3').memory.notStreamingSinceMs !== null);
    const notStreamingSinceMs = sim.agent('node3').memory.notStreamingSinceMs ?? assert.fail('not tracked');
    const threshold = divergedAfterMs((sim.agent('node3').loop.snapshot().observation ?? assert.fail('no observation')).config);
    await sim.until('node3 is rewound', () => sim.world.eventsOf('node3', 'rewind').length > 0);
    const rewindAtMs = sim.world.eventsOf('node3', 'stop').at(-1)?.atMs ?? assert.fail('node3 was not stopped before pg_rewind');
    assert.ok(rewindAtMs - notStreamingSinceMs >= threshold, `stopped for the rewind ${rewindAtMs - notStreamingSinceMs} ms after it stopped streaming (threshold ${threshold} ms)`);
    assert.equal(sim.world.eventsOf('node3', 'stop').at(-1)?.detail, 'fast', 'the standby is stopped (fast) before pg_rewind');
    assert.deepEqual(sim.world.eventsOf('node3', 'rewind').map((e) => e.detail), ['rewound from node2']);
    await sim.until('node3 streams from node2', () => sim.isStreamingFrom('node3', 'node2'));
    assert.equal(sim.world.dataOf('node3')?.timeline, 2);

    // The old primary comes back: crashed ("in production"), so it starts as a standby of node2
    // (no pg_rewind straight away), cannot stream (its WAL ends past the fork), and is rewound by D7.
    assert.equal(sim.world.dataOf('node1')?.controlState, 'in production');
    sim.agent('node1').client.setReachable(true);
    await sim.until('node1 streams from node2', () => sim.isStreamingFrom('node1', 'node2'));
    const node1Starts = sim.world.eventsOf('node1', 'start').map((e) => e.detail);
    assert.deepEqual(node1Starts.slice(-2), ['standby of node2', 'standby of node2'], 'started as a standby, then again after the rewind');
    assert.deepEqual(sim.world.eventsOf('node1', 'rewind').map((e) => e.detail), ['rewound from node2']);
    assert.equal(sim.world.dataOf('node1')?.timeline, 2);
    assert.equal(sim.world.count('moved-aside'), 0);
    assert.equal(sim.world.count('promote'), 1);

    const next = sim.world.write('node2', 100n);
    await sim.until('both standbys replay the new leader', () => sim.world.lsnOf('node1') === next && sim.world.lsnOf('node3') === next);
  });
});

void describe('scenario: failover with a standby that reconnects slowly (not diverged)', () => {
  void it(
    'a standby that can follow the new leader gets divergedAfterMs after being pointed at it before any rewind',
    async () => {
      const sim = new SimCluster({ world: { ...WORLD, walReceiverConnectMs: 5_000 } });
      sim.startAll();
      await sim.until('node1 leads and both others stream from it', () =>
        sim.leader() === 'node1' && sim.isStreamingFrom('node2', 'node1') && sim.isStreamingFrom('node3', 'node1'),
      );
      for (let i = 0; i < 40; i += 1) await sim.round(); // past every agent's start-up grace
      sim.agent('node1').client.setReachable(false);
      sim.world.crash('node1');
      await sim.until('node2 leads and node3 is pointed at it', () => sim.leader() === 'node2' && sim.member('node3')?.following === 'node2');
      const followedAtMs = sim.world.eventsOf('node3', 'follow').at(-1)?.atMs ?? assert.fail('node3 never followed node2');
      const threshold = divergedAfterMs((sim.agent('node3').loop.snapshot().observation ?? assert.fail('no observation')).config);
      assert.ok(5_000 < threshold, 'the reconnect delay is shorter than the rewind threshold');
      await sim.until('node3 streams from node2', () => sim.isStreamingFrom('node3', 'node2'));
      assert.deepEqual(
        sim.world.eventsOf('node3').filter((e) => e.atMs >= followedAtMs && (e.kind === 'stop' || e.kind === 'rewind')).map((e) => `${e.atMs - followedAtMs}: ${e.kind} ${e.detail}`),
        [],
        'node3 could follow node2 all along: no stop, no pg_rewind',
      );
    },
  );
});
