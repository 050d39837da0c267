/**
 * Builders for node bundles (src/multihost/bundle.ts), valid by construction (parsed with the
 * schema). `nodeBundle` is pure (placeholder PEMs, for unit tests that never start anything);
 * `realNodeBundles` issues real certificates with the production PKI code (test/helpers/test-pki.ts)
 * for every node of a cluster, plus an admin client identity, for tests that run `node run`.
 */
import { clusterSecretsSchema, type ClusterSecrets } from '../../src/config/schema.js';
import { BUNDLE_KIND, DEFAULT_HOST_PORTS, nodeBundleSchema, type HostPorts, type NodeBundle } from '../../src/multihost/bundle.js';
import { clientUrl } from '../../src/etcd/etcd-server.js';
import { makeTestPki, type TestIdentity, type TestPki } from '../helpers/test-pki.js';

export const FAKE_PEM = '-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n';
export const FAKE_KEY_PEM = '-----BEGIN PRIVATE KEY-----\nMIIBfake\n-----END PRIVATE KEY-----\n';

export function testSecrets(): ClusterSecrets {
  return clusterSecretsSchema.parse({
    superuser: { name: 'postgres', password: 'superuser-password-0123456789' },
    replication: { name: 'replicator', password: 'replication-password-0123456789' },
    apiToken: 'api-token-0123456789abcdef0123456789abcdef',
  });
}

export interface BundleHost {
  name: string;
  host: string;
  etcdMember: boolean;
}

export interface BundleOptions {
  cluster?: string;
  /** Every node; default node1..node3 on 10.0.0.1..3, all etcd members. */
  nodes?: BundleHost[];
  /** The node the bundle is for (default: the first). */
  node?: string;
  ports?: HostPorts;
  clientCidrs?: string[];
  secrets?: ClusterSecrets;
  pem?: { ca: string; cert: string; key: string; etcdCert: string; etcdKey: string };
  backupStoreUrl?: string;
}

export function nodeBundle(options: BundleOptions = {}): NodeBundle {
  const cluster = options.cluster ?? 'demo';
  const nodes = options.nodes ?? [1, 2, 3].map((i) => ({ name: `node${i}`, host: `10.0.0.${i}`, etcdMember: true }));
  const self = nodes.find((n) => n.name === (options.node ?? nodes[0]?.name)) ?? nodes[0];
  if (self === undefined) throw new Error('nodeBundle: no nodes');
  const ports = options.ports ?? { ...DEFAULT_HOST_PORTS };
  const members = nodes.filter((n) => n.etcdMember);
  const pem = options.pem ?? { ca: FAKE_PEM, cert: FAKE_PEM, key: FAKE_KEY_PEM, etcdCert: FAKE_PEM, etcdKey: FAKE_KEY_PEM };
  return nodeBundleSchema.parse({
    kind: BUNDLE_KIND,
    version: 1,
    cluster,
    node: self.name,
    createdAt: '2026-01-01T00:00:00.000Z',
    host: self.host,
    ports,
    nodes,
    etcd: { kind: 'pgpilot', endpoints: members.map((m) => clientUrl(m.host, ports.etcdClientPort)) },
    etcdMember: self.etcdMember
      ? {
          name: self.name,
          initialCluster: members.map((m) => `${m.name}=${clientUrl(m.host, ports.etcdPeerPort)}`).join(','),
          initialClusterState: 'new',
          initialClusterToken: `pgpilot-${cluster}`,
          certPem: pem.etcdCert,
          keyPem: pem.etcdKey,
        }
      : null,
    clientCidrs: options.clientCidrs ?? ['10.0.0.0/24'],
    tags: {},
    secrets: options.secrets ?? testSecrets(),
    tls: { caPem: pem.ca, certPem: pem.cert, keyPem: pem.key },
    ...(options.backupStoreUrl === undefined ? {} : { backupStore: { url: options.backupStoreUrl } }),
  });
}

export interface RealBundles {
  pki: TestPki;
  bundles: Map<string, NodeBundle>;
  /** Client certificate of the CA (etcd and the REST API accept it). */
  admin: TestIdentity;
  cleanup(): Promise<void>;
}

/** One bundle per node with real certificates of one fresh CA (node and etcd certificates name every host and loopback). */
export async function realNodeBundles(options: Omit<BundleOptions, 'node' | 'pem'> & { nodes: BundleHost[] }): Promise<RealBundles> {
  const pki = await makeTestPki('bundle');
  try {
    const addresses = [...new Set([...options.nodes.map((n) => n.host), '127.0.0.1', '::1'])];
    const admin = await pki.issue('admin', { usage: 'client' });
    const bundles = new Map<string, NodeBundle>();
    for (const node of options.nodes) {
      const nodeId = await pki.issue(`${node.name}`, { ipAddresses: addresses, dnsNames: ['localhost', ...options.nodes.map((n) => n.name)], usage: 'server-and-client' });
      const etcdId = await pki.issue(`${node.name}-etcd`, { ipAddresses: [node.host, '127.0.0.1'], dnsNames: ['localhost'], usage: 'server-and-client' });
      bundles.set(
        node.name,
        nodeBundle({
          ...options,
          node: node.name,
          pem: { ca: pki.ca, cert: nodeId.material.cert, key: nodeId.material.key, etcdCert: etcdId.material.cert, etcdKey: etcdId.material.key },
        }),
      );
    }
    return { pki, bundles, admin, cleanup: () => pki.cleanup() };
  } catch (error) {
    await pki.cleanup();
    throw error;
  }
}
