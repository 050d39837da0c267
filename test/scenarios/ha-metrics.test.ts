/**
 * The HA loop's metrics hook (src/state/ha-metrics.ts) over the scenario harness: every agent counts
 * its lease renewals; a planned switchover counts one switchover on the new leader and one leader
 * change on every agent; an agent cut off from etcd counts failed renewals, and the replica that
 * takes over counts one failover. Nothing is counted twice, and a bootstrap counts no promotion.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { HaMetrics } from '../../src/state/ha-metrics.js';
import { SimCluster, WORLD } from './sim-cluster.js';

interface Counts {
  renewed: number;
  renewFailed: number;
  leaderChanged: number;
  failover: number;
  switchover: number;
}

function recorder(): { counts: Counts; hook: HaMetrics } {
  const counts: Counts = { renewed: 0, renewFailed: 0, leaderChanged: 0, failover: 0, switchover: 0 };
  const hook: HaMetrics = {
    leaseRenewed: () => void (counts.renewed += 1),
    leaseRenewalFailed: () => void (counts.renewFailed += 1),
    leaderChanged: () => void (counts.leaderChanged += 1),
    promoted: (reason) => void (counts[reason] += 1),
    tickFinished: () => undefined,
  };
  return { counts, hook };
}

void describe('scenario: HA metrics hook', () => {
  void it('counts renewals, a switchover, leader changes, renewal failures and a failover', async () => {
    const recorders = new Map<string, ReturnType<typeof recorder>>();
    const sim = new SimCluster({
      world: WORLD,
      metrics: (name) => {
        const r = recorder();
        recorders.set(name, r);
        return r.hook;
      },
    });
    sim.startAll();
    await sim.until('node1 leads and both others stream from it', () =>
      sim.leader() === 'node1' && sim.isStreamingFrom('node2', 'node1') && sim.isStreamingFrom('node3', 'node1'),
    );
    const counts = (name: string): Counts => {
      const r = recorders.get(name);
      assert.ok(r, `no metrics for ${name}`);
      return r.counts;
    };
    for (const name of sim.names) {
      assert.ok(counts(name).renewed > 0, `${name} renewed its lease`);
      assert.deepEqual({ ...counts(name), renewed: 0 }, { renewed: 0, renewFailed: 0, leaderChanged: 0, failover: 0, switchover: 0 }, `${name} after bootstrap`);
    }

    const written = sim.world.write('node1', 4096n);
    await sim.until('replicas caught up', () => sim.world.lsnOf('node2') === written && sim.world.lsnOf('node3') === written);
    sim.store.put(sim.keys.failover, JSON.stringify({ kind: 'switchover', from: 'node1', to: 'node2', requestedAtMs: sim.clock.nowMs() }));
    await sim.until('node2 leads and both others stream from it', () =>
      sim.leader() === 'node2' && sim.isStreamingFrom('node1', 'node2') && sim.isStreamingFrom('node3', 'node2') && sim.store.get(sim.keys.failover) === null,
    );
    assert.equal(counts('node2').switchover, 1);
    assert.equal(counts('node2').failover, 0);
    for (const name of sim.names) assert.equal(counts(name).leaderChanged, 1, `${name} saw one leader change`);
    for (const name of ['node1', 'node3']) assert.equal(counts(name).switchover + counts(name).failover, 0, `${name} was not promoted`);

    // The leader is cut off from etcd: its renewals fail (it fences), a replica takes over.
    sim.agent('node2').client.setReachable(false);
    await sim.until('a new leader other than node2', () => sim.leader() !== null && sim.leader() !== 'node2');
    const winner = sim.leader() ?? '';
    assert.ok(counts('node2').renewFailed > 0, 'node2 counted failed renewals');
    assert.equal(counts(winner).failover, 1, `${winner} counted one failover`);
    assert.equal(counts(winner).switchover, 0);
    const others = sim.names.filter((n) => n !== winner && n !== 'node2');
    await sim.until('every connected agent saw the new leader', () => [winner, ...others].every((n) => counts(n).leaderChanged >= 2), 5);
    for (const name of [winner, ...others]) assert.equal(counts(name).leaderChanged, 2, `${name} saw two leader changes`);
  });
});
