/**
 * The HA decision core: `decide(observation) -> { actions, summary }`. Pure: no I/O, no clock
 * reads (time comes in the observation), so every rule below is unit-tested as a table and the
 * same function drives the real agent and the scenario simulations. docs/ha-loop.md lists every
 * branch; keep the two in sync.
 *
 * Safety invariants this function keeps:
 * 1. Postgres is started writable (or promoted) only by a node that holds the leader key.
 * 2. A primary that cannot prove it holds the key stops accepting writes: when etcd is
 *    unreachable it fences itself once its own lease deadline (last renewal + TTL - margin)
 *    passes, before any other node can take the key; when another node leads, it demotes.
 * 3. Only the best-ranked eligible candidate takes a free leader key, unless a live operator
 *    intent names the node (switchover target, or a forced failover).
 */
import type { Action, Decision } from './actions.js';
import type { Candidate } from './election.js';
import { ineligibility, rankCandidates } from './election.js';
import type { Observation } from './observation.js';
import type { MemberRecord } from './member-record.js';
import { isIntentLive, liveIntent, type FailoverIntent } from './intent.js';
import { INITIALIZE_PENDING_PREFIX } from '../dcs/keys.js';

/** A leader fences this long before its lease would expire, to absorb clock-rate and I/O delays. */
export function fenceMarginMs(ttlSeconds: number): number {
  return Math.min(2000, Math.floor((ttlSeconds * 1000) / 4));
}

/** The local time at which a leader that has not renewed must already have fenced itself. */
export function leaseDeadlineMs(lastRenewedMs: number, ttlSeconds: number): number {
  return lastRenewedMs + ttlSeconds * 1000 - fenceMarginMs(ttlSeconds);
}

/** Failed starts of a standby in a row before it is rewound (or re-cloned) instead of restarted. */
export const CRASHES_BEFORE_REJOIN = 3;

function decision(summary: string, ...actions: Action[]): Decision {
  return { actions, summary };
}

type Reachable = Extract<Observation['dcs'], { kind: 'reachable' }>;
type Running = Extract<Observation['pg'], { kind: 'running' }>;
type Stopped = Extract<Observation['pg'], { kind: 'stopped' }>;

export function decide(obs: Observation): Decision {
  if (obs.dcs.kind === 'unreachable') return decideWithoutDcs(obs, obs.dcs.error);
  const dcs = obs.dcs;
  if (obs.longTask !== null) return decision(`busy: ${obs.longTask.kind} running`);
  switch (obs.pg.kind) {
    case 'no-data':
      return decideBootstrap(obs, dcs);
    case 'stopped':
      return decideStopped(obs, dcs, obs.pg);
    case 'starting': {
      const ttlMs = obs.config.ttlSeconds * 1000;
      if (dcs.leader === obs.node && obs.lease.holdsLeader && obs.nowMs - obs.pg.sinceMs > ttlMs) {
        return decision('leader postgres did not come up within the TTL: stopping it and releasing the lead', { kind: 'fence', reason: 'startup took longer than the TTL' }, {
          kind: 'release-leader',
          reason: 'postgres did not come up within the TTL',
        });
      }
      return decision('postgres is starting');
    }
    case 'running':
      return decideRunning(obs, dcs, obs.pg);
  }
}

/** Rule A: etcd cannot be reached. Nobody changes roles; a primary fences before its lease ends. */
function decideWithoutDcs(obs: Observation, error: string): Decision {
  const isWritablePrimary = obs.pg.kind === 'running' && !obs.pg.inRecovery;
  if (!isWritablePrimary) return decision(`etcd unreachable (${error}); keeping current role`);
  if (!obs.lease.holdsLeader || obs.lease.lastRenewedMs === null) {
    return decision('etcd unreachable and no leader lease: fencing', { kind: 'fence', reason: 'primary without a leader lease' });
  }
  const deadlineMs = leaseDeadlineMs(obs.lease.lastRenewedMs, obs.lease.ttlSeconds);
  if (obs.nowMs >= deadlineMs) {
    return decision('etcd unreachable past the lease deadline: fencing', {
      kind: 'fence',
      reason: 'leader lease could not be renewed before its deadline',
    });
  }
  return decision(`etcd unreachable (${error}); lease still valid for ${deadlineMs - obs.nowMs} ms`);
}

/** Rule B: no data directory yet. Initialize the cluster once, or clone from the leader. */
function decideBootstrap(obs: Observation, dcs: Reachable): Decision {
  if (dcs.initialize === null) return decision('cluster not initialized: racing to initialize', { kind: 'initialize-cluster' });
  if (dcs.initialize.startsWith(INITIALIZE_PENDING_PREFIX)) {
    return decision(`waiting: ${dcs.initialize.slice(INITIALIZE_PENDING_PREFIX.length)} is initializing the cluster`);
  }
  const leader = leaderMember(dcs);
  if (leader === null || leader.name === obs.node) return decision('waiting for a leader to clone from');
  if (leader.role !== 'primary' || leader.state !== 'running') return decision(`waiting for leader ${leader.name} to be running`);
  return decision(`cloning from leader ${leader.name}`, { kind: 'clone-from', leader: leader.name });
}

/** A live intent that hands the lead to another node: everybody else stays out of the way. */
function intentForOther(obs: Observation, dcs: Reachable): FailoverIntent | null {
  const intent = liveIntent(dcs.intent, obs.nowMs);
  if (intent === null) return null;
  if (intent.to !== null) return intent.to === obs.node ? null : intent;
  // No named target: the stepping-down leader must not take the lead back.
  return intent.from === obs.node ? intent : null;
}

/** Rule C: data exists, postgres is down (fresh agent start, crash, fencing, step-down). */
function decideStopped(obs: Observation, dcs: Reachable, pg: Stopped): Decision {
  if (dcs.leader === obs.node) {
    if (obs.lease.holdsLeader) {
      const ttlMs = obs.config.ttlSeconds * 1000;
      if (pg.crashed && obs.lastHealthyMs !== null && obs.nowMs - obs.lastHealthyMs > ttlMs) {
        return decision('leader postgres stayed down longer than the TTL: releasing the lead', {
          kind: 'release-leader',
          reason: 'postgres could not be restarted within the TTL',
        });
      }
      return decision(pg.crashed ? 'leader postgres crashed: restarting in place' : 'starting postgres as leader', {
        kind: 'start-postgres',
        mode: 'primary',
        upstream: null,
      });
    }
    if (pg.wasPrimary) {
      // Agent restarted (or machine rebooted) before the old lease expired: nobody else could
      // lead meanwhile, so this node keeps the lead with the data it had.
      return decision('leader key of a previous run of this node: adopting it and restarting as leader', { kind: 'adopt-leader' }, {
        kind: 'start-postgres',
        mode: 'primary',
        upstream: null,
      });
    }
    return decision('leader key left by a previous run of this node: releasing it', { kind: 'release-stale-leader' });
  }
  if (dcs.leader !== null) {
    // A cleanly stopped former primary may hold WAL the new leader never had: rewind (or
    // re-clone) before following. A crashed one first recovers as a standby of the leader (its WAL
    // usually ends at the fork point, so it can follow as is); pg_rewind's own crash recovery
    // would append a checkpoint past the fork. If it cannot follow, rule D7 rewinds it then.
    if (pg.wasPrimary && pg.cleanShutdownPrimary) {
      return decision(`former primary: rejoining ${dcs.leader} as a standby`, { kind: 'rejoin', leader: dcs.leader });
    }
    // A standby whose postgres dies at every start (e.g. "requested timeline does not contain the
    // minimum recovery point") cannot be fixed by restarting: rewind it, or re-clone it with its
    // data kept aside.
    if (pg.crashed && (obs.consecutiveCrashes ?? 0) >= CRASHES_BEFORE_REJOIN) {
      return decision(`postgres failed to start ${obs.consecutiveCrashes ?? 0} times: rejoining ${dcs.leader}`, { kind: 'rejoin', leader: dcs.leader });
    }
    return decision(`starting postgres as a standby of ${dcs.leader}`, { kind: 'start-postgres', mode: 'standby', upstream: dcs.leader });
  }
  const other = intentForOther(obs, dcs);
  if (other !== null) {
    return decision(`no leader; ${other.kind} to ${other.to ?? 'another node'} in progress: starting read-only`, {
      kind: 'start-postgres',
      mode: 'standby',
      upstream: null,
    });
  }
  // No leader. A data directory cleanly shut down as primary ends exactly at its shutdown
  // checkpoint: no member on the same timeline can have WAL it lacks, so it may reclaim the lead
  // without a promotion (same timeline, same roles after `stop` + `start`).
  // Only for a fresh agent: a primary this agent demoted competes like any other member.
  if (pg.cleanShutdownPrimary && obs.lastHealthyMs === null && obs.tags.nofailover !== true) {
    const higher = dcs.members.find((m) => m.name !== obs.node && m.timeline !== null && pg.timeline !== null && m.timeline > pg.timeline);
    if (higher === undefined) {
      return decision('no leader; this node shut down cleanly as primary: taking the lead', { kind: 'acquire-leader' }, {
        kind: 'start-postgres',
        mode: 'primary',
        upstream: null,
      });
    }
  }
  return decision('no leader: starting read-only to take part in the election', {
    kind: 'start-postgres',
    mode: 'standby',
    upstream: null,
  });
}

/** Rule D: postgres is running. */
function decideRunning(obs: Observation, dcs: Reachable, pg: Running): Decision {
  if (obs.restartRequested) return decision('restart requested: restarting postgres in its current role', { kind: 'restart-postgres' });
  if (dcs.leader === obs.node) {
    if (!obs.lease.holdsLeader) {
      return decision('leader key left by a previous run of this node: releasing it', { kind: 'release-stale-leader' });
    }
    if (pg.inRecovery) return decision('holding the leader key: promoting', { kind: 'promote' });
    return decideLeading(obs, dcs);
  }
  if (dcs.leader !== null) {
    if (!pg.inRecovery) return decision(`${dcs.leader} leads: demoting this primary`, { kind: 'demote' });
    if (obs.configuredUpstream !== dcs.leader) {
      return decision(`following new leader ${dcs.leader}`, { kind: 'follow', upstream: dcs.leader });
    }
    if (pg.walReceiverStatus === 'streaming') return decision(`streaming from ${dcs.leader}`);
    // D7: a standby on an older timeline that cannot stream from the leader has diverged (WAL past
    // the fork point): rewind it, re-cloning if that is impossible.
    const leader = leaderMember(dcs);
    const stuckMs = obs.notStreamingSinceMs === null ? 0 : obs.nowMs - obs.notStreamingSinceMs;
    const leaderReady = leader !== null && leader.role === 'primary' && leader.state === 'running' && leader.timeline !== null;
    if (leaderReady && (leader.timeline ?? 0) > pg.timeline && stuckMs >= divergedAfterMs(obs)) {
      return decision(`cannot follow ${dcs.leader} on timeline ${leader.timeline} for ${stuckMs} ms: rewinding`, { kind: 'rejoin', leader: dcs.leader });
    }
    return decision(`replica of ${dcs.leader}, not streaming yet`);
  }
  return decideElection(obs, dcs, pg);
}

/** Rule D3: this node leads. Carry out an intent addressed to it, clear finished or stale ones. */
function decideLeading(obs: Observation, dcs: Reachable): Decision {
  const routine: Action[] = [{ kind: 'sync-slots' }, { kind: 'publish-leader-lsn' }];
  const intent = dcs.intent;
  if (intent === null) return decision('leading', ...routine);
  if (!isIntentLive(intent, obs.nowMs)) {
    return decision(`leading; clearing a stale ${intent.kind} intent`, { kind: 'clear-intent', intent, completed: false }, ...routine);
  }
  if (intent.from === obs.node) {
    return decision(`${intent.kind} requested: handing the lead to ${intent.to ?? 'the best replica'}`, { kind: 'step-down', intent });
  }
  return decision(`leading after a ${intent.kind}; clearing the intent`, { kind: 'clear-intent', intent, completed: true }, ...routine);
}

/** Rule E: running, no leader. Only the best eligible candidate (or the intent's target) takes the key. */
function decideElection(obs: Observation, dcs: Reachable, pg: Running): Decision {
  const stayPut: Action[] = pg.inRecovery ? [] : [{ kind: 'demote' }];
  const take: Action[] = pg.inRecovery ? [{ kind: 'acquire-leader' }, { kind: 'promote' }] : [{ kind: 'acquire-leader' }];
  const intent = liveIntent(dcs.intent, obs.nowMs);
  if (intent !== null && intent.to === obs.node) {
    return decision(`no leader; this node is the ${intent.kind} target: taking the lead`, ...take);
  }
  const other = intentForOther(obs, dcs);
  if (other !== null) return decision(`no leader; ${other.kind} to ${other.to ?? 'another node'} in progress: waiting`, ...stayPut);
  const self: Candidate = { name: obs.node, timeline: pg.timeline, lsn: pg.lsn, tags: obs.tags };
  const reason = ineligibility(self, dcs.lastLeaderLsn, obs.config.maximumLagOnFailoverBytes);
  if (reason !== null) return decision(`no leader; not eligible (${reason})`, ...stayPut);
  // A fresh agent, or one whose lease had expired (an etcd outage longer than the TTL: every member
  // record expired with it), waits one TTL before racing, so that the others have re-published
  // their positions and a cleanly shut-down former primary can reclaim the lead first.
  const graceEndsMs = Math.max(obs.agentStartedMs, obs.lease.grantedMs ?? 0) + obs.config.ttlSeconds * 1000;
  if (intent === null && pg.inRecovery && obs.nowMs < graceEndsMs) return decision(`no leader; start-up grace for ${graceEndsMs - obs.nowMs} ms`);
  const others: Candidate[] = dcs.members
    .filter((m) => m.name !== obs.node && m.role !== 'stopped' && m.state === 'running')
    .map(candidateOf);
  const ranked = rankCandidates([self, ...others], dcs.lastLeaderLsn, obs.config.maximumLagOnFailoverBytes);
  const best = ranked[0];
  if (best === undefined || best.name !== obs.node) {
    return decision(`no leader; ${best?.name ?? 'another node'} is the better candidate`, ...stayPut);
  }
  return pg.inRecovery
    ? decision('no leader; best candidate: taking the lead and promoting', ...take)
    : decision('no leader; best candidate and already primary: taking the lead', ...take);
}

/**
 * How long a standby may fail to stream from a leader on a newer timeline before it is rewound:
 * several of its 1 s reconnect attempts, so a standby that merely waits for its slot is left alone.
 */
export function divergedAfterMs(obs: Observation): number {
  return Math.max(10_000, 5 * obs.config.loopWaitMs);
}

function candidateOf(member: MemberRecord): Candidate {
  return { name: member.name, timeline: member.timeline, lsn: member.lsn, tags: member.tags };
}

function leaderMember(dcs: Reachable): MemberRecord | null {
  if (dcs.leader === null) return null;
  return dcs.members.find((m) => m.name === dcs.leader) ?? null;
}
