/**
 * Failsafe mode (dynamic config `failsafe: true`, off by default): when etcd cannot be reached, a
 * leader that can still reach *every* member it last saw in etcd over their REST APIs, and gets
 * from each a promise not to race for the leader key, keeps running as primary past its lease
 * deadline instead of fencing. This module holds the pure parts: the shapes exchanged, the
 * member's answer, and the `PeerProbe` port the loop asks (fake: test/scenarios/sim-cluster.ts;
 * real: src/agent/http-peer-probe.ts, `POST /failsafe`).
 *
 * Why it is safe (docs/ha-loop.md, "Failsafe mode"):
 * 1. A check counts from the moment it *started* (`checkedAtMs`), and it permits the leader to run
 *    until `checkedAtMs + holdMs - margin` (the same arithmetic as the lease deadline).
 * 2. A member that accepts promises, on its own clock, not to take the leader key (not to race,
 *    not to reclaim it with C8) until `its receipt + holdMs`: always later than the leader's
 *    permission from that check, because the receipt comes after the check started.
 * 3. The leader runs checks only while its current permission (lease deadline, then the last
 *    all-members check) is still valid, with a probe timeout below the fence margin, so each
 *    member's promises overlap without a gap: at no moment can a member race while the leader
 *    still has permission to write. The first check completes before the lease deadline, hence
 *    before the leader key can expire in etcd, so no member can have raced before promising.
 * 4. One member that does not answer, answers late, or refuses (it sees another leader, or is a
 *    primary itself) voids the check: past its lease deadline the leader fences as without failsafe.
 * 5. When etcd comes back the leader's lease has usually expired: it takes the key again at once
 *    (rule E0) while the members' promises still keep them out of the race.
 * A member whose agent restarts forgets its promise; its start-up grace (one TTL, rule E4) covers
 * the same window, and if it does not answer the next check the leader fences.
 */

/** What a failsafe leader asks each member. */
export interface FailsafeRequest {
  /** The asking leader. */
  leader: string;
  /** How long the leader may keep running from the start of this check (its lease TTL, ms). */
  holdMs: number;
}

export interface FailsafeAnswer {
  node: string;
  accepted: boolean;
  /** The leader this member last saw in etcd (null: none, or never). */
  leader: string | null;
  /** Why the member refused; null when it accepted. */
  reason: string | null;
}

/** The result of one all-members check, as the leader keeps it (agent memory) and decide reads it. */
export interface FailsafeCheck {
  /** When the check started (agent clock): the permission counts from here. */
  checkedAtMs: number;
  holdMs: number;
  /** Members that accepted. */
  reachable: string[];
  /** Members that did not answer in time, or refused (with the reason). */
  unreachable: string[];
}

/** A member's promise to a failsafe leader: no leader race until `untilMs` (its own clock). */
export interface FailsafeAck {
  leader: string;
  untilMs: number;
}

/** A member's REST API as the failsafe check sees it. */
export interface FailsafePeer {
  name: string;
  apiUrl: string;
}

/**
 * Asks one member to accept a failsafe leader. Resolves with its answer; rejects (or resolves
 * `accepted: false`) when it cannot be reached within `timeoutMs`.
 */
export interface PeerProbe {
  check(peer: FailsafePeer, request: FailsafeRequest, timeoutMs: number): Promise<FailsafeAnswer>;
}

export interface FailsafeMemberState {
  node: string;
  nowMs: number;
  /** This node holds the leader key, or runs postgres as a writable primary. */
  isLeaderOrPrimary: boolean;
  /** The leader key this node last read in etcd (null: none; undefined: never read it). */
  viewLeader: string | null | undefined;
  /** An earlier promise, kept if it lasts longer. */
  ack: FailsafeAck | null;
}

/**
 * A member's answer to a failsafe leader (pure). It accepts only if it is no leader itself and
 * the last leader it saw in etcd is that node or nobody; accepting records the promise, which
 * the caller must store *before* sending the answer.
 */
export function answerFailsafe(request: FailsafeRequest, state: FailsafeMemberState): { answer: FailsafeAnswer; ack: FailsafeAck | null } {
  const leader = state.viewLeader ?? null;
  const refuse = (reason: string) => ({ answer: { node: state.node, accepted: false, leader, reason }, ack: state.ack });
  if (request.leader === state.node) return refuse('a failsafe check addressed to the leader itself');
  if (state.isLeaderOrPrimary) return refuse('this node holds the leader key or runs as primary');
  if (leader !== null && leader !== request.leader) return refuse(`this node sees ${leader} as the leader`);
  if (state.ack !== null && state.ack.leader !== request.leader && state.ack.untilMs > state.nowMs) {
    return refuse(`this node promised ${state.ack.leader} to stay out of the race`);
  }
  const untilMs = Math.max(state.nowMs + request.holdMs, state.ack?.leader === request.leader ? state.ack.untilMs : 0);
  return { answer: { node: state.node, accepted: true, leader, reason: null }, ack: { leader: request.leader, untilMs } };
}

/** True while a member's promise keeps it out of the leader race. */
export function failsafeAckActive(ack: FailsafeAck | null | undefined, nowMs: number): ack is FailsafeAck {
  return ack !== null && ack !== undefined && nowMs < ack.untilMs;
}
