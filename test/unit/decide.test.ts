/**
 * `decide(observation)` (src/ha/decide.ts) as a decision table: one row per branch of rules A-E
 * (etcd unreachable, long task, no data, stopped, running, election), each row stating the one
 * fact that selects it and the exact actions expected. Then the fencing arithmetic
 * (`fenceMarginMs`, `leaseDeadlineMs`), and a seeded property test over about a thousand random
 * observations for the safety invariants: nothing starts writable or promotes without holding the
 * leader key (or acquiring it first in the same decision), and nobody changes roles without etcd.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Action } from '../../src/ha/actions.js';
import { dataTaskBackoffMs, decide } from '../../src/ha/decide.js';
import { divergedAfterMs, fenceMarginMs, leaseDeadlineMs } from '../../src/ha/timing.js';
import { parseMemberRecord, type MemberRecord } from '../../src/state/member-record.js';
import type { DcsView } from '../../src/state/dcs-view.js';
import type { LocalPostgres } from '../../src/state/agent-snapshot.js';
import type { Observation } from '../../src/ha/observation.js';
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
  stoppedCrashedPrimary,
  intent,
  unreachable,
} from '../builders/observation-builder.js';
import { INTENT_TIMEOUT_MS } from '../../src/state/intent.js';

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
      name: 'a long task makes a running primary\'s tick a no-op too',
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
        longTask: { kind: 'rejoin', startedMs: NOW - 10 },
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
    {
      name: 'after 3 failed clones in a row: wait 8 s before the next attempt',
      obs: observation({ pg: noData(), dcs: reachable({ leader: 'node2', members: [leader] }), dataTaskFailures: { count: 3, lastFailedMs: NOW - 7_999 } }),
      actions: [],
      summary: /cloning from leader node2: waiting 1 ms after 3 failed attempts/,
    },
    {
      name: 'the backoff over: clone again',
      obs: observation({ pg: noData(), dcs: reachable({ leader: 'node2', members: [leader] }), dataTaskFailures: { count: 3, lastFailedMs: NOW - 8_000 } }),
      actions: [{ kind: 'clone-from', leader: 'node2' }],
    },
    {
      name: 'the backoff never delays a decision without a data task',
      obs: observation({ pg: noData(), dcs: reachable({ leader: 'node2', members: [primaryRecord({ name: 'node2', state: 'starting' })] }), dataTaskFailures: { count: 9, lastFailedMs: NOW } }),
      actions: [],
      summary: /^waiting for leader node2 to be running$/,
    },
  ]);
});

void describe('dataTaskBackoffMs', () => {
  void it('doubles from 2 s and stops at 60 s', () => {
    assert.deepEqual([0, 1, 2, 3, 4, 5, 6, 7, 50].map(dataTaskBackoffMs), [0, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000, 60_000]);
  });
});

void describe('decide, rule C: postgres stopped', () => {
  const leaderSelf = reachable({ leader: 'node1' });
  const startPrimary: Action = { kind: 'start-postgres', mode: 'primary', upstream: null };
  const startReadOnly: Action = { kind: 'start-postgres', mode: 'standby', upstream: null };
  const reclaim: Action[] = [{ kind: 'acquire-leader' }, startPrimary];
  runTable([
    {
      name: 'leader key and live lease: start as primary',
      obs: observation({ pg: stopped(), dcs: leaderSelf, lease: { holdsLeader: true } }),
      actions: [startPrimary],
      summary: /starting postgres as leader/,
    },
    {
      name: 'leader key and live lease after a crash: restart in place',
      obs: observation({ pg: stoppedCrashedPrimary({ crashed: true }), dcs: leaderSelf, lease: { holdsLeader: true }, lastHealthyMs: NOW - 1_000 }),
      actions: [startPrimary],
      summary: /crashed: restarting in place/,
    },
    {
      name: 'crashed exactly one TTL after it was last healthy: still restarting in place',
      obs: observation({ pg: stoppedCrashedPrimary({ crashed: true }), dcs: leaderSelf, lease: { holdsLeader: true }, lastHealthyMs: NOW - TTL_MS }),
      actions: [startPrimary],
    },
    {
      name: 'crashed and down for longer than the TTL: release the lead',
      obs: observation({ pg: stoppedCrashedPrimary({ crashed: true }), dcs: leaderSelf, lease: { holdsLeader: true }, lastHealthyMs: NOW - TTL_MS - 1 }),
      actions: [{ kind: 'release-leader', reason: 'postgres could not be restarted within the TTL' }],
      summary: /stayed down longer than the TTL/,
    },
    {
      name: 'crashed but never healthy since the agent started: restart in place',
      obs: observation({ pg: stoppedCrashedPrimary({ crashed: true }), dcs: leaderSelf, lease: { holdsLeader: true }, lastHealthyMs: null }),
      actions: [startPrimary],
    },
    {
      name: 'long down but not crashed (asked to stop): start as leader',
      obs: observation({ pg: stoppedCleanPrimary(), dcs: leaderSelf, lease: { holdsLeader: true }, lastHealthyMs: NOW - 10 * TTL_MS }),
      actions: [startPrimary],
    },
    {
      name: 'leader key of a previous run and primary data (clean): adopt the key, then start as primary',
      obs: observation({ pg: stoppedCleanPrimary(), dcs: leaderSelf, lease: { holdsLeader: false } }),
      actions: [{ kind: 'adopt-leader' }, startPrimary],
      summary: /adopting it/,
    },
    {
      name: 'leader key of a previous run and primary data (not clean): adopt the key, then start as primary',
      obs: observation({ pg: stoppedCrashedPrimary(), dcs: leaderSelf, lease: { holdsLeader: false } }),
      actions: [{ kind: 'adopt-leader' }, startPrimary],
    },
    {
      name: 'leader key of a previous run but standby data: release it',
      obs: observation({ pg: stopped({ wasPrimary: false }), dcs: leaderSelf, lease: { holdsLeader: false } }),
      actions: [{ kind: 'release-stale-leader' }],
      summary: /releasing it/,
    },
    {
      name: 'another node leads: start as its standby',
      obs: observation({ pg: stopped(), dcs: reachable({ leader: 'node2', members: [primaryRecord({ name: 'node2' })] }) }),
      actions: [{ kind: 'start-postgres', mode: 'standby', upstream: 'node2' }],
    },
    {
      name: 'another node leads and this data was a primary (clean): rejoin (rewind) before following',
      obs: observation({ pg: stoppedCleanPrimary(), dcs: reachable({ leader: 'node2' }) }),
      actions: [{ kind: 'rejoin', leader: 'node2' }],
      summary: /former primary: rejoining node2/,
    },
    {
      name: 'another node leads and this data was a crashed primary: start as a standby of the leader (no rewind first)',
      obs: observation({ pg: stoppedCrashedPrimary(), dcs: reachable({ leader: 'node2', members: [primaryRecord({ name: 'node2', timeline: 2 })] }) }),
      actions: [{ kind: 'start-postgres', mode: 'standby', upstream: 'node2' }],
      summary: /starting postgres as a standby of node2/,
    },
    {
      name: 'another node leads and this data was a crashed primary: standby of the leader, even with stale memory of the key',
      obs: observation({ pg: stoppedCrashedPrimary(), dcs: reachable({ leader: 'node2' }), lease: { holdsLeader: true } }),
      actions: [{ kind: 'start-postgres', mode: 'standby', upstream: 'node2' }],
    },
    {
      name: 'another node leads and this data was a crashed primary that the agent saw crash: standby of the leader',
      obs: observation({ pg: stoppedCrashedPrimary({ crashed: true }), dcs: reachable({ leader: 'node2' }) }),
      actions: [{ kind: 'start-postgres', mode: 'standby', upstream: 'node2' }],
    },
    {
      name: 'another node leads and this data was a clean primary with stale memory of the key: rejoin',
      obs: observation({ pg: stoppedCleanPrimary(), dcs: reachable({ leader: 'node2' }), lease: { holdsLeader: true } }),
      actions: [{ kind: 'rejoin', leader: 'node2' }],
    },
    {
      name: 'no leader, fresh agent, cleanly shut down as primary: acquire the key, then start as primary',
      obs: observation({ pg: stoppedCleanPrimary(), lastHealthyMs: null, dcs: reachable({ members: [memberRecord({ name: 'node2', timeline: 1 })] }) }),
      actions: reclaim,
      summary: /shut down cleanly as primary: taking the lead/,
    },
    {
      name: 'no leader, clean primary that this agent ran (and demoted): competes like any member, read-only',
      obs: observation({ pg: stoppedCleanPrimary(), lastHealthyMs: NOW - 1_000, dcs: reachable({ members: [memberRecord({ name: 'node2', timeline: 1 })] }) }),
      actions: [startReadOnly],
      summary: /starting read-only to take part in the election/,
    },
    {
      name: 'no leader, clean primary this agent ran long ago: still not a reclaim, read-only',
      obs: observation({ pg: stoppedCleanPrimary(), lastHealthyMs: NOW - 10 * TTL_MS }),
      actions: [startReadOnly],
    },
    {
      name: 'no leader, fresh agent, clean primary, but a member is on a higher timeline: read-only, no upstream',
      obs: observation({ pg: stoppedCleanPrimary({ timeline: 1 }), lastHealthyMs: null, dcs: reachable({ members: [memberRecord({ name: 'node2', timeline: 2 })] }) }),
      actions: [startReadOnly],
    },
    {
      name: 'no leader, fresh agent, clean primary: its own record with a higher timeline does not count',
      obs: observation({ pg: stoppedCleanPrimary({ timeline: 1 }), lastHealthyMs: null, dcs: reachable({ members: [memberRecord({ name: 'node1', timeline: 3 })] }) }),
      actions: reclaim,
    },
    {
      name: 'no leader, fresh agent, clean primary, member with unknown timeline does not block',
      obs: observation({ pg: stoppedCleanPrimary({ timeline: 2 }), lastHealthyMs: null, dcs: reachable({ members: [memberRecord({ name: 'node2', timeline: null })] }) }),
      actions: reclaim,
    },
    {
      name: 'no leader, fresh agent, clean primary but tagged nofailover: read-only, no upstream',
      obs: observation({ pg: stoppedCleanPrimary(), lastHealthyMs: null, tags: { nofailover: true } }),
      actions: [startReadOnly],
    },
    {
      name: 'no leader, fresh agent, clean primary, but a live intent hands the lead to another node: read-only',
      obs: observation({ pg: stoppedCleanPrimary(), lastHealthyMs: null, dcs: reachable({ intent: intent({ from: 'node1', to: 'node2' }) }) }),
      actions: [startReadOnly],
      summary: /switchover to node2 in progress/,
    },
    {
      name: 'no leader, fresh agent, clean primary that is stepping down without a named target: read-only',
      obs: observation({ pg: stoppedCleanPrimary(), lastHealthyMs: null, dcs: reachable({ intent: intent({ from: 'node1', to: null }) }) }),
      actions: [startReadOnly],
      summary: /to another node in progress/,
    },
    {
      name: 'no leader, fresh agent, clean primary named as the intent target: reclaim',
      obs: observation({ pg: stoppedCleanPrimary(), lastHealthyMs: null, dcs: reachable({ intent: intent({ from: 'node2', to: 'node1' }) }) }),
      actions: reclaim,
    },
    {
      name: 'no leader, fresh agent, clean primary: a stale intent for another node is ignored',
      obs: observation({ pg: stoppedCleanPrimary(), lastHealthyMs: null, dcs: reachable({ intent: intent({ to: 'node2', requestedAtMs: NOW - INTENT_TIMEOUT_MS }) }) }),
      actions: reclaim,
    },
    {
      name: 'no leader, fresh agent, not a clean primary (crashed primary): start read-only for the election',
      obs: observation({ pg: stoppedCrashedPrimary(), lastHealthyMs: null }),
      actions: [startReadOnly],
      summary: /starting read-only to take part in the election/,
    },
    {
      name: 'no leader, standby data: start read-only for the election',
      obs: observation({ pg: stopped() }),
      actions: [startReadOnly],
    },
    {
      name: 'no leader, fresh agent, standby data: start read-only for the election',
      obs: observation({ pg: stopped(), lastHealthyMs: null }),
      actions: [startReadOnly],
    },
  ]);
});

void describe('decide: postgres starting', () => {
  const leaderSelf = reachable({ leader: 'node1' });
  runTable([
    {
      name: 'waits whatever etcd says',
      obs: observation({ pg: starting(), dcs: reachable({ leader: 'node2' }) }),
      actions: [],
      summary: /starting/,
    },
    {
      name: 'the leader waits up to one TTL for its postgres to come up',
      obs: observation({ pg: starting({ sinceMs: NOW - TTL_MS }), dcs: leaderSelf, lease: { holdsLeader: true } }),
      actions: [],
    },
    {
      name: 'the leader whose postgres is not up after the TTL stops it and releases the lead',
      obs: observation({ pg: starting({ sinceMs: NOW - TTL_MS - 1 }), dcs: leaderSelf, lease: { holdsLeader: true } }),
      actions: [
        { kind: 'fence', reason: 'startup took longer than the TTL' },
        { kind: 'release-leader', reason: 'postgres did not come up within the TTL' },
      ],
      summary: /did not come up within the TTL/,
    },
    {
      name: 'a slow start without the leader lease is only waited for',
      obs: observation({ pg: starting({ sinceMs: NOW - 10 * TTL_MS }), dcs: leaderSelf, lease: { holdsLeader: false } }),
      actions: [],
    },
  ]);
});

void describe('decide, rule D: postgres running', () => {
  const leaderSelf = reachable({ leader: 'node1' });
  const routine: Action[] = [{ kind: 'sync-slots' }, { kind: 'publish-leader-lsn' }];
  runTable([
    {
      name: 'leader key from a previous run: release it',
      obs: observation({ pg: runningPrimary(), dcs: leaderSelf, lease: { holdsLeader: false } }),
      actions: [{ kind: 'release-stale-leader' }],
    },
    {
      name: 'holding the key while still in recovery: promote',
      obs: observation({ pg: running({ inRecovery: true }), dcs: leaderSelf, lease: { holdsLeader: true } }),
      actions: [{ kind: 'promote' }],
    },
    {
      name: 'leading: keep slots in sync and publish the leader LSN',
      obs: observation({ pg: runningPrimary(), dcs: leaderSelf, lease: { holdsLeader: true } }),
      actions: routine,
      summary: /^leading$/,
    },
    {
      name: 'leading with a stale intent: clear it (not completed), then the routine',
      obs: observation({
        pg: runningPrimary(),
        dcs: reachable({ leader: 'node1', intent: intent({ from: 'node1', requestedAtMs: NOW - INTENT_TIMEOUT_MS }) }),
        lease: { holdsLeader: true },
      }),
      actions: [{ kind: 'clear-intent', intent: intent({ from: 'node1', requestedAtMs: NOW - INTENT_TIMEOUT_MS }), completed: false }, ...routine],
      summary: /clearing a stale switchover intent/,
    },
    {
      name: 'leading with a live intent from this node: step down',
      obs: observation({ pg: runningPrimary(), dcs: reachable({ leader: 'node1', intent: intent({ from: 'node1', to: 'node3' }) }), lease: { holdsLeader: true } }),
      actions: [{ kind: 'step-down', intent: intent({ from: 'node1', to: 'node3' }) }],
      summary: /handing the lead to node3/,
    },
    {
      name: 'leading after a failover away from another node: clear the intent as completed, then the routine',
      obs: observation({
        pg: runningPrimary(),
        dcs: reachable({ leader: 'node1', intent: intent({ kind: 'failover', from: 'node2', to: 'node1' }) }),
        lease: { holdsLeader: true },
      }),
      actions: [{ kind: 'clear-intent', intent: intent({ kind: 'failover', from: 'node2', to: 'node1' }), completed: true }, ...routine],
    },
    {
      name: 'another node leads and we are a primary: demote',
      obs: observation({ pg: runningPrimary(), dcs: reachable({ leader: 'node2' }), lease: { holdsLeader: true } }),
      actions: [{ kind: 'demote' }],
      summary: /node2 leads: demoting/,
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

void describe('decide, rule D7: a standby that cannot follow a leader on a newer timeline', () => {
  // The rows are relative to divergedAfterMs (src/ha/timing.ts) so they pin the rule, not the constant.
  const at = (loopWaitMs?: number): number => divergedAfterMs(observation(loopWaitMs === undefined ? {} : { config: { loopWaitMs } }).config);
  const DIVERGED_MS = at();
  const leaderOn = (timeline: number | null, overrides: Partial<MemberRecord> = {}): DcsView =>
    reachable({ leader: 'node2', members: [primaryRecord({ name: 'node2', timeline, ...overrides })] });
  const stuck = (
    overrides: { timeline?: number | null; since?: number | null; walReceiverStatus?: string | null; configuredUpstream?: string | null; loopWaitMs?: number; dcs?: DcsView } = {},
  ): Observation =>
    observation({
      pg: running({ timeline: 1, walReceiverStatus: overrides.walReceiverStatus === undefined ? null : overrides.walReceiverStatus }),
      dcs: overrides.dcs ?? leaderOn(overrides.timeline === undefined ? 2 : overrides.timeline),
      configuredUpstream: overrides.configuredUpstream === undefined ? 'node2' : overrides.configuredUpstream,
      notStreamingSinceMs: overrides.since === undefined ? NOW - DIVERGED_MS : overrides.since,
      ...(overrides.loopWaitMs === undefined ? {} : { config: { loopWaitMs: overrides.loopWaitMs } }),
    });
  const rejoin: Action[] = [{ kind: 'rejoin', leader: 'node2' }];
  runTable([
    {
      name: 'not streaming for exactly divergedAfterMs, leader on a higher timeline: rejoin (rewind) the leader',
      obs: stuck(),
      actions: rejoin,
      summary: new RegExp(`cannot follow node2 on timeline 2 for ${DIVERGED_MS} ms: rewinding`),
    },
    {
      name: 'not streaming for much longer, leader two timelines ahead: rejoin',
      obs: stuck({ since: NOW - 10 * DIVERGED_MS, timeline: 3 }),
      actions: rejoin,
    },
    {
      name: 'one millisecond before divergedAfterMs: not streaming yet, no action',
      obs: stuck({ since: NOW - DIVERGED_MS + 1 }),
      actions: [],
      summary: /replica of node2, not streaming yet/,
    },
    {
      name: 'just stopped streaming: no action',
      obs: stuck({ since: NOW }),
      actions: [],
      summary: /not streaming yet/,
    },
    {
      name: 'no record of when streaming stopped: no action',
      obs: stuck({ since: null }),
      actions: [],
      summary: /not streaming yet/,
    },
    {
      name: 'a long loopWaitMs lengthens the wait: just before divergedAfterMs at loopWaitMs 2900, no action',
      obs: stuck({ loopWaitMs: 2_900, since: NOW - at(2_900) + 1 }),
      actions: [],
    },
    {
      name: 'a long loopWaitMs lengthens the wait: at divergedAfterMs at loopWaitMs 2900, rejoin',
      obs: stuck({ loopWaitMs: 2_900, since: NOW - at(2_900) }),
      actions: rejoin,
    },
    {
      name: 'the leader on the same timeline: never rewound, however long (a slow or broken network, not divergence)',
      obs: stuck({ timeline: 1, since: NOW - 600_000 }),
      actions: [],
      summary: /not streaming yet/,
    },
    {
      name: 'the leader on a lower timeline than ours: no action',
      obs: observation({ pg: running({ timeline: 3, walReceiverStatus: null }), dcs: leaderOn(2), configuredUpstream: 'node2', notStreamingSinceMs: NOW - 600_000 }),
      actions: [],
    },
    {
      name: 'the leader record does not say its timeline: no action',
      obs: stuck({ timeline: null, since: NOW - 600_000 }),
      actions: [],
    },
    {
      name: 'the leader has no member record: no action',
      obs: stuck({ dcs: reachable({ leader: 'node2', members: [memberRecord({ name: 'node3', timeline: 5 })] }), since: NOW - 600_000 }),
      actions: [],
    },
    {
      name: 'the leader is not a running primary yet (still promoting, record says replica): no action',
      obs: stuck({ dcs: leaderOn(2, { role: 'replica' }), since: NOW - 600_000 }),
      actions: [],
      summary: /not streaming yet/,
    },
    {
      name: 'the leader primary is not running (starting): no action',
      obs: stuck({ dcs: leaderOn(2, { state: 'starting' }), since: NOW - 600_000 }),
      actions: [],
    },
    {
      name: 'streaming (about to cross to the new timeline): nothing to do, whatever the timelines say',
      obs: stuck({ walReceiverStatus: 'streaming', since: null }),
      actions: [],
      summary: /^streaming from node2$/,
    },
    {
      name: 'a WAL receiver that is only starting counts as not streaming',
      obs: stuck({ walReceiverStatus: 'starting' }),
      actions: rejoin,
    },
    {
      name: 'configured for another upstream: follow the leader first, even when stuck for long',
      obs: stuck({ configuredUpstream: 'node3', since: NOW - 600_000 }),
      actions: [{ kind: 'follow', upstream: 'node2' }],
    },
  ]);

  void it('divergedAfterMs waits several loops and never less than 5 s, growing with loopWaitMs', () => {
    let previous = 0;
    for (const loopWaitMs of [100, 500, 1_000, 1_666, 1_667, 2_000, 2_900, 5_000, 10_000, 30_000, 60_000]) {
      const ms = at(loopWaitMs);
      assert.ok(Number.isInteger(ms));
      assert.ok(ms >= 5_000, `at least 5 s (loopWaitMs ${loopWaitMs}: ${ms})`);
      assert.ok(ms >= 3 * loopWaitMs, `at least 3 loops: a standby reconnecting within a tick or two is never rewound (loopWaitMs ${loopWaitMs}: ${ms})`);
      assert.ok(ms >= previous, 'non-decreasing in loopWaitMs');
      previous = ms;
    }
    assert.equal(at(1_000), DIVERGED_MS, 'depends only on the config');
  });
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
      actions: [{ kind: 'demote' }],
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
      actions: [{ kind: 'demote' }],
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
      name: 'no grace for a fresh agent that has seen a leader for two loop waits since it started (the leader died)',
      obs: observation({ pg: running(), agentStartedMs: NOW - 3_000, lastLeaderSeenMs: NOW - 1_000 }),
      actions: acquireAndPromote,
    },
    {
      name: 'a leader seen only briefly after the start does not end the grace',
      obs: observation({ pg: running(), agentStartedMs: NOW - 3_000, lastLeaderSeenMs: NOW - 2_500 }),
      actions: [],
      summary: /start-up grace/,
    },
    {
      name: 'a leader seen before the lease was re-granted (etcd outage) does not end the grace',
      obs: observation({ pg: running(), agentStartedMs: NOW - 60_000, lease: { holdsLeader: false, lastRenewedMs: NOW, ttlSeconds: 6, grantedMs: NOW - 1_000 }, lastLeaderSeenMs: NOW - 2_000 }),
      actions: [],
      summary: /start-up grace/,
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
      actions: [{ kind: 'demote' }],
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
      name: 'the switchover target takes the lead even when another peer ranks higher',
      obs: observation({ pg: running({ lsn: '0/1000000' }), dcs: reachable({ members: [peer('node0', { lsn: '0/9000000' })], intent: intent({ from: 'node2', to: 'node1' }) }) }),
      actions: acquireAndPromote,
      summary: /this node is the switchover target/,
    },
    {
      name: 'a failover target takes the lead even when tagged nofailover or too far behind (operator decision)',
      obs: observation({
        pg: running({ lsn: '0/1000000' }),
        tags: { nofailover: true },
        config: { maximumLagOnFailoverBytes: 0 },
        dcs: reachable({ lastLeaderLsn: '0/9000000', intent: intent({ kind: 'failover', from: 'node2', to: 'node1' }) }),
      }),
      actions: acquireAndPromote,
      summary: /failover target/,
    },
    {
      name: 'the intent target does not wait for the start-up grace',
      obs: observation({ pg: running(), agentStartedMs: NOW, dcs: reachable({ intent: intent({ to: 'node1' }) }) }),
      actions: acquireAndPromote,
    },
    {
      name: 'a primary that is the intent target takes the key without promoting',
      obs: observation({ pg: runningPrimary(), dcs: reachable({ intent: intent({ to: 'node1' }) }) }),
      actions: [{ kind: 'acquire-leader' }],
    },
    {
      name: 'a live intent for another node: a replica waits, even as the best candidate',
      obs: observation({ pg: running({ lsn: '0/9000000' }), dcs: reachable({ members: [peer('node2', { lsn: '0/1000000' })], intent: intent({ from: 'node3', to: 'node2' }) }) }),
      actions: [],
      summary: /switchover to node2 in progress: waiting/,
    },
    {
      name: 'a live intent for another node: a primary demotes',
      obs: observation({ pg: runningPrimary(), dcs: reachable({ intent: intent({ from: 'node3', to: 'node2' }) }) }),
      actions: [{ kind: 'demote' }],
    },
    {
      name: 'the node stepping down without a named target does not take the lead back',
      obs: observation({ pg: running(), dcs: reachable({ intent: intent({ from: 'node1', to: null }) }) }),
      actions: [],
      summary: /to another node in progress: waiting/,
    },
    {
      name: 'an intent without a target from another node: ordinary election, without the start-up grace',
      obs: observation({ pg: running(), agentStartedMs: NOW, dcs: reachable({ intent: intent({ from: 'node3', to: null }) }) }),
      actions: acquireAndPromote,
    },
    {
      name: 'a stale intent for another node is ignored: ordinary election',
      obs: observation({ pg: running(), dcs: reachable({ intent: intent({ to: 'node2', requestedAtMs: NOW - INTENT_TIMEOUT_MS }) }) }),
      actions: acquireAndPromote,
    },
    {
      name: 'a stale intent naming this node gives it no privilege',
      obs: observation({ pg: running({ lsn: '0/1000000' }), dcs: reachable({ members: [peer('node2', { lsn: '0/2000000' })], intent: intent({ to: 'node1', requestedAtMs: NOW - INTENT_TIMEOUT_MS - 1 }) }) }),
      actions: [],
    },
    {
      name: 'our own (stale) member record is ignored in favour of the live observation',
      obs: observation({ pg: running({ lsn: '0/3000000' }), dcs: reachable({ members: [peer('node1', { lsn: '0/1' }), peer('node2', { lsn: '0/2000000' })] }) }),
      actions: acquireAndPromote,
    },
  ]);

  void it('a member record with a malformed LSN never reaches decide: it is dropped when read, and the election goes on', () => {
    // decide() is pure and expects validated input (the election parses LSNs exactly); the
    // protection is where etcd is read: parseMemberRecord (src/state/member-record.ts) returns null
    // for a malformed record and the loop skips it; /status/lastLsn is used only when it is an LSN
    // (src/ha/observer.ts). test/scenarios/failover.test.ts covers the loop end to end.
    const published = [peer('node0', { receiveLsn: '0/zz' }), peer('node2', { lsn: '0/2000000' }), peer('node3', { lsn: 'garbage' })].map((m) => JSON.stringify(m));
    const members = published.map(parseMemberRecord).filter((m): m is MemberRecord => m !== null);
    assert.deepEqual(members.map((m) => m.name), ['node2']);
    const obs = observation({ pg: running(), dcs: reachable({ members }) });
    assert.doesNotThrow(() => decide(obs));
    // node0 (same position as us, lower name) would have been the better candidate had its record been read.
    assert.deepEqual(decide(obs).actions, acquireAndPromote);
  });
});

void describe('decide, failsafe mode (rule A with failsafe, E0, E0b)', () => {
  const pastDeadline = { holdsLeader: true, lastRenewedMs: NOW - 5_000 };
  const allOk = { checkedAtMs: NOW - 500, holdMs: TTL_MS, reachable: ['node2', 'node3'], unreachable: [] };
  runTable([
    {
      name: 'failsafe off: past the deadline fences even with every member reachable',
      obs: observation({ dcs: unreachable(), pg: runningPrimary(), lease: pastDeadline, failsafe: allOk }),
      actions: [fence('leader lease could not be renewed before its deadline')],
    },
    {
      name: 'failsafe on, every member answered: keeps running past the lease deadline',
      obs: observation({ dcs: unreachable(), pg: runningPrimary(), lease: pastDeadline, config: { failsafe: true }, failsafe: allOk }),
      actions: [],
      summary: /failsafe: all 2 other members answered: keeping the primary for 4000 ms/,
    },
    {
      name: 'failsafe on, one member unreachable: fences',
      obs: observation({ dcs: unreachable(), pg: runningPrimary(), lease: pastDeadline, config: { failsafe: true }, failsafe: { ...allOk, reachable: ['node2'], unreachable: ['node3'] } }),
      actions: [fence('leader lease could not be renewed before its deadline (failsafe: not confirmed by node3)')],
    },
    {
      name: 'failsafe on, no check yet: fences',
      obs: observation({ dcs: unreachable(), pg: runningPrimary(), lease: pastDeadline, config: { failsafe: true }, failsafe: null }),
      actions: [fence('leader lease could not be renewed before its deadline (failsafe: no check of the members)')],
    },
    {
      name: 'failsafe on, the last all-members check is past its own deadline: fences',
      obs: observation({ dcs: unreachable(), pg: runningPrimary(), lease: pastDeadline, config: { failsafe: true }, failsafe: { ...allOk, checkedAtMs: NOW - (TTL_MS - MARGIN_MS) } }),
      actions: [fence('leader lease could not be renewed before its deadline (failsafe: the last check of the members is too old)')],
    },
    {
      name: 'failsafe on, lease gone but the check holds: keeps running (etcd came back and went again)',
      obs: observation({ dcs: unreachable(), pg: runningPrimary(), lease: { holdsLeader: false }, config: { failsafe: true }, failsafe: allOk }),
      actions: [],
      summary: /without a leader lease; failsafe/,
    },
    {
      name: 'failsafe on, before the lease deadline: lease rule as usual',
      obs: observation({ dcs: unreachable(), pg: runningPrimary(), lease: { holdsLeader: true, lastRenewedMs: NOW - 1_000 }, config: { failsafe: true }, failsafe: null }),
      actions: [],
      summary: /lease still valid/,
    },
    {
      name: 'a replica stays put whatever the failsafe',
      obs: observation({ dcs: unreachable(), pg: running(), config: { failsafe: true }, failsafe: allOk }),
      actions: [],
    },
    {
      name: 'E0: etcd back, no leader key, this primary kept running on failsafe: takes the key back first',
      obs: observation({ dcs: reachable({ members: [memberRecord({ name: 'node2', lsn: '0/3000000', tags: { priority: 100 } })] }), pg: runningPrimary(), lease: { holdsLeader: false }, config: { failsafe: true }, failsafe: allOk }),
      actions: [{ kind: 'acquire-leader' }],
      summary: /failsafe: taking the leader key back/,
    },
    {
      name: 'E0b: a replica that promised a failsafe leader stays out of the race',
      obs: observation({ dcs: reachable(), pg: running(), failsafeAck: { leader: 'node2', untilMs: NOW + 3_000 } }),
      actions: [],
      summary: /promised node2 to stay out of the race for 3000 ms/,
    },
    {
      name: 'E0b: an expired promise no longer holds a replica back',
      obs: observation({ dcs: reachable(), pg: running(), failsafeAck: { leader: 'node2', untilMs: NOW } }),
      actions: [{ kind: 'acquire-leader' }, { kind: 'promote' }],
    },
    {
      name: 'C8 is held back by a failsafe promise too',
      obs: observation({ dcs: reachable(), pg: stoppedCleanPrimary(), lastHealthyMs: null, failsafeAck: { leader: 'node2', untilMs: NOW + 3_000 } }),
      actions: [{ kind: 'start-postgres', mode: 'standby', upstream: null }],
    },
  ]);
});

void describe('decide, rule E: eligibility timeline-behind and not-streaming', () => {
  runTable([
    {
      name: 'timeline-behind: the history knows a newer timeline than this replica',
      obs: observation({ dcs: reachable({ historyTimeline: 2 }), pg: running({ timeline: 1 }) }),
      actions: [],
      summary: /not eligible \(timeline-behind\)/,
    },
    {
      name: 'timeline-behind: a member published a newer timeline',
      obs: observation({ dcs: reachable({ members: [memberRecord({ name: 'node2', role: 'stopped', state: 'stopped', timeline: 3 })] }), pg: running({ timeline: 2 }) }),
      actions: [],
      summary: /timeline-behind/,
    },
    {
      name: 'on the newest timeline: eligible',
      obs: observation({ dcs: reachable({ historyTimeline: 2 }), pg: running({ timeline: 2 }) }),
      actions: [{ kind: 'acquire-leader' }, { kind: 'promote' }],
    },
    {
      name: 'not-streaming: lost its stream more than 2 TTLs before it last saw a leader',
      obs: observation({ pg: running({ walReceiverStatus: null }), notStreamingSinceMs: NOW - 60_000, lastLeaderSeenMs: NOW - 20_000 }),
      actions: [],
      summary: /not eligible \(not-streaming\)/,
    },
    {
      name: 'a healthy replica after its leader died (stream lost one TTL before the key vanished): eligible',
      obs: observation({ pg: running({ walReceiverStatus: null }), notStreamingSinceMs: NOW - 8_000, lastLeaderSeenMs: NOW - 1_000 }),
      actions: [{ kind: 'acquire-leader' }, { kind: 'promote' }],
    },
    {
      name: 'another member published that it was not streaming: it does not outrank this node',
      obs: observation({ dcs: reachable({ members: [memberRecord({ name: 'node0', lsn: '0/4000000', streaming: false, notStreamingMs: 60_000 })] }), pg: running() }),
      actions: [{ kind: 'acquire-leader' }, { kind: 'promote' }],
    },
  ]);
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
      return starting({ sinceMs: NOW - r.int(2 * TTL_MS) });
    case 2: {
      const clean = r.bool();
      const state = clean ? 'shut down' : r.pick(['shut down in recovery', 'in production', 'in archive recovery', 'in crash recovery']);
      return stopped({
        clusterState: state,
        cleanShutdownPrimary: clean,
        wasPrimary: ['shut down', 'in production', 'in crash recovery'].includes(state),
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
  const leader = r.bool(0.35) ? null : r.bool(0.45) ? self : r.pick(NAMES);
  const members = randomMembers(r, self);
  // Often a healthy record for the leader, as in a working cluster.
  if (leader !== null && r.bool(0.5)) members.splice(0, members.length, ...members.filter((m) => m.name !== leader), primaryRecord({ name: leader, timeline: 1 + r.int(3) }));
  return reachable({
    leader,
    initialize: r.pick([null, 'pending:node2', 'pending:node1', '7712280022764410088', '7712280022764410088']),
    members,
    lastLeaderLsn: r.maybeNull(randomLsn(r), 0.4),
    intent: r.bool(0.5)
      ? null
      : intent({
          kind: r.pick(['switchover', 'failover'] as const),
          from: r.bool(0.4) ? self : r.maybeNull(r.pick(NAMES)),
          to: r.maybeNull(r.pick(NAMES), 0.4),
          requestedAtMs: NOW - r.int(2 * INTENT_TIMEOUT_MS),
        }),
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
    lastHealthyMs: r.maybeNull(NOW - r.int(2 * TTL_MS)),
    notStreamingSinceMs: r.maybeNull(NOW - r.int(4 * TTL_MS), 0.4),
  });
}

/**
 * True when what was observed, or a guard earlier in the same decision, proves this node holds
 * the leader key at index `i`. Guards: `acquire-leader` (create-if-absent on our lease) and
 * `adopt-leader` (moving a key that already names us onto our lease); the executor skips the rest
 * of the decision when a guard fails.
 */
function holdsKeyAt(obs: Observation, actions: readonly Action[], i: number): boolean {
  const heldBefore = obs.dcs.kind === 'reachable' && obs.dcs.leader === obs.node && obs.lease.holdsLeader;
  return heldBefore || actions.slice(0, i).some((a) => a.kind === 'acquire-leader' || a.kind === 'adopt-leader');
}

void describe('decide safety properties (seeded random observations)', () => {
  const SEED = 20_240_611;
  const COUNT = 1_200;
  const samples: Array<{ obs: Observation; actions: Action[] }> = [];
  const random = new Random(SEED);
  for (let i = 0; i < COUNT; i += 1) {
    const obs = randomObservation(random);
    samples.push({ obs, actions: decide(obs).actions });
  }

  void it('the generator reaches the interesting branches (the property is not vacuous)', () => {
    const kinds = new Set(samples.flatMap((s) => s.actions.map((a) => (a.kind === 'start-postgres' ? `start-${a.mode}` : a.kind))));
    for (const kind of [
      'start-primary',
      'start-standby',
      'promote',
      'acquire-leader',
      'adopt-leader',
      'fence',
      'demote',
      'follow',
      'clone-from',
      'initialize-cluster',
      'rejoin',
      'step-down',
      'clear-intent',
      'release-leader',
    ]) {
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

  void it('acquire-leader only when the key is free; adopt-leader only when it already names this node', () => {
    for (const { obs, actions } of samples) {
      if (actions.some((a) => a.kind === 'acquire-leader')) {
        assert.ok(obs.dcs.kind === 'reachable' && obs.dcs.leader === null, JSON.stringify(obs));
        // nofailover only yields to an explicit, live operator intent naming this node.
        const intent = obs.dcs.intent;
        const named = intent !== null && intent.to === obs.node && NOW - intent.requestedAtMs < INTENT_TIMEOUT_MS;
        if (!named) assert.notEqual(obs.tags.nofailover, true, JSON.stringify(obs));
      }
      if (actions.some((a) => a.kind === 'adopt-leader')) {
        assert.ok(obs.dcs.kind === 'reachable' && obs.dcs.leader === obs.node && !obs.lease.holdsLeader, JSON.stringify(obs));
      }
    }
  });

  void it('release-leader only by the node holding the key', () => {
    for (const { obs, actions } of samples) {
      if (!actions.some((a) => a.kind === 'release-leader')) continue;
      assert.ok(obs.dcs.kind === 'reachable' && obs.dcs.leader === obs.node && obs.lease.holdsLeader, JSON.stringify(obs));
    }
  });

  void it('clone-from and initialize-cluster only without data; never two role changes in one decision', () => {
    for (const { obs, actions } of samples) {
      if (actions.some((a) => a.kind === 'clone-from' || a.kind === 'initialize-cluster')) assert.equal(obs.pg.kind, 'no-data');
      const roleChanges = actions.filter(
        (a) => a.kind === 'promote' || a.kind === 'demote' || a.kind === 'fence' || a.kind === 'start-postgres' || a.kind === 'rejoin' || a.kind === 'step-down',
      );
      assert.ok(roleChanges.length <= 1, JSON.stringify(actions));
    }
  });

  void it('rejoin (pg_rewind) only of a cleanly shut-down former primary, or of a standby stuck behind a leader on a newer timeline (D7)', () => {
    let fromStopped = 0;
    let fromRunning = 0;
    for (const { obs, actions } of samples) {
      const rejoin = actions.find((a) => a.kind === 'rejoin');
      if (rejoin === undefined) continue;
      const dcs = obs.dcs;
      assert.ok(dcs.kind === 'reachable' && dcs.leader !== null && dcs.leader !== obs.node && rejoin.leader === dcs.leader, JSON.stringify({ obs, actions }));
      if (obs.pg.kind === 'stopped') {
        fromStopped += 1;
        // A crashed former primary is never handed to pg_rewind directly (its crash recovery would
        // write a checkpoint past the fork point): it starts as a standby of the leader instead.
        assert.ok(obs.pg.wasPrimary && obs.pg.cleanShutdownPrimary, JSON.stringify({ obs, actions }));
        continue;
      }
      fromRunning += 1;
      assert.ok(obs.pg.kind === 'running' && obs.pg.inRecovery && obs.pg.walReceiverStatus !== 'streaming', `never rewinds a primary or a streaming standby: ${JSON.stringify({ obs, actions })}`);
      const leader = dcs.members.find((m) => m.name === dcs.leader);
      assert.ok(leader !== undefined && leader.role === 'primary' && leader.state === 'running', `the leader is a running primary: ${JSON.stringify({ obs, actions })}`);
      assert.ok(leader.timeline !== null && leader.timeline > obs.pg.timeline, JSON.stringify({ obs, actions }));
      assert.ok(obs.notStreamingSinceMs !== null && obs.nowMs - obs.notStreamingSinceMs >= divergedAfterMs(obs.config), JSON.stringify({ obs, actions }));
      assert.equal(obs.configuredUpstream, dcs.leader);
    }
    assert.ok(fromStopped > 0 && fromRunning > 0, `both kinds of rejoin are sampled (stopped ${fromStopped}, running ${fromRunning})`);
  });

  void it('a crashed former primary with another leader starts as that leader\'s standby', () => {
    let seen = 0;
    for (const { obs, actions } of samples) {
      const dcs = obs.dcs;
      if (dcs.kind !== 'reachable' || obs.longTask !== null || obs.pg.kind !== 'stopped') continue;
      if (dcs.leader === null || dcs.leader === obs.node || !obs.pg.wasPrimary || obs.pg.cleanShutdownPrimary) continue;
      seen += 1;
      assert.deepEqual(actions, [{ kind: 'start-postgres', mode: 'standby', upstream: dcs.leader }], JSON.stringify(obs));
    }
    assert.ok(seen > 0, 'sampled');
  });

  void it('is deterministic: the same observation always gives the same decision', () => {
    for (const { obs } of samples.slice(0, 100)) assert.deepEqual(decide(obs), decide(structuredClone(obs)));
  });
});
