/**
 * What the app commands (attach, detach, users, db, import, config --set, extensions, pooler)
 * share, on any ClusterHandle (local or remote): the cluster's secrets, a superuser connection to
 * the current leader (found through the status the agents publish in etcd, then checked with
 * pg_is_in_recovery(), so SQL never runs on a replica that a stale status still calls leader), and
 * the cluster's etcd. Everything opened is closed by `withAppContext`, whatever happens.
 */
import type { ClusterHandle } from '../cluster/cluster-handle.js';
import type { ClusterSecrets } from '../config/schema.js';
import { clusterKeys, type ClusterKeys } from '../dcs/keys.js';
import type { Dcs } from '../dcs/dcs.js';
import { connectLocal, type PgClient } from '../postgres/queries.js';
import type { ClusterStatus, MemberStatus } from './cluster-status.js';
import { PgpilotError } from '../shared/errors.js';

/** DDL such as CREATE DATABASE checkpoints; give it room on a busy machine. */
export const APP_STATEMENT_TIMEOUT_MS = 120_000;
const CONNECT_TIMEOUT_MS = 5_000;

export interface AppContext {
  /** How the cluster is reached (its `local` details only for a local cluster). */
  handle: ClusterHandle;
  /** The cluster name. */
  cluster: string;
  secrets: ClusterSecrets;
  /** PEM of the cluster CA (every postgres and agent connection verifies against it). */
  ca: string;
  status: ClusterStatus;
  leader: MemberStatus;
  keys: ClusterKeys;
  dcs: Dcs;
  /** Superuser connection to the leader's `postgres` database. */
  client: PgClient;
  /** A new superuser connection to `database` on the leader; the caller ends it. */
  connectTo(database: string, options?: { statementTimeoutMs?: number }): Promise<PgClient>;
}

/** The member leading now, or CLUSTER_NOT_RUNNING with a hint. */
export function leaderMember(status: ClusterStatus): MemberStatus {
  const leader = status.members.find((m) => m.name === status.leader && m.role === 'primary');
  if (leader === undefined) {
    throw new PgpilotError('CLUSTER_NOT_RUNNING', `cluster ${status.cluster} has no writable leader right now`, {
      hint: `check pgpilot status ${status.cluster}; start it with pgpilot start ${status.cluster}, or retry after a failover completes`,
      retryable: true,
    });
  }
  return leader;
}

/** The names of pgpilot's own roles for this cluster (never usable as app users). */
export function clusterRoleNames(secrets: ClusterSecrets): string[] {
  return [secrets.superuser.name, secrets.replication.name];
}

export async function withAppContext<T>(handle: ClusterHandle, fn: (ctx: AppContext) => Promise<T>): Promise<T> {
  const secrets = handle.secrets;
  const status = await handle.status();
  const leader = leaderMember(status);
  const ca = handle.caPem;
  const connectTo = async (database: string, options: { statementTimeoutMs?: number } = {}): Promise<PgClient> => {
    const client = await connectLocal({
      ca,
      host: leader.host,
      port: leader.port,
      user: secrets.superuser.name,
      password: secrets.superuser.password,
      database,
      connectTimeoutMs: CONNECT_TIMEOUT_MS,
      applicationName: 'pgpilot-cli',
      statementTimeoutMs: options.statementTimeoutMs ?? APP_STATEMENT_TIMEOUT_MS,
    });
    try {
      const recovery = await client.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r');
      if (recovery.rows[0]?.r !== false) {
        throw new PgpilotError('CLUSTER_NOT_RUNNING', `${leader.name} is not writable (a switchover or failover is in progress)`, {
          hint: `retry in a few seconds; pgpilot status ${handle.name} shows the leader`,
          retryable: true,
        });
      }
    } catch (error) {
      await client.end().catch(() => undefined);
      throw error;
    }
    return client;
  };
  const { dcs } = await handle.openDcs();
  try {
    const client = await connectTo('postgres');
    try {
      return await fn({ handle, cluster: handle.name, secrets, ca, status, leader, keys: clusterKeys(handle.name), dcs, client, connectTo });
    } finally {
      await client.end().catch(() => undefined);
    }
  } finally {
    await dcs.close().catch(() => undefined);
  }
}
