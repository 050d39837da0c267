/**
 * Reading a test cluster the way a user does (`bin/pgpilot status NAME --json --show-secrets`), and waiting for
 * it to settle: shared by the integration tests that drive real clusters. Also the one place tests
 * get what a client needs to reach the cluster securely: the cluster CA (`clusters/NAME/tls/ca.crt`
 * under the test's home), the admin client certificate (etcd), the superuser password
 * (`passwordOf`, the only reader of a password from status) and node-postgres options with
 * verify-full TLS (`pgClientOptions`). Every status read by `clusterStatusOf`/`waitConverged`
 * remembers the home and cluster it came from, so `withNode(status, ...)` and
 * `pgClientOptions(status, ...)` find the CA without being told.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import pg from 'pg';
import type { ClusterStatus, MemberStatus } from '../../src/operations/cluster-status.js';
import { clusterPaths } from '../../src/providers/local/paths.js';
import { verifyFullSsl } from '../../src/postgres/queries.js';
import type { TlsFiles } from '../../src/config/schema.js';
import { httpsRequest, type HttpsResponse } from '../../src/shared/https-client.js';
import { readTlsMaterial, type TlsMaterial } from '../../src/tls/tls-files.js';
import { runCli } from './cli.js';
import { waitUntil } from './wait.js';

/** Where each status value read by this module came from (home + cluster name). */
const origins = new WeakMap<ClusterStatus, { home: string; name: string }>();

export async function clusterStatusOf(home: string, name: string): Promise<ClusterStatus> {
  const result = await runCli(['status', name, '--json', '--show-secrets'], { home });
  assert.equal(result.code, 0, result.stderr);
  const status = parseStatusJson(home, result.stdout);
  assert.equal(status.cluster, name);
  return status;
}

/** A status JSON the CLI printed (`status --json`, `create --json`, `start --json`), remembering where it came from. */
export function parseStatusJson(home: string, json: string): ClusterStatus {
  return trackStatus(home, JSON.parse(json) as ClusterStatus);
}

/** A status the CLI printed inside another JSON answer (e.g. `scale count --json`), remembering where it came from. */
export function trackStatus(home: string, status: ClusterStatus): ClusterStatus {
  assert.ok(typeof status.cluster === 'string', 'not a cluster status');
  origins.set(status, { home, name: status.cluster });
  return status;
}

/** The cluster CA file: `clusters/NAME/tls/ca.crt` under `home`. */
export function clusterCaFile(home: string, name: string): string {
  return clusterPaths(home, name).caFile;
}

/** PEM of the cluster CA, what every client of postgres and the REST API verifies against. */
export function clusterCa(home: string, name: string): string {
  return readFileSync(clusterCaFile(home, name), 'utf8');
}

/** The CLI's admin client identity (etcd requires a client certificate of the cluster CA). */
export function adminTlsFiles(home: string, name: string): TlsFiles {
  const paths = clusterPaths(home, name);
  return { caFile: paths.caFile, certFile: paths.adminCertFile, keyFile: paths.adminKeyFile };
}

export function adminTls(home: string, name: string): TlsMaterial {
  return readTlsMaterial(adminTlsFiles(home, name));
}

/** The cluster's REST API token (`secrets.json`), for the routes that need one. */
export function apiTokenOf(home: string, name: string): string {
  const secrets = JSON.parse(readFileSync(clusterPaths(home, name).secretsFile, 'utf8')) as { apiToken?: unknown };
  assert.ok(typeof secrets.apiToken === 'string', 'no apiToken in secrets.json');
  return secrets.apiToken;
}

/**
 * GET (or POST) `route` on `member`'s REST API over HTTPS verified against the cluster CA, with the
 * cluster token when `withToken` (the open routes /health, /primary, /replica, /metrics need none).
 */
export function callApi(
  status: ClusterStatus,
  member: MemberStatus,
  route: string,
  options: { method?: 'GET' | 'POST'; withToken?: boolean; token?: string; timeoutMs?: number } = {},
): Promise<HttpsResponse> {
  const origin = originOf(status);
  const token = options.token ?? (options.withToken === true ? apiTokenOf(origin.home, origin.name) : undefined);
  return httpsRequest(new URL(route, member.apiUrl), {
    method: options.method ?? 'GET',
    ...(token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } }),
    timeoutMs: options.timeoutMs ?? 5_000,
    tls: { ca: caOf(status) },
  });
}

function originOf(status: ClusterStatus): { home: string; name: string } {
  const origin = origins.get(status);
  assert.ok(origin !== undefined, 'this status was not read by clusterStatusOf/waitConverged/parseStatusJson; use clusterCa(home, name)');
  return origin;
}

/** The CA of the cluster `status` was read from (by `clusterStatusOf` or `waitConverged`). */
export function caOf(status: ClusterStatus): string {
  const origin = originOf(status);
  return clusterCa(origin.home, origin.name);
}

/**
 * The superuser password, from the writer connection string of a status read with
 * `--show-secrets` (without it the string has no password, and this fails loudly).
 */
export function passwordOf(status: ClusterStatus): string {
  const password = /^postgresql:\/\/[^:/@]+:([^@]+)@/.exec(status.connectionString)?.[1];
  assert.ok(password !== undefined, 'the status has no password in its connection string: read it with --show-secrets');
  return decodeURIComponent(password);
}

/** What a superuser client of the cluster needs: the password and the CA (PEM). */
export interface PgAccess {
  password: string;
  ca: string;
}

export function pgAccess(status: ClusterStatus): PgAccess {
  return { password: passwordOf(status), ca: caOf(status) };
}

/**
 * node-postgres options for a superuser connection to `target` (a member's postgres, a proxy or
 * pooler port) over TLS verified against the cluster CA and the address dialled (verify-full).
 */
export function pgClientOptions(
  access: ClusterStatus | PgAccess,
  target: { host: string; port: number },
  extra: Partial<pg.ClientConfig> = {},
): pg.ClientConfig {
  const { password, ca } = 'members' in access ? pgAccess(access) : access;
  return {
    host: target.host,
    port: target.port,
    user: 'postgres',
    password,
    database: 'postgres',
    connectionTimeoutMillis: 2_000,
    ...extra,
    ssl: verifyFullSsl(ca),
  };
}

/** Runs `fn` with a superuser connection straight to `member`'s postgres, closed afterwards. */
export function withNode<T>(status: ClusterStatus, member: MemberStatus, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  return withClient(pgClientOptions(status, member), fn);
}

/** Runs `fn` with a new connection made from `options` (pgClientOptions: verify-full TLS), closed afterwards. */
export async function withClient<T>(options: pg.ClientConfig, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client(options);
  client.on('error', () => undefined);
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

export function leaderOf(status: ClusterStatus): MemberStatus {
  const leader = status.members.find((m) => m.name === status.leader && m.role === 'primary');
  assert.ok(leader, `no running leader in ${JSON.stringify(status.members)}`);
  return leader;
}

/** Waits until a writable leader other than `not` leads and every member streams from it on its timeline. */
export async function waitConverged(home: string, name: string, not: string | null, timeoutMs = 60_000): Promise<ClusterStatus> {
  let last = '';
  return waitUntil(
    () => `a converged cluster led by someone other than ${not ?? '-'} (last seen: ${last})`,
    async () => {
      const status = await clusterStatusOf(home, name);
      last = `leader ${status.leader ?? '-'}; ${status.members.map((m) => `${m.name} ${m.role}/${m.state} tl${m.timeline ?? '-'}${m.streaming ? ' streaming' : ''}`).join(', ')}`;
      const leader = status.members.find((m) => m.name === status.leader && m.role === 'primary');
      if (leader === undefined || leader.name === not) return null;
      const allStreaming = status.members.every((m) => m.name === leader.name || (m.role === 'replica' && m.streaming && m.timeline === leader.timeline));
      return allStreaming ? status : null;
    },
    timeoutMs,
    250,
  );
}
