/**
 * Operate and evolve, end to end through bin/pgpilot with real PostgreSQL 15, etcd and PgBouncer,
 * on one cluster for the whole file (docs/operations.md):
 * - `scale count` 3 -> 4 -> 2: the new node clones the leader's rows and streams; shrinking asks for
 *   --yes, refuses to remove the leader, keeps the same leader and its data, drops the removed
 *   members' slots, keeps their data under removed/, and the remaining replica still streams.
 * - `pooler enable`: PgBouncer on every node (as the postgres OS user when root), pgbench through
 *   a pooler port in transaction mode with no failed transaction, a wrong password refused, the
 *   status line; `pooler disable` stops every PgBouncer.
 * - `image update` with the same bin dir: the whole rolling procedure (every postmaster restarted,
 *   one switchover), events `image-update-started` / `image-update-completed`; another major version
 *   is refused before anything happens.
 * The temporary home is /tmp/operate-*; `after` destroys the cluster and removes it even on failure.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync } from 'node:fs';
import { readFile, mkdir, writeFile, chmod } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { withoutPassword, type ClusterStatus } from '../../src/operations/cluster-status.js';
import type { ClusterEvent } from '../../src/state/events.js';
import type { ScaleResult } from '../../src/providers/local/local-provider.js';
import type { ImageReport } from '../../src/cli/commands/image.js';
import type { PoolerStatus } from '../../src/pooler/pooler-status.js';
import { findPgBinDir } from '../../src/postgres/bin-dir.js';
import { removeTempHome, runCli, type CliResult } from '../helpers/cli.js';
import { clusterCaFile, clusterStatusOf, leaderOf, passwordOf, pgClientOptions, withNode } from '../helpers/cluster.js';
import { isPidAlive, waitUntil } from '../helpers/wait.js';

const NAME = 'ops';
const MARKER_ROWS = 250;

function ok(result: CliResult, what: string): CliResult {
  assert.equal(result.code, 0, `${what}: exit ${result.code}\n${result.stderr}\n${result.stdout}`);
  return result;
}

async function countOn(status: ClusterStatus, node: string): Promise<number> {
  const member = status.members.find((m) => m.name === node);
  assert.ok(member, `member ${node}`);
  return withNode(status, member, async (client) => Number((await client.query<{ n: string }>('SELECT count(*) AS n FROM marker')).rows[0]?.n ?? -1));
}

async function eventsOf(home: string): Promise<ClusterEvent[]> {
  return JSON.parse(ok(await runCli(['events', NAME, '--json', '--limit', '500'], { home }), 'events').stdout) as ClusterEvent[];
}

function run(command: string, args: readonly string[], env: NodeJS.ProcessEnv, timeoutMs = 120_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(command, [...args], { env: { ...process.env, ...env }, timeout: timeoutMs, killSignal: 'SIGKILL' }, (error, stdout, stderr) =>
      resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : 1, stdout, stderr }),
    );
  });
}

async function uidOf(pid: number): Promise<number> {
  const text = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/^Uid:\s+(\d+)/m.exec(text)?.[1] ?? -1);
}

void describe('operate: scale count, pooler, image update', () => {
  let home = '';
  let binDir = '';

  before(async () => {
    home = mkdtempSync('/tmp/operate-');
    chmodSync(home, 0o755);
    binDir = await findPgBinDir();
    ok(await runCli(['create', NAME, '--nodes', '3'], { home, timeoutMs: 240_000 }), 'create');
  });

  after(async () => {
    if (home === '') return;
    if (existsSync(path.join(home, 'clusters', NAME))) await runCli(['destroy', NAME, '--yes'], { home, timeoutMs: 120_000 });
    await removeTempHome(home);
  });

  void it('scales 3 -> 4 -> 2 with the same leader and data, never removing the leader', async () => {
    const initial = await clusterStatusOf(home, NAME);
    const leader = leaderOf(initial).name;
    await withNode(initial, leaderOf(initial), async (client) => {
      await client.query('CREATE TABLE marker (id int PRIMARY KEY, note text)');
      await client.query(`INSERT INTO marker SELECT g, 'row ' || g FROM generate_series(1, ${MARKER_ROWS}) g`);
    });

    const grown = JSON.parse(ok(await runCli(['scale', 'count', NAME, '4', '--json'], { home, timeoutMs: 300_000 }), 'scale to 4').stdout) as ScaleResult;
    assert.deepEqual(grown.added, ['node4']);
    assert.equal(grown.status.members.length, 4);
    assert.equal(grown.status.leader, leader);
    assert.equal(grown.status.members.filter((m) => m.role === 'replica' && m.streaming).length, 3, JSON.stringify(grown.status.members));
    assert.match(grown.status.connectionString, /^postgresql:\/\/postgres@/, 'scale count --json carries no password');
    const grownWithSecrets = await clusterStatusOf(home, NAME);
    await waitUntil('node4 to have the marker rows', async () => (await countOn(grownWithSecrets, 'node4')) === MARKER_ROWS, 30_000);

    // Shrinking needs confirmation (no TTY here), and never takes the leader.
    const unconfirmed = await runCli(['scale', 'count', NAME, '2'], { home });
    assert.equal(unconfirmed.code, 2, unconfirmed.stderr);
    assert.match(unconfirmed.stderr, /without confirmation/);
    const leaderRemoval = await runCli(['scale', 'count', NAME, '3', '--node', leader, '--yes'], { home });
    assert.equal(leaderRemoval.code, 2, leaderRemoval.stderr);
    assert.match(leaderRemoval.stderr, /never removes the leader/);
    assert.match(leaderRemoval.stderr, /hint: switch over first/);
    assert.equal((await clusterStatusOf(home, NAME)).members.length, 4, 'refusals change nothing');

    const shrunk = JSON.parse(ok(await runCli(['scale', 'count', NAME, '2', '--yes', '--json'], { home, timeoutMs: 300_000 }), 'scale to 2').stdout) as ScaleResult;
    assert.equal(shrunk.removed.length, 2);
    const removed = shrunk.removed.map((r) => r.name);
    assert.ok(!removed.includes(leader), `the leader ${leader} was removed: ${removed.join(', ')}`);
    const after2 = await clusterStatusOf(home, NAME);
    assert.equal(after2.members.length, 2);
    assert.equal(after2.leader, leader, 'same leader');
    const replica = after2.members.find((m) => m.name !== leader);
    assert.ok(replica?.role === 'replica' && replica.streaming, JSON.stringify(after2.members));
    assert.equal(await countOn(after2, leader), MARKER_ROWS, 'same leader data');
    for (const r of shrunk.removed) {
      assert.ok(r.dataKeptAt !== null && existsSync(path.join(r.dataKeptAt, 'pgdata')), `data of ${r.name} kept`);
      assert.ok(!existsSync(path.join(home, 'clusters', NAME, 'nodes', r.name)));
    }
    const slots = await withNode(after2, leaderOf(after2), async (client) => (await client.query<{ slot_name: string }>('SELECT slot_name FROM pg_replication_slots ORDER BY 1')).rows.map((r) => r.slot_name));
    assert.deepEqual(slots, [replica.name], 'only the remaining replica has a slot');
    // The remaining replica still follows: a new write reaches it.
    await withNode(after2, leaderOf(after2), (client) => client.query(`INSERT INTO marker VALUES (${MARKER_ROWS + 1}, 'after shrinking')`));
    await waitUntil('the replica to replay the new row', async () => (await countOn(after2, replica.name)) === MARKER_ROWS + 1, 30_000);

    const kinds = (await eventsOf(home)).map((e) => `${e.kind}:${e.node}`);
    assert.ok(kinds.includes('member-added:node4'), kinds.join(' '));
    for (const name of removed) assert.ok(kinds.includes(`member-removed:${name}`), kinds.join(' '));
    assert.ok(readdirSync(path.join(home, 'clusters', NAME, 'removed')).length === 2);
  });

  void it('serves pgbench through PgBouncer after pooler enable, and stops it on pooler disable', async () => {
    const enabled = JSON.parse(ok(await runCli(['pooler', 'enable', NAME, '--json'], { home, timeoutMs: 120_000 }), 'pooler enable').stdout) as { pooler: PoolerStatus };
    assert.equal(enabled.pooler.enabled, true);
    assert.equal(enabled.pooler.poolMode, 'transaction');
    const pids = enabled.pooler.nodes.map((n) => n.pid);
    assert.ok(pids.every((p) => p !== null), JSON.stringify(enabled.pooler.nodes));
    if (process.getuid?.() === 0) for (const pid of pids) assert.notEqual(await uidOf(pid ?? 0), 0, 'pgbouncer never runs as root');

    const status = await clusterStatusOf(home, NAME);
    // pooler enable --json has the same string, without the password (status --show-secrets has it).
    assert.match(enabled.pooler.connectionString ?? '', /^postgresql:\/\/postgres@/);
    assert.equal(withoutPassword(status.pooler?.connectionString ?? ''), enabled.pooler.connectionString);
    assert.notEqual(status.pooler?.connectionString, enabled.pooler.connectionString);
    const text = ok(await runCli(['status', NAME], { home }), 'status').stdout;
    assert.match(text, /^pooler connection string: +postgresql:\/\/postgres:\*\*\*\*@/m);

    // pgbench through the pooler port of the replica's node (it reaches the leader through that node's leader port).
    const viaNode = enabled.pooler.nodes.find((n) => n.name !== status.leader) ?? enabled.pooler.nodes[0];
    assert.ok(viaNode?.port !== null && viaNode !== undefined);
    const pgbench = path.join(binDir, 'pgbench');
    // libpq over TLS to PgBouncer, verified against the cluster CA (PgBouncer serves the node certificate).
    const env = { PGPASSWORD: passwordOf(status), PGSSLMODE: 'verify-full', PGSSLROOTCERT: clusterCaFile(home, NAME) };
    const target = ['-h', viaNode.host, '-p', String(viaNode.port), '-U', 'postgres'];
    const init = await run(pgbench, [...target, '-i', '-s', '1', 'postgres'], env);
    assert.equal(init.code, 0, init.stderr);
    const bench = await run(pgbench, [...target, '-M', 'simple', '-c', '4', '-j', '2', '-t', '100', 'postgres'], env);
    assert.equal(bench.code, 0, bench.stderr + bench.stdout);
    assert.match(bench.stdout, /number of transactions actually processed: 400\/400/);
    assert.match(bench.stdout, /number of failed transactions: 0 /);
    // The rows landed on the leader.
    assert.equal(await withNode(status, leaderOf(status), async (c) => Number((await c.query<{ n: string }>('SELECT count(*) AS n FROM pgbench_history')).rows[0]?.n)), 400);

    // SCRAM through auth_query: a wrong password is refused.
    const wrong = new pg.Client(pgClientOptions(status, { host: viaNode.host, port: viaNode.port ?? 0 }, { password: 'not-the-password', connectionTimeoutMillis: 10_000 }));
    wrong.on('error', () => undefined);
    await assert.rejects(wrong.connect(), /password authentication failed|SASL|authentication/i);
    await wrong.end().catch(() => undefined);

    const disabled = JSON.parse(ok(await runCli(['pooler', 'disable', NAME, '--json'], { home, timeoutMs: 120_000 }), 'pooler disable').stdout) as { pooler: PoolerStatus };
    assert.equal(disabled.pooler.enabled, false);
    assert.ok(disabled.pooler.nodes.every((n) => n.pid === null));
    for (const pid of pids) assert.equal(isPidAlive(pid ?? 0), false, `pgbouncer ${pid ?? '?'} stopped`);
    const kinds = (await eventsOf(home)).map((e) => e.kind);
    assert.ok(kinds.includes('pooler-enabled') && kinds.includes('pooler-disabled'), kinds.join(' '));
  });

  void it('rolls every node onto the same bin dir with image update, and refuses another major version', async () => {
    const before = JSON.parse(ok(await runCli(['image', 'show', NAME, '--json'], { home }), 'image show').stdout) as ImageReport;
    assert.ok(before.members.every((m) => m.running !== null && m.running === m.installed && !m.restartPending), JSON.stringify(before.members));
    const leaderBefore = (await clusterStatusOf(home, NAME)).leader;

    // Another major version: refused before anything happens.
    const fake = path.join(home, 'fake-pg16-bin');
    await mkdir(fake);
    await writeFile(path.join(fake, 'postgres'), '#!/bin/sh\necho "postgres (PostgreSQL) 16.2"\n');
    await chmod(fake, 0o755);
    await chmod(path.join(fake, 'postgres'), 0o755);
    const refused = await runCli(['image', 'update', NAME, '--bin-dir', fake, '--yes'], { home });
    assert.equal(refused.code, 2, refused.stderr);
    assert.match(refused.stderr, /pg_upgrade is needed for a major upgrade/);
    assert.ok(!(await eventsOf(home)).some((e) => e.kind === 'image-update-started'), 'nothing started');

    const updated = JSON.parse(ok(await runCli(['image', 'update', NAME, '--bin-dir', binDir, '--yes', '--json'], { home, timeoutMs: 400_000 }), 'image update').stdout) as {
      leaderBefore: string;
      leaderAfter: string;
    };
    assert.equal(updated.leaderBefore, leaderBefore);
    assert.notEqual(updated.leaderAfter, leaderBefore, 'the rolling procedure switched over once');

    const afterReport = JSON.parse(ok(await runCli(['image', 'show', NAME, '--json'], { home }), 'image show').stdout) as ImageReport;
    for (const m of afterReport.members) {
      const was = before.members.find((b) => b.name === m.name);
      assert.ok(was?.runningSince !== null && m.runningSince !== null && Date.parse(m.runningSince) > Date.parse(was?.runningSince ?? ''), `${m.name} restarted: ${JSON.stringify({ was, m })}`);
      assert.equal(m.running, m.installed);
    }
    const status = await clusterStatusOf(home, NAME);
    assert.equal(status.members.filter((m) => m.role === 'replica' && m.streaming).length, 1);
    assert.equal(await countOn(status, leaderOf(status).name), MARKER_ROWS + 1, 'data survived the rolling update');
    const kinds = (await eventsOf(home)).map((e) => e.kind);
    const started = kinds.indexOf('image-update-started');
    assert.ok(started >= 0 && kinds.indexOf('switchover-completed', started) > started && kinds.indexOf('image-update-completed', started) > started, kinds.join(' '));
  });
});
