/**
 * Publishing: the tick's last step writes this node's member record under /members/<node> on its
 * own lease (src/state/member-record.ts), the only view other nodes, the CLI and the proxy have of
 * it. Invariants: the record is built from a fresh read of postgres (the observation's if that
 * read fails), so it reflects what the tick's actions did; only the leader's running primary
 * adds its standbys' replication state and oldest WAL, read in one pass; nothing is written while
 * etcd is unreachable or without a lease; a write refused because the lease is gone drops the
 * lease and the lead (the next tick grants a new one); failures are logged, never fatal. On a
 * graceful stop `releaseAll` deletes what this node holds (leader key, record, lease).
 */
import type { Tags } from '../config/schema.js';
import { LeaseNotFoundError } from '../dcs/dcs.js';
import { errorMessage } from '../shared/errors.js';
import type { LocalPostgres } from '../state/agent-snapshot.js';
import type { MemberRecord, ReplicationEntry } from '../state/member-record.js';
import type { AlertBoard } from './alerts.js';
import { notStreamingMsOf } from './election.js';
import type { LongTaskState, Observation } from './observation.js';
import { withStandbyTimeline } from './observer.js';
import type { HaPartDeps } from './ha-part-deps.js';

export interface PublisherDeps extends HaPartDeps {
  alerts: AlertBoard;
  host: string;
  pgPort: number;
  apiUrl: string;
  proxyPort: number | null;
  replicaProxyPort?: number | null;
  /** Counters of the built-in proxy, published in the member record. */
  proxyStats?: () => { open: number; held: number; total: number; failed: number } | null;
  tags: Tags;
  version: string;
  agentPid: number;
  /** The long task running now (its kind is the record's state). */
  longTaskKind(): LongTaskState['kind'] | null;
}

export class Publisher {
  constructor(private readonly deps: PublisherDeps) {}

  /** Writes this node's member record on its lease. Failures are logged, never fatal. */
  async publish(obs: Observation): Promise<MemberRecord | null> {
    const { memory, dcs, keys } = this.deps;
    const pg = withStandbyTimeline(await this.deps.pg.observe().catch(() => obs.pg), memory);
    let replication: ReplicationEntry[] = [];
    let oldestWalLsn: string | null = null;
    if (memory.holdsLeader && pg.kind === 'running' && !pg.inRecovery) {
      replication = await this.deps.pg.replicationStatus().catch(() => []);
      oldestWalLsn = await this.deps.pg.oldestWalLsn().catch(() => null);
    }
    const record = { ...this.memberRecord(pg, replication, obs.dcs.kind === 'reachable' && obs.dcs.leader !== null), oldestWalLsn };
    if (memory.leaseId === null || obs.dcs.kind === 'unreachable') return record;
    try {
      await dcs.put(keys.member(this.deps.node), JSON.stringify(record), { leaseId: memory.leaseId });
    } catch (error) {
      if (error instanceof LeaseNotFoundError) {
        memory.leaseId = null;
        memory.holdsLeader = false;
      }
      this.deps.log.warn({ err: errorMessage(error) }, 'could not publish the member record');
    }
    return record;
  }

  private memberRecord(pg: LocalPostgres, replication: ReplicationEntry[], leaderInSight: boolean): MemberRecord {
    const d = this.deps;
    const task = d.longTaskKind();
    // Fields of a member whose postgres does not answer; each state below overrides what it knows.
    const offline = {
      name: d.node,
      host: d.host,
      port: d.pgPort,
      apiUrl: d.apiUrl,
      proxyPort: d.proxyPort,
      replicaProxyPort: d.replicaProxyPort ?? null,
      proxy: d.proxyStats?.() ?? null,
      pid: d.agentPid,
      tags: d.tags,
      version: d.version,
      updatedAtMs: d.clock.nowMs(),
      replication,
      alerts: d.alerts.list(),
      role: 'stopped' as const,
      postgresPid: null,
      timeline: null,
      lsn: null,
      receiveLsn: null,
      following: null,
      streaming: false,
      cleanShutdownPrimary: false,
      systemIdentifier: null,
    };
    switch (pg.kind) {
      case 'no-data':
        return { ...offline, state: task === 'initialize-cluster' ? 'initializing' : task === 'clone-from' ? 'cloning' : 'no data' };
      case 'stopped':
        return {
          ...offline,
          state: task ?? (pg.crashed ? 'crashed' : 'stopped'),
          timeline: pg.timeline,
          lsn: pg.lsn,
          cleanShutdownPrimary: pg.cleanShutdownPrimary,
          systemIdentifier: pg.systemIdentifier,
        };
      case 'starting':
        return { ...offline, role: 'unknown', state: 'starting', postgresPid: pg.pid };
      case 'running':
        return {
          ...offline,
          role: pg.inRecovery ? 'replica' : 'primary',
          state: task ?? 'running',
          postgresPid: pg.pid,
          timeline: pg.timeline,
          lsn: pg.lsn,
          receiveLsn: pg.receiveLsn,
          following: pg.inRecovery ? d.memory.configuredUpstream : null,
          streaming: pg.inRecovery && pg.walReceiverStatus === 'streaming',
          notStreamingMs: notStreamingMsOf({
            nowMs: d.clock.nowMs(),
            isStandby: pg.inRecovery,
            notStreamingSinceMs: d.memory.notStreamingSinceMs,
            lastLeaderSeenMs: d.memory.lastLeaderSeenMs,
            leaderInSight,
          }),
          systemIdentifier: pg.systemIdentifier,
          archive: pg.archiver ?? null,
        };
    }
  }

  /** Releases what this node holds in etcd on a graceful stop (postgres must already be stopped). */
  async releaseAll(): Promise<void> {
    const { dcs, keys, memory, node } = this.deps;
    try {
      if (memory.holdsLeader) await dcs.deleteIfEquals(keys.leader, node);
      memory.holdsLeader = false;
      await dcs.delete(keys.member(node));
      if (memory.leaseId !== null) await dcs.revokeLease(memory.leaseId);
      memory.leaseId = null;
    } catch (error) {
      this.deps.log.warn({ err: errorMessage(error) }, 'could not release etcd keys on stop; they expire with the lease');
    }
  }
}
