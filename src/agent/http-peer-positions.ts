/**
 * The real `PeerPositionSource` of sync mode (src/ha/sync-set.ts): `GET <apiUrl>/wal-position`
 * over HTTPS with the cluster token, answered live by the member's agent. Anything but a well-formed 200 answer within `timeoutMs`
 * (network error, timeout, 503 when its postgres is down, garbage) is "unknown" (null): the
 * candidate then cannot count that member, and does not promote without enough of them. A URL
 * outside the known node addresses (`knownHosts`, src/ha/member-trust.ts) is never called.
 */
import { z } from 'zod';
import type { PeerPosition, PeerPositionSource } from '../ha/sync-set.js';
import { isLsn } from '../shared/lsn.js';
import { callAgent } from '../api/agent-client.js';
import { jsonBody } from '../shared/https-client.js';
import { isKnownUrl } from '../ha/member-trust.js';

const positionSchema = z.object({
  name: z.string(),
  timeline: z.number().int().nullable(),
  lsn: z.string().refine(isLsn).nullable(),
});

export class HttpPeerPositions implements PeerPositionSource {
  constructor(
    private readonly apiToken: string,
    private readonly ca: string,
    private readonly knownHosts: readonly string[],
  ) {}

  async position(peer: { name: string; apiUrl: string }, timeoutMs: number): Promise<PeerPosition | null> {
    if (!isKnownUrl(peer.apiUrl, this.knownHosts)) return null;
    try {
      const response = await callAgent(peer.apiUrl, '/wal-position', { token: this.apiToken, ca: this.ca, timeoutMs });
      if (response.status !== 200) return null;
      const parsed = positionSchema.safeParse(jsonBody(response));
      // An answer must come from the member we asked (a reused port could reach another agent).
      return parsed.success && parsed.data.name === peer.name ? parsed.data : null;
    } catch {
      return null;
    }
  }
}
