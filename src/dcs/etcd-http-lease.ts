/**
 * Revokes an etcd lease through etcd's JSON gateway (`POST /v3/lease/revoke`) over HTTPS with the
 * agent's client certificate, with nothing but node:https: for the fencing watchdog, which must
 * stay small and must not load the gRPC client.
 * Bounded: one attempt per endpoint, each with its own timeout. A lease that etcd no longer has
 * counts as revoked (the contract of `Dcs.revokeLease`).
 */
import { PgpilotError } from '../shared/errors.js';
import { httpsRequest, jsonBody, type HttpsRequest, type HttpsResponse } from '../shared/https-client.js';

export type HttpsRequester = (url: string, request: HttpsRequest) => Promise<HttpsResponse>;

/** gRPC status NOT_FOUND, which etcd answers for a lease it does not have. */
const GRPC_NOT_FOUND = 5;
const DEFAULT_TIMEOUT_MS = 1_000;

export async function revokeLeaseOverHttp(
  endpoints: readonly string[],
  leaseId: string,
  tls: { ca: string; cert: string; key: string },
  options: { timeoutMs?: number; requester?: HttpsRequester } = {},
): Promise<void> {
  if (!/^[1-9][0-9]{0,18}$/.test(leaseId)) throw new PgpilotError('INPUT_INVALID', `not an etcd lease id: ${JSON.stringify(leaseId)}`);
  const requester = options.requester ?? httpsRequest;
  const failures: string[] = [];
  for (const endpoint of endpoints) {
    const url = `${endpoint.replace(/\/+$/, '')}/v3/lease/revoke`;
    try {
      const response = await requester(url, {
        method: 'POST',
        // int64 fields travel as strings in the gateway's JSON.
        body: JSON.stringify({ ID: leaseId }),
        timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
        tls,
      });
      if (response.ok) return;
      const body = jsonBody(response) as { code?: number; message?: string; error?: string } | null;
      if (body?.code === GRPC_NOT_FOUND) return;
      failures.push(`${endpoint}: HTTP ${response.status} ${body?.message ?? body?.error ?? ''}`.trim());
    } catch (error) {
      failures.push(`${endpoint}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  throw new PgpilotError('DCS_UNAVAILABLE', `could not revoke lease ${leaseId}: ${failures.join('; ')}`, {
    retryable: true,
    hint: `check that etcd is running and reachable at ${endpoints.join(', ')}; the lease still expires after its TTL`,
  });
}
