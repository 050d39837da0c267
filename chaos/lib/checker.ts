/**
 * What is verified after every healed fault:
 *
 * - convergence (bounded wait): every etcd member (one per host) answers /health, so the etcd
 *   cluster is whole again; etcd names a leader L; L's postgres answers pg_is_in_recovery() =
 *   false; every other member's record says replica, streaming, following L; and L's
 *   pg_stat_replication shows every other member in state 'streaming' (the leader's own view,
 *   not just what the replicas publish);
 * - acknowledged writes: every id the workload saw acknowledged (up to a moment taken before the
 *   query) is in chaos_acked on L. Missing ids are lost writes; they stay counted once lost.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { HarnessCredentials } from './chaos-tls.js';
import { readDcsView, unhealthyEtcdMembers, type ChaosCluster } from './cluster.js';
import { closeClient, connect, errorText, nowMs } from './pg-client.js';
import { NODE_NAMES, nodeAddress, type NodeName } from './topology.js';
import type { AckedRow } from './workload.js';

export interface Convergence {
  converged: boolean;
  leader: NodeName | null;
  waitedMs: number;
  /** The last state seen (why it did not converge, when it did not). */
  last: string;
  /** The converged leader's synchronous_standby_names ('' = asynchronous replication). */
  syncStandbyNames: string | null;
}

function isNodeName(name: string | null): name is NodeName {
  return name !== null && (NODE_NAMES as readonly string[]).includes(name);
}

async function leaderView(leader: NodeName, credentials: HarnessCredentials, sinceEpochMs: number): Promise<{ primary: boolean; streaming: string[]; syncStandbyNames: string }> {
  const client = await connect(nodeAddress(leader), credentials, { connectTimeoutMs: 2_000, queryTimeoutMs: 5_000, applicationName: 'chaos-checker' });
  try {
    const recovery = await client.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r');
    // Only a standby that replied since the heal counts: a walsender can show 'streaming' for a
    // connection that is dead until wal_sender_timeout ends it.
    const replication = await client.query<{ application_name: string }>(
      "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming' AND reply_time >= to_timestamp($1::double precision / 1000)",
      [sinceEpochMs],
    );
    const ssn = await client.query<{ synchronous_standby_names: string }>('SHOW synchronous_standby_names');
    return {
      primary: recovery.rows[0]?.r === false,
      streaming: replication.rows.map((r) => r.application_name),
      syncStandbyNames: ssn.rows[0]?.synchronous_standby_names ?? '',
    };
  } finally {
    await closeClient(client);
  }
}

/** One look at the cluster: the leader when converged, else a description of what is missing. */
export async function convergedOnce(cluster: ChaosCluster, sinceEpochMs: number): Promise<{ leader: NodeName | null; state: string; syncStandbyNames?: string }> {
  const credentials = cluster.credentials;
  const unhealthy = await unhealthyEtcdMembers(cluster);
  if (unhealthy.length > 0) return { leader: null, state: `etcd members not healthy: ${unhealthy.join(', ')}` };
  const view = await readDcsView(credentials);
  if (!isNodeName(view.leader)) return { leader: null, state: `no leader key (${view.leader ?? 'empty'})` };
  const leader = view.leader;
  const parts: string[] = [`leader ${leader}`];
  let ok = true;
  for (const name of NODE_NAMES) {
    const m = view.members.find((r) => r.name === name);
    if (m === undefined) {
      parts.push(`${name}: no member record`);
      ok = false;
    } else if (m.updatedAtMs < sinceEpochMs) {
      // A record written before the heal may describe the world before the fault: not evidence.
      parts.push(`${name}: record not refreshed since the heal`);
      ok = false;
    } else if (name === leader) {
      if (m.role !== 'primary' || m.state !== 'running') ok = false;
      parts.push(`${name}: ${m.role}/${m.state}`);
    } else {
      const streams = m.role === 'replica' && m.streaming && m.following === leader;
      if (!streams) ok = false;
      parts.push(`${name}: ${m.role}/${m.state}${m.streaming ? '/streaming' : ''}${m.following === null ? '' : ` from ${m.following}`}`);
    }
  }
  if (!ok) return { leader: null, state: parts.join(', ') };
  const seen = await leaderView(leader, credentials, sinceEpochMs);
  if (!seen.primary) return { leader: null, state: `${parts.join(', ')}; ${leader} is in recovery` };
  // Each standby's application_name is its node name (pgpilot sets it in primary_conninfo).
  const missing = NODE_NAMES.filter((n) => n !== leader && !seen.streaming.includes(n));
  if (missing.length > 0) return { leader: null, state: `${parts.join(', ')}; leader sees streaming: [${seen.streaming.join(', ')}]` };
  return { leader, state: parts.join(', '), syncStandbyNames: seen.syncStandbyNames };
}

export async function waitForConvergence(cluster: ChaosCluster, timeoutMs: number, shouldStop?: () => boolean, pollMs = 500): Promise<Convergence> {
  const startMs = nowMs();
  const sinceEpochMs = Date.now();
  let last = 'nothing read yet';
  for (;;) {
    try {
      const result = await convergedOnce(cluster, sinceEpochMs);
      last = result.state;
      if (result.leader !== null) {
        return { converged: true, leader: result.leader, waitedMs: nowMs() - startMs, last, syncStandbyNames: result.syncStandbyNames ?? null };
      }
    } catch (error) {
      last = `check failed: ${errorText(error)}`;
    }
    if (nowMs() - startMs >= timeoutMs || (shouldStop?.() ?? false)) return { converged: false, leader: null, waitedMs: nowMs() - startMs, last, syncStandbyNames: null };
    await sleep(pollMs);
  }
}

export interface AckCheck {
  checkedAcked: number;
  /** Ids acknowledged but absent from the leader, found by this check. */
  missing: AckedRow[];
}

/** Every acknowledged row (up to now) must be on `leader`. */
export async function checkAckedRows(leader: NodeName, credentials: HarnessCredentials, acked: readonly AckedRow[]): Promise<AckCheck> {
  const snapshot = acked.slice();
  const client = await connect(nodeAddress(leader), credentials, { connectTimeoutMs: 3_000, queryTimeoutMs: 60_000, applicationName: 'chaos-checker' });
  try {
    const result = await client.query<{ id: string }>('SELECT id::text AS id FROM chaos_acked');
    const present = new Set(result.rows.map((r) => Number(r.id)));
    return { checkedAcked: snapshot.length, missing: snapshot.filter((row) => !present.has(row.id)) };
  } finally {
    await closeClient(client);
  }
}

/** Creates the workload and probe tables on the leader (bounded retries). */
export async function createTables(leader: NodeName, credentials: HarnessCredentials, statements: readonly string[], timeoutMs: number): Promise<void> {
  const startMs = nowMs();
  let lastError = '';
  while (nowMs() - startMs < timeoutMs) {
    try {
      const client = await connect(nodeAddress(leader), credentials, { connectTimeoutMs: 2_000, queryTimeoutMs: 10_000, applicationName: 'chaos-setup' });
      try {
        for (const sql of statements) await client.query(sql);
        return;
      } finally {
        await closeClient(client);
      }
    } catch (error) {
      lastError = errorText(error);
      await sleep(500);
    }
  }
  throw new Error(`could not create the chaos tables on ${leader}: ${lastError}`);
}
