/**
 * The local provider: a whole cluster on this machine, one etcd and N nodes as detached
 * background processes, everything recorded under the cluster directory (paths.ts). Each node's
 * agent runs under its own supervisor (`pgpilot node run --config`, node-supervisor.ts), which
 * restarts an agent that dies; stopping a node stops its supervisor first.
 *
 * Invariants:
 * - Every process is started by us, recorded by PID in a file, and only ever signalled after
 *   checking that the PID still runs the command line we started (pid.ts). Nothing is found or
 *   stopped by name.
 * - Ports are chosen free at create time and checked again before each start (PORT_BUSY).
 * - A failed `create` leaves nothing running and no cluster directory; its logs are kept under
 *   <home>/failed/ and named in the error.
 * - `stop` stops replicas before the leader, so the leader's clean shutdown checkpoint is the
 *   newest WAL anywhere and it takes the lead again on `start` (same roles, same timeline).
 */
import type { SyncSet } from '../../state/sync-record.js';
import { constants as fsConstants, existsSync } from 'node:fs';
import { access, chmod, cp, rm } from 'node:fs/promises';
import path from 'node:path';
import { clusterManifestSchema, nameSchema, MAX_NODES, MIN_NODES, type AgentConfig, type ClusterManifest, type NodeManifest } from '../../config/schema.js';
import { parseConfig } from '../../config/load.js';
import { clusterKeys } from '../../dcs/keys.js';
import type { AppAttachment } from './app-attachments.js';
import { EtcdDcs } from '../../dcs/etcd-dcs.js';
import type { MemberRecord } from '../../state/member-record.js';
import { defaultDynamicConfig, dynamicConfigSchema, type DynamicConfig } from '../../config/schema.js';
import { findPgBinDir } from '../../postgres/bin-dir.js';
import type { Clock } from '../../shared/clock.js';
import { PgpilotError, errorMessage } from '../../shared/errors.js';
import { isOwnedProcessAlive, stopOwnedProcess } from '../../shared/pid.js';
import { makeDirectories } from '../../shared/fs-safe.js';
import { parseJsonOrNull } from '../../shared/json.js';
import { findFreePorts, isPortFree, LOOPBACK_HOST } from '../../shared/ports.js';
import { runCommand } from '../../shared/process-runner.js';
import { buildClusterStatus, type ClusterStatus } from '../../operations/cluster-status.js';
import { localTopology } from './local-topology.js';
import { clusterViewFrom } from '../../operations/cluster-view.js';
import {
  generateSecrets,
  listClusterNames,
  readManifest,
  readPidFile,
  readSecrets,
  readAgentConfig,
  writeAgentConfig,
  writeManifest,
  writePidFile,
  writeSecrets,
} from './cluster-store.js';
import { clientUrl, findEtcdBinary, startEtcd, waitForEtcd } from '../../etcd/etcd-server.js';
import { rotateClusterCertificates } from './cert-rotation.js';
import { adminEtcdTls, certificatesExpireAtMs, clusterCaPem, etcdTlsFiles, nodeTlsFiles, provisionClusterTls } from './local-tls.js';
import { clusterPaths, clusterPathsIn, monitoringPaths, nodeName, nodePaths } from './paths.js';
import { stopPrometheus } from './prometheus-server.js';
import { liveSupervisor, startNodeSupervisor, stopNodeProcesses, supervisorOutFileOf } from './node-supervisor.js';
import { openObjectStore, writeStoreConfigFile, type StoreConfig } from '../../backup/store-config.js';
import type { RestorePlan } from '../../backup/restore-plan.js';
import { describeTarget, restoreDataDirectory } from '../../backup/restore.js';
import { storeLayout } from '../../backup/store-layout.js';
import { archiveCommandFor, restoreCommandFor } from '../../backup/wal-entry.js';
import { ensurePostgresCanReach as ensurePostgresCanReachDir, ensurePostgresOwnedDir, givePostgres } from '../../postgres/initdb.js';
import { ARCHIVE_TIMEOUT_SECONDS } from '../../postgres/local-postgres-node.js';
import { recordEvent } from '../../state/events.js';
import { livePoolerPids } from '../../pooler/pooler-files.js';
import type { PoolerSnapshot } from '../../pooler/pooler-status.js';
import { readdir, rename } from 'node:fs/promises';
import { connectLocal, dropSlotIfExists, slotNameFor } from '../../postgres/queries.js';

export interface ProviderDeps {
  clock: Clock;
  /** Human progress lines (the CLI prints them on stderr). */
  progress(line: string): void;
  /** Path of the compiled CLI entry point that agents are started with. */
  cliEntry: string;
}

export interface CreateOptions {
  home: string;
  name: string;
  nodes: number;
  binDir?: string;
  timeoutMs?: number;
  /** Bring the first node up from a base backup and archived WAL instead of initdb. */
  restore?: RestoreRequest;
}

/** `create NEW --from-backup SRC`: the checked plan (src/backup/restore-plan.ts) and where to read it. */
export interface RestoreRequest {
  sourceCluster: string;
  sourceStore: StoreConfig;
  plan: RestorePlan;
  /** Bound on the archive recovery. */
  recoveryTimeoutMs: number;
}

const DEFAULT_READY_TIMEOUT_MS = 180_000;
/** postgres, REST API, proxy leader port, proxy replica port, pooler (PgBouncer, used once `pooler enable`d). */
export const PORTS_PER_NODE = 5;
const ETCD_READY_TIMEOUT_MS = 30_000;
const AGENT_STOP_GRACE_MS = 60_000;
/** While starting: how long a node may stay without a live agent while its supervisor restarts it (backoff 1+2+4+8 s). */
const AGENT_RESTARTING_LIMIT_MS = 20_000;

/** A DCS client on the cluster's etcd with the admin client certificate (etcd requires one). */
export function adminDcs(manifest: ClusterManifest, operationTimeoutMs: number): EtcdDcs {
  return new EtcdDcs({ endpoints: [clientUrl(manifest.etcd.host, manifest.etcd.clientPort)], operationTimeoutMs, tls: adminEtcdTls(manifest) });
}

export function validateClusterName(name: string): string {
  const result = nameSchema.safeParse(name);
  if (!result.success) {
    throw new PgpilotError('INPUT_INVALID', `invalid cluster name ${JSON.stringify(name)}`, {
      hint: 'use 1-32 lower-case letters, digits and dashes, starting with a letter (e.g. demo, app-db)',
      exitCode: 2,
    });
  }
  return result.data;
}

export function validateNodeCount(nodes: number): number {
  if (!Number.isInteger(nodes) || nodes < MIN_NODES || nodes > MAX_NODES) {
    throw new PgpilotError('INPUT_INVALID', `invalid node count ${String(nodes)}`, {
      hint: `use --nodes with a whole number from ${MIN_NODES} to ${MAX_NODES} (3 is the usual HA size)`,
      exitCode: 2,
    });
  }
  return nodes;
}

async function livePid(pidFile: string, marker: string): Promise<number | null> {
  const pid = await readPidFile(pidFile);
  if (pid === null) return null;
  return (await isOwnedProcessAlive({ pid, marker })) ? pid : null;
}

async function ensureHome(home: string): Promise<void> {
  try {
    await makeDirectories(home);
    await access(home, fsConstants.W_OK | fsConstants.X_OK);
  } catch (error) {
    throw new PgpilotError('HOME_UNUSABLE', `cannot use ${home} as the pgpilot home: ${(error as NodeJS.ErrnoException).code ?? errorMessage(error)}`, {
      hint: 'choose a writable directory with --home DIR or PGPILOT_HOME',
      exitCode: 2,
      cause: error,
    });
  }
}

/** As root, postgres runs as the postgres OS user: it must be able to reach `dir`. */
async function ensurePostgresCanReach(dir: string): Promise<void> {
  await ensurePostgresCanReachDir(dir, 'use a home outside /root (the default as root is /var/lib/pgpilot), or make its parent directories traversable (chmod o+x)');
}

async function checkBinaries(binDir: string | undefined): Promise<{ binDir: string }> {
  const resolved = await findPgBinDir(binDir);
  if ((await findEtcdBinary()) === null) {
    throw new PgpilotError('BINARY_MISSING', 'etcd was not found', { hint: 'run scripts/setup.sh to install etcd-server', exitCode: 2 });
  }
  try {
    await runCommand('setpriv', ['--version'], { timeoutMs: 5_000 });
  } catch {
    throw new PgpilotError('BINARY_MISSING', 'setpriv (util-linux) was not found', { hint: 'install util-linux', exitCode: 2 });
  }
  return { binDir: resolved };
}

export async function createCluster(options: CreateOptions, deps: ProviderDeps): Promise<ClusterStatus> {
  const name = validateClusterName(options.name);
  const nodeCount = validateNodeCount(options.nodes);
  const paths = clusterPaths(options.home, name);
  if (existsSync(paths.clusterDir)) {
    throw new PgpilotError('CLUSTER_EXISTS', `a cluster named ${name} already exists in ${options.home}`, {
      hint: `pick another name, or remove it first with: pgpilot destroy ${name} --yes`,
      exitCode: 2,
    });
  }
  const { binDir } = await checkBinaries(options.binDir);
  await ensureHome(options.home);
  if (nodeCount === 1) deps.progress('warning: a single node has no replica and no failover; use it for development only');

  // From here on, a failure removes everything this call made.
  let manifest: ClusterManifest | null = null;
  try {
    for (const dir of [path.dirname(paths.clusterDir), paths.clusterDir, paths.etcdDir, paths.nodesDir]) {
      await makeDirectories(dir);
      await chmod(dir, 0o755);
    }
    await ensurePostgresCanReach(paths.nodesDir);
    // The default backup store: every member's archive_command (run as the postgres OS user)
    // writes WAL here, so the postgres user owns it; nobody else needs to read it.
    await ensurePostgresOwnedDir(paths.backupsDir, 0o700);
    await makeDirectories(paths.tmpDir, 0o700);
    await writeStoreConfig(paths.backupStoreFile, { kind: 'fs', rootDir: paths.backupsDir });
    const ports = await findFreePorts(2 + nodeCount * PORTS_PER_NODE);
    const port = (i: number): number => ports[i] as number;
    const secrets = generateSecrets();
    await writeSecrets(paths.secretsFile, secrets);
    manifest = parseConfig(
      clusterManifestSchema,
      {
        version: 1,
        name,
        createdAt: new Date(deps.clock.nowMs()).toISOString(),
        clusterDir: paths.clusterDir,
        binDir,
        secretsFile: paths.secretsFile,
        etcd: {
          host: LOOPBACK_HOST,
          clientPort: port(0),
          peerPort: port(1),
          dataDir: paths.etcdDataDir,
          logFile: paths.etcdLogFile,
          pidFile: paths.etcdPidFile,
        },
        nodes: Array.from({ length: nodeCount }, (_, i) => nodeManifestFor(paths.clusterDir, nodeName(i), (k) => port(2 + i * PORTS_PER_NODE + k))),
      },
      'cluster manifest',
    );
    await writeManifest(manifest);
    for (const node of manifest.nodes) {
      await makeDirectories(node.nodeDir);
      await writeAgentConfig(node.configFile, agentConfigFor(manifest, node.name));
    }
    const leaves = await provisionClusterTls(manifest);
    deps.progress(`TLS: cluster CA and ${leaves} certificates in ${paths.tlsDir} (ca.crt is what clients verify against)`);
    deps.progress(`creating cluster ${name}: etcd and ${nodeCount} node${nodeCount === 1 ? '' : 's'} (PostgreSQL from ${binDir})`);
    const restore = options.restore;
    await startProcesses(manifest, deps, restore === undefined ? undefined : (created) => restoreFirstNode(created, restore, deps));
    return await waitUntilReady(manifest, deps, options.timeoutMs ?? DEFAULT_READY_TIMEOUT_MS);
  } catch (error) {
    const kept = manifest === null ? null : await keepFailedLogs(options.home, manifest, deps.clock);
    if (manifest !== null) await stopAll(manifest, deps, { graceMs: 10_000 }).catch(() => undefined);
    await rm(paths.clusterDir, { recursive: true, force: true });
    if (error instanceof PgpilotError && kept !== null) {
      throw new PgpilotError(error.code === 'TIMEOUT' ? 'CLUSTER_START_FAILED' : error.code, `create failed: ${error.message}`, {
        hint: `logs kept in ${kept} (agent.log and postgres.log per node, etcd.log); nothing is left running`,
        exitCode: error.exitCode,
        cause: error,
      });
    }
    throw error;
  }
}

/** A node of the manifest: its paths under `clusterDir` and its PORTS_PER_NODE ports (`port(0..4)`). */
function nodeManifestFor(clusterDir: string, name: string, port: (k: number) => number): NodeManifest {
  const node = nodePaths(clusterDir, name);
  return {
    name,
    host: LOOPBACK_HOST,
    pgPort: port(0),
    apiPort: port(1),
    proxyPort: port(2),
    replicaProxyPort: port(3),
    poolerPort: port(4),
    nodeDir: node.nodeDir,
    dataDir: node.dataDir,
    configFile: node.configFile,
    logFile: node.logFile,
    postgresLogFile: node.postgresLogFile,
    pidFile: node.pidFile,
  };
}

function agentConfigFor(manifest: ClusterManifest, name: string): AgentConfig {
  const node = manifest.nodes.find((n) => n.name === name);
  if (node === undefined) throw new PgpilotError('NODE_NOT_FOUND', `no node ${name} in cluster ${manifest.name}`);
  return {
    cluster: manifest.name,
    node: node.name,
    host: node.host,
    listenAddress: node.host,
    pgPort: node.pgPort,
    apiPort: node.apiPort,
    proxyPort: node.proxyPort,
    replicaProxyPort: node.replicaProxyPort,
    ...(node.poolerPort === undefined ? {} : { poolerPort: node.poolerPort }),
    proxyHoldTimeoutMs: 30_000,
    nodeDir: node.nodeDir,
    dataDir: node.dataDir,
    logFile: node.logFile,
    postgresLogFile: node.postgresLogFile,
    binDir: manifest.binDir,
    secretsFile: manifest.secretsFile,
    etcdEndpoints: [clientUrl(manifest.etcd.host, manifest.etcd.clientPort)],
    tags: {},
    allowedCidrs: ['127.0.0.1/32', '::1/128'],
    backupStoreFile: clusterPathsIn(manifest.clusterDir).backupStoreFile,
    tls: nodeTlsFiles(manifest, node.name),
    knownHosts: knownHostsOf(manifest),
  };
}

/** The cluster's node addresses: the only hosts an agent streams from or calls (src/ha/member-trust.ts). */
function knownHostsOf(manifest: ClusterManifest): string[] {
  return [...new Set(manifest.nodes.map((n) => n.host))];
}

/**
 * After the node list changed: every remaining agent config gets the new `knownHosts` (read at the
 * agent's next start); nothing else in it changes (a node's own bin dir, say, during an image update).
 */
async function updateKnownHosts(manifest: ClusterManifest): Promise<void> {
  for (const node of manifest.nodes) {
    const config = readAgentConfig(node.configFile);
    await writeAgentConfig(node.configFile, { ...config, knownHosts: knownHostsOf(manifest) });
  }
}

/** The backup store config, readable by the postgres OS user only (it may hold S3 credentials). */
export async function writeStoreConfig(file: string, config: StoreConfig): Promise<void> {
  await writeStoreConfigFile(file, config);
  await givePostgres(file);
}

/**
 * Restores the backup into the first node's data directory while only etcd runs, then records
 * the restored system as the cluster's (/initialize) so that no node runs initdb: the first node
 * takes the lead with the restored data (a cleanly shut-down primary) and the others clone it.
 */
async function restoreFirstNode(manifest: ClusterManifest, request: RestoreRequest, deps: ProviderDeps): Promise<void> {
  const node = manifest.nodes[0];
  if (node === undefined) throw new PgpilotError('INTERNAL', 'a cluster without nodes');
  const paths = clusterPathsIn(manifest.clusterDir);
  const secrets = readSecrets(manifest.secretsFile);
  const sourceStoreFile = path.join(node.nodeDir, 'restore-store.json');
  await writeStoreConfig(sourceStoreFile, request.sourceStore);
  const store = openObjectStore(request.sourceStore);
  try {
    const { systemIdentifier } = await restoreDataDirectory({
      store,
      layout: storeLayout(request.sourceCluster),
      record: request.plan.backup,
      target: request.plan.target,
      restoreCommand: restoreCommandFor(sourceStoreFile, request.sourceCluster),
      archive: { mode: 'on', command: archiveCommandFor(paths.backupStoreFile, manifest.name), timeoutSeconds: ARCHIVE_TIMEOUT_SECONDS },
      binDir: manifest.binDir,
      dataDir: node.dataDir,
      stageDir: path.join(paths.tmpDir, 'restore-stage'),
      socketDir: path.join(node.nodeDir, 'run'),
      postgresLogFile: node.postgresLogFile,
      port: node.pgPort,
      clusterName: manifest.name,
      nodeName: node.name,
      secrets,
      tls: nodeTlsFiles(manifest, node.name),
      cidrs: ['127.0.0.1/32', '::1/128'],
      clock: deps.clock,
      progress: (line) => deps.progress(line),
      timeoutMs: request.recoveryTimeoutMs,
    });
    const dcs = adminDcs(manifest, 5_000);
    try {
      const keys = clusterKeys(manifest.name);
      await dcs.createIfAbsent(keys.config, JSON.stringify(defaultDynamicConfig()));
      if (!(await dcs.createIfAbsent(keys.initialize, systemIdentifier))) {
        throw new PgpilotError('INTERNAL', `cluster ${manifest.name} was initialized while its first node was being restored`);
      }
      await recordEvent(dcs, keys, {
        at: new Date(deps.clock.nowMs()).toISOString(),
        kind: 'restored',
        node: node.name,
        message: `restored from backup ${request.plan.backup.id} of ${request.sourceCluster} to ${describeTarget(request.plan.target)}`,
        timeline: null,
      });
    } finally {
      await dcs.close().catch(() => undefined);
    }
  } finally {
    await store.close().catch(() => undefined);
    await rm(sourceStoreFile, { force: true });
  }
}

async function keepFailedLogs(home: string, manifest: ClusterManifest, clock: Clock): Promise<string | null> {
  const stamp = new Date(clock.nowMs()).toISOString().replace(/[:.]/g, '-');
  const target = path.join(home, 'failed', `${manifest.name}-${stamp}`);
  try {
    await makeDirectories(target);
    if (existsSync(manifest.etcd.logFile)) await cp(manifest.etcd.logFile, path.join(target, 'etcd.log'));
    for (const node of manifest.nodes) {
      for (const file of [node.logFile, node.postgresLogFile, path.join(node.nodeDir, 'agent.out')]) {
        if (existsSync(file)) await cp(file, path.join(target, `${node.name}-${path.basename(file)}`));
      }
    }
    return target;
  } catch {
    return null;
  }
}

/** Starts etcd and every agent that is not already running (by recorded PID); `beforeAgents` runs in between. */
async function startProcesses(manifest: ClusterManifest, deps: ProviderDeps, beforeAgents?: (manifest: ClusterManifest) => Promise<void>): Promise<void> {
  const etcdMarker = manifest.etcd.dataDir;
  const endpoint = clientUrl(manifest.etcd.host, manifest.etcd.clientPort);
  if ((await livePid(manifest.etcd.pidFile, etcdMarker)) === null) {
    for (const port of [manifest.etcd.clientPort, manifest.etcd.peerPort]) await assertPortFree(port, 'etcd');
    const { pid } = await startEtcd({
      name: `pgpilot-${manifest.name}`,
      dataDir: manifest.etcd.dataDir,
      clientPort: manifest.etcd.clientPort,
      peerPort: manifest.etcd.peerPort,
      logFile: manifest.etcd.logFile,
      detached: true,
      host: manifest.etcd.host,
      tls: etcdTlsFiles(manifest),
    });
    await writePidFile(manifest.etcd.pidFile, pid);
    deps.progress(`etcd started (pid ${pid}, ${endpoint})`);
  }
  await waitForEtcd(endpoint, adminEtcdTls(manifest), deps.clock, ETCD_READY_TIMEOUT_MS, { logFile: manifest.etcd.logFile });
  if (beforeAgents !== undefined) await beforeAgents(manifest);
  for (const node of manifest.nodes) {
    // A running supervisor restarts its agent by itself (it may be between two attempts now).
    if ((await liveSupervisor(node)) !== null) continue;
    if ((await livePid(node.pidFile, node.configFile)) !== null) {
      deps.progress(`${node.name}: its agent runs without a supervisor (started by an older pgpilot?); left as it is until the next stop`);
      continue;
    }
    await assertPortFree(node.pgPort, `postgres on ${node.name}`);
    await assertPortFree(node.apiPort, `the REST API of ${node.name}`);
    await assertPortFree(node.proxyPort, `the leader proxy port of ${node.name}`);
    await assertPortFree(node.replicaProxyPort, `the replica proxy port of ${node.name}`);
    await startNodeUnderSupervisor(node, deps);
  }
}

/** Starts the node's supervisor (which starts its agent); the agent's PID lands in node.pidFile. */
async function startNodeUnderSupervisor(node: NodeManifest, deps: ProviderDeps): Promise<void> {
  const { supervisorPid, agentPid } = await startNodeSupervisor(deps.cliEntry, node, deps.clock);
  deps.progress(`${node.name}: agent started (pid ${agentPid}, supervisor ${supervisorPid}, log ${node.logFile})`);
}

async function assertPortFree(port: number, what: string): Promise<void> {
  if (!(await isPortFree(port))) {
    throw new PgpilotError('PORT_BUSY', `port ${port} (${what}) is already in use`, {
      hint: `stop the program listening on ${LOOPBACK_HOST}:${port} (see: ss -ltnp | grep ${port}), then run the command again`,
      exitCode: 2,
    });
  }
}

export interface ClusterSnapshot {
  etcd: 'running' | 'stopped' | 'unreachable';
  leader: string | null;
  members: MemberRecord[];
  syncMode: 'off' | 'quorum';
  aliveAgents: Map<string, number>;
  /** The failover lag limit of the dynamic config (for health verdicts); absent when etcd could not be read. */
  maxLagBytes?: number;
  /** Eligibility inputs (cluster-status.ts): last leader LSN, last promotion's timeline, TTL. */
  lastLeaderLsn?: string | null;
  historyTimeline?: number | null;
  ttlSeconds?: number;
  /** Sync mode settings and the published set (/sync). */
  synchronous?: { strict: boolean; nodeCount: number; set: SyncSet | null };
  /** Attached apps (/apps/, `pgpilot attach`). */
  apps?: AppAttachment[];
  /** Pooler settings (/config) and the live PgBouncer PIDs (src/pooler/). */
  pooler?: PoolerSnapshot;
  /** The soonest expiry of the cluster's certificates (ms), null when unreadable. */
  certificatesExpireAtMs: number | null;
}

/** Reads etcd (when our etcd runs) and checks every recorded PID. Never throws for a down cluster. */
export async function snapshotCluster(manifest: ClusterManifest): Promise<ClusterSnapshot> {
  const aliveAgents = new Map<string, number>();
  const certificatesExpireAt = certificatesExpireAtMs(manifest);
  for (const node of manifest.nodes) {
    const pid = await livePid(node.pidFile, node.configFile);
    if (pid !== null) aliveAgents.set(node.name, pid);
  }
  const etcdPid = await livePid(manifest.etcd.pidFile, manifest.etcd.dataDir);
  if (etcdPid === null) return { etcd: 'stopped', leader: null, members: [], syncMode: 'off', aliveAgents, certificatesExpireAtMs: certificatesExpireAt };
  const dcs = adminDcs(manifest, 3_000);
  try {
    const { poolerSettings, ...view } = clusterViewFrom(await dcs.getPrefix(clusterKeys(manifest.name).root), clusterKeys(manifest.name));
    return {
      etcd: 'running',
      ...view,
      aliveAgents,
      pooler: { settings: poolerSettings, alive: await livePoolerPids(manifest.nodes) },
      certificatesExpireAtMs: certificatesExpireAt,
    };
  } catch {
    return { etcd: 'unreachable', leader: null, members: [], syncMode: 'off', aliveAgents, certificatesExpireAtMs: certificatesExpireAt };
  } finally {
    await dcs.close().catch(() => undefined);
  }
}

/** A DCS client on the cluster's etcd and its dynamic config; CLUSTER_NOT_RUNNING when etcd is down. */
export async function openClusterDcs(manifest: ClusterManifest): Promise<{ dcs: EtcdDcs; config: DynamicConfig }> {
  if ((await livePid(manifest.etcd.pidFile, manifest.etcd.dataDir)) === null) {
    throw new PgpilotError('CLUSTER_NOT_RUNNING', `cluster ${manifest.name} is not running (its etcd is stopped)`, {
      hint: `start it with: pgpilot start ${manifest.name}`,
    });
  }
  const dcs = adminDcs(manifest, 3_000);
  try {
    const config = parseJsonOrNull(dynamicConfigSchema, await dcs.get(clusterKeys(manifest.name).config));
    return { dcs, config: config ?? defaultDynamicConfig() };
  } catch (error) {
    await dcs.close().catch(() => undefined);
    throw error;
  }
}

export async function clusterStatus(home: string, name: string): Promise<ClusterStatus> {
  const manifest = await readManifest(home, validateClusterName(name));
  const secrets = readSecrets(manifest.secretsFile);
  const snapshot = await snapshotCluster(manifest);
  return buildClusterStatus({ topology: localTopology(manifest), secrets, ...snapshot });
}

/** Ready: a leader that runs as primary, and every other node a streaming replica. */
export function isReady(status: ClusterStatus): boolean {
  if (status.leader === null) return false;
  return status.members.every((m) =>
    m.name === status.leader ? m.role === 'primary' && m.state === 'running' : m.role === 'replica' && m.streaming && m.lagBytes !== null,
  );
}

async function waitUntilReady(manifest: ClusterManifest, deps: ProviderDeps, timeoutMs: number): Promise<ClusterStatus> {
  const secrets = readSecrets(manifest.secretsFile);
  const deadlineMs = deps.clock.nowMs() + timeoutMs;
  const shown = new Map<string, string>();
  /** Since when each node has had no live agent (its supervisor may be restarting it). */
  const agentMissingSinceMs = new Map<string, number>();
  for (;;) {
    const snapshot = await snapshotCluster(manifest);
    const status = buildClusterStatus({ topology: localTopology(manifest), secrets, ...snapshot });
    for (const member of status.members) {
      const line = `${member.role}${member.name === status.leader ? ' (leader)' : ''}, ${member.state}${member.streaming ? ', streaming' : ''}`;
      if (shown.get(member.name) !== line) {
        shown.set(member.name, line);
        deps.progress(`${member.name}: ${line}`);
      }
    }
    if (isReady(status)) return status;
    let dead: NodeManifest | undefined;
    for (const node of manifest.nodes) {
      if (snapshot.aliveAgents.has(node.name)) {
        agentMissingSinceMs.delete(node.name);
        continue;
      }
      const since = agentMissingSinceMs.get(node.name) ?? deps.clock.nowMs();
      agentMissingSinceMs.set(node.name, since);
      // No supervisor to restart it, or one that keeps failing to: the start failed.
      if ((await liveSupervisor(node)) === null || deps.clock.nowMs() - since >= AGENT_RESTARTING_LIMIT_MS) {
        dead = node;
        break;
      }
    }
    if (dead !== undefined) {
      throw new PgpilotError('CLUSTER_START_FAILED', `the agent of ${dead.name} exited`, { hint: `read ${dead.logFile}, ${path.join(dead.nodeDir, 'agent.out')} and ${supervisorOutFileOf(dead)}` });
    }
    if (deps.clock.nowMs() >= deadlineMs) {
      const waiting = status.members.filter((m) => !(m.role === 'primary' || m.streaming)).map((m) => m.name);
      const first = manifest.nodes.find((n) => n.name === waiting[0]) ?? manifest.nodes[0];
      throw new PgpilotError('TIMEOUT', `cluster ${manifest.name} was not ready within ${Math.round(timeoutMs / 1000)} s (waiting for: ${waiting.join(', ') || 'a leader'})`, {
        hint: `read ${first?.logFile ?? 'the agent logs'} and ${first?.postgresLogFile ?? 'postgres.log'}`,
        retryable: true,
      });
    }
    await deps.clock.sleep(250);
  }
}

export async function startCluster(home: string, name: string, deps: ProviderDeps, timeoutMs = DEFAULT_READY_TIMEOUT_MS): Promise<{ status: ClusterStatus; alreadyRunning: boolean }> {
  const manifest = await readManifest(home, validateClusterName(name));
  const before = await snapshotCluster(manifest);
  const alreadyRunning = before.etcd === 'running' && before.aliveAgents.size === manifest.nodes.length;
  if (!alreadyRunning) {
    await checkBinaries(manifest.binDir);
    deps.progress(`starting cluster ${manifest.name}`);
    try {
      await startProcesses(manifest, deps);
    } catch (error) {
      await stopAll(manifest, deps, { graceMs: 10_000 }).catch(() => undefined);
      throw error;
    }
  }
  return { status: await waitUntilReady(manifest, deps, timeoutMs), alreadyRunning };
}

/** Stops the cluster's Prometheus (monitoring --serve), agents (replicas first, then the leader), then etcd. Idempotent. */
export async function stopAll(manifest: ClusterManifest, deps: ProviderDeps, options: { graceMs?: number } = {}): Promise<number> {
  if ((await stopPrometheus(monitoringPaths(manifest.clusterDir), deps.clock)) !== 'not-running') deps.progress('prometheus stopped');
  const snapshot = await snapshotCluster(manifest);
  const graceMs = options.graceMs ?? AGENT_STOP_GRACE_MS;
  const stopNode = async (nodeName: string): Promise<boolean> => {
    const node = manifest.nodes.find((n) => n.name === nodeName);
    if (node === undefined) return false;
    // The supervisor first (it stops the agent, which stops postgres), then any agent left.
    const how = await stopNodeProcesses(node, deps.clock, graceMs);
    if (how === 'not-running') return false;
    deps.progress(`${nodeName}: agent ${how === 'killed' ? 'killed after the grace period' : 'stopped'}`);
    return true;
  };
  const followers = manifest.nodes.map((n) => n.name).filter((n) => n !== snapshot.leader);
  let stopped = (await Promise.all(followers.map(stopNode))).filter(Boolean).length;
  if (snapshot.leader !== null && (await stopNode(snapshot.leader))) stopped += 1;
  for (const node of manifest.nodes) await rm(node.pidFile, { force: true });
  const etcdPid = await readPidFile(manifest.etcd.pidFile);
  if (etcdPid !== null) {
    const how = await stopOwnedProcess({ pid: etcdPid, marker: manifest.etcd.dataDir }, deps.clock, { signal: 'SIGTERM', graceMs: 15_000 });
    if (how !== 'not-running') {
      stopped += 1;
      deps.progress('etcd stopped');
    }
    await rm(manifest.etcd.pidFile, { force: true });
  }
  await stopOrphanPostmasters(manifest, deps.clock);
  return stopped;
}

/** A postmaster outlives its agent only if something bypassed the parent-death signal; stop it by its own PID file. */
async function stopOrphanPostmasters(manifest: ClusterManifest, clock: Clock): Promise<void> {
  for (const node of manifest.nodes) {
    const pid = await readPidFile(path.join(node.dataDir, 'postmaster.pid')).catch(() => null);
    if (pid === null) continue;
    await stopOwnedProcess({ pid, marker: node.dataDir }, clock, { signal: 'SIGINT', graceMs: 30_000 });
  }
}

export async function stopCluster(home: string, name: string, deps: ProviderDeps): Promise<{ stopped: number }> {
  const manifest = await readManifest(home, validateClusterName(name));
  deps.progress(`stopping cluster ${manifest.name}`);
  return { stopped: await stopAll(manifest, deps) };
}

export async function destroyCluster(home: string, name: string, deps: ProviderDeps): Promise<void> {
  const manifest = await readManifest(home, validateClusterName(name));
  deps.progress(`destroying cluster ${manifest.name}`);
  await stopAll(manifest, deps, { graceMs: 15_000 });
  const left = await snapshotCluster(manifest);
  const supervisorsLeft = (await Promise.all(manifest.nodes.map((n) => liveSupervisor(n)))).filter((p) => p !== null);
  if (left.aliveAgents.size > 0 || supervisorsLeft.length > 0 || left.etcd !== 'stopped') {
    throw new PgpilotError('COMMAND_FAILED', `some processes of ${manifest.name} are still running; nothing was removed`, {
      hint: 'run the command again; if it keeps failing, check the PIDs in the cluster directory',
    });
  }
  await rm(manifest.clusterDir, { recursive: true, force: true });
  deps.progress(`removed ${manifest.clusterDir}`);
}

export interface ClusterListEntry {
  name: string;
  nodes: number;
  running: number;
  etcd: 'running' | 'stopped';
  clusterDir: string;
}

export async function listClusters(home: string): Promise<ClusterListEntry[]> {
  const entries: ClusterListEntry[] = [];
  for (const name of await listClusterNames(home)) {
    try {
      const manifest = await readManifest(home, name);
      let running = 0;
      for (const node of manifest.nodes) if ((await livePid(node.pidFile, node.configFile)) !== null) running += 1;
      const etcd = (await livePid(manifest.etcd.pidFile, manifest.etcd.dataDir)) !== null ? 'running' : 'stopped';
      entries.push({ name, nodes: manifest.nodes.length, running, etcd, clusterDir: manifest.clusterDir });
    } catch {
      // An unreadable cluster directory is skipped here; `status NAME` reports why.
    }
  }
  return entries;
}

// ----- scale count and agent restarts (src/cli/commands/scale-count.ts, image.ts) -----

/** Where `scale count` keeps the data of removed nodes (nothing is deleted without --delete-data). */
export function removedNodesDir(clusterDir: string): string {
  return path.join(clusterDir, 'removed');
}

const REMOVED_STAMP = /^(.+)-\d{4}-\d{2}-\d{2}T[0-9-]+Z$/;

/**
 * Names for `count` new nodes (pure): `nodeN`, continuing after the highest number among the
 * members, node directories and kept data of removed nodes (`<node>-<stamp>`), so a name whose
 * data still exists anywhere is never given to a new node.
 */
export function nextNodeNames(taken: readonly string[], count: number): string[] {
  const names = new Set(taken.map((t) => REMOVED_STAMP.exec(t)?.[1] ?? t));
  let highest = 0;
  for (const name of names) {
    const match = /^node(\d+)$/.exec(name);
    if (match?.[1] !== undefined) highest = Math.max(highest, Number.parseInt(match[1], 10));
  }
  const result: string[] = [];
  for (let i = highest + 1; result.length < count; i += 1) if (!names.has(`node${i}`)) result.push(`node${i}`);
  return result;
}

function nodeNumber(name: string): number {
  const match = /^node(\d+)$/.exec(name);
  return match?.[1] === undefined ? 0 : Number.parseInt(match[1], 10);
}

/**
 * The members `scale count` removes when shrinking by `count` (pure). Never the leader. First the
 * members that do not serve (not a streaming replica), then those beyond the failover lag limit,
 * then asynchronous before synchronous replicas (removing a sync member makes the leader rebuild
 * its set), then the highest-numbered. Fewer than `count` names when there are not enough.
 */
export function chooseNodesToRemove(status: ClusterStatus, count: number, maxLagBytes: number): string[] {
  const rank = (m: ClusterStatus['members'][number]): number[] => [
    m.role === 'replica' && m.streaming ? 1 : 0,
    m.lagBytes !== null && m.lagBytes <= maxLagBytes ? 1 : 0,
    m.sync === true ? 1 : 0,
    -nodeNumber(m.name),
  ];
  const candidates = status.members.filter((m) => m.name !== status.leader);
  candidates.sort((a, b) => {
    const ra = rank(a);
    const rb = rank(b);
    for (let i = 0; i < ra.length; i += 1) if ((ra[i] ?? 0) !== (rb[i] ?? 0)) return (ra[i] ?? 0) - (rb[i] ?? 0);
    return b.name.localeCompare(a.name);
  });
  return candidates.slice(0, count).map((m) => m.name);
}

/** `count` free loopback ports that no node or etcd of the manifest has recorded (a stopped node's port looks free). */
async function freePortsExcluding(manifest: ClusterManifest, count: number): Promise<number[]> {
  const recorded = new Set<number>([manifest.etcd.clientPort, manifest.etcd.peerPort]);
  for (const n of manifest.nodes) for (const p of [n.pgPort, n.apiPort, n.proxyPort, n.replicaProxyPort, n.poolerPort]) if (p !== undefined) recorded.add(p);
  const ports = new Set<number>();
  // Bounded: each round asks the kernel for fresh ephemeral ports.
  for (let round = 0; ports.size < count && round < 10; round += 1) {
    for (const p of await findFreePorts(count)) if (!recorded.has(p)) ports.add(p);
  }
  if (ports.size < count) throw new PgpilotError('PORT_BUSY', `could not find ${count} free loopback ports`, { hint: 'free some ports and try again', retryable: true });
  return [...ports].slice(0, count);
}

export interface ScaleOptions {
  /** Shrinking: remove exactly these nodes (default: `chooseNodesToRemove`). */
  remove?: readonly string[];
  /** Shrinking: delete removed nodes' data instead of moving it to `<clusterDir>/removed/`. */
  deleteData?: boolean;
  timeoutMs?: number;
}

export interface ScaleResult {
  cluster: string;
  from: number;
  to: number;
  added: string[];
  /** Removed nodes and where their data was kept (null: deleted with --delete-data, or there was none). */
  removed: Array<{ name: string; dataKeptAt: string | null }>;
  status: ClusterStatus;
}

/**
 * `scale count NAME N`: adds replicas (cloned from the leader while the cluster serves) or removes
 * them (never the leader). Growing records the new nodes in cluster.json *before* starting their
 * agents, so `stop`/`destroy` always know every process; shrinking stops the agent first, then
 * deletes its member key and its replication slot on the leader, then forgets the node and moves
 * its directory aside. Both end by waiting until every remaining member runs (replicas stream).
 */
export async function scaleCluster(home: string, name: string, count: number, deps: ProviderDeps, options: ScaleOptions = {}): Promise<ScaleResult> {
  const manifest = await readManifest(home, validateClusterName(name));
  if (!Number.isInteger(count) || count < MIN_NODES || count > MAX_NODES) {
    throw new PgpilotError('INPUT_INVALID', `invalid node count ${String(count)}`, { hint: `use a whole number from ${MIN_NODES} to ${MAX_NODES}`, exitCode: 2 });
  }
  const status = await clusterStatus(home, manifest.name);
  if (status.etcd !== 'running' || status.leader === null || !status.members.some((m) => m.name === status.leader && m.role === 'primary')) {
    throw new PgpilotError('CLUSTER_NOT_RUNNING', `cluster ${manifest.name} has no running leader; scaling needs one`, {
      hint: `start it with: pgpilot start ${manifest.name} (pgpilot status ${manifest.name} shows why)`,
    });
  }
  const timeoutMs = options.timeoutMs ?? DEFAULT_READY_TIMEOUT_MS;
  const from = manifest.nodes.length;
  if (count === from) return { cluster: manifest.name, from, to: count, added: [], removed: [], status };
  if (count > from) return growCluster(manifest, status, count, deps, timeoutMs);
  return shrinkCluster(manifest, status, count, deps, options, timeoutMs);
}

async function growCluster(manifest: ClusterManifest, status: ClusterStatus, count: number, deps: ProviderDeps, timeoutMs: number): Promise<ScaleResult> {
  const stopped = status.members.filter((m) => m.pid === null).map((m) => m.name);
  if (stopped.length > 0) {
    throw new PgpilotError('CLUSTER_NOT_RUNNING', `${stopped.join(', ')} of ${manifest.name} ${stopped.length === 1 ? 'is' : 'are'} not running; scale up a cluster whose every node runs`, {
      hint: `start it with: pgpilot start ${manifest.name}, or remove the stopped node(s): pgpilot scale count ${manifest.name} N --node ${stopped.join(',')}`,
    });
  }
  const paths = clusterPathsIn(manifest.clusterDir);
  const onDisk = [
    ...(await readdir(paths.nodesDir).catch(() => [] as string[])),
    ...(await readdir(removedNodesDir(manifest.clusterDir)).catch(() => [] as string[])),
  ];
  const names = nextNodeNames([...manifest.nodes.map((n) => n.name), ...onDisk], count - manifest.nodes.length);
  const ports = await freePortsExcluding(manifest, names.length * PORTS_PER_NODE);
  const port = (i: number): number => ports[i] as number;
  const added = names.map((name, i) => nodeManifestFor(manifest.clusterDir, name, (k) => port(i * PORTS_PER_NODE + k)));
  const next = parseConfig(clusterManifestSchema, { ...manifest, nodes: [...manifest.nodes, ...added] }, 'cluster manifest');
  for (const node of added) {
    await makeDirectories(node.nodeDir);
    await writeAgentConfig(node.configFile, agentConfigFor(next, node.name));
  }
  // Recorded before anything starts: stop and destroy find every agent through cluster.json.
  await writeManifest(next);
  await updateKnownHosts(next);
  // The new nodes need certificates before their agents start (an agent without its node
  // certificate exits at once), and every node certificate names every node's address
  // (src/providers/local/local-tls.ts): new ones for all, served by the running nodes before the
  // new ones start.
  await rotateClusterCertificates(next, status, (line) => deps.progress(`certificates: ${line}`));
  deps.progress(`scaling ${manifest.name} from ${manifest.nodes.length} to ${count} nodes: adding ${names.join(', ')} (cloned from the leader ${status.leader ?? '?'})`);
  await startAgents(next, names, deps);
  const ready = await waitUntilReady(next, deps, timeoutMs);
  await recordClusterEvents(next, names.map((n) => ({ kind: 'member-added' as const, node: n, message: `${n} added by scale count (${manifest.nodes.length} -> ${count} nodes)` })), deps);
  return { cluster: manifest.name, from: manifest.nodes.length, to: count, added: names, removed: [], status: ready };
}

async function shrinkCluster(manifest: ClusterManifest, status: ClusterStatus, count: number, deps: ProviderDeps, options: ScaleOptions, timeoutMs: number): Promise<ScaleResult> {
  const needed = manifest.nodes.length - count;
  const { dcs, config } = await openClusterDcs(manifest);
  try {
    const victims = options.remove !== undefined ? [...new Set(options.remove)] : chooseNodesToRemove(status, needed, config.maximumLagOnFailoverBytes);
    for (const v of victims) {
      if (!manifest.nodes.some((n) => n.name === v)) {
        throw new PgpilotError('NODE_NOT_FOUND', `no node ${v} in cluster ${manifest.name}`, { hint: `nodes: ${manifest.nodes.map((n) => n.name).join(', ')}`, exitCode: 2 });
      }
      if (v === status.leader) {
        const other = status.members.find((m) => m.name !== v && m.role === 'replica' && m.streaming)?.name ?? 'ANOTHER_NODE';
        throw new PgpilotError('LEADER_REMOVAL_REFUSED', `${v} is the leader of ${manifest.name}; scale count never removes the leader`, {
          hint: `switch over first: pgpilot switchover ${manifest.name} --to ${other}, then run the command again`,
          exitCode: 2,
        });
      }
    }
    if (victims.length !== needed) {
      throw new PgpilotError('INPUT_INVALID', `going from ${manifest.nodes.length} to ${count} nodes removes ${needed} node${needed === 1 ? '' : 's'}, not ${victims.length} (${victims.join(', ') || 'none'})`, {
        hint: `name exactly ${needed} node${needed === 1 ? '' : 's'} with --node, or leave --node out`,
        exitCode: 2,
      });
    }
    const remaining = status.members.filter((m) => !victims.includes(m.name) && m.name !== status.leader && m.tags.nofailover !== true).length;
    if (config.synchronous === 'quorum' && config.synchronousStrict && remaining < config.synchronousNodeCount) {
      throw new PgpilotError('INPUT_INVALID', `strict sync mode needs ${config.synchronousNodeCount} synchronous replica(s); ${remaining} would be left, and every write would block`, {
        hint: `lower it first: pgpilot config update ${manifest.name} --synchronous-node-count ${Math.max(1, remaining)} (or --no-synchronous-strict)`,
        exitCode: 2,
      });
    }
    deps.progress(`scaling ${manifest.name} from ${manifest.nodes.length} to ${count} nodes: removing ${victims.join(', ')} (leader ${status.leader ?? '?'} stays)`);
    const keys = clusterKeys(manifest.name);
    for (const victim of victims) {
      const node = manifest.nodes.find((n) => n.name === victim);
      if (node === undefined) continue;
      // Its supervisor first (so nothing restarts the agent); the agent stops postgres (fast)
      // and deletes its member key before it exits.
      const how = await stopNodeProcesses(node, deps.clock, AGENT_STOP_GRACE_MS);
      if (how !== 'not-running') deps.progress(`${victim}: agent ${how === 'killed' ? 'killed after the grace period' : 'stopped'}`);
      const postmaster = await readPidFile(path.join(node.dataDir, 'postmaster.pid')).catch(() => null);
      if (postmaster !== null) await stopOwnedProcess({ pid: postmaster, marker: node.dataDir }, deps.clock, { signal: 'SIGINT', graceMs: 30_000 });
      await rm(node.pidFile, { force: true });
      await dcs.delete(keys.member(victim));
    }
    await dropSlotsOnLeader(manifest, status, victims, deps);
    const next = parseConfig(clusterManifestSchema, { ...manifest, nodes: manifest.nodes.filter((n) => !victims.includes(n.name)) }, 'cluster manifest');
    await writeManifest(next);
    await updateKnownHosts(next);
    const removed: ScaleResult['removed'] = [];
    const stamp = new Date(deps.clock.nowMs()).toISOString().replace(/[:.]/g, '-');
    for (const victim of victims) {
      const node = manifest.nodes.find((n) => n.name === victim);
      if (node === undefined || !existsSync(node.nodeDir)) {
        removed.push({ name: victim, dataKeptAt: null });
        continue;
      }
      if (options.deleteData === true) {
        await rm(node.nodeDir, { recursive: true, force: true });
        deps.progress(`${victim}: data deleted (--delete-data)`);
        removed.push({ name: victim, dataKeptAt: null });
      } else {
        const target = path.join(removedNodesDir(manifest.clusterDir), `${victim}-${stamp}`);
        await makeDirectories(removedNodesDir(manifest.clusterDir));
        await rename(node.nodeDir, target);
        deps.progress(`${victim}: data kept in ${target} (delete it when you no longer need it)`);
        removed.push({ name: victim, dataKeptAt: target });
      }
    }
    await recordClusterEvents(next, victims.map((v) => ({ kind: 'member-removed' as const, node: v, message: `${v} removed by scale count (${manifest.nodes.length} -> ${count} nodes)` })), deps);
    // The leader may have re-created a slot from a member list it read just before the key went.
    await dropSlotsOnLeader(manifest, status, victims, deps, { settleMs: config.loopWaitMs * 3 });
    if (config.synchronous === 'quorum') await waitForSyncSetWithout(next, victims, deps);
    const ready = await waitUntilReady(next, deps, timeoutMs);
    return { cluster: manifest.name, from: manifest.nodes.length, to: count, added: [], removed, status: ready };
  } finally {
    await dcs.close().catch(() => undefined);
  }
}

async function recordClusterEvents(manifest: ClusterManifest, events: Array<{ kind: 'member-added' | 'member-removed'; node: string; message: string }>, deps: ProviderDeps): Promise<void> {
  const dcs = adminDcs(manifest, 3_000);
  try {
    for (const e of events) await recordEvent(dcs, clusterKeys(manifest.name), { at: new Date(deps.clock.nowMs()).toISOString(), ...e, timeline: null });
  } finally {
    await dcs.close().catch(() => undefined);
  }
}

/**
 * Drops the removed members' replication slots on the leader (a slot nobody reads keeps WAL
 * forever). A walsender can outlive its standby for a moment, so an active slot is retried
 * (bounded); with `settleMs`, waits that long first and drops again whatever the leader's slot
 * upkeep re-created from a member list read before the member keys went.
 */
async function dropSlotsOnLeader(manifest: ClusterManifest, status: ClusterStatus, victims: readonly string[], deps: ProviderDeps, options: { settleMs?: number } = {}): Promise<void> {
  const leader = status.members.find((m) => m.name === status.leader);
  if (leader === undefined) return;
  if (options.settleMs !== undefined) await deps.clock.sleep(options.settleMs);
  const secrets = readSecrets(manifest.secretsFile);
  const client = await connectLocal({
    ca: clusterCaPem(manifest),
    host: leader.host,
    port: leader.port,
    user: secrets.superuser.name,
    password: secrets.superuser.password,
    connectTimeoutMs: 5_000,
    applicationName: 'pgpilot-scale',
  });
  try {
    for (const victim of victims) {
      const slot = slotNameFor(victim);
      const deadlineMs = deps.clock.nowMs() + 30_000;
      for (;;) {
        const result = await dropSlotIfExists(client, slot);
        if (result === 'dropped') deps.progress(`${leader.name}: replication slot ${slot} dropped`);
        if (result !== 'active') break;
        if (deps.clock.nowMs() >= deadlineMs) {
          deps.progress(`warning: replication slot ${slot} on ${leader.name} is still in use; drop it later with: SELECT pg_drop_replication_slot('${slot}')`);
          break;
        }
        await deps.clock.sleep(250);
      }
    }
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Sync mode: waits (bounded) until the leader's published synchronous set no longer names removed members. */
async function waitForSyncSetWithout(manifest: ClusterManifest, victims: readonly string[], deps: ProviderDeps): Promise<void> {
  const deadlineMs = deps.clock.nowMs() + 30_000;
  for (;;) {
    const snapshot = await snapshotCluster(manifest);
    const members = snapshot.synchronous?.set?.members ?? [];
    if (!members.some((m) => victims.includes(m))) return;
    if (deps.clock.nowMs() >= deadlineMs) {
      deps.progress(`warning: the published synchronous set still names ${members.filter((m) => victims.includes(m)).join(', ')} (see pgpilot status ${manifest.name})`);
      return;
    }
    await deps.clock.sleep(250);
  }
}

/** Starts the agents of `names` (each after checking its ports are free), recording their PIDs. */
async function startAgents(manifest: ClusterManifest, names: readonly string[], deps: ProviderDeps): Promise<void> {
  for (const name of names) {
    const node = manifest.nodes.find((n) => n.name === name);
    if (node === undefined) throw new PgpilotError('NODE_NOT_FOUND', `no node ${name} in cluster ${manifest.name}`);
    if ((await liveSupervisor(node)) !== null || (await livePid(node.pidFile, node.configFile)) !== null) continue;
    await assertPortFree(node.pgPort, `postgres on ${node.name}`);
    await assertPortFree(node.apiPort, `the REST API of ${node.name}`);
    await assertPortFree(node.proxyPort, `the leader proxy port of ${node.name}`);
    await assertPortFree(node.replicaProxyPort, `the replica proxy port of ${node.name}`);
    if (node.poolerPort !== undefined) await assertPortFree(node.poolerPort, `the pooler port of ${node.name}`);
    await startNodeUnderSupervisor(node, deps);
  }
}

/**
 * Restarts one node's agent (and with it postgres, which is its child): SIGTERM to its supervisor
 * by recorded PID (it stops the agent, which stops postgres cleanly and releases its keys), then a
 * new supervisor and agent from the node's agent.json, which it reads afresh (e.g. a new binDir).
 * Returns the new agent's PID.
 */
export async function restartNodeAgent(home: string, name: string, node: string, deps: ProviderDeps): Promise<number> {
  const manifest = await readManifest(home, validateClusterName(name));
  const entry = manifest.nodes.find((n) => n.name === node);
  if (entry === undefined) throw new PgpilotError('NODE_NOT_FOUND', `no node ${node} in cluster ${manifest.name}`, { hint: `nodes: ${manifest.nodes.map((n) => n.name).join(', ')}`, exitCode: 2 });
  // The supervisor too: the new one runs this pgpilot's code (an image update).
  const how = await stopNodeProcesses(entry, deps.clock, AGENT_STOP_GRACE_MS);
  if (how !== 'not-running') deps.progress(`${node}: agent ${how === 'killed' ? 'killed after the grace period' : 'stopped'}`);
  const postmaster = await readPidFile(path.join(entry.dataDir, 'postmaster.pid')).catch(() => null);
  if (postmaster !== null) await stopOwnedProcess({ pid: postmaster, marker: entry.dataDir }, deps.clock, { signal: 'SIGINT', graceMs: 30_000 });
  await rm(entry.pidFile, { force: true });
  await startAgents(manifest, [node], deps);
  const started = await livePid(entry.pidFile, entry.configFile);
  if (started === null) throw new PgpilotError('CLUSTER_START_FAILED', `the agent of ${node} exited right after starting`, { hint: `read ${entry.logFile} and ${path.join(entry.nodeDir, 'agent.out')}` });
  return started;
}
