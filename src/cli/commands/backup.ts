/**
 * `pgpilot backup create|list|verify|config|restore`: base backups and the WAL archive of a
 * cluster (src/backup/). `create` runs here, in the CLI process, with progress on stderr; the
 * leader's agent runs the same code on its schedule (`backup create --agent-config FILE
 * --scheduled`, a child process of the agent so a long copy never shares the HA loop's thread).
 * `list` and `verify` need only the store, so they work while the cluster is stopped.
 */
import type { TlsFiles } from '../../config/schema.js';
import { readTlsMaterial } from '../../tls/tls-files.js';
import { adminTlsFiles } from '../../providers/local/local-tls.js';
import { storedConfigOrThrow } from '../../config/stored-config.js';
import path from 'node:path';
import { applyRetention } from '../../backup/apply-retention.js';
import { chooseBackupSource, createBackup } from '../../backup/base-backup.js';
import { listBackups, readBackup } from '../../backup/backup-catalog.js';
import { verifyBackupCopy } from '../../backup/backup-files.js';
import type { BackupRecord } from '../../backup/backup-record.js';
import type { ObjectStore } from '../../backup/object-store.js';
import { describeStore, openObjectStore, parseStoreUrl, readStoreConfigFile, type StoreConfig } from '../../backup/store-config.js';
import { storeLayout, type StoreLayout } from '../../backup/store-layout.js';
import { validateSchedule, nextRunAfterMs } from '../../backup/schedule.js';
import { WalArchive } from '../../backup/wal-archive.js';
import { agentConfigSchema, backupSettingsSchema, type ClusterManifest, defaultDynamicConfig, dynamicConfigSchema, type BackupSettings, type ClusterSecrets, type DynamicConfig } from '../../config/schema.js';
import { loadJsonFile } from '../../config/load.js';
import { EtcdDcs } from '../../dcs/etcd-dcs.js';
import { clusterKeys, INITIALIZE_PENDING_PREFIX } from '../../dcs/keys.js';
import { recordEvent } from '../../state/events.js';
import { memberRecordsIn } from '../../state/member-record.js';
import { clientUrl } from '../../etcd/etcd-server.js';
import { readManifest, readSecrets } from '../../providers/local/cluster-store.js';
import { openClusterDcs, validateClusterName, writeStoreConfig } from '../../providers/local/local-provider.js';
import { clusterPathsIn } from '../../providers/local/paths.js';
import type { Clock } from '../../shared/clock.js';
import { PgpilotError, errorMessage } from '../../shared/errors.js';
import { parseJsonOrNull } from '../../shared/json.js';
import { printJson, renderTable, type Output } from '../output.js';

/** Everything a backup command needs about one cluster, from its manifest or from an agent config. */
export interface BackupTarget {
  cluster: string;
  storeConfigFile: string;
  binDir: string;
  secretsFile: string;
  etcdEndpoints: string[];
  /** The CA and the client certificate this command presents to etcd (admin, or the node's). */
  tls: TlsFiles;
  workRoot: string;
}

export async function targetFromCluster(home: string, name: string): Promise<BackupTarget> {
  return targetOf(await readManifest(home, validateClusterName(name)));
}

function targetOf(manifest: ClusterManifest): BackupTarget {
  const paths = clusterPathsIn(manifest.clusterDir);
  return {
    cluster: manifest.name,
    storeConfigFile: paths.backupStoreFile,
    binDir: manifest.binDir,
    secretsFile: manifest.secretsFile,
    etcdEndpoints: [clientUrl(manifest.etcd.host, manifest.etcd.clientPort)],
    tls: adminTlsFiles(manifest),
    workRoot: paths.tmpDir,
  };
}

export function targetFromAgentConfig(file: string): BackupTarget {
  const config = loadJsonFile(agentConfigSchema, file);
  if (config.backupStoreFile === undefined) {
    throw new PgpilotError('CONFIG_INVALID', `${file} has no backupStoreFile`, { hint: 'this node has no backup store configured', exitCode: 2 });
  }
  return {
    cluster: config.cluster,
    storeConfigFile: config.backupStoreFile,
    binDir: config.binDir,
    secretsFile: config.secretsFile,
    etcdEndpoints: [...config.etcdEndpoints],
    tls: config.tls,
    workRoot: path.join(config.nodeDir, 'tmp'),
  };
}

async function openStore(target: BackupTarget): Promise<{ config: StoreConfig; store: ObjectStore; layout: StoreLayout }> {
  const config = await readStoreConfigFile(target.storeConfigFile);
  return { config, store: openObjectStore(config), layout: storeLayout(target.cluster) };
}

function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

export function renderBackups(records: readonly BackupRecord[]): string {
  if (records.length === 0) return 'no backups yet';
  return renderTable(
    ['ID', 'STATUS', 'KIND', 'STARTED', 'FINISHED', 'TL', 'START LSN', 'STOP LSN', 'SIZE', 'SOURCE'],
    records.map((r) => [
      r.id,
      r.status,
      r.kind,
      r.startedAt.replace(/\.\d+Z$/, 'Z'),
      (r.finishedAt ?? '-').replace(/\.\d+Z$/, 'Z'),
      r.timeline === null ? '-' : String(r.timeline),
      r.startLsn ?? '-',
      r.stopLsn ?? '-',
      r.status === 'complete' ? mib(r.sizeBytes) : '-',
      `${r.sourceNode} (${r.sourceRole})`,
    ]),
  );
}

// ---------------------------------------------------------------- create

export async function runCreate(target: BackupTarget, options: { json: boolean; scheduled: boolean }, output: Output, clock: Clock): Promise<number> {
  const secrets: ClusterSecrets = readSecrets(target.secretsFile);
  const dcs = new EtcdDcs({ endpoints: target.etcdEndpoints, operationTimeoutMs: 5_000, tls: readTlsMaterial(target.tls) });
  const { store, layout } = await openStore(target);
  const keys = clusterKeys(target.cluster);
  const progress = (line: string): void => output.err(line);
  try {
    let all: Map<string, string>;
    try {
      all = await dcs.getPrefix(keys.root);
    } catch (error) {
      throw new PgpilotError('CLUSTER_NOT_RUNNING', `cannot read the state of ${target.cluster} from etcd: ${errorMessage(error)}`, {
        hint: `start the cluster first: pgpilot start ${target.cluster}`,
      });
    }
    const config = parseJsonOrNull(dynamicConfigSchema, all.get(keys.config)) ?? defaultDynamicConfig();
    const systemIdentifier = all.get(keys.initialize) ?? null;
    if (systemIdentifier === null || systemIdentifier.startsWith(INITIALIZE_PENDING_PREFIX)) {
      throw new PgpilotError('CLUSTER_NOT_RUNNING', `cluster ${target.cluster} is not initialized yet`, { hint: `wait for: pgpilot status ${target.cluster}` });
    }
    const source = chooseBackupSource(memberRecordsIn(all, keys), all.get(keys.leader) ?? null, config.maximumLagOnFailoverBytes);
    if (source === null) {
      throw new PgpilotError('CLUSTER_NOT_RUNNING', `cluster ${target.cluster} has no running leader to back up`, {
        hint: `check it with: pgpilot status ${target.cluster}`,
        retryable: true,
      });
    }
    const kind = options.scheduled ? 'scheduled' : 'manual';
    let record: BackupRecord;
    try {
      record = await createBackup({ cluster: target.cluster, store, dcs, lockKey: keys.backupLock, secrets, binDir: target.binDir, caFile: target.tls.caFile, workRoot: target.workRoot, clock, progress }, { source, kind, systemIdentifier });
    } catch (error) {
      await recordEvent(dcs, keys, { at: new Date(clock.nowMs()).toISOString(), kind: 'backup-failed', node: source.node, message: `${kind} backup failed: ${errorMessage(error)}`, timeline: null });
      throw error;
    }
    await recordEvent(dcs, keys, {
      at: new Date(clock.nowMs()).toISOString(),
      kind: 'backup-completed',
      node: source.node,
      message: `${kind} backup ${record.id} (${mib(record.sizeBytes)}) stored in ${store.description}`,
      timeline: record.timeline,
    });
    try {
      await applyRetention({ store, layout, settings: config.backup, nowMs: clock.nowMs(), progress });
    } catch (error) {
      progress(`warning: retention was not applied: ${errorMessage(error)}`);
    }
    if (options.json) printJson(output, record);
    else output.out(`backup ${record.id} complete: ${mib(record.sizeBytes)}, timeline ${record.timeline ?? '?'}, ${record.startLsn ?? '?'} - ${record.stopLsn ?? '?'}, from ${record.sourceNode}`);
    return 0;
  } finally {
    await store.close().catch(() => undefined);
    await dcs.close().catch(() => undefined);
  }
}

// ---------------------------------------------------------------- list

export interface BackupListing {
  cluster: string;
  store: string;
  backups: BackupRecord[];
  wal: { files: number; sizeBytes: number; oldest: string | null; newest: string | null; newestArchivedAt: string | null };
}

export async function readListing(target: BackupTarget): Promise<BackupListing> {
  const { store, layout } = await openStore(target);
  try {
    const backups = await listBackups(store, layout);
    const wal = await new WalArchive(store, target.cluster).list();
    const segments = wal.filter((w) => /^[0-9A-F]{24}$/.test(w.name)).sort((a, b) => a.name.slice(8).localeCompare(b.name.slice(8)) || a.name.localeCompare(b.name));
    const newestAt = wal.length === 0 ? null : Math.max(...wal.map((w) => w.archivedAtMs));
    return {
      cluster: target.cluster,
      store: store.description,
      backups,
      wal: {
        files: wal.length,
        sizeBytes: wal.reduce((sum, w) => sum + w.sizeBytes, 0),
        oldest: segments[0]?.name ?? null,
        newest: segments.at(-1)?.name ?? null,
        newestArchivedAt: newestAt === null ? null : new Date(newestAt).toISOString(),
      },
    };
  } finally {
    await store.close().catch(() => undefined);
  }
}

export async function runList(target: BackupTarget, options: { json: boolean }, output: Output): Promise<number> {
  const listing = await readListing(target);
  if (options.json) {
    printJson(output, listing);
    return 0;
  }
  output.out(`backups of ${listing.cluster} in ${listing.store}`);
  output.out('');
  output.out(renderBackups(listing.backups));
  output.out('');
  const w = listing.wal;
  output.out(
    w.files === 0
      ? 'WAL archive: empty'
      : `WAL archive: ${w.files} files (${mib(w.sizeBytes)}), segments ${w.oldest ?? '-'} .. ${w.newest ?? '-'}, last archived ${w.newestArchivedAt ?? '-'}`,
  );
  return 0;
}

// ---------------------------------------------------------------- verify

export async function runVerify(target: BackupTarget, options: { id: string; json: boolean }, output: Output): Promise<number> {
  const { store, layout } = await openStore(target);
  try {
    const record = await readBackup(store, layout, options.id);
    if (record.status !== 'complete') {
      throw new PgpilotError('INPUT_INVALID', `backup ${record.id} is ${record.status}; only complete backups can be verified`, {
        hint: `pgpilot backup list ${target.cluster}`,
        exitCode: 2,
      });
    }
    const outcome = await verifyBackupCopy({ store, layout, record, binDir: target.binDir, workRoot: target.workRoot, progress: (line) => output.err(line) });
    const ok = outcome.problems.length === 0;
    if (options.json) printJson(output, { id: record.id, ok, problems: outcome.problems, files: record.files.map((f) => f.name) });
    else if (ok) output.out(`backup ${record.id} verified: ${record.files.length} stored files match their checksums; pg_verifybackup checked every data file and the WAL from ${record.startLsn ?? '?'} to ${record.stopLsn ?? '?'}`);
    else {
      output.out(`backup ${record.id} FAILED verification:`);
      for (const problem of outcome.problems) output.out(`  - ${problem}`);
    }
    if (!ok) {
      throw new PgpilotError('BACKUP_CORRUPT', `backup ${record.id} is damaged (${outcome.problems.length} problem${outcome.problems.length === 1 ? '' : 's'})`, {
        hint: `do not restore from it; take a new backup with: pgpilot backup create ${target.cluster}`,
      });
    }
    return 0;
  } finally {
    await store.close().catch(() => undefined);
  }
}

// ---------------------------------------------------------------- config

/**
 * S3 credentials for a store given on the command line come from the environment
 * (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY [/ AWS_SESSION_TOKEN]) and are written to the 0600
 * store config file: archive_command runs as the postgres OS user, without the caller's env.
 */
export function withEnvCredentials(config: StoreConfig, env: NodeJS.ProcessEnv): StoreConfig {
  if (config.kind !== 's3') return config;
  const accessKeyId = env['AWS_ACCESS_KEY_ID'];
  const secretAccessKey = env['AWS_SECRET_ACCESS_KEY'];
  if (accessKeyId === undefined || secretAccessKey === undefined || accessKeyId === '' || secretAccessKey === '') return config;
  const sessionToken = env['AWS_SESSION_TOKEN'];
  return { ...config, credentials: { accessKeyId, secretAccessKey, ...(sessionToken === undefined || sessionToken === '' ? {} : { sessionToken }) } };
}

export interface BackupConfigUpdates {
  schedule?: string;
  keepDaily?: number;
  keepWeekly?: number;
  keepDays?: string;
  store?: string;
}

/** Pure: the backup settings after the flags (validated); throws INPUT_INVALID naming the flag. */
export function applyBackupUpdates(current: BackupSettings, updates: BackupConfigUpdates): BackupSettings {
  const next: BackupSettings = { ...current };
  if (updates.schedule !== undefined) next.schedule = updates.schedule === 'off' ? null : validateSchedule(updates.schedule);
  if (updates.keepDaily !== undefined) next.keepDaily = updates.keepDaily;
  if (updates.keepWeekly !== undefined) next.keepWeekly = updates.keepWeekly;
  if (updates.keepDays !== undefined) {
    if (updates.keepDays === 'off') next.keepDays = null;
    else if (/^\d+$/.test(updates.keepDays)) next.keepDays = Number(updates.keepDays);
    else throw new PgpilotError('INPUT_INVALID', `--keep-days must be a number of days or "off", got ${JSON.stringify(updates.keepDays)}`, { hint: 'e.g. --keep-days 14', exitCode: 2 });
  }
  for (const [flag, value] of [['--keep-daily', next.keepDaily], ['--keep-weekly', next.keepWeekly]] as const) {
    if (!Number.isInteger(value) || value < 0) throw new PgpilotError('INPUT_INVALID', `${flag} must be a whole number >= 0`, { hint: 'e.g. --keep-daily 7 --keep-weekly 4', exitCode: 2 });
  }
  if (next.keepDays !== null && (!Number.isInteger(next.keepDays) || next.keepDays < 1)) {
    throw new PgpilotError('INPUT_INVALID', '--keep-days must be at least 1', { hint: 'or "off"', exitCode: 2 });
  }
  // The same schema the agents parse /config with: a value they would reject is never written.
  const checked = backupSettingsSchema.safeParse(next);
  if (!checked.success) {
    const problems = checked.error.issues.map((issue) => `--${String(issue.path[0] ?? '').replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}: ${issue.message}`);
    throw new PgpilotError('INPUT_INVALID', `invalid backup settings: ${problems.join('; ')}`, { hint: 'see pgpilot backup config --help; nothing was changed', exitCode: 2 });
  }
  return checked.data;
}

/** A store is usable when an object can be written, read back and deleted. */
async function probeStore(store: ObjectStore, layout: StoreLayout): Promise<void> {
  const key = `${layout.cluster}/probe-${process.pid}`;
  const body = Buffer.from(`pgpilot store probe ${process.pid}\n`);
  await store.put(key, body);
  const back = await store.getBuffer(key);
  await store.delete([key]);
  if (back === null || !back.equals(body)) {
    throw new PgpilotError('STORE_UNAVAILABLE', `${store.description} did not return what was written to it`, { hint: 'check the store URL and its permissions' });
  }
}

export async function runConfig(options: { home: string; name: string; json: boolean; updates: BackupConfigUpdates }, output: Output, clock: Clock): Promise<number> {
  const manifest = await readManifest(options.home, validateClusterName(options.name));
  const target = targetOf(manifest);
  const { dcs } = await openClusterDcs(manifest);
  const key = clusterKeys(manifest.name).config;
  try {
    const raw = await dcs.get(key);
    // An unreadable /config is refused (CONFIG_UNREADABLE), never overwritten with the defaults.
    const current = storedConfigOrThrow(raw, manifest.name);
    const settings = applyBackupUpdates(current.backup, options.updates);
    let storeConfig = await readStoreConfigFile(target.storeConfigFile);
    const changes: string[] = [];
    if (options.updates.store !== undefined) {
      const next = withEnvCredentials(parseStoreUrl(options.updates.store), process.env);
      const store = openObjectStore(next);
      const layout = storeLayout(target.cluster);
      try {
        await probeStore(store, layout);
        const existing = await listBackups(store, layout);
        const sysid = await dcs.get(clusterKeys(manifest.name).initialize);
        const foreign = existing.find((b) => b.systemIdentifier !== sysid);
        if (foreign !== undefined) {
          throw new PgpilotError('INPUT_INVALID', `${store.description} already holds backups of another cluster named ${target.cluster} (system ${foreign.systemIdentifier})`, {
            hint: 'use another bucket or prefix; nothing was changed',
            exitCode: 2,
          });
        }
      } finally {
        await store.close().catch(() => undefined);
      }
      if (describeStore(next) !== describeStore(storeConfig)) changes.push(`store: ${describeStore(storeConfig)} -> ${describeStore(next)}`);
      storeConfig = next;
    }
    const before = current.backup;
    for (const k of Object.keys(settings) as Array<keyof BackupSettings>) {
      if (JSON.stringify(before[k]) !== JSON.stringify(settings[k])) changes.push(`${k}: ${JSON.stringify(before[k])} -> ${JSON.stringify(settings[k])}`);
    }
    if (JSON.stringify(before) !== JSON.stringify(settings)) {
      const next: DynamicConfig = { ...current, backup: settings };
      const value = JSON.stringify(next);
      const written = raw === null ? await dcs.createIfAbsent(key, value) : await dcs.replaceIfEquals(key, raw, value);
      if (!written) throw new PgpilotError('INPUT_INVALID', `the config of ${manifest.name} changed meanwhile`, { hint: 'run the command again', retryable: true, exitCode: 2 });
    }
    // The store file last: archive_command reads it for every WAL file, so it switches at once.
    if (options.updates.store !== undefined) await writeStoreConfig(target.storeConfigFile, storeConfig);
    const nextRun = settings.schedule === null ? null : new Date(nextRunAfterMs(settings.schedule, clock.nowMs())).toISOString();
    const view = { cluster: manifest.name, store: describeStore(storeConfig), ...settings, nextScheduledRun: nextRun, changes };
    if (options.json) printJson(output, view);
    else {
      for (const change of changes) output.out(change);
      output.out(
        renderTable(
          ['SETTING', 'VALUE'],
          [
            ['store', view.store],
            ['schedule', settings.schedule === null ? 'off' : `${settings.schedule} (UTC; next ${nextRun ?? '-'})`],
            ['keepDaily', String(settings.keepDaily)],
            ['keepWeekly', String(settings.keepWeekly)],
            ['keepDays', settings.keepDays === null ? 'off' : String(settings.keepDays)],
          ],
        ),
      );
    }
    return 0;
  } finally {
    await dcs.close().catch(() => undefined);
  }
}

// ---------------------------------------------------------------- restore (explains)

export async function runRestoreHelp(options: { home: string; name: string }, output: Output): Promise<number> {
  const target = await targetFromCluster(options.home, options.name);
  const listing = await readListing(target);
  const newest = [...listing.backups].reverse().find((b) => b.status === 'complete');
  output.out('A restore never overwrites a running cluster: it creates a NEW cluster from a backup and the WAL archive,');
  output.out('so you can check the restored data before pointing applications at it.');
  output.out('');
  output.out(`  pgpilot create ${target.cluster}-restored --from-backup ${target.cluster}                       # everything archived`);
  output.out(`  pgpilot create ${target.cluster}-restored --from-backup ${target.cluster} --target-time T      # point in time (e.g. 2026-11-26T07:30:00Z)`);
  output.out(`  pgpilot create ${target.cluster}-restored --from-backup ${target.cluster} --target-lsn 0/5000060`);
  output.out(`  pgpilot create ${target.cluster}-restored --from-backup ${target.cluster} --backup ID         # a given base backup`);
  output.out('');
  output.out(
    newest === undefined
      ? `${target.cluster} has no complete backup yet: take one with pgpilot backup create ${target.cluster}`
      : `newest backup: ${newest.id} (consistent at ${newest.finishedAt ?? '?'}); WAL archived until ${listing.wal.newestArchivedAt ?? '-'}`,
  );
  return 0;
}

