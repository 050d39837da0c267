/**
 * Calling an agent's REST API (src/api/build-api.ts) from another agent or the CLI: HTTPS,
 * verified against the cluster CA, with the cluster token. One function, so every caller gets the
 * same deadline, size bound and error shape.
 */
import { httpsRequest, type HttpsResponse } from '../shared/https-client.js';

export interface AgentCall {
  method?: 'GET' | 'POST';
  /** JSON body (POST). */
  body?: unknown;
  token: string;
  /** PEM of the cluster CA. */
  ca: string;
  timeoutMs: number;
}

/** `route` (e.g. `/restart`) on the agent at `apiUrl`; rejects on network errors and timeouts only. */
export function callAgent(apiUrl: string, route: string, call: AgentCall): Promise<HttpsResponse> {
  return httpsRequest(new URL(route, apiUrl), {
    method: call.method ?? 'GET',
    headers: { authorization: `Bearer ${call.token}` },
    ...(call.body === undefined ? {} : { body: JSON.stringify(call.body) }),
    timeoutMs: call.timeoutMs,
    tls: { ca: call.ca },
  });
}

/** What the CLI needs to call any agent of a cluster: the token and the CA (PEM). */
export interface AgentAuth {
  token: string;
  ca: string;
}
