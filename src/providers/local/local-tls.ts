/**
 * The local cluster's certificates (src/tls/ does the signing): where they live and which exist.
 *
 *   clusters/<name>/tls/ca.crt (0644), ca.key (0600)   the cluster CA, created once
 *   clusters/<name>/tls/admin.{crt,key}                 the CLI's client certificate (etcd, admin)
 *   clusters/<name>/tls/etcd.{crt,key}                  the local etcd member (client + peer TLS)
 *   clusters/<name>/nodes/<node>/tls/node.{crt,key}     the node: postgres, REST API, PgBouncer, and
 *                                                       the agent's etcd client certificate; the key
 *                                                       is owned by the postgres OS user (0600)
 *
 * Invariant: every node certificate carries every node's address (and loopback) in its SANs,
 * because a node's proxy passes TLS through to the leader, so the leader's certificate must
 * match whichever node address the client dialled. `provisionClusterTls` is therefore run again
 * (new keys, new serials, same CA) whenever the node list changes, and by `certs rotate`.
 */
import type { ClusterManifest, TlsFiles } from '../../config/schema.js';
import { makeDirectories } from '../../shared/fs-safe.js';
import { givePostgres } from '../../postgres/initdb.js';
import { ensureCa, issueLeaf, LEAF_VALID_DAYS, type LeafPlan } from '../../tls/cluster-pki.js';
import { describeCertificateFile, type CertificateInfo } from '../../tls/certificate-info.js';
import { readCaFile, readTlsMaterial, type TlsMaterial } from '../../tls/tls-files.js';
import { clusterPathsIn, nodePaths } from './paths.js';
import path from 'node:path';
import { chmod } from 'node:fs/promises';

const LOOPBACK_ADDRESSES = ['127.0.0.1', '::1'];

/** Every address a client or a member may dial to reach any node (SANs of node certificates). */
export function clusterAddresses(manifest: Pick<ClusterManifest, 'nodes'>): string[] {
  return [...new Set([...manifest.nodes.map((n) => n.host), ...LOOPBACK_ADDRESSES])];
}

/** The CLI's identity towards the cluster: the CA and the admin client certificate. */
export function adminTlsFiles(manifest: Pick<ClusterManifest, 'clusterDir'>): TlsFiles {
  const paths = clusterPathsIn(manifest.clusterDir);
  return { caFile: paths.caFile, certFile: paths.adminCertFile, keyFile: paths.adminKeyFile };
}

/** A node's TLS files (its agent config's `tls`). */
export function nodeTlsFiles(manifest: Pick<ClusterManifest, 'clusterDir'>, node: string): TlsFiles {
  const paths = nodePaths(manifest.clusterDir, node);
  return { caFile: clusterPathsIn(manifest.clusterDir).caFile, certFile: paths.tlsCertFile, keyFile: paths.tlsKeyFile };
}

/** The local etcd member's server and peer certificate. */
export function etcdTlsFiles(manifest: Pick<ClusterManifest, 'clusterDir'>): TlsFiles {
  const paths = clusterPathsIn(manifest.clusterDir);
  return { caFile: paths.caFile, certFile: paths.etcdCertFile, keyFile: paths.etcdKeyFile };
}

/** The leaves of a local cluster (pure apart from the chown hook). */
export function localLeafPlans(manifest: Pick<ClusterManifest, 'clusterDir' | 'nodes'>): LeafPlan[] {
  const paths = clusterPathsIn(manifest.clusterDir);
  const addresses = clusterAddresses(manifest);
  const plans: LeafPlan[] = [
    { certFile: paths.adminCertFile, keyFile: paths.adminKeyFile, request: { commonName: 'admin', ipAddresses: [], dnsNames: [], usage: 'client', validDays: LEAF_VALID_DAYS } },
    {
      certFile: paths.etcdCertFile,
      keyFile: paths.etcdKeyFile,
      request: { commonName: 'etcd', ipAddresses: LOOPBACK_ADDRESSES, dnsNames: ['localhost'], usage: 'server-and-client', validDays: LEAF_VALID_DAYS },
    },
  ];
  for (const node of manifest.nodes) {
    const files = nodeTlsFiles(manifest, node.name);
    plans.push({
      certFile: files.certFile,
      keyFile: files.keyFile,
      // postgres and PgBouncer (postgres OS user) read the node's key.
      chown: givePostgres,
      request: {
        commonName: node.name,
        ipAddresses: addresses,
        dnsNames: ['localhost', ...manifest.nodes.map((n) => n.name)],
        usage: 'server-and-client',
        validDays: LEAF_VALID_DAYS,
      },
    });
  }
  return plans;
}

/**
 * Creates the CA when absent and (re)issues every leaf of the cluster: at create, when nodes are
 * added or removed, and on `certs rotate`. Returns the number of leaves written.
 */
export async function provisionClusterTls(manifest: Pick<ClusterManifest, 'clusterDir' | 'nodes' | 'name'>): Promise<number> {
  const paths = clusterPathsIn(manifest.clusterDir);
  await makeDirectories(paths.tlsDir, 0o755);
  await chmod(paths.tlsDir, 0o755);
  const ca = await ensureCa({ caFile: paths.caFile, caKeyFile: paths.caKeyFile }, manifest.name);
  const plans = localLeafPlans(manifest);
  for (const plan of plans) await makeDirectories(path.dirname(plan.certFile), 0o755);
  // Independent files: signed in parallel (each is a few openssl runs; bootstrap waits on this).
  await Promise.all(plans.map((plan) => issueLeaf(ca, plan)));
  return plans.length;
}

export interface CertificateRow extends CertificateInfo {
  /** `ca`, `admin`, `etcd`, or the node name. */
  name: string;
  file: string;
}

/** Every certificate of the cluster, described (for `certs show` and `status`). */
export function describeClusterCertificates(manifest: Pick<ClusterManifest, 'clusterDir' | 'nodes'>): CertificateRow[] {
  const paths = clusterPathsIn(manifest.clusterDir);
  const rows: CertificateRow[] = [{ name: 'ca', file: paths.caFile, ...describeCertificateFile(paths.caFile) }];
  rows.push({ name: 'admin', file: paths.adminCertFile, ...describeCertificateFile(paths.adminCertFile) });
  rows.push({ name: 'etcd', file: paths.etcdCertFile, ...describeCertificateFile(paths.etcdCertFile) });
  for (const node of manifest.nodes) {
    const file = nodeTlsFiles(manifest, node.name).certFile;
    rows.push({ name: node.name, file, ...describeCertificateFile(file) });
  }
  return rows;
}

/** When the first of the cluster's certificates expires (ms), null when one cannot be read. */
export function certificatesExpireAtMs(manifest: Pick<ClusterManifest, 'clusterDir' | 'nodes'>): number | null {
  try {
    return Math.min(...describeClusterCertificates(manifest).map((r) => r.notAfterEpochMs));
  } catch {
    return null;
  }
}

/** The CLI's etcd client identity (the admin certificate), read now. */
export function adminEtcdTls(manifest: Pick<ClusterManifest, 'clusterDir'>): TlsMaterial {
  return readTlsMaterial(adminTlsFiles(manifest));
}

/** PEM of the cluster CA (what every client of postgres and the REST API verifies against). */
export function clusterCaPem(manifest: Pick<ClusterManifest, 'clusterDir'>): string {
  return readCaFile(clusterPathsIn(manifest.clusterDir).caFile);
}
