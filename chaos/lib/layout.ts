/**
 * Where a chaos run keeps its files, one directory per run under CHAOS_HOME:
 *
 *   <home>/<runId>/state.json        what the outer process created (namespaces, tmpfs mounts) and its PID
 *   <home>/<runId>/pids.json         processes the inner process started (PID + command-line marker)
 *   <home>/<runId>/secrets.json      cluster secrets (0600)
 *   <home>/<runId>/tls/              the run's CA (ca.crt, ca.key 0600), etcd.{crt,key} (etcd's server
 *                                    and peer certificate) and harness.{crt,key} (the runner's client
 *                                    certificate: etcd; postgres is reached with a password over verify-full TLS)
 *   <home>/<runId>/etcd/{data,etcd.log}
 *   <home>/<runId>/nodes/<n>/{agent.json,agent.log,agent.out,postgres.log}
 *   <home>/<runId>/nodes/<n>/tls/node.{crt,key}   the node certificate (key owned by the postgres OS user)
 *   <home>/<runId>/nodes/<n>/vol/    the node's own tmpfs (the disk-full fault fills it); pgdata inside
 *
 * The home is under /var/lib (not /root, which is 0700): postgres runs as the postgres OS user and
 * must reach its directories.
 */
import path from 'node:path';
import type { NodeName } from './topology.js';

export const CHAOS_HOME = '/var/lib/pgpilot-chaos';
export const CLUSTER_NAME = 'chaos';
export const PG_PORT = 5432;
export const API_PORT = 8008;
export const PROXY_PORT = 5000;
export const REPLICA_PROXY_PORT = 5001;
export const ETCD_CLIENT_PORT = 2379;
export const ETCD_PEER_PORT = 2380;

export interface NodeLayout {
  nodeDir: string;
  configFile: string;
  logFile: string;
  outFile: string;
  postgresLogFile: string;
  volumeDir: string;
  dataDir: string;
  fillFile: string;
  /** The node certificate and key: postgres, the REST API, and the agent's etcd client certificate. */
  tlsCertFile: string;
  tlsKeyFile: string;
}

export interface RunLayout {
  runDir: string;
  stateFile: string;
  pidsFile: string;
  secretsFile: string;
  etcdDir: string;
  etcdDataDir: string;
  etcdLogFile: string;
  tlsDir: string;
  caFile: string;
  caKeyFile: string;
  etcdCertFile: string;
  etcdKeyFile: string;
  harnessCertFile: string;
  harnessKeyFile: string;
  node(name: NodeName): NodeLayout;
}

export function runLayout(home: string, runId: string): RunLayout {
  const runDir = path.join(home, runId);
  return {
    runDir,
    stateFile: path.join(runDir, 'state.json'),
    pidsFile: path.join(runDir, 'pids.json'),
    secretsFile: path.join(runDir, 'secrets.json'),
    etcdDir: path.join(runDir, 'etcd'),
    etcdDataDir: path.join(runDir, 'etcd', 'data'),
    etcdLogFile: path.join(runDir, 'etcd', 'etcd.log'),
    tlsDir: path.join(runDir, 'tls'),
    caFile: path.join(runDir, 'tls', 'ca.crt'),
    caKeyFile: path.join(runDir, 'tls', 'ca.key'),
    etcdCertFile: path.join(runDir, 'tls', 'etcd.crt'),
    etcdKeyFile: path.join(runDir, 'tls', 'etcd.key'),
    harnessCertFile: path.join(runDir, 'tls', 'harness.crt'),
    harnessKeyFile: path.join(runDir, 'tls', 'harness.key'),
    node: (name) => {
      const nodeDir = path.join(runDir, 'nodes', name);
      const volumeDir = path.join(nodeDir, 'vol');
      return {
        nodeDir,
        configFile: path.join(nodeDir, 'agent.json'),
        logFile: path.join(nodeDir, 'agent.log'),
        outFile: path.join(nodeDir, 'agent.out'),
        postgresLogFile: path.join(nodeDir, 'postgres.log'),
        volumeDir,
        dataDir: path.join(volumeDir, 'pgdata'),
        fillFile: path.join(volumeDir, 'chaos-fill'),
        tlsCertFile: path.join(nodeDir, 'tls', 'node.crt'),
        tlsKeyFile: path.join(nodeDir, 'tls', 'node.key'),
      };
    },
  };
}
