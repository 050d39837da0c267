/**
 * The REST clients of a handle (shared by the local and the remote kind): any agent by node name,
 * and the current leader's agent (found through the status, then called; the agent itself refuses
 * leader-only routes when it is not the leader any more).
 */
import { callAgent } from '../api/agent-client.js';
import type { ClusterSecrets } from '../config/schema.js';
import type { ClusterStatus } from '../operations/cluster-status.js';
import { PgpilotError } from '../shared/errors.js';
import type { HttpsResponse } from '../shared/https-client.js';
import { urlHost } from '../shared/ports.js';
import type { AgentRequest } from './cluster-handle.js';
import type { NodeEndpoint } from './cluster-topology.js';

export interface AgentCalls {
  callAgent: (node: string, route: string, request: AgentRequest) => Promise<HttpsResponse>;
  callLeader: (route: string, request: AgentRequest) => Promise<HttpsResponse>;
}

export function agentCalls(cluster: string, nodes: readonly NodeEndpoint[], secrets: () => ClusterSecrets, caPem: () => string, status: () => Promise<ClusterStatus>): AgentCalls {
  const call = (node: string, route: string, request: AgentRequest): Promise<HttpsResponse> => {
    const endpoint = nodes.find((n) => n.name === node);
    if (endpoint === undefined) {
      throw new PgpilotError('NODE_NOT_FOUND', `no node ${node} in cluster ${cluster}`, { hint: `nodes: ${nodes.map((n) => n.name).join(', ')}`, exitCode: 2 });
    }
    return callAgent(`https://${urlHost(endpoint.host)}:${endpoint.apiPort}`, route, {
      token: secrets().apiToken,
      ca: caPem(),
      timeoutMs: request.timeoutMs,
      ...(request.method === undefined ? {} : { method: request.method }),
      ...(request.body === undefined ? {} : { body: request.body }),
    });
  };
  return {
    callAgent: (node, route, request) => Promise.resolve().then(() => call(node, route, request)),
    callLeader: async (route, request) => {
      const current = await status();
      const leader = current.members.find((m) => m.name === current.leader && m.role === 'primary');
      if (leader === undefined) {
        throw new PgpilotError('CLUSTER_NOT_RUNNING', `cluster ${cluster} has no leader right now`, { hint: `check pgpilot status ${cluster}`, retryable: true });
      }
      return call(leader.name, route, request);
    },
  };
}
