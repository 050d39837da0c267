/**
 * The topology (src/cluster/cluster-topology.ts) of a local cluster, from its manifest: every
 * node's address and ports as chosen at create time, and the CA file under the cluster directory.
 */
import type { ClusterManifest } from '../../config/schema.js';
import type { ClusterTopology } from '../../cluster/cluster-topology.js';
import { clusterPathsIn } from './paths.js';

export function localTopology(manifest: Pick<ClusterManifest, 'name' | 'nodes' | 'clusterDir'>): ClusterTopology {
  return {
    name: manifest.name,
    nodes: manifest.nodes.map((n) => ({
      name: n.name,
      host: n.host,
      pgPort: n.pgPort,
      apiPort: n.apiPort,
      proxyPort: n.proxyPort,
      replicaProxyPort: n.replicaProxyPort,
      poolerPort: n.poolerPort,
    })),
    caFile: clusterPathsIn(manifest.clusterDir).caFile,
  };
}
