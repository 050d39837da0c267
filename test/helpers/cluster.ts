/**
 * Reading a test cluster the way a user does (`bin/pgpilot status NAME --json --show-secrets`), and waiting for
 * it to settle: shared by the integration tests that drive real clusters.
 */
import assert from 'node:assert/strict';
import pg from 'pg';
import type { ClusterStatus, MemberStatus } from '../../src/providers/local/cluster-status.js';
import { runCli } from './cli.js';
import { waitUntil } from './wait.js';

export async function clusterStatusOf(home: string, name: string): Promise<ClusterStatus> {
  const result = await runCli(['status', name, '--json', '--show-secrets'], { home });
  assert.equal(result.code, 0, result.stderr);
  return JSON.parse(result.stdout) as ClusterStatus;
}

/**
 * The superuser password, from the writer connection string of a status read with
 * `--show-secrets` (without it the string has no password, and this fails loudly).
 */
export function passwordOf(status: ClusterStatus): string {
  const password = /^postgresql:\/\/[^:/@]+:([^@]+)@/.exec(status.connectionString)?.[1];
  assert.ok(password !== undefined, 'the status has no password in its connection string: read it with --show-secrets');
  return decodeURIComponent(password);
}

/** Runs `fn` with a superuser connection straight to `member`'s postgres, closed afterwards. */
export async function withNode<T>(status: ClusterStatus, member: MemberStatus, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ host: member.host, port: member.port, user: 'postgres', password: passwordOf(status), database: 'postgres', connectionTimeoutMillis: 2_000 });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

export function leaderOf(status: ClusterStatus): MemberStatus {
  const leader = status.members.find((m) => m.name === status.leader && m.role === 'primary');
  assert.ok(leader, `no running leader in ${JSON.stringify(status.members)}`);
  return leader;
}

/** Waits until a writable leader other than `not` leads and every member streams from it on its timeline. */
export async function waitConverged(home: string, name: string, not: string | null, timeoutMs = 60_000): Promise<ClusterStatus> {
  let last = '';
  return waitUntil(
    () => `a converged cluster led by someone other than ${not ?? '-'} (last seen: ${last})`,
    async () => {
      const status = await clusterStatusOf(home, name);
      last = `leader ${status.leader ?? '-'}; ${status.members.map((m) => `${m.name} ${m.role}/${m.state} tl${m.timeline ?? '-'}${m.streaming ? ' streaming' : ''}`).join(', ')}`;
      const leader = status.members.find((m) => m.name === status.leader && m.role === 'primary');
      if (leader === undefined || leader.name === not) return null;
      const allStreaming = status.members.every((m) => m.name === leader.name || (m.role === 'replica' && m.streaming && m.timeline === leader.timeline));
      return allStreaming ? status : null;
    },
    timeoutMs,
    250,
  );
}
