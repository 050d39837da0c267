/**
 * Which leader key the HA loop believes (pure; rules L1-L3 in docs/ha-loop.md). Every agent writes
 * the leader key with create-if-absent (or compare-and-set) on its own lease, and publishes its
 * member record on the same lease every tick, so a genuine leader key always has a lease and
 * names a node with a member record. A key without a lease (written by hand, or by anyone who can
 * write etcd) or naming a node that has no record cannot be a leader's: believing it would make
 * the healthy primary demote (D4) while nobody leads.
 *
 * Invariants: (1) an untrusted key never changes a role by itself: `leader` is then the last
 * trusted leader, while its record still says it runs as primary, so the replicas keep following
 * it and that leader reclaims the key (L1); (2) a key naming a node without a record may be a
 * genuine leader that has not published yet (it took the key earlier in the same tick): it is
 * only *unconfirmed* for one TTL, during which nobody may replace it; after that, and at once for
 * a key without a lease, it is *ignored*: a candidate may replace exactly that value by
 * compare-and-set (`acquire-leader` with `replacing`), so two candidates can never both win.
 */
import type { MemberRecord } from '../state/member-record.js';
import type { UntrustedLeader } from '../state/dcs-view.js';
import { unconfirmedLeaderMs } from './timing.js';

export interface LeaderKeyInput {
  self: string;
  /** The leader key's value and lease as read (null: no key). */
  key: { value: string; leaseId: string | null } | null;
  /** Member records this agent trusts (src/ha/member-trust.ts). */
  members: readonly MemberRecord[];
  /** The last leader key this agent trusted (null: none yet). */
  lastTrustedLeader: string | null;
  /** Since when this same untrusted key (value and lease) has been seen (null: first time now). */
  untrustedSinceMs: number | null;
  nowMs: number;
  ttlSeconds: number;
}

export interface LeaderAssessment {
  /** The leader the rules act on (the key's value when trusted). */
  leader: string | null;
  untrusted: UntrustedLeader | null;
}

export function assessLeaderKey(input: LeaderKeyInput): LeaderAssessment {
  const { key } = input;
  if (key === null) return { leader: null, untrusted: null };
  // A key naming this node is judged by the rules that know this agent's own lease (C3, C4, D1).
  if (key.value === input.self) return { leader: key.value, untrusted: null };
  const record = input.members.find((m) => m.name === key.value);
  if (key.leaseId !== null && record !== undefined) return { leader: key.value, untrusted: null };
  const untrusted: UntrustedLeader =
    key.leaseId === null
      ? { value: key.value, reason: 'the leader key has no lease', ignored: true }
      : {
          value: key.value,
          reason: `the leader key names ${key.value}, which has no member record`,
          ignored: input.untrustedSinceMs !== null && input.nowMs - input.untrustedSinceMs >= unconfirmedLeaderMs(input.ttlSeconds),
        };
  const last = input.lastTrustedLeader;
  const lastRecord = last === null || last === key.value ? undefined : input.members.find((m) => m.name === last);
  const stillLeading = lastRecord !== undefined && lastRecord.role === 'primary' && lastRecord.state === 'running';
  return { leader: stillLeading ? last : null, untrusted };
}
