/**
 * What an agent knows about itself after a tick, as read outside src/ha/ (the metrics registry,
 * src/metrics/agent-metrics.ts): the local postgres as observed, etcd's view and the member
 * record it published. The HA loop's own snapshot (`LoopSnapshot`, src/ha/loop.ts) extends this
 * with the full observation and decision, so a reader here sees the same object, only less of it.
 */
import type { ArchiveState, MemberRecord } from './member-record.js';
import type { DcsView } from './dcs-view.js';

export type LocalPostgres =
  | { kind: 'no-data' }
  | {
      kind: 'stopped';
      /** From pg_controldata: how the data directory was last shut down. */
      clusterState: string;
      cleanShutdownPrimary: boolean;
      /** The data directory was a primary when it stopped (cleanly or not), not a standby. */
      wasPrimary: boolean;
      timeline: number | null;
      lsn: string | null;
      systemIdentifier: string | null;
      /** True when the postmaster exited without being asked to (crash, OOM kill). */
      crashed: boolean;
    }
  | { kind: 'starting'; pid: number; sinceMs: number }
  | {
      kind: 'running';
      pid: number;
      inRecovery: boolean;
      timeline: number;
      /** Primary: current write LSN; replica: last replayed LSN. */
      lsn: string | null;
      receiveLsn: string | null;
      walReceiverStatus: string | null;
      systemIdentifier: string;
      /** pg_stat_archiver, when known (published in the member record). */
      archiver?: ArchiveState;
    };

/** The part of the HA loop's latest snapshot that readers outside src/ha/ use. */
export interface AgentSnapshot {
  observation: { pg: LocalPostgres; dcs: DcsView } | null;
  member: MemberRecord | null;
  lastError: string | null;
  ticks: number;
}
