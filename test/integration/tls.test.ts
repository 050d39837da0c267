/**
 * "TLS everywhere", checked the way a new user would on a fresh `pgpilot create` (through
 * bin/pgpilot, real PostgreSQL 15, etcd, PgBouncer): `psql "...sslmode=disable"` is refused on every
 * postgres port, every leader and replica proxy port, and every pooler port once `pooler enable`
 * ran; the printed connection strings work with psql exactly as printed (password in the URL), and
 * the single-host form (one host:port of the list) works with node-postgres, over TLS; plain
 * `http://` to the REST API fails while HTTPS with the cluster CA answers /primary 200 on the
 * leader; `etcdctl` (v3 API) without a client certificate is refused and with the admin certificate
 * lists the cluster's keys. Every process belongs to the cluster and is stopped by `destroy`.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import type { ClusterStatus } from '../../src/operations/cluster-status.js';
import type { PoolerStatus } from '../../src/pooler/pooler-status.js';
import { clientUrl } from '../../src/etcd/etcd-server.js';
import { makeTempHome, removeTempHome, runCli } from '../helpers/cli.js';
import { adminTlsFiles, callApi, clusterCaFile, clusterStatusOf, parseStatusJson, passwordOf, waitConverged } from '../helpers/cluster.js';
import { waitUntil } from '../helpers/wait.js';

const NAME = 'tls';
const PSQL = '/usr/lib/postgresql/15/bin/psql';
const ETCDCTL = '/usr/bin/etcdctl';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** A command with a clean environment (no PG* / ETCDCTL_* from the caller) and a time bound. */
function run(file: string, args: readonly string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(
      file,
      [...args],
      { timeout: 30_000, killSignal: 'SIGKILL', env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', LANG: 'C', ...env } },
      (error, stdout, stderr) => resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : 1, stdout, stderr }),
    );
    child.stdin?.end();
  });
}

/** `psql "<conninfo>" -c 'select 1'`. */
function psql(conninfo: string, sql = 'select 1'): Promise<Run> {
  return run(PSQL, [conninfo, '-X', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-c', sql]);
}

/** A plain-text attempt with the right password: must be refused by the server, not by a typo. */
async function assertPlainTextRefused(label: string, host: string, port: number, password: string): Promise<void> {
  const result = await psql(`host=${host} port=${port} user=postgres dbname=postgres password=${password} sslmode=disable connect_timeout=10`);
  assert.notEqual(result.code, 0, `${label}: sslmode=disable was accepted`);
  // postgres: "pg_hba.conf rejects connection ... no encryption"; PgBouncer: "SSL required".
  assert.match(result.stderr, /no encryption|SSL required|rejects connection/i, `${label}: ${result.stderr}`);
}

void describe('TLS everywhere on a fresh cluster', () => {
  let home = '';
  let created: ClusterStatus | null = null;

  before(async () => {
    home = makeTempHome('tls');
    // What a user copies: the JSON with the password in the strings (--show-secrets).
    const result = await runCli(['create', NAME, '--json', '--show-secrets'], { home });
    assert.equal(result.code, 0, result.stderr);
    created = parseStatusJson(home, result.stdout);
  });

  after(async () => {
    if (process.env['PGPILOT_TEST_KEEP'] === '1') return;
    if (existsSync(path.join(home, 'clusters', NAME))) await runCli(['destroy', NAME, '--yes'], { home });
    await removeTempHome(home);
  });

  void it('refuses sslmode=disable on every postgres, leader proxy and replica proxy port', async () => {
    const status = await waitConverged(home, NAME, null);
    const password = passwordOf(status);
    for (const m of status.members) {
      await assertPlainTextRefused(`${m.name} postgres`, m.host, m.port, password);
      assert.ok(m.proxyPort !== null && m.replicaProxyPort !== null);
      await assertPlainTextRefused(`${m.name} leader proxy`, m.host, m.proxyPort, password);
      await assertPlainTextRefused(`${m.name} replica proxy`, m.host, m.replicaProxyPort, password);
      // The control: the same port with verify-full and the CA works.
      const ok = await psql(`host=${m.host} port=${m.port} user=postgres dbname=postgres password=${password} sslmode=verify-full sslrootcert=${clusterCaFile(home, NAME)}`);
      assert.equal(ok.code, 0, `${m.name} with TLS: ${ok.stderr}`);
    }
  });

  void it('the printed connection strings work with psql as printed, over TLS', async () => {
    const status = await waitConverged(home, NAME, null);
    assert.ok(created !== null);
    for (const url of [status.connectionString, status.replicaConnectionString, created.connectionString]) {
      assert.match(url, /[?&]sslmode=verify-full(&|$)/, url);
      assert.ok(url.includes(`sslrootcert=${clusterCaFile(home, NAME)}`), url);
      const result = await psql(url, 'select 1');
      assert.equal(result.code, 0, `${url.replace(/:[^:@/]+@/, ':****@')}: ${result.stderr}`);
      assert.equal(result.stdout.trim(), '1');
      const ssl = await psql(url, 'select ssl from pg_stat_ssl where pid = pg_backend_pid()');
      assert.equal(ssl.stdout.trim(), 't');
    }
    // The writer string lands on the leader.
    assert.equal((await psql(status.connectionString, 'select pg_is_in_recovery()')).stdout.trim(), 'f');
  });

  void it('the single-host form of the printed string works with node-postgres', async () => {
    const status = await waitConverged(home, NAME, null);
    const hosts = /@([^/]+)\//.exec(status.connectionString)?.[1]?.split(',') ?? [];
    assert.equal(hosts.length, status.members.length);
    for (const hostPort of hosts) {
      const client = new pg.Client({ connectionString: status.connectionString.replace(/@[^/]+\//, `@${hostPort}/`), connectionTimeoutMillis: 30_000 });
      client.on('error', () => undefined);
      await client.connect();
      try {
        const row = (await client.query<{ ssl: boolean; recovery: boolean }>('SELECT s.ssl, pg_is_in_recovery() AS recovery FROM pg_stat_ssl s WHERE s.pid = pg_backend_pid()')).rows[0];
        assert.deepEqual(row, { ssl: true, recovery: false }, hostPort);
      } finally {
        await client.end().catch(() => undefined);
      }
    }
  });

  void it('the REST API: plain http fails, HTTPS with the CA answers /primary 200 on the leader', async () => {
    const status = await waitConverged(home, NAME, null);
    for (const m of status.members) {
      assert.ok(m.apiUrl.startsWith('https://'), m.apiUrl);
      const plain = new URL('/primary', m.apiUrl);
      plain.protocol = 'http:';
      // An HTTPS server answers a plain-text request with a TLS alert or a reset, never a 2xx.
      const answer = await fetch(plain, { signal: AbortSignal.timeout(5_000) }).then(
        (r) => r.status,
        () => 'refused' as const,
      );
      assert.ok(answer === 'refused' || answer >= 400, `${m.name}: plain http answered ${String(answer)}`);
      const primary = await callApi(status, m, '/primary');
      assert.equal(primary.status, m.name === status.leader ? 200 : 503, `${m.name} /primary`);
    }
    // And curl, as the user would: without the CA it refuses the certificate, with it the leader answers.
    const leader = status.members.find((m) => m.name === status.leader);
    assert.ok(leader);
    const curlNoCa = await run('/usr/bin/curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', `${leader.apiUrl}/primary`]);
    assert.notEqual(curlNoCa.code, 0, 'curl without the cluster CA must not trust the agent');
    const curlCa = await run('/usr/bin/curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '--cacert', clusterCaFile(home, NAME), `${leader.apiUrl}/primary`]);
    assert.equal(curlCa.code, 0, curlCa.stderr);
    assert.equal(curlCa.stdout, '200');
  });

  void it('etcdctl without a client certificate is refused; with the admin certificate it lists the keys', async () => {
    const manifest = JSON.parse(readFileSync(path.join(home, 'clusters', NAME, 'cluster.json'), 'utf8')) as { etcd: { host: string; clientPort: number } };
    const endpoint = clientUrl(manifest.etcd.host, manifest.etcd.clientPort);
    const env = { ETCDCTL_API: '3' };
    const base = ['--endpoints', endpoint, '--dial-timeout', '3s', '--command-timeout', '5s'];
    const list = ['get', '/', '--prefix', '--keys-only'];
    const files = adminTlsFiles(home, NAME);
    const noCert = await run(ETCDCTL, [...base, '--cacert', files.caFile, ...list], env);
    assert.notEqual(noCert.code, 0, `etcdctl without a client certificate: ${noCert.stdout}`);
    assert.ok(!noCert.stdout.includes(`/${NAME}/leader`), 'no key was listed');
    const plain = await run(ETCDCTL, ['--endpoints', endpoint.replace(/^https:/, 'http:'), '--dial-timeout', '3s', '--command-timeout', '5s', ...list], env);
    assert.notEqual(plain.code, 0, 'plain-text etcd access must fail');
    const admin = await run(ETCDCTL, [...base, '--cacert', files.caFile, '--cert', files.certFile, '--key', files.keyFile, ...list], env);
    assert.equal(admin.code, 0, admin.stderr);
    assert.match(admin.stdout, new RegExp(`/${NAME}/leader$`, 'm'), admin.stdout);
  });

  void it('after pooler enable, sslmode=disable is refused on every pooler port and TLS works', async () => {
    const enabled = await runCli(['pooler', 'enable', NAME, '--json'], { home, timeoutMs: 120_000 });
    assert.equal(enabled.code, 0, enabled.stderr);
    assert.doesNotMatch((JSON.parse(enabled.stdout) as { pooler: PoolerStatus }).pooler.connectionString ?? '', /postgres:[^@]+@/, 'pooler enable --json prints no password');
    // The pooler string as `status --json --show-secrets` prints it (password in the URL).
    const status = await clusterStatusOf(home, NAME);
    const password = passwordOf(status);
    const pooler = status.pooler;
    assert.ok(pooler !== undefined && pooler !== null && pooler.connectionString !== null);
    assert.match(pooler.connectionString, /[?&]sslmode=verify-full&sslrootcert=/);
    for (const node of pooler.nodes) {
      assert.ok(node.port !== null);
      // PgBouncer may need a moment after enable to serve on every node.
      await waitUntil(`pgbouncer on ${node.name} to serve TLS`, async () => (await psql(pooler.connectionString?.replace(/@[^/]+\//, `@${node.host}:${node.port}/`) ?? '')).code === 0, 30_000, 250);
      await assertPlainTextRefused(`${node.name} pooler`, node.host, node.port, password);
    }
    const viaPooler = await psql(pooler.connectionString, 'select 1');
    assert.equal(viaPooler.code, 0, viaPooler.stderr);
  });
});
