/**
 * The statistics the agent exports as metrics, read from the local postgres at scrape time:
 * WAL positions, connections by state, per-database counters and sizes, replication lag of each
 * standby (primary only), replication slots, checkpoints and buffers, and the WAL archiver (only
 * while archive_mode is on). Read-only catalog queries, a handful of round trips; the caller bounds
 * the whole read in time (src/metrics/postgres-sampler.ts) and the connection has a
 * statement_timeout. Nothing here returns query texts, user names or settings that could carry a
 * secret. Row parsers are pure and exported for tests.
 */
import type { PgClient } from './queries.js';

export interface DatabaseStats {
  name: string;
  xactCommit: number;
  xactRollback: number;
  tupReturned: number;
  tupFetched: number;
  tupInserted: number;
  tupUpdated: number;
  tupDeleted: number;
  deadlocks: number;
  tempBytes: number;
  sizeBytes: number;
}

export interface ReplicaStats {
  /** application_name of the walsender: the replica's node name. */
  applicationName: string;
  state: string;
  /** Current WAL position minus the replica's replay position; null when unknown. */
  lagBytes: number | null;
  /** pg_stat_replication.replay_lag; null when postgres does not know it (idle, or never measured). */
  replayLagSeconds: number | null;
}

export interface SlotStats {
  name: string;
  type: 'physical' | 'logical';
  active: boolean;
  /** Bytes between the current position and the slot's restart_lsn; null when unknown. */
  retainedBytes: number | null;
}

export interface BgwriterStats {
  checkpointsTimed: number;
  checkpointsRequested: number;
  checkpointWriteSeconds: number;
  checkpointSyncSeconds: number;
  buffersCheckpoint: number;
  buffersClean: number;
  buffersBackend: number;
  buffersAlloc: number;
}

export interface ArchiverStats {
  archivedCount: number;
  failedCount: number;
  lastArchivedEpochSeconds: number | null;
  lastFailedEpochSeconds: number | null;
}

export interface PostgresStats {
  inRecovery: boolean;
  /** Primary: current write position; replica: last replayed position (bytes). */
  walLsnBytes: number | null;
  /** Replica: last received position (bytes); null on a primary. */
  receiveLsnBytes: number | null;
  maxConnections: number;
  connections: Array<{ state: string; count: number }>;
  databases: DatabaseStats[];
  /** Primary only (empty on a replica). */
  replicas: ReplicaStats[];
  slots: SlotStats[];
  bgwriter: BgwriterStats | null;
  /** null while archive_mode is off. */
  archiver: ArchiverStats | null;
}

type Num = number | string | null;

/** A number from a pg value (bigint and numeric columns arrive as strings); null for null or junk. */
export function toNumber(value: Num | undefined): number | null {
  if (value === null || value === undefined) return null;
  const n = typeof value === 'number' ? value : Number(value);
  return Number.isFinite(n) ? n : null;
}

const zero = (value: Num | undefined): number => toNumber(value) ?? 0;

const POSITION_SQL = `
SELECT pg_is_in_recovery() AS in_recovery,
       (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END - '0/0'::pg_lsn)::float8 AS wal_lsn_bytes,
       (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() - '0/0'::pg_lsn END)::float8 AS receive_lsn_bytes,
       current_setting('max_connections')::int AS max_connections,
       current_setting('archive_mode') AS archive_mode`;

const CONNECTIONS_SQL = `
SELECT coalesce(state, 'unknown') AS state, count(*)::int AS n
  FROM pg_stat_activity
 WHERE backend_type = 'client backend'
 GROUP BY 1`;

const DATABASES_SQL = `
SELECT datname, xact_commit::float8 AS xact_commit, xact_rollback::float8 AS xact_rollback,
       tup_returned::float8 AS tup_returned, tup_fetched::float8 AS tup_fetched, tup_inserted::float8 AS tup_inserted,
       tup_updated::float8 AS tup_updated, tup_deleted::float8 AS tup_deleted, deadlocks::float8 AS deadlocks,
       temp_bytes::float8 AS temp_bytes, pg_database_size(datid)::float8 AS size_bytes
  FROM pg_stat_database
 WHERE datname IS NOT NULL AND datname NOT IN ('template0', 'template1')
 ORDER BY datname`;

// Streaming rows last, so that when pg_basebackup shares a replica's application_name the
// standby's own walsender is the one kept.
const REPLICATION_SQL = `
SELECT application_name, coalesce(state, 'unknown') AS state,
       (pg_current_wal_lsn() - replay_lsn)::float8 AS lag_bytes,
       EXTRACT(epoch FROM replay_lag)::float8 AS replay_lag_seconds
  FROM pg_stat_replication
 ORDER BY (state = 'streaming'), application_name`;

const SLOTS_SQL = `
SELECT slot_name, slot_type, active,
       ((CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() ELSE pg_current_wal_lsn() END) - restart_lsn)::float8 AS retained_bytes
  FROM pg_replication_slots
 ORDER BY slot_name`;

const BGWRITER_SQL = `
SELECT checkpoints_timed::float8 AS checkpoints_timed, checkpoints_req::float8 AS checkpoints_req,
       checkpoint_write_time AS checkpoint_write_ms, checkpoint_sync_time AS checkpoint_sync_ms,
       buffers_checkpoint::float8 AS buffers_checkpoint, buffers_clean::float8 AS buffers_clean,
       buffers_backend::float8 AS buffers_backend, buffers_alloc::float8 AS buffers_alloc
  FROM pg_stat_bgwriter`;

const ARCHIVER_SQL = `
SELECT archived_count::float8 AS archived_count, failed_count::float8 AS failed_count,
       EXTRACT(epoch FROM last_archived_time)::float8 AS last_archived,
       EXTRACT(epoch FROM last_failed_time)::float8 AS last_failed
  FROM pg_stat_archiver`;

export interface DatabaseRow {
  datname: string;
  xact_commit: Num;
  xact_rollback: Num;
  tup_returned: Num;
  tup_fetched: Num;
  tup_inserted: Num;
  tup_updated: Num;
  tup_deleted: Num;
  deadlocks: Num;
  temp_bytes: Num;
  size_bytes: Num;
}

export function parseDatabaseRow(row: DatabaseRow): DatabaseStats {
  return {
    name: row.datname,
    xactCommit: zero(row.xact_commit),
    xactRollback: zero(row.xact_rollback),
    tupReturned: zero(row.tup_returned),
    tupFetched: zero(row.tup_fetched),
    tupInserted: zero(row.tup_inserted),
    tupUpdated: zero(row.tup_updated),
    tupDeleted: zero(row.tup_deleted),
    deadlocks: zero(row.deadlocks),
    tempBytes: zero(row.temp_bytes),
    sizeBytes: zero(row.size_bytes),
  };
}

export interface ReplicationRow {
  application_name: string | null;
  state: string;
  lag_bytes: Num;
  replay_lag_seconds: Num;
}

/** Lag seconds: replay_lag, or 0 when postgres no longer measures it because nothing is left to replay. */
export function parseReplicationRow(row: ReplicationRow): ReplicaStats {
  const lagBytes = toNumber(row.lag_bytes);
  const measured = toNumber(row.replay_lag_seconds);
  return {
    applicationName: row.application_name ?? '',
    state: row.state,
    lagBytes: lagBytes === null ? null : Math.max(0, lagBytes),
    replayLagSeconds: measured !== null ? Math.max(0, measured) : lagBytes === 0 ? 0 : null,
  };
}

export interface SlotRow {
  slot_name: string;
  slot_type: string;
  active: boolean;
  retained_bytes: Num;
}

export function parseSlotRow(row: SlotRow): SlotStats {
  const retained = toNumber(row.retained_bytes);
  return {
    name: row.slot_name,
    type: row.slot_type === 'logical' ? 'logical' : 'physical',
    active: row.active,
    retainedBytes: retained === null ? null : Math.max(0, retained),
  };
}

export interface BgwriterRow {
  checkpoints_timed: Num;
  checkpoints_req: Num;
  checkpoint_write_ms: Num;
  checkpoint_sync_ms: Num;
  buffers_checkpoint: Num;
  buffers_clean: Num;
  buffers_backend: Num;
  buffers_alloc: Num;
}

export function parseBgwriterRow(row: BgwriterRow): BgwriterStats {
  return {
    checkpointsTimed: zero(row.checkpoints_timed),
    checkpointsRequested: zero(row.checkpoints_req),
    checkpointWriteSeconds: zero(row.checkpoint_write_ms) / 1000,
    checkpointSyncSeconds: zero(row.checkpoint_sync_ms) / 1000,
    buffersCheckpoint: zero(row.buffers_checkpoint),
    buffersClean: zero(row.buffers_clean),
    buffersBackend: zero(row.buffers_backend),
    buffersAlloc: zero(row.buffers_alloc),
  };
}

export interface ArchiverRow {
  archived_count: Num;
  failed_count: Num;
  last_archived: Num;
  last_failed: Num;
}

export function parseArchiverRow(row: ArchiverRow): ArchiverStats {
  return {
    archivedCount: zero(row.archived_count),
    failedCount: zero(row.failed_count),
    lastArchivedEpochSeconds: toNumber(row.last_archived),
    lastFailedEpochSeconds: toNumber(row.last_failed),
  };
}

interface PositionRow {
  in_recovery: boolean;
  wal_lsn_bytes: Num;
  receive_lsn_bytes: Num;
  max_connections: number;
  archive_mode: string;
}

/** Reads every statistic the metrics export, one query per view. */
export async function readPostgresStats(client: PgClient): Promise<PostgresStats> {
  const position = (await client.query<PositionRow>(POSITION_SQL)).rows[0];
  if (position === undefined) throw new Error('the position query returned no row');
  const connections = (await client.query<{ state: string; n: number }>(CONNECTIONS_SQL)).rows.map((r) => ({ state: r.state, count: Number(r.n) }));
  const databases = (await client.query<DatabaseRow>(DATABASES_SQL)).rows.map(parseDatabaseRow);
  const replicas = position.in_recovery ? [] : (await client.query<ReplicationRow>(REPLICATION_SQL)).rows.map(parseReplicationRow);
  const slots = (await client.query<SlotRow>(SLOTS_SQL)).rows.map(parseSlotRow);
  const bgwriterRow = (await client.query<BgwriterRow>(BGWRITER_SQL)).rows[0];
  let archiver: ArchiverStats | null = null;
  if (position.archive_mode !== 'off') {
    const row = (await client.query<ArchiverRow>(ARCHIVER_SQL)).rows[0];
    archiver = row === undefined ? null : parseArchiverRow(row);
  }
  return {
    inRecovery: position.in_recovery,
    walLsnBytes: toNumber(position.wal_lsn_bytes),
    receiveLsnBytes: toNumber(position.receive_lsn_bytes),
    maxConnections: Number(position.max_connections),
    connections,
    databases,
    replicas,
    slots,
    bgwriter: bgwriterRow === undefined ? null : parseBgwriterRow(bgwriterRow),
    archiver,
  };
}
