/**
 * What etcd said in one tick, as the HA loop gathered it (src/ha/observer.ts) and as the built-in
 * proxy routes on it (src/proxy/routes.ts): the leader, the member records, the operator's
 * intent, the history timeline and the published sync set, or that etcd could not be reached.
 * Pure data: every field is a parsed etcd record (src/state/), never a live handle.
 */
import type { MemberRecord } from './member-record.js';
import type { FailoverIntent } from './intent.js';
import type { SyncSet } from './sync-record.js';

/** A leader key the loop does not believe (src/ha/leader-trust.ts decides which). */
export interface UntrustedLeader {
  value: string;
  reason: string;
  /** True: may be replaced (compare-and-set on `value`); false: unconfirmed, wait. */
  ignored: boolean;
}

export type DcsView =
  | {
      kind: 'reachable';
      /** The leader the rules act on: the leader key's value, unless that key is untrusted (then see `untrustedLeader`). */
      leader: string | null;
      /**
       * A leader key the loop does not believe (no lease, or naming a node without a member
       * record; src/ha/leader-trust.ts). `leader` is then the last trusted leader still running as
       * primary, or null. Absent/null: the key (if any) is trusted.
       */
      untrustedLeader?: UntrustedLeader | null;
      /** null: nobody initialized yet; `pending:<node>` while <node> runs initdb; else the system identifier. */
      initialize: string | null;
      members: readonly MemberRecord[];
      /** The leader's last published WAL position (survives the leader), for the failover lag limit. */
      lastLeaderLsn: string | null;
      /** The operator's switchover/failover intent, live or stale (decide checks its age). */
      intent: FailoverIntent | null;
      /** The timeline of the last promotion in the history key (eligibility: `timeline-behind`); absent/null: unknown. */
      historyTimeline?: number | null;
      /** The published synchronous set under /sync (sync mode, src/ha/sync-set.ts); absent/null: none. */
      sync?: PublishedSync | null;
    }
  | { kind: 'unreachable'; error: string };

/** /sync as read: the raw value (the leader replaces it by compare-and-set) and its parse (null: malformed). */
export interface PublishedSync {
  raw: string;
  set: SyncSet | null;
}

