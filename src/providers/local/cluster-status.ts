/**
 * Builds the `status --json` contract (architecture.md §5) from what etcd says and which of our
 * recorded processes are alive. Pure: the caller gathers the inputs. Lag comes from the leader's
 * own pg_stat_replication read (current LSN and each standby's replay LSN in one query), so the
 * numbers are consistent; when a replica is not in that list, lag falls back to the difference
 * between the leader's and the replica's published positions.
 */
import type { ClusterManifest, ClusterSecrets, Tags } from '../../config/schema.js';
import type { MemberRecord } from '../../ha/member-record.js';
import { lsnDiffBytes } from '../../shared/lsn.js';

export interface MemberStatus {
  name: string;
  role: 'primary' | 'replica' | 'stopped' | 'unknown';
  state: string;
  host: string;
  port: number;
  proxyPort: number | null;
  replicaProxyPort: number | null;
  /** Built-in proxy counters of this node (both ports), when its agent reports. */
  proxy: { open: number; held: number; total: number; failed: number } | null;
  apiUrl: string;
  pid: number | null;
  postgresPid: number | null;
  timeline: number | null;
  lsn: string | null;
  lagBytes: number | null;
  streaming: boolean;
  tags: Tags;
}

export interface ClusterStatus {
  cluster: string;
  leader: string | null;
  timeline: number | null;
  syncMode: 'off' | 'quorum';
  etcd: 'running' | 'stopped' | 'unreachable';
  members: MemberStatus[];
  connectionString: string;
  replicaConnectionString: string;
}

export interface StatusInputs {
  manifest: ClusterManifest;
  secrets: ClusterSecrets;
  etcd: 'running' | 'stopped' | 'unreachable';
  leader: string | null;
  members: readonly MemberRecord[];
  syncMode: 'off' | 'quorum';
  /** Agent PIDs that are alive (by recorded PID and command line), by node name. */
  aliveAgents: ReadonlyMap<string, number>;
}

export function buildClusterStatus(input: StatusInputs): ClusterStatus {
  const records = new Map(input.members.map((m) => [m.name, m]));
  const leaderRecord = input.leader === null ? undefined : records.get(input.leader);
  const members = input.manifest.nodes.map((node): MemberStatus => {
    const record = records.get(node.name);
    const agentPid = input.aliveAgents.get(node.name) ?? null;
    const base = {
      name: node.name,
      host: node.host,
      port: node.pgPort,
      proxyPort: node.proxyPort,
      replicaProxyPort: node.replicaProxyPort,
      proxy: null,
      apiUrl: `http://${node.host}:${node.apiPort}`,
      pid: agentPid,
      tags: {},
    };
    // A record written by an earlier agent process (etcd restores leases when it restarts, so
    // records from before a crash can linger for a TTL) says nothing about the current one.
    if (record === undefined || agentPid === null || record.pid !== agentPid) {
      return {
        ...base,
        role: agentPid === null ? 'stopped' : 'unknown',
        state: agentPid === null ? 'stopped' : 'agent running, not reporting',
        postgresPid: null,
        timeline: null,
        lsn: null,
        lagBytes: null,
        streaming: false,
      };
    }
    const role = record.role === 'primary' && input.leader !== record.name ? 'unknown' : record.role;
    return {
      ...base,
      proxy: record.proxy,
      tags: record.tags,
      role,
      state: record.role === 'replica' && !record.streaming && record.state === 'running' ? 'running, not streaming' : record.state,
      postgresPid: record.postgresPid,
      timeline: record.timeline,
      lsn: record.lsn,
      lagBytes: lagOf(record, leaderRecord, input.leader),
      streaming: record.streaming,
    };
  });
  const leaderStatus = members.find((m) => m.name === input.leader && m.role === 'primary');
  return {
    cluster: input.manifest.name,
    leader: input.leader,
    timeline: leaderStatus?.timeline ?? null,
    syncMode: input.syncMode,
    etcd: input.etcd,
    members,
    ...connectionStrings(input.manifest, input.secrets),
  };
}

function lagOf(record: MemberRecord, leader: MemberRecord | undefined, leaderName: string | null): number | null {
  if (record.name === leaderName) return record.role === 'primary' ? 0 : null;
  if (record.role !== 'replica' || leader === undefined || leader.role !== 'primary') return null;
  const entry = leader.replication.find((r) => r.applicationName === record.name);
  if (entry !== undefined && entry.lagBytes !== null) return entry.lagBytes;
  if (leader.lsn !== null && record.lsn !== null) return lsnDiffBytes(leader.lsn, record.lsn);
  return null;
}

/**
 * libpq multi-host URLs over every node's proxy ports, so they keep working whichever node leads
 * and whichever node is lost: each node's leader port reaches the current leader (holding the
 * connection through a switchover), each replica port a streaming replica (else the leader).
 * `target_session_attrs=read-write` makes libpq skip a port that is not (yet) on the leader.
 */
export function connectionStrings(
  manifest: ClusterManifest,
  secrets: ClusterSecrets,
  database = 'postgres',
): { connectionString: string; replicaConnectionString: string } {
  const user = encodeURIComponent(secrets.superuser.name);
  const password = encodeURIComponent(secrets.superuser.password);
  const leaderPorts = manifest.nodes.map((n) => `${n.host}:${n.proxyPort}`).join(',');
  const replicaPorts = manifest.nodes.map((n) => `${n.host}:${n.replicaProxyPort}`).join(',');
  const db = encodeURIComponent(database);
  return {
    connectionString: `postgresql://${user}:${password}@${leaderPorts}/${db}?target_session_attrs=read-write`,
    replicaConnectionString: `postgresql://${user}:${password}@${replicaPorts}/${db}?target_session_attrs=prefer-standby`,
  };
}

/** The same URL with its password replaced, for human output. */
export function maskPassword(url: string): string {
  return url.replace(/(postgresql:\/\/[^:/@]+:)[^@]+@/, '$1****@');
}
