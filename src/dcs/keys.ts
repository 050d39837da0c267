/**
 * The one place that knows the etcd key layout (docs/architecture.md, etcd key layout). Everything a cluster keeps
 * lives under `/pgpilot/<cluster>/`; nothing else writes there.
 *
 *   leader            node name, on the leader's lease
 *   members/<node>    JSON MemberRecord, on the node's lease
 *   config            JSON dynamic cluster config
 *   initialize        system identifier of the bootstrapped cluster (create-if-absent); while a
 *                     node runs initdb it holds `pending:<node>` on that node's lease
 *   sync              JSON { leader, members, quorum }: the published synchronous set (sync mode),
 *                     written only by the leader, compare-and-set (src/state/sync-record.ts); no lease
 *   failover          JSON switchover/failover intent (src/state/intent.ts)
 *   history           JSON list of promotions (src/state/history.ts)
 *   status/lastLsn    the leader's last published WAL position
 *   events            JSON list of cluster events (role changes, switchovers, fencing, rejoins)
 *   backup-lock       id of the running base backup, on that run's lease (one backup at a time)
 *   apps/<app>        JSON { app, database, user, createdAt }: an attached app (pgpilot attach);
 *                     created if absent, so an app is attached at most once; never a password
 */

export const KEY_ROOT = '/pgpilot';

export interface ClusterKeys {
  root: string;
  leader: string;
  membersPrefix: string;
  member(node: string): string;
  config: string;
  initialize: string;
  sync: string;
  failover: string;
  history: string;
  events: string;
  lastLsn: string;
  /** Held (on a lease) by the one base backup that runs at a time (src/backup/base-backup.ts). */
  backupLock: string;
  appsPrefix: string;
  app(name: string): string;
}

export function clusterKeys(cluster: string): ClusterKeys {
  const root = `${KEY_ROOT}/${cluster}/`;
  return {
    root,
    leader: `${root}leader`,
    membersPrefix: `${root}members/`,
    member: (node: string) => `${root}members/${node}`,
    config: `${root}config`,
    initialize: `${root}initialize`,
    sync: `${root}sync`,
    failover: `${root}failover`,
    history: `${root}history`,
    events: `${root}events`,
    lastLsn: `${root}status/lastLsn`,
    backupLock: `${root}backup-lock`,
    appsPrefix: `${root}apps/`,
    app: (name: string) => `${root}apps/${name}`,
  };
}

/** The node name in a member key, or null when the key is not a member key of this cluster. */
export function memberNameFromKey(keys: ClusterKeys, key: string): string | null {
  if (!key.startsWith(keys.membersPrefix)) return null;
  const name = key.slice(keys.membersPrefix.length);
  return name.length > 0 && !name.includes('/') ? name : null;
}

export const INITIALIZE_PENDING_PREFIX = 'pending:';
