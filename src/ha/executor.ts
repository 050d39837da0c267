/**
 * Carries out the actions `decide` chose, one at a time, in order. The executor owns no policy:
 * it turns an action into DCS writes and PostgresNode calls and reports whether it succeeded, so
 * the loop can skip the rest of a decision after a failed step or a lost race. Long operations
 * (initdb, pg_basebackup, rewind, a planned step-down) go to the long-task slot so the loop keeps
 * renewing its lease meanwhile. Every role change is written to the event log.
 */
import type { Action } from './actions.js';
import type { Observation, LongTaskState } from './observation.js';
import type { UpstreamAddress } from './postgres-node.js';
import { INITIALIZE_PENDING_PREFIX } from '../dcs/keys.js';
import { defaultDynamicConfig } from '../config/schema.js';
import { PgpilotError, errorMessage } from '../shared/errors.js';
import { compareLsn } from '../shared/lsn.js';
import { appendHistory } from '../state/history.js';
import { recordEvent, type EventKind } from '../state/events.js';
import { CATCH_UP_TIMEOUT_MS, type FailoverIntent } from '../state/intent.js';
import { parseMemberRecord, type MemberRecord } from '../state/member-record.js';
import { rankCandidates } from './election.js';
import type { HaMetrics } from '../state/ha-metrics.js';
import { formatStandbyNames } from './sync-set.js';
import { formatSyncSet } from '../state/sync-record.js';
import type { HaPartDeps } from './ha-part-deps.js';

export interface ExecutorDeps extends HaPartDeps {
  /** Runs `task` in the long-task slot (the loop keeps ticking meanwhile). */
  startLongTask(kind: LongTaskState['kind'], task: () => Promise<void>): void;
  /** Counters of HA events (src/state/ha-metrics.ts); absent: not counted. */
  metrics?: HaMetrics;
}

export type ActionOutcome = { kind: 'done' } | { kind: 'skip-rest'; reason: string } | { kind: 'failed'; error: string };

const CATCH_UP_POLL_MS = 50;
/** Time for every proxy to see a new intent and start holding connections. */
const PROXY_HOLD_SETTLE_MS = 300;
/** How long a stepping-down leader waits for client sessions to end before its fast shutdown. */
const DRAIN_TIMEOUT_MS = 2_000;

export class Executor {
  constructor(private readonly deps: ExecutorDeps) {}

  /** Runs the actions in order and stops at the first that does not complete. */
  async run(actions: readonly Action[], obs: Observation): Promise<ActionOutcome> {
    for (const action of actions) {
      let outcome: ActionOutcome;
      try {
        outcome = await this.execute(action, obs);
      } catch (error) {
        outcome = { kind: 'failed', error: errorMessage(error) };
      }
      if (outcome.kind !== 'done') {
        this.deps.log.warn({ action: action.kind, outcome }, `action ${action.kind} did not complete`);
        return outcome;
      }
    }
    return { kind: 'done' };
  }

  private event(kind: EventKind, message: string, timeline: number | null = null): Promise<void> {
    const { dcs, keys, node, clock } = this.deps;
    return recordEvent(dcs, keys, { at: new Date(clock.nowMs()).toISOString(), kind, node, message, timeline });
  }

  private async execute(action: Action, obs: Observation): Promise<ActionOutcome> {
    const { dcs, keys, pg, memory, node } = this.deps;
    switch (action.kind) {
      case 'initialize-cluster':
        this.deps.startLongTask('initialize-cluster', () => this.initializeCluster());
        return { kind: 'done' };
      case 'clone-from': {
        const upstream = upstreamOf(obs, action.leader);
        if (upstream === null) return { kind: 'skip-rest', reason: `no address for ${action.leader}` };
        this.deps.startLongTask('clone-from', async () => {
          await pg.cloneFrom(upstream);
          memory.configuredUpstream = upstream.name;
          await this.event('cloned', `cloned from ${upstream.name} and started as its standby`);
        });
        return { kind: 'done' };
      }
      case 'rejoin': {
        const upstream = upstreamOf(obs, action.leader);
        if (upstream === null) return { kind: 'skip-rest', reason: `no address for ${action.leader}` };
        this.deps.startLongTask('rejoin', async () => {
          if (obs.pg.kind !== 'stopped') await pg.stop('fast');
          const outcome = await pg.rejoin(upstream);
          if (outcome.kind === 'moved-aside') {
            await this.event('reinitialized', `pg_rewind was impossible; old data kept at ${outcome.path}; re-cloning from ${upstream.name}`);
            return;
          }
          memory.configuredUpstream = upstream.name;
          await this.event('rewound', `former primary rejoined ${upstream.name} as a standby (${outcome.kind === 'rewound' ? 'rewound' : 'no rewind needed'})`);
        });
        return { kind: 'done' };
      }
      case 'reclone':
        this.deps.startLongTask('reclone', async () => {
          if (obs.pg.kind !== 'stopped' && obs.pg.kind !== 'no-data') await pg.stop('fast');
          const aside = await pg.moveDataAside();
          memory.configuredUpstream = null;
          await this.event('reinitialized', `${action.reason}; data moved aside to ${aside}; cloning from ${action.leader}`);
        });
        return { kind: 'done' };
      case 'start-postgres': {
        const upstream = action.upstream === null ? null : upstreamOf(obs, action.upstream);
        if (action.mode === 'primary' && !memory.holdsLeader) {
          // Invariant 1 of decide.ts, enforced again at the point of no return.
          return { kind: 'skip-rest', reason: 'refusing to start writable without the leader key' };
        }
        const wasCrash = obs.pg.kind === 'stopped' && obs.pg.crashed;
        await pg.start(action.mode, upstream);
        memory.configuredUpstream = upstream?.name ?? null;
        memory.notStreamingSinceMs = null;
        if (wasCrash) await this.event('restarted', `postgres restarted in place as ${action.mode} after a crash`);
        return { kind: 'done' };
      }
      case 'acquire-leader': {
        const leaseId = memory.leaseId;
        if (leaseId === null) return { kind: 'skip-rest', reason: 'no lease' };
        // An ignored key (no lease, or naming no member; src/ha/leader-trust.ts) is replaced only
        // while it still holds exactly the value judged: of several candidates one wins.
        const replacing = action.replacing;
        const won = replacing === undefined ? await dcs.createIfAbsent(keys.leader, node, { leaseId }) : await dcs.replaceIfEquals(keys.leader, replacing, node, { leaseId });
        if (!won) return { kind: 'skip-rest', reason: 'another node took the leader key first' };
        memory.holdsLeader = true;
        this.deps.log.info(replacing === undefined ? 'acquired the leader key' : `acquired the leader key over an ignored value (${replacing})`);
        await this.event('leader-acquired', replacing === undefined ? 'took the free leader key' : `took the leader key over an ignored value naming ${replacing}`);
        return { kind: 'done' };
      }
      case 'adopt-leader': {
        const leaseId = memory.leaseId;
        if (leaseId === null) return { kind: 'skip-rest', reason: 'no lease' };
        if (!(await dcs.replaceIfEquals(keys.leader, node, node, { leaseId }))) {
          return { kind: 'skip-rest', reason: 'the leader key changed before it could be adopted' };
        }
        memory.holdsLeader = true;
        this.deps.log.info('adopted the leader key of a previous run of this node');
        await this.event('leader-adopted', 'agent restarted while its leader key was still valid: kept the lead');
        return { kind: 'done' };
      }
      case 'release-stale-leader':
        await dcs.deleteIfEquals(keys.leader, node);
        return { kind: 'done' };
      case 'release-leader':
        if (await dcs.deleteIfEquals(keys.leader, node)) await this.event('leader-released', action.reason);
        memory.holdsLeader = false;
        return { kind: 'done' };
      case 'promote': {
        if (!memory.holdsLeader) return { kind: 'skip-rest', reason: 'refusing to promote without the leader key' };
        const before = obs.pg.kind === 'running' ? obs.pg : null;
        await pg.promote();
        memory.configuredUpstream = null;
        this.deps.metrics?.promoted(obs.dcs.kind === 'reachable' && obs.dcs.intent?.kind === 'switchover' ? 'switchover' : 'failover');
        // Slots for the other members right away, so they can stream from us at their next retry.
        if (obs.dcs.kind === 'reachable') {
          await pg.syncSlots(obs.dcs.members.map((m) => m.name).filter((name) => name !== node)).catch(() => undefined);
        }
        // pg_rewind reads the source's timeline from pg_control, which a promotion only updates at
        // the next checkpoint: checkpoint now, so a former leader rewinding from us sees timeline N+1.
        await pg.checkpoint().catch((error: unknown) => this.deps.log.warn({ err: errorMessage(error) }, 'checkpoint after promotion failed'));
        const after = await pg.observe();
        const timeline = after.kind === 'running' ? after.timeline : null;
        if (timeline !== null && before !== null) {
          await appendHistory(dcs, keys, {
            timeline,
            lsn: before.lsn,
            reason: obs.dcs.kind === 'reachable' && obs.dcs.intent !== null ? obs.dcs.intent.kind : 'failover: the leader key was free',
            at: new Date(this.deps.clock.nowMs()).toISOString(),
            newLeader: node,
          });
        }
        await this.event('promoted', `promoted to primary at ${before?.lsn ?? '?'}`, timeline);
        return { kind: 'done' };
      }
      case 'follow': {
        const upstream = action.upstream === null ? null : upstreamOf(obs, action.upstream);
        if (action.upstream !== null && upstream === null) return { kind: 'skip-rest', reason: `no address for ${action.upstream}` };
        await pg.follow(upstream);
        memory.configuredUpstream = upstream?.name ?? null;
        memory.notStreamingSinceMs = null; // measured anew against the new upstream
        return { kind: 'done' };
      }
      case 'fence':
        this.deps.log.warn({ reason: action.reason }, 'fencing: stopping postgres immediately');
        await pg.stop('immediate');
        memory.holdsLeader = false;
        await this.event('fenced', action.reason);
        return { kind: 'done' };
      case 'demote':
        await pg.stop('fast');
        memory.holdsLeader = false;
        memory.configuredUpstream = null;
        await this.event('demoted', 'stopped as primary; rejoining as a standby');
        return { kind: 'done' };
      case 'step-down':
        this.deps.startLongTask('step-down', () => this.stepDown(action.intent, obs));
        return { kind: 'done' };
      case 'clear-intent':
        if (await dcs.deleteIfEquals(keys.failover, JSON.stringify(action.intent))) {
          if (action.completed) {
            await this.event(action.intent.kind === 'switchover' ? 'switchover-completed' : 'failover-completed', `${action.intent.kind} from ${action.intent.from ?? 'no leader'} completed: ${node} leads`);
          }
        }
        return { kind: 'done' };
      case 'restart-postgres': {
        const mode = obs.pg.kind === 'running' && !obs.pg.inRecovery ? 'primary' : 'standby';
        const upstream = memory.configuredUpstream === null ? null : upstreamOf(obs, memory.configuredUpstream);
        memory.restartRequested = false;
        this.deps.startLongTask('restart', async () => {
          await pg.stop('fast');
          if (mode === 'primary' && !memory.holdsLeader) return; // lost the lead meanwhile: the loop decides anew
          await pg.start(mode, upstream);
          await this.event('restarted', `postgres restarted as ${mode} on request`);
        });
        return { kind: 'done' };
      }
      case 'sync-slots':
        if (obs.dcs.kind === 'reachable') {
          await pg.syncSlots(obs.dcs.members.map((m) => m.name).filter((name) => name !== node));
        }
        return { kind: 'done' };
      case 'publish-leader-lsn':
        if (obs.pg.kind === 'running' && obs.pg.lsn !== null) await dcs.put(keys.lastLsn, obs.pg.lsn);
        return { kind: 'done' };
      case 'set-sync-standbys': {
        if (!memory.holdsLeader) return { kind: 'skip-rest', reason: 'only the leader sets synchronous_standby_names' };
        const value = formatStandbyNames({ names: action.names, quorum: action.quorum });
        await pg.setSynchronousStandbyNames(value);
        this.deps.log.info({ synchronousStandbyNames: value }, 'synchronous_standby_names changed');
        return { kind: 'done' };
      }
      case 'publish-sync-set': {
        // Only the key holder writes /sync, and only over the value it decided on: a leader that
        // lost the key (or raced a newer leader) fails the compare-and-set and changes nothing.
        if (!memory.holdsLeader) return { kind: 'skip-rest', reason: 'only the leader publishes the synchronous set' };
        const value = formatSyncSet({ leader: node, members: action.members, quorum: action.quorum });
        const written =
          action.expected === null
            ? await dcs.createIfAbsent(keys.sync, value)
            : action.expected === value || (await dcs.replaceIfEquals(keys.sync, action.expected, value));
        if (!written) return { kind: 'skip-rest', reason: 'the synchronous set changed since it was read' };
        this.deps.log.info({ members: action.members, quorum: action.quorum }, 'synchronous set published');
        return { kind: 'done' };
      }
    }
  }

  /**
   * Planned hand-over (docs/architecture.md, HA rule 4): checkpoint, stop taking writes (fast shutdown, whose
   * final checkpoint is streamed to the standbys), wait until the target has replayed past it, then
   * release the key; the intent tells every other node to let the target take it. If the target
   * does not catch up in time, postgres restarts as primary here and nothing changes.
   */
  private async stepDown(intent: FailoverIntent, obs: Observation): Promise<void> {
    const { dcs, keys, pg, memory, node, clock, log } = this.deps;
    const members = obs.dcs.kind === 'reachable' ? obs.dcs.members : [];
    // Sync mode: only a member of the published set may take over (it alone may be promoted).
    const syncSet = obs.config.synchronous === 'quorum' && obs.dcs.kind === 'reachable' ? (obs.dcs.sync?.set ?? null) : null;
    const eligible = obs.config.synchronous === 'quorum' ? members.filter((m) => syncSet?.members.includes(m.name) === true) : members;
    const target = intent.to ?? bestReplica(eligible, node, obs.dcs.kind === 'reachable' ? obs.dcs.lastLeaderLsn : null);
    const abort = async (why: string, restart: boolean): Promise<void> => {
      log.warn({ why }, `${intent.kind} aborted`);
      if (restart) await pg.start('primary', null);
      await dcs.deleteIfEquals(keys.failover, JSON.stringify(intent));
      await this.event('switchover-failed', `${intent.kind} aborted: ${why}; ${node} keeps the lead`);
    };
    if (target === null) return abort('no streaming replica to hand over to', false);
    let current = intent;
    if (intent.to === null) {
      // Name the target in the intent, so that only the replica we wait for may take the key.
      current = { ...intent, to: target };
      if (!(await dcs.replaceIfEquals(keys.failover, JSON.stringify(intent), JSON.stringify(current)))) return;
    }
    log.info({ target, kind: current.kind }, 'stepping down');
    // The proxies of every node hold new connections as soon as they see the intent (an etcd watch
    // away); give them that moment, then let sessions already on this leader finish (bounded) so
    // the shutdown cuts off as little in-flight work as possible.
    await clock.sleep(PROXY_HOLD_SETTLE_MS);
    const left = await pg.drainClients(DRAIN_TIMEOUT_MS).catch(() => -1);
    if (left !== 0) log.warn({ left }, 'client sessions still connected at shutdown (they will be disconnected)');
    await pg.checkpoint().catch(() => undefined);
    await pg.stop('fast');
    const stopped = await pg.observe();
    const finalLsn = stopped.kind === 'stopped' ? stopped.lsn : null;
    if (current.kind === 'switchover') {
      if (finalLsn === null) return abort('could not read the final WAL position', true);
      const deadlineMs = clock.nowMs() + CATCH_UP_TIMEOUT_MS;
      let caughtUp = false;
      while (clock.nowMs() < deadlineMs) {
        const record = parseMemberRecord((await dcs.get(keys.member(target))) ?? '');
        if (record !== null && record.role === 'replica' && record.lsn !== null && compareLsn(record.lsn, finalLsn) > 0) {
          caughtUp = true;
          break;
        }
        await clock.sleep(CATCH_UP_POLL_MS);
      }
      if (!caughtUp) return abort(`${target} did not replay up to ${finalLsn} within ${CATCH_UP_TIMEOUT_MS} ms`, true);
    }
    await dcs.deleteIfEquals(keys.leader, node);
    memory.holdsLeader = false;
    memory.configuredUpstream = null;
    await this.event('demoted', `stepped down for ${current.kind} to ${target} at ${finalLsn ?? '?'}`);
  }

  /**
   * Bootstrap race (docs/architecture.md, etcd key layout): the initialize key is created-if-absent as
   * `pending:<node>` on our lease, so if we die mid-initdb it disappears and another node can try;
   * on success it becomes the permanent system identifier. The loser never runs initdb.
   */
  private async initializeCluster(): Promise<void> {
    const { dcs, keys, pg, memory, node, log } = this.deps;
    const leaseId = memory.leaseId;
    if (leaseId === null) throw new PgpilotError('DCS_UNAVAILABLE', 'no lease to initialize with', { retryable: true });
    const pending = `${INITIALIZE_PENDING_PREFIX}${node}`;
    if (!(await dcs.createIfAbsent(keys.initialize, pending, { leaseId }))) {
      log.info('another node claimed initialization first');
      return;
    }
    log.info('won the initialize race: running initdb');
    try {
      await dcs.createIfAbsent(keys.config, JSON.stringify(defaultDynamicConfig()));
      const { systemIdentifier } = await pg.initialize();
      if (!(await dcs.createIfAbsent(keys.leader, node, { leaseId }))) {
        throw new PgpilotError('INTERNAL', 'the leader key was taken while this node initialized the cluster');
      }
      memory.holdsLeader = true;
      memory.configuredUpstream = null;
      // Without a lease option the key is detached from our lease: it is permanent from here on.
      if (!(await dcs.replaceIfEquals(keys.initialize, pending, systemIdentifier))) {
        throw new PgpilotError('INTERNAL', 'lost the initialize key while initializing');
      }
      await appendHistory(dcs, keys, {
        timeline: 1,
        lsn: null,
        reason: 'cluster initialized',
        at: new Date(this.deps.clock.nowMs()).toISOString(),
        newLeader: node,
      });
      await this.event('initialized', `initdb done (system identifier ${systemIdentifier}); leading`, 1);
      log.info({ systemIdentifier }, 'cluster initialized; this node leads');
    } catch (error) {
      log.error({ err: errorMessage(error) }, 'initialization failed; releasing the initialize key');
      await pg.stop('immediate').catch(() => undefined);
      if (memory.holdsLeader) await dcs.deleteIfEquals(keys.leader, node).catch(() => undefined);
      memory.holdsLeader = false;
      await dcs.deleteIfEquals(keys.initialize, pending).catch(() => undefined);
      throw error;
    }
  }
}

function upstreamOf(obs: Observation, name: string): UpstreamAddress | null {
  if (obs.dcs.kind !== 'reachable') return null;
  const member = obs.dcs.members.find((m) => m.name === name);
  return member === undefined ? null : { name, host: member.host, port: member.port };
}

/** The best-ranked streaming replica other than `self`, for a switchover without a named target. */
function bestReplica(members: readonly MemberRecord[], self: string, lastLeaderLsn: string | null): string | null {
  const candidates = members
    .filter((m) => m.name !== self && m.role === 'replica' && m.streaming)
    .map((m) => ({ name: m.name, timeline: m.timeline, lsn: m.lsn, tags: m.tags }));
  return rankCandidates(candidates, lastLeaderLsn, Number.MAX_SAFE_INTEGER)[0]?.name ?? null;
}
