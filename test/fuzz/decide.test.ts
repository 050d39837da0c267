/**
 * Properties of `decide()` over random observations (test/builders): it never throws; postgres
 * is started writable or promoted only by a node that holds the leader key or takes it in the same
 * decision (safety invariant 1); a node takes a free key in an election only when it is eligible
 * (never `nofailover`, never on a timeline behind the highest known), unless a live operator intent
 * names it; and an untrusted leader key never makes a primary demote (rules L1-L2).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { decide } from '../../src/ha/decide.js';
import { liveIntent } from '../../src/state/intent.js';
import type { Observation } from '../../src/ha/observation.js';
import { DEFAULT_NOW_MS, intent, memberRecord, noData, observation, reachable, running, starting, stopped, unreachable } from '../builders/observation-builder.js';
import { fuzzParams } from './fuzz-settings.js';

const NODES = ['node1', 'node2', 'node3'] as const;
const lsn = fc.integer({ min: 0, max: 0xffff }).map((n) => `0/${(0x3000000 + n * 16).toString(16).toUpperCase()}`);
const timeline = fc.integer({ min: 1, max: 4 });

const pgState = fc.oneof(
  fc.constant(noData()),
  fc.record({ inRecovery: fc.boolean(), timeline, lsn, walReceiverStatus: fc.constantFrom('streaming', null, 'stopping') }).map((o) => running(o)),
  fc.record({ wasPrimary: fc.boolean(), cleanShutdownPrimary: fc.boolean(), crashed: fc.boolean(), timeline, lsn }).map((o) => stopped(o)),
  fc.constant(starting({ sinceMs: DEFAULT_NOW_MS - 10_000 })),
);

const member = fc
  .record({ name: fc.constantFrom(...NODES), role: fc.constantFrom('primary', 'replica', 'stopped', 'unknown'), timeline, lsn, nofailover: fc.boolean() })
  .map((o) => memberRecord({ name: o.name, role: o.role, timeline: o.timeline, lsn: o.lsn, tags: o.nofailover ? { nofailover: true } : {} }));

const untrusted = fc.option(fc.record({ value: fc.constantFrom('ghost', 'node9'), reason: fc.constant('fuzz'), ignored: fc.boolean() }), { nil: null });

const obsArb: fc.Arbitrary<Observation> = fc
  .record({
    node: fc.constantFrom(...NODES),
    pg: pgState,
    reachableDcs: fc.boolean(),
    leader: fc.option(fc.constantFrom(...NODES), { nil: null }),
    members: fc.uniqueArray(member, { selector: (m) => m.name, maxLength: 3 }),
    holdsLeader: fc.boolean(),
    renewedAgoMs: fc.integer({ min: 0, max: 20_000 }),
    intentTo: fc.option(fc.option(fc.constantFrom(...NODES), { nil: null }), { nil: undefined }),
    intentAgeMs: fc.integer({ min: 0, max: 120_000 }),
    nofailover: fc.boolean(),
    historyTimeline: fc.option(timeline, { nil: null }),
    untrustedLeader: untrusted,
    lastLeaderLsn: fc.option(lsn, { nil: null }),
  })
  .map((o) =>
    observation({
      node: o.node,
      pg: o.pg,
      tags: o.nofailover ? { nofailover: true } : {},
      lease: { holdsLeader: o.holdsLeader, lastRenewedMs: DEFAULT_NOW_MS - o.renewedAgoMs },
      lastLeaderSeenMs: DEFAULT_NOW_MS - 60_000,
      dcs: o.reachableDcs
        ? reachable({
            leader: o.leader,
            members: o.members,
            historyTimeline: o.historyTimeline,
            untrustedLeader: o.untrustedLeader,
            lastLeaderLsn: o.lastLeaderLsn,
            intent: o.intentTo === undefined ? null : intent({ to: o.intentTo, from: 'node1', requestedAtMs: DEFAULT_NOW_MS - o.intentAgeMs }),
          })
        : unreachable(),
    }),
  );

void describe('fuzz: decide', () => {
  void it('never throws; writable only with the leader key; elections only take eligible nodes; untrusted keys never demote', () => {
    fc.assert(
      fc.property(obsArb, (obs) => {
        const d = decide(obs);
        const kinds = d.actions.map((a) => a.kind);
        const takesKey = kinds.includes('acquire-leader') || kinds.includes('adopt-leader');
        const holds = obs.lease.holdsLeader && obs.dcs.kind === 'reachable' && obs.dcs.leader === obs.node;
        const writable = d.actions.some((a) => a.kind === 'promote' || (a.kind === 'start-postgres' && a.mode === 'primary'));
        assert.ok(!writable || takesKey || holds, `writable without the key: ${d.summary}`);
        if (obs.dcs.kind !== 'reachable') {
          assert.ok(!takesKey && !writable, `no role change without etcd: ${d.summary}`);
          return;
        }
        const dcs = obs.dcs;
        const named = liveIntent(dcs.intent, obs.nowMs)?.to === obs.node;
        if (kinds.includes('acquire-leader') && obs.pg.kind === 'running' && obs.pg.inRecovery && !named) {
          assert.notEqual(obs.tags.nofailover, true, `nofailover took the lead: ${d.summary}`);
          const highest = Math.max(dcs.historyTimeline ?? 0, ...dcs.members.map((m) => m.timeline ?? 0));
          assert.ok(obs.pg.timeline >= highest, `timeline-behind took the lead: ${d.summary}`);
        }
        if ((dcs.untrustedLeader ?? null) !== null && obs.pg.kind === 'running' && !obs.pg.inRecovery && dcs.leader === obs.node) {
          assert.ok(!kinds.includes('demote') && !kinds.includes('fence'), `an untrusted key demoted the primary: ${d.summary}`);
        }
        // An ignored key is replaced only by compare-and-set on exactly its value.
        for (const a of d.actions) {
          if (a.kind === 'acquire-leader' && a.replacing !== undefined) assert.equal(a.replacing, dcs.untrustedLeader?.value);
        }
      }),
      fuzzParams(5),
    );
  });
});
