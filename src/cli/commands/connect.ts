/**
 * `pgpilot connect NAME [--replica] [--node NODE] [--database DB] [--user USER]`: psql on the
 * leader (default), on a standby, or on one node. The password goes through PGPASSWORD in psql's
 * environment, never on its command line (visible in ps); TLS is verified against the cluster CA.
 */
import { spawn } from 'node:child_process';
import { clusterStatus, validateClusterName } from '../../providers/local/local-provider.js';
import { readManifest, readSecrets } from '../../providers/local/cluster-store.js';
import { pgBinary } from '../../postgres/bin-dir.js';
import { PgpilotError } from '../../shared/errors.js';
import { connectionUrl } from '../../postgres/connection-url.js';
import { clusterPathsIn } from '../../providers/local/paths.js';

export interface ConnectOptions {
  home: string;
  name: string;
  replica: boolean;
  node?: string;
  database: string;
  user?: string;
  /** Extra arguments passed to psql (after `--`). */
  psqlArgs: string[];
}

export async function run(options: ConnectOptions): Promise<number> {
  const manifest = await readManifest(options.home, validateClusterName(options.name));
  const secrets = readSecrets(manifest.secretsFile);
  const status = await clusterStatus(options.home, options.name);
  let endpoints: Array<{ host: string; port: number }>;
  let attrs: 'any' | 'prefer-standby' | 'read-write';
  if (options.node !== undefined) {
    const member = status.members.find((m) => m.name === options.node);
    if (member === undefined) {
      throw new PgpilotError('NODE_NOT_FOUND', `no node ${options.node} in cluster ${manifest.name}`, {
        hint: `nodes: ${manifest.nodes.map((n) => n.name).join(', ')}`,
        exitCode: 2,
      });
    }
    endpoints = [{ host: member.host, port: member.port }];
    attrs = 'any';
  } else {
    const running = status.members.filter((m) => m.role === 'primary' || m.role === 'replica');
    if (running.length === 0) {
      throw new PgpilotError('CLUSTER_NOT_RUNNING', `cluster ${manifest.name} has no running member`, {
        hint: `start it with: pgpilot start ${manifest.name}`,
      });
    }
    endpoints = manifest.nodes.map((n) => ({ host: n.host, port: n.pgPort }));
    attrs = options.replica ? 'prefer-standby' : 'read-write';
  }
  const user = options.user ?? secrets.superuser.name;
  const url = connectionUrl({ user, endpoints, database: options.database, caFile: clusterPathsIn(manifest.clusterDir).caFile, targetSessionAttrs: attrs, applicationName: 'pgpilot-connect' });
  const env = { ...process.env };
  if (user === secrets.superuser.name) env['PGPASSWORD'] = secrets.superuser.password;
  const child = spawn(pgBinary(manifest.binDir, 'psql'), [url, ...options.psqlArgs], { stdio: 'inherit', env });
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
