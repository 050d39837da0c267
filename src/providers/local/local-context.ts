/**
 * A local cluster as an admin context (src/multihost/bundle.ts): what `pgpilot cluster context
 * NAME --out FILE` writes, so that the cluster can be managed exactly like a multi-host one
 * (`--context FILE`), e.g. from another account or through a tunnel, and so that the remote
 * handle is tested against real processes. Every node is on the same address with its own ports
 * (`nodes[].ports`); etcd is the cluster's one loopback member; the admin client certificate and
 * the CA come from the cluster's tls/ directory; `caKeyFile` names the CA key there (not copied).
 */
import { CONTEXT_KIND, parseClusterContext, type ClusterContext } from '../../multihost/bundle.js';
import type { ClusterManifest } from '../../config/schema.js';
import { clientUrl } from '../../etcd/etcd-server.js';
import { PgpilotError } from '../../shared/errors.js';
import { readSecrets } from './cluster-store.js';
import { adminEtcdTls } from './local-tls.js';
import { clusterPathsIn } from './paths.js';

export function localClusterContext(manifest: ClusterManifest, createdAtMs: number): ClusterContext {
  const first = manifest.nodes[0];
  if (first === undefined) throw new PgpilotError('INTERNAL', `cluster ${manifest.name} has no node`);
  const tls = adminEtcdTls(manifest);
  const poolerPort = first.poolerPort;
  const raw = {
    kind: CONTEXT_KIND,
    version: 1,
    cluster: manifest.name,
    createdAt: new Date(createdAtMs).toISOString(),
    ports: {
      pgPort: first.pgPort,
      proxyPort: first.proxyPort,
      replicaProxyPort: first.replicaProxyPort,
      // Clusters made before the pooler have no pooler port: an unused placeholder that differs from the others.
      poolerPort: poolerPort ?? manifest.etcd.peerPort + 1,
      apiPort: first.apiPort,
      etcdClientPort: manifest.etcd.clientPort,
      etcdPeerPort: manifest.etcd.peerPort,
    },
    nodes: manifest.nodes.map((n) => ({
      name: n.name,
      host: n.host,
      etcdMember: false,
      ports: { pgPort: n.pgPort, proxyPort: n.proxyPort, replicaProxyPort: n.replicaProxyPort, ...(n.poolerPort === undefined ? {} : { poolerPort: n.poolerPort }), apiPort: n.apiPort },
    })),
    etcd: { kind: 'pgpilot', endpoints: [clientUrl(manifest.etcd.host, manifest.etcd.clientPort)] },
    clientCidrs: ['127.0.0.1/32'],
    secrets: readSecrets(manifest.secretsFile),
    tls: { caPem: tls.ca, certPem: tls.cert, keyPem: tls.key },
    caKeyFile: clusterPathsIn(manifest.clusterDir).caKeyFile,
  };
  // Parsed with the schema every reader uses: what is written is always a valid context.
  return parseClusterContext(JSON.stringify(raw), `the context of ${manifest.name}`);
}
