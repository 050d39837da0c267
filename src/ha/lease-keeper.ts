/**
 * The node's etcd lease: its member record and, while it leads, the leader key live on it.
 * Invariants:
 * - Every tick renews it first, before anything else is read, and records when that keep-alive
 *   was *sent* (`memory.lastRenewedMs`): every fencing deadline is measured from that moment on
 *   this node's own clock (src/ha/timing.ts T1), never from when etcd answered.
 * - A lost lease (keep-alive refused) is replaced by a new grant at once, and the lead is dropped
 *   with it (`memory.holdsLeader = false`).
 * - A keep-alive never changes a lease's TTL: when the configured TTL differs from the lease's, a
 *   node that does not lead takes a new lease (its member key moves with the next publish); a
 *   leader keeps its lease, and every deadline uses the lease's real TTL (`memory.leaseTtlSeconds`).
 * - The renewer (`runRenewer`) keeps the lease alive while a tick runs long, only while that tick
 *   is younger than `maxTickForRenewalMs` (a stuck loop loses the lead through the deadline); it
 *   never grants a lease or takes a key, and re-arms the fences with the deadline of each renewal.
 * Every keep-alive is counted for the metrics (a throw is a failed renewal too).
 */
import type { Clock } from '../shared/clock.js';
import type { DynamicConfig } from '../config/schema.js';
import type { Dcs } from '../dcs/dcs.js';
import type { Logger } from '../shared/logger.js';
import type { HaMetrics } from '../state/ha-metrics.js';
import type { AgentMemory } from './agent-memory.js';
import { maxTickForRenewalMs, renewEveryMs } from './timing.js';

export interface LeaseKeeperDeps {
  dcs: Dcs;
  clock: Clock;
  log: Logger;
  memory: AgentMemory;
  metrics: HaMetrics;
  /** The dynamic config in force (read at each use: /config may change between ticks). */
  config(): DynamicConfig;
  /** When the running tick started (null between ticks): the renewer's liveness test. */
  tickStartedMs(): number | null;
  /** A renewal by the renewer while this node leads: re-arm the fences (src/ha/fencing.ts). */
  onLeaderRenewed(lastRenewedMs: number, ttlSeconds: number): void;
}

export class LeaseKeeper {
  constructor(private readonly deps: LeaseKeeperDeps) {}

  /** The tick's first step: renew the lease, or grant a new one when there is none or it was lost. */
  async renewOrGrant(): Promise<void> {
    const { dcs, memory, clock } = this.deps;
    const sentMs = clock.nowMs();
    if (memory.leaseId !== null && (await this.keepAlive(memory.leaseId))) {
      memory.lastRenewedMs = sentMs;
    } else {
      if (memory.leaseId !== null) this.deps.log.warn('lease lost; granting a new one');
      memory.holdsLeader = false;
      const ttlSeconds = this.deps.config().ttlSeconds;
      memory.leaseId = await dcs.grantLease(ttlSeconds);
      memory.leaseTtlSeconds = ttlSeconds;
      memory.leaseGrantedMs = sentMs;
      memory.lastRenewedMs = sentMs;
    }
  }

  /** After /config was read: a node that does not lead moves to a lease with the configured TTL. */
  async regrantIfTtlChanged(): Promise<void> {
    const { dcs, memory, clock } = this.deps;
    const ttlSeconds = this.deps.config().ttlSeconds;
    if (memory.leaseTtlSeconds !== ttlSeconds && !memory.holdsLeader && memory.leaseId !== null) {
      const old = memory.leaseId;
      memory.leaseId = await dcs.grantLease(ttlSeconds);
      memory.leaseTtlSeconds = ttlSeconds;
      memory.lastRenewedMs = clock.nowMs();
      await dcs.revokeLease(old).catch(() => undefined);
    }
  }

  /** Renews while a tick runs long, until `stopped` is aborted. */
  async runRenewer(stopped: AbortSignal): Promise<void> {
    while (!stopped.aborted) {
      await this.deps.clock.sleep(renewEveryMs(this.deps.config()), stopped).catch(() => undefined);
      if (stopped.aborted) break;
      await this.renewIfTickIsSlow().catch(() => false);
    }
  }

  /**
   * One renewal by the renewer, when due: a tick is running, has run for at least one renewal
   * interval but less than `maxTickForRenewalMs`, and the last renewal is one interval old. True
   * when it renewed.
   */
  async renewIfTickIsSlow(): Promise<boolean> {
    const { memory, clock } = this.deps;
    const config = this.deps.config();
    const nowMs = clock.nowMs();
    const everyMs = renewEveryMs(config);
    const leaseId = memory.leaseId;
    const tickStartedMs = this.deps.tickStartedMs();
    if (tickStartedMs === null || leaseId === null) return false;
    const tickAgeMs = nowMs - tickStartedMs;
    if (tickAgeMs < everyMs || tickAgeMs >= maxTickForRenewalMs(config)) return false;
    if (memory.lastRenewedMs !== null && nowMs - memory.lastRenewedMs < everyMs) return false;
    const sentMs = nowMs;
    const renewed = await this.keepAlive(leaseId).catch(() => false);
    if (!renewed || memory.leaseId !== leaseId) return false;
    memory.lastRenewedMs = Math.max(memory.lastRenewedMs ?? 0, sentMs);
    if (memory.holdsLeader) this.deps.onLeaderRenewed(memory.lastRenewedMs, memory.leaseTtlSeconds ?? this.deps.config().ttlSeconds);
    return true;
  }

  /** One keep-alive of our lease, counted for the metrics (a throw is a failed renewal too). */
  private async keepAlive(leaseId: string): Promise<boolean> {
    try {
      const renewed = await this.deps.dcs.keepAlive(leaseId);
      if (renewed) this.deps.metrics.leaseRenewed();
      else this.deps.metrics.leaseRenewalFailed();
      return renewed;
    } catch (error) {
      this.deps.metrics.leaseRenewalFailed();
      throw error;
    }
  }
}
