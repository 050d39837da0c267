/**
 * One way to reach a cluster, whatever runs it (issue 18): its topology (node addresses and
 * ports), secrets, CA, the admin etcd identity, an etcd client, its status, and REST clients for
 * any agent and for the leader. Every cluster command goes through a handle
 * (src/cluster/open-cluster-handle.ts picks one): `local` for a cluster under the pgpilot home on
 * this machine (src/providers/local/local-handle.ts), `remote` for a cluster described by an
 * admin context file written by `pgpilot cluster init` (src/providers/remote/remote-handle.ts).
 *
 * Invariants:
 * - `status()` returns the same `status --json` contract for both kinds
 *   (src/operations/cluster-status.ts builds it from the same inputs).
 * - `local` is set exactly for the local kind: what only makes sense on the machine that runs
 *   the cluster (its manifest: directories, PID files, log files). Code that needs it calls
 *   `requireLocal` (src/cluster/require-local.ts), which refuses a remote handle with LOCAL_ONLY.
 * - Secrets and private keys live only in memory here; nothing of them is logged.
 */
import type { ClusterManifest, ClusterSecrets, DynamicConfig } from '../config/schema.js';
import type { Dcs } from '../dcs/dcs.js';
import type { ClusterStatus } from '../operations/cluster-status.js';
import type { HttpsResponse } from '../shared/https-client.js';
import type { ClusterTopology, NodeEndpoint } from './cluster-topology.js';

/** The etcd client identity of the operator (etcd requires a client certificate), PEM. */
export interface EtcdClientTls {
  ca: string;
  cert: string;
  key: string;
}

/** What only a local cluster has: where it lives on this machine. */
export interface LocalClusterDetails {
  home: string;
  manifest: ClusterManifest;
}

/** A REST call to an agent (src/api/build-api.ts); the handle adds the token and the CA. */
export interface AgentRequest {
  method?: 'GET' | 'POST';
  body?: unknown;
  timeoutMs: number;
}

export interface ClusterHandle {
  readonly kind: 'local' | 'remote';
  /** The cluster name. */
  readonly name: string;
  /** Where the handle came from, for messages: `local cluster in HOME` or `context FILE`. */
  readonly source: string;
  /** Name, nodes and the CA as a local file (connection strings). */
  readonly topology: ClusterTopology;
  readonly nodes: readonly NodeEndpoint[];
  readonly secrets: ClusterSecrets;
  /** PEM of the cluster CA: every postgres, REST and etcd server is verified against it. */
  readonly caPem: string;
  /** The same CA as a file on this machine (libpq's sslrootcert). */
  readonly caFile: string;
  readonly etcdEndpoints: readonly string[];
  readonly etcdTls: EtcdClientTls;
  /** The admin context file of a remote handle (as given); null for a local one. */
  readonly contextFile: string | null;
  /** Local details; null for a remote cluster. */
  readonly local: LocalClusterDetails | null;
  /** The PostgreSQL client binaries (psql) to use on this machine. */
  pgBinDir(): Promise<string>;
  /** An etcd client with the admin identity and the dynamic config; CLUSTER_NOT_RUNNING when etcd cannot be used. The caller closes it. */
  openDcs(timeoutMs?: number): Promise<{ dcs: Dcs; config: DynamicConfig }>;
  /** The `status --json` contract now; never throws for a down cluster (etcd `stopped`/`unreachable`). */
  status(): Promise<ClusterStatus>;
  /** `route` on the agent of `node` (HTTPS, verified against the CA, with the API token). */
  callAgent(node: string, route: string, request: AgentRequest): Promise<HttpsResponse>;
  /** `route` on the current leader's agent; CLUSTER_NOT_RUNNING when there is none. */
  callLeader(route: string, request: AgentRequest): Promise<HttpsResponse>;
}
