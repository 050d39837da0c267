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
 *    Failsafe mode (opt-in) replaces the lease by an all-members check (src/ha/failsafe.ts): every
 *    member promised not to race for longer than the permission that check grants.
 * 3. Only the best-ranked eligible candidate takes a free leader key, unless a live operator
 *    intent names the node (switchover target, or a forced failover).
 * 4. Sync mode (src/ha/sync-set.ts): every acknowledged commit is on `quorum` members of the
 *    published set; only a member of it that knows fresh positions of enough members (and is not
 *    behind any) takes a free key, and it publishes an empty set of its own before promoting.
 */
import type { Action, Decision } from './actions.js';
import type { Candidate } from './election.js';
import { candidateOfRecord, highestKnownTimeline, ineligibility, notStreamingMsOf, rankCandidates, type ClusterFacts } from './election.js';
import { failsafeAckActive, type FailsafeCheck } from './failsafe.js';
import type { Observation } from './observation.js';
import type { MemberRecord } from '../state/member-record.js';
import { isIntentLive, liveIntent, type FailoverIntent } from '../state/intent.js';
import { INITIALIZE_PENDING_PREFIX } from '../dcs/keys.js';
import { nextSyncStep, parseStandbyNames, syncPromotionCheck } from './sync-set.js';
import { compareLsn, maxLsn } from '../shared/lsn.js';
import { divergedAfterMs, failsafePermissionEndsMs, leaderPostgresDownLimitMs, leaseDeadlineMs, notStreamingLimitMs, settledAfterMs, startupGraceMs } from './timing.js';

/** Failed starts of a standby in a row before it is rewound (or re-cloned) instead of restarted. */
export const CRASHES_BEFORE_REJOIN = 3;

function decision(summary: string, ...actions: Action[]): Decision {
  return { actions, summary };
}

type Reachable = Extract<Observation['dcs'], { kind: 'reachable' }>;
type Running = Extract<Observation['pg'], { kind: 'running' }>;
type Stopped = Extract<Observation['pg'], { kind: 'stopped' }>;

/** Actions that copy or rewrite a data directory: retried with a backoff after failures. */
const DATA_TASKS: ReadonlySet<Action['kind']> = new Set(['clone-from', 'rejoin', 'reclone', 'initialize-cluster']);

/** Wait after `failures` failed data tasks in a row: 2 s, 4 s, 8 s ... at most 60 s. */
export function dataTaskBackoffMs(failures: number): number {
  if (failures <= 0) return 0;
  return Math.min(60_000, 2_000 * 2 ** Math.min(failures - 1, 10));
}

export function decide(obs: Observation): Decision {
  const d = decideOnce(obs);
  // A clone or rewind that keeps failing (disk full, leader unreachable) is not retried in a tight
  // loop: each pg_basebackup makes the leader checkpoint and keep WAL for this member's slot.
  const failures = obs.dataTaskFailures ?? null;
  if (failures !== null && d.actions.some((a) => DATA_TASKS.has(a.kind))) {
    const retryAtMs = failures.lastFailedMs + dataTaskBackoffMs(failures.count);
    if (obs.nowMs < retryAtMs) {
      return decision(`${d.summary}: waiting ${retryAtMs - obs.nowMs} ms after ${failures.count} failed attempt${failures.count === 1 ? '' : 's'}`);
    }
  }
  return d;
}

function decideOnce(obs: Observation): Decision {
  if (obs.dcs.kind === 'unreachable') return decideWithoutDcs(obs, obs.dcs.error);
  const dcs = obs.dcs;
  if (obs.longTask !== null) return decision(`busy: ${obs.longTask.kind} running`);
  const untrusted = decideUntrustedLeader(obs, dcs);
  if (untrusted !== null) return untrusted;
  switch (obs.pg.kind) {
    case 'no-data':
      return decideBootstrap(obs, dcs);
    case 'stopped':
      return decideStopped(obs, dcs, obs.pg);
    case 'starting': {
      if (dcs.leader === obs.node && obs.lease.holdsLeader && obs.nowMs - obs.pg.sinceMs > leaderPostgresDownLimitMs(obs.config)) {
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

/**
 * Rules L1-L2: the leader key is untrusted (src/ha/leader-trust.ts: no lease, or naming a node
 * without a member record). It never demotes a healthy primary: the last trusted leader, still
 * running as primary, reclaims the key by compare-and-set on the bad value (L1; while the key is
 * only unconfirmed it waits), and nobody acts on an unconfirmed key (L2). An ignored key with no
 * leader left falls through to the usual rules, whose `acquire-leader` replaces it (L3).
 */
function decideUntrustedLeader(obs: Observation, dcs: Reachable): Decision | null {
  const untrusted = dcs.untrustedLeader ?? null;
  if (untrusted === null) return null;
  const isPrimary = obs.pg.kind === 'running' && !obs.pg.inRecovery;
  if (dcs.leader === obs.node && isPrimary) {
    if (!untrusted.ignored) return decision(`leader key untrusted (${untrusted.reason}): keeping the primary, waiting before reclaiming the key`);
    return decision(`leader key ignored (${untrusted.reason}): reclaiming it`, { kind: 'acquire-leader', replacing: untrusted.value });
  }
  if (dcs.leader === null && !untrusted.ignored) return decision(`leader key untrusted (${untrusted.reason}): waiting up to one TTL for its member record; keeping current role`);
  return null;
}

/** `acquire-leader`, over an ignored leader key's value when there is one (rule L3). */
function acquireLeader(dcs: Reachable): Action {
  const untrusted = dcs.untrustedLeader ?? null;
  return untrusted !== null && untrusted.ignored ? { kind: 'acquire-leader', replacing: untrusted.value } : { kind: 'acquire-leader' };
}

/**
 * Failsafe mode: until when an all-members check lets this primary keep running (the lease
 * arithmetic from the check's start); null when some member did not answer or refused.
 */
export function failsafeDeadlineMs(check: FailsafeCheck): number | null {
  if (check.unreachable.length > 0) return null;
  return failsafePermissionEndsMs(check.checkedAtMs, check.holdMs);
}

/** The failsafe permission in force now (failsafe on, a check where every member accepted, not past its deadline). */
function failsafeHolds(obs: Observation): { deadlineMs: number; members: number } | null {
  if (!obs.config.failsafe || obs.failsafe === undefined || obs.failsafe === null) return null;
  const deadlineMs = failsafeDeadlineMs(obs.failsafe);
  if (deadlineMs === null || obs.nowMs >= deadlineMs) return null;
  return { deadlineMs, members: obs.failsafe.reachable.length };
}

/**
 * Rule A: etcd cannot be reached. Nobody changes roles; a primary fences before its lease ends,
 * unless failsafe mode is on and every member it last saw in etcd answered the loop's last check
 * (src/ha/failsafe.ts: each of them promised not to race while that check's permission lasts).
 */
function decideWithoutDcs(obs: Observation, error: string): Decision {
  const isWritablePrimary = obs.pg.kind === 'running' && !obs.pg.inRecovery;
  if (!isWritablePrimary) return decision(`etcd unreachable (${error}); keeping current role`);
  const failsafe = failsafeHolds(obs);
  const keepOnFailsafe = (why: string) =>
    decision(`etcd unreachable ${why}; failsafe: all ${failsafe?.members ?? 0} other members answered: keeping the primary for ${(failsafe?.deadlineMs ?? 0) - obs.nowMs} ms`);
  if (!obs.lease.holdsLeader || obs.lease.lastRenewedMs === null) {
    // The lease is gone (etcd came back, the key could not be re-taken, etcd went away again).
    if (failsafe !== null) return keepOnFailsafe('without a leader lease');
    return decision('etcd unreachable and no leader lease: fencing', { kind: 'fence', reason: 'primary without a leader lease' });
  }
  const deadlineMs = leaseDeadlineMs(obs.lease.lastRenewedMs, obs.lease.ttlSeconds);
  if (obs.nowMs >= deadlineMs) {
    if (failsafe !== null) return keepOnFailsafe('past the lease deadline');
    if (obs.config.failsafe) {
      const check = obs.failsafe ?? null;
      const why =
        check === null ? 'no check of the members' : check.unreachable.length > 0 ? `not confirmed by ${check.unreachable.join(', ')}` : 'the last check of the members is too old';
      return decision(`etcd unreachable past the lease deadline; failsafe: ${why}: fencing`, {
        kind: 'fence',
        reason: `leader lease could not be renewed before its deadline (failsafe: ${why})`,
      });
    }
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
      if (pg.crashed && obs.lastHealthyMs !== null && obs.nowMs - obs.lastHealthyMs > leaderPostgresDownLimitMs(obs.config)) {
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
  // A promise to a failsafe leader (src/ha/failsafe.ts) keeps this node out of the race, C8 included.
  if (pg.cleanShutdownPrimary && obs.lastHealthyMs === null && obs.tags.nofailover !== true && !failsafeAckActive(obs.failsafeAck, obs.nowMs)) {
    const higher = dcs.members.find((m) => m.name !== obs.node && m.timeline !== null && pg.timeline !== null && m.timeline > pg.timeline);
    if (higher === undefined) {
      return decision('no leader; this node shut down cleanly as primary: taking the lead', acquireLeader(dcs), {
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
    if (pg.inRecovery) {
      // Sync mode: the set published for an earlier term must not outlive this promotion (see decideElection).
      const set = dcs.sync?.set ?? null;
      if (obs.config.synchronous === 'quorum' && (set === null || set.leader !== obs.node || set.members.length > 0)) {
        return decision('holding the leader key: emptying the synchronous set, then promoting', { kind: 'publish-sync-set', members: [], quorum: 0, expected: dcs.sync?.raw ?? null }, { kind: 'promote' });
      }
      return decision('holding the leader key: promoting', { kind: 'promote' });
    }
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
    if (leaderReady && (leader.timeline ?? 0) > pg.timeline && stuckMs >= divergedAfterMs(obs.config)) {
      return decision(`cannot follow ${dcs.leader} on timeline ${leader.timeline} for ${stuckMs} ms: rewinding`, { kind: 'rejoin', leader: dcs.leader });
    }
    // D8: on the leader's timeline but behind the oldest WAL the leader still has (its slot was
    // invalidated, or it was down too long): streaming can never catch up. Everything this standby
    // has is a prefix of what the leader wrote on this timeline, so nothing unique is at stake; its
    // data is moved aside anyway (never deleted) and it clones anew.
    const position = maxLsn(pg.lsn, pg.receiveLsn);
    const oldest = leader?.oldestWalLsn ?? null;
    if (leaderReady && leader.timeline === pg.timeline && oldest !== null && position !== null && compareLsn(position, oldest) < 0 && stuckMs >= divergedAfterMs(obs.config)) {
      return decision(`cannot stream from ${dcs.leader}: at ${position}, its oldest WAL starts at ${oldest}: re-cloning`, {
        kind: 'reclone',
        leader: dcs.leader,
        reason: `the WAL from ${position} is gone from ${dcs.leader} (oldest ${oldest})`,
      });
    }
    return decision(`replica of ${dcs.leader}, not streaming yet`);
  }
  return decideElection(obs, dcs, pg);
}

/** Rule D3: this node leads. Carry out an intent addressed to it, clear finished or stale ones. */
function decideLeading(obs: Observation, dcs: Reachable): Decision {
  const sync = decideSyncSet(obs, dcs);
  const routine: Action[] = [...sync.actions, { kind: 'sync-slots' }, { kind: 'publish-leader-lsn' }];
  const intent = dcs.intent;
  if (intent === null) return decision(sync.summary === '' ? 'leading' : `leading; ${sync.summary}`, ...routine);
  if (!isIntentLive(intent, obs.nowMs)) {
    return decision(`leading; clearing a stale ${intent.kind} intent`, { kind: 'clear-intent', intent, completed: false }, ...routine);
  }
  if (intent.from === obs.node) {
    return decision(`${intent.kind} requested: handing the lead to ${intent.to ?? 'the best replica'}`, { kind: 'step-down', intent });
  }
  return decision(`leading after a ${intent.kind}; clearing the intent`, { kind: 'clear-intent', intent, completed: true }, ...routine);
}

/**
 * Rule D3s (sync mode, src/ha/sync-set.ts): one step per tick towards the synchronous set, in the
 * order that keeps "every acknowledged commit is on q members of the published set". With sync
 * mode off, a set this leader managed is retired: /sync emptied first, then
 * synchronous_standby_names cleared (only a value in pgpilot's own format).
 */
function decideSyncSet(obs: Observation, dcs: Reachable): { actions: Action[]; summary: string } {
  const published = dcs.sync ?? null;
  const state = obs.leaderSync ?? null;
  const expected = published?.raw ?? null;
  if (obs.config.synchronous !== 'quorum') {
    if (published === null) return { actions: [], summary: '' };
    const set = published.set;
    if (set === null || set.leader !== obs.node || set.members.length > 0) {
      return { actions: [{ kind: 'publish-sync-set', members: [], quorum: 0, expected }], summary: 'sync mode off: emptying the published synchronous set' };
    }
    const own = state === null ? null : parseStandbyNames(state.standbyNames);
    if (own !== null && own.names.length > 0) {
      return { actions: [{ kind: 'set-sync-standbys', names: [], quorum: 0 }], summary: 'sync mode off: clearing synchronous_standby_names' };
    }
    return { actions: [], summary: '' };
  }
  if (state === null) return { actions: [], summary: 'sync: replication state not read this tick' };
  const step = nextSyncStep({
    self: obs.node,
    strict: obs.config.synchronousStrict,
    nodeCount: obs.config.synchronousNodeCount,
    published: published?.set ?? null,
    standbys: parseStandbyNames(state.standbyNames),
    replication: state.replication,
    members: dcs.members,
    appliedLsn: state.appliedLsn,
    degradeGraceActive: state.degradeGraceActive === true,
  });
  switch (step.kind) {
    case 'set-standbys':
      return { actions: [{ kind: 'set-sync-standbys', names: step.names, quorum: step.quorum }], summary: step.summary };
    case 'publish':
      return { actions: [{ kind: 'publish-sync-set', members: step.members, quorum: step.quorum, expected }], summary: step.summary };
    case 'wait':
    case 'steady':
      return { actions: [], summary: step.summary };
  }
}

/** Rule E: running, no leader. Only the best eligible candidate (or the intent's target) takes the key. */
function decideElection(obs: Observation, dcs: Reachable, pg: Running): Decision {
  const stayPut: Action[] = pg.inRecovery ? [] : [{ kind: 'demote' }];
  const syncMode = obs.config.synchronous === 'quorum';
  // Sync mode: the new leader publishes an empty set (its own) after taking the key and before it
  // can acknowledge a commit, so no member of the old set may promote on the old set's strength
  // while this node's commits are not on them (sync-set.ts).
  const emptySync: Action[] = syncMode ? [{ kind: 'publish-sync-set', members: [], quorum: 0, expected: dcs.sync?.raw ?? null }] : [];
  const take: Action[] = pg.inRecovery ? [acquireLeader(dcs), ...emptySync, { kind: 'promote' }] : [acquireLeader(dcs), ...emptySync];
  // E0: etcd is back and this primary kept running on failsafe: its lease (and key) expired
  // meanwhile, and every member promised not to race while its permission lasts: take the key
  // back now, before any other rule (ranking ties, intents) could hand it to another node.
  if (!pg.inRecovery && failsafeHolds(obs) !== null) {
    return decision('no leader; etcd is back and this primary kept running on failsafe: taking the leader key back', acquireLeader(dcs));
  }
  // E0b: this node promised a failsafe leader to stay out of the race (it answered its check).
  if (failsafeAckActive(obs.failsafeAck, obs.nowMs)) {
    return decision(`no leader; failsafe: promised ${obs.failsafeAck.leader} to stay out of the race for ${obs.failsafeAck.untilMs - obs.nowMs} ms`, ...stayPut);
  }
  const intent = liveIntent(dcs.intent, obs.nowMs);
  // Intents keep their behaviour: the named target takes the key whatever its eligibility (the
  // CLI refuses a `nofailover` target up front; a forced failover may knowingly override lag).
  if (intent !== null && intent.to === obs.node) {
    // Sync mode: only a member of the published set may be made leader, even on request (the CLI
    // refuses such a target up front; this covers an intent written by hand or a set that changed).
    const set = dcs.sync?.set ?? null;
    if (syncMode && (set === null || !set.members.includes(obs.node))) {
      return decision(`no leader; ${intent.kind} target, but not in the synchronous set (${set?.members.join(', ') || 'empty'}): refusing to lead`, ...stayPut);
    }
    return decision(`no leader; this node is the ${intent.kind} target: taking the lead`, ...take);
  }
  const other = intentForOther(obs, dcs);
  if (other !== null) return decision(`no leader; ${other.kind} to ${other.to ?? 'another node'} in progress: waiting`, ...stayPut);
  // Self-check and ranking use the same rules and facts every other node (and `status`) applies to
  // this node's published record: election.ts `ineligibility`.
  const facts: ClusterFacts = {
    highestTimeline: highestKnownTimeline(dcs.members, dcs.historyTimeline),
    notStreamingLimitMs: notStreamingLimitMs(obs.config.ttlSeconds),
  };
  const notStreamingMs = notStreamingMsOf({
    nowMs: obs.nowMs,
    isStandby: pg.inRecovery,
    notStreamingSinceMs: obs.notStreamingSinceMs,
    lastLeaderSeenMs: obs.lastLeaderSeenMs ?? null,
    leaderInSight: false,
  });
  const self: Candidate = { name: obs.node, timeline: pg.timeline, lsn: pg.lsn, tags: obs.tags, notStreamingMs };
  const reason = ineligibility(self, dcs.lastLeaderLsn, obs.config.maximumLagOnFailoverBytes, facts);
  if (reason !== null) return decision(`no leader; not eligible (${reason})`, ...stayPut);
  // A fresh agent, or one whose lease had expired (an etcd outage longer than the TTL: every member
  // record expired with it), waits one TTL before racing, so that the others have re-published
  // their positions and a cleanly shut-down former primary can reclaim the lead first. Not a member
  // that has since seen a leader for two loop waits: it is part of a running cluster in which every
  // live member has published its position (each does every loop) and nobody is reclaiming, so a
  // leader that died (or released its lease) is replaced at once.
  const graceStartMs = Math.max(obs.agentStartedMs, obs.lease.grantedMs ?? 0);
  const graceEndsMs = graceStartMs + startupGraceMs(obs.config);
  const settled = obs.lastLeaderSeenMs !== undefined && obs.lastLeaderSeenMs !== null && obs.lastLeaderSeenMs - graceStartMs >= settledAfterMs(obs.config);
  if (intent === null && pg.inRecovery && !settled && obs.nowMs < graceEndsMs) return decision(`no leader; start-up grace for ${graceEndsMs - obs.nowMs} ms`);
  if (syncMode) {
    // Sync mode replaces the ranking: only members of the published set compete, and only one that
    // has fresh positions of enough of them to be sure it holds every acknowledged commit.
    const tags = new Map(dcs.members.map((m) => [m.name, m.tags] as const));
    tags.set(obs.node, obs.tags);
    const tieBreak = (a: string, b: string): number => {
      const priority = (tags.get(b)?.priority ?? 0) - (tags.get(a)?.priority ?? 0);
      return priority !== 0 ? priority : a < b ? -1 : a > b ? 1 : 0;
    };
    const own = { name: obs.node, timeline: pg.timeline, lsn: maxLsn(pg.lsn, pg.receiveLsn) };
    const verdict = syncPromotionCheck(own, dcs.sync?.set ?? null, obs.peerPositions ?? [], tieBreak);
    if (verdict.kind === 'refused') return decision(`no leader; sync mode: not promoting (${verdict.reason})`, ...stayPut);
    return pg.inRecovery
      ? decision('no leader; sync mode: holds every acknowledged commit: taking the lead and promoting', ...take)
      : decision('no leader; sync mode: holds every acknowledged commit, already primary: taking the lead', ...take);
  }
  const others: Candidate[] = dcs.members
    .filter((m) => m.name !== obs.node && m.role !== 'stopped' && m.state === 'running')
    .map(candidateOf);
  const ranked = rankCandidates([self, ...others], dcs.lastLeaderLsn, obs.config.maximumLagOnFailoverBytes, facts);
  const best = ranked[0];
  if (best === undefined || best.name !== obs.node) {
    return decision(`no leader; ${best?.name ?? 'another node'} is the better candidate`, ...stayPut);
  }
  return pg.inRecovery
    ? decision('no leader; best candidate: taking the lead and promoting', ...take)
    : decision('no leader; best candidate and already primary: taking the lead', ...take);
}

function candidateOf(member: MemberRecord): Candidate {
  return candidateOfRecord(member);
}

function leaderMember(dcs: Reachable): MemberRecord | null {
  if (dcs.leader === null) return null;
  return dcs.members.find((m) => m.name === dcs.leader) ?? null;
}
