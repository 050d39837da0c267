/**
 * The HA loop: observe -> decide -> execute -> publish, once per `loopWaitMs` (sooner after a
 * decision that changed something, or when woken by a postmaster exit). It renews the node's
 * lease at the start of every tick, before anything else, and records when that renewal was
 * sent: the leader's fencing deadline is measured from that moment on this node's own clock.
 * Logs one summary line per tick when the summary changes (and every minute otherwise).
 */
import { LeaseNotFoundError } from '../dcs/dcs.js';
import { memberNameFromKey } from '../dcs/keys.js';
import { defaultDynamicConfig, dynamicConfigSchema, type DynamicConfig, type Tags } from '../config/schema.js';
import { errorMessage } from '../shared/errors.js';
import { isLsn } from '../shared/lsn.js';
import { parseJsonOrNull } from '../shared/json.js';
import { decide, leaseDeadlineMs } from './decide.js';
import type { Action, Decision } from './actions.js';
import { Executor, type ExecutorDeps } from './executor.js';
import { noopHaMetrics, type HaMetrics } from './ha-metrics.js';
import type { DcsView, LocalPostgres, LongTaskState, Observation } from './observation.js';
import { parseIntent } from './intent.js';
import { parseMemberRecord, type MemberRecord, type ReplicationEntry } from './member-record.js';

/** The out-of-process fence (src/agent/watchdog.ts): kills the postmaster if we stop re-arming it. */
export interface FenceGuard {
  arm(postmasterPid: number, deadlineEpochMs: number): void;
  disarm(): void;
}

export interface HaLoopDeps extends Omit<ExecutorDeps, 'startLongTask'> {
  /** Armed while this node leads, with the lease deadline; absent in simulations. */
  fenceGuard?: FenceGuard;
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
  private readonly metrics: HaMetrics;

  constructor(private readonly deps: HaLoopDeps) {
    this.agentStartedMs = deps.clock.nowMs();
    this.metrics = deps.metrics ?? noopHaMetrics;
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
    while (!this.stopping) {
      let quick = false;
      const tickStartedMs = this.deps.clock.nowMs();
      try {
        quick = await this.tick();
      } catch (error) {
        this.snapshotValue = { ...this.snapshotValue, lastError: errorMessage(error) };
        this.deps.log.error({ err: errorMessage(error) }, 'tick failed');
      }
      this.metrics.tickFinished((this.deps.clock.nowMs() - tickStartedMs) / 1000);
      if (this.stopping) break;
      if (this.wakeController.signal.aborted) this.wakeController = new AbortController();
      await this.deps.clock.sleep(quick ? QUICK_RETICK_MS : this.config.loopWaitMs, this.wakeController.signal);
    }
  }

  /** Asks `run` to return after the current tick and waits for any long task to finish. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.armLocalFence(null);
    this.wake();
    if (this.longTask !== null) await this.longTask.promise.catch(() => undefined);
  }

  /** One observe -> decide -> execute -> publish pass. True when the next tick should come soon. */
  async tick(): Promise<boolean> {
    const observation = await this.observe();
    this.updateFenceGuard(observation);
    const decision = decide(observation);
    this.logSummary(decision.summary, observation.nowMs);
    const outcome = decision.actions.length > 0 ? await this.executor.run(decision.actions, observation) : { kind: 'done' as const };
    const member = await this.publish(observation);
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

  /**
   * While this node holds the leader key, the watchdog is armed with the same deadline decide()
   * fences at (last renewal + TTL - margin): if this process freezes and stops re-arming it, the
   * postmaster is killed before another node can take the key. Disarmed as soon as we do not lead.
   */
  private updateFenceGuard(obs: Observation): void {
    const leading = this.deps.memory.holdsLeader && obs.lease.lastRenewedMs !== null;
    const deadlineMs = leading && obs.lease.lastRenewedMs !== null ? leaseDeadlineMs(obs.lease.lastRenewedMs, obs.lease.ttlSeconds) : null;
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
      if (controller.signal.aborted || !memory.holdsLeader) return;
      log.warn({ deadlineMs }, 'lease deadline passed without a renewal: fencing now');
      memory.holdsLeader = false;
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
    const promise = task()
      .catch((error: unknown) => {
        this.snapshotValue = { ...this.snapshotValue, lastError: errorMessage(error) };
        this.deps.log.error({ task: kind, err: errorMessage(error) }, `${kind} failed`);
      })
      .finally(() => {
        this.longTask = null;
        this.wake();
      });
    this.longTask = { kind, startedMs, promise };
  }

  private async observe(): Promise<Observation> {
    const dcs = await this.observeDcs();
    const pg = await this.observePostgres();
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
    };
  }

  private async observePostgres(): Promise<LocalPostgres> {
    const pg = await this.deps.pg.observe();
    const { memory } = this.deps;
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
      const all = await dcs.getPrefix(keys.root);
      const leader = all.get(keys.leader) ?? null;
      if (leader !== this.deps.node) memory.holdsLeader = false;
      if (leader !== null && this.lastSeenLeader !== null && leader !== this.lastSeenLeader) this.metrics.leaderChanged();
      if (leader !== null) this.lastSeenLeader = leader;
      this.config = parseDynamicConfig(all.get(keys.config) ?? null, this.config);
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
      const members: MemberRecord[] = [];
      for (const [key, value] of all) {
        if (memberNameFromKey(keys, key) === null) continue;
        const record = parseMemberRecord(value);
        if (record !== null) members.push(record);
      }
      return {
        kind: 'reachable',
        leader,
        initialize: all.get(keys.initialize) ?? null,
        members,
        lastLeaderLsn: validLsnOrNull(all.get(keys.lastLsn)),
        intent: parseIntent(all.get(keys.failover) ?? null),
      };
    } catch (error) {
      return { kind: 'unreachable', error: errorMessage(error) };
    }
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
    const pg = await this.deps.pg.observe().catch(() => obs.pg);
    let replication: ReplicationEntry[] = [];
    if (memory.holdsLeader && pg.kind === 'running' && !pg.inRecovery) {
      replication = await this.deps.pg.replicationStatus().catch(() => []);
    }
    const record = this.memberRecord(pg, replication);
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

  private memberRecord(pg: LocalPostgres, replication: ReplicationEntry[]): MemberRecord {
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
          systemIdentifier: pg.systemIdentifier,
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

function validLsnOrNull(text: string | undefined): string | null {
  return text !== undefined && isLsn(text) ? text : null;
}

function parseDynamicConfig(text: string | null, previous: DynamicConfig): DynamicConfig {
  return parseJsonOrNull(dynamicConfigSchema, text) ?? previous;
}
