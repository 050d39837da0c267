/**
 * Timing of the HA loop against the lease (src/ha/loop.ts, src/ha/decide.ts): the invariant of
 * docs/architecture.md, HA rule 1, is that a leader that cannot renew stops being writable *before* its lease
 * can expire, so two writable primaries never coexist. Here etcd does not refuse requests, it
 * stops answering (as in a partition: each request hangs until the client's operation timeout,
 * 2000 ms as composed in src/agent/compose.ts), and every agent follows the loop's own schedule
 * (tick, then sleep 100 ms after a decision that completed a non-routine action, else `loopWaitMs`), emulated on
 * the fake clock without `run()` so that the whole timeline is deterministic. Also checks that a
 * steady leader does not re-tick at the quick rate forever.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { defaultDynamicConfig } from '../../src/config/schema.js';
import { leaseDeadlineMs } from '../../src/ha/timing.js';
import { BlackholeDcs } from '../fakes/blackhole-dcs.js';
import { SimCluster, flush, type SimAgent } from './sim-cluster.js';

const WORLD = { startupMs: 300, initializeMs: 1_000, cloneMs: 800 };
const OPERATION_TIMEOUT_MS = 2_000; // EtcdDcs operationTimeoutMs in src/agent/compose.ts
const QUICK_RETICK_MS = 100; // src/ha/loop.ts

/** Runs each agent the way HaLoop#run schedules ticks, until `stop()`; all time is the fake clock's. */
function scheduleLikeRun(sim: SimCluster): { stop: () => Promise<void> } {
  let stopping = false;
  const drive = async (agent: SimAgent): Promise<void> => {
    while (!stopping) {
      const quick = await agent.loop.tick();
      await sim.clock.sleep(quick ? QUICK_RETICK_MS : agent.loop.currentConfig().loopWaitMs);
    }
  };
  const drivers = Promise.all(sim.agents.map(drive));
  return {
    stop: async () => {
      stopping = true;
      let settled = false;
      void drivers.then(() => {
        settled = true;
      });
      for (let i = 0; i < 1_000 && !settled; i += 1) {
        sim.clock.advance(50);
        await flush();
      }
      assert.ok(settled, 'drivers stopped');
    },
  };
}

async function bootstrapped(sim: SimCluster): Promise<void> {
  sim.startAll();
  await sim.until('node1 leads and the others stream from it', () =>
    sim.leader() === 'node1' && sim.names.filter((n) => n !== 'node1').every((n) => sim.isStreamingFrom(n, 'node1')),
  );
}

interface PartitionOutcome {
  /** Time of node1's last successful lease renewal before the partition (its lease expires TTL later). */
  lastRenewedMs: number;
  ttlMs: number;
  /** When node1 stopped accepting writes. */
  unwritableAtMs: number;
  /** Moments at which the single-writer invariant did not hold. */
  violations: string[];
  /** The leader once things settled. */
  leaderAfter: string | null;
  sim: SimCluster;
}

/**
 * Bootstraps three nodes, runs them on the loop's schedule, then partitions node1 (the leader)
 * from etcd right after a successful renewal and read, and watches every 10 ms of fake time.
 */
async function partitionLeader(options: { watchdog: boolean }): Promise<PartitionOutcome> {
  let blackhole: BlackholeDcs | null = null;
  const sim = new SimCluster({
    world: WORLD,
    watchdog: options.watchdog,
    wrapDcs: (name, client, clock) => {
      if (name !== 'node1') return client;
      blackhole = new BlackholeDcs(client, clock, OPERATION_TIMEOUT_MS);
      return blackhole;
    },
  });
  await bootstrapped(sim);
  const node1 = sim.agent('node1');
  assert.ok(blackhole !== null);
  const cut: BlackholeDcs = blackhole;
  const ttlMs = node1.loop.currentConfig().ttlSeconds * 1000;
  const schedule = scheduleLikeRun(sim);
  try {
    for (let i = 0; i < 100; i += 1) {
      sim.clock.advance(10);
      await flush();
    }
    cut.cutAfterNextRead();
    let lastRenewedMs: number | null = null;
    let unwritableAtMs: number | null = null;
    const violations: string[] = [];
    for (let i = 0; i < 3_000 && (unwritableAtMs === null || sim.leader() === null || sim.leader() === 'node1'); i += 1) {
      sim.clock.advance(10);
      await flush();
      if (cut.isBlackholed() && lastRenewedMs === null) lastRenewedMs = node1.memory.lastRenewedMs;
      if (unwritableAtMs === null && !sim.world.isWritable('node1')) unwritableAtMs = sim.clock.nowMs();
      const writable = sim.names.filter((n) => sim.world.isWritable(n));
      if (writable.length > 1) violations.push(`t=${sim.clock.nowMs()}: ${writable.join(' and ')} both writable`);
      if (sim.world.isWritable('node1') && sim.leader() !== 'node1') violations.push(`t=${sim.clock.nowMs()}: node1 writable, leader key ${sim.leader() ?? 'free'}`);
    }
    assert.ok(lastRenewedMs !== null, 'the partition started');
    assert.ok(unwritableAtMs !== null, `node1 stopped taking writes\n${sim.describe()}`);
    return { lastRenewedMs, ttlMs, unwritableAtMs, violations, leaderAfter: sim.leader(), sim };
  } finally {
    cut.setBlackholed(false);
    await schedule.stop();
  }
}

void describe('loop timing: a leader partitioned from etcd (requests hang until the client timeout)', () => {
  void it('with the fencing watchdog (as composed): writes stop at the lease deadline, before expiry; one writer at all times', async () => {
    const outcome = await partitionLeader({ watchdog: true });
    const { lastRenewedMs, ttlMs, unwritableAtMs } = outcome;
    assert.deepEqual(outcome.violations.slice(0, 3), []);
    assert.ok(unwritableAtMs < lastRenewedMs + ttlMs, `writes stopped at T+${unwritableAtMs - lastRenewedMs} ms, lease ${ttlMs} ms`);
    assert.ok(unwritableAtMs >= leaseDeadlineMs(lastRenewedMs, ttlMs / 1000), 'not before the deadline');
    assert.deepEqual(outcome.sim.agent('node1').guard?.fired, [leaseDeadlineMs(lastRenewedMs, ttlMs / 1000)], 'the watchdog fired at the deadline');
    assert.equal(outcome.leaderAfter, 'node2', 'node2 took over after the lease expired');
  });

  void it(
    'without the watchdog (it died; compose.ts only logs that), the loop alone still stops writes before the lease expires',
    async () => {
      // The tick is stuck in hanging etcd requests (publish-leader-lsn, then the member-record put)
      // past the deadline; the loop's in-process fence timer, armed by the last renewal, stops
      // postgres at the deadline without waiting for the next decide().
      const outcome = await partitionLeader({ watchdog: false });
      const { lastRenewedMs, ttlMs, unwritableAtMs } = outcome;
      const deadlineMs = leaseDeadlineMs(lastRenewedMs, ttlMs / 1000);
      assert.deepEqual(outcome.violations.slice(0, 3), [], `writes stopped at T+${unwritableAtMs - lastRenewedMs} ms (lease ${ttlMs} ms)`);
      assert.ok(unwritableAtMs < lastRenewedMs + ttlMs, `writes stopped at T+${unwritableAtMs - lastRenewedMs} ms, lease ${ttlMs} ms`);
      assert.ok(unwritableAtMs >= deadlineMs, 'not before the deadline');
      assert.ok(unwritableAtMs - deadlineMs < 10, `at the deadline (within the 10 ms observation step): T+${unwritableAtMs - lastRenewedMs} ms, deadline T+${deadlineMs - lastRenewedMs} ms`);
      const node1 = outcome.sim.agent('node1');
      assert.equal(outcome.sim.world.eventsOf('node1', 'stop')[0]?.detail, 'immediate', 'fenced with an immediate stop');
      assert.equal(outcome.sim.world.eventsOf('node1', 'crash').length, 0, 'no watchdog kill: the loop stopped postgres itself');
      assert.equal(node1.memory.holdsLeader, false, 'the fence drops the memory of holding the key');
      assert.equal(outcome.leaderAfter, 'node2', 'node2 took over after the lease expired');
    },
  );

  void it('a leader whose etcd refuses at once fences within the deadline under the real schedule', async () => {
    const sim = new SimCluster({ world: WORLD });
    await bootstrapped(sim);
    const node1 = sim.agent('node1');
    const ttlMs = node1.loop.currentConfig().ttlSeconds * 1000;
    const schedule = scheduleLikeRun(sim);
    try {
      for (let i = 0; i < 100; i += 1) {
        sim.clock.advance(10);
        await flush();
      }
      node1.client.setReachable(false);
      const lastRenewedMs = node1.memory.lastRenewedMs;
      assert.ok(lastRenewedMs !== null);
      for (let i = 0; i < 2_000 && sim.world.isRunning('node1'); i += 1) {
        sim.clock.advance(10);
        await flush();
        assert.ok(sim.names.filter((n) => sim.world.isWritable(n)).length <= 1, `two writable primaries at t=${sim.clock.nowMs()}`);
      }
      const fence = sim.world.eventsOf('node1', 'stop').at(-1);
      assert.ok(fence !== undefined);
      assert.ok(fence.atMs < lastRenewedMs + ttlMs, `fenced at T+${fence.atMs - lastRenewedMs} ms`);
      // And the cluster recovers: node2 takes over once the lease is gone.
      for (let i = 0; i < 2_000 && sim.leader() !== 'node2'; i += 1) {
        sim.clock.advance(10);
        await flush();
        assert.ok(sim.names.filter((n) => sim.world.isWritable(n)).length <= 1, `two writable primaries at t=${sim.clock.nowMs()}`);
      }
      assert.equal(sim.leader(), 'node2');
    } finally {
      node1.client.setReachable(true);
      await schedule.stop();
    }
  });
});

void describe('loop timing: steady state', () => {
  void it('a streaming replica with nothing to do does not ask for a quick re-tick', async () => {
    const sim = new SimCluster({ world: WORLD });
    await bootstrapped(sim);
    assert.equal(await sim.agent('node2').loop.tick(), false);
  });

  void it('a decision that changed something asks for a quick re-tick', async () => {
    const sim = new SimCluster({ world: WORLD, names: ['node1'] });
    sim.startAll();
    assert.equal(await sim.agent('node1').loop.tick(), true, 'started initialize-cluster');
    assert.equal(sim.agent('node1').loop.snapshot().decision?.actions[0]?.kind, 'initialize-cluster');
  });

  void it(
    'a steady leader ticks at loopWaitMs, not at the quick re-tick rate',
    async () => {
      const sim = new SimCluster({ world: WORLD });
      await bootstrapped(sim);
      assert.equal(sim.agent('node1').loop.snapshot().decision?.summary, 'leading');
      assert.equal(await sim.agent('node1').loop.tick(), false);
    },
  );

  void it('a leader whose decision includes a non-routine action (clearing a stale intent) asks for a quick re-tick', async () => {
    const sim = new SimCluster({ world: WORLD });
    await bootstrapped(sim);
    const stale = { kind: 'switchover', from: 'node1', to: 'node2', requestedAtMs: sim.clock.nowMs() - 10 * 60_000 };
    sim.store.put(sim.keys.failover, JSON.stringify(stale));
    assert.equal(await sim.agent('node1').loop.tick(), true);
    assert.deepEqual(
      sim.agent('node1').loop.snapshot().decision?.actions.map((a) => a.kind),
      ['clear-intent', 'sync-slots', 'publish-leader-lsn'],
    );
    assert.equal(sim.store.get(sim.keys.failover), null, 'the stale intent is cleared');
    assert.equal(await sim.agent('node1').loop.tick(), false, 'then back to the routine');
  });

  void it('under the real schedule a steady leader ticks once per loopWaitMs and its fence timer, re-armed by every renewal, never fires', async () => {
    const sim = new SimCluster({ world: WORLD });
    await bootstrapped(sim);
    const node1 = sim.agent('node1');
    const { ttlSeconds, loopWaitMs } = node1.loop.currentConfig();
    const ticksBefore = node1.loop.snapshot().ticks;
    const stopsBefore = sim.world.eventsOf('node1', 'stop').length;
    const schedule = scheduleLikeRun(sim);
    const spanMs = 5 * ttlSeconds * 1000;
    try {
      for (let elapsed = 0; elapsed < spanMs; elapsed += 10) {
        sim.clock.advance(10);
        await flush();
        assert.ok(sim.world.isWritable('node1'), `node1 writable at +${elapsed + 10} ms`);
      }
    } finally {
      await schedule.stop();
    }
    const ticks = node1.loop.snapshot().ticks - ticksBefore;
    assert.ok(ticks <= spanMs / loopWaitMs + 2, `${ticks} ticks in ${spanMs} ms (loopWaitMs ${loopWaitMs})`);
    assert.ok(ticks >= spanMs / loopWaitMs - 2, `${ticks} ticks in ${spanMs} ms (loopWaitMs ${loopWaitMs})`);
    assert.equal(sim.world.eventsOf('node1', 'stop').length, stopsBefore, 'never fenced');
    assert.equal(sim.leader(), 'node1');
    assert.equal(node1.memory.holdsLeader, true);
  });
});

void describe('loop timing: a cluster configured with a non-default TTL', () => {
  void it(
    'the leader lease is granted with the configured ttlSeconds, so the fence deadline falls inside the real lease',
    async () => {
      const sim = new SimCluster({ world: WORLD, watchdog: true });
      sim.store.put(sim.keys.config, JSON.stringify({ ...defaultDynamicConfig(), ttlSeconds: 20 }));
      await bootstrapped(sim);
      assert.equal(sim.agent('node1').loop.currentConfig().ttlSeconds, 20);
      for (let i = 0; i < 110; i += 1) await sim.round(); // past every agent's start-up grace (one TTL)
      const cutMs = sim.clock.nowMs();
      sim.agent('node1').client.setReachable(false);
      const violations: string[] = [];
      const check = (): void => {
        const writable = sim.names.filter((n) => sim.world.isWritable(n));
        if (writable.length > 1) violations.push(`T+${sim.clock.nowMs() - cutMs}: ${writable.join(' and ')} both writable`);
      };
      for (let i = 0; i < 200 && sim.leader() !== 'node2'; i += 1) {
        await sim.round();
        check();
      }
      for (let i = 0; i < 100; i += 1) {
        await sim.round();
        check();
      }
      assert.equal(sim.leader(), 'node2', 'node2 took over');
      assert.deepEqual(violations.length === 0 ? [] : [violations[0], violations.at(-1), `${violations.length} samples`], [], 'one writer at all times');
    },
  );
});
