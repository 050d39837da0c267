/**
 * The cluster under test: three hosts (network namespaces n1..n3), each running one member of a
 * 3-member etcd cluster and one `pgpilot agent` (the agent starts postgres as the postgres OS user
 * and its HAProxy itself), as `pgpilot node run` lays out a multi-host cluster. Each host's disk is
 * its own tmpfs, shared by its postgres data and its etcd member's data dir. Processes are started
 * with `ip netns exec NS ...`, which execs in place: the PID we record is the agent's (or etcd
 * member's) own, and every start is recorded in pids.json at once.
 *
 * Invariants: every agent (and watchdog, and the runner's own DCS client) lists all three etcd
 * members as endpoints; the cluster is only used once every member reports healthy; a member is
 * stopped only by its recorded PID (checked against its data dir) and restarted on the same data
 * dir (etcd then ignores the initial-cluster flags and rejoins with its stored membership).
 */
import { spawn } from 'node:child_process';
import { chmodSync, chownSync, closeSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { agentConfigSchema, dynamicConfigSchema, type AgentConfig, type ClusterSecrets } from '../../src/config/schema.js';
import { EtcdDcs } from '../../src/dcs/etcd-dcs.js';
import { clusterKeys } from '../../src/dcs/keys.js';
import { memberRecordsIn, type MemberRecord } from '../../src/state/member-record.js';
import { findPgBinDir } from '../../src/postgres/bin-dir.js';
import { generateSecrets, writeAgentConfig, writeSecrets } from '../../src/providers/local/cluster-store.js';
import { clientUrl, etcdArgs, findEtcdBinary, waitForEtcd } from '../../src/etcd/etcd-server.js';
import { errorMessage } from '../../src/shared/errors.js';
import { SystemClock } from '../../src/shared/clock.js';
import { isOwnedProcessAlive, readCmdline, stopOwnedProcess } from '../../src/shared/pid.js';
import { runCommand } from '../../src/shared/process-runner.js';
import { httpsRequest } from '../../src/shared/https-client.js';
import { atControlPlanePriority } from '../../src/shared/priority.js';
import {
  API_PORT,
  CLUSTER_NAME,
  ETCD_CLIENT_PORT,
  ETCD_PEER_PORT,
  PG_PORT,
  PROXY_PORT,
  REPLICA_PROXY_PORT,
  type RunLayout,
} from './layout.js';
import type { PidRecord } from './resources.js';
import { harnessTls, type HarnessCredentials } from './chaos-tls.js';
import { NODE_NAMES, SUBNET, nodeAddress, type NodeName, type Topology } from './topology.js';

/** The client URL of `name`'s etcd member. */
export function etcdEndpoint(name: NodeName): string {
  return clientUrl(nodeAddress(name), ETCD_CLIENT_PORT);
}
/** Every member's client URL: what agents, watchdogs and the runner are given. */
export const ETCD_ENDPOINTS: readonly string[] = NODE_NAMES.map(etcdEndpoint);
/** `n1=https://10.213.7.11:2380,...`: the initial membership every member is started with. */
export const ETCD_INITIAL_CLUSTER = NODE_NAMES.map((n) => `${n}=${clientUrl(nodeAddress(n), ETCD_PEER_PORT)}`).join(',');
/** One token for the run's etcd cluster (etcdArgs' default is per member name). */
const ETCD_CLUSTER_TOKEN = `pgpilot-${CLUSTER_NAME}`;
const clock = new SystemClock();

function postgresIds(): { uid: number; gid: number } {
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('postgres:'));
  const parts = line?.split(':') ?? [];
  const uid = Number(parts[2]);
  const gid = Number(parts[3]);
  if (!Number.isInteger(uid) || !Number.isInteger(gid)) throw new Error('the postgres OS user is missing (run scripts/setup.sh)');
  return { uid, gid };
}

/**
 * Outer process, before anything runs: the run's directories and one tmpfs per node volume.
 * `recordMount` is called before each mount so that a failure right after still unmounts it.
 */
export async function prepareDirectories(layout: RunLayout, tmpfsSize: string, recordMount: (dir: string) => void): Promise<void> {
  const { uid, gid } = postgresIds();
  for (const dir of [path.dirname(layout.runDir), layout.runDir, path.join(layout.runDir, 'nodes')]) {
    mkdirSync(dir, { recursive: true });
    chmodSync(dir, 0o755);
  }
  const reach = await runCommand('setpriv', ['--reuid', 'postgres', '--regid', 'postgres', '--init-groups', '--', 'test', '-x', layout.runDir], { check: false, timeoutMs: 10_000 });
  if (reach.exitCode !== 0) {
    throw new Error(`the postgres OS user cannot reach ${layout.runDir}: use a --home whose parent directories are traversable (chmod o+x)`);
  }
  for (const name of NODE_NAMES) {
    const node = layout.node(name);
    mkdirSync(node.volumeDir, { recursive: true });
    chmodSync(node.nodeDir, 0o755);
    recordMount(node.volumeDir);
    await runCommand(
      'mount',
      ['-t', 'tmpfs', '-o', `size=${tmpfsSize},mode=0755,uid=${uid},gid=${gid}`, `${layout.runDir.split('/').pop() ?? 'pgp-chaos'}-${name}`, node.volumeDir],
      { timeoutMs: 15_000 },
    );
    chownSync(node.volumeDir, uid, gid);
    // The host's etcd member keeps its data on the same disk as postgres (etcd runs as root here).
    mkdirSync(node.etcdDataDir, { mode: 0o700 });
  }
}

export interface ChaosCluster {
  topology: Topology;
  layout: RunLayout;
  secrets: ClusterSecrets;
  /** The runner's clients: the superuser's password and the harness certificate (see chaos-tls.ts). */
  credentials: HarnessCredentials;
  cliEntry: string;
  pids: PidRecord;
  /** The recorded PID of each host's etcd member (absent: not started, or stopped by us). */
  etcdPids: Map<NodeName, number>;
  agentPids: Map<NodeName, number>;
}

export function agentConfigFor(layout: RunLayout, name: NodeName, binDir: string): AgentConfig {
  const node = layout.node(name);
  return agentConfigSchema.parse({
    cluster: CLUSTER_NAME,
    node: name,
    host: nodeAddress(name),
    listenAddress: nodeAddress(name),
    pgPort: PG_PORT,
    apiPort: API_PORT,
    proxyPort: PROXY_PORT,
    replicaProxyPort: REPLICA_PROXY_PORT,
    proxyHoldTimeoutMs: 30_000,
    nodeDir: node.nodeDir,
    dataDir: node.dataDir,
    logFile: node.logFile,
    postgresLogFile: node.postgresLogFile,
    binDir,
    secretsFile: layout.secretsFile,
    etcdEndpoints: [...ETCD_ENDPOINTS],
    tags: {},
    allowedCidrs: [SUBNET, '127.0.0.1/32'],
    tls: { caFile: layout.caFile, certFile: node.tlsCertFile, keyFile: node.tlsKeyFile },
    // Every node's address: agents ignore member records (and never stream from or call) anything else.
    knownHosts: NODE_NAMES.map(nodeAddress),
  });
}

function spawnInNamespace(ns: string, command: string, args: string[], outFile: string, cwd: string): number {
  const fd = openSync(outFile, 'a', 0o600);
  try {
    const child = spawn('ip', ['netns', 'exec', ns, command, ...args], { detached: true, stdio: ['ignore', fd, fd], cwd, env: { ...process.env } });
    child.unref();
    if (child.pid === undefined) throw new Error(`could not start ${command} in ${ns}`);
    return child.pid;
  } finally {
    closeSync(fd);
  }
}

/**
 * Starts `name`'s etcd member in its host namespace (control-plane priority, PID recorded) and
 * resolves once the process exists. `state` is `new` at bootstrap and `existing` for a restart: a
 * member restarted on its data dir ignores both and rejoins with the membership it stored.
 */
export async function spawnEtcdMember(cluster: ChaosCluster, name: NodeName, state: 'new' | 'existing'): Promise<number> {
  const binary = await findEtcdBinary();
  if (binary === null) throw new Error('etcd was not found (run scripts/setup.sh)');
  const node = cluster.layout.node(name);
  const args = etcdArgs({
    name,
    dataDir: node.etcdDataDir,
    clientPort: ETCD_CLIENT_PORT,
    peerPort: ETCD_PEER_PORT,
    host: nodeAddress(name),
    tls: { caFile: cluster.layout.caFile, certFile: node.etcdCertFile, keyFile: node.etcdKeyFile },
    initialCluster: ETCD_INITIAL_CLUSTER,
    initialClusterState: state,
    initialClusterToken: ETCD_CLUSTER_TOKEN,
  });
  const prioritized = atControlPlanePriority(binary, args);
  const pid = spawnInNamespace(cluster.topology.nodeNs[name], prioritized.command, prioritized.args, node.etcdLogFile, node.nodeDir);
  cluster.pids.add({ pid, marker: node.etcdDataDir, what: `etcd ${name}` });
  cluster.etcdPids.set(name, pid);
  return pid;
}

/** Waits until `name`'s member answers /health (it has a leader): bounded by `timeoutMs`. */
export async function waitForEtcdMember(cluster: ChaosCluster, name: NodeName, timeoutMs: number): Promise<void> {
  const pid = cluster.etcdPids.get(name);
  await waitForEtcd(etcdEndpoint(name), cluster.credentials.tls, clock, timeoutMs, { logFile: cluster.layout.node(name).etcdLogFile, ...(pid === undefined ? {} : { pid }) });
}

/** Restarts one member on its data dir and waits until it is healthy again. */
export async function restartEtcdMember(cluster: ChaosCluster, name: NodeName): Promise<number> {
  const pid = await spawnEtcdMember(cluster, name, 'existing');
  await waitForEtcdMember(cluster, name, 30_000);
  return pid;
}

/** The live etcd member PID of `name` (recorded, command line checked), else null. */
export async function etcdMemberPid(cluster: ChaosCluster, name: NodeName): Promise<number | null> {
  const pid = cluster.etcdPids.get(name);
  if (pid === undefined) return null;
  return (await isOwnedProcessAlive({ pid, marker: cluster.layout.node(name).etcdDataDir })) ? pid : null;
}

/** Stops `name`'s member by its recorded PID: SIGTERM (SIGKILL after 10 s), or SIGKILL at once. */
export async function stopEtcdMember(cluster: ChaosCluster, name: NodeName, signal: 'SIGTERM' | 'SIGKILL'): Promise<string> {
  const pid = cluster.etcdPids.get(name);
  if (pid === undefined) return 'not-running';
  const how = await stopOwnedProcess({ pid, marker: cluster.layout.node(name).etcdDataDir }, clock, { signal, graceMs: 10_000 });
  cluster.etcdPids.delete(name);
  return how;
}

/**
 * Members whose /health is not true right now (each asked for at most `timeoutMs`), with the
 * reason. An empty list: all three members are up and see a leader.
 */
export async function unhealthyEtcdMembers(cluster: ChaosCluster, timeoutMs = 1_500): Promise<string[]> {
  const results = await Promise.all(
    NODE_NAMES.map(async (name) => {
      try {
        await waitForEtcd(etcdEndpoint(name), cluster.credentials.tls, clock, timeoutMs, { pollMs: 250 });
        return null;
      } catch (error) {
        return `${name} (${(await etcdMemberPid(cluster, name)) === null ? 'not running' : errorMessage(error)})`;
      }
    }),
  );
  return results.filter((r): r is string => r !== null);
}

/**
 * Whether `name`'s member is the etcd cluster's raft leader right now (its `etcd_server_is_leader`
 * metric on the client port), or null when it cannot be asked.
 */
export async function isEtcdLeader(cluster: ChaosCluster, name: NodeName): Promise<boolean | null> {
  try {
    const response = await httpsRequest(`${etcdEndpoint(name)}/metrics`, { timeoutMs: 2_000, tls: cluster.credentials.tls });
    if (!response.ok) return null;
    const line = response.text.split('\n').find((l) => l.startsWith('etcd_server_is_leader '));
    return line === undefined ? null : line.trim().endsWith(' 1');
  } catch {
    return null;
  }
}

export function startAgentProcess(cluster: ChaosCluster, name: NodeName): number {
  const node = cluster.layout.node(name);
  const pid = spawnInNamespace(cluster.topology.nodeNs[name], process.execPath, [cluster.cliEntry, 'agent', '--config', node.configFile], node.outFile, node.nodeDir);
  cluster.pids.add({ pid, marker: node.configFile, what: `agent ${name}` });
  cluster.agentPids.set(name, pid);
  return pid;
}

/** The live agent PID of `name` (recorded, command line checked), else null. */
export async function agentPid(cluster: ChaosCluster, name: NodeName): Promise<number | null> {
  const pid = cluster.agentPids.get(name);
  if (pid === undefined) return null;
  return (await isOwnedProcessAlive({ pid, marker: cluster.layout.node(name).configFile })) ? pid : null;
}

/** The postmaster of `name` from its postmaster.pid, checked to run postgres on that data dir. */
export async function postmasterPid(cluster: ChaosCluster, name: NodeName): Promise<number | null> {
  const dataDir = cluster.layout.node(name).dataDir;
  try {
    const pid = Number.parseInt((await readFile(path.join(dataDir, 'postmaster.pid'), 'utf8')).split('\n')[0] ?? '', 10);
    if (!Number.isInteger(pid) || pid <= 1) return null;
    const cmdline = await readCmdline(pid);
    return cmdline !== null && cmdline.includes(dataDir) ? pid : null;
  } catch {
    return null;
  }
}

/**
 * Writes the secrets, agent configs and the dynamic config, starts the three etcd members, waits
 * until every one of them is healthy (the cluster formed: each sees a leader), then the agents.
 */
export async function startCluster(cluster: ChaosCluster, mode: 'sync' | 'async', log: (line: string) => void): Promise<void> {
  const binDir = await findPgBinDir();
  await writeSecrets(cluster.layout.secretsFile, cluster.secrets);
  for (const name of NODE_NAMES) await writeAgentConfig(cluster.layout.node(name).configFile, agentConfigFor(cluster.layout, name, binDir));
  for (const name of NODE_NAMES) {
    const pid = await spawnEtcdMember(cluster, name, 'new');
    log(`${name}: etcd member started in ${cluster.topology.nodeNs[name]} (pid ${pid}, ${etcdEndpoint(name)})`);
  }
  // A member alone is never healthy (no quorum): wait for all three, together.
  await Promise.all(NODE_NAMES.map((name) => waitForEtcdMember(cluster, name, 60_000)));
  log(`etcd cluster healthy: ${NODE_NAMES.length} members (${ETCD_ENDPOINTS.join(', ')})`);
  // The dynamic config goes in before any agent runs, so the cluster is born in the chosen mode.
  const config = dynamicConfigSchema.parse({ synchronous: mode === 'sync' ? 'quorum' : 'off' });
  await withDcs(cluster.credentials, (dcs) => dcs.put(clusterKeys(CLUSTER_NAME).config, JSON.stringify(config)));
  for (const name of NODE_NAMES) {
    const pid = startAgentProcess(cluster, name);
    log(`${name}: agent started in ${cluster.topology.nodeNs[name]} (pid ${pid}, ${nodeAddress(name)})`);
  }
}

export function newChaosCluster(topology: Topology, layout: RunLayout, cliEntry: string, pids: PidRecord): ChaosCluster {
  const secrets = generateSecrets();
  // The certificates were made by the outer process (provisionChaosTls) before this one started.
  return { topology, layout, secrets, credentials: { secrets, tls: harnessTls(layout) }, cliEntry, pids, etcdPids: new Map(), agentPids: new Map() };
}

export async function withDcs<T>(credentials: HarnessCredentials, fn: (dcs: EtcdDcs) => Promise<T>): Promise<T> {
  const dcs = new EtcdDcs({ endpoints: [...ETCD_ENDPOINTS], operationTimeoutMs: 2_000, tls: credentials.tls });
  try {
    return await fn(dcs);
  } finally {
    await dcs.close().catch(() => undefined);
  }
}

export interface DcsView {
  leader: string | null;
  members: MemberRecord[];
  synchronous: string | null;
}

export async function readDcsView(credentials: HarnessCredentials): Promise<DcsView> {
  return withDcs(credentials, async (dcs) => {
    const keys = clusterKeys(CLUSTER_NAME);
    const all = await dcs.getPrefix(keys.root);
    const members = memberRecordsIn(all, keys);
    let synchronous: string | null = null;
    try {
      synchronous = (JSON.parse(all.get(keys.config) ?? 'null') as { synchronous?: string } | null)?.synchronous ?? null;
    } catch {
      synchronous = null;
    }
    return { leader: all.get(keys.leader) ?? null, members, synchronous };
  });
}

/** Stops every agent (SIGCONT first, SIGTERM, SIGKILL after the grace), then every etcd member. */
export async function stopCluster(cluster: ChaosCluster, log: (line: string) => void): Promise<void> {
  await Promise.all(
    NODE_NAMES.map(async (name) => {
      const pid = cluster.agentPids.get(name);
      if (pid === undefined) return;
      const marker = cluster.layout.node(name).configFile;
      if (await isOwnedProcessAlive({ pid, marker })) {
        try {
          process.kill(pid, 'SIGCONT');
        } catch {
          // gone
        }
      }
      const how = await stopOwnedProcess({ pid, marker }, clock, { signal: 'SIGTERM', graceMs: 30_000 });
      if (how !== 'not-running') log(`${name}: agent ${how}`);
    }),
  );
  await Promise.all(
    NODE_NAMES.map(async (name) => {
      const how = await stopEtcdMember(cluster, name, 'SIGTERM');
      if (how !== 'not-running') log(`${name}: etcd member ${how}`);
    }),
  );
}
