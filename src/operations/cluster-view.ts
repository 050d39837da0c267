/**
 * What etcd says about a cluster, read from one prefix read (pure): leader, member records, the
 * dynamic config's status-relevant settings, the eligibility inputs (last leader LSN, last
 * promotion's timeline), the published synchronous set and the attached apps. Both ClusterHandle
 * kinds feed it to `buildClusterStatus` (src/operations/cluster-status.ts), so local and remote
 * status agree on every field that comes from etcd.
 */
import { defaultDynamicConfig, dynamicConfigSchema, type PoolerSettings } from '../config/schema.js';
import type { ClusterKeys } from '../dcs/keys.js';
import { parseHistory } from '../state/history.js';
import { memberRecordsIn, type MemberRecord } from '../state/member-record.js';
import { parseSyncSet, type SyncSet } from '../state/sync-record.js';
import { attachmentsIn, type AppAttachment } from '../providers/local/app-attachments.js';
import { parseJsonOrNull } from '../shared/json.js';

export interface EtcdClusterView {
  leader: string | null;
  members: MemberRecord[];
  syncMode: 'off' | 'quorum';
  /** The failover lag limit of the dynamic config (for health verdicts). */
  maxLagBytes: number;
  lastLeaderLsn: string | null;
  historyTimeline: number | null;
  ttlSeconds: number;
  synchronous: { strict: boolean; nodeCount: number; set: SyncSet | null };
  apps: AppAttachment[];
  poolerSettings: PoolerSettings;
}

/** The view from the values under the cluster's prefix (a missing or unreadable /config: the defaults). */
export function clusterViewFrom(all: ReadonlyMap<string, string>, keys: ClusterKeys): EtcdClusterView {
  const config = parseJsonOrNull(dynamicConfigSchema, all.get(keys.config)) ?? defaultDynamicConfig();
  return {
    leader: all.get(keys.leader) ?? null,
    members: memberRecordsIn(all, keys),
    syncMode: config.synchronous,
    maxLagBytes: config.maximumLagOnFailoverBytes,
    lastLeaderLsn: all.get(keys.lastLsn) ?? null,
    historyTimeline: parseHistory(all.get(keys.history) ?? null).at(-1)?.timeline ?? null,
    ttlSeconds: config.ttlSeconds,
    synchronous: { strict: config.synchronousStrict, nodeCount: config.synchronousNodeCount, set: parseSyncSet(all.get(keys.sync) ?? null) },
    apps: attachmentsIn(all, keys),
    poolerSettings: config.pooler,
  };
}
