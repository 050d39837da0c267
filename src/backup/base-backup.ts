/**
 * Taking a base backup into the store: `pgpilot backup create` and the agent's schedule both run
 * this. The copy comes from a healthy streaming replica when there is one (the leader keeps its
 * I/O for clients), else from the leader.
 *
 * Invariants:
 * - One backup at a time per cluster: the run holds `/backup-lock` in etcd on a lease it keeps
 *   alive; a crashed run's lock goes with its lease.
 * - A backup is usable only once its record says `complete`, and the record is written last, after
 *   every file is stored with its sha256 (of the stored bytes). A failed run's record says `failed`
 *   and why; nothing else in the store is touched.
 * - The replication password reaches pg_basebackup through a 0600 passfile in the run's work
 *   directory, which is removed with it whatever happens.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { ClusterSecrets } from '../config/schema.js';
import type { Dcs } from '../dcs/dcs.js';
import type { MemberRecord } from '../state/member-record.js';
import { renderPgpass } from '../postgres/conf.js';
import { runTarBackup } from '../postgres/basebackup.js';
import { pgBinary } from '../postgres/bin-dir.js';
import type { Clock } from '../shared/clock.js';
import { PgpilotError, errorMessage } from '../shared/errors.js';
import { runCommand } from '../shared/process-runner.js';
import { listBackups, writeBackupRecord } from './backup-catalog.js';
import { newBackupId, parseBackupManifest, type BackupRecord } from './backup-record.js';
import { putFile, type ObjectStore } from './object-store.js';
import { storeLayout } from './store-layout.js';

export interface BackupSource {
  node: string;
  host: string;
  port: number;
  role: 'primary' | 'replica';
}

/**
 * The member to copy from (pure): the streaming replica with the least lag among those within
 * `maxLagBytes`, else the running leader; null when neither exists.
 */
export function chooseBackupSource(members: readonly MemberRecord[], leader: string | null, maxLagBytes: number): BackupSource | null {
  const leaderRecord = members.find((m) => m.name === leader && m.role === 'primary' && m.state === 'running');
  if (leaderRecord === undefined) return null;
  const lagOf = (name: string): number | null => leaderRecord.replication.find((r) => r.applicationName === name)?.lagBytes ?? null;
  const replicas = members
    .filter((m) => m.name !== leaderRecord.name && m.role === 'replica' && m.streaming && m.following === leaderRecord.name)
    .map((m) => ({ member: m, lag: lagOf(m.name) }))
    .filter((c): c is { member: MemberRecord; lag: number } => c.lag !== null && c.lag <= maxLagBytes)
    .sort((a, b) => a.lag - b.lag || a.member.name.localeCompare(b.member.name));
  const chosen = replicas[0]?.member;
  if (chosen !== undefined) return { node: chosen.name, host: chosen.host, port: chosen.port, role: 'replica' };
  return { node: leaderRecord.name, host: leaderRecord.host, port: leaderRecord.port, role: 'primary' };
}

export interface BackupContext {
  cluster: string;
  store: ObjectStore;
  dcs: Dcs;
  /** etcd key of the cluster's backup lock (clusterKeys(cluster).backupLock). */
  lockKey: string;
  secrets: ClusterSecrets;
  binDir: string;
  /** The cluster CA: pg_basebackup verifies the source against it (verify-full). */
  caFile: string;
  /** A directory on a disk with room for one compressed copy; the run works in a subdirectory. */
  workRoot: string;
  clock: Clock;
  progress(line: string): void;
}

const LOCK_TTL_SECONDS = 30;
const LOCK_RENEW_MS = 10_000;
/** A run that takes longer than this stops renewing the lock, so a stuck run cannot block backups for ever. */
export const MAX_BACKUP_DURATION_MS = 12 * 60 * 60_000;

async function sha256OfFile(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function pgVersionOf(binDir: string): Promise<string> {
  const result = await runCommand(pgBinary(binDir, 'pg_basebackup'), ['--version'], { timeoutMs: 10_000 });
  return /\(PostgreSQL\)\s+(\S+)/.exec(result.stdout)?.[1] ?? result.stdout.trim();
}

/** Holds the cluster's backup lock while `fn` runs; BACKUP_RUNNING when another run holds it. */
async function withBackupLock<T>(ctx: BackupContext, id: string, fn: () => Promise<T>): Promise<T> {
  const leaseId = await ctx.dcs.grantLease(LOCK_TTL_SECONDS);
  if (!(await ctx.dcs.createIfAbsent(ctx.lockKey, id, { leaseId }))) {
    await ctx.dcs.revokeLease(leaseId).catch(() => undefined);
    const holder = await ctx.dcs.get(ctx.lockKey).catch(() => null);
    throw new PgpilotError('BACKUP_RUNNING', `a backup of ${ctx.cluster} is already running${holder === null ? '' : ` (${holder})`}`, {
      hint: `wait for it to finish (pgpilot backup list ${ctx.cluster}), then try again`,
      retryable: true,
    });
  }
  let stopped = false;
  const renewUntilMs = ctx.clock.nowMs() + MAX_BACKUP_DURATION_MS;
  // The lease outlives a stuck renewal by TTL - 10 s; the loop ends with the run (at most one sleep later).
  void (async () => {
    while (!stopped && ctx.clock.nowMs() < renewUntilMs) {
      await ctx.clock.sleep(LOCK_RENEW_MS);
      if (!stopped) await ctx.dcs.keepAlive(leaseId).catch(() => false);
    }
  })();
  try {
    return await fn();
  } finally {
    stopped = true;
    await ctx.dcs.revokeLease(leaseId).catch(() => undefined);
  }
}

/**
 * Takes one base backup from `source` and stores it. Resolves with the complete record; on
 * failure the record says `failed` and the error is rethrown.
 */
export async function createBackup(
  ctx: BackupContext,
  options: { source: BackupSource; kind: 'scheduled' | 'manual'; systemIdentifier: string },
): Promise<BackupRecord> {
  const layout = storeLayout(ctx.cluster);
  const startedMs = ctx.clock.nowMs();
  const id = newBackupId(startedMs);
  return withBackupLock(ctx, id, async () => {
    // Holding the lock, any other `running` record is a run that died (its lock went with its
    // lease): mark it failed, so that it neither looks alive nor holds back WAL retention.
    for (const stale of (await listBackups(ctx.store, layout)).filter((b) => b.status === 'running' && b.id !== id)) {
      await writeBackupRecord(ctx.store, layout, { ...stale, status: 'failed', finishedAt: new Date(ctx.clock.nowMs()).toISOString(), error: 'interrupted: the run ended without finishing' });
      ctx.progress(`backup ${stale.id}: marked failed (interrupted run)`);
    }
    const existing = await ctx.store.head(layout.backupRecordKey(id));
    if (existing !== null) {
      throw new PgpilotError('BACKUP_RUNNING', `a backup with id ${id} already exists`, { hint: 'wait a second and try again', retryable: true });
    }
    const record: BackupRecord = {
      version: 1,
      id,
      cluster: ctx.cluster,
      systemIdentifier: options.systemIdentifier,
      status: 'running',
      kind: options.kind,
      sourceNode: options.source.node,
      sourceRole: options.source.role,
      startedAt: new Date(startedMs).toISOString(),
      finishedAt: null,
      startLsn: null,
      stopLsn: null,
      timeline: null,
      pgVersion: await pgVersionOf(ctx.binDir),
      sizeBytes: 0,
      files: [],
    };
    await writeBackupRecord(ctx.store, layout, record);
    const workDir = path.join(ctx.workRoot, `backup-${id}`);
    const targetDir = path.join(workDir, 'data');
    try {
      await mkdir(workDir, { recursive: true, mode: 0o700 });
      const passfile = path.join(workDir, 'pgpass');
      await writeFile(passfile, renderPgpass([{ host: '*', port: '*', database: '*', user: ctx.secrets.replication.name, password: ctx.secrets.replication.password }]), { mode: 0o600 });
      ctx.progress(`backup ${id}: copying from ${options.source.node} (${options.source.role}, ${options.source.host}:${options.source.port})`);
      let lastShownPercent = -1;
      await runTarBackup({
        binDir: ctx.binDir,
        targetDir,
        host: options.source.host,
        port: options.source.port,
        user: ctx.secrets.replication.name,
        passfile,
        caFile: ctx.caFile,
        label: `pgpilot backup ${id}`,
        onProgress: (p) => {
          if (p.percent >= lastShownPercent + 10 || (p.percent === 100 && lastShownPercent !== 100)) {
            lastShownPercent = p.percent;
            ctx.progress(`backup ${id}: ${p.percent}% (${Math.round(p.doneKb / 1024)} of ${Math.round(p.totalKb / 1024)} MiB)`);
          }
        },
      });
      const manifest = parseBackupManifest(await readFile(path.join(targetDir, 'backup_manifest'), 'utf8'));
      const names = (await readdir(targetDir)).sort();
      for (const name of names) {
        const file = path.join(targetDir, name);
        const sizeBytes = (await stat(file)).size;
        const sha256 = await sha256OfFile(file);
        ctx.progress(`backup ${id}: storing ${name} (${(sizeBytes / 1024 / 1024).toFixed(1)} MiB) in ${ctx.store.description}`);
        await putFile(ctx.store, layout.backupFileKey(id, name), file, { metadata: { sha256 } });
        record.files.push({ name, sizeBytes, sha256, rawSizeBytes: sizeBytes });
      }
      const complete: BackupRecord = {
        ...record,
        status: 'complete',
        finishedAt: new Date(ctx.clock.nowMs()).toISOString(),
        startLsn: manifest.startLsn,
        stopLsn: manifest.endLsn,
        timeline: manifest.timeline,
        sizeBytes: record.files.reduce((sum, f) => sum + f.sizeBytes, 0),
      };
      await writeBackupRecord(ctx.store, layout, complete);
      ctx.progress(`backup ${id}: complete (${(complete.sizeBytes / 1024 / 1024).toFixed(1)} MiB, timeline ${complete.timeline ?? '?'}, ${complete.startLsn ?? '?'} - ${complete.stopLsn ?? '?'})`);
      return complete;
    } catch (error) {
      await writeBackupRecord(ctx.store, layout, { ...record, status: 'failed', finishedAt: new Date(ctx.clock.nowMs()).toISOString(), error: errorMessage(error) }).catch(() => undefined);
      throw error;
    } finally {
      await rm(workDir, { recursive: true, force: true });
    }
  });
}
