/**
 * The ClusterHandle (src/cluster/cluster-handle.ts) of a cluster reached through an admin context
 * file (`NAME.context.json`, src/multihost/bundle.ts): etcd at the context's endpoints with the
 * admin client certificate, every node at its host with the context's ports (the same on every
 * host), and the status built from etcd alone.
 *
 * Invariants:
 * - No local directory, PID or process is looked at: an agent counts as alive when its member
 *   record exists (the record lives on the agent's lease, so it disappears within a TTL of the
 *   agent's death), and `pid`/`postgresPid` are the ones the record carries. Pooler PIDs are
 *   unknown (null). The status JSON has exactly the shape of a local one.
 * - etcd that cannot be read makes the status `etcd: 'unreachable'` (never `stopped`: no process
 *   of it runs here to be stopped) and `openDcs` CLUSTER_NOT_RUNNING with a hint.
 * - The context's private key stays in memory; the CA is written to a file (public) for libpq.
 */
import { X509Certificate } from 'node:crypto';
import type { ClusterHandle, EtcdClientTls } from '../../cluster/cluster-handle.js';
import { agentCalls } from '../../cluster/agent-calls.js';
import type { ClusterTopology } from '../../cluster/cluster-topology.js';
import { defaultDynamicConfig, dynamicConfigSchema, type DynamicConfig } from '../../config/schema.js';
import type { Dcs } from '../../dcs/dcs.js';
import { EtcdDcs } from '../../dcs/etcd-dcs.js';
import { clusterKeys } from '../../dcs/keys.js';
import type { ClusterContext } from '../../multihost/bundle.js';
import { buildClusterStatus, type ClusterStatus } from '../../operations/cluster-status.js';
import { clusterViewFrom } from '../../operations/cluster-view.js';
import { findPgBinDir } from '../../postgres/bin-dir.js';
import { PgpilotError, errorMessage } from '../../shared/errors.js';
import { parseJsonOrNull } from '../../shared/json.js';
import { contextCaFile } from './context-ca-file.js';

const STATUS_TIMEOUT_MS = 3_000;

export interface RemoteHandleOptions {
  contextFile: string;
  context: ClusterContext;
  /** The pgpilot home on this machine (fallback place of the CA file). */
  home: string;
  /** Replaces the etcd client (tests: a MemoryDcs). */
  makeDcs?: (timeoutMs: number) => Dcs;
}

/** The topology of a context: each node at its host, with the ports every host uses (or the node's own, when it has them). */
export function contextTopology(context: ClusterContext, caFile: string): ClusterTopology {
  return {
    name: context.cluster,
    nodes: context.nodes.map((n) => ({
      name: n.name,
      host: n.host,
      pgPort: n.ports?.pgPort ?? context.ports.pgPort,
      apiPort: n.ports?.apiPort ?? context.ports.apiPort,
      proxyPort: n.ports?.proxyPort ?? context.ports.proxyPort,
      replicaProxyPort: n.ports?.replicaProxyPort ?? context.ports.replicaProxyPort,
      poolerPort: n.ports === undefined ? context.ports.poolerPort : n.ports.poolerPort,
    })),
    caFile,
  };
}

/** The soonest expiry of the context's certificates (the CA and the admin certificate), null when unreadable. */
export function contextCertificatesExpireAtMs(context: ClusterContext): number | null {
  try {
    return Math.min(...[context.tls.caPem, context.tls.certPem].map((pem) => Date.parse(new X509Certificate(pem).validTo)));
  } catch {
    return null;
  }
}

export async function openRemoteHandle(options: RemoteHandleOptions): Promise<ClusterHandle> {
  const { context } = options;
  const caFile = await contextCaFile(options.contextFile, context.cluster, context.tls.caPem, options.home);
  const topology = contextTopology(context, caFile);
  const etcdTls: EtcdClientTls = { ca: context.tls.caPem, cert: context.tls.certPem, key: context.tls.keyPem };
  const endpoints = [...context.etcd.endpoints];
  const makeDcs = options.makeDcs ?? ((timeoutMs: number): Dcs => new EtcdDcs({ endpoints, operationTimeoutMs: timeoutMs, tls: etcdTls }));
  const keys = clusterKeys(context.cluster);
  const expiresAtMs = contextCertificatesExpireAtMs(context);
  const status = async (): Promise<ClusterStatus> => remoteStatus(topology, context, makeDcs(STATUS_TIMEOUT_MS), expiresAtMs);
  const calls = agentCalls(context.cluster, topology.nodes, () => context.secrets, () => context.tls.caPem, status);
  return {
    kind: 'remote',
    name: context.cluster,
    source: `the context ${options.contextFile}`,
    topology,
    nodes: topology.nodes,
    secrets: context.secrets,
    caPem: context.tls.caPem,
    caFile,
    etcdEndpoints: endpoints,
    etcdTls,
    contextFile: options.contextFile,
    local: null,
    pgBinDir: () => findPgBinDir(),
    openDcs: async (timeoutMs = STATUS_TIMEOUT_MS): Promise<{ dcs: Dcs; config: DynamicConfig }> => {
      const dcs = makeDcs(timeoutMs);
      try {
        const config = parseJsonOrNull(dynamicConfigSchema, await dcs.get(keys.config));
        return { dcs, config: config ?? defaultDynamicConfig() };
      } catch (error) {
        await dcs.close().catch(() => undefined);
        throw new PgpilotError('CLUSTER_NOT_RUNNING', `cannot reach the etcd of ${context.cluster} at ${endpoints.join(', ')}: ${errorMessage(error)}`, {
          hint: `check that the hosts run (systemctl status pgpilot@${context.cluster} on each) and that this machine reaches ${endpoints.join(', ')}`,
          retryable: true,
          cause: error,
        });
      }
    },
    status,
    callAgent: calls.callAgent,
    callLeader: calls.callLeader,
  };
}

/** The status from etcd alone (see the invariants above); `dcs` is closed before returning. */
export async function remoteStatus(topology: ClusterTopology, context: Pick<ClusterContext, 'cluster' | 'secrets'>, dcs: Dcs, certificatesExpireAtMs: number | null): Promise<ClusterStatus> {
  const keys = clusterKeys(context.cluster);
  let all: Map<string, string>;
  try {
    all = await dcs.getPrefix(keys.root);
  } catch {
    return buildClusterStatus({ topology, secrets: context.secrets, etcd: 'unreachable', leader: null, members: [], syncMode: 'off', aliveAgents: new Map(), certificatesExpireAtMs });
  } finally {
    await dcs.close().catch(() => undefined);
  }
  const { poolerSettings, ...view } = clusterViewFrom(all, keys);
  // No PID can be checked on another host: the record (on the agent's lease) is the evidence.
  const aliveAgents = new Map(view.members.map((r) => [r.name, r.pid]));
  return buildClusterStatus({
    topology,
    secrets: context.secrets,
    etcd: 'running',
    ...view,
    aliveAgents,
    pooler: { settings: poolerSettings, alive: new Map() },
    certificatesExpireAtMs,
  });
}
