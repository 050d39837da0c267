/**
 * Where a cluster's nodes listen, whatever runs them: the part of a cluster's description that
 * status, connection strings, the pooler and the REST clients need. The local provider builds it
 * from its manifest (every node on loopback, ports chosen at create time), the remote provider
 * from an admin context file (`NAME.context.json`: every host uses the same ports).
 *
 * Invariant: `caFile` is a file on THIS machine holding the cluster CA (libpq's `sslrootcert`
 * needs a file, not PEM text); it is what every printed connection string names.
 */

/** One node's address and ports. */
export interface NodeEndpoint {
  name: string;
  host: string;
  pgPort: number;
  apiPort: number;
  proxyPort: number;
  replicaProxyPort: number;
  /** PgBouncer's port (`pooler enable`); undefined for nodes made before the pooler existed. */
  poolerPort?: number | undefined;
}

export interface ClusterTopology {
  /** The cluster name. */
  name: string;
  nodes: readonly NodeEndpoint[];
  /** The cluster CA as a local file (connection strings' sslrootcert). */
  caFile: string;
}
