/**
 * The agent's metrics (src/metrics/agent-metrics.ts, metric-catalog.ts, postgres-sampler.ts):
 * every catalog name follows Prometheus naming and has HELP text; a scrape of a leader exports its
 * role, leader flag, timeline, per-replica lag, connections by state, database counters, slots,
 * checkpoints and proxy counters, each family with HELP and TYPE lines and the cluster and node
 * labels; values that cannot be read now are absent rather than stale or zero (postgres down after
 * a good scrape); a postgres that never answers cannot hold a scrape past its time bound (the
 * scrape reports pgpilot_scrape_error 1 and the agent-side series); concurrent scrapes share one
 * read and a stuck sampler opens no second connection; the HA hook feeds the counters and the loop
 * histogram; backup metrics exist only with a backup source, archive metrics only while
 * archive_mode is on; and GET /metrics answers without a token and leaks no secret.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { buildApi } from '../../src/api/build-api.js';
import { defaultDynamicConfig } from '../../src/config/schema.js';
import type { LoopSnapshot } from '../../src/ha/loop.js';
import type { LocalPostgres } from '../../src/state/agent-snapshot.js';
import { AgentMetrics, type AgentMetricsOptions } from '../../src/metrics/agent-metrics.js';
import { ALL_METRIC_SPECS, METRIC_CATALOG } from '../../src/metrics/metric-catalog.js';
import { PostgresSampler } from '../../src/metrics/postgres-sampler.js';
import type { PgClient } from '../../src/postgres/queries.js';
import type { PostgresStats } from '../../src/postgres/stats-queries.js';
import { memberRecord, observation, running, runningPrimary, stopped } from '../builders/observation-builder.js';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The samples of a Prometheus text exposition (enough of the format for these tests). */
function parseExposition(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line.length === 0 || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(match, `unparseable sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const pair of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1] ?? ''] = pair[2] ?? '';
    samples.push({ name: match[1] ?? '', labels, value: Number(match[3]) });
  }
  return samples;
}

function valueOf(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  return samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}

function snapshotWith(pg: LocalPostgres, extra: Partial<LoopSnapshot> = {}): LoopSnapshot {
  return {
    observation: observation({ pg }),
    decision: null,
    member: memberRecord({ name: 'node1', role: pg.kind === 'running' ? (pg.inRecovery ? 'replica' : 'primary') : 'stopped', proxy: { open: 3, held: 1, total: 40, failed: 2 } }),
    lastError: null,
    ticks: 5,
    ...extra,
  };
}

function leaderStats(overrides: Partial<PostgresStats> = {}): PostgresStats {
  return {
    inRecovery: false,
    walLsnBytes: 83_886_080,
    receiveLsnBytes: null,
    maxConnections: 100,
    connections: [
      { state: 'active', count: 2 },
      { state: 'idle', count: 5 },
    ],
    databases: [
      { name: 'postgres', xactCommit: 1234, xactRollback: 5, tupReturned: 10, tupFetched: 9, tupInserted: 8, tupUpdated: 7, tupDeleted: 6, deadlocks: 1, tempBytes: 4096, sizeBytes: 7_000_000 },
    ],
    replicas: [
      { applicationName: 'node2', state: 'streaming', lagBytes: 0, replayLagSeconds: 0 },
      { applicationName: 'node3', state: 'streaming', lagBytes: 2048, replayLagSeconds: 0.25 },
    ],
    slots: [
      { name: 'node2', type: 'physical', active: true, retainedBytes: 0 },
      { name: 'node3', type: 'physical', active: false, retainedBytes: 2048 },
    ],
    bgwriter: {
      checkpointsTimed: 3,
      checkpointsRequested: 2,
      checkpointWriteSeconds: 1.5,
      checkpointSyncSeconds: 0.25,
      buffersCheckpoint: 100,
      buffersClean: 10,
      buffersBackend: 5,
      buffersAlloc: 900,
    },
    archiver: null,
    ...overrides,
  };
}

function metricsWith(options: Partial<AgentMetricsOptions> & { snapshot: () => LoopSnapshot | null }): AgentMetrics {
  return new AgentMetrics({ cluster: 'demo', node: 'node1', version: '9.9.9', holdsLeader: () => false, ...options });
}

void describe('metric catalog', () => {
  void it('follows Prometheus naming: pgpilot_ prefix, _total only and always on counters, base units, HELP text', () => {
    const names = new Set<string>();
    for (const spec of ALL_METRIC_SPECS) {
      assert.match(spec.name, /^pgpilot_[a-z][a-z0-9_]*[a-z0-9]$/, spec.name);
      assert.ok(!names.has(spec.name), `duplicate ${spec.name}`);
      names.add(spec.name);
      assert.equal(spec.name.endsWith('_total'), spec.type === 'counter', `${spec.name}: _total iff counter`);
      assert.ok(!/_(ms|milliseconds|kb|mb|percent)(_|$)/.test(spec.name), `${spec.name}: base units only`);
      assert.ok(spec.help.length > 10 && !spec.help.startsWith(' '), `${spec.name} has HELP text`);
      for (const label of spec.labels) assert.match(label, /^[a-z][a-z_]*$/, `${spec.name} label ${label}`);
      assert.ok(!spec.labels.includes('cluster') && !spec.labels.includes('node'), `${spec.name}: cluster and node are default labels`);
    }
  });
});

void describe('AgentMetrics scrape', () => {
  void it('exports a leader: role, leader flag, timeline, per-replica lag, connections, databases, slots, checkpoints, proxy', async () => {
    const metrics = metricsWith({
      snapshot: () => snapshotWith(runningPrimary({ timeline: 3 })),
      holdsLeader: () => true,
      postgresStats: () => Promise.resolve(leaderStats()),
    });
    const text = await metrics.render();
    for (const name of metrics.metricNames()) {
      assert.ok(text.includes(`# HELP ${name} `), `HELP line for ${name}`);
      assert.ok(text.includes(`# TYPE ${name} `), `TYPE line for ${name}`);
    }
    const s = parseExposition(text);
    for (const sample of s) assert.deepEqual([sample.labels['cluster'], sample.labels['node']], ['demo', 'node1'], `${sample.name} carries cluster and node`);
    assert.equal(valueOf(s, 'pgpilot_up'), 1);
    assert.equal(valueOf(s, 'pgpilot_is_leader'), 1);
    assert.equal(valueOf(s, 'pgpilot_role', { role: 'primary' }), 1);
    assert.equal(valueOf(s, 'pgpilot_role', { role: 'replica' }), 0);
    assert.equal(valueOf(s, 'pgpilot_timeline'), 3);
    assert.equal(valueOf(s, 'pgpilot_build_info', { version: '9.9.9' }), 1);
    assert.equal(valueOf(s, 'pgpilot_wal_lsn_bytes'), 83_886_080);
    assert.equal(valueOf(s, 'pgpilot_wal_receive_lsn_bytes'), undefined, 'a primary has no receive position');
    assert.equal(valueOf(s, 'pgpilot_wal_receiver_streaming'), undefined, 'a primary has no WAL receiver');
    assert.equal(valueOf(s, 'pgpilot_replication_lag_bytes', { replica: 'node2' }), 0);
    assert.equal(valueOf(s, 'pgpilot_replication_lag_bytes', { replica: 'node3' }), 2048);
    assert.equal(valueOf(s, 'pgpilot_replication_lag_seconds', { replica: 'node3' }), 0.25);
    assert.equal(valueOf(s, 'pgpilot_connections', { state: 'active' }), 2);
    assert.equal(valueOf(s, 'pgpilot_connections', { state: 'idle in transaction' }), 0, 'known states are exported even at 0');
    assert.equal(valueOf(s, 'pgpilot_max_connections'), 100);
    assert.equal(valueOf(s, 'pgpilot_transactions_committed_total', { database: 'postgres' }), 1234);
    assert.equal(valueOf(s, 'pgpilot_transactions_rolled_back_total', { database: 'postgres' }), 5);
    assert.equal(valueOf(s, 'pgpilot_tuples_total', { database: 'postgres', operation: 'inserted' }), 8);
    assert.equal(valueOf(s, 'pgpilot_deadlocks_total', { database: 'postgres' }), 1);
    assert.equal(valueOf(s, 'pgpilot_temp_bytes_total', { database: 'postgres' }), 4096);
    assert.equal(valueOf(s, 'pgpilot_database_size_bytes', { database: 'postgres' }), 7_000_000);
    assert.equal(valueOf(s, 'pgpilot_replication_slot_active', { slot: 'node3' }), 0);
    assert.equal(valueOf(s, 'pgpilot_replication_slot_retained_wal_bytes', { slot: 'node3', slot_type: 'physical' }), 2048);
    assert.equal(valueOf(s, 'pgpilot_checkpoints_total', { kind: 'requested' }), 2);
    assert.equal(valueOf(s, 'pgpilot_checkpoint_write_seconds_total'), 1.5);
    assert.equal(valueOf(s, 'pgpilot_buffers_written_total', { writer: 'backend' }), 5);
    assert.equal(valueOf(s, 'pgpilot_proxy_connections_open'), 3);
    assert.equal(valueOf(s, 'pgpilot_proxy_connections_held'), 1);
    assert.equal(valueOf(s, 'pgpilot_proxy_connections_total'), 40);
    assert.equal(valueOf(s, 'pgpilot_proxy_connection_failures_total'), 2);
    assert.equal(valueOf(s, 'pgpilot_scrape_error'), 0);
    assert.equal(valueOf(s, 'pgpilot_wal_archived_total'), undefined, 'no archive series while archive_mode is off');
    assert.ok(!metrics.metricNames().includes(METRIC_CATALOG.backupLastSuccess.name), 'no backup metrics without a backup source');
  });

  void it('exports a replica: receive position and WAL receiver state, no replication lag of its own', async () => {
    const metrics = metricsWith({
      snapshot: () => snapshotWith(running({ walReceiverStatus: 'catchup' })),
      postgresStats: () => Promise.resolve(leaderStats({ inRecovery: true, receiveLsnBytes: 90_000_000, replicas: [] })),
    });
    const s = parseExposition(await metrics.render());
    assert.equal(valueOf(s, 'pgpilot_is_leader'), 0);
    assert.equal(valueOf(s, 'pgpilot_role', { role: 'replica' }), 1);
    assert.equal(valueOf(s, 'pgpilot_wal_receiver_streaming'), 0);
    assert.equal(valueOf(s, 'pgpilot_wal_receive_lsn_bytes'), 90_000_000);
    assert.equal(s.filter((x) => x.name === 'pgpilot_replication_lag_bytes').length, 0);
  });

  void it('leaves out what cannot be read now: postgres down after a good scrape clears its series', async () => {
    let pg: LocalPostgres = runningPrimary();
    let reads = 0;
    const metrics = metricsWith({
      snapshot: () => snapshotWith(pg),
      postgresStats: () => {
        reads += 1;
        return Promise.resolve(leaderStats());
      },
    });
    assert.equal(valueOf(parseExposition(await metrics.render()), 'pgpilot_max_connections'), 100);
    pg = stopped();
    const s = parseExposition(await metrics.render());
    assert.equal(reads, 1, 'no statistics read while the loop sees postgres stopped');
    assert.equal(valueOf(s, 'pgpilot_up'), 0);
    assert.equal(valueOf(s, 'pgpilot_role', { role: 'stopped' }), 1);
    for (const name of ['pgpilot_max_connections', 'pgpilot_wal_lsn_bytes', 'pgpilot_timeline', 'pgpilot_transactions_committed_total', 'pgpilot_replication_lag_bytes']) {
      assert.equal(valueOf(s, name), undefined, `${name} is absent, not stale`);
    }
    assert.equal(valueOf(s, 'pgpilot_scrape_error'), 0, 'a stopped postgres is not a scrape error');
  });

  void it('exports certificate expiry per certificate, and reports an unreadable one instead of failing the scrape', async () => {
    const errors: string[] = [];
    let readable = true;
    const metrics = metricsWith({
      snapshot: () => snapshotWith(runningPrimary()),
      certificates: () => {
        if (!readable) throw new Error('cannot read node.crt');
        return [
          { name: 'node', notAfterEpochMs: 1_800_000_000_000 },
          { name: 'ca', notAfterEpochMs: 2_100_000_000_500 },
        ];
      },
      onCollectError: (what, message) => errors.push(`${what}: ${message}`),
    });
    const s = parseExposition(await metrics.render());
    assert.equal(valueOf(s, 'pgpilot_tls_certificate_expiry_timestamp_seconds', { certificate: 'node' }), 1_800_000_000);
    assert.equal(valueOf(s, 'pgpilot_tls_certificate_expiry_timestamp_seconds', { certificate: 'ca' }), 2_100_000_000.5);
    readable = false;
    const after = parseExposition(await metrics.render());
    assert.equal(valueOf(after, 'pgpilot_tls_certificate_expiry_timestamp_seconds', { certificate: 'node' }), undefined, 'absent, not stale');
    assert.equal(valueOf(after, 'pgpilot_up'), 1, 'the rest of the scrape is there');
    assert.deepEqual(errors, ['certificates: cannot read node.crt']);
    const without = parseExposition(await metricsWith({ snapshot: () => snapshotWith(runningPrimary()) }).render());
    assert.ok(!without.some((sample) => sample.name === 'pgpilot_tls_certificate_expiry_timestamp_seconds'), 'not registered without a source');
  });

  void it('is bounded in time: a postgres that never answers cannot hold the scrape', async () => {
    const errors: string[] = [];
    const metrics = metricsWith({
      snapshot: () => snapshotWith(runningPrimary()),
      holdsLeader: () => true,
      postgresStats: (timeoutMs) => new PostgresSampler(() => new Promise<PgClient>(() => undefined)).sample(timeoutMs),
      collectTimeoutMs: 150,
      onCollectError: (what, message) => errors.push(`${what}: ${message}`),
    });
    const started = performance.now();
    const s = parseExposition(await metrics.render());
    const elapsedMs = performance.now() - started;
    assert.ok(elapsedMs < 1_000, `scrape took ${Math.round(elapsedMs)} ms`);
    assert.equal(valueOf(s, 'pgpilot_scrape_error'), 1);
    assert.equal(valueOf(s, 'pgpilot_is_leader'), 1, 'agent-side series are still there');
    assert.equal(valueOf(s, 'pgpilot_up'), 1);
    assert.equal(valueOf(s, 'pgpilot_max_connections'), undefined);
    assert.match(errors.join('\n'), /postgres statistics took longer than 150 ms/);
  });

  void it('shares one read between concurrent scrapes', async () => {
    let reads = 0;
    let release: (stats: PostgresStats) => void = () => undefined;
    const metrics = metricsWith({
      snapshot: () => snapshotWith(runningPrimary()),
      postgresStats: () => {
        reads += 1;
        return new Promise<PostgresStats>((resolve) => (release = resolve));
      },
    });
    const both = Promise.all([metrics.render(), metrics.render()]);
    await new Promise((resolve) => setImmediate(resolve));
    release(leaderStats());
    const [a, b] = await both;
    assert.equal(reads, 1);
    assert.equal(valueOf(parseExposition(a), 'pgpilot_max_connections'), 100);
    assert.equal(valueOf(parseExposition(b), 'pgpilot_max_connections'), 100);
  });

  void it('feeds the HA counters and the loop histogram from the hook', async () => {
    const metrics = metricsWith({ snapshot: () => null });
    metrics.leaseRenewed();
    metrics.leaseRenewed();
    metrics.leaseRenewalFailed();
    metrics.leaderChanged();
    metrics.promoted('failover');
    metrics.promoted('switchover');
    metrics.promoted('switchover');
    metrics.tickFinished(0.02);
    metrics.tickFinished(Number.NaN);
    const s = parseExposition(await metrics.render());
    assert.equal(valueOf(s, 'pgpilot_lease_renewals_total'), 2);
    assert.equal(valueOf(s, 'pgpilot_lease_renewal_failures_total'), 1);
    assert.equal(valueOf(s, 'pgpilot_leader_changes_total'), 1);
    assert.equal(valueOf(s, 'pgpilot_failovers_total'), 1);
    assert.equal(valueOf(s, 'pgpilot_switchovers_total'), 2);
    assert.equal(valueOf(s, 'pgpilot_ha_loop_duration_seconds_count'), 1);
    assert.equal(valueOf(s, 'pgpilot_ha_loop_duration_seconds_bucket', { le: '0.025' }), 1);
    assert.equal(valueOf(s, 'pgpilot_up'), 0, 'no snapshot yet: postgres is not known to run');
    assert.equal(valueOf(s, 'pgpilot_role', { role: 'unknown' }), 1);
  });

  void it('exports archive series only while archive_mode is on, and backup series only with a backup source', async () => {
    const metrics = metricsWith({
      snapshot: () => snapshotWith(runningPrimary()),
      postgresStats: () => Promise.resolve(leaderStats({ archiver: { archivedCount: 12, failedCount: 3, lastArchivedEpochSeconds: 1_700_000_000, lastFailedEpochSeconds: null } })),
      backupStatus: () => Promise.resolve({ lastSuccessEpochSeconds: 1_700_000_500, lastSizeBytes: 123_456, lastDurationSeconds: 42, failuresTotal: 1 }),
    });
    const s = parseExposition(await metrics.render());
    assert.equal(valueOf(s, 'pgpilot_wal_archived_total'), 12);
    assert.equal(valueOf(s, 'pgpilot_wal_archive_failures_total'), 3);
    assert.equal(valueOf(s, 'pgpilot_wal_archive_last_success_timestamp_seconds'), 1_700_000_000);
    assert.equal(valueOf(s, 'pgpilot_wal_archive_last_failure_timestamp_seconds'), undefined, 'never failed: no timestamp, not 0');
    assert.equal(valueOf(s, 'pgpilot_backup_last_success_timestamp_seconds'), 1_700_000_500);
    assert.equal(valueOf(s, 'pgpilot_backup_last_size_bytes'), 123_456);
    assert.equal(valueOf(s, 'pgpilot_backup_failures_total'), 1);
  });

  void it('reports the data disk from statfs', async () => {
    const metrics = metricsWith({ snapshot: () => null, dataDirectory: '/' });
    const s = parseExposition(await metrics.render());
    const size = valueOf(s, 'pgpilot_data_disk_size_bytes') ?? 0;
    const available = valueOf(s, 'pgpilot_data_disk_available_bytes') ?? -1;
    assert.ok(size > 0 && available >= 0 && available <= size, `${available} of ${size}`);
    const missing = metricsWith({ snapshot: () => null, dataDirectory: '/nonexistent/pgdata' });
    assert.equal(valueOf(parseExposition(await missing.render()), 'pgpilot_data_disk_size_bytes'), undefined);
  });
});

void describe('PostgresSampler', () => {
  void it('keeps one read in flight: a stuck postgres costs one connection, and every scrape still ends at its deadline', async () => {
    let connects = 0;
    const sampler = new PostgresSampler(() => {
      connects += 1;
      return new Promise<PgClient>(() => undefined);
    });
    const results = await Promise.allSettled([sampler.sample(50), sampler.sample(80)]);
    const again = await Promise.allSettled([sampler.sample(30)]);
    assert.equal(connects, 1);
    for (const r of [...results, ...again]) {
      assert.ok(r.status === 'rejected');
      assert.match(String(r.reason), /took longer than/);
    }
  });

  void it('drops a failed connection and connects again on the next scrape', async () => {
    let connects = 0;
    let ended = 0;
    const fakeClient = {
      on: () => undefined,
      query: () => Promise.reject(new Error('terminating connection due to administrator command')),
      end: () => {
        ended += 1;
        return Promise.resolve();
      },
    } as unknown as PgClient;
    const sampler = new PostgresSampler(() => {
      connects += 1;
      return Promise.resolve(fakeClient);
    });
    await assert.rejects(sampler.sample(1_000), /administrator command/);
    await assert.rejects(sampler.sample(1_000), /administrator command/);
    assert.equal(connects, 2);
    assert.equal(ended, 2);
  });
});

void describe('GET /metrics', () => {
  void it('answers without a token in the Prometheus text format and leaks no secret; 404 when metrics are off', async () => {
    const token = 's'.repeat(40);
    const metrics = metricsWith({ snapshot: () => snapshotWith(runningPrimary()), holdsLeader: () => true, postgresStats: () => Promise.resolve(leaderStats()) });
    const snapshot = snapshotWith(runningPrimary());
    const app = buildApi({ snapshot: () => snapshot, config: () => defaultDynamicConfig(), holdsLeader: () => true, apiToken: token, requestRestart: () => undefined, metrics });
    try {
      const response = await app.inject({ method: 'GET', url: '/metrics' });
      assert.equal(response.statusCode, 200);
      assert.match(String(response.headers['content-type']), /^text\/plain; version=0\.0\.4/);
      assert.ok(response.body.includes('pgpilot_is_leader{cluster="demo",node="node1"} 1'));
      assert.ok(!response.body.includes(token));
      assert.ok(!/password|secret|token/i.test(response.body), 'no secret-looking names or values');
    } finally {
      await app.close();
    }
    const off = buildApi({ snapshot: () => snapshot, config: () => defaultDynamicConfig(), holdsLeader: () => true, apiToken: token, requestRestart: () => undefined });
    try {
      assert.equal((await off.inject({ method: 'GET', url: '/metrics' })).statusCode, 404);
    } finally {
      await off.close();
    }
  });
});
