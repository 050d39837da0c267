/**
 * Monitoring end to end on a real 3-node cluster with Debian's prometheus, through bin/pgpilot:
 * `monitoring NAME` prints a config naming every agent and `--file-sd` its targets; bad input is a
 * one-line error with a hint and exit 2; each agent answers GET /metrics without a token;
 * `monitoring NAME --serve` starts prometheus on 127.0.0.1 (PID recorded, idempotent), which
 * scrapes every member (`up` 1), sees exactly one leader, lag series for each replica, the
 * postgres statistics, loads the shipped alert rules, and accepts every dashboard query; after a
 * switchover the leader series moves to the new leader (and its switchover counter reads 1), and
 * the former leader gets a lag series; `--stop` stops it by PID, and `destroy` stops a served one.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ClusterStatus } from '../../src/operations/cluster-status.js';
import { isPidAlive, waitUntil } from '../helpers/wait.js';
import { REPO_ROOT, makeTempHome, removeTempHome, runCli } from '../helpers/cli.js';
import { callApi, clusterCaFile, clusterStatusOf, waitConverged } from '../helpers/cluster.js';

const NAME = 'mon';

interface PromSample {
  metric: Record<string, string>;
  value: [number, string];
}

interface Served {
  url: string;
  pid: number;
  port: number;
  configFile: string;
}

async function promQuery(url: string, query: string): Promise<PromSample[]> {
  const response = await fetch(`${url}/api/v1/query?query=${encodeURIComponent(query)}`, { signal: AbortSignal.timeout(5_000) });
  const body = (await response.json()) as { status: string; error?: string; data?: { result: PromSample[] } };
  assert.equal(body.status, 'success', `query ${query}: ${body.error ?? response.status}`);
  return body.data?.result ?? [];
}

function byNode(samples: PromSample[], label = 'node'): Map<string, number> {
  return new Map(samples.map((s) => [s.metric[label] ?? '?', Number(s.value[1])]));
}

void describe('monitoring: /metrics, pgpilot monitoring, real prometheus', () => {
  let home = '';
  let served: Served | null = null;

  before(async () => {
    home = makeTempHome('monitoring');
    const created = await runCli(['create', NAME, '--json', '--show-secrets'], { home });
    assert.equal(created.code, 0, created.stderr);
  });

  after(async () => {
    await runCli(['monitoring', NAME, '--stop'], { home }).catch(() => undefined);
    if (process.env['PGPILOT_TEST_KEEP'] === '1') return;
    await runCli(['destroy', NAME, '--yes'], { home });
    await removeTempHome(home);
  });

  void it('rejects bad input with a one-line error, a hint and exit code 2', async () => {
    for (const args of [
      ['monitoring', NAME, '--serve', '--stop'],
      ['monitoring', NAME, '--port', '9999'],
      ['monitoring', NAME, '--file-sd', '--json'],
      ['monitoring', NAME, '--serve', '--port', '70000'],
      ['monitoring', 'Bad_Name'],
    ]) {
      const result = await runCli(args, { home });
      assert.equal(result.code, 2, `${args.join(' ')}: ${result.stderr}`);
      assert.match(result.stderr, /^error: .+\nhint: .+\n$/, args.join(' '));
    }
    const missing = await runCli(['monitoring', 'nosuch'], { home });
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /^error: no cluster named "nosuch".*\nhint: /);
  });

  void it('prints a scrape config and file_sd targets naming every agent', async () => {
    const status = await clusterStatusOf(home, NAME);
    const config = await runCli(['monitoring', NAME], { home });
    assert.equal(config.code, 0, config.stderr);
    assert.match(config.stdout, /job_name: "pgpilot-mon"/);
    assert.ok(config.stdout.includes(path.join(REPO_ROOT, 'monitoring', 'alerts.yml')), 'loads the shipped rules');
    for (const m of status.members) assert.ok(config.stdout.includes(`"${new URL(m.apiUrl).host}"`), `target ${m.apiUrl}`);
    // The agents speak HTTPS only: prometheus must scrape with TLS and verify them against the cluster CA.
    assert.match(config.stdout, /scheme: "?https"?/, 'scrapes over https');
    assert.ok(config.stdout.includes(clusterCaFile(home, NAME)), 'verifies the agents against the cluster CA (tls_config.ca_file)');
    const fileSd = await runCli(['monitoring', NAME, '--file-sd'], { home });
    assert.equal(fileSd.code, 0, fileSd.stderr);
    const groups = JSON.parse(fileSd.stdout) as Array<{ targets: string[]; labels: Record<string, string> }>;
    assert.deepEqual(
      groups.map((g) => [g.labels['node'], g.labels['cluster'], g.targets[0]]),
      status.members.map((m) => [m.name, NAME, new URL(m.apiUrl).host]),
    );
  });

  void it('every agent answers GET /metrics without a token, within its time bound, and exports no secret', async () => {
    const status = await clusterStatusOf(home, NAME);
    const secrets = readFileSync(path.join(home, 'clusters', NAME, 'secrets.json'), 'utf8');
    const secretValues = Object.values(JSON.parse(secrets) as Record<string, unknown>).flatMap((v) => (typeof v === 'string' ? [v] : Object.values(v as Record<string, string>)));
    for (const m of status.members) {
      const started = performance.now();
      // HTTPS verified against the cluster CA; no token.
      const response = await callApi(status, m, '/metrics', { timeoutMs: 10_000 });
      const text = response.text;
      assert.equal(response.status, 200, `${m.name}: ${text.slice(0, 200)}`);
      assert.ok(performance.now() - started < 5_000, `${m.name} answered in time`);
      assert.match(text, /^# HELP pgpilot_is_leader /m);
      assert.ok(text.includes(`pgpilot_up{cluster="${NAME}",node="${m.name}"} 1`), `${m.name} reports postgres up`);
      assert.ok(text.includes(`pgpilot_scrape_error{cluster="${NAME}",node="${m.name}"} 0`), `${m.name} read postgres statistics`);
      for (const secret of secretValues.filter((s) => s.length >= 16)) assert.ok(!text.includes(secret), `${m.name} leaks no secret`);
    }
  });

  void it('serves prometheus on loopback: every member up, one leader, lag per replica; after a switchover the leader series moves', async () => {
    const serve = await runCli(['monitoring', NAME, '--serve', '--json'], { home, timeoutMs: 90_000 });
    assert.equal(serve.code, 0, serve.stderr);
    const output = JSON.parse(serve.stdout) as { alreadyRunning: boolean; prometheus: Served };
    served = output.prometheus;
    const { url, pid } = served;
    assert.equal(output.alreadyRunning, false);
    assert.ok(url.startsWith('http://127.0.0.1:'), url);
    assert.ok(isPidAlive(pid));
    assert.ok(readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(`--web.listen-address=127.0.0.1:${served.port}`));
    assert.ok(existsSync(path.join(home, 'clusters', NAME, 'monitoring', 'prometheus.pid')));
    const again = await runCli(['monitoring', NAME, '--serve', '--json'], { home });
    assert.equal(again.code, 0, again.stderr);
    assert.deepEqual(
      [(JSON.parse(again.stdout) as { alreadyRunning: boolean; prometheus: Served }).alreadyRunning, (JSON.parse(again.stdout) as { prometheus: Served }).prometheus.pid],
      [true, pid],
      'a second --serve reports the running one',
    );

    let status: ClusterStatus = await waitConverged(home, NAME, null);
    const names = status.members.map((m) => m.name).sort();
    await waitUntil(
      'prometheus to scrape every member as up',
      async () => {
        const up = byNode(await promQuery(url, `up{job="pgpilot-${NAME}"}`));
        return names.every((n) => up.get(n) === 1) && up.size === names.length;
      },
      60_000,
      500,
    );
    const pgUp = byNode(await promQuery(url, `pgpilot_up{cluster="${NAME}"}`));
    assert.deepEqual([...pgUp.keys()].sort(), names);
    assert.ok([...pgUp.values()].every((v) => v === 1));

    const leaderSeries = async (): Promise<string[]> => (await promQuery(url, `pgpilot_is_leader{cluster="${NAME}"} == 1`)).map((s) => s.metric['node'] ?? '?');
    const oldLeader = status.leader ?? '';
    assert.deepEqual(await leaderSeries(), [oldLeader], 'exactly one member has the leader metric at 1');
    const replicas = names.filter((n) => n !== oldLeader);
    await waitUntil(
      'lag series for each replica',
      async () => {
        const lag = byNode(await promQuery(url, `pgpilot_replication_lag_bytes{cluster="${NAME}"}`), 'replica');
        return replicas.every((r) => lag.has(r));
      },
      30_000,
      500,
    );
    const lagSources = (await promQuery(url, `pgpilot_replication_lag_bytes{cluster="${NAME}"}`)).map((s) => s.metric['node']);
    assert.ok(lagSources.every((n) => n === oldLeader), 'lag is exported by the leader');
    for (const query of [
      `pgpilot_transactions_committed_total{cluster="${NAME}",database="postgres"}`,
      `pgpilot_max_connections{cluster="${NAME}"}`,
      `pgpilot_replication_slot_active{cluster="${NAME}"}`,
      `pgpilot_data_disk_available_bytes{cluster="${NAME}"}`,
      `pgpilot_ha_loop_duration_seconds_count{cluster="${NAME}"} > 0`,
      `pgpilot_lease_renewals_total{cluster="${NAME}"} > 0`,
    ]) {
      assert.ok((await promQuery(url, query)).length > 0, `${query} has series`);
    }
    assert.equal((await promQuery(url, `pgpilot_scrape_error{cluster="${NAME}"} == 1`)).length, 0, 'no scrape error');

    // The shipped alert rules are loaded, and no alert about a healthy cluster is firing.
    const rules = (await (await fetch(`${url}/api/v1/rules`)).json()) as { data: { groups: Array<{ rules: Array<{ name: string; state?: string }> }> } };
    const loaded = rules.data.groups.flatMap((g) => g.rules);
    assert.ok(loaded.some((r) => r.name === 'PgpilotNoLeader') && loaded.length >= 10, `rules loaded: ${loaded.map((r) => r.name).join(', ')}`);
    assert.deepEqual(loaded.filter((r) => r.state === 'firing').map((r) => r.name), [], 'nothing fires on a healthy cluster');

    // Every dashboard query is accepted by this prometheus (Grafana's variables substituted).
    const dashboard = JSON.parse(readFileSync(path.join(REPO_ROOT, 'monitoring', 'grafana-dashboard.json'), 'utf8')) as { panels: Array<{ type: string; targets?: Array<{ expr: string }>; panels?: unknown[] }> };
    const exprs = dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr));
    for (const expr of exprs) {
      await promQuery(url, expr.replaceAll('$__rate_interval', '1m').replaceAll('$__range', '1h').replaceAll('$cluster', NAME).replaceAll('$node', '.*'));
    }

    // Switchover: the leader series moves to the new leader, and only there.
    const target = replicas[0] ?? '';
    const switched = await runCli(['switchover', NAME, '--to', target], { home, timeoutMs: 120_000 });
    assert.equal(switched.code, 0, switched.stderr);
    status = await waitConverged(home, NAME, oldLeader);
    assert.equal(status.leader, target);
    await waitUntil(
      `prometheus to see ${target} as the only leader`,
      async () => {
        const leaders = await leaderSeries();
        return leaders.length === 1 && leaders[0] === target;
      },
      60_000,
      500,
    );
    const switchovers = byNode(await promQuery(url, `pgpilot_switchovers_total{cluster="${NAME}"}`));
    assert.equal(switchovers.get(target), 1, 'the new leader counted its switchover');
    await waitUntil(
      `a lag series of the former leader ${oldLeader}, exported by ${target}`,
      async () => (await promQuery(url, `pgpilot_replication_lag_bytes{cluster="${NAME}",node="${target}",replica="${oldLeader}"}`)).length === 1,
      60_000,
      500,
    );

    const stop = await runCli(['monitoring', NAME, '--stop'], { home });
    assert.equal(stop.code, 0, stop.stderr);
    assert.match(stop.stdout, /stopped/);
    await waitUntil('prometheus to exit', () => Promise.resolve(!isPidAlive(pid)), 20_000);
    served = null;
  });

  void it('destroy stops a served prometheus', async () => {
    const serve = await runCli(['monitoring', NAME, '--serve', '--json'], { home, timeoutMs: 90_000 });
    assert.equal(serve.code, 0, serve.stderr);
    const { pid } = (JSON.parse(serve.stdout) as { prometheus: Served }).prometheus;
    assert.ok(isPidAlive(pid));
    const destroyed = await runCli(['destroy', NAME, '--yes'], { home });
    assert.equal(destroyed.code, 0, destroyed.stderr);
    assert.match(destroyed.stderr, /prometheus stopped/);
    assert.ok(!isPidAlive(pid), 'prometheus is gone');
  });
});
