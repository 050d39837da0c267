/**
 * Candidate ranking for leader elections (pure). Rule (docs/architecture.md, HA rule 2): only healthy,
 * eligible members compete: not tagged `nofailover`, with a known WAL position, not further
 * behind the last known leader position than `maximumLagOnFailoverBytes`. Among those the
 * highest timeline wins, then the highest WAL position, then the higher `priority` tag, then the
 * name (so every node computes the same order from the same data). A node that is not first in
 * this order never takes the leader key.
 *
 * Two more eligibility rules (issue 7), both computed from what members publish so that every
 * node, and `pgpilot status`, reach the same verdict from the same records:
 * - `timeline-behind`: a candidate whose timeline is lower than the highest timeline known in the
 *   cluster (the history key's last promotion, any member's published timeline) missed a
 *   promotion: it may lack that leader's writes or have diverged, so it must not lead.
 * - `not-streaming`: a replica that had stopped streaming while a leader was still known to exist
 *   for longer than `notStreamingLimitMs` (2 TTLs). Invariant: the measure stops at the moment
 *   the replica last saw a leader key, because once the leader is gone *no* replica streams: a
 *   healthy replica loses its stream when the leader dies and sees the key vanish at most one TTL
 *   (lease expiry) plus a loop later, so its measure stays below the limit and it stays eligible;
 *   a replica that had been cut off (broken slot, network, stuck replay) long before the loss is
 *   out. Unknown (null: no leader seen since its agent started, an older agent) counts as eligible.
 */
import type { Tags } from '../config/schema.js';
import { compareLsn, lsnDiffBytes } from '../shared/lsn.js';

export interface Candidate {
  name: string;
  timeline: number | null;
  lsn: string | null;
  tags: Tags;
  /**
   * How long (ms, the member's own clock) this standby had not been streaming while it still saw a
   * leader key; 0 while streaming; null when unknown or not a standby (see `notStreamingMsOf`).
   */
  notStreamingMs?: number | null;
}

export type Ineligibility = 'nofailover' | 'no-position' | 'timeline-behind' | 'not-streaming' | 'too-far-behind';

/** What the cluster as a whole says, beyond the last leader LSN, for the eligibility rules. */
export interface ClusterFacts {
  /** The highest timeline known in the cluster (`highestKnownTimeline`); null: unknown. */
  highestTimeline?: number | null;
  /** Longest tolerated not-streaming time before the leader was lost (`notStreamingLimitMs`); absent: rule off. */
  notStreamingLimitMs?: number | null;
}


/**
 * The measure `not-streaming` judges, computed by a standby about itself (published in its member
 * record, and used for its own self-check): how long it had not been streaming, counted only up to
 * the last moment it saw a leader key (now, when a leader is in sight). Null: not a running standby,
 * or no leader seen since the agent started (nothing to judge against).
 */
export function notStreamingMsOf(input: {
  nowMs: number;
  isStandby: boolean;
  notStreamingSinceMs: number | null;
  lastLeaderSeenMs: number | null;
  leaderInSight: boolean;
}): number | null {
  if (!input.isStandby) return null;
  if (input.notStreamingSinceMs === null) return 0;
  const untilMs = input.leaderInSight ? input.nowMs : input.lastLeaderSeenMs;
  if (untilMs === null) return null;
  return Math.max(0, untilMs - input.notStreamingSinceMs);
}

/** The highest timeline known: the last promotion in the history key and every member's published timeline. */
export function highestKnownTimeline(members: ReadonlyArray<{ timeline: number | null }>, historyTimeline: number | null | undefined): number | null {
  let highest = historyTimeline ?? null;
  for (const m of members) if (m.timeline !== null && (highest === null || m.timeline > highest)) highest = m.timeline;
  return highest;
}

/**
 * Why `candidate` may not take a free leader key, or null when it may. Reasons are checked in this
 * order: nofailover, no-position, timeline-behind, not-streaming, too-far-behind.
 */
export function ineligibility(candidate: Candidate, lastLeaderLsn: string | null, maximumLagBytes: number, facts: ClusterFacts = {}): Ineligibility | null {
  if (candidate.tags.nofailover === true) return 'nofailover';
  if (candidate.lsn === null || candidate.timeline === null) return 'no-position';
  if (facts.highestTimeline !== undefined && facts.highestTimeline !== null && candidate.timeline < facts.highestTimeline) return 'timeline-behind';
  const limitMs = facts.notStreamingLimitMs;
  if (limitMs !== undefined && limitMs !== null && (candidate.notStreamingMs ?? 0) > limitMs) return 'not-streaming';
  if (lastLeaderLsn !== null && lsnDiffBytes(lastLeaderLsn, candidate.lsn) > maximumLagBytes) return 'too-far-behind';
  return null;
}

/** A member record (or its published subset) as an election candidate. */
export function candidateOfRecord(member: { name: string; timeline: number | null; lsn: string | null; tags: Tags; notStreamingMs?: number | null }): Candidate {
  return { name: member.name, timeline: member.timeline, lsn: member.lsn, tags: member.tags, notStreamingMs: member.notStreamingMs ?? null };
}

/**
 * Eligibility of a published member (what `status` shows): the candidate rules above, and
 * 'not-running' for a member decideElection would not count at all (not a running postgres).
 */
export function memberIneligibility(
  member: { name: string; role: string; state: string; timeline: number | null; lsn: string | null; tags: Tags; notStreamingMs?: number | null },
  lastLeaderLsn: string | null,
  maximumLagBytes: number,
  facts: ClusterFacts = {},
): Ineligibility | 'not-running' | null {
  if (member.tags.nofailover === true) return 'nofailover';
  if (member.role === 'stopped' || member.role === 'unknown' || member.state !== 'running') return 'not-running';
  return ineligibility(candidateOfRecord(member), lastLeaderLsn, maximumLagBytes, facts);
}

/** Orders candidates best first. Callers filter eligibility first. */
export function compareCandidates(a: Candidate, b: Candidate): number {
  const timeline = (b.timeline ?? -1) - (a.timeline ?? -1);
  if (timeline !== 0) return timeline;
  if (a.lsn !== null && b.lsn !== null) {
    const lsn = compareLsn(b.lsn, a.lsn);
    if (lsn !== 0) return lsn;
  } else if (a.lsn !== b.lsn) {
    return a.lsn === null ? 1 : -1;
  }
  const priority = (b.tags.priority ?? 0) - (a.tags.priority ?? 0);
  if (priority !== 0) return priority;
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

export function rankCandidates(candidates: readonly Candidate[], lastLeaderLsn: string | null, maximumLagBytes: number, facts: ClusterFacts = {}): Candidate[] {
  return candidates.filter((c) => ineligibility(c, lastLeaderLsn, maximumLagBytes, facts) === null).sort(compareCandidates);
}
