/**
 * Every duration the HA loop derives from the dynamic config's `ttlSeconds` (the leader lease's
 * TTL) and `loopWaitMs` (the loop's interval), in one place, as pure named functions. Nothing
 * else in src/ha/ multiplies or divides those two settings: callers name what they need.
 *
 * The schema guarantees ttlSeconds in [2, 600], loopWaitMs in [100, 60000] and
 * loopWaitMs * 2 < ttlSeconds * 1000 (src/config/schema.ts). Under those bounds:
 *
 * T1  The leader fences strictly before its lease can expire: `leaseDeadlineMs` is
 *     `fenceMarginMs` (min(2 s, TTL/4), so 0 < margin < TTL) before `lastRenewedMs + TTL`, where
 *     `lastRenewedMs` is when the last successful keep-alive was *sent* (etcd counts the TTL from
 *     when it received it, later still). The margin absorbs clock-rate and I/O delays.
 * T2  The same deadline arms the in-process fence timer and the separate watchdog process
 *     (src/agent/watchdog.ts): a frozen agent's postgres is killed at that deadline, never later.
 *     The fences are armed with the TTL the lease was *granted* with, not the configured one.
 * T3  The renewer keeps the lease alive at least three times per TTL (`renewEveryMs` <= TTL/3,
 *     and <= loopWaitMs), so one lost keep-alive never costs the lead.
 * T4  A tick older than `maxTickForRenewalMs` (TTL/2) is taken for stuck, not slow: the renewer
 *     stops, and the lead ends through T1 (at most TTL/2 + TTL - margin after the tick began).
 * T5  Failsafe mode: a permission lasts `failsafeHoldMs` (one TTL) from the start of the check,
 *     minus the same margin as T1; a probe times out after half that margin, so a member's new
 *     promise always starts before its previous one ends, and a check slower than the margin is
 *     not trusted.
 * T6  A replica that lost its stream when the leader died is still eligible when the dead
 *     leader's lease runs out: `notStreamingLimitMs` is 2 TTLs (1 TTL for the lease, plus a loop
 *     or a crash-restart attempt).
 * T7  Start-up grace: a fresh agent (or one whose lease was re-granted after an outage) waits one
 *     TTL before racing for a free key, so every live member has re-published its position; one
 *     that has seen a leader for two loop waits since is settled and races at once.
 * T8  A leader key naming a node without a member record is only unconfirmed (nobody replaces
 *     it) for one TTL: a genuine new leader publishes its record within its first tick.
 * T9  A leader whose postgres does not come up (or stays down after a crash) for one TTL releases
 *     the lead rather than keep a cluster without a writable primary.
 * T10 A standby that cannot stream from a leader on a newer timeline is rewound only after
 *     several of its 1 s reconnect attempts (`divergedAfterMs`, at least 10 s), so a standby that
 *     merely waits for its slot is left alone.
 */
import type { DynamicConfig } from '../config/schema.js';

type Ttl = Pick<DynamicConfig, 'ttlSeconds'>;
type LoopWait = Pick<DynamicConfig, 'loopWaitMs'>;

/** One lease TTL in milliseconds. */
export function ttlMs(ttlSeconds: number): number {
  return ttlSeconds * 1000;
}

/** T1: a leader fences this long before its lease would expire. */
export function fenceMarginMs(ttlSeconds: number): number {
  return Math.min(2000, Math.floor(ttlMs(ttlSeconds) / 4));
}

/** T1, T2: the local time at which a leader that has not renewed must already have fenced itself. */
export function leaseDeadlineMs(lastRenewedMs: number, ttlSeconds: number): number {
  return lastRenewedMs + ttlMs(ttlSeconds) - fenceMarginMs(ttlSeconds);
}

/** T3: the lease renewer's interval: a loop wait, at most a third of the TTL. */
export function renewEveryMs(config: Ttl & LoopWait): number {
  return Math.min(config.loopWaitMs, Math.floor(ttlMs(config.ttlSeconds) / 3));
}

/** T4: a tick running longer than this is stuck: the renewer stops renewing for it. */
export function maxTickForRenewalMs(config: Ttl): number {
  return Math.floor(ttlMs(config.ttlSeconds) / 2);
}

/** A tick this long is logged with where its time went (a quarter of the TTL). */
export function slowTickMs(config: Ttl): number {
  return Math.floor(ttlMs(config.ttlSeconds) / 4);
}

/** T5: how long a failsafe permission asked of the members lasts (one lease TTL). */
export function failsafeHoldMs(ttlSeconds: number): number {
  return ttlMs(ttlSeconds);
}

/** T5: until when a failsafe check that started at `checkedAtMs` lets the primary keep running. */
export function failsafePermissionEndsMs(checkedAtMs: number, holdMs: number): number {
  return checkedAtMs + holdMs - fenceMarginMs(holdMs / 1000);
}

/** T5: a failsafe probe's timeout: half the fence margin (at least 50 ms). */
export function failsafeProbeTimeoutMs(ttlSeconds: number): number {
  return Math.max(50, Math.floor(fenceMarginMs(ttlSeconds) / 2));
}

/** T6: longest tolerated not-streaming time before the leader was lost: 2 TTLs. */
export function notStreamingLimitMs(ttlSeconds: number): number {
  return 2 * ttlMs(ttlSeconds);
}

/** T7: the start-up grace before a fresh agent races for a free leader key (one TTL). */
export function startupGraceMs(config: Ttl): number {
  return ttlMs(config.ttlSeconds);
}

/** T7: seeing a leader this long after the grace began makes an agent settled (two loop waits). */
export function settledAfterMs(config: LoopWait): number {
  return 2 * config.loopWaitMs;
}

/** T8: how long a leader key naming a node without a member record stays unconfirmed (one TTL). */
export function unconfirmedLeaderMs(ttlSeconds: number): number {
  return ttlMs(ttlSeconds);
}

/** T9: how long the leader's postgres may take to start, or stay down after a crash (one TTL). */
export function leaderPostgresDownLimitMs(config: Ttl): number {
  return ttlMs(config.ttlSeconds);
}

/** T10: how long a standby may fail to stream from a newer-timeline leader before it is rewound. */
export function divergedAfterMs(config: LoopWait): number {
  return Math.max(10_000, 5 * config.loopWaitMs);
}
