/**
 * src/ha/sync-set.ts: the synchronous_standby_names format, the /sync value, the safety
 * conditions C1/C2 on hand-made cases (including the two orders that would lose a commit), the
 * planner as a table (add, remove, degrade, strict, k changes), the ordering invariant over every
 * step of simulated convergences, and the promotion rule.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { coversNew, formatStandbyNames, nextSyncStep, parseStandbyNames, publishIsSafe, standbysInForce, syncPromotionCheck, type StandbyNames, type SyncPlanInput, type SyncStep } from '../../src/ha/sync-set.js';
import { formatSyncSet, parseSyncSet, type SyncSet } from '../../src/state/sync-record.js';

const LEADER = 'node1';

function input(overrides: Partial<SyncPlanInput> & { streaming?: string[] } = {}): SyncPlanInput {
  const streaming = overrides.streaming ?? ['node2', 'node3'];
  const { streaming: _ignored, ...rest } = overrides;
  return {
    self: LEADER,
    strict: false,
    nodeCount: 1,
    published: { leader: LEADER, members: ['node2', 'node3'], quorum: 1 },
    standbys: { names: ['node2', 'node3'], quorum: 1 },
    replication: streaming.map((name) => ({ name, state: 'streaming', flushLsn: '0/5000000' })),
    members: ['node1', 'node2', 'node3', 'node4'].map((name) => ({ name, tags: {} })),
    appliedLsn: '0/5000000',
    ...rest,
  };
}

const names = (list: string[], quorum: number): StandbyNames => ({ names: list, quorum });
const set = (members: string[], quorum: number, leader = LEADER): SyncSet => ({ leader, members, quorum });

void describe('synchronous_standby_names format', () => {
  void it('formats ANY k with quoted, sorted names, and empty as ""', () => {
    assert.equal(formatStandbyNames(names(['node3', 'node2'], 1)), 'ANY 1 ("node2", "node3")');
    assert.equal(formatStandbyNames(names([], 0)), '');
  });
  void it('parses what it formats, and only that', () => {
    for (const s of [names(['node2'], 1), names(['a-1', 'b', 'c'], 2)]) assert.deepEqual(parseStandbyNames(formatStandbyNames(s)), s);
    assert.deepEqual(parseStandbyNames(''), names([], 0));
    assert.deepEqual(parseStandbyNames('ANY 1 (node2, node3)'), names(['node2', 'node3'], 1));
    for (const foreign of ['FIRST 1 (a, b)', '*', 'ANY 1 (*)', 'a, b', 'ANY 3 (a, b)', 'ANY 0 (a)', 'ANY 1 ()']) {
      assert.equal(parseStandbyNames(foreign), null, foreign);
    }
  });
  void it('/sync round-trips and rejects malformed values', () => {
    const value = set(['node3', 'node2'], 1);
    assert.deepEqual(parseSyncSet(formatSyncSet(value)), set(['node2', 'node3'], 1));
    for (const bad of ['', 'null', '{"leader":"a"}', '{"leader":"a","members":[1],"quorum":1}', '{"leader":"a","members":[],"quorum":-1}']) {
      assert.equal(parseSyncSet(bad), null, bad);
    }
    assert.equal(parseSyncSet(null), null);
  });
});

void describe('safety conditions', () => {
  void it('C1: commits acknowledged under S are on q members of P', () => {
    assert.equal(coversNew(names(['a', 'b'], 1), { members: ['a', 'b'], quorum: 1 }), true);
    assert.equal(coversNew(names(['a', 'x'], 1), { members: ['a'], quorum: 1 }), false, 'ANY 1 (a, x) may acknowledge a commit only x has');
    assert.equal(coversNew(names(['a', 'x'], 2), { members: ['a'], quorum: 1 }), true);
    assert.equal(coversNew(names(['a'], 1), { members: ['a', 'x'], quorum: 1 }), true, 'a bigger P with the same q is covered');
    assert.equal(coversNew(names([], 0), { members: ['a'], quorum: 1 }), false, 'asynchronous commits cover no one');
    assert.equal(coversNew(names([], 0), { members: [], quorum: 0 }), true, 'an empty P claims nothing');
  });
  void it('C2: removing x from P before S would be unsafe; after S, only once the rest is confirmed', () => {
    const p = { members: ['a', 'x'], quorum: 1 };
    const next = { members: ['a'], quorum: 1 };
    assert.equal(publishIsSafe(p, next, names(['a', 'x'], 1), []), false, 'x may hold commits a lacks');
    assert.equal(publishIsSafe(p, next, names(['a'], 1), []), false, 'old commits acknowledged by x alone are not on a yet');
    assert.equal(publishIsSafe(p, next, names(['a'], 1), ['a']), true, 'a flushed past the LSN at which ANY 1 (a) was in force');
    assert.equal(publishIsSafe(p, { members: ['a', 'x', 'y'], quorum: 1 }, names(['a', 'x'], 1), []), true, 'growing P with the same q');
    assert.equal(publishIsSafe(p, { members: ['a', 'x'], quorum: 2 }, names(['a', 'x'], 2), []), false, 'raising q needs confirmation');
    assert.equal(publishIsSafe(p, { members: ['a', 'x'], quorum: 2 }, names(['a', 'x'], 2), ['a', 'x']), true);
    assert.equal(publishIsSafe(p, { members: [], quorum: 0 }, names(['a', 'x'], 1), []), true, 'emptying P is always safe');
  });
  void it('walsenders show whether a value is in force', () => {
    const rows = [
      { name: 'node2', state: 'streaming', syncState: 'quorum' },
      { name: 'node3', state: 'streaming', syncState: 'async' },
    ];
    assert.equal(standbysInForce(names(['node2'], 1), rows), true);
    assert.equal(standbysInForce(names(['node2', 'node3'], 1), rows), false);
    assert.equal(standbysInForce(names([], 0), rows), false);
  });
});

interface Row {
  name: string;
  input: SyncPlanInput;
  expect: Pick<SyncStep, 'kind'> & Partial<{ names: string[]; members: string[]; quorum: number }>;
  summary?: RegExp;
}

void describe('nextSyncStep: one step per tick, in the safe order', () => {
  const rows: Row[] = [
    { name: 'steady', input: input(), expect: { kind: 'steady' } },
    { name: 'no /sync yet: publish an empty set for this leader', input: input({ published: null }), expect: { kind: 'publish', members: [], quorum: 0 } },
    { name: 'an earlier leader\'s set: publish our own empty set', input: input({ published: set(['node1', 'node3'], 1, 'node2') }), expect: { kind: 'publish', members: [], quorum: 0 } },
    {
      name: 'empty P: set S to the healthy replicas first',
      input: input({ published: set([], 0), standbys: names([], 0) }),
      expect: { kind: 'set-standbys', names: ['node2', 'node3'], quorum: 1 },
    },
    {
      name: 'empty P, S set, not yet in force: wait',
      input: input({ published: set([], 0), appliedLsn: null }),
      expect: { kind: 'wait' },
    },
    {
      name: 'empty P, S in force, not confirmed: wait',
      input: input({ published: set([], 0), replication: [{ name: 'node2', state: 'streaming', flushLsn: '0/4000000' }, { name: 'node3', state: 'streaming', flushLsn: '0/4000000' }] }),
      expect: { kind: 'wait' },
      summary: /flush past 0\/5000000/,
    },
    { name: 'empty P, S in force and confirmed: publish', input: input({ published: set([], 0) }), expect: { kind: 'publish', members: ['node2', 'node3'], quorum: 1 } },
    {
      name: 'a new replica: published first',
      input: input({ streaming: ['node2', 'node3', 'node4'] }),
      expect: { kind: 'publish', members: ['node2', 'node3', 'node4'], quorum: 1 },
    },
    {
      name: 'a published newcomer: then into S',
      input: input({ streaming: ['node2', 'node3', 'node4'], published: set(['node2', 'node3', 'node4'], 1) }),
      expect: { kind: 'set-standbys', names: ['node2', 'node3', 'node4'], quorum: 1 },
    },
    { name: 'a replica stops streaming: out of S first', input: input({ streaming: ['node2'] }), expect: { kind: 'set-standbys', names: ['node2'], quorum: 1 } },
    {
      name: 'out of S: out of P once the rest is confirmed',
      input: input({ streaming: ['node2'], standbys: names(['node2'], 1) }),
      expect: { kind: 'publish', members: ['node2'], quorum: 1 },
    },
    {
      name: 'out of S, rest not confirmed: wait',
      input: input({ streaming: ['node2'], standbys: names(['node2'], 1), replication: [{ name: 'node2', state: 'streaming', flushLsn: '0/4FFFFFF' }] }),
      expect: { kind: 'wait' },
    },
    { name: 'nofailover replicas are never synchronous', input: input({ members: [{ name: 'node2', tags: {} }, { name: 'node3', tags: { nofailover: true } }] }), expect: { kind: 'set-standbys', names: ['node2'], quorum: 1 } },
    { name: 'k raised: postgres first', input: input({ nodeCount: 2 }), expect: { kind: 'set-standbys', names: ['node2', 'node3'], quorum: 2 } },
    { name: 'k raised in postgres: then published, once confirmed', input: input({ nodeCount: 2, standbys: names(['node2', 'node3'], 2) }), expect: { kind: 'publish', members: ['node2', 'node3'], quorum: 2 } },
    {
      name: 'k raised in postgres, one replica not confirmed: wait',
      input: input({ nodeCount: 2, standbys: names(['node2', 'node3'], 2), replication: [{ name: 'node2', state: 'streaming', flushLsn: '0/5000000' }, { name: 'node3', state: 'streaming', flushLsn: '0/1000000' }] }),
      expect: { kind: 'wait' },
    },
    { name: 'k lowered: published quorum first', input: input({ nodeCount: 1, standbys: names(['node2', 'node3'], 2), published: set(['node2', 'node3'], 2) }), expect: { kind: 'publish', members: ['node2', 'node3'], quorum: 1 } },
    { name: 'k lowered and published: then postgres', input: input({ nodeCount: 1, standbys: names(['node2', 'node3'], 2) }), expect: { kind: 'set-standbys', names: ['node2', 'node3'], quorum: 1 } },
    {
      name: 'k = 2, one replica left (non-strict): the quorum drops with it, published first',
      input: input({ nodeCount: 2, streaming: ['node2'], standbys: names(['node2', 'node3'], 2), published: set(['node2', 'node3'], 2) }),
      expect: { kind: 'publish', members: ['node2', 'node3'], quorum: 1 },
    },
    { name: 'degrade: no healthy replica, P emptied first', input: input({ streaming: [] }), expect: { kind: 'publish', members: [], quorum: 0 } },
    { name: 'degrade: then S cleared', input: input({ streaming: [], published: set([], 0) }), expect: { kind: 'set-standbys', names: [], quorum: 0 } },
    { name: 'degraded: steady', input: input({ streaming: [], published: set([], 0), standbys: names([], 0) }), expect: { kind: 'steady' }, summary: /degraded/ },
    // Chaos run 2026-12-02 (seed 490): a fenced leader adopted its key, restarted as primary and
    // degraded 0.2 s later, before its standbys had reconnected; it then lost the key and, with
    // P = {}, nobody could be promoted. Right after the primary started leading: wait instead.
    { name: 'no healthy replica right after the primary started leading: wait, P kept', input: input({ streaming: [], degradeGraceActive: true }), expect: { kind: 'wait' }, summary: /before degrading/ },
    { name: 'no healthy replica right after the primary started leading: S kept', input: input({ streaming: [], published: set([], 0), degradeGraceActive: true }), expect: { kind: 'wait' } },
    { name: 'already degraded, just started: steady', input: input({ streaming: [], published: set([], 0), standbys: names([], 0), degradeGraceActive: true }), expect: { kind: 'steady' } },
    { name: 'strict, no healthy replica: S and P kept, writes block', input: input({ strict: true, streaming: [] }), expect: { kind: 'steady' }, summary: /strict.*writes block/ },
    { name: 'strict, nothing named yet and no replica: wait', input: input({ strict: true, streaming: [], published: set([], 0), standbys: names([], 0) }), expect: { kind: 'wait' }, summary: /strict/ },
    {
      name: 'strict, one of two healthy with k = 1: the dead one is dropped (one is enough)',
      input: input({ strict: true, streaming: ['node2'] }),
      expect: { kind: 'set-standbys', names: ['node2'], quorum: 1 },
    },
    {
      name: 'strict, k = 2, one healthy: S kept whole (writes wait for both)',
      input: input({ strict: true, nodeCount: 2, streaming: ['node2'], standbys: names(['node2', 'node3'], 2), published: set(['node2', 'node3'], 2) }),
      expect: { kind: 'steady' },
      summary: /strict/,
    },
    { name: 'an unknown synchronous_standby_names: P emptied first', input: input({ standbys: null }), expect: { kind: 'publish', members: [], quorum: 0 } },
    { name: 'an unknown synchronous_standby_names, P empty: replaced', input: input({ standbys: null, published: set([], 0) }), expect: { kind: 'set-standbys', names: ['node2', 'node3'], quorum: 1 } },
  ];
  for (const row of rows) {
    void it(row.name, () => {
      const step = nextSyncStep(row.input);
      assert.equal(step.kind, row.expect.kind, step.summary);
      if (step.kind === 'set-standbys') assert.deepEqual({ names: step.names, quorum: step.quorum }, { names: row.expect.names, quorum: row.expect.quorum });
      if (step.kind === 'publish') assert.deepEqual({ members: step.members, quorum: step.quorum }, { members: row.expect.members, quorum: row.expect.quorum });
      if (row.summary !== undefined) assert.match(step.summary, row.summary);
    });
  }
});

/**
 * Runs the planner to a fixed point over a tiny model (each step applied at once; walsenders
 * confirm at once) and checks C1 after every step and C2 for every publish: the ordering
 * invariant over whole convergences, from many starting points.
 */
void describe('ordering invariant over whole convergences', () => {
  const universe = ['node2', 'node3', 'node4'];
  const subsets = (list: string[]): string[][] => list.reduce<string[][]>((acc, n) => [...acc, ...acc.map((s) => [...s, n])], [[]]);
  void it('every step from every start keeps C1, and publishes keep C2', () => {
    let cases = 0;
    for (const strict of [false, true]) {
      for (const nodeCount of [1, 2, 3]) {
        for (const start of subsets(universe)) {
          for (const healthy of subsets(universe)) {
            const startQuorum = Math.min(nodeCount, start.length);
            let published: SyncSet = set(start, startQuorum);
            let standbys: StandbyNames = names(start, startQuorum);
            let steps = 0;
            for (; steps < 20; steps += 1) {
              const i = input({ strict, nodeCount, streaming: healthy, published, standbys });
              const step = nextSyncStep(i);
              if (step.kind === 'steady' || step.kind === 'wait') break;
              if (step.kind === 'set-standbys') {
                standbys = names(step.names, step.quorum);
              } else {
                assert.ok(publishIsSafe(published, step, standbys, i.replication.map((r) => r.name)), JSON.stringify({ published, step, standbys }));
                published = set(step.members, step.quorum);
              }
              assert.ok(coversNew(standbys, published), `C1 broken after ${step.summary}: ${JSON.stringify({ standbys, published })}`);
              if (strict && start.length > 0) assert.ok(standbys.names.length > 0, 'strict never empties S');
            }
            assert.ok(steps < 20, 'converges');
            const final = nextSyncStep(input({ strict, nodeCount, streaming: healthy, published, standbys }));
            if (!strict || healthy.length >= nodeCount) {
              assert.deepEqual(published.members, [...healthy].sort(), JSON.stringify({ strict, nodeCount, start, healthy, final }));
              assert.deepEqual(standbys.names, [...healthy].sort());
            }
            cases += 1;
          }
        }
      }
    }
    assert.ok(cases > 100);
  });
});

void describe('syncPromotionCheck', () => {
  const byName = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
  const pos = (name: string, lsn: string, timeline = 1) => ({ name, timeline, lsn });
  void it('refuses with an empty or absent set, and outside the set', () => {
    assert.equal(syncPromotionCheck(pos('node2', '0/5'), null, [], byName).kind, 'refused');
    assert.equal(syncPromotionCheck(pos('node2', '0/5'), set([], 0), [], byName).kind, 'refused');
    assert.match(JSON.stringify(syncPromotionCheck(pos('node4', '0/5'), set(['node2', 'node3'], 1), [], byName)), /not in the synchronous set/);
  });
  void it('needs |P| - q + 1 known positions, itself included', () => {
    const p = set(['node2', 'node3', 'node4'], 1);
    assert.match(JSON.stringify(syncPromotionCheck(pos('node2', '0/5'), p, [pos('node3', '0/4')], byName)), /needs 3/);
    assert.equal(syncPromotionCheck(pos('node2', '0/5'), p, [pos('node3', '0/4'), pos('node4', '0/4')], byName).kind, 'allowed');
    const q2 = set(['node2', 'node3', 'node4'], 2);
    assert.equal(syncPromotionCheck(pos('node2', '0/5'), q2, [pos('node3', '0/4')], byName).kind, 'allowed', 'q = 2: two of three suffice');
    assert.equal(syncPromotionCheck(pos('node2', '0/5'), set(['node2'], 1), [], byName).kind, 'allowed', 'the only member');
  });
  void it('E8e: an empty set lets only the leader it names take the key back', () => {
    const emptied = { leader: 'node1', members: [], quorum: 0 };
    assert.equal(syncPromotionCheck(pos('node1', '0/5', 2), emptied, [], byName).kind, 'allowed', 'the node that emptied it');
    const other = syncPromotionCheck(pos('node2', '0/9', 2), emptied, [pos('node1', '0/5', 2)], byName);
    assert.equal(other.kind, 'refused', 'anyone else, even ahead');
    assert.match(JSON.stringify(other), /only node1 is known to hold every acknowledged commit/);
    assert.equal(syncPromotionCheck({ name: 'node1', timeline: null, lsn: null }, emptied, [], byName).kind, 'refused', 'own position unknown');
  });
  void it('answers from members outside the set do not count', () => {
    assert.equal(syncPromotionCheck(pos('node2', '0/5'), set(['node2', 'node3'], 1), [pos('node4', '0/1')], byName).kind, 'refused');
  });
  void it('a member ahead (or tied and first in order) wins', () => {
    const p = set(['node2', 'node3'], 1);
    assert.match(JSON.stringify(syncPromotionCheck(pos('node3', '0/5'), p, [pos('node2', '0/6')], byName)), /node2 is at 0\/6/);
    assert.equal(syncPromotionCheck(pos('node3', '0/5'), p, [pos('node2', '0/5')], byName).kind, 'refused', 'tie: node2 first by name');
    assert.equal(syncPromotionCheck(pos('node2', '0/5'), p, [pos('node3', '0/5')], byName).kind, 'allowed');
    assert.equal(syncPromotionCheck(pos('node2', '0/1', 2), p, [pos('node3', '0/9', 1)], byName).kind, 'allowed', 'higher timeline first');
  });
});
