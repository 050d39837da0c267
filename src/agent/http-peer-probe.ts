/**
 * The real `PeerProbe` of failsafe mode (src/ha/failsafe.ts): `POST <apiUrl>/failsafe` over HTTPS
 * (the cluster CA) with the cluster's API token and the leader's request, answered by the member's HA loop. Anything but a
 * well-formed 200 answer within `timeoutMs` (network error, timeout, 401, garbage) rejects, which
 * the loop counts as an unreachable member. Never logs the token, and never sends it anywhere but
 * a known node address (`knownHosts`, src/ha/member-trust.ts): a URL outside them is refused
 * before any connection is made.
 */
import { z } from 'zod';
import type { FailsafeAnswer, FailsafePeer, FailsafeRequest, PeerProbe } from '../ha/failsafe.js';
import { PgpilotError } from '../shared/errors.js';
import { callAgent } from '../api/agent-client.js';
import { jsonBody } from '../shared/https-client.js';
import { isKnownUrl } from '../ha/member-trust.js';

const answerSchema = z.object({
  node: z.string(),
  accepted: z.boolean(),
  leader: z.string().nullable(),
  reason: z.string().nullable(),
});

export class HttpPeerProbe implements PeerProbe {
  constructor(
    private readonly apiToken: string,
    private readonly ca: string,
    private readonly knownHosts: readonly string[],
  ) {}

  async check(peer: FailsafePeer, request: FailsafeRequest, timeoutMs: number): Promise<FailsafeAnswer> {
    if (!isKnownUrl(peer.apiUrl, this.knownHosts)) throw new PgpilotError('INPUT_INVALID', `${peer.name}'s API URL is not on a known node address: not asked`);
    const response = await callAgent(peer.apiUrl, '/failsafe', { method: 'POST', body: request, token: this.apiToken, ca: this.ca, timeoutMs });
    const body = jsonBody(response);
    const answer = answerSchema.safeParse(body);
    if (!answer.success || (response.status !== 200 && response.status !== 409)) {
      throw new PgpilotError('COMMAND_FAILED', `failsafe check of ${peer.name} answered HTTP ${response.status}`);
    }
    return answer.data;
  }
}
