/**
 * Renewing a local cluster's certificates while it serves (`pgpilot certs rotate`, and scale-up,
 * which must put the new node's address into every node certificate). New keys and serials for
 * every leaf, the same CA; then every running agent is told to serve its new files
 * (`POST /reload-tls`: the REST API swaps its TLS context, postgres and PgBouncer reload). etcd
 * reads its certificate files at each new TLS handshake, so it needs no signal.
 *
 * Nothing is interrupted: reloads keep open connections (postgres' reload re-reads ssl_*_file for
 * new connections only), so clients see no error. Old certificates stay valid until they expire
 * (there is no revocation list): rotation limits how long a stolen key is useful, it does not
 * cut off a copy that was already taken.
 */
import type { ClusterManifest } from '../../config/schema.js';
import { callAgent } from '../../api/agent-client.js';
import { errorMessage } from '../../shared/errors.js';
import { readSecrets } from './cluster-store.js';
import type { ClusterStatus } from '../../operations/cluster-status.js';
import { clusterCaPem, provisionClusterTls } from './local-tls.js';

export interface NodeReload {
  node: string;
  reloaded: boolean;
  detail: string;
}

export interface RotationResult {
  cluster: string;
  certificates: number;
  nodes: NodeReload[];
}

const RELOAD_TIMEOUT_MS = 30_000;

/** Issues new leaves and has every running agent of `status` serve them. */
export async function rotateClusterCertificates(manifest: ClusterManifest, status: ClusterStatus, progress: (line: string) => void): Promise<RotationResult> {
  const certificates = await provisionClusterTls(manifest);
  progress(`issued ${certificates} certificates (same CA); telling every running node to serve its new one`);
  const token = readSecrets(manifest.secretsFile).apiToken;
  const ca = clusterCaPem(manifest);
  const nodes: NodeReload[] = [];
  for (const member of status.members) {
    if (member.pid === null) {
      nodes.push({ node: member.name, reloaded: false, detail: 'not running: it serves the new certificate when it starts' });
      continue;
    }
    try {
      const answer = await callAgent(member.apiUrl, '/reload-tls', { method: 'POST', token, ca, timeoutMs: RELOAD_TIMEOUT_MS });
      nodes.push({ node: member.name, reloaded: answer.ok, detail: answer.ok ? 'REST API, postgres and PgBouncer reloaded' : `HTTP ${answer.status} ${answer.text.slice(0, 200)}` });
    } catch (error) {
      nodes.push({ node: member.name, reloaded: false, detail: errorMessage(error) });
    }
    const last = nodes.at(-1);
    if (last !== undefined) progress(`${last.node}: ${last.reloaded ? 'reloaded' : `not reloaded (${last.detail})`}`);
  }
  return { cluster: manifest.name, certificates, nodes };
}
