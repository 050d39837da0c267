/**
 * Where the proxy ports send a new connection, decided purely from the agent's latest view of
 * the cluster in etcd:
 * - leader port: the leader's postgres once its member record says it runs as primary; `hold`
 *   while a switchover/failover intent is live (the hand-over is under way), while there is no
 *   leader, or while the new leader is still promoting;
 * - replica port: a streaming replica of the current leader within the failover lag limit and not
 *   tagged `noloadbalance`, round-robin; the leader when there is none.
 */
import type { DcsView } from '../state/dcs-view.js';
import type { MemberRecord } from '../state/member-record.js';
import { liveIntent } from '../state/intent.js';
import { lsnDiffBytes } from '../shared/lsn.js';
import type { RouteDecision } from './tcp-router.js';

type Reachable = Extract<DcsView, { kind: 'reachable' }>;

function routeTo(member: MemberRecord): RouteDecision {
  return { kind: 'route', host: member.host, port: member.port, name: member.name };
}

export function leaderRoute(view: Reachable | null, nowMs: number): RouteDecision {
  if (view === null) return { kind: 'hold', reason: 'no view of the cluster yet' };
  const intent = liveIntent(view.intent, nowMs);
  if (intent !== null) return { kind: 'hold', reason: `${intent.kind} in progress` };
  if (view.leader === null) return { kind: 'hold', reason: 'no leader' };
  const leader = view.members.find((m) => m.name === view.leader);
  if (leader === undefined || leader.role !== 'primary' || leader.state !== 'running') return { kind: 'hold', reason: `leader ${view.leader} not ready` };
  return routeTo(leader);
}

/** Streaming replicas of the current leader that may serve reads, in name order. */
export function readableReplicas(view: Reachable, maxLagBytes: number): MemberRecord[] {
  const leader = view.members.find((m) => m.name === view.leader && m.role === 'primary');
  if (leader === undefined) return [];
  return view.members
    .filter((m) => m.role === 'replica' && m.streaming && m.following === leader.name && m.tags.noloadbalance !== true)
    .filter((m) => {
      const entry = leader.replication.find((r) => r.applicationName === m.name);
      const lag = entry?.lagBytes ?? (leader.lsn !== null && m.lsn !== null ? lsnDiffBytes(leader.lsn, m.lsn) : null);
      return lag !== null && lag <= maxLagBytes;
    })
    .sort((a, b) => (a.name < b.name ? -1 : 1));
}

export function replicaRoute(view: Reachable | null, nowMs: number, maxLagBytes: number, turn: number): RouteDecision {
  if (view === null) return { kind: 'hold', reason: 'no view of the cluster yet' };
  const replicas = readableReplicas(view, maxLagBytes);
  const pick = replicas[turn % Math.max(1, replicas.length)];
  return pick === undefined ? leaderRoute(view, nowMs) : routeTo(pick);
}

/** Every member the view knows, as a server address (what the data plane's slots point at). */
export function knownTargets(view: Reachable | null): Array<{ name: string; host: string; port: number }> {
  if (view === null) return [];
  return view.members.map((m) => ({ name: m.name, host: m.host, port: m.port })).sort((a, b) => (a.name < b.name ? -1 : 1));
}

/**
 * The same rules as `leaderRoute` / `replicaRoute`, as sets for a load balancer: the members that
 * may take new connections on each port now. An empty set means hold.
 */
export function desiredRoutes(
  view: Reachable | null,
  nowMs: number,
  maxLagBytes: number,
): { leader: Array<{ name: string; host: string; port: number }>; replica: Array<{ name: string; host: string; port: number }> } {
  const leader = leaderRoute(view, nowMs);
  const leaderSet = leader.kind === 'route' ? [{ name: leader.name, host: leader.host, port: leader.port }] : [];
  if (view === null) return { leader: leaderSet, replica: leaderSet };
  const replicas = readableReplicas(view, maxLagBytes).map((m) => ({ name: m.name, host: m.host, port: m.port }));
  return { leader: leaderSet, replica: replicas.length > 0 ? replicas : leaderSet };
}

/**
 * True when a member record written to etcd changes what routing would decide (role, state,
 * streaming, upstream), as opposed to the per-tick LSN refresh: worth re-reading the view at once.
 */
export function changesRouting(before: MemberRecord | undefined, after: MemberRecord | null): boolean {
  if (after === null || before === undefined) return true;
  return before.role !== after.role || before.state !== after.state || before.streaming !== after.streaming || before.following !== after.following;
}
