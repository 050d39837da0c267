/**
 * `pgpilot restart NAME [--node NODE]`: a rolling restart of postgres. Replicas first, one at a
 * time, each waited for until it streams again; then a planned switchover to a replica; then the
 * former leader. Clients see one switchover, never a cluster without a primary. With --node, only
 * that node restarts in its current role. The CLI only sends authenticated restart requests to the
 * agents' REST APIs and waits; the agents do the work.
 */
import { callAgent, type AgentAuth } from '../../api/agent-client.js';
import type { HttpsResponse } from '../../shared/https-client.js';
import { clusterCaPem } from '../../providers/local/local-tls.js';
import { clusterStatus, validateClusterName, type ProviderDeps } from '../../providers/local/local-provider.js';
import type { ClusterStatus, MemberStatus } from '../../providers/local/cluster-status.js';
import { readManifest, readSecrets } from '../../providers/local/cluster-store.js';
import { PgpilotError } from '../../shared/errors.js';
import type { Output } from '../output.js';
import * as switchover from './switchover.js';

export interface RestartOptions {
  home: string;
  name: string;
  node?: string;
  timeoutSeconds: number;
}

async function requestRestart(member: MemberStatus, auth: AgentAuth): Promise<void> {
  let response: HttpsResponse;
  try {
    response = await callAgent(member.apiUrl, '/restart', { method: 'POST', token: auth.token, ca: auth.ca, timeoutMs: 5_000 });
  } catch (error) {
    throw new PgpilotError('COMMAND_FAILED', `the agent of ${member.name} did not answer at ${member.apiUrl}`, {
      hint: 'check that the node is running (pgpilot status)',
      cause: error,
    });
  }
  if (response.status !== 202) throw new PgpilotError('COMMAND_FAILED', `the agent of ${member.name} refused the restart (HTTP ${response.status})`);
}

/** Restarts one member and waits until it runs again in the same role (a replica: streaming). */
export async function restartMember(options: Pick<RestartOptions, 'home' | 'name' | 'timeoutSeconds'>, deps: ProviderDeps, member: MemberStatus, auth: AgentAuth): Promise<ClusterStatus> {
  deps.progress(`${member.name}: restarting (${member.role})`);
  await requestRestart(member, auth);
  const deadlineMs = deps.clock.nowMs() + options.timeoutSeconds * 1000;
  for (;;) {
    const status = await clusterStatus(options.home, options.name);
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
      throw new PgpilotError('TIMEOUT', `${member.name} did not come back within ${options.timeoutSeconds} s`, {
        hint: `read ${member.name}'s postgres.log and agent.log; pgpilot events ${options.name}`,
        retryable: true,
      });
    }
    await deps.clock.sleep(200);
  }
}

export async function run(options: RestartOptions, deps: ProviderDeps, output: Output): Promise<number> {
  const name = validateClusterName(options.name);
  const manifest = await readManifest(options.home, name);
  const token: AgentAuth = { token: readSecrets(manifest.secretsFile).apiToken, ca: clusterCaPem(manifest) };
  let status = await clusterStatus(options.home, name);
  if (status.leader === null) {
    throw new PgpilotError('CLUSTER_NOT_RUNNING', `cluster ${name} has no leader`, { hint: `start it with: pgpilot start ${name}` });
  }
  if (options.node !== undefined) {
    const member = status.members.find((m) => m.name === options.node);
    if (member === undefined) {
      throw new PgpilotError('NODE_NOT_FOUND', `no node ${options.node} in cluster ${name}`, {
        hint: `nodes: ${status.members.map((m) => m.name).join(', ')}`,
        exitCode: 2,
      });
    }
    if (member.role !== 'primary' && member.role !== 'replica') {
      throw new PgpilotError('INPUT_INVALID', `${member.name} is not running (${member.role})`, { hint: `start it with: pgpilot start ${name}`, exitCode: 2 });
    }
    await restartMember(options, deps, member, token);
    output.out(`${member.name} restarted`);
    return 0;
  }
  const oldLeader = status.leader;
  const replicas = status.members.filter((m) => m.role === 'replica');
  for (const replica of replicas) status = await restartMember(options, deps, replica, token);
  const leader = status.members.find((m) => m.name === oldLeader);
  if (leader === undefined) throw new PgpilotError('INTERNAL', `leader ${oldLeader} vanished from the status`);
  if (replicas.length === 0) {
    deps.progress('single node: the leader restarts in place (a short outage)');
    await restartMember(options, deps, leader, token);
  } else {
    await switchover.run({ home: options.home, name, kind: 'switchover', yes: false, json: false, timeoutSeconds: options.timeoutSeconds }, deps, {
      out: (line) => deps.progress(line),
      err: (line) => deps.progress(line),
    });
    status = await clusterStatus(options.home, name);
    const former = status.members.find((m) => m.name === oldLeader);
    if (former !== undefined && former.role === 'replica') await restartMember(options, deps, former, token);
  }
  const final = await clusterStatus(options.home, name);
  output.out(`rolling restart of ${name} done: ${final.leader ?? 'no'} leads (timeline ${final.timeline ?? '-'})`);
  return 0;
}
