/**
 * The HA loop: observe -> decide -> execute -> publish, once per `loopWaitMs` (sooner after a
 * decision that changed something, or when woken by a postmaster exit). This module keeps the
 * tick orchestration; each responsibility has its own module:
 *   lease-keeper.ts   renews the lease at the start of every tick, before anything else, and
 *                     records when that renewal was sent (the leader's fencing deadline is
 *                     measured from that moment on this node's own clock); the renewer that keeps
 *                     the lease alive while a tick runs long
 *   fencing.ts        the in-process fence timer and the watchdog, armed with the lease deadline
 *   observer.ts       everything `decide` reads (etcd, /config, trust, postgres, failsafe, sync)
 *   publisher.ts      the member record, and releasing etcd keys on a graceful stop
 *   long-task-slot.ts the one slot for long operations (the loop keeps ticking meanwhile)
 * Invariants: a tick never throws out of `run` (a failed tick is logged and retried next loop);
 * the fences are re-armed from every observation, before `decide` runs; one summary line is
 * logged per tick when the summary changes (and every minute otherwise).
 */
import type { AgentSnapshot } from '../state/agent-snapshot.js';
import type { DynamicConfig, Tags } from '../config/schema.js';
import { errorMessage } from '../shared/errors.js';
import { maxLsn } from '../shared/lsn.js';
import { AlertBoard } from './alerts.js';
import { recordEvent } from '../state/events.js';
import { knownHostsFor } from './member-trust.js';
import { decide } from './decide.js';
import type { Action, Decision } from './actions.js';
import { Executor, type ExecutorDeps } from './executor.js';
import { noopHaMetrics, type HaMetrics } from '../state/ha-metrics.js';
import type { DcsView } from '../state/dcs-view.js';
import type { Observation } from './observation.js';
import type { MemberRecord } from '../state/member-record.js';
import { slowTickMs } from './timing.js';
import { answerFailsafe, type FailsafeAnswer, type FailsafeRequest, type PeerProbe } from './failsafe.js';
import type { PeerPosition, PeerPositionSource } from './sync-set.js';
import { Fencing, type FenceGuard } from './fencing.js';
import { LeaseKeeper } from './lease-keeper.js';
import { LongTaskSlot } from './long-task-slot.js';
import { Observer, type LastGoodConfigStore } from './observer.js';
import { Publisher } from './publisher.js';

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

/** The loop's latest state; readers outside src/ha/ see it as an `AgentSnapshot` (src/state/agent-snapshot.ts). */
export interface LoopSnapshot extends AgentSnapshot {
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
  private readonly leaseKeeper: LeaseKeeper;
  private readonly fencing: Fencing;
  private readonly observer: Observer;
  private readonly publisher: Publisher;
  private readonly longTasks: LongTaskSlot;
  private wakeController = new AbortController();
  private lastReachable: Extract<DcsView, { kind: 'reachable' }> | null = null;
  private stopping = false;
  private lastSummary = '';
  private lastSummaryLoggedMs = 0;
  private snapshotValue: LoopSnapshot = { observation: null, decision: null, member: null, lastError: null, ticks: 0 };
  /** Where the last tick spent its time (ms per phase), logged with a slow tick. */
  private lastTickPhasesMs: Record<string, number> = {};
  /** Aborted by `stop()`: ends the lease renewer's sleep. */
  private readonly stopController = new AbortController();
  /** When the running tick started (null between ticks): the lease renewer's liveness test. */
  private tickStartedMs: number | null = null;
  private readonly metrics: HaMetrics;
  /** What this agent refused to trust or could not read in etcd (src/ha/alerts.ts). */
  readonly alerts: AlertBoard;

  constructor(private readonly deps: HaLoopDeps) {
    const agentStartedMs = deps.clock.nowMs();
    this.metrics = deps.metrics ?? noopHaMetrics;
    this.alerts = deps.alerts ?? new AlertBoard();
    // Reported once per raise (or changed message), never per tick: log, and one event.
    this.alerts.onRaise((alert) => {
      const fields = { alert: alert.kind };
      if (alert.severity === 'critical') deps.log.error(fields, alert.message);
      else deps.log.warn(fields, alert.message);
      void recordEvent(deps.dcs, deps.keys, { at: new Date(deps.clock.nowMs()).toISOString(), kind: alert.kind, node: deps.node, message: alert.message, timeline: null });
    });
    this.longTasks = new LongTaskSlot({
      clock: deps.clock,
      memory: deps.memory,
      onFailed: (kind, message) => {
        this.snapshotValue = { ...this.snapshotValue, lastError: message };
        deps.log.error({ task: kind, err: message }, `${kind} failed`);
      },
      onSettled: () => this.wake(),
    });
    this.fencing = new Fencing(deps);
    this.leaseKeeper = new LeaseKeeper({
      dcs: deps.dcs,
      clock: deps.clock,
      log: deps.log,
      memory: deps.memory,
      metrics: this.metrics,
      config: () => this.observer.config,
      tickStartedMs: () => this.tickStartedMs,
      onLeaderRenewed: (lastRenewedMs, ttlSeconds) => this.fencing.arm(lastRenewedMs, ttlSeconds, this.observer.config.failsafe),
    });
    this.observer = new Observer({
      ...deps,
      metrics: this.metrics,
      alerts: this.alerts,
      knownHosts: knownHostsFor({ host: deps.host, knownHosts: deps.knownHosts }),
      leaseKeeper: this.leaseKeeper,
      agentStartedMs,
      lastReachable: () => this.lastReachable,
      longTask: () => this.longTasks.state(),
    });
    this.publisher = new Publisher({ ...deps, alerts: this.alerts, longTaskKind: () => this.longTasks.kind() });
    this.executor = new Executor({ ...deps, startLongTask: (kind, task) => this.longTasks.start(kind, task) });
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
    return this.observer.config;
  }

  wake(): void {
    this.wakeController.abort();
  }

  /** Runs ticks until `stop()`; never throws (a failed tick is logged and retried next loop). */
  async run(): Promise<void> {
    const renewer = this.leaseKeeper.runRenewer(this.stopController.signal);
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
      if (tickMs >= slowTickMs(this.observer.config)) {
        this.deps.log.warn({ tickMs, phasesMs: this.lastTickPhasesMs }, 'slow HA loop tick');
      }
      if (this.stopping) break;
      if (this.wakeController.signal.aborted) this.wakeController = new AbortController();
      await this.deps.clock.sleep(quick ? QUICK_RETICK_MS : this.observer.config.loopWaitMs, this.wakeController.signal);
    }
    await renewer;
  }

  /**
   * One renewal by the lease renewer, when due (src/ha/lease-keeper.ts). True when it renewed.
   * Public so that simulations can drive it on their fake clock.
   */
  renewIfTickIsSlow(): Promise<boolean> {
    return this.leaseKeeper.renewIfTickIsSlow();
  }

  /** Asks `run` to return after the current tick and waits for any long task to finish. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.stopController.abort();
    this.fencing.disarmLocal();
    this.wake();
    await this.longTasks.settled();
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
    const observation = await this.observer.observe(() => this.phaseTimer());
    this.fencing.update(observation);
    const decision = decide(observation);
    this.logSummary(decision.summary, observation.nowMs);
    const lap = this.phaseTimer();
    const outcome = decision.actions.length > 0 ? await this.executor.run(decision.actions, observation) : { kind: 'done' as const };
    lap('execute');
    const member = await this.publisher.publish(observation);
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

  private logSummary(summary: string, nowMs: number): void {
    if (summary !== this.lastSummary || nowMs - this.lastSummaryLoggedMs >= SUMMARY_REPEAT_MS) {
      this.deps.log.info({ decision: summary }, summary);
      this.lastSummary = summary;
      this.lastSummaryLoggedMs = nowMs;
    }
  }

  /** GET /wal-position: this node's live timeline and max(receive, replay) position (null: postgres not running). */
  async walPosition(): Promise<PeerPosition | null> {
    const pg = await this.deps.pg.observe();
    if (pg.kind !== 'running') return null;
    return { name: this.deps.node, timeline: pg.timeline, lsn: maxLsn(pg.lsn, pg.receiveLsn) };
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

  /** Releases what this node holds in etcd on a graceful stop (postgres must already be stopped). */
  releaseAll(): Promise<void> {
    return this.publisher.releaseAll();
  }
}
