/**
 * The cluster under test: one etcd in its namespace, one `pgpilot agent` per host namespace
 * (the agent starts postgres as the postgres OS user and its HAProxy itself), each node's data on
 * its own tmpfs. Processes are started with `ip netns exec NS ...`, which execs in place: the PID
 * we record is the agent's (or etcd's) own, and every start is recorded in pids.json at once.
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
import { SystemClock } from '../../src/shared/clock.js';
import { isOwnedProcessAlive, readCmdline, stopOwnedProcess } from '../../src/shared/pid.js';
import { runCommand } from '../../src/shared/process-runner.js';
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
import { ETCD_ADDRESS, NODE_NAMES, SUBNET, nodeAddress, type NodeName, type Topology } from './topology.js';

export const ETCD_ENDPOINT = clientUrl(ETCD_ADDRESS, ETCD_CLIENT_PORT);
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
  for (const dir of [path.dirname(layout.runDir), layout.runDir, layout.etcdDir, path.join(layout.runDir, 'nodes')]) {
    mkdirSync(dir, { recursive: true });
    chmodSync(dir, 0o755);
  }
  mkdirSync(layout.etcdDataDir, { recursive: true, mode: 0o700 });
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
  etcdPid: number | null;
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
    etcdEndpoints: [ETCD_ENDPOINT],
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

export async function startEtcdProcess(cluster: ChaosCluster): Promise<number> {
  const binary = await findEtcdBinary();
  if (binary === null) throw new Error('etcd was not found (run scripts/setup.sh)');
  const args = etcdArgs({
    name: 'chaos',
    dataDir: cluster.layout.etcdDataDir,
    clientPort: ETCD_CLIENT_PORT,
    peerPort: ETCD_PEER_PORT,
    host: ETCD_ADDRESS,
    tls: { caFile: cluster.layout.caFile, certFile: cluster.layout.etcdCertFile, keyFile: cluster.layout.etcdKeyFile },
  });
  const prioritized = atControlPlanePriority(binary, args);
  const pid = spawnInNamespace(cluster.topology.etcdNs, prioritized.command, prioritized.args, cluster.layout.etcdLogFile, cluster.layout.etcdDir);
  cluster.pids.add({ pid, marker: cluster.layout.etcdDataDir, what: 'etcd' });
  cluster.etcdPid = pid;
  await waitForEtcd(ETCD_ENDPOINT, cluster.credentials.tls, clock, 30_000, { logFile: cluster.layout.etcdLogFile, pid });
  return pid;
}

/** SIGTERM (then SIGKILL after 10 s) of the recorded etcd. */
export async function stopEtcdProcess(cluster: ChaosCluster): Promise<void> {
  if (cluster.etcdPid === null) return;
  await stopOwnedProcess({ pid: cluster.etcdPid, marker: cluster.layout.etcdDataDir }, clock, { signal: 'SIGTERM', graceMs: 10_000 });
  cluster.etcdPid = null;
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

/** Writes the secrets, agent configs and the dynamic config, starts etcd and the three agents. */
export async function startCluster(cluster: ChaosCluster, mode: 'sync' | 'async', log: (line: string) => void): Promise<void> {
  const binDir = await findPgBinDir();
  await writeSecrets(cluster.layout.secretsFile, cluster.secrets);
  for (const name of NODE_NAMES) await writeAgentConfig(cluster.layout.node(name).configFile, agentConfigFor(cluster.layout, name, binDir));
  const etcdPid = await startEtcdProcess(cluster);
  log(`etcd started in ${cluster.topology.etcdNs} (pid ${etcdPid}, ${ETCD_ENDPOINT})`);
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
  return { topology, layout, secrets, credentials: { secrets, tls: harnessTls(layout) }, cliEntry, pids, etcdPid: null, agentPids: new Map() };
}

export async function withDcs<T>(credentials: HarnessCredentials, fn: (dcs: EtcdDcs) => Promise<T>): Promise<T> {
  const dcs = new EtcdDcs({ endpoints: [ETCD_ENDPOINT], operationTimeoutMs: 2_000, tls: credentials.tls });
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

/** Stops every agent (SIGCONT first, SIGTERM, SIGKILL after the grace), then etcd. */
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
  await stopEtcdProcess(cluster);
}
