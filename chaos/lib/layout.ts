/**
 * Where a chaos run keeps its files, one directory per run under CHAOS_HOME:
 *
 *   <home>/<runId>/state.json        what the outer process created (namespaces, tmpfs mounts) and its PID
 *   <home>/<runId>/pids.json         processes the inner process started (PID + command-line marker)
 *   <home>/<runId>/secrets.json      cluster secrets (0600)
 *   <home>/<runId>/tls/              the run's CA (ca.crt, ca.key 0600) and harness.{crt,key} (the
 *                                    runner's client certificate: etcd; postgres is reached with a
 *                                    password over verify-full TLS)
 *   <home>/<runId>/nodes/<n>/{agent.json,agent.log,agent.out,postgres.log,etcd.log}
 *   <home>/<runId>/nodes/<n>/tls/node.{crt,key}   the node certificate (key owned by the postgres OS user)
 *   <home>/<runId>/nodes/<n>/tls/etcd.{crt,key}   the host's etcd member: server and peer certificate
 *   <home>/<runId>/nodes/<n>/vol/    the host's own disk, a tmpfs: pgdata/ and etcd/ (the member's data
 *                                    dir, 0700 root) share it, as on a real host, so the disk-full
 *                                    fault starves that host's etcd member as well as its postgres
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
  /** The host's etcd member: its data dir (on the volume), log (on disk), server/peer certificate. */
  etcdDataDir: string;
  etcdLogFile: string;
  etcdCertFile: string;
  etcdKeyFile: string;
  /** The node certificate and key: postgres, the REST API, and the agent's etcd client certificate. */
  tlsCertFile: string;
  tlsKeyFile: string;
}

export interface RunLayout {
  runDir: string;
  stateFile: string;
  pidsFile: string;
  secretsFile: string;
  tlsDir: string;
  caFile: string;
  caKeyFile: string;
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
    tlsDir: path.join(runDir, 'tls'),
    caFile: path.join(runDir, 'tls', 'ca.crt'),
    caKeyFile: path.join(runDir, 'tls', 'ca.key'),
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
        etcdDataDir: path.join(volumeDir, 'etcd'),
        etcdLogFile: path.join(nodeDir, 'etcd.log'),
        etcdCertFile: path.join(nodeDir, 'tls', 'etcd.crt'),
        etcdKeyFile: path.join(nodeDir, 'tls', 'etcd.key'),
        tlsCertFile: path.join(nodeDir, 'tls', 'node.crt'),
        tlsKeyFile: path.join(nodeDir, 'tls', 'node.key'),
      };
    },
  };
}
