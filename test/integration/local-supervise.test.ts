/**
 * Each node of a local cluster runs under its own supervisor (`pgpilot node run --config`): a
 * leader agent killed with -9 is restarted by its supervisor without `pgpilot start` and the
 * cluster is ready again; a replica node killed like a host loss (supervisor, agent, watchdog,
 * postmaster together) stays down until `pgpilot start`; an agent without a supervisor (as an older
 * pgpilot started them) is left alone by `start` and stopped by `stop`; `stop` leaves no recorded
 * process running.
 * `after` destroys the cluster (every process by recorded PID) and removes the home, even on failure.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSync, openSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ClusterStatus } from '../../src/operations/cluster-status.js';
import { makeTempHome, REPO_ROOT, removeTempHome, runCli } from '../helpers/cli.js';
import { clusterStatusOf, leaderOf, parseStatusJson } from '../helpers/cluster.js';
import { killAgentForGood, killNodeLikeHostLoss, localNodePids } from '../helpers/local-node.js';
import { isPidAlive, waitUntil } from '../helpers/wait.js';

const NAME = 'sup';

function describeMembers(status: ClusterStatus): string {
  return status.members.map((m) => `${m.name} ${m.role}/${m.state}${m.streaming ? ' streaming' : ''} pid ${m.pid ?? '-'}`).join(', ');
}

function isReadyStatus(status: ClusterStatus): boolean {
  const primaries = status.members.filter((m) => m.role === 'primary');
  return primaries.length === 1 && primaries[0]?.name === status.leader && status.members.filter((m) => m.role === 'replica' && m.streaming).length === status.members.length - 1;
}

void describe('local nodes under supervisors', () => {
  let home = '';
  before(() => {
    home = makeTempHome('supervise');
  });
  after(async () => {
    if (process.env['PGPILOT_TEST_KEEP'] === '1') return;
    await runCli(['destroy', NAME, '--yes'], { home });
    await removeTempHome(home);
  });

  void it('restarts a killed agent by itself; a host loss stays down until start; stop leaves nothing', async () => {
    const created = await runCli(['create', NAME, '--json', '--show-secrets'], { home });
    assert.equal(created.code, 0, created.stderr);
    let status = parseStatusJson(home, created.stdout);
    assert.ok(isReadyStatus(status), describeMembers(status));
    // One supervisor per node, each the parent of that node's agent (status `pid`).
    for (const member of status.members) {
      const pids = localNodePids(home, NAME, member.name);
      assert.ok(pids.supervisor !== null, `${member.name}: no live supervisor`);
      assert.equal(pids.agent, member.pid, `${member.name}: status pid is the agent's`);
    }

    // kill -9 of the leader's agent: its supervisor starts a new one, no `pgpilot start`.
    const leader = leaderOf(status);
    const supervisorBefore = localNodePids(home, NAME, leader.name).supervisor;
    process.kill(leader.pid ?? -1, 'SIGKILL');
    let last = '';
    status = await waitUntil(
      () => `a new agent on ${leader.name} and a ready cluster (last: ${last})`,
      async () => {
        const s = await clusterStatusOf(home, NAME);
        last = describeMembers(s);
        const again = s.members.find((m) => m.name === leader.name);
        return again?.pid !== null && again?.pid !== undefined && again.pid !== leader.pid && isReadyStatus(s) ? s : null;
      },
      90_000,
      500,
    );
    assert.equal(localNodePids(home, NAME, leader.name).supervisor, supervisorBefore, 'the same supervisor restarted the agent');
    assert.equal(isPidAlive(leader.pid ?? -1), false);

    // Host loss of a replica: every process of the node at once; nothing brings it back.
    const replica = status.members.find((m) => m.name !== status.leader);
    assert.ok(replica);
    const killed = await killNodeLikeHostLoss(home, NAME, replica.name);
    assert.ok(killed.length >= 4, `supervisor, agent, watchdog and postmaster at least: ${killed.join(',')}`);
    assert.ok(killed.includes(replica.postgresPid ?? -1), 'the postmaster was among them');
    status = await waitUntil(
      () => `${replica.name} to show stopped (last: ${last})`,
      async () => {
        const s = await clusterStatusOf(home, NAME);
        last = describeMembers(s);
        return s.members.find((m) => m.name === replica.name)?.role === 'stopped' ? s : null;
      },
      30_000,
      500,
    );
    // Watched for 3 s, it stays down (a supervisor would have restarted the agent within 1 s).
    const watchUntilMs = Date.now() + 3_000;
    while (Date.now() < watchUntilMs) {
      const pidsDown = localNodePids(home, NAME, replica.name);
      assert.deepEqual([pidsDown.supervisor, pidsDown.agent], [null, null], `${replica.name} stays down`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    assert.equal((await clusterStatusOf(home, NAME)).members.find((m) => m.name === replica.name)?.role, 'stopped');

    const started = await runCli(['start', NAME, '--json', '--show-secrets'], { home });
    assert.equal(started.code, 0, started.stderr);
    status = parseStatusJson(home, started.stdout);
    assert.ok(isReadyStatus(status), describeMembers(status));
    assert.ok(localNodePids(home, NAME, replica.name).supervisor !== null, `${replica.name} is supervised again`);

    // An agent started by an older pgpilot (no supervisor): `start` leaves it as it is (no second
    // agent), `stop` stops it by its recorded PID.
    const legacy = status.members.find((m) => m.name !== status.leader);
    assert.ok(legacy);
    await killAgentForGood(home, NAME, legacy.name, legacy.pid);
    const nodeDir = path.join(home, 'clusters', NAME, 'nodes', legacy.name);
    const out = openSync(path.join(nodeDir, 'agent.out'), 'a');
    const bare = spawn(process.execPath, [path.join(REPO_ROOT, 'dist', 'src', 'bin', 'cli.js'), 'agent', '--config', path.join(nodeDir, 'agent.json')], {
      detached: true,
      stdio: ['ignore', out, out],
      cwd: nodeDir,
    });
    bare.unref();
    closeSync(out);
    assert.ok(bare.pid !== undefined);
    writeFileSync(path.join(nodeDir, 'agent.pid'), `${bare.pid}\n`);
    status = await waitUntil(
      () => `${legacy.name}'s unsupervised agent to rejoin (last: ${last})`,
      async () => {
        const s = await clusterStatusOf(home, NAME);
        last = describeMembers(s);
        return s.members.find((m) => m.name === legacy.name)?.pid === bare.pid && isReadyStatus(s) ? s : null;
      },
      90_000,
      500,
    );
    const noop = await runCli(['start', NAME], { home });
    assert.equal(noop.code, 0, noop.stderr);
    assert.match(noop.stdout, /already running/);
    assert.deepEqual(localNodePids(home, NAME, legacy.name).supervisor, null);
    assert.equal(localNodePids(home, NAME, legacy.name).agent, bare.pid);

    // stop: every recorded process of every node is gone.
    const recorded = status.members.flatMap((m) => {
      const pids = localNodePids(home, NAME, m.name);
      return [pids.supervisor, pids.agent, ...pids.descendants].filter((p): p is number => p !== null);
    });
    assert.ok(recorded.length >= 11, `3 x (agent, watchdog, postmaster) and 2 supervisors at least: ${recorded.join(',')}`);
    assert.ok(recorded.includes(bare.pid), 'the unsupervised agent is among them');
    const stopped = await runCli(['stop', NAME], { home });
    assert.equal(stopped.code, 0, stopped.stderr);
    const alive = recorded.filter((p) => isPidAlive(p));
    assert.deepEqual(alive, [], 'no process of the cluster survives stop');
  });
});
