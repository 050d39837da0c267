/**
 * Candidate ranking (src/ha/election.ts): the order every node computes from the same data —
 * timeline, then WAL position, then the `priority` tag, then the name — and who may compete at
 * all (not `nofailover`, a known position, within `maximumLagOnFailoverBytes` of the last leader
 * LSN). The order must be total and independent of input order, or two nodes could both think
 * they are the best candidate.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  compareCandidates,
  highestKnownTimeline,
  ineligibility,
  memberIneligibility,
  notStreamingMsOf,
  rankCandidates,
  type Candidate,
} from '../../src/ha/election.js';
import { notStreamingLimitMs } from '../../src/ha/timing.js';

function candidate(name: string, overrides: Partial<Candidate> = {}): Candidate {
  return { name, timeline: 1, lsn: '0/3000000', tags: {}, ...overrides };
}

const names = (list: readonly Candidate[]): string[] => list.map((c) => c.name);
const MIB = 1024 * 1024;

void describe('rankCandidates order', () => {
  void it('the highest timeline comes first, whatever the LSN', () => {
    const ranked = rankCandidates(
      [candidate('a', { timeline: 1, lsn: 'F/0' }), candidate('b', { timeline: 3, lsn: '0/1' }), candidate('c', { timeline: 2, lsn: '1/0' })],
      null,
      MIB,
    );
    assert.deepEqual(names(ranked), ['b', 'c', 'a']);
  });

  void it('on the same timeline the highest LSN comes first (numeric, not string order)', () => {
    const ranked = rankCandidates(
      [candidate('a', { lsn: '0/9' }), candidate('b', { lsn: '0/10' }), candidate('c', { lsn: '1/0' }), candidate('d', { lsn: '0/FFFFFFFF' })],
      null,
      Number.MAX_SAFE_INTEGER,
    );
    assert.deepEqual(names(ranked), ['c', 'd', 'b', 'a']);
  });

  void it('on equal positions the higher priority tag comes first (missing priority counts as 0)', () => {
    const ranked = rankCandidates(
      [candidate('a'), candidate('b', { tags: { priority: 5 } }), candidate('c', { tags: { priority: -1 } }), candidate('d', { tags: { priority: 1 } })],
      null,
      MIB,
    );
    assert.deepEqual(names(ranked), ['b', 'd', 'a', 'c']);
  });

  void it('on full ties the name decides, in code-unit order', () => {
    const ranked = rankCandidates([candidate('node3'), candidate('node10'), candidate('node2')], null, MIB);
    assert.deepEqual(names(ranked), ['node10', 'node2', 'node3']);
  });

  void it('each criterion dominates the ones after it', () => {
    const ranked = rankCandidates(
      [
        candidate('a', { timeline: 1, lsn: '0/5', tags: { priority: 9 } }),
        candidate('z', { timeline: 2, lsn: '0/1' }),
        candidate('b', { timeline: 2, lsn: '0/1', tags: { priority: 1 } }),
        candidate('y', { timeline: 2, lsn: '0/2' }),
      ],
      null,
      MIB,
    );
    assert.deepEqual(names(ranked), ['y', 'b', 'z', 'a']);
  });

  void it('gives the same order for every permutation of the input', () => {
    const input = [
      candidate('n1', { lsn: '0/2' }),
      candidate('n2', { lsn: '0/2', tags: { priority: 1 } }),
      candidate('n3', { lsn: '0/3' }),
      candidate('n4', { timeline: 2, lsn: '0/1' }),
      candidate('n5', { lsn: '0/2' }),
    ];
    const expected = names(rankCandidates(input, null, MIB));
    const permutations = (list: Candidate[]): Candidate[][] =>
      list.length <= 1 ? [list] : list.flatMap((item, i) => permutations([...list.slice(0, i), ...list.slice(i + 1)]).map((rest) => [item, ...rest]));
    for (const permutation of permutations(input)) assert.deepEqual(names(rankCandidates(permutation, null, MIB)), expected);
    assert.deepEqual(expected, ['n4', 'n3', 'n2', 'n1', 'n5']);
  });

  void it('does not mutate its input', () => {
    const input = [candidate('b'), candidate('a')];
    rankCandidates(input, null, MIB);
    assert.deepEqual(names(input), ['b', 'a']);
  });

  void it('compareCandidates is antisymmetric and 0 only for the same name and position', () => {
    const a = candidate('a');
    const b = candidate('b');
    assert.ok(compareCandidates(a, b) < 0);
    assert.ok(compareCandidates(b, a) > 0);
    assert.equal(compareCandidates(a, candidate('a')), 0);
  });

  void it('compareCandidates puts a known position before an unknown one', () => {
    assert.ok(compareCandidates(candidate('z'), candidate('a', { lsn: null })) < 0);
    assert.ok(compareCandidates(candidate('a', { lsn: null }), candidate('z')) > 0);
    assert.ok(compareCandidates(candidate('z'), candidate('a', { timeline: null })) < 0);
  });
});

void describe('eligibility', () => {
  void it('an ordinary candidate is eligible', () => {
    assert.equal(ineligibility(candidate('a'), null, MIB), null);
  });

  void it('nofailover is never eligible, even when far ahead', () => {
    assert.equal(ineligibility(candidate('a', { lsn: 'F/0', tags: { nofailover: true } }), '0/1', MIB), 'nofailover');
    assert.equal(ineligibility(candidate('a', { tags: { nofailover: false } }), null, MIB), null);
  });

  void it('a candidate without LSN or without timeline has no position', () => {
    assert.equal(ineligibility(candidate('a', { lsn: null }), null, MIB), 'no-position');
    assert.equal(ineligibility(candidate('a', { timeline: null }), null, MIB), 'no-position');
  });

  void it('too far behind the last leader LSN: strictly more than maximumLagOnFailoverBytes', () => {
    assert.equal(ineligibility(candidate('a', { lsn: '0/1000000' }), '0/1100000', MIB), null, 'exactly 1 MiB behind is allowed');
    assert.equal(ineligibility(candidate('a', { lsn: '0/FFFFF' }), '0/1100000', MIB), 'too-far-behind');
    assert.equal(ineligibility(candidate('a', { lsn: '0/0' }), '1/0', 2 ** 32), null);
    assert.equal(ineligibility(candidate('a', { lsn: '0/0' }), '1/1', 2 ** 32), 'too-far-behind');
  });

  void it('a zero lag limit admits only candidates at or ahead of the last leader LSN', () => {
    assert.equal(ineligibility(candidate('a', { lsn: '0/5' }), '0/5', 0), null);
    assert.equal(ineligibility(candidate('a', { lsn: '0/6' }), '0/5', 0), null);
    assert.equal(ineligibility(candidate('a', { lsn: '0/4' }), '0/5', 0), 'too-far-behind');
  });

  void it('without a last leader LSN, no one is too far behind', () => {
    assert.equal(ineligibility(candidate('a', { lsn: '0/0' }), null, 0), null);
  });

  void it('rankCandidates leaves ineligible candidates out', () => {
    const ranked = rankCandidates(
      [
        candidate('nofail', { lsn: '0/9000000', tags: { nofailover: true } }),
        candidate('nopos', { lsn: null }),
        candidate('behind', { lsn: '0/100' }),
        candidate('ok', { lsn: '0/2000000' }),
      ],
      '0/2100000',
      MIB,
    );
    assert.deepEqual(names(ranked), ['ok']);
    assert.deepEqual(rankCandidates([candidate('x', { lsn: null })], null, MIB), []);
  });
});

void describe('eligibility: timeline-behind and not-streaming (issue 7)', () => {
  const facts = { highestTimeline: 3, notStreamingLimitMs: 12_000 };

  void it('a candidate below the highest known timeline is timeline-behind; at or above it is eligible', () => {
    assert.equal(ineligibility(candidate('a', { timeline: 2 }), null, MIB, facts), 'timeline-behind');
    assert.equal(ineligibility(candidate('a', { timeline: 3 }), null, MIB, facts), null);
    assert.equal(ineligibility(candidate('a', { timeline: 4 }), null, MIB, facts), null);
    assert.equal(ineligibility(candidate('a', { timeline: 1 }), null, MIB), null, 'without facts the rule is off');
  });

  void it('not-streaming: strictly more than the limit before the leader was lost', () => {
    assert.equal(ineligibility(candidate('a', { timeline: 3, notStreamingMs: 12_000 }), null, MIB, facts), null);
    assert.equal(ineligibility(candidate('a', { timeline: 3, notStreamingMs: 12_001 }), null, MIB, facts), 'not-streaming');
    assert.equal(ineligibility(candidate('a', { timeline: 3, notStreamingMs: null }), null, MIB, facts), null, 'unknown counts as eligible');
  });

  void it('reasons come in order: nofailover, no-position, timeline-behind, not-streaming, too-far-behind', () => {
    const bad = { timeline: 2, notStreamingMs: 60_000, lsn: '0/0' };
    assert.equal(ineligibility(candidate('a', { ...bad, tags: { nofailover: true } }), '1/0', MIB, facts), 'nofailover');
    assert.equal(ineligibility(candidate('a', bad), '1/0', MIB, facts), 'timeline-behind');
    assert.equal(ineligibility(candidate('a', { ...bad, timeline: 3 }), '1/0', MIB, facts), 'not-streaming');
    assert.equal(ineligibility(candidate('a', { ...bad, timeline: 3, notStreamingMs: 0 }), '1/0', MIB, facts), 'too-far-behind');
  });

  void it('notStreamingMsOf: counted only up to the last time a leader key was seen', () => {
    const base = { nowMs: 100_000, isStandby: true, leaderInSight: false };
    assert.equal(notStreamingMsOf({ ...base, notStreamingSinceMs: null, lastLeaderSeenMs: 90_000 }), 0, 'streaming');
    // A healthy replica: the leader died at 80 s, its key vanished after one TTL: 6 s, eligible under 2 TTLs.
    assert.equal(notStreamingMsOf({ ...base, notStreamingSinceMs: 80_000, lastLeaderSeenMs: 86_000 }), 6_000);
    // Cut off long before the loss.
    assert.equal(notStreamingMsOf({ ...base, notStreamingSinceMs: 10_000, lastLeaderSeenMs: 86_000 }), 76_000);
    // Lost the stream only after the key was gone (e.g. fenced leader during an etcd outage).
    assert.equal(notStreamingMsOf({ ...base, notStreamingSinceMs: 95_000, lastLeaderSeenMs: 86_000 }), 0);
    assert.equal(notStreamingMsOf({ ...base, notStreamingSinceMs: 80_000, lastLeaderSeenMs: null }), null, 'no leader seen: unknown');
    assert.equal(notStreamingMsOf({ ...base, leaderInSight: true, notStreamingSinceMs: 80_000, lastLeaderSeenMs: 50_000 }), 20_000, 'leader in sight: until now');
    assert.equal(notStreamingMsOf({ ...base, isStandby: false, notStreamingSinceMs: 80_000, lastLeaderSeenMs: 86_000 }), null);
    assert.equal(notStreamingLimitMs(6), 12_000);
  });

  void it('highestKnownTimeline: history and members, whichever is higher', () => {
    assert.equal(highestKnownTimeline([{ timeline: 2 }, { timeline: null }], 3), 3);
    assert.equal(highestKnownTimeline([{ timeline: 4 }, { timeline: 1 }], 3), 4);
    assert.equal(highestKnownTimeline([], null), null);
  });

  void it('memberIneligibility: what status shows, from a member record', () => {
    const record = { name: 'a', role: 'replica', state: 'running', timeline: 3, lsn: '0/10', tags: {}, notStreamingMs: 0 };
    assert.equal(memberIneligibility(record, null, MIB, facts), null);
    assert.equal(memberIneligibility({ ...record, role: 'stopped', state: 'stopped' }, null, MIB, facts), 'not-running');
    assert.equal(memberIneligibility({ ...record, state: 'rejoin' }, null, MIB, facts), 'not-running');
    assert.equal(memberIneligibility({ ...record, role: 'stopped', tags: { nofailover: true } }, null, MIB, facts), 'nofailover');
    assert.equal(memberIneligibility({ ...record, timeline: 2 }, null, MIB, facts), 'timeline-behind');
    assert.equal(memberIneligibility({ ...record, notStreamingMs: 20_000 }, null, MIB, facts), 'not-streaming');
  });

  void it('rankCandidates applies the same facts', () => {
    const ranked = rankCandidates([candidate('old', { timeline: 2, lsn: 'F/0' }), candidate('cut', { timeline: 3, notStreamingMs: 30_000 }), candidate('ok', { timeline: 3 })], null, MIB, facts);
    assert.deepEqual(names(ranked), ['ok']);
  });
});
