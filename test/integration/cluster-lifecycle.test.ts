/**
 * The local provider end to end, through bin/pgpilot as a user runs it, with real PostgreSQL 15
 * and etcd: create a 3-node cluster, write through the writer connection string, read the rows
 * on every replica and through the reader string, stop and start (same roles, same data), kill
 * every process with -9 as a crashed machine would and start again from stale PID files, bad
 * input, a single-node cluster, and destroy leaving no process and no directory.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import type { ClusterStatus } from '../../src/operations/cluster-status.js';
import { isPidAlive, waitUntil } from '../helpers/wait.js';
import { killNodeLikeHostLoss, localNodePids } from '../helpers/local-node.js';
import { makeTempHome, removeTempHome, runCli } from '../helpers/cli.js';
import { callApi, clusterStatusOf, parseStatusJson, passwordOf, pgClientOptions } from '../helpers/cluster.js';

const PSQL = '/usr/lib/postgresql/15/bin/psql';

function psql(url: string, sql: string, env: NodeJS.ProcessEnv = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(PSQL, [url, '-X', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-c', sql], { timeout: 30_000, env: { ...process.env, ...env } }, (error, stdout, stderr) =>
      error === null ? resolve(stdout.trim()) : reject(new Error(`psql failed: ${stderr.trim()}`)),
    );
  });
}

async function queryNode(status: ClusterStatus, node: string, sql: string): Promise<pg.QueryResult<Record<string, unknown>>> {
  const member = status.members.find((m) => m.name === node);
  assert.ok(member, `member ${node}`);
  const client = new pg.Client(pgClientOptions(status, member, { connectionTimeoutMillis: 10_000 }));
  await client.connect();
  try {
    return await client.query<Record<string, unknown>>(sql);
  } finally {
    await client.end();
  }
}

const statusOf = clusterStatusOf;

function assertHealthy(status: ClusterStatus, replicas: number): void {
  const primaries = status.members.filter((m) => m.role === 'primary');
  assert.equal(primaries.length, 1, JSON.stringify(status.members));
  assert.equal(primaries[0]?.name, status.leader);
  const streaming = status.members.filter((m) => m.role === 'replica' && m.streaming);
  assert.equal(streaming.length, replicas, JSON.stringify(status.members));
  for (const member of streaming) assert.equal(typeof member.lagBytes, 'number');
}

void describe('local cluster lifecycle through bin/pgpilot', () => {
  let home = '';
  before(() => {
    home = makeTempHome('lifecycle');
  });
  after(async () => {
    for (const name of ['demo', 'solo', 'busy']) {
      if (existsSync(`${home}/clusters/${name}`)) await runCli(['destroy', name, '--yes'], { home });
    }
    await removeTempHome(home);
  });

  void it('creates, replicates, stops, starts, survives kill -9 of everything, and is destroyed cleanly', async () => {
    const created = await runCli(['create', 'demo', '--json', '--show-secrets'], { home });
    assert.equal(created.code, 0, created.stderr);
    assert.match(created.stderr, /node1: agent started/);
    let status = parseStatusJson(home, created.stdout);
    assertHealthy(status, 2);
    assert.equal(status.timeline, 1);
    const leader = status.leader;

    // REST API (HTTPS, verified against the cluster CA): /primary only on the leader, /replica
    // only on streaming replicas, /health on all; /status only with the cluster token.
    for (const member of status.members) {
      assert.ok(member.apiUrl.startsWith('https://'), member.apiUrl);
      const code = async (route: string) => (await callApi(status, member, route)).status;
      const isLeader = member.name === leader;
      assert.equal(await code('/health'), 200, `${member.name} /health`);
      assert.equal(await code('/primary'), isLeader ? 200 : 503, `${member.name} /primary`);
      await waitUntil(`${member.name} /replica`, async () => (await code('/replica')) === (isLeader ? 503 : 200), 15_000);
      assert.equal(await code('/status'), 401, `${member.name} /status without the token`);
      const body = JSON.parse((await callApi(status, member, '/status', { withToken: true })).text) as { member: { name: string; role: string } };
      assert.equal(body.member.name, member.name);
    }

    // Security baseline: secrets 0600, SCRAM only, loopback only, postgres not running as root.
    const fs = await import('node:fs/promises');
    assert.equal((await fs.stat(`${home}/clusters/demo/secrets.json`)).mode & 0o777, 0o600);
    const hba = await fs.readFile(`${home}/clusters/demo/nodes/node1/pgdata/pg_hba.conf`, 'utf8');
    const rules = hba.split('\n').filter((l) => l.trim() !== '' && !l.trim().startsWith('#'));
    assert.ok(rules.length > 0 && rules.every((l) => l.trim().endsWith('scram-sha-256') || /^hostnossl\s.*\sreject$/.test(l.trim())), hba);
    assert.ok(!rules.some((l) => /^host\s/.test(l)), 'every TCP line is hostssl');
    assert.equal((await queryNode(status, leader ?? 'node1', 'SHOW ssl')).rows[0]?.['ssl'], 'on');
    assert.equal((await queryNode(status, leader ?? 'node1', 'SHOW listen_addresses')).rows[0]?.['listen_addresses'], '127.0.0.1');
    for (const member of status.members) {
      const procStatus = await fs.readFile(`/proc/${member.postgresPid}/status`, 'utf8');
      const uid = Number(/^Uid:\s+(\d+)/m.exec(procStatus)?.[1]);
      assert.notEqual(uid, 0, `postgres of ${member.name} runs as root`);
    }

    // Write through the writer string (libpq multi-host, read-write), read on every replica.
    await psql(status.connectionString, 'CREATE TABLE items (id int PRIMARY KEY, note text); INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, 500) g');
    for (const replica of status.members.filter((m) => m.role === 'replica')) {
      await waitUntil(`rows on ${replica.name}`, async () => (await queryNode(status, replica.name, 'SELECT count(*)::int AS n FROM items')).rows[0]?.['n'] === 500, 30_000);
      const recovery = await queryNode(status, replica.name, 'SELECT pg_is_in_recovery() AS r');
      assert.equal(recovery.rows[0]?.['r'], true);
    }
    assert.equal(await psql(status.replicaConnectionString, 'SELECT count(*) FROM items'), '500');
    // The replica ports route on each agent's view of etcd (refreshed every loop) and fall back to
    // the leader while no replica qualifies in that view: allow the views a moment.
    await waitUntil('the reader string to reach a standby', async () => (await psql(status.replicaConnectionString, 'SELECT pg_is_in_recovery()')) === 't', 10_000);
    // A replica refuses writes; the writer string never lands on one.
    await assert.rejects(psql(status.replicaConnectionString, 'INSERT INTO items VALUES (999, null)'), /read-only/);

    // The human status hides the password.
    const human = await runCli(['status', 'demo'], { home });
    assert.equal(human.code, 0);
    assert.ok(!human.stdout.includes(passwordOf(status)), 'password must not be printed in the table');
    // So does the JSON without --show-secrets: the same strings, no password at all (and no other secret).
    const plain = await runCli(['status', 'demo', '--json'], { home });
    assert.equal(plain.code, 0, plain.stderr);
    const plainStatus = JSON.parse(plain.stdout) as ClusterStatus;
    const secrets = JSON.parse(readFileSync(`${home}/clusters/demo/secrets.json`, 'utf8')) as { superuser: { password: string }; replication: { password: string }; apiToken: string };
    for (const secret of [secrets.superuser.password, secrets.replication.password, secrets.apiToken]) {
      assert.ok(!plain.stdout.includes(secret) && !plain.stdout.includes(encodeURIComponent(secret)), 'status --json must carry no secret');
    }
    assert.equal(plainStatus.connectionString, status.connectionString.replace(`:${encodeURIComponent(secrets.superuser.password)}@`, '@'));
    assert.match(plainStatus.connectionString, /^postgresql:\/\/postgres@127\.0\.0\.1:\d+,/);
    assert.equal(await psql(plainStatus.connectionString, 'SELECT count(*) FROM items', { PGPASSWORD: secrets.superuser.password }), '500');

    // stop: every process goes; start: same leader, same timeline, data intact.
    const pids = status.members.flatMap((m) => [m.pid, m.postgresPid]).filter((p): p is number => p !== null);
    const stopped = await runCli(['stop', 'demo'], { home });
    assert.equal(stopped.code, 0, stopped.stderr);
    for (const pid of pids) assert.equal(isPidAlive(pid), false, `pid ${pid} still alive after stop`);
    const afterStop = await statusOf(home, 'demo');
    assert.equal(afterStop.etcd, 'stopped');
    assert.ok(afterStop.members.every((m) => m.role === 'stopped'));

    const started = await runCli(['start', 'demo', '--json', '--show-secrets'], { home });
    assert.equal(started.code, 0, started.stderr);
    status = parseStatusJson(home, started.stdout);
    assertHealthy(status, 2);
    assert.equal(status.leader, leader, 'the same node leads after stop + start');
    assert.equal(status.timeline, 1, 'no promotion happened');
    assert.equal(await psql(status.connectionString, 'SELECT count(*) FROM items'), '500');
    const again = await runCli(['start', 'demo'], { home });
    assert.equal(again.code, 0);
    assert.match(again.stdout, /already running/);

    // A crashed machine: kill -9 every process of every node (supervisor, agent, watchdog,
    // postgres) and etcd, PID files go stale.
    const manifest = JSON.parse(await (await import('node:fs/promises')).readFile(`${home}/clusters/demo/cluster.json`, 'utf8')) as {
      etcd: { pidFile: string };
    };
    const etcdPid = Number((await (await import('node:fs/promises')).readFile(manifest.etcd.pidFile, 'utf8')).trim());
    const victims = [...status.members.map((m) => m.pid), etcdPid].filter((p): p is number => p !== null);
    const postmasters = status.members.map((m) => m.postgresPid).filter((p): p is number => p !== null);
    const supervisors = status.members.map((m) => localNodePids(home, 'demo', m.name).supervisor).filter((p): p is number => p !== null);
    assert.equal(supervisors.length, 3, 'one supervisor per node');
    for (const member of status.members) await killNodeLikeHostLoss(home, 'demo', member.name);
    process.kill(etcdPid, 'SIGKILL');
    victims.push(...supervisors);
    await waitUntil('every process of demo to be gone', () => Promise.resolve([...victims, ...postmasters].every((p) => !isPidAlive(p))), 30_000);
    const restarted = await runCli(['start', 'demo', '--json', '--show-secrets'], { home });
    assert.equal(restarted.code, 0, restarted.stderr);
    status = parseStatusJson(home, restarted.stdout);
    assertHealthy(status, 2);
    assert.equal(status.leader, leader, 'the same node leads after a crash of every process');
    assert.equal(await psql(status.connectionString, 'SELECT count(*) FROM items'), '500');
    await psql(status.connectionString, 'INSERT INTO items VALUES (501, null)');

    // Bad input: one line of error, a hint, a non-zero exit, nothing changed.
    const taken = await runCli(['create', 'demo'], { home });
    assert.notEqual(taken.code, 0);
    assert.match(taken.stderr, /already exists/);
    assert.match(taken.stderr, /hint: /);
    const refused = await runCli(['destroy', 'demo'], { home });
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /--yes/);
    assertHealthy(await statusOf(home, 'demo'), 2);

    // destroy: no process, no directory.
    const finalPids = status.members.flatMap((m) => [m.pid, m.postgresPid]).filter((p): p is number => p !== null);
    const destroyed = await runCli(['destroy', 'demo', '--yes'], { home });
    assert.equal(destroyed.code, 0, destroyed.stderr);
    assert.equal(existsSync(`${home}/clusters/demo`), false);
    for (const pid of finalPids) assert.equal(isPidAlive(pid), false, `pid ${pid} survived destroy`);
    const gone = await runCli(['status', 'demo'], { home });
    assert.notEqual(gone.code, 0);
    assert.match(gone.stderr, /no cluster named "demo"/);
  });

  void it('rejects bad input with one error line, a hint and a non-zero exit', async () => {
    const cases: Array<{ args: string[]; message: RegExp }> = [
      { args: ['create', 'Bad_Name'], message: /invalid cluster name/ },
      { args: ['create', 'x', '--nodes', '0'], message: /invalid node count 0/ },
      { args: ['create', 'x', '--nodes', '10'], message: /invalid node count 10/ },
      { args: ['create', 'x', '--nodes', 'many'], message: /whole number/ },
      { args: ['create', 'x', '--home', '/proc/pgpilot-nope'], message: /cannot use \/proc\/pgpilot-nope/ },
      { args: ['status', 'nosuch'], message: /no cluster named "nosuch"/ },
      { args: ['start', 'nosuch'], message: /no cluster named "nosuch"/ },
      { args: ['destroy', 'nosuch', '--yes'], message: /no cluster named "nosuch"/ },
      { args: ['connect', 'nosuch'], message: /no cluster named "nosuch"/ },
      { args: ['frobnicate'], message: /unknown command/ },
    ];
    for (const c of cases) {
      const result = await runCli(c.args, { home, timeoutMs: 30_000 });
      assert.notEqual(result.code, 0, `${c.args.join(' ')} should fail`);
      assert.match(result.stderr, c.message, c.args.join(' '));
      assert.match(result.stderr, /hint: /, `${c.args.join(' ')} should print a hint`);
      assert.ok(!result.stderr.includes('    at '), `${c.args.join(' ')} printed a stack trace`);
    }
    assert.equal(existsSync(`${home}/clusters/x`), false, 'nothing half-made');
  });

  void it('runs a single node for development, with a warning', async () => {
    const created = await runCli(['create', 'solo', '--nodes', '1', '--json', '--show-secrets'], { home });
    assert.equal(created.code, 0, created.stderr);
    assert.match(created.stderr, /warning: a single node .* development only/);
    const status = parseStatusJson(home, created.stdout);
    assertHealthy(status, 0);
    assert.equal(await psql(status.connectionString, 'SELECT 1'), '1');
    const destroyed = await runCli(['destroy', 'solo', '--yes'], { home });
    assert.equal(destroyed.code, 0, destroyed.stderr);
  });

  void it('reports a busy port on start and leaves the cluster stopped', async () => {
    const created = await runCli(['create', 'busy', '--nodes', '1', '--json', '--show-secrets'], { home });
    assert.equal(created.code, 0, created.stderr);
    const status = parseStatusJson(home, created.stdout);
    assert.equal((await runCli(['stop', 'busy'], { home })).code, 0);
    const net = await import('node:net');
    const blocker = net.createServer();
    const port = status.members[0]?.port ?? 0;
    await new Promise<void>((resolve) => blocker.listen(port, '127.0.0.1', resolve));
    try {
      const start = await runCli(['start', 'busy'], { home });
      assert.notEqual(start.code, 0);
      assert.match(start.stderr, new RegExp(`port ${port} .* already in use`));
      assert.match(start.stderr, /hint: /);
      const after = await statusOf(home, 'busy');
      assert.ok(after.members.every((m) => m.role === 'stopped') && after.etcd === 'stopped', JSON.stringify(after));
    } finally {
      await new Promise<void>((resolve) => blocker.close(() => resolve()));
    }
    assert.equal((await runCli(['destroy', 'busy', '--yes'], { home })).code, 0);
  });
});
