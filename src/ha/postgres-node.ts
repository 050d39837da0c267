/**
 * The port through which the HA loop controls the local postgres. `LocalPostgresNode`
 * (src/postgres/local-postgres-node.ts) drives real binaries; scenario tests use a fake that keeps
 * the same observable behaviour. Every method is bounded in time and throws a PgpilotError on
 * failure; none of them touches etcd (roles are decided by the loop, never here).
 */
import type { LocalPostgres } from '../state/agent-snapshot.js';
import type { ReplicationEntry } from '../state/member-record.js';

export interface SynchronousState {
  standbyNames: string;
  currentLsn: string;
  standbys: Array<{ name: string; state: string; syncState: string | null; flushLsn: string | null }>;
}

export interface UpstreamAddress {
  name: string;
  host: string;
  port: number;
}

export interface PostgresNode {
  /** Current local state; never throws for an ordinary "down" postgres. */
  observe(): Promise<LocalPostgres>;
  /** initdb (checksums, SCRAM), configure as primary, start, wait until ready, create roles. */
  initialize(): Promise<{ systemIdentifier: string }>;
  /** pg_basebackup from `upstream` into the (absent) data directory, configured as its standby. */
  cloneFrom(upstream: UpstreamAddress): Promise<void>;
  /** Writes the configuration for the role and spawns the postmaster (does not wait for ready). */
  start(mode: 'primary' | 'standby', upstream: UpstreamAddress | null): Promise<void>;
  stop(mode: 'fast' | 'immediate'): Promise<void>;
  /**
   * Waits (at most `timeoutMs`) until no client session other than pgpilot's own is connected;
   * returns how many were still there at the end. Used before a planned hand-over, once the
   * proxies hold new connections, so that in-flight work finishes instead of being cut off.
   */
  drainClients(timeoutMs: number): Promise<number>;
  /** CHECKPOINT on the running postgres (shortens the shutdown before a planned hand-over). */
  checkpoint(): Promise<void>;
  /**
   * Brings a stopped former primary back in line with `upstream` (pg_rewind) and starts it as
   * its standby. When rewind is impossible the data directory is moved aside (never deleted) and
   * the result is `moved-aside`: the node then re-clones like a new member.
   */
  rejoin(upstream: UpstreamAddress): Promise<{ kind: 'rewound' | 'not-needed' } | { kind: 'moved-aside'; path: string }>;
  promote(): Promise<void>;
  /** Re-points a running standby at `upstream` (null: no upstream) with a reload. */
  follow(upstream: UpstreamAddress | null): Promise<void>;
  /** Leader only: ensures one physical slot per named member (an invalidated, inactive one is made anew). */
  syncSlots(memberNames: readonly string[]): Promise<void>;
  /** Leader only: the start LSN of the oldest WAL segment in pg_wal (null when unknown). */
  oldestWalLsn(): Promise<string | null>;
  /** Moves the (stopped) data directory aside, never deleting it; returns where it went. */
  moveDataAside(): Promise<string>;
  replicationStatus(): Promise<ReplicationEntry[]>;
  /**
   * Sync mode, on the primary: `SHOW synchronous_standby_names`, the current WAL position and one
   * row per walsender (application name = node name, state, sync_state, flush LSN), read in one
   * round trip so the positions are consistent with each other.
   */
  synchronousState(): Promise<SynchronousState>;
  /**
   * Sets `synchronous_standby_names` (ALTER SYSTEM, survives restarts) and reloads. '' makes
   * commits asynchronous. Callers order this against the published set (src/ha/sync-set.ts).
   */
  setSynchronousStandbyNames(value: string): Promise<void>;
  postmasterPid(): number | null;
  /** Called when the postmaster exits without having been asked to. */
  onUnexpectedExit(listener: () => void): void;
  close(): Promise<void>;
}
