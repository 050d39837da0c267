/**
 * HA behaviour of a real 3-node cluster (PostgreSQL 15 + etcd) driven through bin/pgpilot:
 * kill -9 of the leader agent (failover, then rejoin by pg_rewind on the new timeline with every
 * replicated row kept), a planned switchover (no committed row lost, visible in `events`), a
 * frozen (SIGSTOPped) leader that is fenced and never writable again, a postgres-only crash
 * (restarted in place), a graceful stop of the leader agent that releases the key at once (its
 * supervisor then starts a new agent, which rejoins), and bad switchover targets.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import type { ClusterStatus, MemberStatus } from '../../src/operations/cluster-status.js';
import { EtcdDcs } from '../../src/dcs/etcd-dcs.js';
import { clusterKeys } from '../../src/dcs/keys.js';
import { isPidAlive, waitUntil } from '../helpers/wait.js';
import { killAgentForGood } from '../helpers/local-node.js';
import { makeTempHome, removeTempHome, runCli } from '../helpers/cli.js';
import { adminTls, callApi, clusterStatusOf, leaderOf, parseStatusJson, waitConverged, withNode } from '../helpers/cluster.js';
import { clientUrl } from '../../src/etcd/etcd-server.js';

const NAME = 'ha';
const statusOf = (home: string): Promise<ClusterStatus> => clusterStatusOf(home, NAME);

async function insertRows(status: ClusterStatus, from: number, count: number): Promise<void> {
  await withNode(status, leaderOf(status), (c) => c.query('INSERT INTO acked SELECT g FROM generate_series($1::int, $2::int) g', [from, from + count - 1]));
}

async function countRows(status: ClusterStatus): Promise<number> {
  return withNode(status, leaderOf(status), async (c) => Number((await c.query<{ n: string }>('SELECT count(*) AS n FROM acked')).rows[0]?.n));
}

/** True when the node accepts a write right now (it must never, once fenced). */
async function acceptsWrites(status: ClusterStatus, member: MemberStatus): Promise<boolean> {
  try {
    return await withNode(status, member, async (c) => {
      await c.query("SET statement_timeout = '1s'");
      await c.query('INSERT INTO acked VALUES (-1)');
      return true;
    });
  } catch {
    return false;
  }
}

void describe('HA: failover, rejoin, switchover, fencing', () => {
  let home = '';
  before(async () => {
    home = makeTempHome('ha');
    const created = await runCli(['create', NAME, '--json', '--show-secrets'], { home });
    assert.equal(created.code, 0, created.stderr);
    const status = parseStatusJson(home, created.stdout);
    await withNode(status, leaderOf(status), (c) => c.query('CREATE TABLE acked (id int)'));
  });
  after(async () => {
    // Thaw anything a failed test left stopped, then destroy (stops every process by PID).
    const status = await statusOf(home).catch(() => null);
    for (const member of status?.members ?? []) if (member.pid !== null) process.kill(member.pid, 'SIGCONT');
    if (process.env['PGPILOT_TEST_KEEP'] === '1') return; // leave the cluster for a post-mortem
    await runCli(['destroy', NAME, '--yes'], { home });
    await removeTempHome(home);
  });

  void it('kill -9 of the leader agent: a replica takes over, the old leader rejoins by rewind, no replicated row lost', async () => {
    let status = await waitConverged(home, NAME, null);
    const old = leaderOf(status);
    await insertRows(status, 1, 1000);
    // Rows acknowledged and replicated to every replica before the kill.
    await waitUntil('replicas to replay the rows', async () => {
      const s = await statusOf(home);
      return s.members.every((m) => m.lagBytes === 0);
    }, 30_000);
    await killAgentForGood(home, NAME, old.name, old.pid);
    await waitUntil('the old postmaster to die with its agent', () => Promise.resolve(!isPidAlive(old.postgresPid ?? -1)), 10_000);
    status = await waitUntil('a new writable leader', async () => {
      const s = await statusOf(home);
      const leader = s.members.find((m) => m.name === s.leader && m.role === 'primary');
      return leader !== undefined && leader.name !== old.name ? s : null;
    }, 60_000);
    assert.ok((status.timeline ?? 0) > (old.timeline ?? 0), 'a promotion starts a new timeline');
    await insertRows(status, 1001, 10);
    const started = await runCli(['start', NAME], { home });
    assert.equal(started.code, 0, started.stderr);
    status = await waitConverged(home, NAME, old.name);
    assert.equal(status.members.filter((m) => m.role === 'replica' && m.streaming).length, 2);
    assert.equal(await countRows(status), 1010);
    const rejoined = status.members.find((m) => m.name === old.name);
    assert.equal(rejoined?.timeline, status.timeline);
  });

  void it('switchover moves the lead with no committed row lost and shows in events', async () => {
    let status = await waitConverged(home, NAME, null);
    const old = leaderOf(status);
    const target = status.members.find((m) => m.role === 'replica');
    assert.ok(target);
    const before = await countRows(status);
    await insertRows(status, 5000, 100);
    const result = await runCli(['switchover', NAME, '--to', target.name], { home });
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, new RegExp(`switchover done: ${old.name} -> ${target.name}`));
    status = await waitConverged(home, NAME, old.name);
    assert.equal(status.leader, target.name);
    assert.equal(await countRows(status), before + 100);
    const events = await runCli(['events', NAME, '--json'], { home });
    assert.equal(events.code, 0, events.stderr);
    const kinds = (JSON.parse(events.stdout) as Array<{ kind: string; node: string }>).map((e) => `${e.kind}:${e.node}`);
    assert.ok(kinds.includes(`switchover-completed:${target.name}`), kinds.join(' '));
    assert.ok(kinds.includes(`demoted:${old.name}`), kinds.join(' '));
  });

  void it('a rolling restart restarts every postgres with one switchover and keeps every row', async () => {
    const before = await waitConverged(home, NAME, null);
    const rows = await countRows(before);
    const result = await runCli(['restart', NAME], { home });
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /rolling restart of ha done/);
    const after = await waitConverged(home, NAME, null);
    assert.notEqual(after.leader, before.leader, 'the lead moved once, by switchover');
    for (const member of after.members) {
      const old = before.members.find((m) => m.name === member.name);
      assert.notEqual(member.postgresPid, old?.postgresPid, `${member.name} was restarted`);
      assert.equal(member.pid, old?.pid, `${member.name}'s agent kept running`);
    }
    assert.equal(await countRows(after), rows);
    // The REST call behind it needs the cluster token.
    const member = after.members[0];
    assert.ok(member);
    assert.equal((await callApi(after, member, '/restart', { method: 'POST' })).status, 401);
    assert.equal((await callApi(after, member, '/restart', { method: 'POST', token: 'nope' })).status, 401);
  });

  void it('refuses bad switchover targets and changes nothing', async () => {
    const status = await waitConverged(home, NAME, null);
    const leader = leaderOf(status);
    const cases: Array<{ args: string[]; message: RegExp }> = [
      { args: ['switchover', NAME, '--to', 'node9'], message: /no node node9/ },
      { args: ['switchover', NAME, '--to', leader.name], message: /already the leader/ },
      { args: ['failover', NAME], message: /--yes/ },
      { args: ['switchover', 'nosuch'], message: /no cluster named "nosuch"/ },
    ];
    for (const c of cases) {
      const result = await runCli(c.args, { home, timeoutMs: 30_000 });
      assert.notEqual(result.code, 0, c.args.join(' '));
      assert.match(result.stderr, c.message);
      assert.match(result.stderr, /hint: /);
    }
    assert.equal((await statusOf(home)).leader, leader.name);
  });

  void it('a leader whose agent is frozen past the TTL is fenced and never writable again', async () => {
    let status = await waitConverged(home, NAME, null);
    const frozen = leaderOf(status);
    process.kill(frozen.pid ?? -1, 'SIGSTOP');
    try {
      // The watchdog kills its postmaster at the lease deadline, before anyone else may lead.
      await waitUntil('the frozen leader postmaster to be killed', () => Promise.resolve(!isPidAlive(frozen.postgresPid ?? -1)), 15_000, 100);
      status = await waitUntil('another node to lead', async () => {
        const s = await statusOf(home);
        const l = s.members.find((m) => m.name === s.leader && m.role === 'primary');
        return l !== undefined && l.name !== frozen.name ? s : null;
      }, 30_000);
    } finally {
      process.kill(frozen.pid ?? -1, 'SIGCONT');
    }
    // After thawing it must never take a write while another node leads.
    const deadline = Date.now() + 8_000;
    while (Date.now() < deadline) {
      assert.equal(await acceptsWrites(status, frozen), false, `${frozen.name} accepted a write after being replaced`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    status = await waitConverged(home, NAME, frozen.name);
    assert.notEqual(status.leader, frozen.name);
  });

  void it('a postgres-only crash on the leader is restarted in place', async () => {
    const status = await waitConverged(home, NAME, null);
    const leader = leaderOf(status);
    process.kill(leader.postgresPid ?? -1, 'SIGKILL');
    const after = await waitUntil('postgres back on the same leader', async () => {
      const s = await statusOf(home);
      const l = s.members.find((m) => m.name === s.leader && m.role === 'primary');
      return l !== undefined && l.postgresPid !== leader.postgresPid ? s : null;
    }, 30_000);
    assert.equal(after.leader, leader.name);
    assert.equal(after.timeline, status.timeline, 'restarted in place, no promotion');
    await insertRows(after, 9000, 1);
  });

  void it('SIGTERM to the leader agent stops postgres cleanly and releases the key at once; its supervisor starts a new agent that rejoins', async () => {
    const status = await waitConverged(home, NAME, null);
    const leader = leaderOf(status);
    const manifest = JSON.parse(await readFile(`${home}/clusters/${NAME}/cluster.json`, 'utf8')) as { etcd: { host: string; clientPort: number } };
    process.kill(leader.pid ?? -1, 'SIGTERM');
    await waitUntil('the agent to exit', () => Promise.resolve(!isPidAlive(leader.pid ?? -1)), 30_000, 50);
    assert.equal(isPidAlive(leader.postgresPid ?? -1), false);
    const dcs = new EtcdDcs({ endpoints: [clientUrl(manifest.etcd.host, manifest.etcd.clientPort)], tls: adminTls(home, NAME) });
    try {
      const holder = await dcs.get(clusterKeys(NAME).leader);
      assert.notEqual(holder, leader.name, 'the leader key must be gone when the agent exits');
    } finally {
      await dcs.close();
    }
    const next = await waitUntil('a replica to take over', async () => {
      const s = await statusOf(home);
      return s.members.some((m) => m.name === s.leader && m.role === 'primary' && m.name !== leader.name) ? s : null;
    }, 30_000);
    assert.notEqual(next.leader, leader.name);
    // Its supervisor starts a new agent (no `pgpilot start`), which rejoins as a replica.
    const back = await waitConverged(home, NAME, leader.name, 90_000);
    const again = back.members.find((m) => m.name === leader.name);
    assert.equal(again?.role, 'replica');
    assert.ok(again?.pid !== null && again?.pid !== leader.pid, `${leader.name} runs a new agent`);
  });
});
