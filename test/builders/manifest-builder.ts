/**
 * Builders for the local provider's `cluster.json` manifest and `secrets.json` (schemas in
 * src/config/schema.ts): valid by construction (checked against the schemas), N nodes with
 * distinct ports, paths under a fake cluster directory that is never created.
 */
import { clusterManifestSchema, clusterSecretsSchema, type ClusterManifest, type ClusterSecrets } from '../../src/config/schema.js';

export interface ManifestOptions {
  name?: string;
  nodes?: number;
  clusterDir?: string;
  host?: (index: number) => string;
}

export function clusterManifest(options: ManifestOptions = {}): ClusterManifest {
  const name = options.name ?? 'demo';
  const clusterDir = options.clusterDir ?? `/nonexistent/pgpilot/clusters/${name}`;
  const count = options.nodes ?? 3;
  const nodes = Array.from({ length: count }, (_, i) => {
    const node = `node${i + 1}`;
    const nodeDir = `${clusterDir}/nodes/${node}`;
    return {
      name: node,
      host: options.host?.(i) ?? '127.0.0.1',
      pgPort: 15432 + i,
      apiPort: 18008 + i,
      proxyPort: 16432 + i,
      replicaProxyPort: 17432 + i,
      nodeDir,
      dataDir: `${nodeDir}/pgdata`,
      configFile: `${nodeDir}/agent.json`,
      logFile: `${nodeDir}/agent.log`,
      postgresLogFile: `${nodeDir}/postgres.log`,
      pidFile: `${nodeDir}/agent.pid`,
    };
  });
  return clusterManifestSchema.parse({
    version: 1,
    name,
    createdAt: '2024-06-11T00:00:00.000Z',
    clusterDir,
    binDir: '/usr/lib/postgresql/15/bin',
    secretsFile: `${clusterDir}/secrets.json`,
    etcd: {
      host: '127.0.0.1',
      clientPort: 12379,
      peerPort: 12380,
      dataDir: `${clusterDir}/etcd/data`,
      logFile: `${clusterDir}/etcd/etcd.log`,
      pidFile: `${clusterDir}/etcd/etcd.pid`,
    },
    nodes,
  });
}

export function clusterSecrets(overrides: { superuser?: string; password?: string } = {}): ClusterSecrets {
  return clusterSecretsSchema.parse({
    superuser: { name: overrides.superuser ?? 'postgres', password: overrides.password ?? 'superuser-password-0123456789' },
    replication: { name: 'replicator', password: 'replication-password-0123456789' },
    apiToken: 'a'.repeat(40),
  });
}
