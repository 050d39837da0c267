/**
 * The built-in proxy, end to end with real PostgreSQL and etcd: a client that opens a NEW
 * connection through one node's leader port every 50 ms and writes a row sees zero failed
 * connections across `bin/pgpilot switchover` (the proxy holds new connections during the
 * hand-over; the measured pause is printed), and after `kill -9` of the leader's agent the same
 * kind of client gets writes through again by itself. Also: the replica port lands on a standby,
 * status reports the proxy counters, the HAProxy processes behind the ports do not run as root
 * (as root: as the haproxy OS user), and neither they nor postgres inherit the operator's
 * credentials (AWS_*, PG*), which the agents that started them do have.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import type { ClusterStatus } from '../../src/operations/cluster-status.js';
import { isPidAlive, waitUntil } from '../helpers/wait.js';
import { killAgentForGood } from '../helpers/local-node.js';
import { makeTempHome, removeTempHome, runCli } from '../helpers/cli.js';
import { clusterStatusOf, parseStatusJson, pgAccess, pgClientOptions } from '../helpers/cluster.js';
import { writerLoop } from '../helpers/writer-loop.js';

const NAME = 'route';
/** In the environment `create` runs with (so the agents have them); must not reach the data plane. */
const OPERATOR_ENV = { AWS_SECRET_ACCESS_KEY: 'operator-aws-secret-for-routing-test', PGSSLCERT: '/nonexistent/operator-cert-for-routing-test.crt' };

/** `ps -e -o user=,pid=,args=` as rows. */
function processTable(): Promise<Array<{ user: string; pid: number; args: string }>> {
  return new Promise((resolve, reject) => {
    execFile('ps', ['-e', '-ww', '-o', 'user:32=,pid=,args='], { timeout: 10_000 }, (error, stdout) => {
      if (error !== null) return reject(new Error(`ps failed: ${error.message}`));
      resolve(
        stdout
          .split('\n')
          .map((line) => /^\s*(\S+)\s+(\d+)\s+(.*)$/.exec(line))
          .filter((m): m is RegExpExecArray => m !== null)
          .map((m) => ({ user: m[1] ?? '', pid: Number(m[2]), args: m[3] ?? '' })),
      );
    });
  });
}

async function environOf(pid: number): Promise<string[]> {
  return (await readFile(`/proc/${pid}/environ`, 'utf8')).split('\0').filter((e) => e.length > 0);
}
const statusOf = (home: string): Promise<ClusterStatus> => clusterStatusOf(home, NAME);

void describe('built-in proxy: stable endpoint through switchover and failover', () => {
  let home = '';
  before(async () => {
    home = makeTempHome('route');
    const created = await runCli(['create', NAME, '--json', '--show-secrets'], { home, env: OPERATOR_ENV });
    assert.equal(created.code, 0, created.stderr);
    const status = parseStatusJson(home, created.stdout);
    const leader = status.members.find((m) => m.name === status.leader);
    const client = new pg.Client(pgClientOptions(status, { host: '127.0.0.1', port: leader?.proxyPort ?? 0 }, { connectionTimeoutMillis: 10_000 }));
    await client.connect();
    await client.query('CREATE TABLE writes (id bigserial PRIMARY KEY, at timestamptz DEFAULT now())');
    await client.end();
  });
  after(async () => {
    if (process.env['PGPILOT_TEST_KEEP'] === '1') return;
    await runCli(['destroy', NAME, '--yes'], { home });
    await removeTempHome(home);
  });

  void it('runs HAProxy as an unprivileged user and keeps the operator environment from HAProxy and postgres', async () => {
    const status = await statusOf(home);
    const root = process.getuid?.() === 0;
    const table = await processTable();
    for (const member of status.members) {
      const configFile = `${home}/clusters/${NAME}/nodes/${member.name}/haproxy-data-plane.cfg`;
      const haproxies = table.filter((p) => p.args.includes('haproxy') && p.args.includes(configFile));
      assert.ok(haproxies.length > 0, `no haproxy of ${member.name} in ps: ${table.filter((p) => p.args.includes('haproxy')).map((p) => `${p.user} ${p.pid} ${p.args}`).join('; ')}`);
      for (const p of haproxies) {
        assert.notEqual(p.user, 'root', `haproxy ${p.pid} of ${member.name} runs as root: ${p.args}`);
        if (root) assert.equal(p.user, 'haproxy', `haproxy ${p.pid} of ${member.name}`);
      }
      assert.ok(member.pid !== null && member.postgresPid !== null, `${member.name} has no agent or postgres pid`);
      // The agent has the operator's variables (so the check below can fail) ...
      const agentEnv = await environOf(member.pid);
      for (const name of Object.keys(OPERATOR_ENV)) assert.ok(agentEnv.some((e) => e.startsWith(`${name}=`)), `the agent of ${member.name} lacks ${name}`);
      // ... its data plane has none of them, and no other AWS_* either.
      for (const pid of [member.postgresPid, ...haproxies.map((p) => p.pid)]) {
        const env = await environOf(pid);
        const leaked = env.filter((e) => e.startsWith('AWS_') || Object.keys(OPERATOR_ENV).some((name) => e.startsWith(`${name}=`)));
        assert.deepEqual(leaked, [], `process ${pid} of ${member.name} inherited operator variables`);
        assert.ok(!env.includes('HOME=/root'), `process ${pid} of ${member.name} has root's HOME`);
      }
    }
  });

  void it('routes the leader port to the primary and the replica port to a standby', async () => {
    const status = await statusOf(home);
    for (const member of status.members) {
      for (const [port, recovery] of [
        [member.proxyPort, false],
        [member.replicaProxyPort, true],
      ] as const) {
        // Each agent routes on its own view of etcd, refreshed every loop: allow it one to catch up.
        await waitUntil(`${member.name} port ${port ?? '-'} to reach a ${recovery ? 'standby' : 'primary'}`, async () => {
          const client = new pg.Client(pgClientOptions(status, { host: member.host, port: port ?? 0 }));
          await client.connect();
          const row = (await client.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r')).rows[0];
          await client.end();
          return row?.r === recovery;
        }, 10_000);
      }
    }
    // Each agent publishes its proxy counters with its member record, once per loop.
    await waitUntil('every node to report two proxied connections', async () => {
      const s = await statusOf(home);
      return s.members.every((m) => m.proxy !== null && m.proxy.total >= 2 && m.proxy.failed === 0);
    }, 10_000);
  });

  void it('a new connection every 50 ms sees zero failed connections across a switchover', async () => {
    const status = await statusOf(home);
    const via = status.members.find((m) => m.name !== status.leader);
    assert.ok(via);
    const loop = writerLoop(via.proxyPort ?? 0, pgAccess(status));
    await waitUntil('10 writes before the switchover', () => Promise.resolve(loop.okSoFar() >= 10), 15_000, 50);
    const switched = await runCli(['switchover', NAME], { home });
    assert.equal(switched.code, 0, switched.stderr);
    const mark = loop.okSoFar();
    await waitUntil('10 more writes after the switchover', () => Promise.resolve(loop.okSoFar() >= mark + 10), 15_000, 50);
    const result = await loop.stop();
    console.log(`switchover through the proxy: ${result.ok} writes, ${result.failed} failed, longest pause ${result.maxGapMs} ms`);
    assert.equal(result.failed, 0, `failed connections: ${result.errors.join(' | ')}`);
    assert.ok(result.ok > 20, `only ${result.ok} writes`);
    const after = await statusOf(home);
    assert.notEqual(after.leader, status.leader);
  });

  void it('after kill -9 of the leader agent, the same client gets writes through again by itself', async () => {
    const status = await statusOf(home);
    const leader = status.members.find((m) => m.name === status.leader);
    const via = status.members.find((m) => m.name !== status.leader);
    assert.ok(leader && via);
    const loop = writerLoop(via.proxyPort ?? 0, pgAccess(status));
    await waitUntil('10 writes before the kill', () => Promise.resolve(loop.okSoFar() >= 10), 15_000, 50);
    await killAgentForGood(home, NAME, leader.name, leader.pid);
    await waitUntil('the old postmaster to die', () => Promise.resolve(!isPidAlive(leader.postgresPid ?? -1)), 10_000);
    const okBefore = (await loop.stop()).ok;
    const again = writerLoop(via.proxyPort ?? 0, pgAccess(status));
    const result = await waitUntil(
      'writes through the proxy again',
      async () => {
        const s = await statusOf(home);
        return s.leader !== null && s.leader !== leader.name ? s : null;
      },
      60_000,
      250,
    ).then(async () => {
      await waitUntil('10 writes through the new leader', () => Promise.resolve(again.okSoFar() >= 10), 30_000, 50);
      return again.stop();
    });
    console.log(`failover through the proxy: ${okBefore} writes before, ${result.ok} after, ${result.failed} failed, longest pause ${result.maxGapMs} ms`);
    assert.ok(result.ok > 0, `no write went through after the failover: ${result.errors.join(' | ')}`);
  });
});
