/**
 * Fencing: while this node leads, postgres must stop being writable before its lease can expire
 * (HA rule 1, docs/architecture.md; the deadline is `leaseDeadlineMs` in src/ha/timing.ts). Two
 * fences are armed with the same deadline, re-armed by every lease renewal:
 * - the in-process timer (`armLocalFence`): a tick can be stuck for several etcd operation
 *   timeouts (a partition makes requests hang, not fail), so waiting for the next `decide` could
 *   let the lease expire while postgres still takes writes; the timer stops postgres at the
 *   deadline whatever the loop is doing;
 * - the watchdog process (`FenceGuard`, src/agent/watchdog.ts): a frozen process runs no timers,
 *   the watchdog kills the postmaster at the deadline instead.
 * Failsafe mode: a check in which every member promised not to race extends the deadline (decide
 * keeps the primary running until then), so the fences wait for it too. Both fences are disarmed
 * as soon as this node does not lead.
 */
import type { Clock } from '../shared/clock.js';
import { errorMessage } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import type { AgentMemory } from './agent-memory.js';
import { failsafeDeadlineMs } from './decide.js';
import type { Observation } from './observation.js';
import type { PostgresNode } from './postgres-node.js';
import { leaseDeadlineMs } from './timing.js';

/** The out-of-process fence (src/agent/watchdog.ts): kills the postmaster if we stop re-arming it. */
export interface FenceGuard {
  arm(postmasterPid: number, deadlineEpochMs: number): void;
  disarm(): void;
}

export interface FencingDeps {
  clock: Clock;
  memory: AgentMemory;
  pg: PostgresNode;
  log: Logger;
  /** Armed while this node leads, with the lease deadline; absent in simulations. */
  fenceGuard?: FenceGuard;
}

export class Fencing {
  private localFence: AbortController | null = null;

  constructor(private readonly deps: FencingDeps) {}

  /**
   * While this node holds the leader key, the watchdog is armed with the same deadline decide()
   * fences at (last renewal + TTL - margin): if this process freezes and stops re-arming it, the
   * postmaster is killed before another node can take the key. Disarmed as soon as we do not lead.
   */
  update(obs: Observation): void {
    const leading = this.deps.memory.holdsLeader && obs.lease.lastRenewedMs !== null;
    this.arm(leading ? obs.lease.lastRenewedMs : null, obs.lease.ttlSeconds, obs.config.failsafe);
  }

  /** Arms the in-process fence and the watchdog for a leader renewed at `lastRenewedMs` (null: not leading). */
  arm(lastRenewedMs: number | null, ttlSeconds: number, failsafe: boolean): void {
    const leaseDeadline = lastRenewedMs !== null ? leaseDeadlineMs(lastRenewedMs, ttlSeconds) : null;
    const failsafeDeadline = failsafe && this.deps.memory.failsafe !== null ? failsafeDeadlineMs(this.deps.memory.failsafe) : null;
    const deadlineMs = leaseDeadline === null ? failsafeDeadline : failsafeDeadline === null ? leaseDeadline : Math.max(leaseDeadline, failsafeDeadline);
    this.armLocalFence(deadlineMs);
    const guard = this.deps.fenceGuard;
    if (guard === undefined) return;
    const pid = this.deps.pg.postmasterPid();
    if (deadlineMs !== null && pid !== null) guard.arm(pid, deadlineMs);
    else guard.disarm();
  }

  /** Stops the in-process timer (the loop's `stop()`). */
  disarmLocal(): void {
    this.armLocalFence(null);
  }

  /** The in-process half of the fence: a timer at the deadline, re-armed by every renewal. */
  private armLocalFence(deadlineMs: number | null): void {
    this.localFence?.abort();
    this.localFence = null;
    if (deadlineMs === null) return;
    const controller = new AbortController();
    this.localFence = controller;
    const { clock, memory, pg, log } = this.deps;
    void clock.sleep(Math.max(0, deadlineMs - clock.nowMs()), controller.signal).then(async () => {
      if (controller.signal.aborted || (!memory.holdsLeader && memory.failsafe === null)) return;
      log.warn({ deadlineMs }, 'lease deadline passed without a renewal: fencing now');
      memory.holdsLeader = false;
      memory.failsafe = null;
      await pg.stop('immediate').catch((error: unknown) => log.error({ err: errorMessage(error) }, 'fencing stop failed'));
    });
  }
}
