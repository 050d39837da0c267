/**
 * `pgpilot create NAME [--nodes N] [--home DIR]`: a new local cluster, waited for until ready.
 * With `--from-backup SRC [--backup ID] [--target-time T | --target-lsn L] [--backup-store URL]`
 * the new cluster starts from a base backup of SRC and its archived WAL (point-in-time recovery);
 * SRC is never touched. Everything that can be checked is checked before anything is created:
 * the store answers, the backup exists and is complete, the target lies between the backup and
 * the newest archived WAL.
 */
import { refuseRemote } from '../../cluster/require-local.js';
import { readCaFile } from '../../tls/tls-files.js';
import { existsSync } from 'node:fs';
import { listBackups } from '../../backup/backup-catalog.js';
import { parseTargetTime, planRestore, type RestoreTarget } from '../../backup/restore-plan.js';
import { describeStore, openObjectStore, parseStoreUrl, readStoreConfigFile, type StoreConfig } from '../../backup/store-config.js';
import { storeLayout } from '../../backup/store-layout.js';
import { WalArchive } from '../../backup/wal-archive.js';
import { connectLocal } from '../../postgres/queries.js';
import { clusterStatus, createCluster, validateClusterName, type ProviderDeps, type RestoreRequest } from '../../providers/local/local-provider.js';
import { readSecrets } from '../../providers/local/cluster-store.js';
import { clusterPaths } from '../../providers/local/paths.js';
import { PgpilotError, errorMessage } from '../../shared/errors.js';
import { isLsn } from '../../shared/lsn.js';
import { printJson, type Output } from '../output.js';
import { withEnvCredentials } from './backup.js';
import { withoutSecrets } from '../../operations/cluster-status.js';
import { renderStatus } from './status.js';

export interface RestoreOptions {
  fromBackup: string;
  backupId?: string;
  targetTime?: string;
  targetLsn?: string;
  backupStore?: string;
}

export interface CreateCommandOptions {
  home: string;
  /** A context applies (--context / PGPILOT_CONTEXT): refused, create makes local clusters only. */
  context?: string | undefined;
  name: string;
  nodes: number;
  binDir?: string;
  timeoutSeconds: number;
  json: boolean;
  /** With `json`: passwords in the connection strings (default: none, `withoutSecrets`). */
  showSecrets?: boolean;
  restore?: RestoreOptions;
}

/** Parses the target flags (pure). */
export function restoreTargetOf(options: RestoreOptions): RestoreTarget {
  if (options.targetTime !== undefined && options.targetLsn !== undefined) {
    throw new PgpilotError('INPUT_INVALID', '--target-time and --target-lsn cannot be used together', { hint: 'give one recovery target', exitCode: 2 });
  }
  if (options.targetTime !== undefined) return parseTargetTime(options.targetTime);
  if (options.targetLsn !== undefined) {
    const lsn = options.targetLsn.trim().toUpperCase();
    if (!isLsn(lsn)) throw new PgpilotError('INPUT_INVALID', `invalid --target-lsn ${JSON.stringify(options.targetLsn)}`, { hint: 'an LSN looks like 0/5000060', exitCode: 2 });
    return { kind: 'lsn', lsn };
  }
  return { kind: 'latest' };
}

/** Where the source's backups are: --backup-store, else the source cluster's own store config. */
async function sourceStoreOf(home: string, options: RestoreOptions): Promise<StoreConfig> {
  if (options.backupStore !== undefined) return withEnvCredentials(parseStoreUrl(options.backupStore), process.env);
  const file = clusterPaths(home, options.fromBackup).backupStoreFile;
  if (!existsSync(file)) {
    throw new PgpilotError('CLUSTER_NOT_FOUND', `no cluster named ${options.fromBackup} in ${home}`, {
      hint: 'name an existing cluster, or point at the store of a destroyed one with --backup-store URL',
      exitCode: 2,
    });
  }
  return readStoreConfigFile(file);
}

/**
 * When the source cluster runs here, its current WAL segment is closed and archived first, so a
 * target up to this moment is reachable. Best effort: a stopped source is fine (its archive is
 * what it is) and is said so.
 */
async function archiveCurrentWal(home: string, source: string, archive: WalArchive, deps: ProviderDeps): Promise<void> {
  let status;
  try {
    status = await clusterStatus(home, source);
  } catch {
    return;
  }
  const leader = status.members.find((m) => m.name === status.leader && m.role === 'primary');
  if (leader === undefined) {
    deps.progress(`${source} has no running leader: restoring what its archive holds`);
    return;
  }
  const secrets = readSecrets(clusterPaths(home, source).secretsFile);
  let segment: string | null = null;
  try {
    const client = await connectLocal({ ca: readCaFile(clusterPaths(home, source).caFile), host: leader.host, port: leader.port, user: secrets.superuser.name, password: secrets.superuser.password, connectTimeoutMs: 3_000, applicationName: 'pgpilot-restore' });
    try {
      const result = await client.query<{ name: string }>('SELECT pg_walfile_name(pg_switch_wal()) AS name');
      segment = result.rows[0]?.name ?? null;
    } finally {
      await client.end().catch(() => undefined);
    }
  } catch (error) {
    deps.progress(`could not switch WAL on ${source}'s leader (${errorMessage(error)}): restoring what its archive holds`);
    return;
  }
  if (segment === null) return;
  deps.progress(`${source}: switched WAL; waiting for ${segment} to be archived`);
  const deadlineMs = deps.clock.nowMs() + 60_000;
  while (deps.clock.nowMs() < deadlineMs) {
    if ((await archive.list()).some((w) => w.name === segment)) return;
    await deps.clock.sleep(500);
  }
  deps.progress(`warning: ${segment} was not archived within 60 s (see pgpilot status ${source}); restoring what the archive holds`);
}

async function prepareRestore(options: CreateCommandOptions & { restore: RestoreOptions }, deps: ProviderDeps): Promise<RestoreRequest> {
  const { restore } = options;
  const source = validateClusterName(restore.fromBackup);
  const target = restoreTargetOf(restore);
  if (existsSync(clusterPaths(options.home, validateClusterName(options.name)).clusterDir)) {
    throw new PgpilotError('CLUSTER_EXISTS', `a cluster named ${options.name} already exists in ${options.home}`, {
      hint: 'a restore always creates a new cluster: pick a new name',
      exitCode: 2,
    });
  }
  const sourceStore = await sourceStoreOf(options.home, restore);
  const store = openObjectStore(sourceStore);
  try {
    const layout = storeLayout(source);
    const archive = new WalArchive(store, source);
    if (restore.backupStore === undefined && target.kind !== 'lsn') await archiveCurrentWal(options.home, source, archive, deps);
    const backups = await listBackups(store, layout);
    const wal = await archive.list();
    const plan = planRestore({ cluster: source, backups, wal: wal.map((w) => ({ name: w.name, archivedAtMs: w.archivedAtMs })), ...(restore.backupId === undefined ? {} : { backupId: restore.backupId }), target });
    deps.progress(`restoring ${source} from ${describeStore(sourceStore)}: backup ${plan.backup.id}`);
    return { sourceCluster: source, sourceStore, plan, recoveryTimeoutMs: options.timeoutSeconds * 1000 };
  } finally {
    await store.close().catch(() => undefined);
  }
}

export async function run(options: CreateCommandOptions, deps: ProviderDeps, output: Output): Promise<number> {
  await refuseRemote(options, 'pgpilot create', 'create makes a cluster on this machine; a multi-host cluster is made with pgpilot cluster init (unset PGPILOT_CONTEXT to create a local one)');
  const restore = options.restore === undefined ? undefined : await prepareRestore({ ...options, restore: options.restore }, deps);
  const status = await createCluster(
    {
      home: options.home,
      name: options.name,
      nodes: options.nodes,
      binDir: options.binDir,
      timeoutMs: options.timeoutSeconds * 1000,
      ...(restore === undefined ? {} : { restore }),
    },
    deps,
  );
  if (options.json) {
    printJson(output, options.showSecrets === true ? status : withoutSecrets(status));
    return 0;
  }
  output.out(renderStatus(status, { showPasswords: true }));
  output.out('');
  if (restore !== undefined) {
    output.out(`Restored from backup ${restore.plan.backup.id} of ${restore.sourceCluster}; ${restore.sourceCluster} was not changed.`);
    output.out(`The restored cluster archives into its own store; take its first backup with: pgpilot backup create ${status.cluster}`);
  } else {
    output.out(`WAL is archived continuously; the first daily backup runs at the next scheduled time (pgpilot backup config ${status.cluster}),`);
    output.out(`or take one now with: pgpilot backup create ${status.cluster}`);
  }
  output.out('Save the connection strings: they hold the superuser password (also in secrets.json, mode 0600).');
  output.out(`Connect with: pgpilot connect ${status.cluster}`);
  return 0;
}
