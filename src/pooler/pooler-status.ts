/**
 * The `pooler` part of `status --json` (pure): the dynamic config's pooler settings, each node's
 * pooler port and whether its PgBouncer runs, and a libpq multi-host URL over every node's pooler
 * port (each reaches the leader through its node's leader port, so any one of them will do).
 */
import { connectionUrl } from '../postgres/connection-url.js';
import type { ClusterSecrets, PoolerSettings } from '../config/schema.js';
import type { ClusterTopology } from '../cluster/cluster-topology.js';

export interface PoolerNodeStatus {
  name: string;
  host: string;
  /** null: this node has no pooler port (created before pgpilot had a pooler). */
  port: number | null;
  /** PID of its running PgBouncer, null when none runs. */
  pid: number | null;
}

export interface PoolerStatus {
  enabled: boolean;
  poolMode: PoolerSettings['poolMode'];
  defaultPoolSize: number;
  nodes: PoolerNodeStatus[];
  /** Through every node's pooler port; null while the pooler is disabled or no node has a port. */
  connectionString: string | null;
}

/** What `snapshotCluster` gathers for it: the settings in etcd and the live PgBouncer PIDs. */
export interface PoolerSnapshot {
  settings: PoolerSettings;
  alive: ReadonlyMap<string, number>;
}

export function poolerConnectionString(topology: ClusterTopology, secrets: ClusterSecrets, database = 'postgres'): string | null {
  const endpoints = topology.nodes.flatMap((n) => (n.poolerPort === undefined ? [] : [{ host: n.host, port: n.poolerPort }]));
  if (endpoints.length === 0) return null;
  return connectionUrl({ user: secrets.superuser.name, password: secrets.superuser.password, endpoints, database, caFile: topology.caFile });
}

/**
 * The status text lines about the pooler (pure): none while it is disabled (or unknown), else its
 * connection string (through `show`, which masks the password) and where PgBouncer runs.
 */
export function poolerStatusLines(pooler: PoolerStatus | null, show: (url: string) => string): string[] {
  if (pooler === null || !pooler.enabled) return [];
  const running = pooler.nodes.filter((n) => n.pid !== null).map((n) => n.name);
  const where = `${pooler.poolMode} mode, pool size ${pooler.defaultPoolSize}, running on ${running.length}/${pooler.nodes.length} nodes${running.length > 0 ? ` (${running.join(', ')})` : ''}`;
  if (pooler.connectionString === null) return [`pooler connection string:    none (no node has a pooler port); ${where}`];
  return [`pooler connection string:    ${show(pooler.connectionString)}`, `pooler:                      ${where}`];
}

/** null when etcd could not be read (settings unknown). */
export function buildPoolerStatus(topology: ClusterTopology, secrets: ClusterSecrets, snapshot: PoolerSnapshot | undefined): PoolerStatus | null {
  if (snapshot === undefined) return null;
  const { settings } = snapshot;
  return {
    enabled: settings.enabled,
    poolMode: settings.poolMode,
    defaultPoolSize: settings.defaultPoolSize,
    nodes: topology.nodes.map((n) => ({ name: n.name, host: n.host, port: n.poolerPort ?? null, pid: snapshot.alive.get(n.name) ?? null })),
    connectionString: settings.enabled ? poolerConnectionString(topology, secrets) : null,
  };
}
