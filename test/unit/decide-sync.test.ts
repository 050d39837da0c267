/**
 * `decide` in synchronous quorum mode (src/ha/decide.ts rules D2/D3s/E with src/ha/sync-set.ts):
 * the election table (outside the published set: not eligible; too few fresh positions: wait;
 * highest of a quorum: take the key, publish an empty set of its own, then promote), intents, and
 * the leader's sync step as part of its routine.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Action } from '../../src/ha/actions.js';
import { decide } from '../../src/ha/decide.js';
import type { LeaderSyncState, Observation } from '../../src/ha/observation.js';
import { formatSyncSet, type SyncSet } from '../../src/state/sync-record.js';
import type { PeerPosition } from '../../src/ha/sync-set.js';
import { DEFAULT_NOW_MS, intent, memberRecord, observation, primaryRecord, reachable, running, runningPrimary } from '../builders/observation-builder.js';

const SYNC = { synchronous: 'quorum' as const };

function syncOf(set: SyncSet | null): { raw: string; set: SyncSet | null } | null {
  return set === null ? null : { raw: formatSyncSet(set), set };
}

/** node1 a running standby at 0/3000000, no leader, the given published set and peer answers. */
function election(set: SyncSet | null, peers: PeerPosition[] | undefined, extra: Partial<Parameters<typeof observation>[0]> = {}): Observation {
  const members = ['node2', 'node3'].map((name) => memberRecord({ name }));
  const obs = observation({ config: SYNC, dcs: reachable({ members, sync: syncOf(set) }), ...extra });
  return peers === undefined ? obs : { ...obs, peerPositions: peers };
}

const at = (name: string, lsn: string, timeline = 1): PeerPosition => ({ name, timeline, lsn });
const P = (members: string[], quorum: number, leader = 'node9'): SyncSet => ({ leader, members, quorum });
const takeAndPromote = (set: SyncSet | null): Action[] => [
  { kind: 'acquire-leader' },
  { kind: 'publish-sync-set', members: [], quorum: 0, expected: set === null ? null : formatSyncSet(set) },
  { kind: 'promote' },
];

void describe('decide, sync mode: election', () => {
  const rows: Array<{ name: string; obs: Observation; actions: Action[]; summary?: RegExp }> = [
    { name: 'no published set: nobody can be proven complete', obs: election(null, []), actions: [], summary: /empty/ },
    { name: 'empty published set (degraded): no promotion', obs: election(P([], 0), []), actions: [], summary: /empty/ },
    { name: 'not in the published set: not eligible', obs: election(P(['node2', 'node3'], 1), [at('node2', '0/1000000'), at('node3', '0/1000000')]), actions: [], summary: /not in the synchronous set/ },
    { name: 'in the set, peers not asked: wait', obs: election(P(['node1', 'node2'], 1), undefined), actions: [], summary: /needs 2/ },
    { name: 'in the set, a peer did not answer: wait', obs: election(P(['node1', 'node2'], 1), []), actions: [], summary: /needs 2/ },
    {
      name: 'in the set, 3 members, quorum 1, one of two peers answered: wait',
      obs: election(P(['node1', 'node2', 'node3'], 1), [at('node2', '0/1000000')]),
      actions: [],
      summary: /knows the positions of 2 .* needs 3/,
    },
    {
      name: 'quorum 2 of 3: one peer is enough',
      obs: election(P(['node1', 'node2', 'node3'], 2), [at('node2', '0/1000000')]),
      actions: takeAndPromote(P(['node1', 'node2', 'node3'], 2)),
      summary: /holds every acknowledged commit/,
    },
    { name: 'a peer of the set is ahead: wait', obs: election(P(['node1', 'node2'], 1), [at('node2', '0/3000001')]), actions: [], summary: /node2 is at 0\/3000001/ },
    {
      name: 'highest of the quorum: take the key, publish an empty set of its own, promote',
      obs: election(P(['node1', 'node2'], 1), [at('node2', '0/2000000')]),
      actions: takeAndPromote(P(['node1', 'node2'], 1)),
    },
    {
      name: 'its receive position counts (WAL received, not yet replayed)',
      obs: election(P(['node1', 'node2'], 1), [at('node2', '0/3000008')], { pg: running({ lsn: '0/3000000', receiveLsn: '0/3000010' }) }),
      actions: takeAndPromote(P(['node1', 'node2'], 1)),
    },
    {
      name: 'an answer from outside the set does not count',
      obs: election(P(['node1', 'node2'], 1), [at('node3', '0/1000000')]),
      actions: [],
      summary: /needs 2/,
    },
    {
      name: 'switchover target outside the set: refused',
      obs: election(P(['node2', 'node3'], 1), [], { dcs: reachable({ sync: syncOf(P(['node2', 'node3'], 1)), intent: intent({ kind: 'switchover', from: 'node9', to: 'node1', requestedAtMs: DEFAULT_NOW_MS - 1000 }) }) }),
      actions: [],
      summary: /not in the synchronous set/,
    },
    {
      name: 'switchover target in the set: takes the lead',
      obs: election(P(['node1', 'node2'], 1), [], { dcs: reachable({ sync: syncOf(P(['node1', 'node2'], 1)), intent: intent({ kind: 'switchover', from: 'node9', to: 'node1', requestedAtMs: DEFAULT_NOW_MS - 1000 }) }) }),
      actions: takeAndPromote(P(['node1', 'node2'], 1)),
    },
    {
      name: 'sync mode off: the published set is ignored, the usual ranking decides',
      obs: { ...election(P(['node2'], 1), []), config: { ...election(null, []).config, synchronous: 'off' } },
      actions: [{ kind: 'acquire-leader' }, { kind: 'promote' }],
    },
  ];
  for (const row of rows) {
    void it(row.name, () => {
      const d = decide(row.obs);
      assert.deepEqual(d.actions, row.actions, d.summary);
      if (row.summary !== undefined) assert.match(d.summary, row.summary);
    });
  }
});

void describe('decide, sync mode: holding the key and leading', () => {
  const leaderSync = (standbyNames: string): LeaderSyncState => ({
    standbyNames,
    replication: [
      { name: 'node2', state: 'streaming', flushLsn: '0/3000000' },
      { name: 'node3', state: 'streaming', flushLsn: '0/3000000' },
    ],
    appliedLsn: '0/3000000',
  });
  const leading = (set: SyncSet | null, standbyNames: string, config: Partial<Observation['config']> = SYNC): Observation => ({
    ...observation({
      config,
      lease: { holdsLeader: true },
      pg: runningPrimary(),
      dcs: reachable({ leader: 'node1', members: [primaryRecord({ name: 'node1' }), memberRecord({ name: 'node2' }), memberRecord({ name: 'node3' })], sync: syncOf(set) }),
    }),
    leaderSync: leaderSync(standbyNames),
  });
  const routine: Action[] = [{ kind: 'sync-slots' }, { kind: 'publish-leader-lsn' }];

  void it('a promotion of a key holder empties an earlier set first', () => {
    const set = P(['node1', 'node2'], 1, 'node2');
    const obs = observation({ config: SYNC, lease: { holdsLeader: true }, dcs: reachable({ leader: 'node1', sync: syncOf(set) }) });
    assert.deepEqual(decide(obs).actions, [{ kind: 'publish-sync-set', members: [], quorum: 0, expected: formatSyncSet(set) }, { kind: 'promote' }]);
  });
  void it('leading with the set converged: routine only', () => {
    const d = decide(leading(P(['node2', 'node3'], 1, 'node1'), 'ANY 1 ("node2", "node3")'));
    assert.deepEqual(d.actions, routine);
    assert.match(d.summary, /node2, node3 synchronous/);
  });
  void it('leading with its own empty set: sets synchronous_standby_names first', () => {
    const d = decide(leading(P([], 0, 'node1'), ''));
    assert.deepEqual(d.actions, [{ kind: 'set-sync-standbys', names: ['node2', 'node3'], quorum: 1 }, ...routine]);
  });
  void it('leading with in-force, confirmed standbys: publishes them (compare-and-set on what it read)', () => {
    const set = P([], 0, 'node1');
    const d = decide(leading(set, 'ANY 1 ("node2", "node3")'));
    assert.deepEqual(d.actions, [{ kind: 'publish-sync-set', members: ['node2', 'node3'], quorum: 1, expected: formatSyncSet(set) }, ...routine]);
  });
  void it('sync mode turned off: empties /sync, then clears synchronous_standby_names, then nothing', () => {
    const off = { synchronous: 'off' as const };
    const set = P(['node2', 'node3'], 1, 'node1');
    assert.deepEqual(decide(leading(set, 'ANY 1 ("node2", "node3")', off)).actions, [{ kind: 'publish-sync-set', members: [], quorum: 0, expected: formatSyncSet(set) }, ...routine]);
    assert.deepEqual(decide(leading(P([], 0, 'node1'), 'ANY 1 ("node2", "node3")', off)).actions, [{ kind: 'set-sync-standbys', names: [], quorum: 0 }, ...routine]);
    assert.deepEqual(decide(leading(P([], 0, 'node1'), '', off)).actions, routine);
  });
});
