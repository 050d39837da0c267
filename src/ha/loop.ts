/**
 * The HA loop: observe -> decide -> execute -> publish, once per `loopWaitMs` (sooner after a
 * decision that changed something, or when woken by a postmaster exit). It renews the node's
 * lease at the start of every tick, before anything else, and records when that renewal was
 * sent: the leader's fencing deadline is measured from that moment on this node's own clock.
 * Logs one summary line per tick when the summary changes (and every minute otherwise).
 */
import { LeaseNotFoundError } from '../dcs/dcs.js';
import { defaultDynamicConfig, type DynamicConfig, type Tags } from '../config/schema.js';
import { errorMessage } from '../shared/errors.js';
import { isLsn, maxLsn } from '../shared/lsn.js';
import { parseStoredConfig } from '../config/stored-config.js';
import { screenParameters } from '../postgres/parameter-policy.js';
import { AlertBoard } from './alerts.js';
import { recordEvent } from './events.js';
import { assessLeaderKey, type LeaderAssessment } from './leader-trust.js';
import { knownHostsFor, trustedMemberRecords } from './member-trust.js';
import { decide, leaseDeadlineMs } from './decide.js';
import type { Action, Decision } from './actions.js';
import { Executor, type ExecutorDeps } from './executor.js';
import { noopHaMetrics, type HaMetrics } from './ha-metrics.js';
import type { DcsView, LocalPostgres, LongTaskState, Observation } from './observation.js';
import { parseIntent } from './intent.js';
import type { MemberRecord, ReplicationEntry } from './member-record.js';
import { parseHistory } from './history.js';
import { notStreamingMsOf } from './election.js';
import { failsafeDeadlineMs, fenceMarginMs } from './decide.js';
import { answerFailsafe, failsafeProbeTimeoutMs, type FailsafeAnswer, type FailsafeRequest, type PeerProbe } from './failsafe.js';
import type { LeaderSyncState, PublishedSync } from './observation.js';
import type { SynchronousState } from './postgres-node.js';
import { SYNC_DEGRADE_GRACE_MS, parseStandbyNames, parseSyncSet, standbysInForce, type PeerPosition, type PeerPositionSource } from './sync-set.js';

/** The out-of-process fence (src/agent/watchdog.ts): kills the postmaster if we stop re-arming it. */
export interface FenceGuard {
  arm(postmasterPid: number, deadlineEpochMs: number): void;
  disarm(): void;
}

/** Where an agent keeps its last valid /config (src/config/last-good-config.ts); absent: in memory only. */
export interface LastGoodConfigStore {
  load(): Promise<DynamicConfig | null>;
  save(config: DynamicConfig): Promise<void>;
}

export interface HaLoopDeps extends Omit<ExecutorDeps, 'startLongTask'> {
  /** Hosts of the cluster's nodes (src/ha/member-trust.ts); absent: `host` and loopback. */
  knownHosts?: readonly string[];
  /** This agent's alerts (published in its member record); absent: the loop makes its own. */
  alerts?: AlertBoard;
  /** The last valid /config, used while /config is unreadable; absent: the loop's memory only. */
  lastGoodConfig?: LastGoodConfigStore;
  /** Armed while this node leads, with the lease deadline; absent in simulations. */
  fenceGuard?: FenceGuard;
  /** Failsafe mode: asks the other members' REST APIs while etcd is unreachable; absent: failsafe cannot hold. */
  peerProbe?: PeerProbe;
  /** Sync mode: asks members of the published set for their live WAL position; absent: no sync-mode promotion possible. */
  peerPositions?: PeerPositionSource;
  host: string;
  pgPort: number;
  apiUrl: string;
  proxyPort: number | null;
  replicaProxyPort?: number | null;
  /** Counters of the built-in proxy, published in the member record. */
  proxyStats?: () => { open: number; held: number; total: number; failed: number } | null;
  /** Called after every tick (the proxy re-routes held connections). */
  onTick?: () => void;
  tags: Tags;
  version: string;
  agentPid: number;
}

export interface LoopSnapshot {
  observation: Observation | null;
  decision: Decision | null;
  member: MemberRecord | null;
  lastError: string | null;
  ticks: number;
}

const QUICK_RETICK_MS = 100;
/** Actions a steady leader takes every tick: they do not call for a quick re-tick. */
const ROUTINE_ACTIONS: ReadonlySet<Action['kind']> = new Set(['sync-slots', 'publish-leader-lsn']);
const SUMMARY_REPEAT_MS = 60_000;
/** Sync mode: time after synchronous_standby_names changed before the leader trusts it is in force everywhere. */
const SYNC_SETTLE_MS = 100;

/** The lease renewer's interval: a loop wait, at most a third of the TTL. */
export function renewEveryMs(config: DynamicConfig): number {
  return Math.min(config.loopWaitMs, Math.floor((config.ttlSeconds * 1000) / 3));
}

/**
 * A tick running longer than this is taken for stuck, not slow: the renewer stops and the leader
 * loses the lead through the usual deadline (at most this + TTL - fence margin after the tick began).
 */
export function maxTickForRenewalMs(config: DynamicConfig): number {
  return Math.floor((config.ttlSeconds * 1000) / 2);
}

/** A tick this long is logged with where its time went. */
export function slowTickMs(config: DynamicConfig): number {
  return Math.floor((config.ttlSeconds * 1000) / 4);
}
/** Sync mode: how long a candidate waits for a peer's position (the election waits at most this per tick). */
const PEER_POSITION_TIMEOUT_MS = 500;

export class HaLoop {
  private readonly executor: Executor;
  private readonly agentStartedMs: number;
  private config: DynamicConfig = defaultDynamicConfig();
  private longTask: (LongTaskState & { promise: Promise<void> }) | null = null;
  private wakeController = new AbortController();
  private localFence: AbortController | null = null;
  private lastReachable: Extract<DcsView, { kind: 'reachable' }> | null = null;
  private stopping = false;
  private lastSummary = '';
  private lastSummaryLoggedMs = 0;
  private snapshotValue: LoopSnapshot = { observation: null, decision: null, member: null, lastError: null, ticks: 0 };
  /** The last non-null leader this agent saw (leader-change counting only). */
  private lastSeenLeader: string | null = null;
  /** Where the last tick spent its time (ms per phase), logged with a slow tick. */
  private lastTickPhasesMs: Record<string, number> = {};
  /** Aborted by `stop()`: ends the lease renewer's sleep. */
  private readonly stopController = new AbortController();
  /** When the running tick started (null between ticks): the lease renewer's liveness test. */
  private tickStartedMs: number | null = null;
  /** Sync mode, leader: when the current synchronous_standby_names was first seen, and the LSN once it was in force. */
  private syncApplied: { standbyNames: string; sinceMs: number; lsn: string | null } | null = null;
  /** When this leader's running primary was first observed in the current streak (null: not leading a running primary). */
  private leadingPrimarySinceMs: number | null = null;
  private readonly metrics: HaMetrics;
  /** What this agent refused to trust or could not read in etcd (src/ha/alerts.ts). */
  readonly alerts: AlertBoard;
  private readonly knownHosts: string[];
  /** The last leader key this agent trusted (src/ha/leader-trust.ts). */
  private lastTrustedLeader: string | null = null;
  /** The untrusted leader key seen last (value, lease) and since when. */
  private untrustedLeaderSeen: { value: string; leaseId: string | null; sinceMs: number } | null = null;
  /** The last-good copy: loaded once before the first read of /config; the JSON last saved. */
  private lastGoodLoaded = false;
  private lastGoodSavedJson: string | null = null;

  constructor(private readonly deps: HaLoopDeps) {
    this.agentStartedMs = deps.clock.nowMs();
    this.metrics = deps.metrics ?? noopHaMetrics;
    this.knownHosts = knownHostsFor({ host: deps.host, knownHosts: deps.knownHosts });
    this.alerts = deps.alerts ?? new AlertBoard();
    // Reported once per raise (or changed message), never per tick: log, and one event.
    this.alerts.onRaise((alert) => {
      const fields = { alert: alert.kind };
      if (alert.severity === 'critical') deps.log.error(fields, alert.message);
      else deps.log.warn(fields, alert.message);
      void recordEvent(deps.dcs, deps.keys, { at: new Date(deps.clock.nowMs()).toISOString(), kind: alert.kind, node: deps.node, message: alert.message, timeline: null });
    });
    this.executor = new Executor({ ...deps, startLongTask: (kind, task) => this.startLongTask(kind, task) });
    deps.pg.onUnexpectedExit(() => {
      deps.log.warn('postmaster exited unexpectedly');
      deps.memory.crashed = true;
      deps.memory.consecutiveCrashes += 1;
      this.wake();
    });
  }

  snapshot(): LoopSnapshot {
    return this.snapshotValue;
  }

  /** The latest view of etcd that could be read (the proxy keeps routing on it during an outage). */
  clusterView(): Extract<DcsView, { kind: 'reachable' }> | null {
    return this.lastReachable;
  }

  currentConfig(): DynamicConfig {
    return this.config;
  }

  wake(): void {
    this.wakeController.abort();
  }

  /** Runs ticks until `stop()`; never throws (a failed tick is logged and retried next loop). */
  async run(): Promise<void> {
    const renewer = this.runLeaseRenewer();
    while (!this.stopping) {
      let quick = false;
      const tickStartedMs = this.deps.clock.nowMs();
      try {
        quick = await this.tick();
      } catch (error) {
        this.snapshotValue = { ...this.snapshotValue, lastError: errorMessage(error) };
        this.deps.log.error({ err: errorMessage(error) }, 'tick failed');
      }
      const tickMs = this.deps.clock.nowMs() - tickStartedMs;
      this.metrics.tickFinished(tickMs / 1000);
      if (tickMs >= slowTickMs(this.config)) {
        this.deps.log.warn({ tickMs, phasesMs: this.lastTickPhasesMs }, 'slow HA loop tick');
      }
      if (this.stopping) break;
      if (this.wakeController.signal.aborted) this.wakeController = new AbortController();
      await this.deps.clock.sleep(quick ? QUICK_RETICK_MS : this.config.loopWaitMs, this.wakeController.signal);
    }
    await renewer;
  }

  /**
   * Keeps the lease alive while a tick runs long (a slow postgres or etcd answer under load), so a
   * busy but working leader is not fenced for it. Invariants: it renews only while the current
   * tick is younger than `maxTickForRenewalMs` (a loop that is stuck, not slow, stops renewing and
   * loses the lead through the usual deadline); every renewal re-arms the fences with the deadline
   * measured from when it was *sent*, exactly like the tick's own renewal; it never grants a lease
   * or takes a key (lease loss is left to the tick).
   */
  private async runLeaseRenewer(): Promise<void> {
    while (!this.stopping) {
      await this.deps.clock.sleep(renewEveryMs(this.config), this.stopController.signal).catch(() => undefined);
      if (this.stopping) break;
      await this.renewIfTickIsSlow().catch(() => false);
    }
  }

  /**
   * One renewal by the lease renewer, when due: a tick is running, has run for at least one renewal
   * interval but less than `maxTickForRenewalMs`, and the last renewal is one interval old. True when
   * it renewed. Public so that simulations can drive it on their fake clock.
   */
  async renewIfTickIsSlow(): Promise<boolean> {
    const { memory, clock } = this.deps;
    const nowMs = clock.nowMs();
    const everyMs = renewEveryMs(this.config);
    const leaseId = memory.leaseId;
    if (this.tickStartedMs === null || leaseId === null) return false;
    const tickAgeMs = nowMs - this.tickStartedMs;
    if (tickAgeMs < everyMs || tickAgeMs >= maxTickForRenewalMs(this.config)) return false;
    if (memory.lastRenewedMs !== null && nowMs - memory.lastRenewedMs < everyMs) return false;
    const sentMs = nowMs;
    const renewed = await this.keepAlive(leaseId).catch(() => false);
    if (!renewed || memory.leaseId !== leaseId) return false;
    memory.lastRenewedMs = Math.max(memory.lastRenewedMs ?? 0, sentMs);
    if (memory.holdsLeader) this.armFences(memory.lastRenewedMs, memory.leaseTtlSeconds ?? this.config.ttlSeconds, this.config.failsafe);
    return true;
  }

  /** Asks `run` to return after the current tick and waits for any long task to finish. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.stopController.abort();
    this.armLocalFence(null);
    this.wake();
    if (this.longTask !== null) await this.longTask.promise.catch(() => undefined);
  }

  /** One observe -> decide -> execute -> publish pass. True when the next tick should come soon. */
  async tick(): Promise<boolean> {
    this.tickStartedMs = this.deps.clock.nowMs();
    try {
      return await this.tickOnce();
    } finally {
      this.tickStartedMs = null;
    }
  }

  private async tickOnce(): Promise<boolean> {
    this.lastTickPhasesMs = {};
    const observation = await this.observe();
    this.updateFenceGuard(observation);
    const decision = decide(observation);
    this.logSummary(decision.summary, observation.nowMs);
    const lap = this.phaseTimer();
    const outcome = decision.actions.length > 0 ? await this.executor.run(decision.actions, observation) : { kind: 'done' as const };
    lap('execute');
    const member = await this.publish(observation);
    lap('publish');
    if (observation.dcs.kind === 'reachable') this.lastReachable = observation.dcs;
    this.snapshotValue = {
      observation,
      decision,
      member,
      lastError: outcome.kind === 'failed' ? outcome.error : null,
      ticks: this.snapshotValue.ticks + 1,
    };
    this.deps.onTick?.();
    return outcome.kind === 'done' && decision.actions.some((a) => !ROUTINE_ACTIONS.has(a.kind));
  }

  /** Records, under `name`, the time since the previous lap (or since the timer was made). */
  private phaseTimer(): (name: string) => void {
    let markMs = this.deps.clock.nowMs();
    return (name) => {
      const nowMs = this.deps.clock.nowMs();
      this.lastTickPhasesMs[name] = nowMs - markMs;
      markMs = nowMs;
    };
  }

  /**
   * While this node holds the leader key, the watchdog is armed with the same deadline decide()
   * fences at (last renewal + TTL - margin): if this process freezes and stops re-arming it, the
   * postmaster is killed before another node can take the key. Disarmed as soon as we do not lead.
   */
  private updateFenceGuard(obs: Observation): void {
    const leading = this.deps.memory.holdsLeader && obs.lease.lastRenewedMs !== null;
    this.armFences(leading ? obs.lease.lastRenewedMs : null, obs.lease.ttlSeconds, obs.config.failsafe);
  }

  /** Arms the in-process fence and the watchdog for a leader renewed at `lastRenewedMs` (null: not leading). */
  private armFences(lastRenewedMs: number | null, ttlSeconds: number, failsafe: boolean): void {
    const leaseDeadline = lastRenewedMs !== null ? leaseDeadlineMs(lastRenewedMs, ttlSeconds) : null;
    // Failsafe mode: a check in which every member promised not to race extends the deadline
    // (decide keeps the primary running until then), so the fences must wait for it too.
    const failsafeDeadline = failsafe && this.deps.memory.failsafe !== null ? failsafeDeadlineMs(this.deps.memory.failsafe) : null;
    const deadlineMs = leaseDeadline === null ? failsafeDeadline : failsafeDeadline === null ? leaseDeadline : Math.max(leaseDeadline, failsafeDeadline);
    this.armLocalFence(deadlineMs);
    const guard = this.deps.fenceGuard;
    if (guard === undefined) return;
    const pid = this.deps.pg.postmasterPid();
    if (deadlineMs !== null && pid !== null) guard.arm(pid, deadlineMs);
    else guard.disarm();
  }

  /**
   * The in-process half of the fence: a timer at the lease deadline, re-armed by every renewal.
   * A tick can be stuck for several etcd operation timeouts (a partition makes requests hang, not
   * fail), so waiting for the next `decide` could let the lease expire while postgres still takes
   * writes; the timer stops postgres at the deadline whatever the loop is doing. (A frozen process
   * runs no timers: the watchdog process covers that case.)
   */
  private armLocalFence(deadlineMs: number | null): void {
    this.localFence?.abort();
    this.localFence = null;
    if (deadlineMs === null) return;
    const controller = new AbortController();
    this.localFence = controller;
    const { clock, memory, pg, log } = this.deps;
    void clock.sleep(Math.max(0, deadlineMs - clock.nowMs()), controller.signal).then(async () => {
      if (controller.signal.aborted || (!memory.holdsLeader && memory.failsafe === null)) return;
      log.warn({ deadlineMs }, 'lease deadline passed without a renewal: fencing now');
      memory.holdsLeader = false;
      memory.failsafe = null;
      await pg.stop('immediate').catch((error: unknown) => log.error({ err: errorMessage(error) }, 'fencing stop failed'));
    });
  }

  private logSummary(summary: string, nowMs: number): void {
    if (summary !== this.lastSummary || nowMs - this.lastSummaryLoggedMs >= SUMMARY_REPEAT_MS) {
      this.deps.log.info({ decision: summary }, summary);
      this.lastSummary = summary;
      this.lastSummaryLoggedMs = nowMs;
    }
  }

  private startLongTask(kind: LongTaskState['kind'], task: () => Promise<void>): void {
    if (this.longTask !== null) return;
    const startedMs = this.deps.clock.nowMs();
    const dataTask = kind === 'clone-from' || kind === 'rejoin' || kind === 'initialize-cluster';
    const promise = task()
      .then(() => {
        if (dataTask) this.deps.memory.dataTaskFailures = null;
      })
      .catch((error: unknown) => {
        this.snapshotValue = { ...this.snapshotValue, lastError: errorMessage(error) };
        this.deps.log.error({ task: kind, err: errorMessage(error) }, `${kind} failed`);
        if (dataTask) {
          const count = (this.deps.memory.dataTaskFailures?.count ?? 0) + 1;
          this.deps.memory.dataTaskFailures = { count, lastFailedMs: this.deps.clock.nowMs() };
        }
      })
      .finally(() => {
        this.longTask = null;
        this.wake();
      });
    this.longTask = { kind, startedMs, promise };
  }

  private async observe(): Promise<Observation> {
    const lap = this.phaseTimer();
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
      agentStartedMs: this.agentStartedMs,
      config: this.config,
      tags: this.deps.tags,
      dcs,
      lease: { holdsLeader: memory.holdsLeader, lastRenewedMs: memory.lastRenewedMs, ttlSeconds: memory.leaseTtlSeconds ?? this.config.ttlSeconds, grantedMs: memory.leaseGrantedMs },
      pg,
      configuredUpstream: memory.configuredUpstream,
      longTask: this.longTask === null ? null : { kind: this.longTask.kind, startedMs: this.longTask.startedMs },
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

  /** GET /wal-position: this node's live timeline and max(receive, replay) position (null: postgres not running). */
  async walPosition(): Promise<PeerPosition | null> {
    const pg = await this.deps.pg.observe();
    if (pg.kind !== 'running') return null;
    return { name: this.deps.node, timeline: pg.timeline, lsn: maxLsn(pg.lsn, pg.receiveLsn) };
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
    const wanted = dcs.kind === 'reachable' && (this.config.synchronous === 'quorum' || (dcs.sync ?? null) !== null);
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
    if (this.config.synchronous !== 'quorum' || dcs.kind !== 'reachable' || dcs.leader !== null) return null;
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
    if (!this.config.failsafe || probe === undefined || this.lastReachable === null) return;
    const startedMs = clock.nowMs();
    const ttlSeconds = memory.leaseTtlSeconds ?? this.config.ttlSeconds;
    const leaseValid = memory.holdsLeader && memory.lastRenewedMs !== null && startedMs < leaseDeadlineMs(memory.lastRenewedMs, ttlSeconds);
    const previous = memory.failsafe === null ? null : failsafeDeadlineMs(memory.failsafe);
    if (!leaseValid && (previous === null || startedMs >= previous)) return;
    const request: FailsafeRequest = { leader: node, holdMs: ttlSeconds * 1000 };
    const timeoutMs = failsafeProbeTimeoutMs(ttlSeconds);
    const peers = this.lastReachable.members.filter((m) => m.name !== node).map((m) => ({ name: m.name, apiUrl: m.apiUrl }));
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

  /**
   * Failsafe mode, member side: the answer to a failsafe leader's check (REST `POST /failsafe`).
   * The promise not to race is stored before the answer leaves (src/ha/failsafe.ts).
   */
  answerFailsafe(request: FailsafeRequest): FailsafeAnswer {
    const { memory, clock, node } = this.deps;
    const pg = this.snapshotValue.observation?.pg;
    const isPrimary = pg !== undefined && pg.kind === 'running' && !pg.inRecovery;
    const { answer, ack } = answerFailsafe(request, {
      node,
      nowMs: clock.nowMs(),
      isLeaderOrPrimary: memory.holdsLeader || isPrimary,
      viewLeader: this.lastReachable === null ? undefined : this.lastReachable.leader,
      ack: memory.failsafeAck,
    });
    memory.failsafeAck = ack;
    if (answer.accepted) this.deps.log.info({ leader: request.leader }, 'failsafe: accepted the leader, staying out of the race');
    return answer;
  }

  private async observePostgres(): Promise<LocalPostgres> {
    const { memory } = this.deps;
    const pg = this.withStandbyTimeline(await this.deps.pg.observe());
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

  /**
   * A standby reports the timeline it receives while it streams and its last restartpoint's when the
   * stream drops (the leader died): keep the highest seen by this postmaster, so a healthy standby
   * does not look `timeline-behind` right after losing its leader.
   */
  private withStandbyTimeline(pg: LocalPostgres): LocalPostgres {
    const known = this.deps.memory.standbyTimeline;
    if (pg.kind !== 'running' || !pg.inRecovery || known === null || known.pid !== pg.pid || known.timeline <= pg.timeline) return pg;
    return { ...pg, timeline: known.timeline };
  }

  /** Renews (or re-grants) the lease first, then reads the whole cluster prefix in one request. */
  private async observeDcs(): Promise<DcsView> {
    const { dcs, keys, memory, clock } = this.deps;
    try {
      const sentMs = clock.nowMs();
      if (memory.leaseId !== null && (await this.keepAlive(memory.leaseId))) {
        memory.lastRenewedMs = sentMs;
      } else {
        if (memory.leaseId !== null) this.deps.log.warn('lease lost; granting a new one');
        memory.holdsLeader = false;
        memory.leaseId = await dcs.grantLease(this.config.ttlSeconds);
        memory.leaseTtlSeconds = this.config.ttlSeconds;
        memory.leaseGrantedMs = sentMs;
        memory.lastRenewedMs = sentMs;
      }
      const entries = await dcs.getPrefixWithLeases(keys.root);
      const all = new Map([...entries].map(([key, entry]) => [key, entry.value] as const));
      await this.readConfig(all.get(keys.config) ?? null);
      const { members, ignored } = trustedMemberRecords(all, keys, this.knownHosts);
      if (ignored.length > 0) this.alerts.raise('member-ignored', 'warning', `ignored member records: ${ignored.map((m) => `${m.name} (${m.reason})`).join('; ')}`);
      else this.alerts.clear('member-ignored');
      const leaderEntry = entries.get(keys.leader) ?? null;
      const leader = this.assessLeader(leaderEntry, members, clock.nowMs());
      if (leaderEntry?.value !== this.deps.node) memory.holdsLeader = false;
      if (leader.leader !== null && this.lastSeenLeader !== null && leader.leader !== this.lastSeenLeader) this.metrics.leaderChanged();
      if (leader.leader !== null) this.lastSeenLeader = leader.leader;
      if (leader.leader !== null) memory.lastLeaderSeenMs = clock.nowMs();
      // A keep-alive never changes a lease's TTL. When the configured TTL differs from our lease's,
      // a node that does not lead takes a new lease now (its member key moves with the next
      // publish); a leader keeps its lease, and every deadline is computed from the lease's real
      // TTL (`memory.leaseTtlSeconds`), never from the configured one.
      if (memory.leaseTtlSeconds !== this.config.ttlSeconds && !memory.holdsLeader && memory.leaseId !== null) {
        const old = memory.leaseId;
        memory.leaseId = await dcs.grantLease(this.config.ttlSeconds);
        memory.leaseTtlSeconds = this.config.ttlSeconds;
        memory.lastRenewedMs = clock.nowMs();
        await dcs.revokeLease(old).catch(() => undefined);
      }
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
    const store = this.deps.lastGoodConfig;
    if (!this.lastGoodLoaded) {
      this.lastGoodLoaded = true;
      const saved = await store?.load().catch(() => null);
      if (saved !== undefined && saved !== null) {
        this.config = saved;
        this.lastGoodSavedJson = JSON.stringify(saved);
      }
    }
    if (raw === null) {
      this.alerts.clear('config-unreadable');
    } else {
      const parsed = parseStoredConfig(raw);
      if (parsed.kind === 'invalid') {
        const cluster = this.deps.keys.root.split('/')[2] ?? 'NAME';
        this.alerts.raise('config-unreadable', 'critical', `/config is unreadable (${parsed.reason}); using the last good copy; run pgpilot config repair ${cluster}`);
      } else {
        this.alerts.clear('config-unreadable');
        this.config = parsed.config;
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
    const rejected = screenParameters(this.config.postgresql.parameters).rejected;
    if (rejected.length > 0) this.alerts.raise('config-rejected', 'warning', `dropped postgres parameters from /config: ${rejected.map((r) => r.reason).join('; ')}`);
    else this.alerts.clear('config-rejected');
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
      ttlSeconds: this.config.ttlSeconds,
    });
    if (assessment.untrusted === null) {
      this.untrustedLeaderSeen = null;
      this.alerts.clear('leader-key-ignored');
      if (entry !== null) this.lastTrustedLeader = entry.value;
      return assessment;
    }
    if (!same && entry !== null) this.untrustedLeaderSeen = { value: entry.value, leaseId: entry.leaseId, sinceMs: nowMs };
    this.alerts.raise('leader-key-ignored', 'warning', `leader key ${JSON.stringify(assessment.untrusted.value.slice(0, 64))} not trusted: ${assessment.untrusted.reason}`);
    return assessment;
  }

  /** One keep-alive of our lease, counted for the metrics (a throw is a failed renewal too). */
  private async keepAlive(leaseId: string): Promise<boolean> {
    try {
      const renewed = await this.deps.dcs.keepAlive(leaseId);
      if (renewed) this.metrics.leaseRenewed();
      else this.metrics.leaseRenewalFailed();
      return renewed;
    } catch (error) {
      this.metrics.leaseRenewalFailed();
      throw error;
    }
  }

  /** Writes this node's member record on its lease. Failures are logged, never fatal. */
  private async publish(obs: Observation): Promise<MemberRecord | null> {
    const { memory, dcs, keys } = this.deps;
    const pg = this.withStandbyTimeline(await this.deps.pg.observe().catch(() => obs.pg));
    let replication: ReplicationEntry[] = [];
    let oldestWalLsn: string | null = null;
    if (memory.holdsLeader && pg.kind === 'running' && !pg.inRecovery) {
      replication = await this.deps.pg.replicationStatus().catch(() => []);
      oldestWalLsn = await this.deps.pg.oldestWalLsn().catch(() => null);
    }
    const record = { ...this.memberRecord(pg, replication, obs.dcs.kind === 'reachable' && obs.dcs.leader !== null), oldestWalLsn };
    if (memory.leaseId === null || obs.dcs.kind === 'unreachable') return record;
    try {
      await dcs.put(keys.member(this.deps.node), JSON.stringify(record), { leaseId: memory.leaseId });
    } catch (error) {
      if (error instanceof LeaseNotFoundError) {
        memory.leaseId = null;
        memory.holdsLeader = false;
      }
      this.deps.log.warn({ err: errorMessage(error) }, 'could not publish the member record');
    }
    return record;
  }

  private memberRecord(pg: LocalPostgres, replication: ReplicationEntry[], leaderInSight: boolean): MemberRecord {
    const d = this.deps;
    const task = this.longTask?.kind ?? null;
    // Fields of a member whose postgres does not answer; each state below overrides what it knows.
    const offline = {
      name: d.node,
      host: d.host,
      port: d.pgPort,
      apiUrl: d.apiUrl,
      proxyPort: d.proxyPort,
      replicaProxyPort: d.replicaProxyPort ?? null,
      proxy: d.proxyStats?.() ?? null,
      pid: d.agentPid,
      tags: d.tags,
      version: d.version,
      updatedAtMs: d.clock.nowMs(),
      replication,
      alerts: this.alerts.list(),
      role: 'stopped' as const,
      postgresPid: null,
      timeline: null,
      lsn: null,
      receiveLsn: null,
      following: null,
      streaming: false,
      cleanShutdownPrimary: false,
      systemIdentifier: null,
    };
    switch (pg.kind) {
      case 'no-data':
        return { ...offline, state: task === 'initialize-cluster' ? 'initializing' : task === 'clone-from' ? 'cloning' : 'no data' };
      case 'stopped':
        return {
          ...offline,
          state: task ?? (pg.crashed ? 'crashed' : 'stopped'),
          timeline: pg.timeline,
          lsn: pg.lsn,
          cleanShutdownPrimary: pg.cleanShutdownPrimary,
          systemIdentifier: pg.systemIdentifier,
        };
      case 'starting':
        return { ...offline, role: 'unknown', state: 'starting', postgresPid: pg.pid };
      case 'running':
        return {
          ...offline,
          role: pg.inRecovery ? 'replica' : 'primary',
          state: task ?? 'running',
          postgresPid: pg.pid,
          timeline: pg.timeline,
          lsn: pg.lsn,
          receiveLsn: pg.receiveLsn,
          following: pg.inRecovery ? d.memory.configuredUpstream : null,
          streaming: pg.inRecovery && pg.walReceiverStatus === 'streaming',
          notStreamingMs: notStreamingMsOf({
            nowMs: d.clock.nowMs(),
            isStandby: pg.inRecovery,
            notStreamingSinceMs: d.memory.notStreamingSinceMs,
            lastLeaderSeenMs: d.memory.lastLeaderSeenMs,
            leaderInSight,
          }),
          systemIdentifier: pg.systemIdentifier,
          archive: pg.archiver ?? null,
        };
    }
  }

  /** Releases what this node holds in etcd on a graceful stop (postgres must already be stopped). */
  async releaseAll(): Promise<void> {
    const { dcs, keys, memory, node } = this.deps;
    try {
      if (memory.holdsLeader) await dcs.deleteIfEquals(keys.leader, node);
      memory.holdsLeader = false;
      await dcs.delete(keys.member(node));
      if (memory.leaseId !== null) await dcs.revokeLease(memory.leaseId);
      memory.leaseId = null;
    } catch (error) {
      this.deps.log.warn({ err: errorMessage(error) }, 'could not release etcd keys on stop; they expire with the lease');
    }
  }
}

function syncOf(raw: string | undefined): PublishedSync | null {
  return raw === undefined ? null : { raw, set: parseSyncSet(raw) };
}

function validLsnOrNull(text: string | undefined): string | null {
  return text !== undefined && isLsn(text) ? text : null;
}
