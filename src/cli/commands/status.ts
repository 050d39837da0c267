/**
 * `pgpilot status NAME [--json] [--show-secrets]`: roles, lag (bytes and seconds), failover
 * eligibility (and why not), sync mode and the published synchronous set (`(sync)` after a
 * member's role), a health verdict per member and connection strings. Without `--show-secrets`
 * no output carries a password: the table masks it, the JSON has none (`withoutSecrets`).
 * A local cluster or, with `--context FILE` / PGPILOT_CONTEXT, one on other hosts: same contract.
 */
import { openClusterHandle } from '../../cluster/open-cluster-handle.js';
import { maskPassword, withoutSecrets, type ClusterStatus } from '../../operations/cluster-status.js';
import { printJson, renderTable, type Output } from '../output.js';
import { poolerStatusLines } from '../../pooler/pooler-status.js';

export interface StatusOptions {
  home: string;
  name: string;
  /** `--context FILE` (else PGPILOT_CONTEXT, else the local cluster). */
  context?: string | undefined;
  json: boolean;
  /** Passwords in the connection strings (JSON and text); off by default. */
  showSecrets?: boolean;
}

export function renderStatus(status: ClusterStatus, options: { showPasswords: boolean }): string {
  const rows = status.members.map((m) => [
    m.name,
    m.role + (m.name === status.leader ? ' *' : '') + (m.sync === true ? ' (sync)' : ''),
    m.state + (m.role === 'replica' ? (m.streaming ? ', streaming' : '') : ''),
    `${m.host}:${m.port}`,
    m.timeline === null ? '-' : String(m.timeline),
    m.lsn ?? '-',
    m.lagBytes === null ? '-' : String(m.lagBytes),
    m.lagSeconds === null ? '-' : m.lagSeconds.toFixed(1),
    m.eligible === undefined ? '-' : m.eligible ? 'yes' : `no (${m.ineligibleReason ?? '?'})`,
    m.pid === null ? '-' : String(m.pid),
    `${m.health.status}: ${m.health.summary}`,
  ]);
  const show = (url: string) => (options.showPasswords ? url : maskPassword(url));
  return [
    `cluster ${status.cluster}: leader ${status.leader ?? 'none'}, timeline ${status.timeline ?? '-'}, sync ${describeSync(status)}, etcd ${status.etcd}`,
    '',
    renderTable(['NODE', 'ROLE', 'STATE', 'ADDRESS', 'TL', 'LSN', 'LAG(B)', 'LAG(S)', 'ELIGIBLE', 'AGENT PID', 'HEALTH'], rows),
    '',
    `connection string (writes):  ${show(status.connectionString)}`,
    `connection string (reads):   ${show(status.replicaConnectionString)}`,
    `attached apps:               ${describeApps(status)}`,
    `WAL archive:                 ${describeArchive(status)}`,
    `TLS:                         CA ${status.tls?.caFile ?? '?'}, certificates valid until ${status.tls?.expiresAt ?? 'unknown (pgpilot certs show)'}`,
    ...poolerStatusLines(status.pooler ?? null, show),
  ].join('\n');
}

/** `ok, last 0000...07 at 2026-...Z`, or `FAILING on node2 (WAL 0000...08, 12 failed attempts since ...)`. */
export function describeArchive(status: ClusterStatus): string {
  const archive = status.archive;
  if (archive === undefined || archive.state === 'unknown') return 'unknown (no member reports)';
  const last = archive.lastArchivedWal === null ? 'nothing archived yet' : `last ${archive.lastArchivedWal} at ${archive.lastArchivedAt ?? '?'}`;
  if (archive.state !== 'failing') return archive.state === 'idle' ? 'ok, nothing archived yet' : `ok, ${last}`;
  const where = archive.failing.map((f) => `${f.node} (WAL ${f.wal ?? '?'}, ${f.failedCount} failed attempts, last ${f.since ?? '?'})`).join('; ');
  return `FAILING on ${where}; ${last}. Check the backup store (pgpilot backup config ${status.cluster}) and postgres.log`;
}

/** `shop (database shop, user shop), blog (...)`, or `none`. */
export function describeApps(status: ClusterStatus): string {
  const apps = status.apps ?? [];
  if (apps.length === 0) return 'none';
  return apps.map((a) => `${a.app} (database ${a.database}, user ${a.user})`).join(', ');
}

/** `off`, `quorum: ANY 1 of node2, node3 (strict)`, or `quorum: no synchronous replica (...)`. */
export function describeSync(status: ClusterStatus): string {
  const sync = status.synchronous;
  if (sync === undefined || sync.mode === 'off') return status.syncMode;
  const strict = sync.strict ? ', strict' : '';
  if (sync.members.length === 0) {
    return `quorum: no synchronous replica published${strict} (${sync.strict ? 'writes may block' : 'commits are asynchronous'}; no automatic failover)`;
  }
  return `quorum: ANY ${sync.quorum} of ${sync.members.join(', ')}${strict}`;
}

export async function run(options: StatusOptions, output: Output): Promise<number> {
  const status = await (await openClusterHandle(options)).status();
  const showSecrets = options.showSecrets === true;
  if (options.json) printJson(output, showSecrets ? status : withoutSecrets(status));
  else {
    output.out(renderStatus(status, { showPasswords: showSecrets }));
    if (!showSecrets) output.out(`(passwords hidden; \`pgpilot status ${status.cluster} --show-secrets\` or \`pgpilot connect ${status.cluster}\`)`);
  }
  return 0;
}
