/**
 * `pgpilot certs rotate` under a write load, end to end through bin/pgpilot with real PostgreSQL,
 * etcd and HAProxy (docs/security.md): while one client INSERTs on a persistent TLS connection and
 * another opens a new TLS connection for every INSERT (both through a node's leader proxy port),
 * the rotation issues new certificates and every node serves them — the serial seen by a new TLS
 * connection changes on postgres, on the REST API and on etcd — with 0 failed writes. `certs show
 * --json` has the documented fields and the CA stays the same.
 * The temporary home is removed and the cluster destroyed even when the test fails.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import type { ClusterStatus } from '../../src/operations/cluster-status.js';
import { verifyFullSsl } from '../../src/postgres/queries.js';
import { SystemClock } from '../../src/shared/clock.js';
import { makeTempHome, removeTempHome, runCli, type CliResult } from '../helpers/cli.js';

const NAME = 'rot';
const clock = new SystemClock();

function ok(result: CliResult, what: string): CliResult {
  assert.equal(result.code, 0, `${what}: exit ${result.code}\n${result.stderr}\n${result.stdout}`);
  return result;
}

/** The serial of the certificate a new TLS connection to 127.0.0.1:port is served (verified against `ca`). */
function servedSerial(port: number, ca: string, options: { cert?: string; key?: string } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ca, ...options }, () => {
      const serial = socket.getPeerCertificate().serialNumber;
      socket.end();
      resolve(serial);
    });
    socket.setTimeout(5_000, () => socket.destroy(new Error('TLS handshake timed out')));
    socket.on('error', reject);
  });
}

async function postgresSerial(port: number, password: string, ca: string): Promise<string> {
  const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', password, database: 'postgres', ssl: verifyFullSsl(ca), connectionTimeoutMillis: 5_000 });
  await client.connect();
  try {
    const stream = (client as unknown as { connection: { stream: tls.TLSSocket } }).connection.stream;
    return stream.getPeerCertificate().serialNumber;
  } finally {
    await client.end();
  }
}

interface Writers {
  stop(): Promise<{ ok: number; failed: number; errors: string[] }>;
}

/** One persistent client and one that reconnects for every row, both through `port`, until stopped. */
function startWriters(port: number, password: string, ca: string): Writers {
  const tally = { ok: 0, failed: 0, errors: [] as string[] };
  let running = true;
  const record = (error: unknown): void => {
    tally.failed += 1;
    if (tally.errors.length < 10) tally.errors.push(error instanceof Error ? error.message : String(error));
  };
  const options = { host: '127.0.0.1', port, user: 'postgres', password, database: 'postgres', ssl: verifyFullSsl(ca), connectionTimeoutMillis: 30_000 };
  const persistent = (async () => {
    const client = new pg.Client(options);
    client.on('error', () => undefined);
    await client.connect();
    try {
      while (running) {
        await client.query('INSERT INTO rotation_writes DEFAULT VALUES').then(() => (tally.ok += 1), record);
        await clock.sleep(20);
      }
    } finally {
      await client.end().catch(() => undefined);
    }
  })();
  const reconnecting = (async () => {
    while (running) {
      const client = new pg.Client(options);
      client.on('error', () => undefined);
      try {
        await client.connect();
        await client.query('INSERT INTO rotation_writes DEFAULT VALUES');
        tally.ok += 1;
      } catch (error) {
        record(error);
      } finally {
        await client.end().catch(() => undefined);
      }
      await clock.sleep(20);
    }
  })();
  return {
    stop: async () => {
      running = false;
      await Promise.all([persistent, reconnecting]);
      return tally;
    },
  };
}

void describe('certs rotate', { timeout: 600_000 }, () => {
  const home = makeTempHome('certs');
  let status: ClusterStatus;
  let password: string;
  let ca: string;

  before(async () => {
    ok(await runCli(['create', NAME, '--nodes', '3', '--timeout', '240'], { home, timeoutMs: 300_000 }), 'create');
    status = JSON.parse(ok(await runCli(['status', NAME, '--json'], { home }), 'status').stdout) as ClusterStatus;
    password = (JSON.parse(readFileSync(path.join(home, 'clusters', NAME, 'secrets.json'), 'utf8')) as { superuser: { password: string } }).superuser.password;
    assert.ok(status.tls !== undefined, 'status --json has tls');
    ca = readFileSync(status.tls.caFile, 'utf8');
  });

  after(async () => {
    await runCli(['destroy', NAME, '--yes'], { home, timeoutMs: 120_000 });
    await removeTempHome(home);
  });

  void it('renews every certificate with no failed write; postgres, the API and etcd serve the new ones', async () => {
    const shownBefore = JSON.parse(ok(await runCli(['certs', 'show', NAME, '--json'], { home }), 'certs show').stdout) as {
      caFile: string;
      adminCert: string;
      adminKey: string;
      etcdEndpoints: string[];
      certificates: Array<{ name: string; serial: string }>;
    };
    assert.equal(shownBefore.caFile, status.tls?.caFile);
    assert.equal(shownBefore.etcdEndpoints.length, 1);
    assert.match(shownBefore.etcdEndpoints[0] ?? '', /^https:\/\/127\.0\.0\.1:\d+$/);
    const etcdPort = Number(new URL(shownBefore.etcdEndpoints[0] ?? '').port);
    const admin = { cert: readFileSync(shownBefore.adminCert, 'utf8'), key: readFileSync(shownBefore.adminKey, 'utf8') };
    const leader = status.members.find((m) => m.name === status.leader);
    assert.ok(leader !== undefined && leader.proxyPort !== null);
    const apiPort = Number(new URL(leader.apiUrl).port);
    const before = {
      postgres: await postgresSerial(leader.port, password, ca),
      api: await servedSerial(apiPort, ca),
      etcd: await servedSerial(etcdPort, ca, admin),
    };
    const setup = new pg.Client({ host: '127.0.0.1', port: leader.port, user: 'postgres', password, database: 'postgres', ssl: verifyFullSsl(ca) });
    await setup.connect();
    await setup.query('CREATE TABLE rotation_writes (id bigserial PRIMARY KEY, at timestamptz DEFAULT now())');
    await setup.end();

    const writers = startWriters(leader.proxyPort, password, ca);
    const rotated = await runCli(['certs', 'rotate', NAME, '--json'], { home, timeoutMs: 120_000 });
    // Keep writing a little after the rotation, on the new certificates.
    await clock.sleep(1_000);
    const tally = await writers.stop();
    ok(rotated, 'certs rotate');
    const result = JSON.parse(rotated.stdout) as { nodes: Array<{ node: string; reloaded: boolean }> };
    assert.deepEqual(result.nodes.map((n) => n.reloaded), [true, true, true], rotated.stdout);
    assert.equal(tally.failed, 0, `failed writes during the rotation: ${tally.errors.join(' | ')}`);
    assert.ok(tally.ok > 20, `only ${tally.ok} writes went through`);

    const afterRotation = {
      postgres: await postgresSerial(leader.port, password, ca),
      api: await servedSerial(apiPort, ca),
      etcd: await servedSerial(etcdPort, ca, admin),
    };
    for (const what of ['postgres', 'api', 'etcd'] as const) assert.notEqual(afterRotation[what], before[what], `${what} still serves the old certificate`);
    const shownAfter = JSON.parse(ok(await runCli(['certs', 'show', NAME, '--json'], { home }), 'certs show').stdout) as typeof shownBefore;
    const serialOf = (shown: typeof shownBefore, name: string): string | undefined => shown.certificates.find((c) => c.name === name)?.serial;
    assert.equal(serialOf(shownAfter, 'ca'), serialOf(shownBefore, 'ca'), 'the CA is kept');
    for (const name of ['admin', 'etcd', 'node1', 'node2', 'node3']) assert.notEqual(serialOf(shownAfter, name), serialOf(shownBefore, name), `${name} was not renewed`);
    // The CLI keeps working with the new admin certificate (etcd) and the cluster is whole.
    const again = JSON.parse(ok(await runCli(['status', NAME, '--json'], { home }), 'status after').stdout) as ClusterStatus;
    assert.equal(again.etcd, 'running');
    assert.equal(again.leader, status.leader);
  });
});
