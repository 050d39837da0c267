/**
 * Bounded node-postgres helpers for the chaos runner: every connect and query has a client-side
 * deadline, and a client whose query timed out is destroyed (its statement may still run on the
 * server; the caller treats the outcome as unknown). No server-side statement_timeout is set on
 * purpose: cancelling a commit that waits for a synchronous standby makes postgres report success
 * (with a warning) for a commit that was not replicated, which would hide exactly the loss we look for.
 */
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { verifyFullSsl } from '../../src/postgres/queries.js';
import type { HarnessCredentials } from './chaos-tls.js';
import { PG_PORT } from './layout.js';

/** Epoch milliseconds with sub-millisecond resolution, monotonic within this process. */
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

export async function closeClient(client: pg.Client): Promise<void> {
  (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
  await Promise.race([client.end().catch(() => undefined), sleep(500)]);
}

/**
 * A connection to postgres at `host` as the superuser, over TLS verified against the run's CA with
 * the host checked against the certificate's SANs (pg_hba rejects every connection without TLS).
 */
export async function connect(host: string, credentials: HarnessCredentials, options: { connectTimeoutMs: number; queryTimeoutMs: number; applicationName: string }): Promise<pg.Client> {
  const client = new pg.Client({
    host,
    port: PG_PORT,
    user: credentials.secrets.superuser.name,
    password: credentials.secrets.superuser.password,
    ssl: verifyFullSsl(credentials.tls.ca),
    database: 'postgres',
    connectionTimeoutMillis: options.connectTimeoutMs,
    query_timeout: options.queryTimeoutMs,
    application_name: options.applicationName,
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
    return client;
  } catch (error) {
    await closeClient(client);
    throw error;
  }
}

export function errorText(error: unknown): string {
  const code = (error as { code?: unknown }).code;
  const message = error instanceof Error ? error.message : String(error);
  return typeof code === 'string' ? `${code}: ${message}` : message;
}

/**
 * True when the error proves the server was NOT accepting writes at that moment: it is a standby
 * or read-only, it refused the connection, or it is starting or shutting down. Timeouts and
 * resets of an established connection prove nothing (the write may or may not have happened).
 */
export function provesNotWritable(error: unknown): boolean {
  const code = (error as { code?: unknown }).code;
  if (typeof code !== 'string') return false;
  return ['25006', '57P01', '57P02', '57P03', 'ECONNREFUSED'].includes(code);
}
