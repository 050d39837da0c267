/**
 * HTTPS requests to pgpilot's own services (agents' REST APIs, etcd's gateway and /health) with
 * node:https: the peer is verified against the cluster CA only (never the system store), its
 * certificate must name the host that was dialled, and a client certificate is presented when
 * given. Bounded: one overall deadline per request, and at most MAX_BODY_BYTES of answer is read.
 * Every failure is a returned `{ ok: false }` or a thrown error; nothing waits forever.
 */
import https from 'node:https';
import { PgpilotError, errorMessage } from './errors.js';

export interface HttpsTls {
  /** PEM of the CA that must have signed the server's certificate. */
  ca: string;
  /** Client certificate and key (PEM), for services that require one (etcd). */
  cert?: string;
  key?: string;
}

export interface HttpsRequest {
  method?: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  headers?: Record<string, string>;
  body?: string;
  timeoutMs: number;
  tls: HttpsTls;
}

export interface HttpsResponse {
  status: number;
  ok: boolean;
  text: string;
}

const MAX_BODY_BYTES = 4 * 1024 * 1024;

export function httpsRequest(url: string | URL, request: HttpsRequest): Promise<HttpsResponse> {
  const target = typeof url === 'string' ? new URL(url) : url;
  if (target.protocol !== 'https:') {
    return Promise.reject(new PgpilotError('INPUT_INVALID', `refusing a plain-text request to ${target.origin}: pgpilot speaks HTTPS only`));
  }
  return new Promise<HttpsResponse>((resolve, reject) => {
    const body = request.body === undefined ? undefined : Buffer.from(request.body, 'utf8');
    const req = https.request(
      target,
      {
        method: request.method ?? 'GET',
        headers: { ...(body === undefined ? {} : { 'content-type': 'application/json', 'content-length': String(body.length) }), ...request.headers },
        ca: request.tls.ca,
        ...(request.tls.cert === undefined ? {} : { cert: request.tls.cert }),
        ...(request.tls.key === undefined ? {} : { key: request.tls.key }),
        // Each request its own connection: a cached session or socket must not outlive a rotation.
        agent: false,
        timeout: request.timeoutMs,
        signal: AbortSignal.timeout(request.timeoutMs),
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_BODY_BYTES) {
            req.destroy(new Error(`answer larger than ${MAX_BODY_BYTES} bytes`));
            return;
          }
          chunks.push(chunk);
        });
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          resolve({ status, ok: status >= 200 && status < 300, text: Buffer.concat(chunks).toString('utf8') });
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${request.timeoutMs} ms`)));
    req.on('error', (error) => reject(new Error(`${target.origin}: ${errorMessage(error)}`)));
    req.end(body);
  });
}

/** The JSON body of an answer, or null when it is not JSON. */
export function jsonBody(response: HttpsResponse): unknown {
  try {
    return JSON.parse(response.text) as unknown;
  } catch {
    return null;
  }
}
