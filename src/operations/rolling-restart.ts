/**
 * A rolling restart of postgres on any ClusterHandle: replicas first, one at a time, each waited
 * for until it streams again; then a planned switchover to a replica; then the former leader.
 * Clients see one switchover, never a cluster without a primary. `restartMember` restarts one
 * node in its current role. Only authenticated restart requests go to the agents' REST APIs
 * (POST /restart); the agents do the work. Every wait is bounded by `timeoutSeconds`.
 */
import type { ClusterHandle } from '../cluster/cluster-handle.js';
import type { ClusterStatus, MemberStatus } from './cluster-status.js';
import type { OperationDeps } from './operation-deps.js';
import { switchover } from './switchover.js';
import { PgpilotError } from '../shared/errors.js';
import type { HttpsResponse } from '../shared/https-client.js';

async function requestRestart(handle: ClusterHandle, member: MemberStatus): Promise<void> {
  let response: HttpsResponse;
  try {
    response = await handle.callAgent(member.name, '/restart', { method: 'POST', timeoutMs: 5_000 });
  } catch (error) {
    if (error instanceof PgpilotError) throw error;
    throw new PgpilotError('COMMAND_FAILED', `the agent of ${member.name} did not answer at ${member.apiUrl}`, {
      hint: 'check that the node is running (pgpilot status)',
      cause: error,
    });
  }
  if (response.status !== 202) throw new PgpilotError('COMMAND_FAILED', `the agent of ${member.name} refused the restart (HTTP ${response.status})`);
}

/** Restarts one member and waits until it runs again in the same role (a replica: streaming). */
export async function restartMember(handle: ClusterHandle, member: MemberStatus, timeoutSeconds: number, deps: OperationDeps): Promise<ClusterStatus> {
  deps.progress(`${member.name}: restarting (${member.role})`);
  await requestRestart(handle, member);
  const deadlineMs = deps.clock.nowMs() + timeoutSeconds * 1000;
  for (;;) {
    const status = await handle.status();
    const now = status.members.find((m) => m.name === member.name);
    const back =
      now !== undefined &&
      now.postgresPid !== null &&
      now.postgresPid !== member.postgresPid &&
      (member.role === 'primary' ? now.role === 'primary' : now.role === 'replica' && now.streaming);
    if (back) {
      deps.progress(`${member.name}: back (${now.role}${now.streaming ? ', streaming' : ''})`);
      return status;
    }
    if (deps.clock.nowMs() >= deadlineMs) {
      throw new PgpilotError('TIMEOUT', `${member.name} did not come back within ${timeoutSeconds} s`, {
        hint: `read ${member.name}'s postgres.log and agent.log; pgpilot events ${handle.name}`,
        retryable: true,
      });
    }
    await deps.clock.sleep(200);
  }
}

function noLeader(handle: ClusterHandle): PgpilotError {
  return new PgpilotError('CLUSTER_NOT_RUNNING', `cluster ${handle.name} has no leader`, {
    hint: handle.kind === 'local' ? `start it with: pgpilot start ${handle.name}` : `check pgpilot status ${handle.name} and the hosts (systemctl status pgpilot@${handle.name})`,
  });
}

/** Restarts `node` in its current role; INPUT_INVALID when it does not run, NODE_NOT_FOUND when unknown. */
export async function restartOneNode(handle: ClusterHandle, node: string, timeoutSeconds: number, deps: OperationDeps): Promise<ClusterStatus> {
  const status = await handle.status();
  if (status.leader === null) throw noLeader(handle);
  const member = status.members.find((m) => m.name === node);
  if (member === undefined) {
    throw new PgpilotError('NODE_NOT_FOUND', `no node ${node} in cluster ${handle.name}`, { hint: `nodes: ${status.members.map((m) => m.name).join(', ')}`, exitCode: 2 });
  }
  if (member.role !== 'primary' && member.role !== 'replica') {
    throw new PgpilotError('INPUT_INVALID', `${member.name} is not running (${member.role})`, { hint: `pgpilot status ${handle.name} shows why`, exitCode: 2 });
  }
  return restartMember(handle, member, timeoutSeconds, deps);
}

/** The whole cluster, replicas first, then a switchover, then the former leader; the final status. */
export async function rollingRestart(handle: ClusterHandle, timeoutSeconds: number, deps: OperationDeps): Promise<ClusterStatus> {
  let status = await handle.status();
  if (status.leader === null) throw noLeader(handle);
  const oldLeader = status.leader;
  const replicas = status.members.filter((m) => m.role === 'replica');
  for (const replica of replicas) status = await restartMember(handle, replica, timeoutSeconds, deps);
  const leader = status.members.find((m) => m.name === oldLeader);
  if (leader === undefined) throw new PgpilotError('INTERNAL', `leader ${oldLeader} vanished from the status`);
  if (replicas.length === 0) {
    deps.progress('single node: the leader restarts in place (a short outage)');
    await restartMember(handle, leader, timeoutSeconds, deps);
  } else {
    await switchover(handle, { kind: 'switchover', yes: false, timeoutSeconds }, deps);
    status = await handle.status();
    const former = status.members.find((m) => m.name === oldLeader);
    if (former !== undefined && former.role === 'replica') await restartMember(handle, former, timeoutSeconds, deps);
  }
  return handle.status();
}
