/**
 * The agent's Prometheus registry (prom-client), built from the metric catalog, and collection on
 * scrape. `render()` is what GET /metrics answers: it refreshes every sampled value, then
 * serialises the registry in the Prometheus text format (each metric with HELP and TYPE lines).
 *
 * Invariants:
 * - A scrape is bounded in time: postgres statistics, the disk and the backup status are read in
 *   parallel against one deadline (`collectTimeoutMs`); what did not answer in time is left out
 *   of this scrape (`pgpilot_scrape_error` 1) instead of hanging it. The agent-side values
 *   (role, leader, timeline, proxy, HA counters) come from memory and are always there.
 * - Sampled values are cleared before each refresh: a value that cannot be read now is absent,
 *   never the stale number from an earlier scrape and never a made-up 0.
 * - Concurrent scrapes share one refresh.
 * - Nothing secret is exported: labels are node, database, slot, role and state names only.
 *
 * It also implements the HA loop's metrics hook (src/state/ha-metrics.ts): those counters and the
 * loop duration histogram are updated live by the loop, not at scrape time.
 */
import { statfs } from 'node:fs/promises';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { HaMetrics } from '../state/ha-metrics.js';
import type { AgentSnapshot } from '../state/agent-snapshot.js';
import type { PostgresStats } from '../postgres/stats-queries.js';
import { errorMessage } from '../shared/errors.js';
import { withDeadline } from './deadline.js';
import {
  CONNECTION_STATES,
  LOOP_DURATION_BUCKETS,
  MEMBER_ROLES,
  METRIC_CATALOG,
  PROCESS_METRICS_PREFIX,
  type MetricKey,
  type MetricSpec,
} from './metric-catalog.js';

/** What the backup subsystem reports (issue 9); every field null/0 until there is a backup. */
export interface BackupStatus {
  lastSuccessEpochSeconds: number | null;
  lastSizeBytes: number | null;
  lastDurationSeconds: number | null;
  failuresTotal: number;
}

export interface DiskUsage {
  availableBytes: number;
  sizeBytes: number;
}

export interface AgentMetricsOptions {
  cluster: string;
  node: string;
  version: string;
  /** The HA loop's latest snapshot (null before the loop exists). */
  snapshot(): AgentSnapshot | null;
  holdsLeader(): boolean;
  /** Reads postgres statistics (bounded by the caller's timeout); absent: no postgres metrics. */
  postgresStats?: (timeoutMs: number) => Promise<PostgresStats>;
  /** The data directory, for the disk metrics. */
  dataDirectory?: string;
  /** Present once backups exist (issue 9): registers and exports the backup metrics. */
  backupStatus?: () => Promise<BackupStatus | null>;
  /** The certificates to report the expiry of (read at scrape time); absent: no TLS metrics. */
  certificates?: () => Array<{ name: string; notAfterEpochMs: number }>;
  /** Bound of the scrape-time reads; default 2 s (Prometheus' own timeout is usually 10 s). */
  collectTimeoutMs?: number;
  /** Also export prom-client's Node.js process metrics (prefix pgpilot_agent_). */
  processMetrics?: boolean;
  /** Called when a scrape-time read fails (logged by the agent). */
  onCollectError?: (what: string, message: string) => void;
}

type Labels = Record<string, string>;
type Sampled = Gauge<string> | Counter<string>;

const DEFAULT_COLLECT_TIMEOUT_MS = 2_000;

/** Keys of the values that are recomputed (cleared, then set) at every scrape. */
const SAMPLED_KEYS: readonly MetricKey[] = (Object.keys(METRIC_CATALOG) as MetricKey[]).filter((key) => {
  const spec: MetricSpec = METRIC_CATALOG[key];
  return spec.source !== 'ha' && key !== 'buildInfo';
});

export async function statfsUsage(directory: string): Promise<DiskUsage> {
  const stats = await statfs(directory);
  return { availableBytes: stats.bavail * stats.bsize, sizeBytes: stats.blocks * stats.bsize };
}

export class AgentMetrics implements HaMetrics {
  readonly registry = new Registry();
  private readonly sampled = new Map<MetricKey, Sampled>();
  private readonly leaseRenewals: Counter<string>;
  private readonly leaseRenewalFailures: Counter<string>;
  private readonly leaderChanges: Counter<string>;
  private readonly failovers: Counter<string>;
  private readonly switchovers: Counter<string>;
  private readonly loopDuration: Histogram<string>;
  private refreshing: Promise<void> | null = null;

  constructor(private readonly options: AgentMetricsOptions) {
    this.registry.setDefaultLabels({ cluster: options.cluster, node: options.node });
    const registers = [this.registry];
    const counter = (spec: MetricSpec) => new Counter({ name: spec.name, help: spec.help, labelNames: [...spec.labels], registers });
    this.leaseRenewals = counter(METRIC_CATALOG.leaseRenewals);
    this.leaseRenewalFailures = counter(METRIC_CATALOG.leaseRenewalFailures);
    this.leaderChanges = counter(METRIC_CATALOG.leaderChanges);
    this.failovers = counter(METRIC_CATALOG.failovers);
    this.switchovers = counter(METRIC_CATALOG.switchovers);
    this.loopDuration = new Histogram({ name: METRIC_CATALOG.loopDuration.name, help: METRIC_CATALOG.loopDuration.help, buckets: LOOP_DURATION_BUCKETS, registers });
    const buildInfo = new Gauge({ name: METRIC_CATALOG.buildInfo.name, help: METRIC_CATALOG.buildInfo.help, labelNames: [...METRIC_CATALOG.buildInfo.labels], registers });
    buildInfo.set({ version: options.version, node_version: process.version }, 1);
    for (const key of SAMPLED_KEYS) {
      const spec: MetricSpec = METRIC_CATALOG[key];
      if (spec.source === 'backup' && options.backupStatus === undefined) continue;
      if (spec.source === 'tls' && options.certificates === undefined) continue;
      const config = { name: spec.name, help: spec.help, labelNames: [...spec.labels], registers };
      const metric: Sampled = spec.type === 'counter' ? new Counter(config) : new Gauge(config);
      this.clearMetric(metric, spec);
      this.sampled.set(key, metric);
    }
    if (options.processMetrics === true) collectDefaultMetrics({ register: this.registry, prefix: PROCESS_METRICS_PREFIX });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** Names of every registered metric family (what a dashboard or alert may refer to). */
  metricNames(): string[] {
    return this.registry.getMetricsAsArray().map((m) => m.name);
  }

  /** The scrape: refresh sampled values (bounded), then the registry in Prometheus text format. */
  async render(): Promise<string> {
    this.refreshing ??= this.refresh().finally(() => {
      this.refreshing = null;
    });
    await this.refreshing;
    return this.registry.metrics();
  }

  // --- HaMetrics (called by the HA loop)
  leaseRenewed(): void {
    this.leaseRenewals.inc();
  }
  leaseRenewalFailed(): void {
    this.leaseRenewalFailures.inc();
  }
  leaderChanged(): void {
    this.leaderChanges.inc();
  }
  promoted(reason: 'failover' | 'switchover'): void {
    (reason === 'switchover' ? this.switchovers : this.failovers).inc();
  }
  tickFinished(durationSeconds: number): void {
    if (Number.isFinite(durationSeconds) && durationSeconds >= 0) this.loopDuration.observe(durationSeconds);
  }

  private async refresh(): Promise<void> {
    const startedMs = performance.now();
    const timeoutMs = this.options.collectTimeoutMs ?? DEFAULT_COLLECT_TIMEOUT_MS;
    const snapshot = this.options.snapshot();
    const pg = snapshot?.observation?.pg;
    const running = pg?.kind === 'running';
    const { postgresStats, dataDirectory, backupStatus } = this.options;
    const [stats, disk, backup] = await Promise.all([
      running && postgresStats !== undefined ? this.attempt('postgres statistics', () => postgresStats(timeoutMs)) : Promise.resolve(undefined),
      dataDirectory !== undefined ? this.attempt('disk usage', () => withDeadline(statfsUsage(dataDirectory), timeoutMs, 'disk usage'), { quietCodes: ['ENOENT'] }) : Promise.resolve(undefined),
      backupStatus !== undefined ? this.attempt('backup status', () => withDeadline(backupStatus(), timeoutMs, 'backup status')) : Promise.resolve(undefined),
    ]);
    for (const key of this.sampled.keys()) this.clear(key);
    this.putAgentState(snapshot);
    if (stats !== null && stats !== undefined) this.putPostgres(stats);
    if (disk !== null && disk !== undefined) {
      this.put('dataDiskAvailable', disk.availableBytes);
      this.put('dataDiskSize', disk.sizeBytes);
    }
    if (backup !== null && backup !== undefined) {
      this.put('backupLastSuccess', backup.lastSuccessEpochSeconds);
      this.put('backupLastSize', backup.lastSizeBytes);
      this.put('backupLastDuration', backup.lastDurationSeconds);
      this.put('backupFailures', backup.failuresTotal);
    }
    if (this.options.certificates !== undefined) {
      try {
        for (const cert of this.options.certificates()) this.put('certificateExpiry', cert.notAfterEpochMs / 1000, { certificate: cert.name });
      } catch (error) {
        this.options.onCollectError?.('certificates', errorMessage(error));
      }
    }
    // null: the read failed or timed out; undefined: not attempted (postgres down, no source).
    this.put('scrapeError', stats === null ? 1 : 0);
    this.put('scrapeDuration', (performance.now() - startedMs) / 1000);
  }

  /** The value, or null when the read failed (reported once per failure through onCollectError). */
  private async attempt<T>(what: string, read: () => Promise<T>, options: { quietCodes?: string[] } = {}): Promise<T | null> {
    try {
      return await read();
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === undefined || !(options.quietCodes ?? []).includes(code)) this.options.onCollectError?.(what, errorMessage(error));
      return null;
    }
  }

  private putAgentState(snapshot: AgentSnapshot | null): void {
    const obs = snapshot?.observation ?? null;
    const pg = obs?.pg;
    const member = snapshot?.member ?? null;
    const running = pg?.kind === 'running';
    this.put('up', running ? 1 : 0);
    const role = member?.role ?? 'unknown';
    for (const r of MEMBER_ROLES) this.put('role', r === role ? 1 : 0, { role: r });
    this.put('isLeader', this.options.holdsLeader() ? 1 : 0);
    this.put('dcsReachable', obs?.dcs.kind === 'reachable' ? 1 : 0);
    if (pg?.kind === 'running') {
      this.put('timeline', pg.timeline);
      if (pg.inRecovery) this.put('walReceiverStreaming', pg.walReceiverStatus === 'streaming' ? 1 : 0);
    }
    const proxy = member?.proxy ?? null;
    if (proxy !== null) {
      this.put('proxyConnectionsOpen', proxy.open);
      this.put('proxyConnectionsHeld', proxy.held);
      this.put('proxyConnections', proxy.total);
      this.put('proxyConnectionFailures', proxy.failed);
    }
  }

  private putPostgres(stats: PostgresStats): void {
    this.put('walLsn', stats.walLsnBytes);
    if (stats.inRecovery) this.put('walReceiveLsn', stats.receiveLsnBytes);
    this.put('maxConnections', stats.maxConnections);
    const byState = new Map<string, number>(CONNECTION_STATES.map((s) => [s, 0]));
    for (const c of stats.connections) byState.set(c.state, (byState.get(c.state) ?? 0) + c.count);
    for (const [state, count] of byState) this.put('connections', count, { state });
    for (const db of stats.databases) {
      const database = { database: db.name };
      this.put('transactionsCommitted', db.xactCommit, database);
      this.put('transactionsRolledBack', db.xactRollback, database);
      for (const [operation, value] of [
        ['returned', db.tupReturned],
        ['fetched', db.tupFetched],
        ['inserted', db.tupInserted],
        ['updated', db.tupUpdated],
        ['deleted', db.tupDeleted],
      ] as const) {
        this.put('tuples', value, { ...database, operation });
      }
      this.put('deadlocks', db.deadlocks, database);
      this.put('tempBytes', db.tempBytes, database);
      this.put('databaseSize', db.sizeBytes, database);
    }
    for (const replica of stats.replicas) {
      if (replica.applicationName === '') continue;
      const labels = { replica: replica.applicationName };
      this.put('replicationLagBytes', replica.lagBytes, labels);
      this.put('replicationLagSeconds', replica.replayLagSeconds, labels);
    }
    for (const slot of stats.slots) {
      const labels = { slot: slot.name, slot_type: slot.type };
      this.put('slotActive', slot.active ? 1 : 0, labels);
      this.put('slotRetainedWal', slot.retainedBytes, labels);
    }
    const bg = stats.bgwriter;
    if (bg !== null) {
      this.put('checkpoints', bg.checkpointsTimed, { kind: 'timed' });
      this.put('checkpoints', bg.checkpointsRequested, { kind: 'requested' });
      this.put('checkpointWriteSeconds', bg.checkpointWriteSeconds);
      this.put('checkpointSyncSeconds', bg.checkpointSyncSeconds);
      this.put('buffersWritten', bg.buffersCheckpoint, { writer: 'checkpointer' });
      this.put('buffersWritten', bg.buffersClean, { writer: 'bgwriter' });
      this.put('buffersWritten', bg.buffersBackend, { writer: 'backend' });
      this.put('buffersAllocated', bg.buffersAlloc);
    }
    const archiver = stats.archiver;
    if (archiver !== null) {
      this.put('walArchived', archiver.archivedCount);
      this.put('walArchiveFailures', archiver.failedCount);
      this.put('walArchiveLastSuccess', archiver.lastArchivedEpochSeconds);
      this.put('walArchiveLastFailure', archiver.lastFailedEpochSeconds);
    }
  }

  /** Sets a sampled value (counters: their value since postgres or the agent started). Nulls are left out. */
  private put(key: MetricKey, value: number | null, labels: Labels = {}): void {
    const metric = this.sampled.get(key);
    if (metric === undefined || value === null || !Number.isFinite(value)) return;
    if (metric instanceof Counter) {
      // A counter's value is replaced each scrape: it was cleared, so inc() sets it.
      if (value >= 0) metric.inc(labels, value);
    } else {
      metric.set(labels, value);
    }
  }

  private clear(key: MetricKey): void {
    const metric = this.sampled.get(key);
    if (metric !== undefined) this.clearMetric(metric, METRIC_CATALOG[key]);
  }

  /** No series at all: prom-client keeps a 0 for a metric without labels, so that one is removed too. */
  private clearMetric(metric: Sampled, spec: MetricSpec): void {
    metric.reset();
    if (spec.labels.length === 0) metric.remove({});
  }
}
