/**
 * Builds the `status --json` contract (architecture.md §5) from what etcd says and which agents
 * count as alive (local: recorded PIDs; remote: member records). Pure: the caller (a
 * ClusterHandle, src/cluster/cluster-handle.ts) gathers the inputs, so a local and a remote
 * cluster produce the very same shape. Lag comes from the leader's
 * own pg_stat_replication read (current LSN and each standby's replay LSN in one query), so the
 * numbers are consistent; when a replica is not in that list, lag falls back to the difference
 * between the leader's and the replica's published positions. Each member also gets a one-line
 * health verdict (`memberHealth`): ok, warning or critical, and why.
 */
import { connectionUrl } from '../postgres/connection-url.js';
import { urlHost } from '../shared/ports.js';
import type { SyncSet } from '../state/sync-record.js';
import type { ClusterSecrets, Tags } from '../config/schema.js';
import { isArchiveFailing, type MemberRecord } from '../state/member-record.js';
import type { MemberAlert } from '../state/member-alert.js';
import { isLsn, lsnDiffBytes } from '../shared/lsn.js';
import { highestKnownTimeline, memberIneligibility } from '../ha/election.js';
import { notStreamingLimitMs } from '../ha/timing.js';
import { buildPoolerStatus, type PoolerSnapshot, type PoolerStatus } from '../pooler/pooler-status.js';
import type { ClusterTopology } from '../cluster/cluster-topology.js';

export interface MemberStatus {
  name: string;
  role: 'primary' | 'replica' | 'stopped' | 'unknown';
  state: string;
  host: string;
  port: number;
  proxyPort: number | null;
  replicaProxyPort: number | null;
  /** Built-in proxy counters of this node (both ports), when its agent reports. */
  proxy: { open: number; held: number; total: number; failed: number } | null;
  apiUrl: string;
  pid: number | null;
  postgresPid: number | null;
  timeline: number | null;
  lsn: string | null;
  lagBytes: number | null;
  /** Replay lag in seconds as the leader measures it (0 when caught up); null when unknown. */
  lagSeconds: number | null;
  streaming: boolean;
  tags: Tags;
  health: MemberHealth;
  /**
   * Whether this member could take a free leader key now, by the same rules the agents apply
   * (src/ha/election.ts `memberIneligibility`, from its published record); when not, why:
   * nofailover, not-running, no-position, timeline-behind, not-streaming, too-far-behind.
   * Always set by `buildClusterStatus` (optional only for hand-built values in older tests).
   */
  eligible?: boolean;
  ineligibleReason?: string | null;
  /** Sync mode: a member of the leader's published synchronous set (src/ha/sync-set.ts). Always set by `buildClusterStatus`. */
  sync?: boolean;
  /** What its agent refused to trust or could not read in etcd (src/ha/alerts.ts); they lower `health`. */
  alerts?: MemberAlert[];
}

/** Sync mode as configured, and the set the current leader published under /sync. */
export interface SynchronousStatus {
  mode: 'off' | 'quorum';
  strict: boolean;
  /** Configured k (`synchronousNodeCount`). */
  nodeCount: number;
  /** Published quorum q: every acknowledged commit is on q members (0: no synchronous set). */
  quorum: number;
  /** The published set, when the current leader published it; [] otherwise (degraded, being built, or an earlier leader's). */
  members: string[];
}

/** One line about a member: `ok` (doing its job), `warning` (in transition or behind), `critical` (down). */
export interface MemberHealth {
  status: 'ok' | 'warning' | 'critical';
  summary: string;
}

/** States of a member in a planned or automatic transition (not a failure by themselves). */
const TRANSITION_STATES = new Set(['starting', 'initializing', 'cloning', 'no data', 'clone-from', 'rejoin', 'restart', 'step-down', 'initialize-cluster']);

export const DEFAULT_MAX_LAG_BYTES = 16 * 1024 * 1024;

export interface ClusterStatus {
  cluster: string;
  leader: string | null;
  timeline: number | null;
  syncMode: 'off' | 'quorum';
  /** Always set by `buildClusterStatus` (optional only for hand-built values in older tests). */
  synchronous?: SynchronousStatus;
  etcd: 'running' | 'stopped' | 'unreachable';
  members: MemberStatus[];
  connectionString: string;
  replicaConnectionString: string;
  /** Attached apps (`pgpilot attach`), by app name; [] when none or when etcd could not be read. */
  apps?: AttachedAppStatus[];
  /** The continuous WAL archive as the members report it (pg_stat_archiver). Always set by `buildClusterStatus`. */
  archive?: ArchiveStatus;
  /** PgBouncer (`pooler enable`, src/pooler/pooler-status.ts); null when etcd could not be read. Always set by `buildClusterStatus`. */
  pooler?: PoolerStatus | null;
  /**
   * The cluster CA clients verify against, and when the first of the cluster's certificates
   * expires (ISO 8601; null when the certificates cannot be read). Always set by `buildClusterStatus`.
   */
  tls?: TlsStatus;
}

export interface TlsStatus {
  caFile: string;
  expiresAt: string | null;
}

/**
 * `failing`: some member's newest archive attempt failed (postgres retries; its pg_wal grows and
 * point-in-time recovery may have a gap until it succeeds). `idle`: nothing archived yet.
 */
export interface ArchiveStatus {
  state: 'ok' | 'failing' | 'idle' | 'unknown';
  lastArchivedWal: string | null;
  lastArchivedAt: string | null;
  failing: Array<{ node: string; wal: string | null; since: string | null; failedCount: number }>;
}

/** The cluster's archive state from the members' records (pure). */
export function archiveStatusOf(records: readonly MemberRecord[]): ArchiveStatus {
  const reporting = records.filter((r) => r.archive !== undefined && r.archive !== null);
  if (reporting.length === 0) return { state: 'unknown', lastArchivedWal: null, lastArchivedAt: null, failing: [] };
  const failing = reporting
    .filter((r) => isArchiveFailing(r.archive))
    .map((r) => ({
      node: r.name,
      wal: r.archive?.lastFailedWal ?? null,
      since: r.archive?.lastFailedAtMs === null || r.archive?.lastFailedAtMs === undefined ? null : new Date(r.archive.lastFailedAtMs).toISOString(),
      failedCount: r.archive?.failedCount ?? 0,
    }));
  let newest: { wal: string | null; atMs: number } | null = null;
  for (const r of reporting) {
    const atMs = r.archive?.lastArchivedAtMs ?? null;
    if (atMs !== null && (newest === null || atMs > newest.atMs)) newest = { wal: r.archive?.lastArchivedWal ?? null, atMs };
  }
  return {
    state: failing.length > 0 ? 'failing' : newest === null ? 'idle' : 'ok',
    lastArchivedWal: newest?.wal ?? null,
    lastArchivedAt: newest === null ? null : new Date(newest.atMs).toISOString(),
    failing,
  };
}

/** One attached app in the status: its database and role (never its password). */
export interface AttachedAppStatus {
  app: string;
  database: string;
  user: string;
}

export interface StatusInputs {
  /** The cluster's name, nodes and CA file (local: from the manifest; remote: from the context). */
  topology: ClusterTopology;
  /** The soonest expiry of the cluster's certificates (ms since the epoch), null when unreadable. */
  certificatesExpireAtMs?: number | null;
  secrets: ClusterSecrets;
  etcd: 'running' | 'stopped' | 'unreachable';
  leader: string | null;
  members: readonly MemberRecord[];
  syncMode: 'off' | 'quorum';
  /**
   * The agents counted as alive, by node name, with their PID. Local: recorded PIDs checked
   * against their command line; a member record written by another PID is stale. Remote: no PID
   * can be checked on another host, so an agent is alive when its member record exists (its lease
   * keeps it), and the PID is the one the record carries.
   */
  aliveAgents: ReadonlyMap<string, number>;
  /** The failover lag limit of the dynamic config (health verdicts); default 16 MiB. */
  maxLagBytes?: number;
  /** The leader's last published LSN (`/status/lastLsn`), for the eligibility lag rule. */
  lastLeaderLsn?: string | null;
  /** The last promotion's timeline in `/history`, for the eligibility timeline rule. */
  historyTimeline?: number | null;
  /** The dynamic config's TTL (the not-streaming limit is 2 TTLs); default 6. */
  ttlSeconds?: number;
  /** Sync mode settings and the /sync value; absent: off, nothing published. */
  synchronous?: { strict: boolean; nodeCount: number; set: SyncSet | null };
  /** Attached apps read from etcd (`/apps/`); absent: none known. */
  apps?: readonly AttachedAppStatus[];
  /** Pooler settings from etcd and the live PgBouncer PIDs; absent: unknown. */
  pooler?: PoolerSnapshot;
}

export function buildClusterStatus(input: StatusInputs): ClusterStatus {
  const records = new Map(input.members.map((m) => [m.name, m]));
  const leaderRecord = input.leader === null ? undefined : records.get(input.leader);
  const maxLagBytes = input.maxLagBytes ?? DEFAULT_MAX_LAG_BYTES;
  const lastLeaderLsn = input.lastLeaderLsn !== undefined && input.lastLeaderLsn !== null && isLsn(input.lastLeaderLsn) ? input.lastLeaderLsn : null;
  const facts = { highestTimeline: highestKnownTimeline(input.members, input.historyTimeline), notStreamingLimitMs: notStreamingLimitMs(input.ttlSeconds ?? 6) };
  const eligibility = (record: MemberRecord | null): { eligible: boolean; ineligibleReason: string | null } => {
    const reason = record === null ? 'not-running' : memberIneligibility(record, lastLeaderLsn, maxLagBytes, facts);
    return { eligible: reason === null, ineligibleReason: reason };
  };
  const withHealth = (m: Omit<MemberStatus, 'health' | 'eligible' | 'ineligibleReason'>, record: MemberRecord | null): MemberStatus => ({
    ...m,
    health: withAlerts(memberHealth(m, input.leader, maxLagBytes), record?.alerts ?? []),
    ...eligibility(record),
    alerts: record?.alerts ?? [],
  });
  const members = input.topology.nodes.map((node): MemberStatus => {
    const record = records.get(node.name);
    const agentPid = input.aliveAgents.get(node.name) ?? null;
    const base = {
      name: node.name,
      host: node.host,
      port: node.pgPort,
      proxyPort: node.proxyPort,
      replicaProxyPort: node.replicaProxyPort,
      proxy: null,
      apiUrl: `https://${urlHost(node.host)}:${node.apiPort}`,
      pid: agentPid,
      tags: {},
    };
    // A record written by an earlier agent process (etcd restores leases when it restarts, so
    // records from before a crash can linger for a TTL) says nothing about the current one.
    if (record === undefined || agentPid === null || record.pid !== agentPid) {
      return withHealth({
        ...base,
        role: agentPid === null ? 'stopped' : 'unknown',
        state: agentPid === null ? 'stopped' : 'agent running, not reporting',
        postgresPid: null,
        timeline: null,
        lsn: null,
        lagBytes: null,
        lagSeconds: null,
        streaming: false,
      }, null);
    }
    const role = record.role === 'primary' && input.leader !== record.name ? 'unknown' : record.role;
    return withHealth({
      ...base,
      proxy: record.proxy,
      tags: record.tags,
      role,
      state: record.role === 'replica' && !record.streaming && record.state === 'running' ? 'running, not streaming' : record.state,
      postgresPid: record.postgresPid,
      timeline: record.timeline,
      lsn: record.lsn,
      lagBytes: lagOf(record, leaderRecord, input.leader),
      lagSeconds: lagSecondsOf(record, leaderRecord, input.leader),
      streaming: record.streaming,
    }, record);
  });
  const leaderStatus = members.find((m) => m.name === input.leader && m.role === 'primary');
  const set = input.synchronous?.set ?? null;
  const current = set !== null && input.leader !== null && set.leader === input.leader ? set : null;
  const synchronous: SynchronousStatus = {
    mode: input.syncMode,
    strict: input.synchronous?.strict ?? false,
    nodeCount: input.synchronous?.nodeCount ?? 1,
    quorum: current?.quorum ?? 0,
    members: current?.members ?? [],
  };
  return {
    cluster: input.topology.name,
    leader: input.leader,
    timeline: leaderStatus?.timeline ?? null,
    syncMode: input.syncMode,
    synchronous,
    etcd: input.etcd,
    members: members.map((m) => ({ ...m, sync: synchronous.members.includes(m.name) })),
    ...connectionStrings(input.topology, input.secrets),
    apps: (input.apps ?? []).map((a) => ({ app: a.app, database: a.database, user: a.user })),
    archive: archiveStatusOf(input.members.filter((m) => input.aliveAgents.get(m.name) === m.pid)),
    pooler: buildPoolerStatus(input.topology, input.secrets, input.pooler),
    tls: {
      caFile: input.topology.caFile,
      expiresAt: input.certificatesExpireAtMs === undefined || input.certificatesExpireAtMs === null ? null : new Date(input.certificatesExpireAtMs).toISOString(),
    },
  };
}

function lagOf(record: MemberRecord, leader: MemberRecord | undefined, leaderName: string | null): number | null {
  if (record.name === leaderName) return record.role === 'primary' ? 0 : null;
  if (record.role !== 'replica' || leader === undefined || leader.role !== 'primary') return null;
  const entry = leader.replication.find((r) => r.applicationName === record.name);
  if (entry !== undefined && entry.lagBytes !== null) return entry.lagBytes;
  if (leader.lsn !== null && record.lsn !== null) return lsnDiffBytes(leader.lsn, record.lsn);
  return null;
}

function lagSecondsOf(record: MemberRecord, leader: MemberRecord | undefined, leaderName: string | null): number | null {
  if (record.name === leaderName) return record.role === 'primary' ? 0 : null;
  if (record.role !== 'replica' || leader === undefined || leader.role !== 'primary') return null;
  return leader.replication.find((r) => r.applicationName === record.name)?.lagSeconds ?? null;
}

/** `1.5 MiB`, `512 B`: lag for people. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/**
 * A member's verdict lowered by its agent's alerts (src/ha/alerts.ts): a `critical` alert makes it
 * critical, a `warning` one makes an `ok` member a warning; the summary names the alert.
 */
export function withAlerts(health: MemberHealth, alerts: readonly MemberAlert[]): MemberHealth {
  const worst = alerts.find((a) => a.severity === 'critical') ?? alerts.find((a) => a.severity === 'warning');
  if (worst === undefined || health.status === 'critical') return health;
  if (worst.severity === 'warning' && health.status === 'warning') return { status: 'warning', summary: `${health.summary}; ${worst.message}` };
  return { status: worst.severity, summary: `${worst.message} (${health.summary})` };
}

/** The health verdict of one member (pure): what an operator should think at a glance. */
export function memberHealth(m: Omit<MemberStatus, 'health' | 'eligible' | 'ineligibleReason'>, leader: string | null, maxLagBytes: number): MemberHealth {
  const ok = (summary: string): MemberHealth => ({ status: 'ok', summary });
  const warning = (summary: string): MemberHealth => ({ status: 'warning', summary });
  const critical = (summary: string): MemberHealth => ({ status: 'critical', summary });
  if (m.pid === null) return critical('down: agent not running');
  if (m.state === 'agent running, not reporting') return critical('agent running but not reporting to etcd');
  if (TRANSITION_STATES.has(m.state)) return warning(`in transition: ${m.state}`);
  switch (m.role) {
    case 'stopped':
      return critical(`postgres ${m.state === 'stopped' ? 'stopped' : m.state}`);
    case 'unknown':
      return m.postgresPid !== null && m.state === 'running' ? critical('runs as primary without the leader key') : warning(`state unknown: ${m.state}`);
    case 'primary':
      if (m.name !== leader) return critical('runs as primary without the leader key');
      return m.state === 'running' ? ok('leader, accepting writes') : warning(`leader, ${m.state}`);
    case 'replica': {
      if (!m.streaming) return warning(`replica not streaming${leader === null ? ' (no leader)' : ''}`);
      if (m.lagBytes === null) return warning('streaming, lag unknown');
      const seconds = m.lagSeconds === null ? '' : `, ${m.lagSeconds.toFixed(1)} s`;
      if (m.lagBytes > maxLagBytes) return warning(`lagging: ${formatBytes(m.lagBytes)} behind${seconds} (over the failover limit ${formatBytes(maxLagBytes)})`);
      return ok(`streaming, ${formatBytes(m.lagBytes)} behind${seconds}`);
    }
  }
}

/**
 * libpq multi-host URLs over every node's proxy ports, so they keep working whichever node leads
 * and whichever node is lost: each node's leader port reaches the current leader (holding the
 * connection through a switchover), each replica port a streaming replica (else the leader).
 * `target_session_attrs=read-write` makes libpq skip a port that is not (yet) on the leader.
 */
export function connectionStrings(
  topology: Pick<ClusterTopology, 'nodes' | 'caFile'>,
  secrets: ClusterSecrets,
  database = 'postgres',
): { connectionString: string; replicaConnectionString: string } {
  const common = { user: secrets.superuser.name, password: secrets.superuser.password, database, caFile: topology.caFile };
  return {
    connectionString: connectionUrl({ ...common, endpoints: topology.nodes.map((n) => ({ host: n.host, port: n.proxyPort })), targetSessionAttrs: 'read-write' }),
    replicaConnectionString: connectionUrl({ ...common, endpoints: topology.nodes.map((n) => ({ host: n.host, port: n.replicaProxyPort })), targetSessionAttrs: 'prefer-standby' }),
  };
}

/** The same URL with its password replaced, for human output. */
export function maskPassword(url: string): string {
  return url.replace(/(postgresql:\/\/[^:/@]+:)[^@]+@/, '$1****@');
}

/**
 * The same URL with no password at all (`postgresql://postgres@host:port,.../db?...`): what JSON
 * output carries unless the caller asked for secrets. The user part is percent-encoded (no `:`),
 * and so is the password (no `@`), so the first `user:...@` of the URL is exactly the credential.
 */
export function withoutPassword(url: string): string {
  return url.replace(/^(postgresql:\/\/[^:/@]+):[^@]*@/, '$1@');
}

/** The pooler part without its password (pure). */
export function poolerWithoutSecrets(pooler: PoolerStatus): PoolerStatus {
  return { ...pooler, connectionString: pooler.connectionString === null ? null : withoutPassword(pooler.connectionString) };
}

/**
 * The status contract as printed without `--show-secrets` (pure). Invariant: the connection
 * strings are the only places a `ClusterStatus` holds a secret (apps list no passwords, member
 * records no tokens), so after this nothing in it is one; test/unit/cluster-status.test.ts checks
 * the serialized result against every secret of the cluster.
 */
export function withoutSecrets<T extends ClusterStatus>(status: T): T {
  return {
    ...status,
    connectionString: withoutPassword(status.connectionString),
    replicaConnectionString: withoutPassword(status.replicaConnectionString),
    ...(status.pooler === undefined || status.pooler === null ? {} : { pooler: poolerWithoutSecrets(status.pooler) }),
  };
}
