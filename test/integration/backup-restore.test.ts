/**
 * Backups end to end through bin/pgpilot, on real clusters: continuous WAL archiving, a base
 * backup, a failover (kill -9 of the leader), then point-in-time restores into NEW clusters that
 * hold exactly the rows committed before the target, with streaming replicas; `backup verify`;
 * bad input that must change nothing; a flipped byte in a stored backup file that verify reports
 * and restore refuses; and the same cycle against a real S3-compatible server (s3rver).
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { open } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ClusterStatus } from '../../src/operations/cluster-status.js';
import { findFreePorts } from '../../src/shared/ports.js';
import { makeTempHome, removeTempHome, runCli } from '../helpers/cli.js';
import { clusterStatusOf, leaderOf, parseStatusJson, waitConverged, withNode } from '../helpers/cluster.js';
import { startS3Server, type S3TestServer } from '../helpers/s3-server.js';
import { isPidAlive, waitUntil } from '../helpers/wait.js';
import { killAgentForGood } from '../helpers/local-node.js';

interface BackupJson {
  id: string;
  status: string;
  files: Array<{ name: string }>;
}

async function insert(status: ClusterStatus, id: number): Promise<void> {
  await withNode(status, leaderOf(status), (c) => c.query('INSERT INTO t (id) VALUES ($1)', [id]));
}

/** The server's clock right now (a commit that returned before this call has an earlier timestamp). */
async function serverNow(status: ClusterStatus): Promise<string> {
  return withNode(status, leaderOf(status), async (c) => (await c.query<{ now: string }>("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS now")).rows[0]?.now ?? '');
}

async function idsOn(status: ClusterStatus): Promise<number[]> {
  return withNode(status, leaderOf(status), async (c) => (await c.query<{ id: number }>('SELECT id FROM t ORDER BY id')).rows.map((r) => r.id));
}

function clusterDir(home: string, name: string): string {
  return path.join(home, 'clusters', name);
}

async function destroyAll(home: string, names: readonly string[]): Promise<void> {
  for (const name of names) if (existsSync(clusterDir(home, name))) await runCli(['destroy', name, '--yes'], { home });
}

void describe('backups: PITR across a failover, verify, bad input, corruption', () => {
  let home = '';
  const created = ['src', 'at-t2', 'at-t1'];
  let backupId = '';
  before(async () => {
    home = makeTempHome('backup');
    const result = await runCli(['create', 'src', '--json', '--show-secrets'], { home });
    assert.equal(result.code, 0, result.stderr);
    const status = parseStatusJson(home, result.stdout);
    await withNode(status, leaderOf(status), (c) => c.query('CREATE TABLE t (id int PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())'));
  });
  after(async () => {
    if (process.env['PGPILOT_TEST_KEEP'] === '1') return;
    await destroyAll(home, [...created, 'bad', 'corrupt']);
    await removeTempHome(home);
  });

  const targets: { t1: string; t2: string } = { t1: '', t2: '' };

  void it('archives WAL from every member, takes a base backup, survives a failover', async () => {
    let status = await waitConverged(home, 'src', null);
    await insert(status, 1);
    const backup = await runCli(['backup', 'create', 'src', '--json'], { home });
    assert.equal(backup.code, 0, backup.stderr);
    assert.match(backup.stderr, /copying from node\d \(replica/, 'the copy comes from a healthy replica');
    const record = JSON.parse(backup.stdout) as BackupJson;
    assert.equal(record.status, 'complete');
    assert.deepEqual(record.files.map((f) => f.name).sort(), ['backup_manifest', 'base.tar.gz', 'pg_wal.tar.gz']);
    backupId = record.id;

    await insert(status, 2);
    targets.t1 = await serverNow(status);
    await insert(status, 3);

    // An unplanned failover: the leader's agent dies with -9 (its watchdog kills postgres).
    const old = leaderOf(status);
    await killAgentForGood(home, 'src', old.name, old.pid);
    await waitUntil('the old postmaster to die', () => Promise.resolve(!isPidAlive(old.postgresPid ?? -1)), 15_000);
    status = await waitUntil('a new writable leader', async () => {
      const s = await clusterStatusOf(home, 'src');
      const leader = s.members.find((m) => m.name === s.leader && m.role === 'primary');
      return leader !== undefined && leader.name !== old.name ? s : null;
    }, 60_000);
    assert.ok((status.timeline ?? 0) >= 2, 'the promotion started a new timeline');

    await insert(status, 4);
    targets.t2 = await serverNow(status);
    await insert(status, 5);
    assert.deepEqual(await idsOn(status), [1, 2, 3, 4, 5]);

    const list = await runCli(['backup', 'list', 'src', '--json'], { home });
    assert.equal(list.code, 0, list.stderr);
    const listing = JSON.parse(list.stdout) as { backups: BackupJson[]; wal: { files: number } };
    assert.deepEqual(listing.backups.map((b) => b.id), [backupId]);
    assert.ok(listing.wal.files > 0, 'WAL is archived');
    const shown = await runCli(['status', 'src'], { home });
    assert.match(shown.stdout, /WAL archive: +ok, last [0-9A-F]{8,24}(\.history|\.partial)? at /);
  });

  void it('point-in-time restore after the failover: exactly the rows committed before the target, replicas stream', async () => {
    const restored = await runCli(['create', 'at-t2', '--nodes', '2', '--from-backup', 'src', '--target-time', targets.t2, '--json', '--show-secrets'], { home });
    assert.equal(restored.code, 0, restored.stderr);
    const status = parseStatusJson(home, restored.stdout);
    assert.deepEqual(await idsOn(status), [1, 2, 3, 4], 'row 5 was committed after the target; rows 3 and 4 span the failover');
    const converged = await waitConverged(home, 'at-t2', null);
    assert.equal(converged.members.filter((m) => m.role === 'replica' && m.streaming).length, 1);
    // The replica really holds the data.
    const replica = converged.members.find((m) => m.role === 'replica');
    assert.ok(replica);
    await waitUntil('the replica to hold rows 1-4', async () => {
      const n = await withNode(converged, replica, async (c) => Number((await c.query<{ n: string }>('SELECT count(*) AS n FROM t')).rows[0]?.n));
      return n === 4 ? true : null;
    }, 30_000);
    // The source was not touched.
    assert.deepEqual(await idsOn(await clusterStatusOf(home, 'src')), [1, 2, 3, 4, 5]);
    const events = await runCli(['events', 'at-t2'], { home });
    assert.match(events.stdout, new RegExp(`restored from backup ${backupId} of src`));
  });

  void it('point-in-time restore before the failover (timeline 1 only)', async () => {
    const restored = await runCli(['create', 'at-t1', '--nodes', '1', '--from-backup', 'src', '--target-time', targets.t1, '--json', '--show-secrets'], { home });
    assert.equal(restored.code, 0, restored.stderr);
    assert.deepEqual(await idsOn(parseStatusJson(home, restored.stdout)), [1, 2]);
  });

  void it('backup verify passes on an intact backup', async () => {
    const verified = await runCli(['backup', 'verify', 'src', backupId], { home });
    assert.equal(verified.code, 0, verified.stderr);
    assert.match(verified.stdout, /verified/);
    assert.match(verified.stderr, /pg_verifybackup/);
  });

  void it('bad input is refused with a hint and creates nothing', async () => {
    const cases: Array<{ args: string[]; pattern: RegExp }> = [
      { args: ['--backup', '20200101T000000Z'], pattern: /no backup "20200101T000000Z"/ },
      { args: ['--target-time', '2000-01-01T00:00:00Z'], pattern: /before the oldest backup/ },
      { args: ['--target-time', '2100-01-01T00:00:00Z'], pattern: /after the newest archived WAL/ },
      { args: ['--target-time', 'yesterday'], pattern: /invalid --target-time/ },
      { args: ['--target-time', targets.t2, '--target-lsn', '0/3000000'], pattern: /cannot be used together/ },
    ];
    for (const c of cases) {
      const result = await runCli(['create', 'bad', '--from-backup', 'src', ...c.args], { home });
      assert.equal(result.code, 2, `${c.args.join(' ')}: ${result.stderr}`);
      assert.match(result.stderr, c.pattern);
      assert.match(result.stderr, /^hint: /m);
      assert.equal(existsSync(clusterDir(home, 'bad')), false, 'nothing was created');
    }
    const [port] = await findFreePorts(1);
    const unreachable = await runCli(['create', 'bad', '--from-backup', 'src', '--backup-store', `s3://nobody/x?endpoint=http://127.0.0.1:${port ?? 1}`], {
      home,
      env: { AWS_ACCESS_KEY_ID: 'k', AWS_SECRET_ACCESS_KEY: 's' },
      timeoutMs: 60_000,
    });
    assert.notEqual(unreachable.code, 0);
    assert.match(unreachable.stderr, /error: .*(unavailable|unreachable|cannot|ECONNREFUSED)/i);
    assert.equal(existsSync(clusterDir(home, 'bad')), false);
    const unknown = await runCli(['backup', 'verify', 'src', 'nope'], { home });
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /no backup "nope"/);
  });

  void it('a flipped byte in a stored backup file: verify reports it, restore refuses it', async () => {
    const file = path.join(clusterDir(home, 'src'), 'backups', 'src', 'basebackups', backupId, 'base.tar.gz');
    const handle = await open(file, 'r+');
    try {
      const { size } = await handle.stat();
      const at = Math.floor(size / 2);
      const byte = Buffer.alloc(1);
      await handle.read(byte, 0, 1, at);
      byte[0] = (byte[0] ?? 0) ^ 0xff;
      await handle.write(byte, 0, 1, at);
    } finally {
      await handle.close();
    }
    const verified = await runCli(['backup', 'verify', 'src', backupId], { home });
    assert.equal(verified.code, 1, verified.stdout);
    assert.match(verified.stdout, /base\.tar\.gz: checksum mismatch/);
    assert.match(verified.stderr, /error: backup .* is damaged/);

    const restored = await runCli(['create', 'corrupt', '--nodes', '1', '--from-backup', 'src', '--backup', backupId], { home });
    assert.notEqual(restored.code, 0);
    assert.match(restored.stderr, /failed verification: base\.tar\.gz: checksum mismatch/);
    assert.equal(existsSync(clusterDir(home, 'corrupt')), false, 'a refused restore leaves no cluster behind');
  });
});

void describe('backups on S3 (a real local S3-compatible server)', () => {
  let home = '';
  let s3: S3TestServer | null = null;
  before(async () => {
    home = makeTempHome('backup-s3');
    s3 = await startS3Server({ bucket: 'pgpilot-backups' });
  });
  after(async () => {
    if (process.env['PGPILOT_TEST_KEEP'] === '1') return;
    await destroyAll(home, ['s3src', 's3dst']);
    await removeTempHome(home);
    await s3?.stop();
  });

  void it('archives and backs up to S3 and restores a new cluster from it', async () => {
    assert.ok(s3 !== null);
    const env = { AWS_ACCESS_KEY_ID: s3.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.secretAccessKey };
    const created = await runCli(['create', 's3src', '--nodes', '1', '--json', '--show-secrets'], { home });
    assert.equal(created.code, 0, created.stderr);
    const status = parseStatusJson(home, created.stdout);
    const configured = await runCli(['backup', 'config', 's3src', '--store', s3.url('team-a'), '--json'], { home, env });
    assert.equal(configured.code, 0, configured.stderr);
    assert.match((JSON.parse(configured.stdout) as { store: string }).store, /^s3:\/\/pgpilot-backups\/team-a\?endpoint=/);

    await withNode(status, leaderOf(status), (c) => c.query('CREATE TABLE t (id int PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())'));
    await insert(status, 1);
    const backup = await runCli(['backup', 'create', 's3src', '--json'], { home });
    assert.equal(backup.code, 0, backup.stderr);
    await insert(status, 2);
    // WAL goes to S3 now: close the current segment and wait until the archive has it.
    const segment = await withNode(status, leaderOf(status), async (c) => (await c.query<{ name: string }>('SELECT pg_walfile_name(pg_switch_wal()) AS name')).rows[0]?.name);
    await waitUntil(`${segment ?? '?'} archived in S3`, async () => {
      const list = await runCli(['backup', 'list', 's3src', '--json'], { home });
      const listing = JSON.parse(list.stdout) as { store: string; wal: { newest: string | null } };
      return listing.store.startsWith('s3://') && listing.wal.newest !== null && listing.wal.newest >= (segment ?? 'Z') ? true : null;
    }, 60_000);

    const restored = await runCli(['create', 's3dst', '--nodes', '1', '--from-backup', 's3src', '--json', '--show-secrets'], { home });
    assert.equal(restored.code, 0, restored.stderr);
    assert.deepEqual(await idsOn(parseStatusJson(home, restored.stdout)), [1, 2]);
    const verified = await runCli(['backup', 'verify', 's3src', (JSON.parse(backup.stdout) as BackupJson).id], { home });
    assert.equal(verified.code, 0, verified.stderr);
  });
});
