/**
 * What each agent publishes about itself under /members/<node> (on its own lease, refreshed
 * every loop). It is the only view other nodes, the CLI and the proxy have of a member, so it
 * carries everything they decide on: role, WAL position, timeline, addresses, tags, and on the
 * leader the replication state of its standbys read in one query (consistent lag numbers).
 */
import { z } from 'zod';
import { tagsSchema } from '../config/schema.js';
import { isLsn } from '../shared/lsn.js';
import { parseJsonOrNull } from '../shared/json.js';
import { memberNameFromKey, type ClusterKeys } from '../dcs/keys.js';
import { memberAlertSchema } from './member-alert.js';

/** An LSN as postgres prints it; anything else makes the whole record unreadable (ignored). */
const lsnSchema = z.string().refine(isLsn, 'not an LSN');

export const memberRoleSchema = z.enum(['primary', 'replica', 'stopped', 'unknown']);
export type MemberRole = z.infer<typeof memberRoleSchema>;

export const replicationEntrySchema = z.object({
  applicationName: z.string(),
  state: z.string(),
  replayLsn: lsnSchema.nullable(),
  lagBytes: z.number().nullable(),
  /** pg_stat_replication.replay_lag in seconds (0 when caught up); absent from older agents. */
  lagSeconds: z.number().nullable().optional(),
  syncState: z.string().nullable(),
});
export type ReplicationEntry = z.infer<typeof replicationEntrySchema>;

/** pg_stat_archiver of the member: every member archives WAL (archive_mode = always). */
export const archiveStateSchema = z.object({
  archivedCount: z.number(),
  failedCount: z.number(),
  lastArchivedWal: z.string().nullable(),
  lastArchivedAtMs: z.number().nullable(),
  lastFailedWal: z.string().nullable(),
  lastFailedAtMs: z.number().nullable(),
});
export type ArchiveState = z.infer<typeof archiveStateSchema>;

/** True when the member's newest archive attempt failed (postgres retries; pg_wal grows meanwhile). */
export function isArchiveFailing(archive: ArchiveState | null | undefined): boolean {
  if (archive === null || archive === undefined || archive.lastFailedAtMs === null) return false;
  return archive.lastArchivedAtMs === null || archive.lastFailedAtMs > archive.lastArchivedAtMs;
}

export const memberRecordSchema = z.object({
  name: z.string(),
  role: memberRoleSchema,
  /** Free-form lifecycle state: running, starting, stopped, initializing, cloning, crashed, fenced... */
  state: z.string(),
  host: z.string(),
  port: z.number().int(),
  apiUrl: z.string(),
  proxyPort: z.number().int().nullable(),
  replicaProxyPort: z.number().int().nullable().default(null),
  /** Built-in proxy counters, leader and replica ports together. */
  proxy: z.object({ open: z.number(), held: z.number(), total: z.number(), failed: z.number() }).nullable().default(null),
  pid: z.number().int(),
  postgresPid: z.number().int().nullable(),
  timeline: z.number().int().nullable(),
  /** Primary: current write LSN. Replica: last replayed LSN. Stopped: from pg_controldata. */
  lsn: lsnSchema.nullable(),
  receiveLsn: lsnSchema.nullable(),
  /** The leader this replica streams from, when streaming. */
  following: z.string().nullable(),
  streaming: z.boolean(),
  /**
   * How long this standby had not been streaming while it still saw a leader key (ms, its own
   * clock; 0 while streaming; null: unknown or not a standby). The `not-streaming` eligibility rule
   * (election.ts) judges it; absent from older agents.
   */
  notStreamingMs: z.number().nullable().optional(),
  /** True for a data directory that was cleanly shut down as a primary (nothing can be ahead of it on its timeline). */
  cleanShutdownPrimary: z.boolean(),
  tags: tagsSchema,
  replication: z.array(replicationEntrySchema).default([]),
  systemIdentifier: z.string().nullable(),
  /**
   * Leader only: where the oldest WAL segment still in its pg_wal starts. A standby behind this
   * position can never catch up by streaming (decide.ts rule D8 re-clones it).
   */
  oldestWalLsn: lsnSchema.nullable().optional(),
  /** WAL archiving on this member (absent from older agents and while postgres is not running). */
  archive: archiveStateSchema.nullable().optional(),
  /**
   * What this agent refused to trust, or could not read, in etcd (src/ha/alerts.ts): a forbidden
   * parameter dropped, an unreadable /config, an ignored leader key or member record. Absent from
   * older agents.
   */
  alerts: z.array(memberAlertSchema).optional(),
  version: z.string(),
  updatedAtMs: z.number(),
});
export type MemberRecord = z.infer<typeof memberRecordSchema>;

/** Parses a member value; null for anything malformed (a bad record must not crash a reader). */
export function parseMemberRecord(text: string): MemberRecord | null {
  return parseJsonOrNull(memberRecordSchema, text);
}

/** Every readable member record in a read of the cluster prefix (malformed ones are skipped). */
export function memberRecordsIn(all: ReadonlyMap<string, string>, keys: ClusterKeys): MemberRecord[] {
  const members: MemberRecord[] = [];
  for (const [key, value] of all) {
    if (memberNameFromKey(keys, key) === null) continue;
    const record = parseMemberRecord(value);
    if (record !== null) members.push(record);
  }
  return members;
}
