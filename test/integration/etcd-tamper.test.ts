/**
 * Agents trust nothing they read from etcd (docs/security.md, docs/ha-loop.md), checked the way an
 * attacker holding the admin certificate would try it: with Debian's `etcdctl` over TLS, straight
 * into the cluster's keys of a real 3-node cluster made by bin/pgpilot.
 * - A forbidden postgres parameter (`archive_cleanup_command`, a foreign preload library) put into
 *   /config is rendered on no node (no postgresql.conf line, `SHOW` unchanged), an event and a
 *   `warning` health name the key, and the primary keeps accepting writes.
 * - A leader key without a lease naming a node that does not exist demotes nobody: the primary
 *   keeps its postmaster and accepts writes throughout, an event says why, and the key is taken
 *   back by the real leader.
 * - etcdctl without a client certificate is refused.
 * The temporary home is removed and the cluster destroyed even when the test fails.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import type { ClusterStatus } from '../../src/operations/cluster-status.js';
import type { ClusterEvent } from '../../src/state/events.js';
import { verifyFullSsl } from '../../src/postgres/queries.js';
import { callAgent } from '../../src/api/agent-client.js';
import { SystemClock } from '../../src/shared/clock.js';
import { makeTempHome, removeTempHome, runCli, type CliResult } from '../helpers/cli.js';
import { waitUntil } from '../helpers/wait.js';

const NAME = 'tamper';
const clock = new SystemClock();

function ok(result: CliResult, what: string): CliResult {
  assert.equal(result.code, 0, `${what}: exit ${result.code}\n${result.stderr}\n${result.stdout}`);
  return result;
}

interface Certs {
  caFile: string;
  adminCert: string;
  adminKey: string;
  etcdEndpoints: string[];
}

function etcdctl(certs: Certs, args: readonly string[], withClientCert = true): Promise<{ code: number; stdout: string; stderr: string }> {
  const tlsArgs = ['--endpoints', certs.etcdEndpoints.join(','), '--cacert', certs.caFile, ...(withClientCert ? ['--cert', certs.adminCert, '--key', certs.adminKey] : []), '--dial-timeout', '3s', '--command-timeout', '5s'];
  return new Promise((resolve) => {
    execFile('etcdctl', [...tlsArgs, ...args], { env: { ...process.env, ETCDCTL_API: '3' }, timeout: 20_000 }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : 1, stdout, stderr });
    });
  });
}

void describe('agents trust nothing written straight into etcd', { timeout: 600_000 }, () => {
  const home = makeTempHome('tamper');
  let certs: Certs;
  let ca: string;
  let password: string;
  let status: ClusterStatus;

  const statusNow = async (): Promise<ClusterStatus> => JSON.parse(ok(await runCli(['status', NAME, '--json'], { home }), 'status').stdout) as ClusterStatus;
  const eventsNow = async (): Promise<ClusterEvent[]> => JSON.parse(ok(await runCli(['events', NAME, '--json', '--limit', '200'], { home }), 'events').stdout) as ClusterEvent[];
  const query = async (port: number, sql: string): Promise<pg.QueryResult> => {
    const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', password, database: 'postgres', ssl: verifyFullSsl(ca), connectionTimeoutMillis: 10_000 });
    await client.connect();
    try {
      return await client.query(sql);
    } finally {
      await client.end();
    }
  };

  before(async () => {
    ok(await runCli(['create', NAME, '--nodes', '3', '--timeout', '240'], { home, timeoutMs: 300_000 }), 'create');
    certs = JSON.parse(ok(await runCli(['certs', 'show', NAME, '--json'], { home }), 'certs show').stdout) as Certs;
    ca = readFileSync(certs.caFile, 'utf8');
    password = (JSON.parse(readFileSync(path.join(home, 'clusters', NAME, 'secrets.json'), 'utf8')) as { superuser: { password: string } }).superuser.password;
    status = await statusNow();
    const leader = status.members.find((m) => m.name === status.leader);
    assert.ok(leader !== undefined);
    await query(leader.port, 'CREATE TABLE tamper_writes (id bigserial PRIMARY KEY)');
  });

  after(async () => {
    await runCli(['destroy', NAME, '--yes'], { home, timeoutMs: 120_000 });
    await removeTempHome(home);
  });

  void it('refuses etcdctl without a client certificate and accepts the admin one', async () => {
    const refused = await etcdctl(certs, ['get', '--prefix', `/pgpilot/${NAME}/`, '--keys-only'], false);
    assert.notEqual(refused.code, 0, `etcd answered a client without a certificate: ${refused.stdout}`);
    const allowed = await etcdctl(certs, ['get', '--prefix', `/pgpilot/${NAME}/`, '--keys-only']);
    assert.equal(allowed.code, 0, allowed.stderr);
    assert.match(allowed.stdout, new RegExp(`/pgpilot/${NAME}/leader`));
  });

  void it('drops forbidden parameters put into /config; the primary keeps accepting writes', async () => {
    const key = `/pgpilot/${NAME}/config`;
    const current = await etcdctl(certs, ['get', key, '--print-value-only']);
    assert.equal(current.code, 0, current.stderr);
    const config = JSON.parse(current.stdout) as { postgresql: { parameters: Record<string, unknown> } };
    config.postgresql.parameters['archive_cleanup_command'] = 'touch /tmp/pgpilot-tamper-pwned';
    config.postgresql.parameters['shared_preload_libraries'] = 'pgpilot_tamper_evil';
    const put = await etcdctl(certs, ['put', key, JSON.stringify(config)]);
    assert.equal(put.code, 0, put.stderr);
    const seen = await waitUntil(
      'a config-rejected event naming archive_cleanup_command',
      async () => (await eventsNow()).filter((e) => e.kind === 'config-rejected' && e.message.includes('archive_cleanup_command')),
      60_000,
      500,
    );
    assert.ok(seen.length > 0);
    const warned = await waitUntil(
      'a warning health naming the dropped key on every member',
      async () => {
        const now = await statusNow();
        return now.members.every((m) => m.health.status === 'warning' && /archive_cleanup_command/.test(m.health.summary)) ? now : null;
      },
      60_000,
      500,
    );
    const leader = warned.members.find((m) => m.name === warned.leader);
    assert.ok(leader !== undefined && leader.proxyPort !== null);
    // A reload renders postgresql.conf from /config again: still nothing forbidden in it.
    const token = (JSON.parse(readFileSync(path.join(home, 'clusters', NAME, 'secrets.json'), 'utf8')) as { apiToken: string }).apiToken;
    for (const node of warned.members) {
      const reload = await callAgent(node.apiUrl, '/reload', { method: 'POST', token, ca, timeoutMs: 30_000 });
      assert.equal(reload.status, 200, reload.text);
      const conf = readFileSync(path.join(home, 'clusters', NAME, 'nodes', node.name, 'pgdata', 'postgresql.conf'), 'utf8');
      assert.doesNotMatch(conf, /archive_cleanup_command|pgpilot_tamper_evil/, `${node.name} rendered a forbidden parameter`);
      const shown = await query(node.port, 'SHOW archive_cleanup_command');
      assert.equal((shown.rows[0] as { archive_cleanup_command: string }).archive_cleanup_command, '');
    }
    await query(leader.proxyPort, 'INSERT INTO tamper_writes DEFAULT VALUES');
  });

  void it('ignores a lease-less leader key naming a node that does not exist; nobody is demoted', async () => {
    const before = await statusNow();
    const leader = before.members.find((m) => m.name === before.leader);
    assert.ok(leader !== undefined && leader.proxyPort !== null && leader.postgresPid !== null);
    const proxyPort = leader.proxyPort;
    // A writer through the leader's proxy port for the whole attempt: every write must succeed.
    let running = true;
    const tally = { ok: 0, failed: 0, errors: [] as string[] };
    const writer = (async () => {
      const client = new pg.Client({ host: '127.0.0.1', port: proxyPort, user: 'postgres', password, database: 'postgres', ssl: verifyFullSsl(ca), connectionTimeoutMillis: 10_000 });
      client.on('error', () => undefined);
      await client.connect();
      try {
        while (running) {
          try {
            await client.query('INSERT INTO tamper_writes DEFAULT VALUES');
            tally.ok += 1;
          } catch (error) {
            tally.failed += 1;
            if (tally.errors.length < 5) tally.errors.push(error instanceof Error ? error.message : String(error));
          }
          await clock.sleep(50);
        }
      } finally {
        await client.end().catch(() => undefined);
      }
    })();
    const put = await etcdctl(certs, ['put', `/pgpilot/${NAME}/leader`, 'ghost-node']);
    assert.equal(put.code, 0, put.stderr);
    await waitUntil('a leader-key-ignored event', async () => (await eventsNow()).some((e) => e.kind === 'leader-key-ignored' && e.message.includes('ghost-node')), 60_000, 500);
    const back = await waitUntil(
      'the real leader holding the key again',
      async () => {
        const got = await etcdctl(certs, ['get', `/pgpilot/${NAME}/leader`, '--print-value-only']);
        return got.code === 0 && got.stdout.trim() === leader.name ? got : null;
      },
      60_000,
      500,
    );
    assert.ok(back);
    // A few more writes after the key came back.
    const okBefore = tally.ok;
    await waitUntil('more writes after the key came back', () => Promise.resolve(tally.ok >= okBefore + 5), 30_000, 100);
    running = false;
    await writer;
    assert.equal(tally.failed, 0, `writes failed while the leader key was forged: ${tally.errors.join(' | ')}`);
    const afterAll = await statusNow();
    const same = afterAll.members.find((m) => m.name === leader.name);
    assert.equal(afterAll.leader, leader.name, 'the leader changed');
    assert.equal(same?.role, 'primary');
    assert.equal(same?.postgresPid, leader.postgresPid, 'the primary was restarted or demoted');
    const recovery = await query(leader.port, 'SELECT pg_is_in_recovery() AS r');
    assert.equal((recovery.rows[0] as { r: boolean }).r, false);
  });
});
