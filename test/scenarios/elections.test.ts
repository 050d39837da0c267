/**
 * Leader elections over the scenario harness (sim-cluster.ts), driven round by round with the
 * single-writer invariant checked after every agent's tick and after every clock step: when the
 * leader dies (machine off: agent and postgres gone; or agent frozen, postgres killed by the
 * fencing watchdog), the eligible replica with the highest replay LSN takes the lead, then the
 * higher `priority` tag, then the lower name, whatever the tick order; a `nofailover` replica never
 * leads; a replica further behind the last leader LSN than `maximumLagOnFailoverBytes` never leads
 * (and when no candidate is eligible, nobody leads until the old leader returns or an operator
 * forces a failover); a switchover to a named replica moves the lead to exactly that node; a forced
 * failover makes the named node lead even when another replica ranks higher.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { leaseDeadlineMs } from '../../src/ha/timing.js';
import { parseEvents } from '../../src/state/events.js';
import type { FailoverIntent } from '../../src/state/intent.js';
import { parseLsn } from '../../src/shared/lsn.js';
import { SimCluster } from './sim-cluster.js';
import { Driver, bootstrapped, writeAndReplicate } from './driver.js';

/**
 * The agent of `name` freezes (SIGSTOP, stalled VM): it neither ticks nor runs its in-process fence
 * timer; its postgres keeps running until the fencing watchdog (if any) kills it at the deadline.
 */
async function freeze(sim: SimCluster, name: string): Promise<void> {
  const agent = sim.agent(name);
  await agent.loop.stop();
  sim.agents = sim.agents.filter((a) => a !== agent);
}

function eventKinds(sim: SimCluster): string[] {
  return parseEvents(sim.store.get(sim.keys.events)).map((e) => `${e.node}:${e.kind}`);
}

function putIntent(sim: SimCluster, intent: FailoverIntent): FailoverIntent {
  // As `pgpilot switchover|failover` does (src/cli/commands/switchover.ts): create-if-absent.
  assert.ok(sim.store.createIfAbsent(sim.keys.failover, JSON.stringify(intent)), 'no intent in progress');
  return intent;
}

function ttlMsOf(sim: SimCluster): number {
  const agent = sim.agents[0] ?? assert.fail('no running agent');
  return agent.loop.currentConfig().ttlSeconds * 1000;
}

function maxLagOf(sim: SimCluster): bigint {
  const agent = sim.agents[0] ?? assert.fail('no running agent');
  return BigInt(agent.loop.currentConfig().maximumLagOnFailoverBytes);
}

function lastRenewedOf(sim: SimCluster, name: string): number {
  return sim.agent(name).memory.lastRenewedMs ?? assert.fail(`${name} never renewed its lease`);
}

// ---------------------------------------------------------------------------------------------

void describe('elections: ranking when the leader dies', () => {
  void it('the replica with the higher replay LSN leads, over a higher priority tag and a lower name; the other follows it', async () => {
    const { sim, d } = await bootstrapped({ tags: { node2: { priority: 100 } } });
    const base = await writeAndReplicate(d, 'node1', 65_536n);
    // One more write reaches node3 (its WAL receiver polls now) but not node2; then node1's machine dies.
    const ahead = sim.world.write('node1', 8_192n);
    await sim.agent('node3').pg.observe();
    assert.equal(sim.world.lsnOf('node3'), ahead);
    const leaseExpiresMs = lastRenewedOf(sim, 'node1') + ttlMsOf(sim);
    await sim.powerOff('node1');
    assert.equal(sim.world.lsnOf('node2'), base);

    await d.until('node3 leads and node2 streams from it', () => sim.leader() === 'node3' && sim.isStreamingFrom('node2', 'node3'));
    const acquired = sim.world.eventsOf('node3', 'promote')[0] ?? assert.fail('node3 did not promote');
    assert.ok(acquired.atMs >= leaseExpiresMs, 'the key changed hands only after the dead leader\'s lease expired');
    assert.equal(sim.world.count('promote'), 1, 'exactly one promotion');
    assert.ok(!d.actionsOf('node2').includes('acquire-leader'), 'node2 (priority 100, lower name) never raced for the key');
    assert.ok(d.summariesOf('node2').some((s) => /node3 is the better candidate/.test(s)), [...new Set(d.summariesOf('node2'))].join('\n'));
    assert.deepEqual(sim.history().map((h) => [h.timeline, h.newLeader, h.lsn]), [
      [1, 'node1', null],
      [2, 'node3', ahead],
    ]);
    assert.deepEqual(eventKinds(sim).filter((e) => e.endsWith(':leader-acquired')), ['node3:leader-acquired']);
    assert.equal(sim.world.dataOf('node2')?.timeline, 2);
    const next = sim.world.write('node3', 100n);
    await d.until('node2 replays the new leader', () => sim.world.lsnOf('node2') === next);
  });

  void it('equal LSNs: the higher priority tag leads, though it ticks last (frozen leader, postgres killed by the watchdog)', async () => {
    const { sim, d } = await bootstrapped({ tags: { node3: { priority: 5 } }, watchdog: true });
    const written = await writeAndReplicate(d, 'node1', 65_536n);
    const lastRenewedMs = lastRenewedOf(sim, 'node1');
    const ttlMs = ttlMsOf(sim);
    const frozen = sim.agent('node1');
    await freeze(sim, 'node1');

    await d.until('the watchdog killed node1\'s postgres', () => !sim.world.isRunning('node1'));
    const kill = sim.world.eventsOf('node1', 'crash').at(-1) ?? assert.fail('no kill');
    assert.ok(kill.atMs >= leaseDeadlineMs(lastRenewedMs, ttlMs / 1000), 'not before the deadline');
    assert.ok(kill.atMs < lastRenewedMs + ttlMs, `killed at ${kill.atMs}, before the lease expires at ${lastRenewedMs + ttlMs}`);
    assert.equal(frozen.guard?.fired.length, 1);
    assert.equal(sim.leader(), 'node1', 'the key is still node1\'s when its postgres dies');

    await d.until('node3 leads and node2 streams from it', () => sim.leader() === 'node3' && sim.isStreamingFrom('node2', 'node3'));
    assert.equal(sim.world.lsnOf('node2'), written);
    assert.equal(sim.world.count('promote'), 1);
    assert.equal(sim.world.count('promote', 'node3'), 1);
    assert.ok(!d.actionsOf('node2').includes('acquire-leader'));
    assert.ok(d.summariesOf('node2').some((s) => /node3 is the better candidate/.test(s)));

    // The frozen agent wakes up: its lease is gone, another node leads; it rejoins as a replica.
    sim.agents.push(frozen);
    await d.until('node1 streams from node3', () => sim.isStreamingFrom('node1', 'node3'));
    assert.equal(sim.leader(), 'node3');
    assert.equal(sim.world.count('promote'), 1);
    assert.equal(sim.world.count('moved-aside'), 0);
  });

  void it('equal LSNs and priorities: the lower name leads, whatever the tick order', async () => {
    const { sim, d } = await bootstrapped();
    await writeAndReplicate(d, 'node1', 4_096n);
    sim.agents = [sim.agent('node3'), sim.agent('node2'), sim.agent('node1')];
    await sim.powerOff('node1');

    await d.until('node2 leads and node3 streams from it', () => sim.leader() === 'node2' && sim.isStreamingFrom('node3', 'node2'));
    assert.equal(sim.world.count('promote'), 1);
    assert.equal(sim.world.count('promote', 'node2'), 1);
    assert.ok(!d.actionsOf('node3').includes('acquire-leader'), 'node3 ticked first after the expiry but never raced');
    assert.ok(d.summariesOf('node3').some((s) => /node2 is the better candidate/.test(s)));
  });
});

void describe('elections: nofailover', () => {
  void it('a nofailover replica with the highest LSN never takes the lead; the other replica does', async () => {
    const { sim, d } = await bootstrapped({ tags: { node3: { nofailover: true } } });
    await writeAndReplicate(d, 'node1', 65_536n);
    const ahead = sim.world.write('node1', 8_192n);
    await sim.agent('node3').pg.observe();
    assert.equal(sim.world.lsnOf('node3'), ahead);
    // node3 ticks first: it sees the free key before node2 can take it.
    sim.agents = [sim.agent('node3'), sim.agent('node2'), sim.agent('node1')];
    await sim.powerOff('node1');

    await d.until('node2 leads', () => sim.leader() === 'node2');
    assert.ok(d.summariesOf('node3').some((s) => /not eligible \(nofailover\)/.test(s)), [...new Set(d.summariesOf('node3'))].join('\n'));
    // node3 has WAL past node2's fork point: it is rewound (rule D7), then streams.
    await d.until('node3 streams from node2', () => sim.isStreamingFrom('node3', 'node2'));
    assert.equal(sim.world.count('promote'), 1);
    assert.equal(sim.world.count('promote', 'node2'), 1);
    assert.ok(!d.actionsOf('node3').some((a) => a === 'acquire-leader' || a === 'promote'), 'node3 never raced');
    assert.deepEqual(sim.world.eventsOf('node3', 'rewind').map((e) => e.detail), ['rewound from node2']);
  });

  void it('when the only surviving replica is nofailover, nobody leads', async () => {
    const { sim, d } = await bootstrapped({ names: ['node1', 'node2'], tags: { node2: { nofailover: true } } });
    await writeAndReplicate(d, 'node1', 4_096n);
    const leaseExpiresMs = lastRenewedOf(sim, 'node1') + ttlMsOf(sim);
    await sim.powerOff('node1');
    await d.until('the dead leader\'s lease expired', () => sim.clock.nowMs() > leaseExpiresMs);
    await d.rounds(50);
    assert.equal(sim.leader(), null);
    assert.equal(sim.world.count('promote'), 0);
    assert.ok(sim.world.dataOf('node2')?.running === true && sim.world.dataOf('node2')?.inRecovery === true, 'node2 stays a read-only standby');
    assert.ok(!d.actionsOf('node2').includes('acquire-leader'));
    assert.match(sim.agent('node2').loop.snapshot().decision?.summary ?? '', /not eligible \(nofailover\)/);
  });
});

void describe('elections: maximumLagOnFailoverBytes', () => {
  /**
   * Leaves `laggard` stopped while the leader writes more than the lag limit (and publishes its
   * position), then powers the leader off and starts the laggard's agent again: it runs as a
   * standby that cannot reach its upstream, behind the last leader LSN by more than the limit.
   */
  async function laggardAfterLeaderDeath(d: Driver, laggard: string, extraBytes: bigint): Promise<{ lastLeaderLsn: string; leaseExpiresMs: number }> {
    const { sim } = d;
    await sim.stopAgent(laggard);
    const lastLeaderLsn = await writeAndReplicate(d, 'node1', maxLagOf(sim) + extraBytes);
    const leaseExpiresMs = lastRenewedOf(sim, 'node1') + ttlMsOf(sim);
    await sim.powerOff('node1');
    sim.startAgent(laggard);
    return { lastLeaderLsn, leaseExpiresMs };
  }

  void it('a replica further behind the last leader LSN than the limit does not take the lead; one within it does', async () => {
    const { sim, d } = await bootstrapped();
    await writeAndReplicate(d, 'node1', 4_096n);
    const { lastLeaderLsn } = await laggardAfterLeaderDeath(d, 'node2', 1_048_576n);
    assert.equal(sim.world.lsnOf('node3'), lastLeaderLsn);
    // node2 ticks first: it sees the free key before node3 can take it.
    sim.agents = [sim.agent('node2'), sim.agent('node3')];

    await d.until('node3 leads and node2 streams from it', () => sim.leader() === 'node3' && sim.isStreamingFrom('node2', 'node3'));
    assert.ok(d.summariesOf('node2').some((s) => /not eligible \(too-far-behind\)/.test(s)), [...new Set(d.summariesOf('node2'))].join('\n'));
    assert.ok(!d.actionsOf('node2').includes('acquire-leader'));
    assert.equal(sim.world.count('promote'), 1);
    assert.equal(sim.world.count('promote', 'node3'), 1);
    assert.equal(sim.world.lsnOf('node2'), sim.world.lsnOf('node3'), 'the laggard caught up from the new leader');
  });

  void it('when the only candidate is too far behind, nobody leads (intended: no silent loss of more than the limit); the old leader leads again when it returns', async () => {
    const { sim, d } = await bootstrapped({ names: ['node1', 'node2'] });
    await writeAndReplicate(d, 'node1', 4_096n);
    const { lastLeaderLsn, leaseExpiresMs } = await laggardAfterLeaderDeath(d, 'node2', 1_048_576n);
    await d.until('the dead leader\'s lease expired', () => sim.clock.nowMs() > leaseExpiresMs);
    await d.rounds(50);
    assert.equal(sim.leader(), null, 'nobody leads');
    assert.equal(sim.world.count('promote'), 0);
    assert.ok(sim.world.dataOf('node2')?.running === true && sim.world.dataOf('node2')?.inRecovery === true, 'node2 stays a read-only standby');
    assert.match(sim.agent('node2').loop.snapshot().decision?.summary ?? '', /not eligible \(too-far-behind\)/);
    assert.ok(!d.actionsOf('node2').includes('acquire-leader'));

    // The old leader's machine comes back and recovers as a read-only standby (rule C9). node2, still
    // configured to stream from it, catches up from it (cascading replication) and so becomes
    // eligible: whichever of the two ranks first once both answer leads, with nothing lost.
    sim.startAgent('node1');
    const bothUp = (): string | null => {
      const leader = sim.leader();
      const other = leader === 'node1' ? 'node2' : 'node1';
      return leader !== null && sim.isStreamingFrom(other, leader) ? leader : null;
    };
    await d.until('a leader again, the other node streams from it', () => bothUp() !== null);
    const leader = bothUp() ?? assert.fail('no leader');
    assert.equal(sim.world.count('promote'), 1);
    assert.equal(sim.world.count('promote', leader), 1);
    assert.equal(sim.history().at(-1)?.lsn, lastLeaderLsn, `${leader} took over at the old leader's last position: nothing lost`);
    assert.equal(sim.world.lsnOf('node2'), sim.world.lsnOf('node1'));
  });
});

void describe('elections: operator intents', () => {
  void it('a switchover to a named replica moves the lead to exactly that node; the intent is cleared; the old leader rejoins as a replica', async () => {
    const { sim, d } = await bootstrapped();
    const written = await writeAndReplicate(d, 'node1', 1_000_000n);
    // node3 is not the replica an election would pick (equal LSNs: node2 by name).
    putIntent(sim, { kind: 'switchover', from: 'node1', to: 'node3', requestedAtMs: sim.clock.nowMs() });

    await d.until('node3 leads, node1 and node2 stream from it, the intent is cleared', () =>
      sim.leader() === 'node3' && sim.isStreamingFrom('node1', 'node3') && sim.isStreamingFrom('node2', 'node3') && sim.store.get(sim.keys.failover) === null,
    );
    assert.equal(sim.world.count('promote'), 1);
    assert.equal(sim.world.count('promote', 'node3'), 1);
    for (const name of ['node1', 'node2']) assert.ok(!d.actionsOf(name).includes('acquire-leader'), `${name} never raced for the key`);
    assert.ok(d.summariesOf('node2').some((s) => /switchover to node3 in progress/.test(s)), [...new Set(d.summariesOf('node2'))].join('\n'));
    assert.equal(sim.world.eventsOf('node1', 'stop').at(-1)?.detail, 'fast', 'the old leader shut down cleanly');
    assert.ok(sim.world.eventsOf('node1', 'rewind').every((e) => e.detail.startsWith('not-needed')));
    assert.equal(sim.world.count('moved-aside'), 0);
    const last = sim.history().at(-1);
    assert.deepEqual([last?.timeline, last?.newLeader, last?.reason], [2, 'node3', 'switchover']);
    const switchLsn = sim.world.dataOf('node3')?.history.at(-1)?.switchLsn ?? assert.fail('no switch point');
    assert.ok(switchLsn > parseLsn(written), 'the new timeline starts after the last write and the shutdown checkpoint: nothing lost');
    const kinds = eventKinds(sim);
    assert.ok(kinds.includes('node3:switchover-completed'), kinds.join(', '));
    const next = sim.world.write('node3', 10n);
    await d.until('node1 and node2 replay the new leader', () => sim.world.lsnOf('node1') === next && sim.world.lsnOf('node2') === next);
  });

  void it('a forced failover to a named replica with no live leader: it leads although another replica ranks higher', async () => {
    const { sim, d } = await bootstrapped();
    await writeAndReplicate(d, 'node1', 65_536n);
    // node2 gets one more write than node3: node2 would win an election.
    const ahead = sim.world.write('node1', 8_192n);
    await sim.agent('node2').pg.observe();
    assert.equal(sim.world.lsnOf('node2'), ahead);
    const leaseExpiresMs = lastRenewedOf(sim, 'node1') + ttlMsOf(sim);
    await sim.powerOff('node1');
    putIntent(sim, { kind: 'failover', from: 'node1', to: 'node3', requestedAtMs: sim.clock.nowMs() });

    await d.until('node3 leads', () => sim.leader() === 'node3');
    const promote = sim.world.eventsOf('node3', 'promote')[0] ?? assert.fail('node3 did not promote');
    assert.ok(promote.atMs >= leaseExpiresMs, 'the intent does not override the dead leader\'s live key');
    assert.ok(d.summariesOf('node2').some((s) => /failover to node3 in progress/.test(s)), [...new Set(d.summariesOf('node2'))].join('\n'));
    // node2 has WAL past node3's fork point: rewound (rule D7), then it streams.
    await d.until('node2 streams from node3, the intent is cleared', () => sim.isStreamingFrom('node2', 'node3') && sim.store.get(sim.keys.failover) === null);
    assert.equal(sim.world.count('promote'), 1);
    assert.ok(!d.actionsOf('node2').includes('acquire-leader'), 'node2 never raced for the key');
    assert.ok(eventKinds(sim).includes('node3:failover-completed'), eventKinds(sim).join(', '));
    assert.equal(sim.history().at(-1)?.reason, 'failover');
  });

  void it('a forced failover ends the no-leader state of the lag rule: the named node leads although it is too far behind and ranks lower', async () => {
    const { sim, d } = await bootstrapped();
    await writeAndReplicate(d, 'node1', 4_096n);
    await sim.stopAgent('node3');
    await writeAndReplicate(d, 'node1', 1_048_576n); // node2 is ahead of node3
    await sim.stopAgent('node2');
    await writeAndReplicate(d, 'node1', maxLagOf(sim) + 1_048_576n);
    const leaseExpiresMs = lastRenewedOf(sim, 'node1') + ttlMsOf(sim);
    await sim.powerOff('node1');
    sim.startAgent('node2');
    sim.startAgent('node3');
    await d.until('the dead leader\'s lease expired', () => sim.clock.nowMs() > leaseExpiresMs);
    await d.rounds(30);
    assert.equal(sim.leader(), null, 'both replicas are too far behind: nobody leads');
    for (const name of ['node2', 'node3']) assert.match(sim.agent(name).loop.snapshot().decision?.summary ?? '', /too-far-behind/, name);

    // The operator accepts the loss (pgpilot failover demo --to node3 --yes, with no leader: from null).
    putIntent(sim, { kind: 'failover', from: null, to: 'node3', requestedAtMs: sim.clock.nowMs() });
    await d.until('node3 leads, node2 streams from it, the intent is cleared', () =>
      sim.leader() === 'node3' && sim.isStreamingFrom('node2', 'node3') && sim.store.get(sim.keys.failover) === null,
    );
    assert.equal(sim.world.count('promote'), 1);
    assert.equal(sim.world.count('promote', 'node3'), 1);
    assert.ok(!d.actionsOf('node2').includes('acquire-leader'));
    assert.ok(eventKinds(sim).includes('node3:failover-completed'), eventKinds(sim).join(', '));
  });
});
