/**
 * Where the local provider keeps things (architecture.md §1):
 *   $PGPILOT_HOME/clusters/<name>/cluster.json, secrets.json (0600), tls/, etcd/, nodes/<node>/, backups/
 * The home is `--home`, else $PGPILOT_HOME, else ~/.pgpilot — except as root, where /root is
 * 0700 and the postgres OS user could not reach its data, so the default is /var/lib/pgpilot.
 */
import os from 'node:os';
import path from 'node:path';
import { isRoot } from '../../shared/process-runner.js';

export function defaultHome(env: NodeJS.ProcessEnv = process.env): string {
  const fromEnv = env['PGPILOT_HOME'];
  if (fromEnv !== undefined && fromEnv.length > 0) return path.resolve(fromEnv);
  return isRoot() ? '/var/lib/pgpilot' : path.join(os.homedir(), '.pgpilot');
}

export function resolveHome(option: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  return option !== undefined && option.length > 0 ? path.resolve(option) : defaultHome(env);
}

export interface ClusterPaths {
  clusterDir: string;
  manifestFile: string;
  secretsFile: string;
  etcdDir: string;
  etcdDataDir: string;
  etcdLogFile: string;
  etcdPidFile: string;
  nodesDir: string;
  /** The default (filesystem) backup store: base backups and the WAL archive (postgres-owned, 0700). */
  backupsDir: string;
  /** Where the cluster's backup store is configured (0600, readable by the postgres OS user). */
  backupStoreFile: string;
  /** Scratch space for backups, verification and restores (same disk as the cluster). */
  tmpDir: string;
  /** The cluster CA (ca.crt 0644, ca.key 0600), the admin client pair and etcd's server pair. */
  tlsDir: string;
  caFile: string;
  caKeyFile: string;
  adminCertFile: string;
  adminKeyFile: string;
  etcdCertFile: string;
  etcdKeyFile: string;
}

export function clustersDir(home: string): string {
  return path.join(home, 'clusters');
}

export function clusterPaths(home: string, name: string): ClusterPaths {
  return clusterPathsIn(path.join(clustersDir(home), name));
}

/** The paths of the cluster whose directory is `clusterDir` (ClusterManifest.clusterDir). */
export function clusterPathsIn(clusterDir: string): ClusterPaths {
  const etcdDir = path.join(clusterDir, 'etcd');
  return {
    clusterDir,
    manifestFile: path.join(clusterDir, 'cluster.json'),
    secretsFile: path.join(clusterDir, 'secrets.json'),
    etcdDir,
    etcdDataDir: path.join(etcdDir, 'data'),
    etcdLogFile: path.join(etcdDir, 'etcd.log'),
    etcdPidFile: path.join(etcdDir, 'etcd.pid'),
    nodesDir: path.join(clusterDir, 'nodes'),
    backupsDir: path.join(clusterDir, 'backups'),
    backupStoreFile: path.join(clusterDir, 'backup-store.json'),
    tmpDir: path.join(clusterDir, 'tmp'),
    tlsDir: path.join(clusterDir, 'tls'),
    caFile: path.join(clusterDir, 'tls', 'ca.crt'),
    caKeyFile: path.join(clusterDir, 'tls', 'ca.key'),
    adminCertFile: path.join(clusterDir, 'tls', 'admin.crt'),
    adminKeyFile: path.join(clusterDir, 'tls', 'admin.key'),
    etcdCertFile: path.join(clusterDir, 'tls', 'etcd.crt'),
    etcdKeyFile: path.join(clusterDir, 'tls', 'etcd.key'),
  };
}

export interface NodePaths {
  nodeDir: string;
  dataDir: string;
  configFile: string;
  logFile: string;
  postgresLogFile: string;
  pidFile: string;
  stdoutFile: string;
  /** The node's certificate (server and client) and its key (0600, owned by the postgres OS user). */
  tlsCertFile: string;
  tlsKeyFile: string;
}

export function nodePaths(clusterDir: string, node: string): NodePaths {
  const nodeDir = path.join(clusterDir, 'nodes', node);
  return {
    nodeDir,
    dataDir: path.join(nodeDir, 'pgdata'),
    configFile: path.join(nodeDir, 'agent.json'),
    logFile: path.join(nodeDir, 'agent.log'),
    postgresLogFile: path.join(nodeDir, 'postgres.log'),
    pidFile: path.join(nodeDir, 'agent.pid'),
    stdoutFile: path.join(nodeDir, 'agent.out'),
    tlsCertFile: path.join(nodeDir, 'tls', 'node.crt'),
    tlsKeyFile: path.join(nodeDir, 'tls', 'node.key'),
  };
}

export function nodeName(index: number): string {
  return `node${index + 1}`;
}

/** `pgpilot monitoring NAME --serve`: the cluster's own Prometheus, under `monitoring/`. */
export interface MonitoringPaths {
  dir: string;
  configFile: string;
  dataDir: string;
  logFile: string;
  pidFile: string;
  /** JSON: pid, port, url of the running Prometheus. */
  stateFile: string;
}

export function monitoringPaths(clusterDir: string): MonitoringPaths {
  const dir = path.join(clusterDir, 'monitoring');
  return {
    dir,
    configFile: path.join(dir, 'prometheus.yml'),
    dataDir: path.join(dir, 'data'),
    logFile: path.join(dir, 'prometheus.log'),
    pidFile: path.join(dir, 'prometheus.pid'),
    stateFile: path.join(dir, 'prometheus.json'),
  };
}
