/** `pgpilot status NAME [--json]`: roles, lag (bytes and seconds), a health verdict per member and connection strings. */
import { clusterStatus } from '../../providers/local/local-provider.js';
import { maskPassword, type ClusterStatus } from '../../providers/local/cluster-status.js';
import { printJson, renderTable, type Output } from '../output.js';

export interface StatusOptions {
  home: string;
  name: string;
  json: boolean;
}

export function renderStatus(status: ClusterStatus, options: { showPasswords: boolean }): string {
  const rows = status.members.map((m) => [
    m.name,
    m.role + (m.name === status.leader ? ' *' : ''),
    m.state + (m.role === 'replica' ? (m.streaming ? ', streaming' : '') : ''),
    `${m.host}:${m.port}`,
    m.timeline === null ? '-' : String(m.timeline),
    m.lsn ?? '-',
    m.lagBytes === null ? '-' : String(m.lagBytes),
    m.lagSeconds === null ? '-' : m.lagSeconds.toFixed(1),
    m.pid === null ? '-' : String(m.pid),
    `${m.health.status}: ${m.health.summary}`,
  ]);
  const show = (url: string) => (options.showPasswords ? url : maskPassword(url));
  return [
    `cluster ${status.cluster}: leader ${status.leader ?? 'none'}, timeline ${status.timeline ?? '-'}, sync ${status.syncMode}, etcd ${status.etcd}`,
    '',
    renderTable(['NODE', 'ROLE', 'STATE', 'ADDRESS', 'TL', 'LSN', 'LAG(B)', 'LAG(S)', 'AGENT PID', 'HEALTH'], rows),
    '',
    `connection string (writes):  ${show(status.connectionString)}`,
    `connection string (reads):   ${show(status.replicaConnectionString)}`,
  ].join('\n');
}

export async function run(options: StatusOptions, output: Output): Promise<number> {
  const status = await clusterStatus(options.home, options.name);
  if (options.json) printJson(output, status);
  else {
    output.out(renderStatus(status, { showPasswords: false }));
    output.out(`(passwords hidden; \`pgpilot status ${status.cluster} --json\` or \`pgpilot connect ${status.cluster}\`)`);
  }
  return 0;
}
