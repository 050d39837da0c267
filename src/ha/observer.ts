/**
 * Observation: everything `decide` reads, gathered once per tick (src/ha/observation.ts). In order:
 * the lease is renewed first (src/ha/lease-keeper.ts), then the whole cluster prefix is read in
 * one request: /config (validated; an unreadable value never means the defaults), the member
 * records this agent trusts (src/ha/member-trust.ts), the leader key as judged by rules L1-L3
 * (src/ha/leader-trust.ts), the intent, history and /sync; then the local postgres; then, only
 * where the mode calls for it, the failsafe check of every member (leader side, etcd
 * unreachable), the leader's synchronous replication state and the peers' live positions
 * (candidate side, sync mode). Invariants: etcd failing to answer is an observation
 * (`unreachable`), never an exception; what this agent refuses to trust in etcd is raised as an
 * alert once (src/ha/alerts.ts) and cleared when gone; every read of the agent's memory
 * (crashes, streaming, last healthy) is updated here and only here.
 */
import { defaultDynamicConfig, type DynamicConfig, type Tags } from '../config/schema.js';
import { parseStoredConfig } from '../config/stored-config.js';
import { screenParameters } from '../postgres/parameter-policy.js';
import { errorMessage } from '../shared/errors.js';
import { isLsn } from '../shared/lsn.js';
import type { LocalPostgres } from '../state/agent-snapshot.js';
import type { DcsView, PublishedSync } from '../state/dcs-view.js';
import type { HaMetrics } from '../state/ha-metrics.js';
import { parseHistory } from '../state/history.js';
import { parseIntent } from '../state/intent.js';
import type { MemberRecord } from '../state/member-record.js';
import { parseSyncSet } from '../state/sync-record.js';
import type { AgentMemory } from './agent-memory.js';
import type { AlertBoard } from './alerts.js';
import { failsafeDeadlineMs } from './decide.js';
import type { FailsafeRequest, PeerProbe } from './failsafe.js';
import type { LeaseKeeper } from './lease-keeper.js';
import { assessLeaderKey, type LeaderAssessment } from './leader-trust.js';
import { trustedMemberRecords } from './member-trust.js';
import type { LeaderSyncState, LongTaskState, Observation } from './observation.js';
import type { SynchronousState } from './postgres-node.js';
import { SYNC_DEGRADE_GRACE_MS, parseStandbyNames, standbysInForce, type PeerPosition, type PeerPositionSource } from './sync-set.js';
import { failsafeHoldMs, failsafeProbeTimeoutMs, fenceMarginMs, leaseDeadlineMs } from './timing.js';
import type { HaPartDeps } from './ha-part-deps.js';

/** Where an agent keeps its last valid /config (src/config/last-good-config.ts); absent: in memory only. */
export interface LastGoodConfigStore {
  load(): Promise<DynamicConfig | null>;
  save(config: DynamicConfig): Promise<void>;
}

/** Sync mode: time after synchronous_standby_names changed before the leader trusts it is in force everywhere. */
const SYNC_SETTLE_MS = 100;

/** Sync mode: how long a candidate waits for a peer's position (the election waits at most this per tick). */
const PEER_POSITION_TIMEOUT_MS = 500;

export interface ObserverDeps extends HaPartDeps {
  tags: Tags;
  metrics: HaMetrics;
  alerts: AlertBoard;
  knownHosts: readonly string[];
  leaseKeeper: LeaseKeeper;
  agentStartedMs: number;
  lastGoodConfig?: LastGoodConfigStore;
  peerProbe?: PeerProbe;
  peerPositions?: PeerPositionSource;
  /** The latest view of etcd that could be read (the failsafe check asks the members it names). */
  lastReachable(): Extract<DcsView, { kind: 'reachable' }> | null;
  /** The long task running now (null: none). */
  longTask(): LongTaskState | null;
}

export class Observer {
  private configValue: DynamicConfig = defaultDynamicConfig();
  /** The last non-null leader this agent saw (leader-change counting only). */
  private lastSeenLeader: string | null = null;
  /** Sync mode, leader: when the current synchronous_standby_names was first seen, and the LSN once it was in force. */
  private syncApplied: { standbyNames: string; sinceMs: number; lsn: string | null } | null = null;
  /** When this leader's running primary was first observed in the current streak (null: not leading a running primary). */
  private leadingPrimarySinceMs: number | null = null;
  /** The last leader key this agent trusted (src/ha/leader-trust.ts). */
  private lastTrustedLeader: string | null = null;
  /** The untrusted leader key seen last (value, lease) and since when. */
  private untrustedLeaderSeen: { value: string; leaseId: string | null; sinceMs: number } | null = null;
  /** The last-good copy: loaded once before the first read of /config; the JSON last saved. */
  private lastGoodLoaded = false;
  private lastGoodSavedJson: string | null = null;

  constructor(private readonly deps: ObserverDeps) {}

  /** The dynamic config in force: the last valid /config (the defaults before the first read). */
  get config(): DynamicConfig {
    return this.configValue;
  }

  /** One tick's observation; `phaseTimer` records where its time went (etcd, postgres, peers). */
  async observe(phaseTimer: () => (name: string) => void): Promise<Observation> {
    const lap = phaseTimer();
    const dcs = await this.observeDcs();
    lap('etcd');
    const pg = await this.observePostgres();
    lap('postgres');
    await this.failsafeCheck(dcs, pg);
    const leaderSync = await this.observeLeaderSync(dcs, pg);
    const peerPositions = await this.observePeerPositions(dcs, pg);
    lap('peers');
    const { memory } = this.deps;
    return {
      nowMs: this.deps.clock.nowMs(),
      node: this.deps.node,
      agentStartedMs: this.deps.agentStartedMs,
      config: this.configValue,
      tags: this.deps.tags,
      dcs,
      lease: { holdsLeader: memory.holdsLeader, lastRenewedMs: memory.lastRenewedMs, ttlSeconds: memory.leaseTtlSeconds ?? this.configValue.ttlSeconds, grantedMs: memory.leaseGrantedMs },
      pg,
      configuredUpstream: memory.configuredUpstream,
      longTask: this.deps.longTask(),
      lastHealthyMs: memory.lastHealthyMs,
      notStreamingSinceMs: memory.notStreamingSinceMs,
      restartRequested: memory.restartRequested,
      consecutiveCrashes: memory.consecutiveCrashes,
      lastLeaderSeenMs: memory.lastLeaderSeenMs,
      dataTaskFailures: memory.dataTaskFailures,
      failsafe: memory.failsafe,
      failsafeAck: memory.failsafeAck,
      leaderSync,
      ...(peerPositions === null ? {} : { peerPositions }),
    };
  }

  /**
   * Sync mode, on the leader's running primary: synchronous_standby_names and the walsenders, and
   * `appliedLsn`: the leader's WAL position read at the first tick where the walsenders show the
   * current value in force (sync_state) and at least SYNC_SETTLE_MS after it was first seen (the
   * reload reaches every process within that). Every commit acknowledged before the new value was in
   * force has an LSN at or below it (src/ha/sync-set.ts C2). Also read with sync mode off while a
   * /sync key exists, so the leader can retire a set it managed.
   */
  private async observeLeaderSync(dcs: DcsView, pg: LocalPostgres): Promise<LeaderSyncState | null> {
    const wanted = dcs.kind === 'reachable' && (this.configValue.synchronous === 'quorum' || (dcs.sync ?? null) !== null);
    if (!this.deps.memory.holdsLeader || pg.kind !== 'running' || pg.inRecovery) this.leadingPrimarySinceMs = null;
    if (!wanted || !this.deps.memory.holdsLeader || pg.kind !== 'running' || pg.inRecovery) {
      this.syncApplied = null;
      return null;
    }
    let state: SynchronousState;
    try {
      state = await this.deps.pg.synchronousState();
    } catch (error) {
      this.deps.log.warn({ err: errorMessage(error) }, 'could not read the synchronous replication state');
      return null;
    }
    const nowMs = this.deps.clock.nowMs();
    this.leadingPrimarySinceMs ??= nowMs;
    if (this.syncApplied?.standbyNames !== state.standbyNames) this.syncApplied = { standbyNames: state.standbyNames, sinceMs: nowMs, lsn: null };
    const parsed = parseStandbyNames(state.standbyNames);
    if (this.syncApplied.lsn === null && parsed !== null && nowMs - this.syncApplied.sinceMs >= SYNC_SETTLE_MS && standbysInForce(parsed, state.standbys)) {
      this.syncApplied.lsn = state.currentLsn;
    }
    return {
      standbyNames: state.standbyNames,
      replication: state.standbys.map((r) => ({ name: r.name, state: r.state, flushLsn: r.flushLsn })),
      appliedLsn: this.syncApplied.lsn,
      degradeGraceActive: nowMs - this.leadingPrimarySinceMs < SYNC_DEGRADE_GRACE_MS,
    };
  }

  /**
   * Sync mode, no leader, this node a running standby in the published set: ask every other member
   * of the set for its live position, in parallel, each within PEER_POSITION_TIMEOUT_MS. Read after
   * the leader key was seen free, so every answer is taken after the old leader stopped writing (it
   * fences before its key can expire): fresh, as the promotion rule requires.
   */
  private async observePeerPositions(dcs: DcsView, pg: LocalPostgres): Promise<PeerPosition[] | null> {
    if (this.configValue.synchronous !== 'quorum' || dcs.kind !== 'reachable' || dcs.leader !== null) return null;
    if (pg.kind !== 'running' || !pg.inRecovery) return null;
    const set = dcs.sync?.set ?? null;
    const source = this.deps.peerPositions;
    if (set === null || source === undefined || !set.members.includes(this.deps.node)) return null;
    const peers = set.members
      .filter((name) => name !== this.deps.node)
      .map((name) => dcs.members.find((m) => m.name === name))
      .filter((m): m is MemberRecord => m !== undefined);
    const answers = await Promise.all(peers.map((m) => source.position({ name: m.name, apiUrl: m.apiUrl }, PEER_POSITION_TIMEOUT_MS).catch(() => null)));
    return answers.filter((a): a is PeerPosition => a !== null && a.name !== this.deps.node);
  }

  /**
   * Failsafe mode, leader side (src/ha/failsafe.ts): while etcd is unreachable and this node runs
   * the primary, ask every member it last saw in etcd to accept it, in parallel, each within half
   * the fence margin. Only a permission still in force (the lease deadline, or the last all-members
   * check) is extended, so the members' promises never leave a gap. Cleared once the key is held
   * again or postgres is no longer a primary.
   */
  private async failsafeCheck(dcs: DcsView, pg: LocalPostgres): Promise<void> {
    const { memory, clock, node } = this.deps;
    if (pg.kind !== 'running' || pg.inRecovery) {
      memory.failsafe = null;
      return;
    }
    if (dcs.kind === 'reachable') {
      if (memory.holdsLeader) memory.failsafe = null;
      return;
    }
    const probe = this.deps.peerProbe;
    const lastReachable = this.deps.lastReachable();
    if (!this.configValue.failsafe || probe === undefined || lastReachable === null) return;
    const startedMs = clock.nowMs();
    const ttlSeconds = memory.leaseTtlSeconds ?? this.configValue.ttlSeconds;
    const leaseValid = memory.holdsLeader && memory.lastRenewedMs !== null && startedMs < leaseDeadlineMs(memory.lastRenewedMs, ttlSeconds);
    const previous = memory.failsafe === null ? null : failsafeDeadlineMs(memory.failsafe);
    if (!leaseValid && (previous === null || startedMs >= previous)) return;
    const request: FailsafeRequest = { leader: node, holdMs: failsafeHoldMs(ttlSeconds) };
    const timeoutMs = failsafeProbeTimeoutMs(ttlSeconds);
    const peers = lastReachable.members.filter((m) => m.name !== node).map((m) => ({ name: m.name, apiUrl: m.apiUrl }));
    const answers = await Promise.all(
      peers.map(async (peer) => {
        try {
          const answer = await probe.check(peer, request, timeoutMs);
          return { name: peer.name, accepted: answer.accepted && answer.node === peer.name, reason: answer.reason };
        } catch (error) {
          return { name: peer.name, accepted: false, reason: errorMessage(error) };
        }
      }),
    );
    // A promise given later than the fence margin after the check started could begin after the
    // member's previous one ended: such a check counts for nothing.
    const tooSlow = clock.nowMs() - startedMs >= fenceMarginMs(ttlSeconds);
    const refused = answers.filter((a) => !a.accepted || tooSlow);
    if (refused.length > 0) this.deps.log.warn({ refused: refused.map((a) => `${a.name}: ${a.reason ?? (tooSlow ? 'check too slow' : 'refused')}`) }, 'failsafe check failed');
    memory.failsafe = {
      checkedAtMs: startedMs,
      holdMs: request.holdMs,
      reachable: answers.filter((a) => a.accepted && !tooSlow).map((a) => a.name),
      unreachable: refused.map((a) => a.name),
    };
  }

  private async observePostgres(): Promise<LocalPostgres> {
    const { memory } = this.deps;
    const pg = withStandbyTimeline(await this.deps.pg.observe(), memory);
    memory.standbyTimeline = pg.kind === 'running' && pg.inRecovery ? { pid: pg.pid, timeline: pg.timeline } : null;
    if (pg.kind === 'stopped') return { ...pg, crashed: memory.crashed };
    if (pg.kind === 'running') {
      memory.crashed = false;
      memory.consecutiveCrashes = 0;
      memory.lastHealthyMs = this.deps.clock.nowMs();
    }
    const notStreaming = pg.kind === 'running' && pg.inRecovery && pg.walReceiverStatus !== 'streaming';
    memory.notStreamingSinceMs = notStreaming ? (memory.notStreamingSinceMs ?? this.deps.clock.nowMs()) : null;
    return pg;
  }

  /** Renews (or re-grants) the lease first, then reads the whole cluster prefix in one request. */
  private async observeDcs(): Promise<DcsView> {
    const { dcs, keys, memory, clock, alerts } = this.deps;
    try {
      await this.deps.leaseKeeper.renewOrGrant();
      const entries = await dcs.getPrefixWithLeases(keys.root);
      const all = new Map([...entries].map(([key, entry]) => [key, entry.value] as const));
      await this.readConfig(all.get(keys.config) ?? null);
      const { members, ignored } = trustedMemberRecords(all, keys, this.deps.knownHosts);
      if (ignored.length > 0) alerts.raise('member-ignored', 'warning', `ignored member records: ${ignored.map((m) => `${m.name} (${m.reason})`).join('; ')}`);
      else alerts.clear('member-ignored');
      const leaderEntry = entries.get(keys.leader) ?? null;
      const leader = this.assessLeader(leaderEntry, members, clock.nowMs());
      if (leaderEntry?.value !== this.deps.node) memory.holdsLeader = false;
      if (leader.leader !== null && this.lastSeenLeader !== null && leader.leader !== this.lastSeenLeader) this.deps.metrics.leaderChanged();
      if (leader.leader !== null) this.lastSeenLeader = leader.leader;
      if (leader.leader !== null) memory.lastLeaderSeenMs = clock.nowMs();
      await this.deps.leaseKeeper.regrantIfTtlChanged();
      return {
        kind: 'reachable',
        leader: leader.leader,
        untrustedLeader: leader.untrusted,
        initialize: all.get(keys.initialize) ?? null,
        members,
        lastLeaderLsn: validLsnOrNull(all.get(keys.lastLsn)),
        intent: parseIntent(all.get(keys.failover) ?? null),
        historyTimeline: parseHistory(all.get(keys.history) ?? null).at(-1)?.timeline ?? null,
        sync: syncOf(all.get(keys.sync)),
      };
    } catch (error) {
      return { kind: 'unreachable', error: errorMessage(error) };
    }
  }

  /**
   * Parses /config. A valid value becomes the config (and the last-good copy, saved when it
   * changed); a missing key keeps the current one (the defaults on a new cluster: bootstrap writes
   * it); an unreadable value NEVER means the defaults: the last good copy stays in force, with a
   * `critical` alert naming the reason. Forbidden postgres parameters in a valid value raise a
   * `warning` (they are dropped when postgresql.conf is rendered, src/postgres/parameter-policy.ts).
   */
  private async readConfig(raw: string | null): Promise<void> {
    const { alerts } = this.deps;
    const store = this.deps.lastGoodConfig;
    if (!this.lastGoodLoaded) {
      this.lastGoodLoaded = true;
      const saved = await store?.load().catch(() => null);
      if (saved !== undefined && saved !== null) {
        this.configValue = saved;
        this.lastGoodSavedJson = JSON.stringify(saved);
      }
    }
    if (raw === null) {
      alerts.clear('config-unreadable');
    } else {
      const parsed = parseStoredConfig(raw);
      if (parsed.kind === 'invalid') {
        const cluster = this.deps.keys.root.split('/')[2] ?? 'NAME';
        alerts.raise('config-unreadable', 'critical', `/config is unreadable (${parsed.reason}); using the last good copy; run pgpilot config repair ${cluster}`);
      } else {
        alerts.clear('config-unreadable');
        this.configValue = parsed.config;
        const json = JSON.stringify(parsed.config);
        if (store !== undefined && json !== this.lastGoodSavedJson) {
          try {
            await store.save(parsed.config);
            this.lastGoodSavedJson = json;
          } catch (error) {
            this.deps.log.warn({ err: errorMessage(error) }, 'could not save the last good copy of /config');
          }
        }
      }
    }
    const rejected = screenParameters(this.configValue.postgresql.parameters).rejected;
    if (rejected.length > 0) alerts.raise('config-rejected', 'warning', `dropped postgres parameters from /config: ${rejected.map((r) => r.reason).join('; ')}`);
    else alerts.clear('config-rejected');
  }

  /** Rules L1-L3 (src/ha/leader-trust.ts): which leader this tick acts on; an untrusted key is reported once. */
  private assessLeader(entry: { value: string; leaseId: string | null } | null, members: readonly MemberRecord[], nowMs: number): LeaderAssessment {
    const seen = this.untrustedLeaderSeen;
    const same = seen !== null && entry !== null && seen.value === entry.value && seen.leaseId === entry.leaseId;
    const assessment = assessLeaderKey({
      self: this.deps.node,
      key: entry,
      members,
      lastTrustedLeader: this.lastTrustedLeader,
      untrustedSinceMs: same ? seen.sinceMs : null,
      nowMs,
      ttlSeconds: this.configValue.ttlSeconds,
    });
    if (assessment.untrusted === null) {
      this.untrustedLeaderSeen = null;
      this.deps.alerts.clear('leader-key-ignored');
      if (entry !== null) this.lastTrustedLeader = entry.value;
      return assessment;
    }
    if (!same && entry !== null) this.untrustedLeaderSeen = { value: entry.value, leaseId: entry.leaseId, sinceMs: nowMs };
    this.deps.alerts.raise('leader-key-ignored', 'warning', `leader key ${JSON.stringify(assessment.untrusted.value.slice(0, 64))} not trusted: ${assessment.untrusted.reason}`);
    return assessment;
  }
}

/**
 * A standby reports the timeline it receives while it streams and its last restartpoint's when the
 * stream drops (the leader died): keep the highest seen by this postmaster, so a healthy standby
 * does not look `timeline-behind` right after losing its leader.
 */
export function withStandbyTimeline(pg: LocalPostgres, memory: Pick<AgentMemory, 'standbyTimeline'>): LocalPostgres {
  const known = memory.standbyTimeline;
  if (pg.kind !== 'running' || !pg.inRecovery || known === null || known.pid !== pg.pid || known.timeline <= pg.timeline) return pg;
  return { ...pg, timeline: known.timeline };
}

function syncOf(raw: string | undefined): PublishedSync | null {
  return raw === undefined ? null : { raw, set: parseSyncSet(raw) };
}

function validLsnOrNull(text: string | undefined): string | null {
  return text !== undefined && isLsn(text) ? text : null;
}
