/**
 * Builders for `Observation` (src/ha/observation.ts) and `MemberRecord` (src/state/member-record.ts):
 * complete, valid defaults that each test overrides only where it matters, so a table row states
 * the one fact it is about. Defaults describe a calm world: etcd reachable, cluster initialized,
 * no leader, no operator intent, this node ('node1') a running streaming replica long past its
 * start-up grace and healthy a second ago (so not a fresh agent: rule C5 needs `lastHealthyMs: null`),
 * lease renewed just now, no long task, `notStreamingSinceMs` null, no restart request. Builders never share
 * mutable state between calls.
 */
import { defaultDynamicConfig, type DynamicConfig, type Tags } from '../../src/config/schema.js';
import type { MemberRecord } from '../../src/state/member-record.js';
import type { FailoverIntent } from '../../src/state/intent.js';
import type { FailsafeAck, FailsafeCheck } from '../../src/ha/failsafe.js';
import type { DcsView } from '../../src/state/dcs-view.js';
import type { LeaseState, LongTaskState, Observation } from '../../src/ha/observation.js';
import type { LocalPostgres } from '../../src/state/agent-snapshot.js';

export const DEFAULT_NOW_MS = 1_700_000_100_000;
export const DEFAULT_NODE = 'node1';
export const DEFAULT_SYSTEM_ID = '7712280022764410088';

type Reachable = Extract<DcsView, { kind: 'reachable' }>;
type Running = Extract<LocalPostgres, { kind: 'running' }>;
type Stopped = Extract<LocalPostgres, { kind: 'stopped' }>;
type Starting = Extract<LocalPostgres, { kind: 'starting' }>;

/** A member record as an agent publishes it for a running streaming replica; override freely. */
export function memberRecord(overrides: Partial<MemberRecord> & { name: string }): MemberRecord {
  const index = Number(/\d+$/.exec(overrides.name)?.[0] ?? '1');
  return {
    role: 'replica',
    state: 'running',
    host: '127.0.0.1',
    port: 5430 + index,
    apiUrl: `http://127.0.0.1:${8000 + index}`,
    proxyPort: 6430 + index,
    replicaProxyPort: 7430 + index,
    proxy: null,
    pid: 1000 + index,
    postgresPid: 2000 + index,
    timeline: 1,
    lsn: '0/3000000',
    receiveLsn: '0/3000000',
    following: null,
    streaming: true,
    cleanShutdownPrimary: false,
    tags: {},
    replication: [],
    systemIdentifier: DEFAULT_SYSTEM_ID,
    version: '0.1.0',
    updatedAtMs: DEFAULT_NOW_MS,
    ...overrides,
  };
}

/** A running leader's record (primary, not streaming, following nobody). */
export function primaryRecord(overrides: Partial<MemberRecord> & { name: string }): MemberRecord {
  return memberRecord({ role: 'primary', following: null, streaming: false, ...overrides });
}

export function reachable(overrides: Partial<Omit<Reachable, 'kind'>> = {}): Reachable {
  return { kind: 'reachable', leader: null, initialize: DEFAULT_SYSTEM_ID, members: [], lastLeaderLsn: null, intent: null, ...overrides };
}

export function unreachable(error = 'DCS unreachable from node1'): DcsView {
  return { kind: 'unreachable', error };
}

export function noData(): LocalPostgres {
  return { kind: 'no-data' };
}

export function running(overrides: Partial<Omit<Running, 'kind'>> = {}): Running {
  return {
    kind: 'running',
    pid: 4242,
    inRecovery: true,
    timeline: 1,
    lsn: '0/3000000',
    receiveLsn: '0/3000000',
    walReceiverStatus: 'streaming',
    systemIdentifier: DEFAULT_SYSTEM_ID,
    ...overrides,
  };
}

/** A running writable primary (not in recovery, no WAL receiver). */
export function runningPrimary(overrides: Partial<Omit<Running, 'kind'>> = {}): Running {
  return running({ inRecovery: false, receiveLsn: null, walReceiverStatus: null, ...overrides });
}

export function stopped(overrides: Partial<Omit<Stopped, 'kind'>> = {}): Stopped {
  return {
    kind: 'stopped',
    clusterState: 'shut down in recovery',
    cleanShutdownPrimary: false,
    wasPrimary: false,
    timeline: 1,
    lsn: '0/3000000',
    systemIdentifier: DEFAULT_SYSTEM_ID,
    crashed: false,
    ...overrides,
  };
}

/** A data directory cleanly shut down as primary (pg_controldata: "shut down"). */
export function stoppedCleanPrimary(overrides: Partial<Omit<Stopped, 'kind'>> = {}): Stopped {
  return stopped({ clusterState: 'shut down', cleanShutdownPrimary: true, wasPrimary: true, ...overrides });
}

/** A data directory of a primary that stopped without a shutdown checkpoint (crash, fencing). */
export function stoppedCrashedPrimary(overrides: Partial<Omit<Stopped, 'kind'>> = {}): Stopped {
  return stopped({ clusterState: 'in production', cleanShutdownPrimary: false, wasPrimary: true, ...overrides });
}

/** A switchover/failover intent as the CLI writes it under /failover. */
export function intent(overrides: Partial<FailoverIntent> = {}): FailoverIntent {
  return { kind: 'switchover', from: 'node2', to: null, requestedAtMs: DEFAULT_NOW_MS - 1_000, ...overrides };
}

export function starting(overrides: Partial<Omit<Starting, 'kind'>> = {}): Starting {
  return { kind: 'starting', pid: 4242, sinceMs: DEFAULT_NOW_MS - 500, ...overrides };
}

export interface ObservationOverrides {
  nowMs?: number;
  node?: string;
  agentStartedMs?: number;
  /** Merged over the default dynamic config, with the TTL pinned to 6 s (the decide tables are written in its numbers). */
  config?: Partial<DynamicConfig>;
  tags?: Tags;
  dcs?: DcsView;
  lease?: Partial<LeaseState>;
  pg?: LocalPostgres;
  configuredUpstream?: string | null;
  longTask?: LongTaskState | null;
  lastHealthyMs?: number | null;
  /** Since when a running standby has not been streaming; default null (streaming, or not a standby). */
  notStreamingSinceMs?: number | null;
  /** An operator asked for a postgres restart; default false. */
  restartRequested?: boolean;
  /** Unexpected postmaster exits since postgres last ran healthy; default 0. */
  consecutiveCrashes?: number;
  /** Last time a leader key was seen; default null. */
  lastLeaderSeenMs?: number | null;
  dataTaskFailures?: { count: number; lastFailedMs: number } | null;
  /** Failsafe: the leader's latest all-members check; default null. */
  failsafe?: FailsafeCheck | null;
  /** Failsafe: this member's promise to a failsafe leader; default null. */
  failsafeAck?: FailsafeAck | null;
}

export function observation(overrides: ObservationOverrides = {}): Observation {
  const nowMs = overrides.nowMs ?? DEFAULT_NOW_MS;
  const config = { ...defaultDynamicConfig(), ttlSeconds: 6, ...overrides.config };
  return {
    nowMs,
    node: overrides.node ?? DEFAULT_NODE,
    agentStartedMs: overrides.agentStartedMs ?? nowMs - 3_600_000,
    config,
    tags: overrides.tags ?? {},
    dcs: overrides.dcs ?? reachable(),
    // The lease carries the TTL it was granted with; by default the configured one.
    lease: { holdsLeader: false, lastRenewedMs: nowMs, ttlSeconds: config.ttlSeconds, ...overrides.lease },
    pg: overrides.pg ?? running(),
    configuredUpstream: overrides.configuredUpstream === undefined ? null : overrides.configuredUpstream,
    longTask: overrides.longTask ?? null,
    lastHealthyMs: overrides.lastHealthyMs === undefined ? nowMs - 1_000 : overrides.lastHealthyMs,
    notStreamingSinceMs: overrides.notStreamingSinceMs ?? null,
    restartRequested: overrides.restartRequested ?? false,
    consecutiveCrashes: overrides.consecutiveCrashes ?? 0,
    lastLeaderSeenMs: overrides.lastLeaderSeenMs ?? null,
    dataTaskFailures: overrides.dataTaskFailures ?? null,
    failsafe: overrides.failsafe ?? null,
    failsafeAck: overrides.failsafeAck ?? null,
  };
}
