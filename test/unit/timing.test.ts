/**
 * The TTL-derived durations (src/ha/timing.ts): the numbers at the default timing (ttl 6 s, loop
 * wait 1 s) and at Patroni-like timing, pinned so that a change is deliberate, and the invariants
 * T1-T10 of the module header checked over a grid of every TTL the schema allows and loop waits
 * inside its bounds (loopWaitMs * 2 < ttlSeconds * 1000).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  divergedAfterMs,
  failsafeHoldMs,
  failsafePermissionEndsMs,
  failsafeProbeTimeoutMs,
  fenceMarginMs,
  leaderPostgresDownLimitMs,
  leaseDeadlineMs,
  maxTickForRenewalMs,
  notStreamingLimitMs,
  renewEveryMs,
  settledAfterMs,
  slowTickMs,
  startupGraceMs,
  ttlMs,
  unconfirmedLeaderMs,
} from '../../src/ha/timing.js';
import { dynamicConfigSchema } from '../../src/config/schema.js';

/** Every (ttlSeconds, loopWaitMs) pair of the grid that the dynamic config schema accepts. */
function timings(): Array<{ ttlSeconds: number; loopWaitMs: number }> {
  const out: Array<{ ttlSeconds: number; loopWaitMs: number }> = [];
  for (const ttlSeconds of [2, 3, 4, 5, 6, 7, 8, 10, 15, 30, 60, 120, 600]) {
    for (const loopWaitMs of [100, 250, 999, 1000, 1999, 2000, 2999, 5000, 10_000, 29_999, 60_000]) {
      if (loopWaitMs * 2 < ttlSeconds * 1000) out.push({ ttlSeconds, loopWaitMs });
    }
  }
  return out;
}

void describe('ha timing', () => {
  void it('at the default timing (ttl 6 s, loop wait 1 s)', () => {
    const config = { ttlSeconds: 6, loopWaitMs: 1000 };
    assert.equal(ttlMs(6), 6000);
    assert.equal(fenceMarginMs(6), 1500);
    assert.equal(leaseDeadlineMs(10_000, 6), 14_500);
    assert.equal(renewEveryMs(config), 1000);
    assert.equal(maxTickForRenewalMs(config), 3000);
    assert.equal(slowTickMs(config), 1500);
    assert.equal(failsafeHoldMs(6), 6000);
    assert.equal(failsafePermissionEndsMs(10_000, 6000), 14_500);
    assert.equal(failsafeProbeTimeoutMs(6), 750);
    assert.equal(notStreamingLimitMs(6), 12_000);
    assert.equal(startupGraceMs(config), 6000);
    assert.equal(settledAfterMs(config), 2000);
    assert.equal(unconfirmedLeaderMs(6), 6000);
    assert.equal(leaderPostgresDownLimitMs(config), 6000);
    assert.equal(divergedAfterMs(config), 10_000);
  });

  void it('at Patroni-like timing (ttl 30 s, loop wait 10 s) the margin is capped at 2 s', () => {
    const config = { ttlSeconds: 30, loopWaitMs: 10_000 };
    assert.equal(fenceMarginMs(30), 2000);
    assert.equal(leaseDeadlineMs(0, 30), 28_000);
    assert.equal(renewEveryMs(config), 10_000);
    assert.equal(failsafeProbeTimeoutMs(30), 1000);
    assert.equal(divergedAfterMs(config), 50_000);
  });

  void it('the grid only holds timings the schema accepts (so the invariants below are about real configs)', () => {
    const grid = timings();
    assert.ok(grid.length > 50, `grid has ${grid.length} timings`);
    for (const t of grid) assert.ok(dynamicConfigSchema.safeParse(t).success, JSON.stringify(t));
    assert.ok(!dynamicConfigSchema.safeParse({ ttlSeconds: 2, loopWaitMs: 1000 }).success, 'loopWaitMs must stay below half the TTL');
  });

  void it('T1/T2: the leader fences strictly before its lease can expire, and after its last renewal', () => {
    for (const { ttlSeconds } of timings()) {
      const renewedMs = 1_000_000;
      const deadline = leaseDeadlineMs(renewedMs, ttlSeconds);
      assert.ok(deadline < renewedMs + ttlMs(ttlSeconds), `ttl ${ttlSeconds}: deadline before expiry`);
      assert.ok(deadline > renewedMs, `ttl ${ttlSeconds}: deadline after the renewal`);
      assert.ok(fenceMarginMs(ttlSeconds) > 0 && fenceMarginMs(ttlSeconds) <= 2000);
      assert.ok(Number.isInteger(deadline));
    }
  });

  void it('T3/T4: at least three renewals per TTL, never slower than the loop; a stuck tick is longer than a renewal interval', () => {
    for (const config of timings()) {
      const every = renewEveryMs(config);
      assert.ok(every > 0 && every * 3 <= ttlMs(config.ttlSeconds), JSON.stringify(config));
      assert.ok(every <= config.loopWaitMs, JSON.stringify(config));
      assert.ok(maxTickForRenewalMs(config) > every, JSON.stringify(config));
      // A stuck tick still ends the lead before the lease expires from the last renewal it allowed.
      assert.ok(maxTickForRenewalMs(config) < ttlMs(config.ttlSeconds));
      assert.ok(slowTickMs(config) < maxTickForRenewalMs(config));
    }
  });

  void it('T5: a failsafe permission ends before the members\' promises do, and a probe is shorter than the margin', () => {
    for (const { ttlSeconds } of timings()) {
      const holdMs = failsafeHoldMs(ttlSeconds);
      const checkedAtMs = 5_000;
      assert.ok(failsafePermissionEndsMs(checkedAtMs, holdMs) < checkedAtMs + holdMs);
      assert.equal(failsafePermissionEndsMs(checkedAtMs, holdMs), leaseDeadlineMs(checkedAtMs, ttlSeconds));
      const probe = failsafeProbeTimeoutMs(ttlSeconds);
      assert.ok(probe >= 50 && probe < fenceMarginMs(ttlSeconds), `ttl ${ttlSeconds}: probe ${probe}`);
    }
  });

  void it('T6-T10: limits measured in TTLs and loop waits', () => {
    for (const config of timings()) {
      const ttl = ttlMs(config.ttlSeconds);
      assert.ok(notStreamingLimitMs(config.ttlSeconds) > ttl, 'a replica that lost its stream with the leader is still eligible at lease expiry');
      assert.equal(startupGraceMs(config), ttl);
      assert.ok(settledAfterMs(config) < ttl, 'two loop waits fit in a TTL (schema bound)');
      assert.equal(unconfirmedLeaderMs(config.ttlSeconds), ttl);
      assert.equal(leaderPostgresDownLimitMs(config), ttl);
      assert.ok(divergedAfterMs(config) >= 10_000 && divergedAfterMs(config) >= 5 * config.loopWaitMs);
    }
  });
});
