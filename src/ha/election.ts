/**
 * Candidate ranking for leader elections (pure). Rule (architecture.md §4.2): only healthy,
 * eligible members compete: not tagged `nofailover`, with a known WAL position, not further
 * behind the last known leader position than `maximumLagOnFailoverBytes`. Among those the
 * highest timeline wins, then the highest WAL position, then the higher `priority` tag, then the
 * name (so every node computes the same order from the same data). A node that is not first in
 * this order never takes the leader key.
 */
import type { Tags } from '../config/schema.js';
import { compareLsn, lsnDiffBytes } from '../shared/lsn.js';

export interface Candidate {
  name: string;
  timeline: number | null;
  lsn: string | null;
  tags: Tags;
}

export type Ineligibility = 'nofailover' | 'no-position' | 'too-far-behind';

export function ineligibility(candidate: Candidate, lastLeaderLsn: string | null, maximumLagBytes: number): Ineligibility | null {
  if (candidate.tags.nofailover === true) return 'nofailover';
  if (candidate.lsn === null || candidate.timeline === null) return 'no-position';
  if (lastLeaderLsn !== null && lsnDiffBytes(lastLeaderLsn, candidate.lsn) > maximumLagBytes) return 'too-far-behind';
  return null;
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

export function rankCandidates(candidates: readonly Candidate[], lastLeaderLsn: string | null, maximumLagBytes: number): Candidate[] {
  return candidates.filter((c) => ineligibility(c, lastLeaderLsn, maximumLagBytes) === null).sort(compareCandidates);
}
