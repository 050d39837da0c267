/**
 * Synchronous quorum replication (dynamic config `synchronous: quorum`), pure. Two sets exist:
 *
 *   S, kS  the leader's `synchronous_standby_names = ANY kS (S)`: postgres acknowledges a commit
 *          once kS members of S have flushed it (S empty: at once, asynchronous).
 *   P, q   the published set under /pgpilot/<cluster>/sync, `{ leader, members: P, quorum: q }`,
 *          written only by the leader (record and parser: src/state/sync-record.ts). Only members
 *          of P may take a free leader key.
 *
 * INVARIANT (what failover relies on): every acknowledged commit is on at least q members of P.
 * A candidate that knows fresh positions of |P| - q + 1 members of P (itself included, read after
 * the old leader stopped) has seen at least one holder of every acknowledged commit, so if its own
 * position is the highest of them it has every acknowledged commit (`syncPromotionCheck`).
 * P empty means "nobody can be proven to hold every acknowledged commit": no promotion at all.
 *
 * Keeping the invariant while the sets change. Commits acknowledged under (S, kS) are on at least
 * `kS - |S \ P|` members of P, so the config in force must always satisfy
 *     (C1)  kS - |S \ P| >= q              (`coversNew`)
 * and a new P' may be published only if the commits acknowledged so far are on q' members of P':
 *     (C2)  q - |P \ P'| >= q'   (follows from the invariant for P), or
 *           q' members of P' have flushed past `appliedLsn`, the leader's WAL position observed once
 *           the current S was in force (every commit acknowledged before that is on them; every
 *           later one is covered by C1 for the current S).
 * With ANY-k semantics this gives the order of each change (one step per tick, `nextSyncStep`):
 *   - adding x:   publish P + {x} first (same q: C1 and C2 hold trivially), then put x into S;
 *   - removing x: take x out of S first, then, once q members of the remaining set have flushed
 *                 past `appliedLsn` (C2), publish P - {x};
 *   - raising k:  kS first (postgres), then q once confirmed; lowering k: q first (etcd), then kS;
 *   - degrading (non-strict, no healthy replica): publish P = {} first, then S = '' (async); not
 *                 while the leader's primary has been observed for less than SYNC_DEGRADE_GRACE_MS
 *                 (`degradeGraceActive`): right after the leader's postgres (re)started as primary its
 *                 standbys have not reconnected yet, and degrading then would leave P = {} behind,
 *                 so that if this leader is lost next nobody may be promoted (waiting is always safe);
 *   - strict: S is never emptied; with too few healthy replicas S keeps its members and writes block.
 * Adding x to S before publishing it would be unsafe: `ANY 1 (a, x)` acknowledges a commit that
 * only x has, while P = {a} still lets a promote alone. Removing x from P before S is unsafe for
 * the mirror reason. Every step `nextSyncStep` proposes is re-checked with C1/C2 before it is
 * returned (`stepIsSafe`), so a planner bug shows as a "wait", never as an unsafe publish.
 * A new leader publishes P = {} (leader = itself) before promoting; until it has rebuilt a set,
 * nobody else may be promoted. Members tagged `nofailover` are never made synchronous: a commit
 * held only by a member that may not lead would block every failover.
 */
import type { Tags } from '../config/schema.js';
import { compareLsn, isLsn } from '../shared/lsn.js';
import type { SyncSet } from '../state/sync-record.js';

/**
 * How long after the leader's primary is first observed (leading began, or its postgres restarted
 * as primary) a missing healthy replica does not yet degrade: standbys reconnect within a few
 * seconds (a walreceiver retries every 5 s at most).
 */
export const SYNC_DEGRADE_GRACE_MS = 10_000;

/** `synchronous_standby_names` as pgpilot writes it: `ANY quorum ("a", "b")`, or '' (names empty, quorum 0). */
export interface StandbyNames {
  names: string[];
  quorum: number;
}

export function formatStandbyNames(s: StandbyNames): string {
  if (s.names.length === 0) return '';
  return `ANY ${s.quorum} (${sortedUnique(s.names)
    .map((n) => `"${n.replace(/"/g, '""')}"`)
    .join(', ')})`;
}

/**
 * Parses what `SHOW synchronous_standby_names` returns when pgpilot set it (and '' ). Anything
 * else (FIRST, `*`, an operator's own value) is null: not understood, so the planner replaces it
 * only after emptying P.
 */
export function parseStandbyNames(text: string): StandbyNames | null {
  const trimmed = text.trim();
  if (trimmed === '') return { names: [], quorum: 0 };
  const match = /^ANY\s+(\d+)\s*\((.*)\)$/i.exec(trimmed);
  if (match === null) return null;
  const quorum = Number.parseInt(match[1] ?? '', 10);
  const names: string[] = [];
  for (const part of (match[2] ?? '').split(',')) {
    const item = part.trim();
    const quoted = /^"((?:[^"]|"")+)"$/.exec(item);
    const name = quoted !== null ? (quoted[1] ?? '').replace(/""/g, '"') : item;
    if (name === '' || name === '*' || /[\s"]/.test(name)) return null;
    names.push(name);
  }
  if (names.length === 0 || quorum < 1 || quorum > names.length) return null;
  return { names: sortedUnique(names), quorum };
}

// ----- the safety conditions -----

/** C1: commits acknowledged under `s` are on at least `p.quorum` members of `p` (vacuous for an empty P). */
export function coversNew(s: StandbyNames, p: { members: readonly string[]; quorum: number }): boolean {
  if (p.members.length === 0) return true;
  const outside = s.names.filter((n) => !p.members.includes(n)).length;
  return s.quorum - outside >= p.quorum && p.quorum >= 1;
}

/**
 * C2 (and C1 for the S in force): may `next` be published while `current` is published and `s`
 * is in force? `confirmed`: members whose flush position is past `appliedLsn`.
 */
export function publishIsSafe(
  current: { members: readonly string[]; quorum: number },
  next: { members: readonly string[]; quorum: number },
  s: StandbyNames,
  confirmed: readonly string[],
): boolean {
  if (next.members.length === 0) return true;
  if (next.quorum < 1 || next.quorum > next.members.length) return false;
  if (!coversNew(s, next)) return false;
  const dropped = current.members.filter((n) => !next.members.includes(n)).length;
  const coveredByInvariant = current.members.length > 0 && current.quorum - dropped >= next.quorum;
  const coveredByConfirmation = confirmed.filter((n) => next.members.includes(n)).length >= next.quorum;
  return coveredByInvariant || coveredByConfirmation;
}

// ----- the planner -----

export interface SyncReplica {
  name: string;
  /** pg_stat_replication.state on the leader. */
  state: string;
  flushLsn: string | null;
}

export interface SyncPlanInput {
  self: string;
  /**
   * The leader's primary has been observed for less than SYNC_DEGRADE_GRACE_MS: no healthy replica
   * is not yet a reason to degrade (absent: false).
   */
  degradeGraceActive?: boolean;
  strict: boolean;
  /** k: synchronousNodeCount. */
  nodeCount: number;
  /** /sync as read this tick (null: absent or malformed). */
  published: SyncSet | null;
  /** The leader's own synchronous_standby_names (null: a value pgpilot does not understand). */
  standbys: StandbyNames | null;
  /** The leader's walsenders (pg_stat_replication). */
  replication: readonly SyncReplica[];
  /** Members that may be synchronous (not `nofailover`), by their member records. */
  members: ReadonlyArray<{ name: string; tags: Tags }>;
  /** Leader WAL position observed once the current S was in force; null: not confirmed yet. */
  appliedLsn: string | null;
}

export type SyncStep =
  | { kind: 'steady'; summary: string }
  | { kind: 'wait'; summary: string }
  | { kind: 'set-standbys'; names: string[]; quorum: number; summary: string }
  | { kind: 'publish'; members: string[]; quorum: number; summary: string };

/** Replicas that should be synchronous: streaming from this leader, published, not `nofailover`. */
export function healthySyncCandidates(input: Pick<SyncPlanInput, 'self' | 'replication' | 'members'>): string[] {
  const streaming = new Set(input.replication.filter((r) => r.state === 'streaming').map((r) => r.name));
  return sortedUnique(input.members.filter((m) => m.name !== input.self && m.tags.nofailover !== true && streaming.has(m.name)).map((m) => m.name));
}

/** The set and quorum the leader works towards. */
export function targetStandbys(input: SyncPlanInput): StandbyNames {
  const healthy = healthySyncCandidates(input);
  const k = Math.max(1, input.nodeCount);
  if (!input.strict || healthy.length >= k) return { names: healthy, quorum: Math.min(k, healthy.length) };
  // Strict with too few healthy replicas: keep the current members too, so writes wait for them.
  const names = sortedUnique([...healthy, ...(input.standbys?.names ?? [])]);
  return { names, quorum: Math.min(k, names.length) };
}

/**
 * The next step towards the target, one per tick. Pure; the executor performs it and the next
 * tick observes the result. Every returned step satisfies C1/C2 (checked again here).
 */
export function nextSyncStep(input: SyncPlanInput): SyncStep {
  const step = proposeStep(input);
  if (step.kind !== 'set-standbys' && step.kind !== 'publish') return step;
  return stepIsSafe(input, step) ? step : { kind: 'wait', summary: `sync: refusing an unsafe step (${step.summary})` };
}

/** Re-checks a proposed step against C1/C2 with the current state. */
export function stepIsSafe(input: SyncPlanInput, step: Extract<SyncStep, { kind: 'set-standbys' | 'publish' }>): boolean {
  const p = ownPublished(input);
  if (step.kind === 'set-standbys') {
    const next = { names: step.names, quorum: step.quorum };
    if (next.names.length > 0 && (next.quorum < 1 || next.quorum > next.names.length)) return false;
    if (input.strict && next.names.length === 0 && (input.standbys?.names.length ?? 0) > 0) return false;
    return coversNew(next, p);
  }
  if (input.standbys === null) return step.members.length === 0;
  if (step.members.length > 0 && input.appliedLsn === null) return false;
  return publishIsSafe(p, { members: step.members, quorum: step.quorum }, input.standbys, confirmedMembers(input));
}

function proposeStep(input: SyncPlanInput): SyncStep {
  const { self } = input;
  const published = input.published;
  // A set published by an earlier leader says nothing about our commits: start our term with P = {}.
  if (published === null || published.leader !== self) {
    return { kind: 'publish', members: [], quorum: 0, summary: `sync: publishing an empty set for this leader (was ${published === null ? 'absent' : `${published.leader}'s`})` };
  }
  const p = ownPublished(input);
  const s = input.standbys;
  const target = targetStandbys(input);
  const describeS = s === null ? 'an unrecognized value' : formatStandbyNames(s) || "''";
  if (target.names.length === 0) {
    if (input.strict) {
      return s !== null && s.names.length > 0
        ? { kind: 'wait', summary: `sync (strict): no synchronous replica available; keeping ${describeS}, writes block` }
        : { kind: 'wait', summary: 'sync (strict): no replica to make synchronous yet' };
    }
    if (input.degradeGraceActive === true && (p.members.length > 0 || s === null || s.names.length > 0)) {
      return { kind: 'wait', summary: 'sync: no healthy replica yet; the primary just started leading: waiting for its standbys to reconnect before degrading' };
    }
    if (p.members.length > 0) return { kind: 'publish', members: [], quorum: 0, summary: 'sync: no healthy replica; degrading: publishing an empty set first' };
    if (s === null || s.names.length > 0) return { kind: 'set-standbys', names: [], quorum: 0, summary: 'sync: no healthy replica; degrading to asynchronous commits' };
    return { kind: 'steady', summary: 'sync: degraded, no synchronous replica (commits are asynchronous; no failover possible)' };
  }
  if (s === null) {
    if (p.members.length > 0) return { kind: 'publish', members: [], quorum: 0, summary: `sync: synchronous_standby_names is ${describeS}; emptying the published set before replacing it` };
    return { kind: 'set-standbys', names: target.names, quorum: target.quorum, summary: `sync: replacing ${describeS} with ${formatStandbyNames(target)}` };
  }
  const confirmed = confirmedMembers(input);
  if (p.members.length === 0) {
    if (!sameStandbys(s, target)) {
      return { kind: 'set-standbys', names: target.names, quorum: target.quorum, summary: `sync: setting ${formatStandbyNames(target)}` };
    }
    if (input.appliedLsn === null) return { kind: 'wait', summary: 'sync: waiting until the new synchronous_standby_names is in force' };
    const have = confirmed.filter((n) => target.names.includes(n));
    if (have.length < target.quorum) {
      return { kind: 'wait', summary: `sync: waiting for ${target.quorum} of ${target.names.join(', ')} to flush past ${input.appliedLsn} (have ${have.join(', ') || 'none'})` };
    }
    return { kind: 'publish', members: target.names, quorum: target.quorum, summary: `sync: publishing ${target.names.join(', ')} (quorum ${target.quorum})` };
  }
  // P is ours and non-empty; S is understood. (a) grow P first.
  const addToP = target.names.filter((n) => !p.members.includes(n));
  if (addToP.length > 0) {
    return { kind: 'publish', members: sortedUnique([...p.members, ...addToP]), quorum: p.quorum, summary: `sync: adding ${addToP.join(', ')} to the published set (before synchronous_standby_names)` };
  }
  // (b) then add the published newcomers to S.
  const addToS = target.names.filter((n) => !s.names.includes(n));
  if (addToS.length > 0) {
    return { kind: 'set-standbys', names: sortedUnique([...s.names, ...addToS]), quorum: s.quorum, summary: `sync: adding ${addToS.join(', ')} to synchronous_standby_names` };
  }
  // (c) remove from S what should go; lower q first if kS has to drop below it.
  const removeFromS = s.names.filter((n) => !target.names.includes(n));
  if (removeFromS.length > 0) {
    const names = s.names.filter((n) => target.names.includes(n));
    const quorum = Math.min(s.quorum, names.length);
    if (quorum < p.quorum) return { kind: 'publish', members: p.members, quorum, summary: `sync: lowering the published quorum to ${quorum} before removing ${removeFromS.join(', ')}` };
    return { kind: 'set-standbys', names, quorum, summary: `sync: removing ${removeFromS.join(', ')} from synchronous_standby_names (before the published set)` };
  }
  // (d) S has the target names: move kS to the target quorum (raise in postgres first; lower q first).
  if (s.quorum < target.quorum) {
    return { kind: 'set-standbys', names: s.names, quorum: target.quorum, summary: `sync: raising the synchronous quorum to ${target.quorum}` };
  }
  if (s.quorum > target.quorum) {
    if (p.quorum > target.quorum) return { kind: 'publish', members: p.members, quorum: target.quorum, summary: `sync: lowering the published quorum to ${target.quorum}` };
    return { kind: 'set-standbys', names: s.names, quorum: target.quorum, summary: `sync: lowering the synchronous quorum to ${target.quorum}` };
  }
  // (e) drop from P what left S, once the remaining members are confirmed past appliedLsn.
  const removeFromP = p.members.filter((n) => !s.names.includes(n));
  const quorum = Math.min(p.quorum, s.quorum);
  if (removeFromP.length > 0 || p.quorum < s.quorum) {
    const nextQuorum = removeFromP.length > 0 ? quorum : s.quorum;
    const next = { members: s.names, quorum: nextQuorum };
    if (input.appliedLsn === null) return { kind: 'wait', summary: 'sync: waiting until the new synchronous_standby_names is in force' };
    if (!publishIsSafe(p, next, s, confirmed)) {
      return {
        kind: 'wait',
        summary: `sync: waiting for ${nextQuorum} of ${s.names.join(', ')} to flush past ${input.appliedLsn} before publishing ${removeFromP.length > 0 ? `without ${removeFromP.join(', ')}` : `quorum ${nextQuorum}`}`,
      };
    }
    return {
      kind: 'publish',
      members: next.members,
      quorum: next.quorum,
      summary: removeFromP.length > 0 ? `sync: removing ${removeFromP.join(', ')} from the published set` : `sync: publishing quorum ${next.quorum}`,
    };
  }
  const streaming = healthySyncCandidates(input).filter((n) => s.names.includes(n));
  if (streaming.length < s.quorum) {
    return {
      kind: 'steady',
      summary: `sync (strict): ${streaming.length} of the ${s.quorum} synchronous replicas needed stream (${formatStandbyNames(s)}); writes block until one is back`,
    };
  }
  return { kind: 'steady', summary: `sync: ${p.members.join(', ')} synchronous (ANY ${s.quorum})` };
}

/** The published set if it is this leader's, else empty (an earlier leader's set covers none of our commits). */
function ownPublished(input: SyncPlanInput): { members: string[]; quorum: number } {
  const published = input.published;
  if (published === null || published.leader !== input.self) return { members: [], quorum: 0 };
  return { members: published.members, quorum: published.quorum };
}

function confirmedMembers(input: SyncPlanInput): string[] {
  const applied = input.appliedLsn;
  if (applied === null) return [];
  return input.replication
    .filter((r) => r.flushLsn !== null && isLsn(r.flushLsn) && compareLsn(r.flushLsn, applied) >= 0)
    .map((r) => r.name);
}

function sameStandbys(a: StandbyNames, b: StandbyNames): boolean {
  return a.quorum === b.quorum && a.names.length === b.names.length && a.names.every((n, i) => n === b.names[i]);
}

/**
 * Whether the walsenders already follow `standbys` (pg_stat_replication.sync_state: members of S
 * 'quorum'/'sync'/'potential', others 'async'). The loop records `appliedLsn` only once this holds.
 */
export function standbysInForce(standbys: StandbyNames, rows: ReadonlyArray<{ name: string; state: string; syncState: string | null }>): boolean {
  return rows
    .filter((r) => r.state === 'streaming')
    .every((r) => (standbys.names.includes(r.name) ? r.syncState !== null && r.syncState !== 'async' : r.syncState === 'async' || r.syncState === null));
}

// ----- promotion -----

export interface PeerPosition {
  name: string;
  timeline: number | null;
  /** max(receive, replay) LSN, read live by the peer after the leader key was seen free. */
  lsn: string | null;
}

/** The port through which the loop asks a member's agent for its live position (`GET /wal-position`). */
export interface PeerPositionSource {
  /** null when the member does not answer within `timeoutMs` or has no running postgres. */
  position(peer: { name: string; apiUrl: string }, timeoutMs: number): Promise<PeerPosition | null>;
}

export type SyncPromotion =
  | { kind: 'allowed' }
  | { kind: 'refused'; reason: string };

/**
 * Sync-mode promotion rule: `self` may take a free leader key only if it is in P and it knows the
 * positions of |P| - q + 1 members of P (itself included) and none of them is ahead of it (ties:
 * `tieBreak` decides, the same order every node computes). Positions must be fresh: read after the
 * leader key was observed free (the old leader fences before its key can expire).
 */
export function syncPromotionCheck(
  self: PeerPosition,
  published: SyncSet | null,
  peers: readonly PeerPosition[],
  tieBreak: (a: string, b: string) => number,
): SyncPromotion {
  // E8e: an empty set names the leader that emptied it (on taking the lead, E8, or degrading):
  // every commit acknowledged since then was acknowledged by that node alone, so it holds them all
  // and nobody else can. It may take the key back; without this, a leader that lost its key between
  // emptying the set and publishing a new one would leave the cluster without a leader for good.
  if (published !== null && published.members.length === 0 && published.leader === self.name && self.lsn !== null && self.timeline !== null) {
    return { kind: 'allowed' };
  }
  if (published === null || published.members.length === 0) {
    return { kind: 'refused', reason: `the published synchronous set is empty: only ${published?.leader ?? 'its last leader'} is known to hold every acknowledged commit` };
  }
  if (!published.members.includes(self.name)) return { kind: 'refused', reason: `not in the synchronous set (${published.members.join(', ')})` };
  const needed = published.members.length - published.quorum + 1;
  const known = [self, ...peers.filter((p) => p.name !== self.name && published.members.includes(p.name) && p.lsn !== null && p.timeline !== null)];
  if (self.lsn === null || self.timeline === null) return { kind: 'refused', reason: 'own WAL position unknown' };
  if (known.length < needed) {
    return { kind: 'refused', reason: `knows the positions of ${known.length} of the synchronous set, needs ${needed} (${known.map((k) => k.name).join(', ')})` };
  }
  for (const other of known) {
    if (other.name === self.name) continue;
    const order = comparePositions(other, self);
    if (order > 0 || (order === 0 && tieBreak(other.name, self.name) < 0)) {
      return { kind: 'refused', reason: `${other.name} is at ${other.lsn ?? '?'} (timeline ${other.timeline ?? '?'}), not behind this node` };
    }
  }
  return { kind: 'allowed' };
}

/** > 0 when `a` is ahead of `b` (timeline, then LSN). */
function comparePositions(a: PeerPosition, b: PeerPosition): number {
  const timeline = (a.timeline ?? -1) - (b.timeline ?? -1);
  if (timeline !== 0) return timeline;
  if (a.lsn === null || b.lsn === null) return a.lsn === b.lsn ? 0 : a.lsn === null ? -1 : 1;
  return compareLsn(a.lsn, b.lsn);
}

function sortedUnique(names: readonly string[]): string[] {
  return [...new Set(names)].sort();
}
