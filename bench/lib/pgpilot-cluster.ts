/**
 * The pgpilot side of the benchmark: a 3-node local cluster driven through `bin/pgpilot` (create,
 * switchover, start, destroy) in a private temporary home, behind the BenchCluster shape of
 * bench/lib/bench-cluster.ts.
 *
 * The view of the nodes is the `status --json` contract, built in process by the same function
 * the status command uses (clusterStatus), so that polling it every second does not start a Node
 * process each time on a 2-core machine under test. The timing settings are the dynamic config in
 * force (etcd's /config, else pgpilot's defaults) plus the agents' proxy hold time.
 *
 * Only processes this cluster started are signalled, and only by the CLI (destroy / start).
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { agentConfigSchema } from '../../src/config/schema.js';
import { clusterKeys } from '../../src/dcs/keys.js';
import { clusterStatus, openClusterDcs } from '../../src/providers/local/local-provider.js';
import type { ClusterStatus } from '../../src/operations/cluster-status.js';
import { readManifest } from '../../src/providers/local/cluster-store.js';
import { clusterPathsIn } from '../../src/providers/local/paths.js';
import { makeTempHome, removeTempHome, runCli, type CliResult } from '../../test/helpers/cli.js';
import type { BenchCluster, BenchNode, CreateOptions, Created, Endpoint } from './bench-cluster.js';
import { startClusterHaproxy, type RunningHaproxy } from './pgbench.js';
import { descendants, readCmdline, type ProcStat } from './proc.js';

const CLUSTER_NAME = 'bench';
const CREATE_TIMEOUT_S = 180;

export interface PgpilotCreated extends Created {
  cluster: PgpilotBenchCluster;
}

function cliFailure(what: string, result: CliResult): Error {
  const tail = `${result.stderr}\n${result.stdout}`.trim().split('\n').slice(-6).join('\n');
  return new Error(`pgpilot ${what} failed (exit ${result.code}): ${tail}`);
}

function passwordOf(status: ClusterStatus): string {
  return decodeURIComponent(/postgresql:\/\/[^:]+:([^@]+)@/.exec(status.connectionString)?.[1] ?? '');
}

function userOf(status: ClusterStatus): string {
  return decodeURIComponent(/postgresql:\/\/([^:]+):/.exec(status.connectionString)?.[1] ?? 'postgres');
}

/** A status member as a bench node: a replica streams when it says so on the leader's timeline. */
export function benchNodesOf(status: ClusterStatus): BenchNode[] {
  return status.members.map((m) => ({
    name: m.name,
    pgPort: m.port,
    role: m.role === 'primary' && m.name === status.leader ? 'primary' : m.role === 'replica' ? 'replica' : 'down',
    streaming: m.role === 'replica' && m.streaming && status.timeline !== null && m.timeline === status.timeline,
    agentPid: m.pid,
    postmasterPid: m.postgresPid,
  }));
}

function describe(nodes: readonly BenchNode[]): string {
  return nodes.map((n) => `${n.name}=${n.role}${n.streaming ? '+streaming' : ''}`).join(' ');
}

/** Label of an agent helper process: the watchdog is `node .../cli.js watchdog`. */
function labelOf(stat: ProcStat): string {
  const argv = readCmdline(stat.pid);
  if (/\b(cli|watchdog)\.js watchdog\b/.test(argv)) return 'watchdog';
  if (stat.comm === 'haproxy' || /\bhaproxy\b/.test(argv)) return 'haproxy';
  return stat.comm;
}

export class PgpilotBenchCluster implements BenchCluster {
  readonly system = 'pgpilot' as const;
  readonly profile: string;
  settings: Record<string, unknown> = {};
  readonly user: string;
  readonly password: string;
  readonly database = 'postgres';
  readonly name = CLUSTER_NAME;
  /** clusters/NAME/tls/ca.crt: the cluster CA (postgres and the REST API speak TLS only). */
  readonly caFile: string;
  private readonly endpoints: Endpoint[];
  private destroying: Promise<void> | null = null;

  constructor(
    readonly home: string,
    profile: string,
    status: ClusterStatus,
    caFile: string,
    private readonly log: (line: string) => void,
  ) {
    this.profile = profile;
    this.caFile = caFile;
    this.user = userOf(status);
    this.password = passwordOf(status);
    this.endpoints = status.members.map((m) => ({ host: m.host, port: m.proxyPort ?? 0 }));
  }

  writeEndpoints(): Endpoint[] {
    return this.endpoints.map((e) => ({ ...e }));
  }

  async status(): Promise<ClusterStatus> {
    return clusterStatus(this.home, this.name);
  }

  async nodes(): Promise<BenchNode[]> {
    return benchNodesOf(await this.status());
  }

  async waitHealthy(timeoutMs: number): Promise<BenchNode[]> {
    const deadline = performance.now() + timeoutMs;
    let last = 'nothing read yet';
    for (;;) {
      try {
        const nodes = await this.nodes();
        last = describe(nodes);
        const primaries = nodes.filter((n) => n.role === 'primary');
        if (primaries.length === 1 && nodes.every((n) => n.role === 'primary' || (n.role === 'replica' && n.streaming))) return nodes;
      } catch (error) {
        last = `status failed: ${error instanceof Error ? error.message : String(error)}`;
      }
      if (performance.now() >= deadline) throw new Error(`pgpilot cluster not healthy within ${Math.round(timeoutMs / 1000)} s (last: ${last})`);
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }

  async switchover(): Promise<void> {
    const result = await runCli(['switchover', this.name, '--json', '--timeout', '60'], { home: this.home, timeoutMs: 120_000 });
    if (result.code !== 0) throw cliFailure('switchover', result);
  }

  async restartNode(name: string): Promise<void> {
    // `start` starts whatever of the cluster is not running (here: the killed node's agent, which
    // starts its postgres and rejoins) and waits until every replica streams.
    this.log(`pgpilot: starting ${name} again (pgpilot start)`);
    const result = await runCli(['start', this.name, '--json', '--timeout', '300'], { home: this.home, timeoutMs: 330_000 });
    if (result.code !== 0) throw cliFailure(`start (to restart ${name})`, result);
  }

  /**
   * The node's supervisor (`pgpilot node run`, nodes/<node>/node-run.pid, checked by its command
   * line): it would restart a killed agent within a second, so a kill freezes it first and kills it
   * too (bench/lib/measure.ts), and `pgpilot start` brings it back with the node.
   */
  supervisorPids(node: BenchNode): number[] {
    return this.supervisorPidsOf(node.name);
  }

  private supervisorPidsOf(nodeName: string): number[] {
    const dir = path.join(clusterPathsIn(path.join(this.home, 'clusters', this.name)).nodesDir, nodeName);
    try {
      const pid = Number.parseInt(readFileSync(path.join(dir, 'node-run.pid'), 'utf8').trim(), 10);
      return Number.isInteger(pid) && pid > 1 && readCmdline(pid).includes(`--agent-pid-file ${path.join(dir, 'agent.pid')}`) ? [pid] : [];
    } catch {
      return [];
    }
  }

  /** The fencing watchdog of the node's agent (it outlives an agent killed alone, see src/agent/watchdog.ts). */
  sidecarPids(node: BenchNode): number[] {
    if (node.agentPid === null) return [];
    return descendants(node.agentPid, (s) => s.comm === 'postgres')
      .filter((child) => labelOf(child) === 'watchdog')
      .map((child) => child.pid);
  }

  async footprintPids(): Promise<Array<{ node: string; label: string; pid: number }>> {
    const status = await this.status();
    const found: Array<{ node: string; label: string; pid: number }> = [];
    for (const member of status.members) {
      if (member.pid === null) continue;
      for (const pid of this.supervisorPidsOf(member.name)) found.push({ node: member.name, label: 'supervisor', pid });
      found.push({ node: member.name, label: 'agent', pid: member.pid });
      // A postmaster and its backends are postgres, not the HA tool: leave out their subtree.
      for (const child of descendants(member.pid, (s) => s.comm === 'postgres')) {
        found.push({ node: member.name, label: labelOf(child), pid: child.pid });
      }
    }
    return found;
  }

  /** The agent log file of every node (pino JSON lines). */
  async agentLogFiles(): Promise<Array<{ node: string; file: string }>> {
    const manifest = await readManifest(this.home, this.name);
    return manifest.nodes.map((n) => ({ node: n.name, file: n.logFile })).filter((f) => existsSync(f.file));
  }

  /**
   * Warnings and errors the agents logged since the cluster was created, counted by message
   * (e.g. 'lease deadline passed without a renewal: fencing now'), for the report.
   */
  async agentLogWarnings(): Promise<Record<string, number>> {
    const counts: Record<string, number> = {};
    for (const { file } of await this.agentLogFiles()) {
      const text = await readFile(file, 'utf8').catch(() => '');
      for (const line of text.split('\n')) {
        if (!line.includes('"level":40') && !line.includes('"level":50') && !line.includes('"level":60')) continue;
        try {
          const entry = JSON.parse(line) as { level?: number; msg?: unknown };
          if (typeof entry.level !== 'number' || entry.level < 40 || typeof entry.msg !== 'string') continue;
          counts[entry.msg] = (counts[entry.msg] ?? 0) + 1;
        } catch {
          // not a JSON line
        }
      }
    }
    return counts;
  }

  /** An external HAProxy from `pgpilot haproxy-config` (write port to the primary). The caller stops it. */
  async startExternalHaproxy(): Promise<RunningHaproxy> {
    const dir = path.join(this.home, 'haproxy');
    mkdirSync(dir, { recursive: true });
    return startClusterHaproxy(this.home, this.name, dir);
  }

  /** Reads the timing settings in force. */
  async readSettings(): Promise<Record<string, unknown>> {
    const manifest = await readManifest(this.home, this.name);
    const { dcs, config } = await openClusterDcs(manifest);
    let stored = false;
    try {
      stored = (await dcs.get(clusterKeys(this.name).config).catch(() => null)) !== null;
    } finally {
      await dcs.close().catch(() => undefined);
    }
    const first = manifest.nodes[0];
    const agent = first === undefined ? null : agentConfigSchema.safeParse(JSON.parse(readFileSync(first.configFile, 'utf8')));
    return {
      ttlSeconds: config.ttlSeconds,
      loopWaitMs: config.loopWaitMs,
      maximumLagOnFailoverBytes: config.maximumLagOnFailoverBytes,
      synchronous: config.synchronous,
      failsafe: config.failsafe,
      proxyHoldTimeoutMs: agent?.success === true ? agent.data.proxyHoldTimeoutMs : null,
      source: stored ? 'etcd /config' : 'pgpilot defaults (no /config key in etcd)',
    };
  }

  /** Idempotent: every caller (also a concurrent one, e.g. a SIGINT handler) awaits the one destroy. */
  destroy(): Promise<void> {
    this.destroying ??= destroyHome(this.home, this.log);
    return this.destroying;
  }
}

async function destroyHome(home: string, log: (line: string) => void): Promise<void> {
  if (process.env['PGPILOT_BENCH_KEEP'] === '1') {
    log(`pgpilot: kept for inspection: ${home} (destroy with: PGPILOT_HOME=${home} bin/pgpilot destroy ${CLUSTER_NAME} --yes)`);
    return;
  }
  if (existsSync(path.join(home, 'clusters', CLUSTER_NAME))) {
    const result = await runCli(['destroy', CLUSTER_NAME, '--yes'], { home, timeoutMs: 180_000 });
    if (result.code !== 0) {
      // Keep the home: its PID files are the only record of what may still run.
      throw cliFailure(`destroy (home kept: ${home})`, result);
    }
  }
  await removeTempHome(home);
}

export async function createPgpilotCluster(options: CreateOptions): Promise<PgpilotCreated> {
  const home = makeTempHome('bench');
  options.log(`pgpilot: creating a 3-node cluster in ${home}`);
  const startedMs = performance.now();
  const result = await runCli(['create', CLUSTER_NAME, '--nodes', '3', '--json', '--show-secrets', '--timeout', String(CREATE_TIMEOUT_S)], {
    home,
    timeoutMs: (CREATE_TIMEOUT_S + 60) * 1000,
  });
  // `create` returns once every replica streams from the leader (its readiness rule).
  const bootstrapMs = performance.now() - startedMs;
  if (result.code !== 0) {
    await destroyHome(home, options.log).catch(() => undefined);
    throw cliFailure('create', result);
  }
  let cluster: PgpilotBenchCluster;
  try {
    const caFile = clusterPathsIn((await readManifest(home, CLUSTER_NAME)).clusterDir).caFile;
    cluster = new PgpilotBenchCluster(home, options.profile, JSON.parse(result.stdout) as ClusterStatus, caFile, options.log);
  } catch (error) {
    await destroyHome(home, options.log).catch(() => undefined);
    throw error;
  }
  try {
    cluster.settings = await cluster.readSettings();
    const nodes = await cluster.nodes();
    if (!nodes.every((n) => n.role === 'primary' || n.streaming)) throw new Error(`create returned before every replica streams: ${describe(nodes)}`);
  } catch (error) {
    await cluster.destroy().catch(() => undefined);
    throw error;
  }
  options.log(`pgpilot: ready in ${Math.round(bootstrapMs)} ms (${JSON.stringify(cluster.settings)})`);
  return { cluster, bootstrapMs };
}
