/**
 * Failsafe mode over the scenario harness (sim-cluster.ts), with the fencing watchdog on and the
 * single-writer invariant checked after every tick and clock step: etcd cut off from every agent
 * (a) failsafe off: the leader fences at its lease deadline (as outages.test.ts);
 * (b) failsafe on, every member's REST API reachable: the leader keeps running well past its lease
 *     deadline (the watchdog, re-armed from each all-members check, never kills it), nobody
 *     promotes, and when etcd returns the same leader takes the key back, on the same timeline;
 * (c) failsafe on, one member's API unreachable: the leader fences as without failsafe;
 * (d) failsafe on, a member's API is lost in the middle of the outage: the leader fences within
 *     one permission, and the promise the others gave keeps them out of the race until then.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { defaultDynamicConfig } from '../../src/config/schema.js';
import { leaseDeadlineMs } from '../../src/ha/timing.js';
import { Driver, writeAndReplicate } from './driver.js';
import { SimCluster, WORLD } from './sim-cluster.js';

/**
 * The single-writer invariant as failsafe mode states it: never two primaries at once, and a
 * writable primary is never beside a leader key that names another node. (A failsafe leader runs
 * while its key has expired in etcd: that alone is allowed.)
 */
class FailsafeDriver extends Driver {
  override check(when: string): void {
    const { sim } = this;
    const primaries = sim.names.filter((name) => {
      const data = sim.world.dataOf(name);
      return data !== undefined && data.running && !data.inRecovery;
    });
    if (primaries.length > 1) assert.fail(`two primaries at once (${primaries.join(', ')}) ${when}\n${sim.describe()}`);
    const leader = sim.leader();
    for (const name of primaries) {
      if (sim.world.isWritable(name) && leader !== null && leader !== name) assert.fail(`${name} accepts writes while ${leader} holds the key ${when}\n${sim.describe()}`);
    }
    for (const extra of this.checks) extra(when);
  }
}

async function bootstrapped(): Promise<{ sim: SimCluster; d: Driver }> {
  const sim = new SimCluster({ world: WORLD, watchdog: true });
  const d = new FailsafeDriver(sim);
  sim.startAll();
  await d.until('node1 leads and the others stream from it', () => sim.leader() === 'node1' && sim.isStreamingFrom('node2', 'node1') && sim.isStreamingFrom('node3', 'node1'));
  return { sim, d };
}

async function withFailsafe(d: Driver, on: boolean): Promise<void> {
  const { sim } = d;
  sim.store.put(sim.keys.config, JSON.stringify({ ...defaultDynamicConfig(), failsafe: on }));
  await d.until('every agent read the config', () => sim.agents.every((a) => a.loop.currentConfig().failsafe === on));
}

function ttlMsOf(sim: SimCluster): number {
  return (sim.agents[0] ?? assert.fail('no agent')).loop.currentConfig().ttlSeconds * 1000;
}

function cutEtcd(sim: SimCluster, reachable: boolean): void {
  for (const agent of sim.agents) agent.client.setReachable(reachable);
}

void describe('failsafe mode: etcd unreachable from every node', () => {
  void it('failsafe off: the leader fences at its lease deadline', async () => {
    const { sim, d } = await bootstrapped();
    await withFailsafe(d, false);
    const lastRenewedMs = sim.agent('node1').memory.lastRenewedMs ?? assert.fail('never renewed');
    cutEtcd(sim, false);
    await d.until('node1 fenced', () => !sim.world.isRunning('node1'));
    assert.ok(sim.clock.nowMs() >= leaseDeadlineMs(lastRenewedMs, ttlMsOf(sim) / 1000));
    assert.ok(sim.clock.nowMs() < lastRenewedMs + ttlMsOf(sim) + sim.stepMs);
    assert.equal(sim.world.count('promote'), 0);
  });

  void it('failsafe on, every member reachable: the leader keeps running, no second primary, and leads again when etcd returns', async () => {
    const { sim, d } = await bootstrapped();
    await withFailsafe(d, true);
    const written = await writeAndReplicate(d, 'node1', 8_192n);
    const ttlMs = ttlMsOf(sim);
    const outageStartMs = sim.clock.nowMs();
    const stopsBefore = sim.world.eventsOf('node1', 'stop').length;
    cutEtcd(sim, false);
    // Four TTLs: the leader key and every member key expire in etcd meanwhile.
    await d.until('four TTLs of outage', () => sim.clock.nowMs() - outageStartMs >= 4 * ttlMs);
    assert.ok(sim.world.isWritable('node1'), 'the leader still takes writes');
    assert.equal(sim.world.eventsOf('node1', 'stop').length, stopsBefore, 'never fenced');
    assert.deepEqual(sim.agent('node1').guard?.fired, [], 'the watchdog never fired');
    assert.match(sim.agent('node1').loop.snapshot().decision?.summary ?? '', /failsafe: all 2 other members answered/);
    assert.equal(sim.world.count('promote'), 0);
    for (const name of ['node2', 'node3']) {
      assert.ok(sim.world.dataOf(name)?.inRecovery, `${name} stays a standby`);
      assert.equal(sim.agent(name).memory.failsafeAck?.leader, 'node1', `${name} promised node1`);
    }
    assert.equal(sim.leader(), null, 'the leader key expired in etcd');
    const more = sim.world.write('node1', 4_096n);

    cutEtcd(sim, true);
    await d.until('node1 holds the key again', () => sim.leader() === 'node1' && sim.agent('node1').memory.holdsLeader);
    assert.ok(sim.world.isWritable('node1'));
    await d.until('both replicas stream from node1 and replayed everything', () =>
      sim.isStreamingFrom('node2', 'node1') && sim.isStreamingFrom('node3', 'node1') && sim.world.lsnOf('node2') === more && sim.world.lsnOf('node3') === more,
    );
    assert.equal(sim.world.count('promote'), 0, 'no failover');
    assert.equal(sim.world.eventsOf('node1', 'stop').length, stopsBefore);
    for (const name of sim.names) assert.equal(sim.world.dataOf(name)?.timeline, 1, name);
    for (const name of ['node2', 'node3']) assert.ok(!d.actionsOf(name, outageStartMs).includes('acquire-leader'), `${name} never raced`);
    assert.notEqual(written, more);
  });

  void it('failsafe on, one member unreachable: the leader fences as without failsafe', async () => {
    const { sim, d } = await bootstrapped();
    await withFailsafe(d, true);
    const lastRenewedMs = sim.agent('node1').memory.lastRenewedMs ?? assert.fail('never renewed');
    sim.setApiReachable('node3', false);
    cutEtcd(sim, false);
    await d.until('node1 fenced', () => !sim.world.isRunning('node1'));
    assert.ok(sim.clock.nowMs() >= leaseDeadlineMs(lastRenewedMs, ttlMsOf(sim) / 1000));
    assert.ok(sim.clock.nowMs() < lastRenewedMs + ttlMsOf(sim) + sim.stepMs, 'fenced by its lease deadline');
    assert.ok(!d.summariesOf('node1').some((line) => /failsafe: all/.test(line)), 'the failsafe never held');
    assert.equal(sim.world.count('promote'), 0);
  });

  void it('failsafe on, a member lost during the outage: the leader fences, and nobody races before that', async () => {
    const { sim, d } = await bootstrapped();
    await withFailsafe(d, true);
    const ttlMs = ttlMsOf(sim);
    cutEtcd(sim, false);
    const outageStartMs = sim.clock.nowMs();
    await d.until('two TTLs of outage', () => sim.clock.nowMs() - outageStartMs >= 2 * ttlMs);
    assert.ok(sim.world.isWritable('node1'));
    // node3's API goes away, and etcd comes back for node2 only: node2 sees no leader key.
    sim.setApiReachable('node3', false);
    sim.agent('node2').client.setReachable(true);
    const lostMs = sim.clock.nowMs();
    await d.until('node1 fenced', () => !sim.world.isRunning('node1'));
    assert.ok(sim.clock.nowMs() - lostMs <= ttlMs, 'within one permission');
    // The single-writer check ran all along; node2 only races once node1 is down.
    await d.until('node2 leads', () => sim.leader() === 'node2' && sim.world.isWritable('node2'));
    const promotedAt = sim.world.eventsOf('node2', 'promote').at(-1)?.atMs ?? assert.fail('no promotion');
    const fencedAt = sim.world.eventsOf('node1', 'stop').at(-1)?.atMs ?? sim.agent('node1').guard?.fired.at(-1) ?? assert.fail('no fence');
    assert.ok(promotedAt > fencedAt, `node2 promoted at ${promotedAt}, node1 fenced at ${fencedAt}`);
  });
});
