/**
 * `pgpilot monitoring NAME`: Prometheus for a cluster.
 *   (default)     print a ready prometheus.yml: the shipped alert rules and one scrape job with
 *                 every agent's REST API as a target (to stdout, or --output FILE)
 *   --file-sd     print the targets as a file_sd JSON list instead (for an existing Prometheus)
 *   --serve       write that config under the cluster directory and start Debian's prometheus with
 *                 it, detached, on 127.0.0.1 and a free port (or --port), data in the cluster
 *                 directory, PID recorded; idempotent (prints the running one)
 *   --stop        stop that Prometheus (stop and destroy do it too)
 *   --json        machine-readable: targets, files and the served Prometheus (null when none)
 * Explanations go to stderr when the config itself goes to stdout, so it can be redirected.
 */
import { clusterPathsIn } from '../../providers/local/paths.js';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { ClusterManifest } from '../../config/schema.js';
import { dashboardFile, existingAlertRulesFile } from '../../metrics/monitoring-files.js';
import { fileSdGroups, renderFileSd, renderPrometheusConfig, scrapeJobName, type ScrapeTarget } from '../../metrics/scrape-config.js';
import { writeFileAtomic } from '../../providers/local/cluster-store.js';
import type { ProviderDeps } from '../../providers/local/local-provider.js';
import { openClusterHandle } from '../../cluster/open-cluster-handle.js';
import { requireLocal } from '../../cluster/require-local.js';
import type { NodeEndpoint } from '../../cluster/cluster-topology.js';
import { monitoringPaths } from '../../providers/local/paths.js';
import {
  checkPrometheusConfig,
  findBinary,
  runningPrometheus,
  startPrometheus,
  stopPrometheus,
  waitForPrometheus,
  type PrometheusState,
} from '../../providers/local/prometheus-server.js';
import { PgpilotError, errorMessage } from '../../shared/errors.js';
import { LOOPBACK_HOST, findFreePort, isPortFree, urlHost } from '../../shared/ports.js';
import { printJson, type Output } from '../output.js';

export interface MonitoringOptions {
  home: string;
  name: string;
  /** `--context FILE` (else PGPILOT_CONTEXT, else the local cluster); --serve/--stop are local only. */
  context?: string | undefined;
  serve: boolean;
  stop: boolean;
  fileSd: boolean;
  json: boolean;
  /** --serve only: Prometheus' port (default: a free loopback port). */
  port?: number;
  /** Write the config here instead of stdout (not with --serve/--stop). */
  output?: string;
  /** --serve: how long to wait for Prometheus to be ready. */
  timeoutSeconds: number;
}

const shellWord = (word: string): string => (/^[A-Za-z0-9_./:=@%+-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`);

function targetsOf(nodes: readonly NodeEndpoint[]): ScrapeTarget[] {
  return nodes.map((n) => ({ node: n.name, address: `${urlHost(n.host)}:${n.apiPort}` }));
}

function validate(options: MonitoringOptions): void {
  const bad = (message: string, hint: string): never => {
    throw new PgpilotError('INPUT_INVALID', message, { hint, exitCode: 2 });
  };
  if (options.serve && options.stop) bad('--serve and --stop cannot be used together', 'start it with --serve, stop it with --stop');
  if (options.fileSd && (options.serve || options.stop)) bad('--file-sd only prints targets; it does not go with --serve or --stop', 'run them as separate commands');
  if (options.fileSd && options.json) bad('--file-sd already prints JSON; it does not go with --json', 'use one of them');
  if (options.port !== undefined && !options.serve) bad('--port only applies to --serve', `run: pgpilot monitoring ${options.name} --serve --port ${options.port}`);
  if (options.port !== undefined && (!Number.isInteger(options.port) || options.port < 1 || options.port > 65_535)) {
    bad(`--port must be a port number from 1 to 65535 (got ${String(options.port)})`, 'omit it to pick a free port');
  }
  if (options.output !== undefined && (options.serve || options.stop || options.json)) bad('--output only applies when printing a config', 'omit --output');
  if (!Number.isInteger(options.timeoutSeconds) || options.timeoutSeconds < 1) bad('--timeout must be a whole number of seconds, at least 1', 'for example --timeout 30');
}

function describeState(state: PrometheusState | null): Record<string, unknown> | null {
  return state === null ? null : { running: true, ...state };
}

export async function run(options: MonitoringOptions, deps: ProviderDeps, output: Output): Promise<number> {
  validate(options);
  const handle = await openClusterHandle(options);
  const name = handle.name;
  const targets = targetsOf(handle.nodes);
  const ruleFile = existingAlertRulesFile();
  const home = handle.contextFile === null ? `--home ${shellWord(options.home)}` : `--context ${shellWord(path.resolve(handle.contextFile))}`;
  // Printing a scrape config works for any cluster; the prometheus that --serve starts lives in the cluster directory.
  const local = options.stop || options.serve ? requireLocal(handle, options.serve ? 'monitoring --serve' : 'monitoring --stop') : handle.local;
  const paths = local === null ? null : monitoringPaths(local.manifest.clusterDir);

  if (options.stop && paths !== null) {
    const how = await stopPrometheus(paths, deps.clock);
    if (options.json) printJson(output, { cluster: name, stopped: how !== 'not-running' });
    else output.out(how === 'not-running' ? `prometheus of ${name} was not running` : `prometheus of ${name} stopped`);
    return 0;
  }

  if (options.serve && local !== null) return serve(options, local.manifest, targets, ruleFile, deps, output);

  if (options.fileSd) {
    output.out(renderFileSd({ cluster: name, targets }).trimEnd());
    output.err(`file_sd targets of ${name}: save them as a .json file listed under file_sd_configs in a job with honor_labels: true, scheme: https and tls_config.ca_file: ${handle.caFile}`);
    return 0;
  }

  if (options.json) {
    printJson(output, {
      cluster: name,
      jobName: scrapeJobName(name),
      targets: fileSdGroups({ cluster: name, targets }),
      alertRules: ruleFile,
      dashboard: dashboardFile(),
      prometheus: paths === null ? null : describeState(await runningPrometheus(paths)),
    });
    return 0;
  }

  const file = options.output === undefined ? undefined : path.resolve(options.output);
  const config = renderPrometheusConfig({
    cluster: name,
    targets,
    ruleFiles: ruleFile === null ? [] : [ruleFile],
    caFile: handle.caFile,
    regenerateCommand: ['pgpilot monitoring', name, ...(file === undefined ? [] : [`--output ${shellWord(file)}`]), home].join(' '),
  });
  if (ruleFile === null) output.err('warning: monitoring/alerts.yml was not found next to pgpilot; the config has no alert rules');
  if (file === undefined) {
    output.out(config.trimEnd());
    output.err(`save it with --output FILE, then run: prometheus --config.file=FILE --web.listen-address=127.0.0.1:PORT`);
    output.err(`or let pgpilot run one for this cluster: pgpilot monitoring ${name} --serve`);
    return 0;
  }
  try {
    await writeFileAtomic(file, config, 0o644);
  } catch (error) {
    throw new PgpilotError('INPUT_INVALID', `cannot write ${file}: ${errorMessage(error)}`, { hint: 'choose a file in an existing directory you can write to', exitCode: 2 });
  }
  output.out(`wrote ${file} (${targets.length} target${targets.length === 1 ? '' : 's'}, job ${scrapeJobName(name)})`);
  output.out(`run it with: prometheus --config.file=${shellWord(file)} --web.listen-address=127.0.0.1:PORT`);
  return 0;
}

async function serve(options: MonitoringOptions, manifest: ClusterManifest, targets: ScrapeTarget[], ruleFile: string | null, deps: ProviderDeps, output: Output): Promise<number> {
  const name = manifest.name;
  const paths = monitoringPaths(manifest.clusterDir);
  const report = (state: PrometheusState, already: boolean): number => {
    if (options.json) {
      printJson(output, { cluster: name, alreadyRunning: already, prometheus: describeState(state) });
      return 0;
    }
    output.out(`prometheus of ${name} ${already ? 'is already running' : 'started'}: ${state.url} (pid ${state.pid})`);
    output.out(`  config: ${state.configFile}`);
    output.out(`  data:   ${state.dataDir}   log: ${state.logFile}`);
    output.out(`  query:  curl -s '${state.url}/api/v1/query?query=pgpilot_is_leader'`);
    output.out(`  stop:   pgpilot monitoring ${name} --stop   (pgpilot stop/destroy stop it too)`);
    return 0;
  };
  const running = await runningPrometheus(paths);
  if (running !== null) {
    if (options.port !== undefined && options.port !== running.port) {
      throw new PgpilotError('INPUT_INVALID', `prometheus of ${name} already runs on port ${running.port}`, {
        hint: `stop it first: pgpilot monitoring ${name} --stop`,
        exitCode: 2,
      });
    }
    return report(running, true);
  }
  findBinary('prometheus'); // BINARY_MISSING before anything is written
  const port = options.port ?? (await findFreePort(LOOPBACK_HOST));
  if (!(await isPortFree(port, LOOPBACK_HOST))) {
    throw new PgpilotError('PORT_BUSY', `port ${port} on ${LOOPBACK_HOST} is already in use`, { hint: 'choose another --port, or omit it to pick a free one', exitCode: 2 });
  }
  await mkdir(paths.dataDir, { recursive: true });
  const config = renderPrometheusConfig({
    cluster: name,
    targets,
    ruleFiles: ruleFile === null ? [] : [ruleFile],
    caFile: clusterPathsIn(manifest.clusterDir).caFile,
    regenerateCommand: `pgpilot monitoring ${name} --serve --home ${shellWord(options.home)}`,
  });
  await writeFileAtomic(paths.configFile, config, 0o644);
  let promtoolMissing = false;
  try {
    findBinary('promtool');
  } catch {
    promtoolMissing = true;
  }
  if (!promtoolMissing) {
    const check = await checkPrometheusConfig(paths.configFile);
    if (check.kind === 'error') {
      throw new PgpilotError('INTERNAL', `promtool rejects the generated ${paths.configFile}: ${check.output}`, { hint: 'this is a bug in pgpilot; please report it with the file' });
    }
  }
  const state = await startPrometheus(paths, port, deps.clock);
  try {
    await waitForPrometheus(state, deps.clock, options.timeoutSeconds * 1000);
  } catch (error) {
    await stopPrometheus(paths, deps.clock).catch(() => undefined);
    throw error;
  }
  return report(state, false);
}
