/**
 * The ClusterHandle (src/cluster/cluster-handle.ts) of a local cluster: built from the pgpilot home
 * and the cluster name, it reads the manifest and the secrets once and behaves exactly as the
 * commands did before the handle existed (status from recorded PIDs and etcd, etcd client with the
 * admin certificate of the cluster's tls/ directory). The secrets, the CA and the admin key are
 * read when first used, so a command that needs none of them (haproxy-config) does not fail on them.
 */
import type { ClusterHandle, EtcdClientTls } from '../../cluster/cluster-handle.js';
import type { ClusterSecrets } from '../../config/schema.js';
import { agentCalls } from '../../cluster/agent-calls.js';
import { clientUrl } from '../../etcd/etcd-server.js';
import { readManifest, readSecrets } from './cluster-store.js';
import { adminEtcdTls, clusterCaPem } from './local-tls.js';
import { localTopology } from './local-topology.js';
import { clusterStatus, openClusterDcs, validateClusterName } from './local-provider.js';

export async function openLocalHandle(home: string, name: string): Promise<ClusterHandle> {
  const manifest = await readManifest(home, validateClusterName(name));
  let secrets: ClusterSecrets | null = null;
  const readSecretsOnce = (): ClusterSecrets => {
    secrets ??= readSecrets(manifest.secretsFile);
    return secrets;
  };
  const topology = localTopology(manifest);
  let caPem: string | null = null;
  let etcdTls: EtcdClientTls | null = null;
  const status = () => clusterStatus(home, manifest.name);
  const ca = (): string => {
    caPem ??= clusterCaPem(manifest);
    return caPem;
  };
  const calls = agentCalls(manifest.name, topology.nodes, readSecretsOnce, ca, status);
  return {
    kind: 'local',
    name: manifest.name,
    source: `the local cluster directory ${manifest.clusterDir}`,
    topology,
    nodes: topology.nodes,
    get secrets(): ClusterSecrets {
      return readSecretsOnce();
    },
    get caPem(): string {
      return ca();
    },
    caFile: topology.caFile,
    etcdEndpoints: [clientUrl(manifest.etcd.host, manifest.etcd.clientPort)],
    get etcdTls(): EtcdClientTls {
      etcdTls ??= adminEtcdTls(manifest);
      return etcdTls;
    },
    contextFile: null,
    local: { home, manifest },
    pgBinDir: () => Promise.resolve(manifest.binDir),
    openDcs: async () => openClusterDcs(manifest),
    status,
    callAgent: calls.callAgent,
    callLeader: calls.callLeader,
  };
}
