/**
 * Outages over the scenario harness (sim-cluster.ts), driven round by round with the single-writer
 * invariant ("never two writable primaries at once") checked after every agent's tick and after
 * every clock step: etcd unreachable from every node (the leader fences before its lease deadline,
 * nobody promotes meanwhile, one leader afterwards); the leader alone cut off from etcd (it fences,
 * another node leads after expiry, it rejoins as a replica; a blip shorter than the deadline costs
 * nothing; a reconnection between its fence and the expiry of its lease gives it the lead back);
 * a replica whose agent keeps stopping and restarting (the leader never changes, the replica ends
 * streaming); the leader's agent killed (its postgres dies with it) and restarted within the TTL (it
 * adopts its key, same timeline); a leader whose postgres crashes once (restarted in place) or at
 * every start (it releases the lead after the TTL and a replica takes over); and the leader dying
 * during an etcd outage of every node: afterwards the most advanced replica leads, not the first to
 * tick (every member record expired with its lease; the re-grant grace lets them re-publish).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { leaseDeadlineMs } from '../../src/ha/timing.js';
import { parseEvents } from '../../src/state/events.js';
import { SimCluster } from './sim-cluster.js';
import { formatLsn, parseLsn } from '../../src/shared/lsn.js';
import { bootstrapped, writeAndReplicate } from './driver.js';

/**
 * The agent of `name` is killed (-9, OOM): its postmaster and its watchdog, children with a
 * parent-death SIGKILL (src/postgres/postmaster.ts, src/agent/watchdog.ts), die with it; its etcd
 * keys stay until its lease expires.
 */
async function killAgent(sim: SimCluster, name: string): Promise<void> {
  const agent = sim.agent(name);
  await agent.loop.stop();
  agent.guard?.disarm();
  sim.world.crash(name);
  await agent.pg.close();
  await agent.client.close();
  sim.agents = sim.agents.filter((a) => a !== agent);
}

function eventKinds(sim: SimCluster): string[] {
  return parseEvents(sim.store.get(sim.keys.events)).map((e) => `${e.node}:${e.kind}`);
}

function ttlMsOf(sim: SimCluster): number {
  const agent = sim.agents[0] ?? assert.fail('no running agent');
  return agent.loop.currentConfig().ttlSeconds * 1000;
}

function lastRenewedOf(sim: SimCluster, name: string): number {
  return sim.agent(name).memory.lastRenewedMs ?? assert.fail(`${name} never renewed its lease`);
}

/** The leader when every other node streams from it, else null. */
function convergedLeader(sim: SimCluster): string | null {
  const leader = sim.leader();
  if (leader === null || !sim.world.isWritable(leader)) return null;
  return sim.names.filter((n) => n !== leader).every((n) => sim.isStreamingFrom(n, leader)) ? leader : null;
}

/** Fails the check whenever the leader key names another node than `leader`. */
function leaderStays(sim: SimCluster, leader: string): (when: string) => void {
  return (when) => {
    const current = sim.leader();
    if (current !== leader) assert.fail(`the leader key names ${current ?? 'nobody'}, not ${leader}, ${when}\n${sim.describe()}`);
  };
}

// ---------------------------------------------------------------------------------------------

void describe('outage: etcd unreachable from every node', () => {
  void it('the leader fences before its lease deadline; nobody promotes during the outage; afterwards exactly one leader and all converge', async () => {
    const { sim, d } = await bootstrapped();
    const written = await writeAndReplicate(d, 'node1', 65_536n);
    const ttlMs = ttlMsOf(sim);
    const lastRenewedMs = lastRenewedOf(sim, 'node1');
    for (const agent of sim.agents) agent.client.setReachable(false);
    const outageStartMs = sim.clock.nowMs();
    let outage = true;
    d.checks.push((when) => {
      if (!outage) return;
      if (sim.world.count('promote') !== 0) assert.fail(`a promotion during the outage ${when}\n${sim.describe()}`);
      for (const name of ['node2', 'node3']) {
        const data = sim.world.dataOf(name);
        if (data?.running !== true || !data.inRecovery) assert.fail(`${name} is no longer a running standby ${when}\n${sim.describe()}`);
      }
    });

    await d.until('node1 fenced', () => !sim.world.isRunning('node1'));
    const fence = sim.world.eventsOf('node1', 'stop').at(-1) ?? assert.fail('no stop');
    assert.equal(fence.detail, 'immediate');
    assert.ok(fence.atMs >= leaseDeadlineMs(lastRenewedMs, ttlMs / 1000), 'not before its own deadline');
    assert.ok(fence.atMs < lastRenewedMs + ttlMs, `fenced at T+${fence.atMs - lastRenewedMs} ms, before the lease (${ttlMs} ms) expires`);

    // The outage lasts three TTLs: every lease (leader key, member records) expires meanwhile.
    await d.until('three TTLs of outage', () => sim.clock.nowMs() - outageStartMs >= 3 * ttlMs);
    assert.equal(sim.world.count('promote'), 0);
    assert.deepEqual(sim.names.filter((n) => sim.world.isWritable(n)), [], 'no writable primary');
    for (const name of sim.names) {
      assert.match(sim.agent(name).loop.snapshot().decision?.summary ?? '', /etcd unreachable .*keeping current role/, name);
      assert.ok(!d.actionsOf(name, outageStartMs + sim.stepMs).some((a) => a !== 'fence'), `${name} acted during the outage`);
    }
    assert.equal(sim.leader(), null, 'the leader key expired with node1\'s lease');

    outage = false;
    for (const agent of sim.agents) agent.client.setReachable(true);
    await d.until('one leader, the others stream from it', () => convergedLeader(sim) !== null);
    const leader = convergedLeader(sim) ?? assert.fail('no leader');
    assert.equal(sim.world.count('promote'), 1, 'exactly one promotion');
    assert.equal(sim.world.count('promote', leader), 1);
    assert.deepEqual(eventKinds(sim).filter((e) => e.endsWith(':leader-acquired')), [`${leader}:leader-acquired`], 'one node took the key');
    assert.equal(sim.history().at(-1)?.lsn, written, 'nothing written before the outage was lost');
    for (const name of sim.names) assert.equal(sim.world.dataOf(name)?.timeline, 2, name);
    assert.equal(sim.world.count('moved-aside'), 0);
    const next = sim.world.write(leader, 100n);
    await d.until('every replica replays the leader', () => sim.names.every((n) => sim.world.lsnOf(n) === next));
  });

  void it('an outage shorter than the fence deadline changes nothing', async () => {
    const { sim, d } = await bootstrapped();
    await writeAndReplicate(d, 'node1', 4_096n);
    d.checks.push(leaderStays(sim, 'node1'));
    const stopsBefore = sim.world.count('stop');
    const lastRenewedMs = lastRenewedOf(sim, 'node1');
    const deadlineMs = leaseDeadlineMs(lastRenewedMs, ttlMsOf(sim) / 1000);
    for (const agent of sim.agents) agent.client.setReachable(false);
    await d.until('just before node1\'s deadline', () => sim.clock.nowMs() + 2 * sim.stepMs >= deadlineMs);
    assert.ok(sim.world.isWritable('node1'));
    assert.match(sim.agent('node1').loop.snapshot().decision?.summary ?? '', /lease still valid for \d+ ms/);
    for (const agent of sim.agents) agent.client.setReachable(true);
    await d.rounds(30);
    assert.equal(convergedLeader(sim), 'node1');
    assert.equal(sim.world.count('stop'), stopsBefore, 'nothing was stopped');
    assert.equal(sim.world.count('promote'), 0);
    sim.world.write('node1');
  });
});

void describe('outage: the leader alone is cut off from etcd', () => {
  void it('it fences before the TTL; another node leads after expiry; reconnected, it rejoins as a replica', async () => {
    const { sim, d } = await bootstrapped();
    const written = await writeAndReplicate(d, 'node1', 65_536n);
    const ttlMs = ttlMsOf(sim);
    const lastRenewedMs = lastRenewedOf(sim, 'node1');
    const leaseExpiresMs = lastRenewedMs + ttlMs;
    sim.agent('node1').client.setReachable(false);

    await d.until('node1 fenced', () => !sim.world.isRunning('node1'));
    const fence = sim.world.eventsOf('node1', 'stop').at(-1) ?? assert.fail('no stop');
    assert.equal(fence.detail, 'immediate');
    assert.ok(fence.atMs < leaseExpiresMs, `fenced at T+${fence.atMs - lastRenewedMs} ms, lease ${ttlMs} ms`);
    assert.equal(sim.leader(), 'node1', 'fenced while its key was still live');

    await d.until('another node leads', () => sim.leader() !== null && sim.leader() !== 'node1');
    assert.ok(sim.clock.nowMs() >= leaseExpiresMs, 'only after the lease expired');
    const leader = sim.leader() ?? assert.fail('no leader');
    const other = leader === 'node2' ? 'node3' : 'node2';
    await d.until(`${other} follows ${leader}`, () => sim.isStreamingFrom(other, leader));
    await d.rounds(20);
    assert.equal(sim.world.isRunning('node1'), false, 'the cut-off node stays down while it cannot see etcd');
    assert.match(sim.agent('node1').loop.snapshot().decision?.summary ?? '', /etcd unreachable .*keeping current role/);

    sim.agent('node1').client.setReachable(true);
    await d.until(`node1 rejoins as a replica of ${leader}`, () => sim.isStreamingFrom('node1', leader));
    assert.equal(convergedLeader(sim), leader);
    assert.equal(sim.world.count('promote'), 1);
    assert.equal(sim.world.count('promote', leader), 1);
    assert.match(sim.world.eventsOf('node1', 'start').at(-1)?.detail ?? '', /^standby/);
    assert.equal(sim.world.count('moved-aside'), 0);
    assert.equal(sim.history().at(-1)?.lsn, written);
  });

  void it('a cut shorter than the fence deadline costs nothing: same leader, no fence, no promotion', async () => {
    const { sim, d } = await bootstrapped();
    await writeAndReplicate(d, 'node1', 4_096n);
    d.checks.push(leaderStays(sim, 'node1'));
    const deadlineMs = leaseDeadlineMs(lastRenewedOf(sim, 'node1'), ttlMsOf(sim) / 1000);
    sim.agent('node1').client.setReachable(false);
    await d.until('just before the deadline', () => sim.clock.nowMs() + 2 * sim.stepMs >= deadlineMs);
    sim.world.write('node1');
    sim.agent('node1').client.setReachable(true);
    await d.rounds(30);
    assert.equal(convergedLeader(sim), 'node1');
    assert.equal(sim.world.eventsOf('node1', 'stop').length, 0);
    assert.equal(sim.world.count('promote'), 0);
  });

  void it('reconnected after it fenced but before its lease expired: it adopts its own key and leads again on the same timeline', async () => {
    const { sim, d } = await bootstrapped();
    const written = await writeAndReplicate(d, 'node1', 4_096n);
    d.checks.push(leaderStays(sim, 'node1'));
    const leaseExpiresMs = lastRenewedOf(sim, 'node1') + ttlMsOf(sim);
    sim.agent('node1').client.setReachable(false);
    await d.until('node1 fenced', () => !sim.world.isRunning('node1'));
    assert.ok(sim.clock.nowMs() + sim.stepMs < leaseExpiresMs, 'the fence leaves room before the expiry');
    sim.agent('node1').client.setReachable(true);
    await d.until('node1 leads again with both replicas', () => convergedLeader(sim) === 'node1');
    assert.equal(sim.world.count('promote'), 0);
    for (const name of sim.names) assert.equal(sim.world.dataOf(name)?.timeline, 1, name);
    assert.equal(sim.world.lsnOf('node1'), written);
    assert.ok(eventKinds(sim).includes('node1:leader-adopted'), eventKinds(sim).join(', '));
    assert.equal(sim.history().length, 1);
  });
});

void describe('outage: a flapping member', () => {
  void it('a replica whose agent keeps stopping and restarting: the leader never changes, the replica ends streaming', async () => {
    const { sim, d } = await bootstrapped();
    d.checks.push(leaderStays(sim, 'node1'));
    let last = '';
    const startsBefore = sim.world.eventsOf('node3', 'start').length;
    for (let cycle = 0; cycle < 10; cycle += 1) {
      last = sim.world.write('node1', 4_096n);
      // Alternately a graceful stop (postgres stopped fast, keys released) and a kill -9 (postgres
      // dies with the agent, its keys stay until the lease expires).
      if (cycle % 2 === 0) await sim.stopAgent('node3');
      else await killAgent(sim, 'node3');
      await d.rounds(1 + (cycle % 3));
      sim.startAgent('node3');
      await d.rounds(1 + ((cycle + 1) % 4)); // sometimes stopped again before its postgres is even up
    }
    await d.until('node3 streams from node1 and replayed the last write', () => sim.isStreamingFrom('node3', 'node1') && sim.world.lsnOf('node3') === last);
    assert.ok(sim.world.eventsOf('node3', 'start').length >= startsBefore + 10, 'node3\'s postgres was started again every cycle');
    assert.equal(convergedLeader(sim), 'node1');
    assert.equal(sim.world.count('promote'), 0);
    assert.equal(sim.history().length, 1);
    for (const name of ['node2', 'node3']) assert.ok(!d.actionsOf(name).includes('acquire-leader'), `${name} never raced for the key`);
    assert.equal(sim.world.lsnOf('node2'), last);
    assert.equal(sim.world.count('moved-aside'), 0);
    assert.equal(sim.world.count('rewind'), 0);
  });

  void it('a replica that was down while the leader recycled the WAL it needs is re-cloned (data moved aside), then streams', async () => {
    const { sim, d } = await bootstrapped();
    d.checks.push(leaderStays(sim, 'node1'));
    const asideBefore = sim.world.count('moved-aside');
    await sim.stopAgent('node3');
    const behind = sim.world.lsnOf('node3');
    const last = await writeAndReplicate(d, 'node1', 64n * 1024n * 1024n);
    // The leader's checkpoints recycled every segment the stopped replica would need next (node2,
    // streaming, has them all: its active slot kept them until it replayed them).
    sim.world.walRemovedBefore.set('node1', parseLsn(last));
    sim.startAgent('node3');
    await d.until('node3 streams from node1 again, with the last write', () => sim.isStreamingFrom('node3', 'node1') && sim.world.lsnOf('node3') === last, 400);
    assert.equal(sim.world.eventsOf('node3', 'moved-aside').length, 1, 'the old data directory was moved aside once, not deleted');
    assert.ok([...sim.world.asideData.values()].some((data) => formatLsn(data.lsn) === behind), 'the copy moved aside is the old one');
    assert.ok(eventKinds(sim).includes('node3:reinitialized'), eventKinds(sim).join(' '));
    assert.ok(d.actionsOf('node3').includes('reclone'));
    assert.ok(!d.actionsOf('node2').includes('reclone'), 'a replica that kept streaming is left alone');
    assert.equal(sim.world.count('moved-aside'), asideBefore + 1);
    assert.equal(sim.world.count('promote'), 0);
  });

  void it('a leader whose agent is killed and restarted within the TTL keeps the lead on the same timeline', async () => {
    const { sim, d } = await bootstrapped();
    d.checks.push(leaderStays(sim, 'node1'));
    let last = '';
    for (let cycle = 0; cycle < 3; cycle += 1) {
      last = await writeAndReplicate(d, 'node1', 4_096n);
      await killAgent(sim, 'node1');
      await d.rounds(3);
      sim.startAgent('node1');
      await d.until('node1 leads again with both replicas', () => convergedLeader(sim) === 'node1');
    }
    assert.equal(sim.world.count('promote'), 0);
    assert.equal(sim.world.lsnOf('node1'), last, 'crash recovery kept every write');
    for (const name of sim.names) assert.equal(sim.world.dataOf(name)?.timeline, 1, name);
    assert.equal(eventKinds(sim).filter((e) => e === 'node1:leader-adopted').length, 3, eventKinds(sim).join(', '));
  });
});

void describe('outage: the leader\'s postgres crashes', () => {
  void it('crashing once, it is restarted in place: same leader, same timeline, nothing lost', async () => {
    const { sim, d } = await bootstrapped();
    d.checks.push(leaderStays(sim, 'node1'));
    const written = sim.world.write('node1', 4_096n);
    sim.world.crash('node1');
    await d.until('node1 writable again', () => sim.world.isWritable('node1'));
    assert.equal(sim.world.eventsOf('node1', 'start').at(-1)?.detail, 'primary');
    assert.equal(sim.world.count('promote'), 0);
    assert.equal(sim.world.dataOf('node1')?.timeline, 1);
    assert.equal(sim.world.lsnOf('node1'), written);
    assert.ok(eventKinds(sim).includes('node1:restarted'), eventKinds(sim).join(', '));
    await d.until('both replicas stream again and replayed the write', () => convergedLeader(sim) === 'node1' && sim.world.lsnOf('node3') === written);
    for (const name of ['node2', 'node3']) assert.ok(!d.actionsOf(name).includes('acquire-leader'), name);
  });

  void it('crashing at every start, it releases the lead after the TTL and a replica takes over', async () => {
    const { sim, d } = await bootstrapped();
    const written = await writeAndReplicate(d, 'node1', 4_096n);
    const ttlMs = ttlMsOf(sim);
    // Every start of node1's postgres dies during start-up, before it accepts connections.
    d.checks.push(() => {
      const data = sim.world.dataOf('node1');
      if (data?.running === true && sim.clock.nowMs() < data.readyAtMs) sim.world.crash('node1');
    });
    const crashedAtMs = sim.clock.nowMs();
    sim.world.crash('node1');

    await d.until('node1 released the leader key', () => sim.leader() !== 'node1');
    const releasedAtMs = sim.clock.nowMs();
    assert.ok(releasedAtMs - crashedAtMs > ttlMs, `kept restarting for one TTL first (released after ${releasedAtMs - crashedAtMs} ms)`);
    assert.ok(releasedAtMs - crashedAtMs <= ttlMs + 3 * sim.stepMs, `and released right after (${releasedAtMs - crashedAtMs} ms)`);
    assert.ok(sim.world.eventsOf('node1', 'start').filter((e) => e.detail === 'primary').length >= 2, 'restart attempts were made');
    assert.ok(eventKinds(sim).includes('node1:leader-released'), eventKinds(sim).join(', '));
    await d.until('node2 leads and node3 follows it', () => sim.leader() === 'node2' && sim.isStreamingFrom('node3', 'node2'));
    assert.equal(sim.world.count('promote'), 1);
    assert.equal(sim.world.count('promote', 'node2'), 1);
    assert.equal(sim.history().at(-1)?.lsn, written, 'nothing lost');
    await d.rounds(30);
    assert.equal(sim.world.isWritable('node1'), false);
    assert.equal(sim.leader(), 'node2');
  });
});

void describe('outage: the leader dies during an etcd outage of every node', () => {
  // Regression: before the re-grant grace (src/ha/decide.ts, rule E4 from `lease.grantedMs`), the
  // first agent to tick after etcd returned saw no member record (all expired with their leases)
  // and took the key at once: node2 led and node3 was pg_rewound, losing the write only it had.
  void it(
    'after the outage, the most advanced replica leads, not the first one to tick: nothing it replayed is rewound away',
    async () => {
      const { sim, d } = await bootstrapped();
      await writeAndReplicate(d, 'node1', 65_536n);
      for (const agent of sim.agents) agent.client.setReachable(false);
      // During the outage a last write reaches node3 but not node2, then node1's agent and postgres die.
      const ahead = sim.world.write('node1', 8_192n);
      await sim.agent('node3').pg.observe();
      assert.equal(sim.world.lsnOf('node3'), ahead);
      await killAgent(sim, 'node1');
      const outageStartMs = sim.clock.nowMs();
      await d.until('two TTLs of outage', () => sim.clock.nowMs() - outageStartMs >= 2 * ttlMsOf(sim));
      assert.equal(sim.leader(), null, 'every lease expired');
      for (const agent of sim.agents) agent.client.setReachable(true); // node2 ticks first, as before

      await d.until('a leader the other replica streams from', () => {
        const leader = sim.leader();
        return leader !== null && ['node2', 'node3'].filter((n) => n !== leader).every((n) => sim.isStreamingFrom(n, leader));
      });
      assert.equal(sim.world.count('promote'), 1);
      assert.equal(sim.leader(), 'node3', 'the replica with the most WAL leads');
      assert.equal(sim.history().at(-1)?.lsn, ahead, 'the new timeline starts after every write a live replica had');
      assert.equal(sim.world.count('rewind'), 0, 'nothing to rewind');
    },
  );
});
