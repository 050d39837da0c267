/**
 * The files of a node run from a bundle (`pgpilot node run --bundle FILE --data-dir DIR`), all
 * under the node's data directory DIR:
 *
 *   DIR/node.json            which cluster and node own DIR (written once, compared at every start)
 *   DIR/node-run.pid         the supervisor's PID while it runs
 *   DIR/node-run.children.json  the PIDs of the children it started (etcd, agent)
 *   DIR/agent.json           the agent's config (0600), written afresh from the bundle at each start
 *   DIR/secrets.json         the cluster secrets (0600)
 *   DIR/backup-store.json    the backup store (0600, postgres-owned), only with a store in the bundle
 *   DIR/tls/ca.crt           the cluster CA (0644)
 *   DIR/tls/node.{crt,key}   the node certificate; key 0600, both postgres-owned when root
 *   DIR/tls/etcd.{crt,key}   the etcd member certificate (hosts that run one); key 0600
 *   DIR/pgdata/              PostgreSQL's data directory (postgres-owned, 0700), never rewritten
 *   DIR/etcd/                the etcd member's data directory (0700), never rewritten
 *   DIR/agent.log, postgres.log, watchdog.log, agent.out, etcd.log   logs
 *
 * Pure path arithmetic; no I/O.
 */
import path from 'node:path';

export interface NodeLayout {
  dataDir: string;
  identityFile: string;
  supervisorPidFile: string;
  childrenFile: string;
  agentConfigFile: string;
  secretsFile: string;
  backupStoreFile: string;
  tlsDir: string;
  caFile: string;
  nodeCertFile: string;
  nodeKeyFile: string;
  etcdCertFile: string;
  etcdKeyFile: string;
  pgDataDir: string;
  etcdDataDir: string;
  agentLogFile: string;
  agentOutFile: string;
  postgresLogFile: string;
  etcdLogFile: string;
}

export function nodeLayout(dataDir: string): NodeLayout {
  const dir = path.resolve(dataDir);
  const at = (...parts: string[]): string => path.join(dir, ...parts);
  return {
    dataDir: dir,
    identityFile: at('node.json'),
    supervisorPidFile: at('node-run.pid'),
    childrenFile: at('node-run.children.json'),
    agentConfigFile: at('agent.json'),
    secretsFile: at('secrets.json'),
    backupStoreFile: at('backup-store.json'),
    tlsDir: at('tls'),
    caFile: at('tls', 'ca.crt'),
    nodeCertFile: at('tls', 'node.crt'),
    nodeKeyFile: at('tls', 'node.key'),
    etcdCertFile: at('tls', 'etcd.crt'),
    etcdKeyFile: at('tls', 'etcd.key'),
    pgDataDir: at('pgdata'),
    etcdDataDir: at('etcd'),
    agentLogFile: at('agent.log'),
    agentOutFile: at('agent.out'),
    postgresLogFile: at('postgres.log'),
    etcdLogFile: at('etcd.log'),
  };
}

/** The default data directory of a node installed by `node install`. */
export function defaultNodeDataDir(cluster: string, node: string): string {
  return path.join('/var/lib/pgpilot', `${cluster}-${node}`);
}
