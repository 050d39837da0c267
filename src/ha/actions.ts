/**
 * What `decide` can ask the executor to do. Actions in one decision run in order; when one
 * fails (or a guard such as `acquire-leader` loses its race) the rest of that decision is
 * skipped and the loop ticks again at once with a fresh observation.
 */
import type { FailoverIntent } from '../state/intent.js';

export type Action =
  /** Claim the initialize key, initdb, start as primary, create roles, take the leader key. */
  | { kind: 'initialize-cluster' }
  /** pg_basebackup from the leader and start as its standby. */
  | { kind: 'clone-from'; leader: string }
  | { kind: 'start-postgres'; mode: 'primary' | 'standby'; upstream: string | null }
  /**
   * Create the leader key on our lease; a guard: losing the race skips the rest. With `replacing`:
   * the key holds that ignored value (rules L1, L3): compare-and-set exactly that value instead.
   */
  | { kind: 'acquire-leader'; replacing?: string }
  /**
   * Move a leader key naming this node, left on the lease of a previous run of this agent (agent
   * restarted, machine rebooted), onto our current lease. Safe: while the key names us nobody
   * else can lead. A guard: failing skips the rest.
   */
  | { kind: 'adopt-leader' }
  /** Delete a leader key naming this node that a previous run of this agent left on its lease. */
  | { kind: 'release-stale-leader' }
  | { kind: 'promote' }
  /** Point primary_conninfo at `upstream` and reload (no restart on PG 15). */
  | { kind: 'follow'; upstream: string | null }
  /** Stop postgres immediately: we may be a primary without a valid lease. */
  | { kind: 'fence'; reason: string }
  /** Stop a primary that must not lead (fast shutdown); the next tick rejoins it as a standby. */
  | { kind: 'demote' }
  /** Former primary: pg_rewind from `leader` (re-clone if rewind is impossible), start as its standby. */
  | { kind: 'rejoin'; leader: string }
  /**
   * A standby that can never catch up by streaming (the WAL it needs is gone from the leader, e.g.
   * its slot was invalidated by max_slot_wal_keep_size): move its data aside; it then clones anew.
   */
  | { kind: 'reclone'; leader: string; reason: string }
  /** Planned hand-over of the lead for the intent: checkpoint, stop, wait for the target, release the key. */
  | { kind: 'step-down'; intent: FailoverIntent }
  /** Delete the operator intent once it is carried out or stale. */
  | { kind: 'clear-intent'; intent: FailoverIntent; completed: boolean }
  /** Delete our own leader key (postgres could not be brought back in time). */
  | { kind: 'release-leader'; reason: string }
  /** Restart postgres in its current role (operator request); the lead, if held, is kept. */
  | { kind: 'restart-postgres' }
  /** Leader only: a physical replication slot for every other member. */
  | { kind: 'sync-slots' }
  /** Leader only: record our WAL position under /status/lastLsn. */
  | { kind: 'publish-leader-lsn' }
  /**
   * Leader only (sync mode): `synchronous_standby_names = ANY quorum (names)` ('' when names is
   * empty) with ALTER SYSTEM + reload. decide orders it against `publish-sync-set` (src/ha/sync-set.ts).
   */
  | { kind: 'set-sync-standbys'; names: string[]; quorum: number }
  /**
   * Leader only (sync mode): write /sync = { leader: self, members, quorum }, compare-and-set on the
   * value this tick observed (`expected`, null: absent), so a stale leader cannot overwrite a newer set.
   */
  | { kind: 'publish-sync-set'; members: string[]; quorum: number; expected: string | null };

export type ActionKind = Action['kind'];

export interface Decision {
  actions: Action[];
  /** One human line explaining the decision, logged once per tick. */
  summary: string;
}
