/**
 * What an agent remembers between ticks and nothing else does: its lease, whether it holds the
 * leader key on that lease, when it last renewed, which upstream its postgres was configured for,
 * and whether its postmaster last exited without being asked to (a crash).
 * For failsafe mode it also keeps the latest all-members check (leader side) and the promise
 * not to race that it gave a failsafe leader (member side); see src/ha/failsafe.ts.
 */
import type { FailsafeAck, FailsafeCheck } from './failsafe.js';

export interface AgentMemory {
  leaseId: string | null;
  /** The TTL the current lease was granted with (keep-alives never change it). */
  leaseTtlSeconds: number | null;
  /** When the current lease was granted. */
  leaseGrantedMs: number | null;
  /** Set only by this process on a won createIfAbsent of the leader key; cleared on any doubt. */
  holdsLeader: boolean;
  lastRenewedMs: number | null;
  configuredUpstream: string | null;
  crashed: boolean;
  /** Unexpected postmaster exits since postgres last ran healthy. */
  consecutiveCrashes: number;
  /** Last time postgres answered as running (ms, agent clock). */
  lastHealthyMs: number | null;
  /** Since when the running standby has not been streaming (null: streaming, or not a standby). */
  notStreamingSinceMs: number | null;
  /** An operator asked (REST POST /restart) for a restart of postgres in its current role. */
  restartRequested: boolean;
  /** Last time etcd showed a leader key (any node), for the `not-streaming` eligibility measure. */
  lastLeaderSeenMs: number | null;
  /** Highest timeline this running standby reported, per postmaster (a standby whose stream dropped reports its last restartpoint's). */
  standbyTimeline: { pid: number; timeline: number } | null;
  /** Failsafe (leader side): the latest check of every member's REST API while etcd was unreachable. */
  failsafe: FailsafeCheck | null;
  /** Failsafe (member side): this node promised a failsafe leader not to race for the key until `untilMs`. */
  failsafeAck: FailsafeAck | null;
  /** Clone/rejoin/initialize attempts that failed in a row, and when the last one failed (retry backoff). */
  dataTaskFailures: { count: number; lastFailedMs: number } | null;
}

export function freshAgentMemory(): AgentMemory {
  return { leaseId: null, leaseTtlSeconds: null, leaseGrantedMs: null, holdsLeader: false, lastRenewedMs: null, configuredUpstream: null, crashed: false, consecutiveCrashes: 0, lastHealthyMs: null, notStreamingSinceMs: null, restartRequested: false, lastLeaderSeenMs: null, standbyTimeline: null, failsafe: null, failsafeAck: null, dataTaskFailures: null };
}
