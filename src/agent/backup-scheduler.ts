/**
 * The daily backup schedule, run by every agent but acting only on the leader: at each check it
 * asks the pure `decideBackupRun` (src/backup/schedule.ts) whether a run is due, from the cron
 * expression in the dynamic config and the backups already in the store (manual ones count), and
 * starts `backup create --scheduled` as a CHILD PROCESS. The copy, compression and upload then run
 * outside the agent, so a long backup never shares a thread with lease renewals.
 *
 * Invariants: at most one run at a time from this agent (and the run itself takes the cluster's
 * etcd backup lock, so two agents that both think they lead cannot both copy); a failed run is
 * retried after `retryAfterFailureMs`, not in a loop; every wait is on the injected clock.
 */
import type { BackupSettings } from '../config/schema.js';
import type { BackupRecord } from '../backup/backup-record.js';
import { decideBackupRun, type BackupRunDecision } from '../backup/schedule.js';
import type { BackupStatus } from '../metrics/agent-metrics.js';
import type { Clock } from '../shared/clock.js';
import { errorMessage } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';

export interface BackupSchedulerDeps {
  clock: Clock;
  log: Logger;
  isLeader(): boolean;
  /** The backup settings of the current dynamic config (null: not known yet). */
  settings(): BackupSettings | null;
  listBackups(): Promise<BackupRecord[]>;
  /** Runs one scheduled backup to completion; rejects when it failed. */
  runBackup(): Promise<void>;
  /** The id in the cluster's backup lock (the run in progress anywhere), or null. */
  lockHolder(): Promise<string | null>;
  /** When scheduling began (agent start): the first run is the first cron time after it. */
  referenceMs: number;
  checkEveryMs?: number;
  retryAfterFailureMs?: number;
}

const DEFAULT_CHECK_EVERY_MS = 60_000;
const DEFAULT_RETRY_AFTER_FAILURE_MS = 15 * 60_000;

export class BackupScheduler {
  private running: Promise<void> | null = null;
  private stopped = false;
  private lastRunFailedMs: number | null = null;
  private failuresTotal = 0;
  private lastSeen: BackupRecord[] = [];
  /** Aborted to end the current wait early: on stop, and when a run ends (decide again at once). */
  private waitAbort = new AbortController();

  constructor(private readonly deps: BackupSchedulerDeps) {}

  /** One decision, acted on: starts a run when one is due (returns at once; the run goes on). */
  async checkOnce(): Promise<BackupRunDecision | { kind: 'not-leader' }> {
    const settings = this.deps.settings();
    if (!this.deps.isLeader() || settings === null) return { kind: 'not-leader' };
    const records = await this.deps.listBackups();
    this.lastSeen = records;
    const nowMs = this.deps.clock.nowMs();
    const newest = records.at(-1);
    const newestFailed = [...records].reverse().find((r) => r.status === 'failed');
    const failedFromRecords = newestFailed?.finishedAt === undefined || newestFailed.finishedAt === null ? null : Date.parse(newestFailed.finishedAt);
    const lastFailedMs = Math.max(failedFromRecords ?? Number.NEGATIVE_INFINITY, this.lastRunFailedMs ?? Number.NEGATIVE_INFINITY);
    const decision = decideBackupRun({
      nowMs,
      schedule: settings.schedule,
      lastStartedMs: newest === undefined ? null : Date.parse(newest.startedAt),
      referenceMs: this.deps.referenceMs,
      // A `running` record counts only while its run holds the backup lock: a run that died leaves
      // its record behind (the next run marks it failed) but its lock went with its lease.
      running: this.running !== null || (records.some((r) => r.status === 'running') && (await this.liveRunIds(records)).length > 0),
      lastFailedMs: Number.isFinite(lastFailedMs) ? lastFailedMs : null,
      retryAfterFailureMs: this.deps.retryAfterFailureMs ?? DEFAULT_RETRY_AFTER_FAILURE_MS,
    });
    if (decision.kind === 'run') {
      this.deps.log.info({ reason: decision.reason }, 'scheduled backup starting');
      this.running = this.deps
        .runBackup()
        .then(() => {
          this.lastRunFailedMs = null;
          this.deps.log.info('scheduled backup finished');
        })
        .catch((error: unknown) => {
          this.failuresTotal += 1;
          this.lastRunFailedMs = this.deps.clock.nowMs();
          this.deps.log.error({ err: errorMessage(error) }, 'scheduled backup failed');
        })
        .finally(() => {
          this.running = null;
          this.waitAbort.abort();
        });
    }
    return decision;
  }

  private async liveRunIds(records: readonly BackupRecord[]): Promise<string[]> {
    const holder = await this.deps.lockHolder();
    return records.filter((r) => r.status === 'running' && r.id === holder).map((r) => r.id);
  }

  /** Checks every `checkEveryMs` until stopped (a failed check is logged and retried). */
  async run(): Promise<void> {
    const everyMs = this.deps.checkEveryMs ?? DEFAULT_CHECK_EVERY_MS;
    while (!this.stopped) {
      try {
        await this.checkOnce();
      } catch (error) {
        this.deps.log.warn({ err: errorMessage(error) }, 'backup schedule check failed');
      }
      if (this.stopped) break;
      this.waitAbort = new AbortController();
      await this.deps.clock.sleep(everyMs, this.waitAbort.signal);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.waitAbort.abort();
    await this.running;
  }

  /** For the metrics: the newest complete backup seen and the failures counted by this agent. */
  status(): BackupStatus {
    const last = [...this.lastSeen].reverse().find((r) => r.status === 'complete' && r.finishedAt !== null);
    const finishedMs = last?.finishedAt === undefined || last.finishedAt === null ? null : Date.parse(last.finishedAt);
    return {
      lastSuccessEpochSeconds: finishedMs === null ? null : finishedMs / 1000,
      lastSizeBytes: last?.sizeBytes ?? null,
      lastDurationSeconds: last === undefined || finishedMs === null ? null : (finishedMs - Date.parse(last.startedAt)) / 1000,
      failuresTotal: this.failuresTotal,
    };
  }
}
