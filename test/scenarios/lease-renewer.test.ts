/**
 * The lease renewer of the HA loop (src/ha/lease-keeper.ts `renewIfTickIsSlow`, driven through the loop): a leader whose tick is
 * slow (here: etcd reads take 4 s, as under heavy disk or CPU load) keeps its lease and its lead,
 * because renewals continue between the tick's own; without the renewer the same slowness fences
 * it (the control case, which shows the test can fail); and a tick that is stuck rather than slow
 * (reads hang 30 s) stops the renewals, so the stuck leader still fences before its lease expires
 * and another node takes over. Everything runs on the fake clock.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Dcs, DcsEntry, DcsWatch, DcsWatchEvent, LeaseId, PutOptions } from '../../src/dcs/dcs.js';
import { leaseDeadlineMs, maxTickForRenewalMs, renewEveryMs } from '../../src/ha/timing.js';
import type { Clock } from '../../src/shared/clock.js';
import { SimCluster, flush, type SimAgent } from './sim-cluster.js';

/** Delegates to the real client; prefix reads wait `readDelayMs` of fake time first. */
class SlowReadDcs implements Dcs {
  readDelayMs = 0;
  constructor(
    private readonly inner: Dcs,
    private readonly clock: Clock,
  ) {}
  async getPrefix(prefix: string): Promise<Map<string, string>> {
    if (this.readDelayMs > 0) await this.clock.sleep(this.readDelayMs);
    return this.inner.getPrefix(prefix);
  }
  async getPrefixWithLeases(prefix: string): Promise<Map<string, DcsEntry>> {
    if (this.readDelayMs > 0) await this.clock.sleep(this.readDelayMs);
    return this.inner.getPrefixWithLeases(prefix);
  }
  get(key: string): Promise<string | null> {
    return this.inner.get(key);
  }
  put(key: string, value: string, options?: PutOptions): Promise<void> {
    return this.inner.put(key, value, options);
  }
  createIfAbsent(key: string, value: string, options?: PutOptions): Promise<boolean> {
    return this.inner.createIfAbsent(key, value, options);
  }
  replaceIfEquals(key: string, expected: string, value: string, options?: PutOptions): Promise<boolean> {
    return this.inner.replaceIfEquals(key, expected, value, options);
  }
  deleteIfEquals(key: string, expected: string): Promise<boolean> {
    return this.inner.deleteIfEquals(key, expected);
  }
  delete(key: string): Promise<void> {
    return this.inner.delete(key);
  }
  deletePrefix(prefix: string): Promise<void> {
    return this.inner.deletePrefix(prefix);
  }
  grantLease(ttlSeconds: number): Promise<LeaseId> {
    return this.inner.grantLease(ttlSeconds);
  }
  keepAlive(leaseId: LeaseId): Promise<boolean> {
    return this.inner.keepAlive(leaseId);
  }
  revokeLease(leaseId: LeaseId): Promise<void> {
    return this.inner.revokeLease(leaseId);
  }
  watchPrefix(prefix: string, onEvent: (event: DcsWatchEvent) => void): Promise<DcsWatch> {
    return this.inner.watchPrefix(prefix, onEvent);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

interface Outcome {
  sim: SimCluster;
  /** node1's postgres stopped being a writable primary at some point of the slow phase. */
  fenced: boolean;
  /** The leader key at the end of the slow phase. */
  leaderAfter: string | null;
  renewals: number;
  /** Samples (every 100 ms) at which two nodes accepted writes. */
  twoWritable: number;
}

/**
 * node1 leads; then its etcd reads take `readDelayMs` for `slowForMs` of fake time while node1 runs
 * one tick after another (the others keep ticking every round); with `renewer`, node1's lease
 * renewer is called every 100 ms of fake time, as `run()` would on its own timer.
 */
async function slowLeader(options: { readDelayMs: number; slowForMs: number; renewer: boolean }): Promise<Outcome> {
  const slow = new Map<string, SlowReadDcs>();
  const sim = new SimCluster({
    world: { startupMs: 300, initializeMs: 1_000, cloneMs: 800 },
    watchdog: true,
    wrapDcs: (name, client, clock) => {
      const wrapped = new SlowReadDcs(client, clock);
      slow.set(name, wrapped);
      return wrapped;
    },
  });
  sim.startAll();
  await sim.until('node1 leads and the others stream from it', () =>
    sim.leader() === 'node1' && sim.names.filter((n) => n !== 'node1').every((n) => sim.isStreamingFrom(n, 'node1')),
  );
  const node1 = sim.agents.find((a) => a.name === 'node1') as SimAgent;
  const others = sim.agents.filter((a) => a.name !== 'node1');
  const slowDcs = slow.get('node1');
  assert.ok(slowDcs !== undefined);
  slowDcs.readDelayMs = options.readDelayMs;
  let fenced = false;
  let renewals = 0;
  let twoWritable = 0;
  let stopping = false;
  const config = node1.loop.currentConfig();
  // node1 on its own schedule: tick, loop wait, tick...
  const driveNode1 = (async () => {
    while (!stopping) {
      await node1.loop.tick();
      await sim.clock.sleep(config.loopWaitMs);
    }
  })();
  const endMs = sim.clock.nowMs() + options.slowForMs;
  for (let i = 0; i < 10_000 && sim.clock.nowMs() < endMs; i += 1) {
    if (options.renewer && (await node1.loop.renewIfTickIsSlow())) renewals += 1;
    if (i % 10 === 0) for (const agent of others) await agent.loop.tick();
    if (!sim.world.isWritable('node1')) fenced = true;
    const writable = sim.names.filter((n) => sim.world.isWritable(n));
    if (writable.length > 1) twoWritable += 1;
    sim.clock.advance(100);
    await flush();
  }
  const leaderAfter = sim.leader();
  slowDcs.readDelayMs = 0;
  stopping = true;
  for (let i = 0; i < 1_000; i += 1) {
    let settled = false;
    void driveNode1.then(() => (settled = true));
    await flush();
    if (settled) break;
    sim.clock.advance(100);
    await flush();
  }
  return { sim, fenced, leaderAfter, renewals, twoWritable };
}

void describe('lease renewer', () => {
  void it('keeps a slow leader (4 s etcd reads) leading: renewals continue during the tick', async () => {
    const outcome = await slowLeader({ readDelayMs: 4_000, slowForMs: 30_000, renewer: true });
    assert.equal(outcome.fenced, false, 'node1 was fenced although it kept renewing');
    assert.equal(outcome.leaderAfter, 'node1');
    assert.equal(outcome.twoWritable, 0);
    assert.ok(outcome.renewals >= 10, `only ${outcome.renewals} renewals by the renewer in 30 s of slow ticks`);
  });

  void it('control: without the renewer the same slowness fences the leader', async () => {
    const outcome = await slowLeader({ readDelayMs: 4_000, slowForMs: 30_000, renewer: false });
    assert.equal(outcome.fenced, true, 'a 4 s read plus the loop wait exceeds the fence deadline (TTL - margin)');
  });

  void it('a stuck tick (30 s reads) stops the renewals: the leader fences and another node leads', async () => {
    const outcome = await slowLeader({ readDelayMs: 30_000, slowForMs: 25_000, renewer: true });
    assert.equal(outcome.fenced, true, 'a stuck leader must lose the lead');
    assert.notEqual(outcome.leaderAfter, 'node1');
    assert.equal(outcome.twoWritable, 0, 'the stuck leader was fenced before another node promoted');
    assert.ok(outcome.leaderAfter !== null, 'another node took over');
  });

  void it('renews at most every loop wait (a third of the TTL at most) and only for young ticks', () => {
    const config = { ttlSeconds: 6, loopWaitMs: 1_000 } as Parameters<typeof renewEveryMs>[0];
    assert.equal(renewEveryMs(config), 1_000);
    assert.equal(renewEveryMs({ ...config, ttlSeconds: 2, loopWaitMs: 900 }), 666);
    assert.equal(maxTickForRenewalMs(config), 3_000);
    // The last renewal of a stuck tick is < maxTick after its start: it fences before TTL after that.
    const lastRenewalMs = maxTickForRenewalMs(config);
    assert.ok(leaseDeadlineMs(lastRenewalMs, 6) < lastRenewalMs + 6_000);
  });
});
