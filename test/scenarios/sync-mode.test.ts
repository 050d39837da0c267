/**
 * Synchronous quorum mode (src/ha/sync-set.ts) over the simulation harness: the leader converges
 * `synchronous_standby_names` and the published set /sync to its streaming replicas; after the
 * leader dies, only a member of the published set that holds every acknowledged commit leads (and
 * nobody does when that cannot be proven); a replica that stops streaming leaves
 * synchronous_standby_names before the published set; strict mode keeps the set when every replica
 * is gone (writes block), the default degrades to asynchronous commits after emptying /sync.
 * After every round the invariant itself is checked on the fake world: every acknowledged commit
 * is on at least `quorum` members of the published set.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { defaultDynamicConfig, type DynamicConfig } from '../../src/config/schema.js';
import { coversNew, parseStandbyNames } from '../../src/ha/sync-set.js';
import { parseSyncSet, type SyncSet } from '../../src/state/sync-record.js';
import { parseLsn } from '../../src/shared/lsn.js';
import { SimCluster, bootstrappedSim } from './sim-cluster.js';

function setConfig(sim: SimCluster, overrides: Partial<DynamicConfig>): void {
  sim.store.put(sim.keys.config, JSON.stringify({ ...defaultDynamicConfig(), ...overrides }));
}

function published(sim: SimCluster): SyncSet | null {
  return parseSyncSet(sim.store.get(sim.keys.sync));
}

function standbyNamesOf(sim: SimCluster, node: string): string {
  return sim.world.dataOf(node)?.synchronousStandbyNames ?? '';
}

/**
 * The safety invariant, checked on the fake world: every acknowledged commit is on at least
 * `quorum` members of the published set, and the leader's synchronous_standby_names covers it (C1).
 */
function assertInvariant(sim: SimCluster, when: string): void {
  const set = published(sim);
  if (set === null || set.members.length === 0) return;
  for (const commit of sim.world.acknowledged) {
    const holders = set.members.filter((m) => {
      const d = sim.world.dataOf(m);
      return d !== undefined && d.lsn >= parseLsn(commit.lsn);
    });
    assert.ok(holders.length >= set.quorum, `${when}: commit ${commit.lsn} is on ${holders.join(', ') || 'no member'} of ${set.members.join(', ')} (quorum ${set.quorum})\n${sim.describe()}`);
  }
  const leader = sim.leader();
  if (leader !== null && leader === set.leader && sim.world.isWritable(leader)) {
    const s = parseStandbyNames(standbyNamesOf(sim, leader));
    assert.ok(s !== null && coversNew(s, set), `${when}: ${standbyNamesOf(sim, leader)} does not cover ${JSON.stringify(set)}`);
  }
}

/** Rounds until `condition`, checking the invariant after each; fails after `maxRounds`. */
async function untilSafe(sim: SimCluster, what: string, condition: () => boolean, maxRounds = 200, onRound?: () => void): Promise<void> {
  for (let rounds = 0; rounds <= maxRounds; rounds += 1) {
    assertInvariant(sim, what);
    onRound?.();
    if (condition()) return;
    await sim.round();
  }
  assert.fail(`not reached within ${maxRounds} rounds: ${what}\n${sim.describe()}\nsync=${sim.store.get(sim.keys.sync) ?? '-'}`);
}

function converged(sim: SimCluster, leader: string, members: string[], quorum: number): boolean {
  const set = published(sim);
  const s = parseStandbyNames(standbyNamesOf(sim, leader));
  return (
    set !== null &&
    set.leader === leader &&
    set.quorum === quorum &&
    JSON.stringify(set.members) === JSON.stringify(members) &&
    s !== null &&
    s.quorum === quorum &&
    JSON.stringify(s.names) === JSON.stringify(members)
  );
}

async function syncCluster(overrides: Partial<DynamicConfig> = {}): Promise<SimCluster> {
  const sim = await bootstrappedSim();
  setConfig(sim, { synchronous: 'quorum', ...overrides });
  await untilSafe(sim, 'the synchronous set converges to node2, node3', () => converged(sim, 'node1', ['node2', 'node3'], Math.min(2, overrides.synchronousNodeCount ?? 1)));
  return sim;
}

void describe('scenario: synchronous quorum mode', () => {
  void it('enabling quorum mode: synchronous_standby_names and /sync converge to the streaming replicas', async () => {
    const sim = await bootstrappedSim();
    assert.equal(sim.world.commit('node1').acknowledged, true, 'asynchronous before sync mode');
    setConfig(sim, { synchronous: 'quorum' });
    await untilSafe(sim, 'converged', () => converged(sim, 'node1', ['node2', 'node3'], 1));
    assert.equal(standbyNamesOf(sim, 'node1'), 'ANY 1 ("node2", "node3")');
    assert.equal(sim.world.commit('node1').acknowledged, true, 'a replica confirms the commit');
    // k = 2: both replicas must confirm; raised in postgres first, then published.
    setConfig(sim, { synchronous: 'quorum', synchronousNodeCount: 2 });
    await untilSafe(sim, 'quorum 2', () => converged(sim, 'node1', ['node2', 'node3'], 2));
    assert.equal(sim.world.commit('node1').acknowledged, true);
    // Back off: the published set goes first, then synchronous_standby_names is cleared.
    setConfig(sim, { synchronous: 'off' });
    await untilSafe(sim, 'sync retired', () => published(sim)?.members.length === 0 && standbyNamesOf(sim, 'node1') === '');
  });

  void it('the leader dies after acknowledged writes: the new leader has every one of them', async () => {
    const sim = await syncCluster();
    const acked: string[] = [];
    for (let i = 0; i < 5; i += 1) {
      const c = sim.world.commit('node1', 16_384n);
      if (c.acknowledged) acked.push(c.lsn);
      await sim.round();
    }
    assert.equal(acked.length, 5);
    await sim.powerOff('node1');
    await untilSafe(sim, 'a replica leads', () => sim.leader() !== null && sim.leader() !== 'node1' && sim.world.isWritable(sim.leader() ?? ''));
    const leader = sim.leader() ?? '';
    const last = acked.at(-1) ?? '';
    const switchPoint = sim.world.dataOf(leader)?.history.at(-1)?.switchLsn ?? 0n;
    assert.ok(switchPoint >= parseLsn(last), `${leader} promoted at ${switchPoint}, below the acknowledged ${last}`);
    // The new leader starts its term with an empty set and rebuilds it with the remaining replica.
    await untilSafe(sim, 'the new leader publishes its own set', () => {
      const other = leader === 'node2' ? 'node3' : 'node2';
      return converged(sim, leader, [other], 1);
    });
  });

  void it('only a member that holds every acknowledged commit may lead; with it gone, nobody does', async () => {
    const sim = await syncCluster();
    // node3 is cut off; commits are then acknowledged by node2 alone.
    sim.world.pauseReceiver('node3');
    const acked: string[] = [];
    await untilSafe(sim, 'node3 left the published set', () => published(sim)?.members.join(',') === 'node2', 200, () => {
      const c = sim.world.commit('node1', 8_192n);
      if (c.acknowledged) acked.push(c.lsn);
    });
    assert.ok(acked.length > 0);
    assert.ok(parseLsn(sim.world.lsnOf('node3') ?? '0/0') < parseLsn(acked.at(-1) ?? '0/0'), 'node3 lacks acknowledged commits');
    sim.world.pauseReceiver('node3', false);
    await sim.powerOff('node1');
    await sim.powerOff('node2');
    const ttlRounds = (defaultDynamicConfig().ttlSeconds * 1000) / sim.stepMs;
    for (let i = 0; i < 4 * ttlRounds; i += 1) {
      await sim.round();
      assert.equal(sim.world.count('promote', 'node3'), 0, `node3 must not promote without the acknowledged commits\n${sim.describe()}`);
    }
    assert.equal(sim.leader(), null);
    assert.match(sim.agent('node3').loop.snapshot().decision?.summary ?? '', /not in the synchronous set/);
  });

  void it('control: with sync mode off, the same lagging replica does take over (the test above can fail)', async () => {
    const sim = await bootstrappedSim();
    sim.world.pauseReceiver('node3');
    for (let i = 0; i < 5; i += 1) {
      sim.world.commit('node1', 8_192n);
      await sim.round();
    }
    sim.world.pauseReceiver('node3', false);
    await sim.powerOff('node1');
    await sim.powerOff('node2');
    await sim.until('node3 leads', () => sim.leader() === 'node3' && sim.world.isWritable('node3'));
  });

  void it('the candidate that cannot reach enough of the set waits, then promotes once it can', async () => {
    const sim = await syncCluster({ synchronousNodeCount: 1 });
    const c = sim.world.commit('node1');
    assert.equal(c.acknowledged, true);
    sim.silentPeers.add('node2');
    sim.silentPeers.add('node3');
    await sim.powerOff('node1');
    const ttlRounds = (defaultDynamicConfig().ttlSeconds * 1000) / sim.stepMs;
    for (let i = 0; i < 2 * ttlRounds; i += 1) await sim.round();
    assert.equal(sim.leader(), null, 'P = {node2, node3}, quorum 1: each needs the other position');
    assert.match(sim.agent('node2').loop.snapshot().decision?.summary ?? '', /needs 2/);
    sim.silentPeers.clear();
    await sim.until('a replica leads', () => sim.leader() !== null && sim.world.isWritable(sim.leader() ?? ''));
  });

  void it('a replica that stops streaming leaves synchronous_standby_names before the published set', async () => {
    const sim = await syncCluster();
    const seen: Array<{ s: string; p: string }> = [];
    sim.world.pauseReceiver('node3');
    await untilSafe(sim, 'node3 removed from both', () => converged(sim, 'node1', ['node2'], 1), 200, () => {
      sim.world.commit('node1', 4_096n);
      seen.push({ s: standbyNamesOf(sim, 'node1'), p: (published(sim)?.members ?? []).join(',') });
    });
    const sDropped = seen.findIndex((x) => !x.s.includes('node3'));
    const pDropped = seen.findIndex((x) => !x.p.includes('node3'));
    assert.ok(sDropped >= 0 && pDropped > sDropped, `S dropped node3 at ${sDropped}, P at ${pDropped}: ${JSON.stringify(seen)}`);
    // It comes back: published first, then made synchronous again.
    sim.world.pauseReceiver('node3', false);
    const back: Array<{ s: string; p: string }> = [];
    await untilSafe(sim, 'node3 back in both', () => converged(sim, 'node1', ['node2', 'node3'], 1), 200, () => {
      back.push({ s: standbyNamesOf(sim, 'node1'), p: (published(sim)?.members ?? []).join(',') });
    });
    const pAdded = back.findIndex((x) => x.p.includes('node3'));
    const sAdded = back.findIndex((x) => x.s.includes('node3'));
    assert.ok(pAdded >= 0 && sAdded > pAdded, `P added node3 at ${pAdded}, S at ${sAdded}: ${JSON.stringify(back)}`);
  });

  void it('a planned switchover to a member of the set: nothing acknowledged is lost, the old leader joins the new set', async () => {
    const sim = await syncCluster();
    const last = sim.world.commit('node1', 65_536n);
    assert.equal(last.acknowledged, true);
    const request = { kind: 'switchover' as const, from: 'node1', to: 'node3', requestedAtMs: sim.clock.nowMs() };
    assert.ok(sim.store.createIfAbsent(sim.keys.failover, JSON.stringify(request)));
    await untilSafe(sim, 'node3 leads with node1 and node2 synchronous', () => converged(sim, 'node3', ['node1', 'node2'], 1) && sim.world.isWritable('node3'));
    assert.ok((sim.world.dataOf('node3')?.history.at(-1)?.switchLsn ?? 0n) >= parseLsn(last.lsn));
    assert.equal(sim.world.commit('node3').acknowledged, true);
  });

  void it('strict mode keeps synchronous_standby_names when every replica is gone: writes block', async () => {
    const sim = await syncCluster({ synchronousStrict: true });
    sim.world.pauseReceiver('node2');
    sim.world.pauseReceiver('node3');
    for (let i = 0; i < 30; i += 1) {
      await sim.round();
      assertInvariant(sim, 'strict');
    }
    assert.equal(standbyNamesOf(sim, 'node1'), 'ANY 1 ("node2", "node3")');
    assert.deepEqual(published(sim)?.members, ['node2', 'node3']);
    assert.equal(sim.world.commit('node1').acknowledged, false, 'writes wait for a synchronous replica');
    assert.match(sim.agent('node1').loop.snapshot().decision?.summary ?? '', /strict/);
  });

  void it('default (non-strict) mode degrades: /sync emptied first, then asynchronous commits', async () => {
    const sim = await syncCluster();
    sim.world.pauseReceiver('node2');
    sim.world.pauseReceiver('node3');
    const seen: Array<{ s: string; p: number }> = [];
    await untilSafe(sim, 'degraded', () => standbyNamesOf(sim, 'node1') === '' && published(sim)?.members.length === 0, 200, () => {
      seen.push({ s: standbyNamesOf(sim, 'node1'), p: published(sim)?.members.length ?? -1 });
    });
    const pEmpty = seen.findIndex((x) => x.p === 0);
    const sEmpty = seen.findIndex((x) => x.s === '');
    assert.ok(pEmpty >= 0 && sEmpty > pEmpty, `P emptied at ${pEmpty}, S at ${sEmpty}`);
    assert.equal(sim.world.commit('node1').acknowledged, true, 'asynchronous again');
    // While degraded nobody can be promoted: only the leader has the newest commits.
    sim.world.pauseReceiver('node2', false);
    sim.world.pauseReceiver('node3', false);
    await untilSafe(sim, 'set rebuilt', () => converged(sim, 'node1', ['node2', 'node3'], 1));
  });
});
