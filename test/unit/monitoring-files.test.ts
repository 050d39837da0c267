/**
 * The shipped monitoring files against the real tools and the real registry:
 * - monitoring/alerts.yml passes `promtool check rules`, and its unit tests
 *   (monitoring/alerts.test.yml) pass `promtool test rules`;
 * - every metric name in an alert expression, a dashboard query or a dashboard variable is one the
 *   agent registers (the list comes from an AgentMetrics registry with every optional source on,
 *   never from a hand-copied list), histogram series by their _bucket/_sum/_count names;
 * - monitoring/grafana-dashboard.json is importable: a datasource variable used by every panel and
 *   query, cluster and node variables, unique panel ids with grid positions, the panels the issue
 *   asks for (roles, lag, TPS, connections, failovers, backup age), and every query is valid
 *   PromQL (checked by promtool, with Grafana's variables substituted);
 * - the scrape config `pgpilot monitoring` prints passes `promtool check config`;
 * - docs/monitoring.md names every metric of the catalog.
 * promtool comes with Debian's prometheus package (scripts/setup.sh installs it).
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { Histogram } from 'prom-client';
import { makeTestPki } from '../helpers/test-pki.js';
import { AgentMetrics } from '../../src/metrics/agent-metrics.js';
import { ALL_METRIC_SPECS } from '../../src/metrics/metric-catalog.js';
import { alertRulesFile, dashboardFile } from '../../src/metrics/monitoring-files.js';
import { renderPrometheusConfig } from '../../src/metrics/scrape-config.js';
import { findBinary } from '../../src/providers/local/prometheus-server.js';
import { runCommand } from '../../src/shared/process-runner.js';
import { REPO_ROOT } from '../helpers/cli.js';

const scratch = mkdtempSync(path.join(tmpdir(), 'pgpilot-monitoring-files-'));
after(() => rm(scratch, { recursive: true, force: true }));

async function promtool(...args: string[]): Promise<string> {
  const result = await runCommand(findBinary('promtool'), args, { timeoutMs: 60_000, check: false, cwd: REPO_ROOT });
  const output = `${result.stdout}\n${result.stderr}`;
  assert.equal(result.exitCode, 0, `promtool ${args.join(' ')} failed:\n${output}`);
  return output;
}

/** Metric families the agent registers with every optional source present (backups, certificates, process metrics). */
function registeredNames(): { families: Set<string>; histograms: Set<string> } {
  const metrics = new AgentMetrics({
    cluster: 'demo',
    node: 'node1',
    version: '0.0.0',
    snapshot: () => null,
    holdsLeader: () => false,
    postgresStats: () => Promise.reject(new Error('not used')),
    dataDirectory: scratch,
    backupStatus: () => Promise.resolve(null),
    certificates: () => [],
    processMetrics: true,
  });
  const all = metrics.registry.getMetricsAsArray();
  return { families: new Set(all.map((m) => m.name)), histograms: new Set(all.filter((m) => m instanceof Histogram).map((m) => m.name)) };
}

function unknownMetrics(expr: string, registered: ReturnType<typeof registeredNames>): string[] {
  const names = expr.match(/\bpgpilot_[a-z0-9_]+/g) ?? [];
  return names.filter((name) => {
    if (registered.families.has(name)) return false;
    const base = name.replace(/_(bucket|sum|count)$/, '');
    return !(base !== name && registered.histograms.has(base));
  });
}

interface Target {
  expr?: string;
  datasource?: { type?: string; uid?: string };
}
interface Panel {
  id?: number;
  type: string;
  title?: string;
  gridPos?: { h: number; w: number; x: number; y: number };
  datasource?: { type?: string; uid?: string };
  targets?: Target[];
  panels?: Panel[];
}
interface Variable {
  name: string;
  type: string;
  query?: string | { query?: string };
  datasource?: { uid?: string };
}
interface Dashboard {
  title: string;
  uid: string;
  schemaVersion: number;
  panels: Panel[];
  templating: { list: Variable[] };
}

function dashboard(): Dashboard {
  return JSON.parse(readFileSync(dashboardFile(), 'utf8')) as Dashboard;
}

function leafPanels(panels: readonly Panel[]): Panel[] {
  return panels.flatMap((p) => (p.type === 'row' ? leafPanels(p.panels ?? []) : [p]));
}

/** Grafana's variables replaced by values Prometheus accepts, for a syntax check. */
function substituteVariables(expr: string): string {
  return expr.replaceAll('$__rate_interval', '1m').replaceAll('$__range', '1h').replaceAll('$cluster', '.*').replaceAll('$node', '.*');
}

void describe('monitoring/alerts.yml', () => {
  void it('passes promtool check rules', async () => {
    assert.match(await promtool('check', 'rules', alertRulesFile()), /SUCCESS: \d+ rules found/);
  });

  void it('passes its promtool unit tests (monitoring/alerts.test.yml)', async () => {
    assert.match(await promtool('test', 'rules', path.join(REPO_ROOT, 'monitoring', 'alerts.test.yml')), /SUCCESS/);
  });

  void it('covers the required conditions and only uses metrics the agent registers', () => {
    const text = readFileSync(alertRulesFile(), 'utf8');
    const alerts = [...text.matchAll(/^\s*- alert: (\S+)/gm)].map((m) => m[1]);
    for (const required of [
      'PgpilotNoLeader',
      'PgpilotMultipleLeaders',
      'PgpilotReplicaLag',
      'PgpilotReplicaNotStreaming',
      'PgpilotMemberDown',
      'PgpilotLeaseRenewalFailures',
      'PgpilotConnectionsSaturated',
      'PgpilotDiskSpaceLow',
      'PgpilotWalArchivingFailing',
      'PgpilotBackupTooOld',
    ]) {
      assert.ok(alerts.includes(required), `alert ${required} is defined`);
    }
    const registered = registeredNames();
    const exprs = [...text.matchAll(/^\s*expr: (.+)$/gm)].map((m) => m[1] ?? '');
    assert.equal(exprs.length, alerts.length, 'one expr per alert');
    for (const expr of exprs) assert.deepEqual(unknownMetrics(expr, registered), [], `unknown metric in: ${expr}`);
    const tests = readFileSync(path.join(REPO_ROOT, 'monitoring', 'alerts.test.yml'), 'utf8');
    for (const alert of alerts) assert.ok(tests.includes(`alertname: ${alert ?? ''}`), `alerts.test.yml tests ${alert ?? ''}`);
  });
});

void describe('monitoring/grafana-dashboard.json', () => {
  void it('is importable: datasource, cluster and node variables; every panel on the datasource variable, with an id and a position', () => {
    const d = dashboard();
    assert.ok(d.title.length > 0 && d.uid.length > 0 && d.schemaVersion >= 30);
    const variables = new Map(d.templating.list.map((v) => [v.name, v]));
    assert.equal(variables.get('datasource')?.type, 'datasource');
    assert.equal(variables.get('datasource')?.query, 'prometheus');
    for (const name of ['cluster', 'node']) {
      const v = variables.get(name);
      assert.equal(v?.type, 'query', `${name} is a query variable`);
      assert.equal(v?.datasource?.uid, '${datasource}');
    }
    const ids = new Set<number>();
    for (const panel of [...d.panels, ...d.panels.flatMap((p) => p.panels ?? [])]) {
      assert.ok(panel.id !== undefined && !ids.has(panel.id), `unique id for ${panel.title ?? '?'}`);
      ids.add(panel.id);
      assert.ok(panel.gridPos !== undefined && panel.gridPos.w > 0 && panel.gridPos.h > 0, `${panel.title ?? '?'} has a position`);
    }
    for (const panel of leafPanels(d.panels)) {
      assert.equal(panel.datasource?.uid, '${datasource}', `${panel.title ?? '?'} uses the datasource variable`);
      assert.ok((panel.targets ?? []).length > 0, `${panel.title ?? '?'} has queries`);
      for (const target of panel.targets ?? []) {
        assert.equal(target.datasource?.uid, '${datasource}', `a query of ${panel.title ?? '?'} uses the datasource variable`);
        assert.ok((target.expr ?? '').includes('cluster=~"$cluster"'), `a query of ${panel.title ?? '?'} is filtered by $cluster: ${target.expr ?? ''}`);
      }
    }
  });

  void it('has the panels asked for: roles, lag, TPS, connections, failovers, backup age', () => {
    const titles = leafPanels(dashboard().panels).map((p) => (p.title ?? '').toLowerCase());
    for (const wanted of ['roles', 'replication lag (bytes)', 'replication lag (seconds)', 'transactions per second', 'connections', 'failovers', 'backup age']) {
      assert.ok(titles.some((t) => t.includes(wanted)), `a panel about ${wanted} (have: ${titles.join('; ')})`);
    }
  });

  void it('only queries metrics the agent registers', () => {
    const d = dashboard();
    const registered = registeredNames();
    const exprs = [
      ...leafPanels(d.panels).flatMap((p) => (p.targets ?? []).map((t) => t.expr ?? '')),
      ...d.templating.list.map((v) => (typeof v.query === 'string' ? v.query : (v.query?.query ?? ''))),
    ];
    assert.ok(exprs.length > 20);
    for (const expr of exprs) assert.deepEqual(unknownMetrics(expr, registered), [], `unknown metric in: ${expr}`);
  });

  void it('only has valid PromQL (promtool parses every query)', async () => {
    const exprs = leafPanels(dashboard().panels).flatMap((p) => (p.targets ?? []).map((t) => substituteVariables(t.expr ?? '')));
    const rules = ['groups:', '  - name: dashboard-queries', '    rules:', ...exprs.flatMap((expr, i) => [`      - record: dashboard:query_${i}`, `        expr: ${JSON.stringify(expr)}`])];
    const file = path.join(scratch, 'dashboard-queries.yml');
    writeFileSync(file, `${rules.join('\n')}\n`);
    await promtool('check', 'rules', file);
  });
});

void describe('generated Prometheus config', () => {
  void it('passes promtool check config (with the shipped rules)', async () => {
    const file = path.join(scratch, 'prometheus.yml');
    // promtool checks that the scrape job's CA file exists.
    const caFile = path.join(scratch, 'ca.crt');
    const pki = await makeTestPki('promtool');
    copyFileSync(pki.caFile, caFile);
    await pki.cleanup();
    writeFileSync(
      file,
      renderPrometheusConfig({
        cluster: 'demo',
        targets: [
          { node: 'node1', address: '127.0.0.1:40001' },
          { node: 'node2', address: '127.0.0.1:40002' },
        ],
        ruleFiles: [alertRulesFile()],
        regenerateCommand: 'pgpilot monitoring demo',
        caFile,
      }),
    );
    await promtool('check', 'config', file);
  });
});

void describe('docs/monitoring.md', () => {
  void it('lists every metric of the catalog', () => {
    const docs = readFileSync(path.join(REPO_ROOT, 'docs', 'monitoring.md'), 'utf8');
    const missing = ALL_METRIC_SPECS.map((s) => s.name).filter((name) => !docs.includes(`\`${name}\``));
    assert.deepEqual(missing, []);
  });
});
