/**
 * The one builder of the `postgresql://` URLs pgpilot prints and uses (pure): status, attach's
 * DATABASE_URL, the pooler, connect, import. Every URL asks for TLS verified against the cluster
 * CA and the address dialled (`sslmode=verify-full&sslrootcert=<CA file>`): libpq (psql) takes
 * it as printed, and node-postgres takes the single-host form (any one `host:port` of the list).
 */
import { urlHost } from '../shared/ports.js';

export interface ConnectionUrlInput {
  user: string;
  /** Omitted: a URL without the password (libpq asks or reads PGPASSWORD / a passfile). */
  password?: string;
  /** `host:port` endpoints, tried in order by libpq. */
  endpoints: ReadonlyArray<{ host: string; port: number }>;
  database: string;
  /** The cluster CA file (sslrootcert). */
  caFile: string;
  targetSessionAttrs?: 'read-write' | 'prefer-standby' | 'any';
  applicationName?: string;
}

export function connectionUrl(input: ConnectionUrlInput): string {
  const credentials = input.password === undefined ? encodeURIComponent(input.user) : `${encodeURIComponent(input.user)}:${encodeURIComponent(input.password)}`;
  const hosts = input.endpoints.map((e) => `${urlHost(e.host)}:${e.port}`).join(',');
  const query: Array<[string, string]> = [];
  if (input.targetSessionAttrs !== undefined) query.push(['target_session_attrs', input.targetSessionAttrs]);
  query.push(['sslmode', 'verify-full'], ['sslrootcert', input.caFile]);
  if (input.applicationName !== undefined) query.push(['application_name', input.applicationName]);
  // `/` may stand unescaped in a query (RFC 3986), which keeps the CA path readable.
  const encoded = query.map(([key, value]) => `${key}=${encodeURIComponent(value).replace(/%2F/g, '/')}`).join('&');
  return `postgresql://${credentials}@${hosts}/${encodeURIComponent(input.database)}?${encoded}`;
}
