/**
 * One tick's view of the world, gathered by the loop before `decide` runs: what etcd says (or
 * that it could not be reached), what the local postgres is doing, and the agent's own memory
 * (whether it holds the leader key, when it last renewed its lease, what runs in the long-task
 * slot). `decide` reads nothing else, so every decision is reproducible from an observation.
 */
import type { DynamicConfig, Tags } from '../config/schema.js';
import type { DcsView } from '../state/dcs-view.js';
import type { LocalPostgres } from '../state/agent-snapshot.js';
import type { FailsafeAck, FailsafeCheck } from './failsafe.js';
import type { PeerPosition, SyncReplica } from './sync-set.js';

/** Sync mode, leader side: what the local primary's replication looks like this tick (src/ha/sync-set.ts). */
export interface LeaderSyncState {
  /** synchronous_standby_names as postgres shows it. */
  standbyNames: string;
  replication: readonly SyncReplica[];
  /** Leader WAL position observed once the current synchronous_standby_names was in force; null: not yet. */
  appliedLsn: string | null;
  /** This primary has been observed as the leader's for less than SYNC_DEGRADE_GRACE_MS (src/ha/sync-set.ts). */
  degradeGraceActive?: boolean;
}

export interface LeaseState {
  /** This agent holds the leader key on its current, live lease. */
  holdsLeader: boolean;
  /** When the last successful lease keep-alive was *sent* (ms, agent clock), null before the first. */
  lastRenewedMs: number | null;
  /** The TTL the lease was granted with: fencing deadlines use it, not the configured TTL. */
  ttlSeconds: number;
  /** When the current lease was granted (agent start, or a re-grant after it expired in an outage). */
  grantedMs?: number | null;
}

export interface LongTaskState {
  kind: 'initialize-cluster' | 'clone-from' | 'rejoin' | 'reclone' | 'step-down' | 'restart';
  startedMs: number;
}

export interface Observation {
  nowMs: number;
  node: string;
  agentStartedMs: number;
  config: DynamicConfig;
  tags: Tags;
  dcs: DcsView;
  lease: LeaseState;
  pg: LocalPostgres;
  /** The leader name that the running postgres was configured to stream from (null: none). */
  configuredUpstream: string | null;
  longTask: LongTaskState | null;
  /** When postgres last answered as running on this node (ms, agent clock); null: not since the agent started. */
  lastHealthyMs: number | null;
  /** Since when this running standby has not been streaming; null while it streams. */
  notStreamingSinceMs: number | null;
  /** An operator asked for a restart of postgres in its current role. */
  restartRequested: boolean;
  /** Unexpected postmaster exits since postgres last ran healthy (a start that keeps failing). */
  consecutiveCrashes?: number;
  /** Last time this agent read a leader key in etcd (the `not-streaming` eligibility measure); null: never. */
  lastLeaderSeenMs?: number | null;
  /** Failed clone/rejoin/initialize attempts in a row and when the last one failed (null: none). */
  dataTaskFailures?: { count: number; lastFailedMs: number } | null;
  /**
   * Failsafe mode, leader side: the latest check of every member's REST API, made by the loop
   * while etcd was unreachable (src/ha/failsafe.ts); null: none since the node last held the key.
   */
  failsafe?: FailsafeCheck | null;
  /** Failsafe mode, member side: the promise this node gave a failsafe leader not to race. */
  failsafeAck?: FailsafeAck | null;
  /** Sync mode, on the leader: its synchronous_standby_names and walsenders; absent/null: not gathered. */
  leaderSync?: LeaderSyncState | null;
  /**
   * Sync mode, no leader: positions of members of the published set, asked over their REST APIs
   * in this tick, after the leader key was seen free (fresh); absent: not gathered.
   */
  peerPositions?: readonly PeerPosition[];
}
