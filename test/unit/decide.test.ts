/**
 * `decide(observation)` (src/ha/decide.ts) as a decision table: one row per branch of rules A-E
 * (etcd unreachable, long task, no data, stopped, running, election), each row stating the one
 * fact that selects it and the exact actions expected. Then the fencing arithmetic
 * (`fenceMarginMs`, `leaseDeadlineMs`), and a seeded property test over a few hundred random
 * observations for the safety invariants: nothing starts writable or promotes without holding the
 * leader key (or acquiring it first in the same decision), and nobody changes roles without etcd.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Action } from '../../src/ha/actions.js';
import { decide, fenceMarginMs, leaseDeadlineMs } from '../../src/ha/decide.js';
import type { MemberRecord } from '../../src/ha/member-record.js';
import type { DcsView, LocalPostgres, Observation } from '../../src/ha/observation.js';
import {
  DEFAULT_NOW_MS,
  memberRecord,
  noData,
  observation,
  primaryRecord,
  reachable,
  running,
  runningPrimary,
  starting,
  stopped,
  stoppedCleanPrimary,
  unreachable,
} from '../builders/observation-builder.js';

interface Row {
  name: string;
  obs: Observation;
  actions: Action[];
  summary?: RegExp;
}

const NOW = DEFAULT_NOW_MS;
const TTL_MS = 6_000; // default ttlSeconds
const MARGIN_MS = 1_500; // fenceMarginMs(6)

function runTable(rows: readonly Row[]): void {
  for (const row of rows) {
    void it(row.name, () => {
      const result = decide(row.obs);
      assert.deepEqual(result.actions, row.actions, `summary was: ${result.summary}`);
      assert.ok(result.summary.length > 0, 'every decision explains itself in one line');
      if (row.summary !== undefined) assert.match(result.summary, row.summary);
    });
  }
}

const fence = (reason: string): Action => ({ kind: 'fence', reason });

void describe('decide, rule A: etcd unreachable', () => {
  runTable([
    {
      name: 'a streaming replica keeps its role',
      obs: observation({ dcs: unreachable(), pg: running() }),
      actions: [],
      summary: /etcd unreachable.*keeping current role/,
    },
    {
      name: 'a stopped node stays stopped (does not start without etcd)',
      obs: observation({ dcs: unreachable(), pg: stopped() }),
      actions: [],
    },
    {
      name: 'a node without data does not initialize without etcd',
      obs: observation({ dcs: unreachable(), pg: noData() }),
      actions: [],
    },
    {
      name: 'a starting postgres is left alone',
      obs: observation({ dcs: unreachable(), pg: starting() }),
      actions: [],
    },
    {
      name: 'a primary with a lease still valid keeps running',
      obs: observation({ dcs: unreachable(), pg: runningPrimary(), lease: { holdsLeader: true, lastRenewedMs: NOW - 1_000 } }),
      actions: [],
      summary: /lease still valid for 3500 ms/,
    },
    {
      name: 'a primary one millisecond before its deadline keeps running',
      obs: observation({
        dcs: unreachable(),
        pg: runningPrimary(),
        lease: { holdsLeader: true, lastRenewedMs: NOW - (TTL_MS - MARGIN_MS) + 1 },
      }),
      actions: [],
    },
    {
      name: 'a primary exactly at its deadline fences',
      obs: observation({
        dcs: unreachable(),
        pg: runningPrimary(),
        lease: { holdsLeader: true, lastRenewedMs: NOW - (TTL_MS - MARGIN_MS) },
      }),
      actions: [fence('leader lease could not be renewed before its deadline')],
      summary: /past the lease deadline: fencing/,
    },
    {
      name: 'a primary past its deadline (still before the TTL) fences',
      obs: observation({ dcs: unreachable(), pg: runningPrimary(), lease: { holdsLeader: true, lastRenewedMs: NOW - 5_000 } }),
      actions: [fence('leader lease could not be renewed before its deadline')],
    },
    {
      name: 'the deadline follows the configured TTL (ttl 20 s: margin 2 s)',
      obs: observation({
        dcs: unreachable(),
        pg: runningPrimary(),
        config: { ttlSeconds: 20, loopWaitMs: 1000 },
        lease: { holdsLeader: true, lastRenewedMs: NOW - 17_999 },
      }),
      actions: [],
    },
    {
      name: 'a primary without the leader key fences at once',
      obs: observation({ dcs: unreachable(), pg: runningPrimary(), lease: { holdsLeader: false, lastRenewedMs: NOW } }),
      actions: [fence('primary without a leader lease')],
      summary: /no leader lease: fencing/,
    },
    {
      name: 'a primary that never renewed fences at once',
      obs: observation({ dcs: unreachable(), pg: runningPrimary(), lease: { holdsLeader: true, lastRenewedMs: null } }),
      actions: [fence('primary without a leader lease')],
    },
  ]);
});

void describe('decide, rule A precedence and long tasks', () => {
  runTable([
    {
      name: 'a long task makes the tick a no-op',
      obs: observation({ pg: noData(), dcs: reachable({ initialize: null }), longTask: { kind: 'clone-from', startedMs: NOW - 10 } }),
      actions: [],
      summary: /busy: clone-from running/,
    },
    {
      name: 'a long task does not stop a leader-less running primary from being left alone either',
      obs: observation({ pg: runningPrimary(), longTask: { kind: 'initialize-cluster', startedMs: NOW - 10 } }),
      actions: [],
      summary: /busy: initialize-cluster/,
    },
    {
      name: 'etcd loss is checked before the long task: a primary past its deadline fences even while busy',
      obs: observation({
        dcs: unreachable(),
        pg: runningPrimary(),
        lease: { holdsLeader: true, lastRenewedMs: NOW - TTL_MS },
        longTask: { kind: 'restart', startedMs: NOW - 10 },
      }),
      actions: [fence('leader lease could not be renewed before its deadline')],
    },
  ]);
});

void describe('decide, rule B: no data directory', () => {
  const leader = primaryRecord({ name: 'node2' });
  runTable([
    {
      name: 'an uninitialized cluster: race to initialize',
      obs: observation({ pg: noData(), dcs: reachable({ initialize: null }) }),
      actions: [{ kind: 'initialize-cluster' }],
    },
    {
      name: 'another node is initializing: wait',
      obs: observation({ pg: noData(), dcs: reachable({ initialize: 'pending:node3' }) }),
      actions: [],
      summary: /waiting: node3 is initializing/,
    },
    {
      name: 'initialized but no leader: wait',
      obs: observation({ pg: noData(), dcs: reachable({ leader: null, members: [leader] }) }),
      actions: [],
      summary: /waiting for a leader/,
    },
    {
      name: 'the leader key names this node (left behind): wait, never clone from itself',
      obs: observation({ pg: noData(), dcs: reachable({ leader: 'node1', members: [primaryRecord({ name: 'node1' })] }) }),
      actions: [],
    },
    {
      name: 'a leader without a member record: wait',
      obs: observation({ pg: noData(), dcs: reachable({ leader: 'node2', members: [] }) }),
      actions: [],
    },
    {
      name: 'a leader that is not yet a running primary: wait',
      obs: observation({ pg: noData(), dcs: reachable({ leader: 'node2', members: [memberRecord({ name: 'node2', role: 'replica' })] }) }),
      actions: [],
      summary: /waiting for leader node2 to be running/,
    },
    {
      name: 'a leader that is a primary but still starting: wait',
      obs: observation({ pg: noData(), dcs: reachable({ leader: 'node2', members: [primaryRecord({ name: 'node2', state: 'starting' })] }) }),
      actions: [],
    },
    {
      name: 'a running primary leader: clone from it',
      obs: observation({ pg: noData(), dcs: reachable({ leader: 'node2', members: [leader] }) }),
      actions: [{ kind: 'clone-from', leader: 'node2' }],
    },
  ]);
});

void describe('decide, rule C: postgres stopped', () => {
  const leaderSelf = reachable({ leader: 'node1' });
  runTable([
    {
      name: 'leader key and live lease: start as primary',
      obs: observation({ pg: stopped(), dcs: leaderSelf, lease: { holdsLeader: true } }),
      actions: [{ kind: 'start-postgres', mode: 'primary', upstream: null }],
      summary: /starting postgres as leader/,
    },
    {
      name: 'leader key and live lease after a crash: restart in place',
      obs: observation({ pg: stopped({ crashed: true }), dcs: leaderSelf, lease: { holdsLeader: true } }),
      actions: [{ kind: 'start-postgres', mode: 'primary', upstream: null }],
      summary: /crashed: restarting in place/,
    },
    {
      name: 'leader key from a previous run (not on our lease): release it',
      obs: observation({ pg: stoppedCleanPrimary(), dcs: leaderSelf, lease: { holdsLeader: false } }),
      actions: [{ kind: 'release-stale-leader' }],
    },
    {
      name: 'another node leads: start as its standby',
      obs: observation({ pg: stopped(), dcs: reachable({ leader: 'node2', members: [primaryRecord({ name: 'node2' })] }) }),
      actions: [{ kind: 'start-postgres', mode: 'standby', upstream: 'node2' }],
    },
    {
      name: 'another node leads and we hold stale memory of the key: still a standby',
      obs: observation({ pg: stoppedCleanPrimary(), dcs: reachable({ leader: 'node2' }), lease: { holdsLeader: true } }),
      actions: [{ kind: 'start-postgres', mode: 'standby', upstream: 'node2' }],
    },
    {
      name: 'no leader, cleanly shut down as primary: acquire the key, then start as primary',
      obs: observation({ pg: stoppedCleanPrimary(), dcs: reachable({ members: [memberRecord({ name: 'node2', timeline: 1 })] }) }),
      actions: [{ kind: 'acquire-leader' }, { kind: 'start-postgres', mode: 'primary', upstream: null }],
      summary: /shut down cleanly as primary: taking the lead/,
    },
    {
      name: 'no leader, clean primary, but a member is on a higher timeline: standby, no upstream',
      obs: observation({ pg: stoppedCleanPrimary({ timeline: 1 }), dcs: reachable({ members: [memberRecord({ name: 'node2', timeline: 2 })] }) }),
      actions: [{ kind: 'start-postgres', mode: 'standby', upstream: null }],
    },
    {
      name: 'no leader, clean primary: its own record with a higher timeline does not count',
      obs: observation({ pg: stoppedCleanPrimary({ timeline: 1 }), dcs: reachable({ members: [memberRecord({ name: 'node1', timeline: 3 })] }) }),
      actions: [{ kind: 'acquire-leader' }, { kind: 'start-postgres', mode: 'primary', upstream: null }],
    },
    {
      name: 'no leader, clean primary, member with unknown timeline does not block',
      obs: observation({ pg: stoppedCleanPrimary({ timeline: 2 }), dcs: reachable({ members: [memberRecord({ name: 'node2', timeline: null })] }) }),
      actions: [{ kind: 'acquire-leader' }, { kind: 'start-postgres', mode: 'primary', upstream: null }],
    },
    {
      name: 'no leader, clean primary but tagged nofailover: standby, no upstream',
      obs: observation({ pg: stoppedCleanPrimary(), tags: { nofailover: true } }),
      actions: [{ kind: 'start-postgres', mode: 'standby', upstream: null }],
    },
    {
      name: 'no leader, not a clean primary (replica or crashed primary): start read-only for the election',
      obs: observation({ pg: stopped({ clusterState: 'in production', cleanShutdownPrimary: false }) }),
      actions: [{ kind: 'start-postgres', mode: 'standby', upstream: null }],
      summary: /starting read-only to take part in the election/,
    },
  ]);
});

void describe('decide: postgres starting', () => {
  runTable([
    {
      name: 'waits whatever etcd says',
      obs: observation({ pg: starting(), dcs: reachable({ leader: 'node2' }) }),
      actions: [],
      summary: /starting/,
    },
  ]);
});

void describe('decide, rule D: postgres running', () => {
  runTable([
    {
      name: 'leader key from a previous run: release it',
      obs: observation({ pg: runningPrimary(), dcs: reachable({ leader: 'node1' }), lease: { holdsLeader: false } }),
      actions: [{ kind: 'release-stale-leader' }],
    },
    {
      name: 'holding the key while still in recovery: promote',
      obs: observation({ pg: running({ inRecovery: true }), dcs: reachable({ leader: 'node1' }), lease: { holdsLeader: true } }),
      actions: [{ kind: 'promote' }],
    },
    {
      name: 'leading: keep slots in sync and publish the leader LSN',
      obs: observation({ pg: runningPrimary(), dcs: reachable({ leader: 'node1' }), lease: { holdsLeader: true } }),
      actions: [{ kind: 'sync-slots' }, { kind: 'publish-leader-lsn' }],
      summary: /^leading$/,
    },
    {
      name: 'another node leads and we are a primary: demote to its standby',
      obs: observation({ pg: runningPrimary(), dcs: reachable({ leader: 'node2' }), lease: { holdsLeader: true } }),
      actions: [{ kind: 'demote', upstream: 'node2' }],
    },
    {
      name: 'another node leads, our replica follows someone else: follow the leader',
      obs: observation({ pg: running(), dcs: reachable({ leader: 'node3' }), configuredUpstream: 'node2' }),
      actions: [{ kind: 'follow', upstream: 'node3' }],
      summary: /following new leader node3/,
    },
    {
      name: 'another node leads, our replica has no upstream yet: follow the leader',
      obs: observation({ pg: running(), dcs: reachable({ leader: 'node3' }), configuredUpstream: null }),
      actions: [{ kind: 'follow', upstream: 'node3' }],
    },
    {
      name: 'streaming from the leader: nothing to do',
      obs: observation({ pg: running({ walReceiverStatus: 'streaming' }), dcs: reachable({ leader: 'node2' }), configuredUpstream: 'node2' }),
      actions: [],
      summary: /^streaming from node2$/,
    },
    {
      name: 'configured for the leader but not streaming yet: nothing to do',
      obs: observation({ pg: running({ walReceiverStatus: null }), dcs: reachable({ leader: 'node2' }), configuredUpstream: 'node2' }),
      actions: [],
      summary: /not streaming yet/,
    },
  ]);
});

void describe('decide, rule E: election (running, no leader)', () => {
  const peer = (name: string, overrides: Partial<MemberRecord> = {}): MemberRecord => memberRecord({ name, ...overrides });
  const acquireAndPromote: Action[] = [{ kind: 'acquire-leader' }, { kind: 'promote' }];
  runTable([
    {
      name: 'nofailover replica: not eligible, stays a replica',
      obs: observation({ pg: running(), tags: { nofailover: true } }),
      actions: [],
      summary: /not eligible \(nofailover\)/,
    },
    {
      name: 'nofailover primary: not eligible, demotes (no upstream)',
      obs: observation({ pg: runningPrimary(), tags: { nofailover: true } }),
      actions: [{ kind: 'demote', upstream: null }],
    },
    {
      name: 'a replica without a WAL position is not eligible',
      obs: observation({ pg: running({ lsn: null }) }),
      actions: [],
      summary: /no-position/,
    },
    {
      name: 'a replica too far behind the last leader LSN is not eligible',
      obs: observation({
        pg: running({ lsn: '0/1000000' }),
        config: { maximumLagOnFailoverBytes: 1024 },
        dcs: reachable({ lastLeaderLsn: '0/1000401' }),
      }),
      actions: [],
      summary: /too-far-behind/,
    },
    {
      name: 'a primary too far behind demotes',
      obs: observation({
        pg: runningPrimary({ lsn: '0/1000000' }),
        config: { maximumLagOnFailoverBytes: 1024 },
        dcs: reachable({ lastLeaderLsn: '0/1000401' }),
      }),
      actions: [{ kind: 'demote', upstream: null }],
    },
    {
      name: 'exactly at the lag limit is still eligible',
      obs: observation({
        pg: running({ lsn: '0/1000000' }),
        config: { maximumLagOnFailoverBytes: 1024 },
        dcs: reachable({ lastLeaderLsn: '0/1000400' }),
      }),
      actions: acquireAndPromote,
    },
    {
      name: 'a fresh agent (replica) waits one TTL for a former primary to reclaim the lead',
      obs: observation({ pg: running(), agentStartedMs: NOW - TTL_MS + 1 }),
      actions: [],
      summary: /start-up grace for 1 ms/,
    },
    {
      name: 'the grace ends exactly one TTL after the agent started',
      obs: observation({ pg: running(), agentStartedMs: NOW - TTL_MS }),
      actions: acquireAndPromote,
    },
    {
      name: 'the grace does not apply to a running primary: best candidate takes the key without promoting',
      obs: observation({ pg: runningPrimary(), agentStartedMs: NOW }),
      actions: [{ kind: 'acquire-leader' }],
      summary: /already primary/,
    },
    {
      name: 'alone and eligible: acquire the key and promote',
      obs: observation({ pg: running() }),
      actions: acquireAndPromote,
      summary: /best candidate: taking the lead and promoting/,
    },
    {
      name: 'ahead of every peer: acquire and promote',
      obs: observation({ pg: running({ lsn: '0/3000010' }), dcs: reachable({ members: [peer('node2'), peer('node3', { lsn: '0/2000000' })] }) }),
      actions: acquireAndPromote,
    },
    {
      name: 'a peer is further ahead: a replica does nothing',
      obs: observation({ pg: running({ lsn: '0/3000000' }), dcs: reachable({ members: [peer('node2', { lsn: '0/3000001' })] }) }),
      actions: [],
      summary: /node2 is the better candidate/,
    },
    {
      name: 'a peer is further ahead: a primary demotes',
      obs: observation({ pg: runningPrimary({ lsn: '0/3000000' }), dcs: reachable({ members: [peer('node2', { lsn: '0/3000001' })] }) }),
      actions: [{ kind: 'demote', upstream: null }],
    },
    {
      name: 'a peer on a higher timeline wins even with a lower LSN',
      obs: observation({ pg: running({ timeline: 1, lsn: '0/9000000' }), dcs: reachable({ members: [peer('node2', { timeline: 2, lsn: '0/1000000' })] }) }),
      actions: [],
    },
    {
      name: 'equal positions: the higher priority tag wins',
      obs: observation({ pg: running(), tags: { priority: 1 }, dcs: reachable({ members: [peer('node0', { tags: { priority: 0 } })] }) }),
      actions: acquireAndPromote,
    },
    {
      name: 'equal positions and priority: the lower name wins (node0 before node1)',
      obs: observation({ pg: running(), dcs: reachable({ members: [peer('node0')] }) }),
      actions: [],
      summary: /node0 is the better candidate/,
    },
    {
      name: 'equal positions and priority: we win against node2 by name',
      obs: observation({ pg: running(), dcs: reachable({ members: [peer('node2')] }) }),
      actions: acquireAndPromote,
    },
    {
      name: 'stopped or non-running peers do not compete',
      obs: observation({
        pg: running({ lsn: '0/1000000' }),
        dcs: reachable({ members: [peer('node2', { role: 'stopped', lsn: '0/9000000' }), peer('node3', { state: 'starting', lsn: '0/9000000' })] }),
      }),
      actions: acquireAndPromote,
    },
    {
      name: 'an ineligible peer (nofailover) further ahead does not block us',
      obs: observation({ pg: running({ lsn: '0/1000000' }), dcs: reachable({ members: [peer('node0', { lsn: '0/9000000', tags: { nofailover: true } })] }) }),
      actions: acquireAndPromote,
    },
    {
      name: 'our own (stale) member record is ignored in favour of the live observation',
      obs: observation({ pg: running({ lsn: '0/3000000' }), dcs: reachable({ members: [peer('node1', { lsn: '0/1' }), peer('node2', { lsn: '0/2000000' })] }) }),
      actions: acquireAndPromote,
    },
  ]);

  void it('does not throw on a malformed LSN published by another member or as the last leader LSN', {
    todo:
      'bug: member records and /status/lastLsn are not validated as LSNs (src/ha/member-record.ts lsn: z.string(); loop.ts reads lastLsn raw), ' +
      'and election.ts ineligibility/compareCandidates call parseLsn which throws, so one bad value makes decide() throw on every node and blocks every election',
  }, () => {
    const withBadPeer = observation({ pg: running(), dcs: reachable({ members: [memberRecord({ name: 'node2', lsn: 'garbage' })] }) });
    assert.doesNotThrow(() => decide(withBadPeer));
    assert.deepEqual(decide(withBadPeer).actions, acquireAndPromote);
    const withBadLastLsn = observation({ pg: running(), dcs: reachable({ lastLeaderLsn: 'not-an-lsn' }) });
    assert.doesNotThrow(() => decide(withBadLastLsn));
  });
});

void describe('fencing arithmetic', () => {
  void it('fenceMarginMs is a quarter of the TTL, capped at 2 s', () => {
    assert.equal(fenceMarginMs(2), 500);
    assert.equal(fenceMarginMs(6), 1_500);
    assert.equal(fenceMarginMs(7), 1_750);
    assert.equal(fenceMarginMs(8), 2_000);
    assert.equal(fenceMarginMs(10), 2_000);
    assert.equal(fenceMarginMs(600), 2_000);
  });

  void it('leaseDeadlineMs is last renewal + TTL - margin', () => {
    assert.equal(leaseDeadlineMs(1_000, 6), 1_000 + 6_000 - 1_500);
    assert.equal(leaseDeadlineMs(0, 2), 1_500);
    assert.equal(leaseDeadlineMs(NOW, 30), NOW + 28_000);
  });

  void it('for every allowed TTL the deadline falls strictly inside the lease and after the next loop renewal', () => {
    for (let ttlSeconds = 2; ttlSeconds <= 600; ttlSeconds += 1) {
      const margin = fenceMarginMs(ttlSeconds);
      assert.ok(margin > 0, `margin > 0 for ttl ${ttlSeconds}`);
      assert.ok(Number.isInteger(margin));
      const deadline = leaseDeadlineMs(0, ttlSeconds);
      assert.ok(deadline < ttlSeconds * 1000, `deadline before expiry for ttl ${ttlSeconds}`);
      assert.ok(deadline >= (ttlSeconds * 1000) / 2, `deadline leaves at least half the TTL for ttl ${ttlSeconds}`);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Property test: random observations from a seeded PRNG (mulberry32), deterministic across runs.

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class Random {
  private readonly next: () => number;
  constructor(seed: number) {
    this.next = mulberry32(seed);
  }
  int(maxExclusive: number): number {
    return Math.floor(this.next() * maxExclusive);
  }
  bool(pTrue = 0.5): boolean {
    return this.next() < pTrue;
  }
  pick<T>(values: readonly T[]): T {
    const value = values[this.int(values.length)];
    if (value === undefined) throw new Error('pick from an empty list');
    return value;
  }
  maybeNull<T>(value: T, pNull = 0.15): T | null {
    return this.bool(pNull) ? null : value;
  }
}

const NAMES = ['node1', 'node2', 'node3', 'node4'] as const;

function randomLsn(r: Random): string {
  return `${r.int(3).toString(16).toUpperCase()}/${(r.int(8) * 0x800000).toString(16).toUpperCase()}`;
}

function randomPg(r: Random): LocalPostgres {
  switch (r.int(5)) {
    case 0:
      return noData();
    case 1:
      return starting();
    case 2: {
      const clean = r.bool();
      return stopped({
        clusterState: clean ? 'shut down' : r.pick(['shut down in recovery', 'in production', 'in archive recovery']),
        cleanShutdownPrimary: clean,
        timeline: r.maybeNull(1 + r.int(3)),
        lsn: r.maybeNull(randomLsn(r)),
        crashed: r.bool(0.3),
      });
    }
    default:
      return running({
        inRecovery: r.bool(),
        timeline: 1 + r.int(3),
        lsn: r.maybeNull(randomLsn(r)),
        walReceiverStatus: r.pick(['streaming', null, 'starting']),
      });
  }
}

function randomMembers(r: Random, self: string): MemberRecord[] {
  const members: MemberRecord[] = [];
  for (const name of NAMES) {
    if (!r.bool(0.6)) continue;
    if (name === self && r.bool(0.5)) continue;
    members.push(
      memberRecord({
        name,
        role: r.pick(['primary', 'replica', 'stopped', 'unknown'] as const),
        state: r.pick(['running', 'starting', 'stopped', 'cloning']),
        timeline: r.maybeNull(1 + r.int(3)),
        lsn: r.maybeNull(randomLsn(r)),
        tags: r.bool(0.2) ? { nofailover: true } : r.bool(0.3) ? { priority: r.int(3) } : {},
      }),
    );
  }
  return members;
}

function randomDcs(r: Random, self: string): DcsView {
  if (r.bool(0.2)) return unreachable();
  return reachable({
    leader: r.bool(0.4) ? null : r.pick(NAMES),
    initialize: r.pick([null, 'pending:node2', 'pending:node1', '7712280022764410088', '7712280022764410088']),
    members: randomMembers(r, self),
    lastLeaderLsn: r.maybeNull(randomLsn(r), 0.4),
  });
}

function randomObservation(r: Random): Observation {
  const node = r.pick(NAMES);
  return observation({
    node,
    nowMs: NOW,
    agentStartedMs: NOW - r.int(2 * TTL_MS),
    config: { maximumLagOnFailoverBytes: r.pick([0, 0x800000, 16 * 1024 * 1024]) },
    tags: r.bool(0.2) ? { nofailover: true } : r.bool(0.3) ? { priority: r.int(3) } : {},
    dcs: randomDcs(r, node),
    lease: { holdsLeader: r.bool(), lastRenewedMs: r.maybeNull(NOW - r.int(TTL_MS + 1_000)) },
    pg: randomPg(r),
    configuredUpstream: r.maybeNull(r.pick(NAMES), 0.4),
    longTask: r.bool(0.1) ? { kind: 'clone-from', startedMs: NOW - 100 } : null,
  });
}

/** True when the decision itself, or what was observed, proves this node holds the leader key at index `i`. */
function holdsKeyAt(obs: Observation, actions: readonly Action[], i: number): boolean {
  const heldBefore = obs.dcs.kind === 'reachable' && obs.dcs.leader === obs.node && obs.lease.holdsLeader;
  return heldBefore || actions.slice(0, i).some((a) => a.kind === 'acquire-leader');
}

void describe('decide safety properties (seeded random observations)', () => {
  const SEED = 20_240_611;
  const COUNT = 600;
  const samples: Array<{ obs: Observation; actions: Action[] }> = [];
  const random = new Random(SEED);
  for (let i = 0; i < COUNT; i += 1) {
    const obs = randomObservation(random);
    samples.push({ obs, actions: decide(obs).actions });
  }

  void it('the generator reaches the interesting branches (the property is not vacuous)', () => {
    const kinds = new Set(samples.flatMap((s) => s.actions.map((a) => (a.kind === 'start-postgres' ? `start-${a.mode}` : a.kind))));
    for (const kind of ['start-primary', 'start-standby', 'promote', 'acquire-leader', 'fence', 'demote', 'follow', 'clone-from', 'initialize-cluster']) {
      assert.ok(kinds.has(kind), `no sample produced ${kind}; seen: ${[...kinds].join(', ')}`);
    }
  });

  void it('never starts postgres writable without holding the key or acquiring it first', () => {
    for (const { obs, actions } of samples) {
      actions.forEach((action, i) => {
        if (action.kind === 'start-postgres' && action.mode === 'primary') {
          assert.ok(holdsKeyAt(obs, actions, i), `start primary without the key: ${JSON.stringify({ obs, actions })}`);
        }
      });
    }
  });

  void it('never promotes without holding the key or acquiring it first', () => {
    for (const { obs, actions } of samples) {
      actions.forEach((action, i) => {
        if (action.kind === 'promote') assert.ok(holdsKeyAt(obs, actions, i), `promote without the key: ${JSON.stringify({ obs, actions })}`);
      });
    }
  });

  void it('without etcd, the only possible action is a fence, and only of a running primary', () => {
    for (const { obs, actions } of samples) {
      if (obs.dcs.kind !== 'unreachable') continue;
      for (const action of actions) {
        assert.equal(action.kind, 'fence');
        assert.ok(obs.pg.kind === 'running' && !obs.pg.inRecovery);
      }
    }
  });

  void it('acquire-leader only when the key is free, and only by an eligible, un-tagged node', () => {
    for (const { obs, actions } of samples) {
      if (!actions.some((a) => a.kind === 'acquire-leader')) continue;
      assert.ok(obs.dcs.kind === 'reachable' && obs.dcs.leader === null, JSON.stringify(obs));
      assert.notEqual(obs.tags.nofailover, true);
    }
  });

  void it('clone-from and initialize-cluster only without data; never two role changes in one decision', () => {
    for (const { obs, actions } of samples) {
      if (actions.some((a) => a.kind === 'clone-from' || a.kind === 'initialize-cluster')) assert.equal(obs.pg.kind, 'no-data');
      const roleChanges = actions.filter((a) => a.kind === 'promote' || a.kind === 'demote' || a.kind === 'fence' || a.kind === 'start-postgres');
      assert.ok(roleChanges.length <= 1, JSON.stringify(actions));
    }
  });

  void it('is deterministic: the same observation always gives the same decision', () => {
    for (const { obs } of samples.slice(0, 100)) assert.deepEqual(decide(obs), decide(structuredClone(obs)));
  });
});
