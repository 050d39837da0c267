/**
 * `pgpilot connect NAME [--replica] [--node NODE] [--database DB] [--user USER] [--context FILE]`:
 * psql on the leader (default), on a standby, or on one node. The password goes through
 * PGPASSWORD in psql's environment, never on its command line (visible in ps); TLS is verified
 * against the cluster CA (sslmode=verify-full, sslrootcert = the CA file of the handle).
 * A local cluster: every node's postgres port, libpq picks the writable one. A remote cluster
 * (--context): every node's leader proxy port (replica proxy port with --replica), the same
 * addresses `status` prints, so any reachable node will do.
 */
import { spawn } from 'node:child_process';
import { openClusterHandle } from '../../cluster/open-cluster-handle.js';
import { pgBinary } from '../../postgres/bin-dir.js';
import { PgpilotError } from '../../shared/errors.js';
import { connectionUrl } from '../../postgres/connection-url.js';

export interface ConnectOptions {
  home: string;
  name: string;
  /** `--context FILE` (else PGPILOT_CONTEXT, else the local cluster). */
  context?: string | undefined;
  replica: boolean;
  node?: string;
  database: string;
  user?: string;
  /** Extra arguments passed to psql (after `--`). */
  psqlArgs: string[];
}

export async function run(options: ConnectOptions): Promise<number> {
  const handle = await openClusterHandle(options);
  const secrets = handle.secrets;
  const status = await handle.status();
  const cluster = handle.name;
  let endpoints: Array<{ host: string; port: number }>;
  let attrs: 'any' | 'prefer-standby' | 'read-write';
  if (options.node !== undefined) {
    const member = status.members.find((m) => m.name === options.node);
    if (member === undefined) {
      throw new PgpilotError('NODE_NOT_FOUND', `no node ${options.node} in cluster ${cluster}`, {
        hint: `nodes: ${handle.nodes.map((n) => n.name).join(', ')}`,
        exitCode: 2,
      });
    }
    endpoints = [{ host: member.host, port: member.port }];
    attrs = 'any';
  } else {
    const running = status.members.filter((m) => m.role === 'primary' || m.role === 'replica');
    if (running.length === 0) {
      throw new PgpilotError('CLUSTER_NOT_RUNNING', `cluster ${cluster} has no running member`, {
        hint: handle.kind === 'local' ? `start it with: pgpilot start ${cluster}` : `check pgpilot status ${cluster} and the hosts (systemctl status pgpilot@${cluster})`,
      });
    }
    endpoints =
      handle.kind === 'local'
        ? handle.nodes.map((n) => ({ host: n.host, port: n.pgPort }))
        : handle.nodes.map((n) => ({ host: n.host, port: options.replica ? n.replicaProxyPort : n.proxyPort }));
    attrs = options.replica ? 'prefer-standby' : 'read-write';
  }
  const user = options.user ?? secrets.superuser.name;
  const url = connectionUrl({ user, endpoints, database: options.database, caFile: handle.caFile, targetSessionAttrs: attrs, applicationName: 'pgpilot-connect' });
  const env = { ...process.env };
  if (user === secrets.superuser.name) env['PGPASSWORD'] = secrets.superuser.password;
  const child = spawn(pgBinary(await handle.pgBinDir(), 'psql'), [url, ...options.psqlArgs], { stdio: 'inherit', env });
  return await new Promise<number>((resolve, reject) => {
    child.on('error', (error: NodeJS.ErrnoException) =>
      reject(
        error.code === 'ENOENT'
          ? new PgpilotError('BINARY_MISSING', 'psql was not found', { hint: 'run scripts/setup.sh (installs postgresql-15)' })
          : error,
      ),
    );
    child.on('exit', (code) => resolve(code ?? 1));
  });
}
