/**
 * Every metric the agent can export on GET /metrics, in one place: name, type, HELP text and
 * labels (Prometheus naming: `pgpilot_` prefix, base units in the name, `_total` for counters).
 * The registry (agent-metrics.ts) is built from this table, docs/monitoring.md lists it, and the
 * alert rules and dashboard only use names the registry registers (checked by tests).
 *
 * Every series also carries the `cluster` and `node` labels (registry default labels), so a
 * Prometheus scraping many clusters can tell them apart without relabelling.
 *
 * `source` says where a value comes from and therefore when it is present:
 * - `agent`, `ha`, `proxy`: the agent's own state; always present.
 * - `postgres`: read from the local postgres at scrape time, within a time bound; absent while
 *   postgres is down or when it did not answer in time (`pgpilot_scrape_error` is then 1).
 * - `archive`: pg_stat_archiver, present only while `archive_mode` is on.
 * - `backup`: registered only when the agent has a backup status source (backups, issue 9); the
 *   names are fixed here so alert rules and the dashboard can use them already.
 * - `disk`: statfs of the data directory, present once it exists.
 * - `tls`: the certificates this node serves and trusts, read from their files at scrape time.
 */

export type MetricType = 'gauge' | 'counter' | 'histogram';
export type MetricSource = 'agent' | 'ha' | 'postgres' | 'proxy' | 'disk' | 'archive' | 'backup' | 'tls';

export interface MetricSpec {
  readonly name: string;
  readonly type: MetricType;
  readonly help: string;
  readonly labels: readonly string[];
  readonly source: MetricSource;
}

/** Labels every series carries (set as registry default labels). */
export const COMMON_LABELS = ['cluster', 'node'] as const;

/** Role values of `pgpilot_role` (one series each; 1 for the current role). */
export const MEMBER_ROLES = ['primary', 'replica', 'stopped', 'unknown'] as const;

/** Connection states always exported by `pgpilot_connections` (0 when none), as pg_stat_activity names them. */
export const CONNECTION_STATES = ['active', 'idle', 'idle in transaction', 'idle in transaction (aborted)', 'fastpath function call', 'disabled'] as const;

/** Buckets of the HA loop duration histogram (seconds): a tick is normally well under 100 ms. */
export const LOOP_DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** Prefix of prom-client's Node.js process metrics (CPU, memory, heap, event-loop lag, GC). */
export const PROCESS_METRICS_PREFIX = 'pgpilot_agent_';

const spec = (name: string, type: MetricType, source: MetricSource, help: string, labels: readonly string[] = []): MetricSpec => ({ name, type, source, help, labels });

export const METRIC_CATALOG = {
  // agent
  buildInfo: spec('pgpilot_build_info', 'gauge', 'agent', 'Always 1; the labels carry the pgpilot and Node.js versions of the agent.', ['version', 'node_version']),
  up: spec('pgpilot_up', 'gauge', 'agent', "1 while this node's postgres runs and answers the HA loop, else 0."),
  role: spec('pgpilot_role', 'gauge', 'agent', "1 for the member's current role (primary, replica, stopped, unknown), 0 for the others.", ['role']),
  isLeader: spec('pgpilot_is_leader', 'gauge', 'agent', "1 while this agent holds the cluster's leader key in etcd, else 0."),
  dcsReachable: spec('pgpilot_dcs_reachable', 'gauge', 'agent', "1 when etcd answered the HA loop's last read, else 0."),
  timeline: spec('pgpilot_timeline', 'gauge', 'agent', 'PostgreSQL timeline of this node (absent while postgres is down).'),
  walReceiverStreaming: spec('pgpilot_wal_receiver_streaming', 'gauge', 'agent', 'Replicas only: 1 while the WAL receiver streams from the leader, else 0.'),
  scrapeDuration: spec('pgpilot_scrape_duration_seconds', 'gauge', 'agent', 'Time this scrape spent reading postgres statistics, the disk and the backup status.'),
  scrapeError: spec('pgpilot_scrape_error', 'gauge', 'agent', '1 when this scrape could not read postgres statistics in time (those series are then absent), else 0.'),
  // HA loop events (counted by the loop through src/state/ha-metrics.ts)
  leaseRenewals: spec('pgpilot_lease_renewals_total', 'counter', 'ha', "Successful keep-alives of this agent's etcd lease."),
  leaseRenewalFailures: spec('pgpilot_lease_renewal_failures_total', 'counter', 'ha', "Failed keep-alives of this agent's etcd lease (lease gone or etcd not answering)."),
  leaderChanges: spec('pgpilot_leader_changes_total', 'counter', 'ha', 'Times this agent saw the leader key name a different node than the leader it saw before.'),
  failovers: spec('pgpilot_failovers_total', 'counter', 'ha', 'Promotions of this node by a failover (automatic, or forced with pgpilot failover); sum over the members for the cluster.'),
  switchovers: spec('pgpilot_switchovers_total', 'counter', 'ha', 'Promotions of this node by a planned switchover; sum over the members for the cluster.'),
  loopDuration: spec('pgpilot_ha_loop_duration_seconds', 'histogram', 'ha', 'Duration of one HA loop tick (observe, decide, execute, publish).'),
  // postgres, read at scrape time
  walLsn: spec('pgpilot_wal_lsn_bytes', 'gauge', 'postgres', 'WAL position in bytes: the current write position on the primary, the last replayed one on a replica.'),
  walReceiveLsn: spec('pgpilot_wal_receive_lsn_bytes', 'gauge', 'postgres', 'Replicas only: last WAL position received from the leader, in bytes.'),
  replicationLagBytes: spec('pgpilot_replication_lag_bytes', 'gauge', 'postgres', 'Primary only: bytes of WAL each connected replica has still to replay.', ['replica']),
  replicationLagSeconds: spec('pgpilot_replication_lag_seconds', 'gauge', 'postgres', 'Primary only: replay lag of each connected replica in seconds (pg_stat_replication.replay_lag; 0 when caught up).', ['replica']),
  slotActive: spec('pgpilot_replication_slot_active', 'gauge', 'postgres', '1 while a client (a replica) uses the replication slot, else 0.', ['slot', 'slot_type']),
  slotRetainedWal: spec('pgpilot_replication_slot_retained_wal_bytes', 'gauge', 'postgres', 'Bytes of WAL the replication slot keeps on disk (current position minus its restart_lsn).', ['slot', 'slot_type']),
  connections: spec('pgpilot_connections', 'gauge', 'postgres', 'Client connections to postgres by state (pg_stat_activity).', ['state']),
  maxConnections: spec('pgpilot_max_connections', 'gauge', 'postgres', 'The max_connections setting of postgres.'),
  transactionsCommitted: spec('pgpilot_transactions_committed_total', 'counter', 'postgres', 'Transactions committed per database (pg_stat_database.xact_commit).', ['database']),
  transactionsRolledBack: spec('pgpilot_transactions_rolled_back_total', 'counter', 'postgres', 'Transactions rolled back per database (pg_stat_database.xact_rollback).', ['database']),
  tuples: spec('pgpilot_tuples_total', 'counter', 'postgres', 'Rows returned, fetched, inserted, updated and deleted per database (pg_stat_database.tup_*).', ['database', 'operation']),
  deadlocks: spec('pgpilot_deadlocks_total', 'counter', 'postgres', 'Deadlocks detected per database.', ['database']),
  tempBytes: spec('pgpilot_temp_bytes_total', 'counter', 'postgres', 'Bytes written to temporary files per database.', ['database']),
  databaseSize: spec('pgpilot_database_size_bytes', 'gauge', 'postgres', 'Size of each database on disk.', ['database']),
  checkpoints: spec('pgpilot_checkpoints_total', 'counter', 'postgres', 'Checkpoints by kind: timed (checkpoint_timeout) or requested (WAL volume, CHECKPOINT, shutdown).', ['kind']),
  checkpointWriteSeconds: spec('pgpilot_checkpoint_write_seconds_total', 'counter', 'postgres', 'Time checkpoints spent writing files to disk.'),
  checkpointSyncSeconds: spec('pgpilot_checkpoint_sync_seconds_total', 'counter', 'postgres', 'Time checkpoints spent syncing files to disk.'),
  buffersWritten: spec('pgpilot_buffers_written_total', 'counter', 'postgres', 'Shared buffers written, by writer: checkpointer, bgwriter or backend.', ['writer']),
  buffersAllocated: spec('pgpilot_buffers_allocated_total', 'counter', 'postgres', 'Shared buffers allocated.'),
  // the node's proxy ports (leader and replica ports together)
  proxyConnectionsOpen: spec('pgpilot_proxy_connections_open', 'gauge', 'proxy', "Client connections open through this node's proxy ports."),
  proxyConnectionsHeld: spec('pgpilot_proxy_connections_held', 'gauge', 'proxy', 'Client connections the proxy holds while no leader is writable (switchover, failover).'),
  proxyConnections: spec('pgpilot_proxy_connections_total', 'counter', 'proxy', "Client connections accepted by this node's proxy ports since the agent started."),
  proxyConnectionFailures: spec('pgpilot_proxy_connection_failures_total', 'counter', 'proxy', 'Client connections the proxy could not place (hold timeout, no target).'),
  // disk
  dataDiskAvailable: spec('pgpilot_data_disk_available_bytes', 'gauge', 'disk', 'Bytes available to unprivileged users on the filesystem of the data directory.'),
  dataDiskSize: spec('pgpilot_data_disk_size_bytes', 'gauge', 'disk', 'Size of the filesystem of the data directory.'),
  // WAL archiving (pg_stat_archiver; present only while archive_mode is on)
  walArchived: spec('pgpilot_wal_archived_total', 'counter', 'archive', 'WAL files archived successfully (pg_stat_archiver.archived_count).'),
  walArchiveFailures: spec('pgpilot_wal_archive_failures_total', 'counter', 'archive', 'Failed attempts to archive a WAL file (pg_stat_archiver.failed_count).'),
  walArchiveLastSuccess: spec('pgpilot_wal_archive_last_success_timestamp_seconds', 'gauge', 'archive', 'Unix time of the last successfully archived WAL file.'),
  walArchiveLastFailure: spec('pgpilot_wal_archive_last_failure_timestamp_seconds', 'gauge', 'archive', 'Unix time of the last failed WAL archive attempt.'),
  // backups (registered only when the agent has a backup status source)
  backupLastSuccess: spec('pgpilot_backup_last_success_timestamp_seconds', 'gauge', 'backup', 'Unix time the last successful base backup finished.'),
  backupLastSize: spec('pgpilot_backup_last_size_bytes', 'gauge', 'backup', 'Size of the last successful base backup.'),
  backupLastDuration: spec('pgpilot_backup_last_duration_seconds', 'gauge', 'backup', 'Duration of the last successful base backup.'),
  backupFailures: spec('pgpilot_backup_failures_total', 'counter', 'backup', 'Base backups that failed since the agent started.'),
  // TLS (registered only when the agent has certificates to report)
  certificateExpiry: spec('pgpilot_tls_certificate_expiry_timestamp_seconds', 'gauge', 'tls', 'Unix time the certificate expires: `node` is the one this node serves (postgres, REST API, PgBouncer) and presents to etcd, `ca` the cluster CA.', ['certificate']),
} as const satisfies Record<string, MetricSpec>;

export type MetricKey = keyof typeof METRIC_CATALOG;

export const ALL_METRIC_SPECS: readonly MetricSpec[] = Object.values(METRIC_CATALOG);
