/**
 * The pure parts of the chaos suite (chaos/lib): the split-brain analysis flags two nodes whose
 * accepting runs overlap (including an old primary that accepts a late write after the new one
 * started) and nothing else; the fault plan is a function of the seed alone and covers every fault
 * kind with targets that make sense for it.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FAULT_KINDS, planFaults } from '../../chaos/lib/faults.js';
import { mulberry32 } from '../../chaos/lib/prng.js';
import { acceptingRuns, analyzeSplitBrain, type Observation } from '../../chaos/lib/probe.js';

function ok(node: string, startMs: number, endMs = startMs + 5): Observation {
  return { node, kind: 'ok', startMs, endMs };
}
function refused(node: string, startMs: number): Observation {
  return { node, kind: 'refused', startMs, endMs: startMs + 5 };
}
function unknown(node: string, startMs: number): Observation {
  return { node, kind: 'unknown', startMs, endMs: startMs + 1_000 };
}

void describe('chaos split-brain analysis', () => {
  void it('a clean failover (old primary refuses before the new one accepts) is no episode', () => {
    const observations = [ok('n1', 0), ok('n1', 100), refused('n1', 200), refused('n2', 150), ok('n2', 300), ok('n2', 400), refused('n1', 300)];
    const analysis = analyzeSplitBrain(observations);
    assert.deepEqual(analysis.episodes, []);
    assert.deepEqual(
      analysis.runs.map((r) => [r.node, r.startMs, r.endMs, r.writes]),
      [
        ['n1', 0, 105, 2],
        ['n2', 300, 405, 2],
      ],
    );
  });

  void it('an old primary that accepts a late write after the new one started is an episode', () => {
    const observations = [ok('n1', 0), ok('n1', 100), ok('n2', 300), ok('n1', 500), ok('n2', 600)];
    const analysis = analyzeSplitBrain(observations);
    assert.equal(analysis.episodes.length, 1);
    const [episode] = analysis.episodes;
    assert.ok(episode !== undefined);
    assert.deepEqual([episode.overlapStartMs, episode.overlapEndMs], [300, 505]);
    assert.equal(analysis.overlapMs, 205);
  });

  void it('unknown attempts neither end a run nor start one', () => {
    const runs = acceptingRuns([ok('n1', 0), unknown('n1', 100), ok('n1', 1_200), unknown('n2', 50)]);
    assert.deepEqual(
      runs.map((r) => [r.node, r.startMs, r.endMs, r.writes]),
      [['n1', 0, 1_205, 2]],
    );
  });
});

void describe('chaos fault plan', () => {
  void it('is reproducible from the seed and differs between seeds', () => {
    const a = planFaults(mulberry32(2024), 50, { min: 3_000, max: 12_000 });
    const b = planFaults(mulberry32(2024), 50, { min: 3_000, max: 12_000 });
    const c = planFaults(mulberry32(2025), 50, { min: 3_000, max: 12_000 });
    assert.deepEqual(a, b);
    assert.notDeepEqual(a, c);
  });

  void it('covers every fault kind, within the hold range, with a target that fits the kind', () => {
    const plan = planFaults(mulberry32(7), 200, { min: 3_000, max: 12_000 });
    assert.deepEqual(new Set(plan.map((f) => f.kind)), new Set(FAULT_KINDS));
    for (const fault of plan) {
      assert.ok(fault.holdMs >= 3_000 && fault.holdMs <= 12_000, `hold ${fault.holdMs}`);
      if (fault.kind === 'disk-full') assert.ok(fault.target === 'replica-1' || fault.target === 'replica-2');
      assert.equal(fault.direction !== null, fault.kind === 'partition');
      assert.equal(fault.signal !== null, fault.kind === 'etcd-member-restart');
    }
    // Both ways of stopping an etcd member occur, and both the leader's host and a replica's.
    const memberRestarts = plan.filter((f) => f.kind === 'etcd-member-restart');
    assert.deepEqual(new Set(memberRestarts.map((f) => f.signal)), new Set(['SIGTERM', 'SIGKILL']));
    assert.ok(memberRestarts.some((f) => f.target === 'leader') && memberRestarts.some((f) => f.target !== 'leader'));
    assert.deepEqual(
      plan.map((f) => f.index),
      plan.map((_, i) => i + 1),
    );
  });
});
