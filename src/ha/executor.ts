/**
 * Carries out the actions `decide` chose, one at a time, in order. The executor owns no policy:
 * it turns an action into DCS writes and PostgresNode calls and reports whether it succeeded, so
 * the loop can skip the rest of a decision after a failed step or a lost race. Long operations
 * (initdb, pg_basebackup) go to the long-task slot so the loop keeps renewing its lease.
 */
import type { Action } from './actions.js';
import type { AgentMemory } from './agent-memory.js';
import type { Observation } from './observation.js';
import type { PostgresNode, UpstreamAddress } from './postgres-node.js';
import type { Dcs } from '../dcs/dcs.js';
import { INITIALIZE_PENDING_PREFIX, type ClusterKeys } from '../dcs/keys.js';
import { defaultDynamicConfig } from '../config/schema.js';
import type { Clock } from '../shared/clock.js';
import type { Logger } from '../shared/logger.js';
import { PgpilotError, errorMessage } from '../shared/errors.js';
import { appendHistory } from './history.js';

export interface ExecutorDeps {
  node: string;
  dcs: Dcs;
  keys: ClusterKeys;
  pg: PostgresNode;
  clock: Clock;
  log: Logger;
  memory: AgentMemory;
  /** Runs `task` in the long-task slot (the loop keeps ticking meanwhile). */
  startLongTask(kind: 'initialize-cluster' | 'clone-from', task: () => Promise<void>): void;
}

export type ActionOutcome = { kind: 'done' } | { kind: 'skip-rest'; reason: string } | { kind: 'failed'; error: string };

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
        });
        return { kind: 'done' };
      }
      case 'start-postgres': {
        const upstream = action.upstream === null ? null : upstreamOf(obs, action.upstream);
        if (action.mode === 'primary' && !memory.holdsLeader) {
          // Invariant 1 of decide.ts, enforced again at the point of no return.
          return { kind: 'skip-rest', reason: 'refusing to start writable without the leader key' };
        }
        await pg.start(action.mode, upstream);
        memory.configuredUpstream = upstream?.name ?? null;
        return { kind: 'done' };
      }
      case 'acquire-leader': {
        const leaseId = memory.leaseId;
        if (leaseId === null) return { kind: 'skip-rest', reason: 'no lease' };
        const won = await dcs.createIfAbsent(keys.leader, node, { leaseId });
        if (!won) return { kind: 'skip-rest', reason: 'another node took the leader key first' };
        memory.holdsLeader = true;
        this.deps.log.info('acquired the leader key');
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
        return { kind: 'done' };
      }
      case 'release-stale-leader':
        await dcs.deleteIfEquals(keys.leader, node);
        return { kind: 'done' };
      case 'promote': {
        if (!memory.holdsLeader) return { kind: 'skip-rest', reason: 'refusing to promote without the leader key' };
        const before = obs.pg.kind === 'running' ? obs.pg : null;
        await pg.promote();
        memory.configuredUpstream = null;
        const after = await pg.observe();
        if (after.kind === 'running' && before !== null) {
          await appendHistory(dcs, keys, {
            timeline: after.timeline,
            lsn: before.lsn,
            reason: 'promoted after the leader key was free',
            at: new Date(this.deps.clock.nowMs()).toISOString(),
            newLeader: node,
          });
        }
        return { kind: 'done' };
      }
      case 'follow': {
        const upstream = action.upstream === null ? null : upstreamOf(obs, action.upstream);
        if (action.upstream !== null && upstream === null) return { kind: 'skip-rest', reason: `no address for ${action.upstream}` };
        await pg.follow(upstream);
        memory.configuredUpstream = upstream?.name ?? null;
        return { kind: 'done' };
      }
      case 'fence':
        this.deps.log.warn({ reason: action.reason }, 'fencing: stopping postgres immediately');
        await pg.stop('immediate');
        memory.holdsLeader = false;
        return { kind: 'done' };
      case 'demote': {
        const upstream = action.upstream === null ? null : upstreamOf(obs, action.upstream);
        await pg.stop('fast');
        memory.holdsLeader = false;
        await pg.start('standby', upstream);
        memory.configuredUpstream = upstream?.name ?? null;
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
    }
  }

  /**
   * Bootstrap race (architecture.md §3): the initialize key is created-if-absent as
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
