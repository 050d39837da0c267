/**
 * Carries out the retention plan (src/backup/retention.ts) on a store: backups the policy does not
 * keep are deleted (files first, record last), then the WAL older than the oldest kept backup.
 * Runs after each successful backup; a failure here never fails the backup that triggered it.
 */
import type { BackupSettings } from '../config/schema.js';
import { deleteBackup, listBackups } from './backup-catalog.js';
import type { ObjectStore } from './object-store.js';
import { planRetention, type RetentionPlan } from './retention.js';
import type { StoreLayout } from './store-layout.js';
import { WalArchive } from './wal-archive.js';
import { segmentNameFor } from './wal-names.js';

export async function applyRetention(options: {
  store: ObjectStore;
  layout: StoreLayout;
  settings: BackupSettings;
  nowMs: number;
  progress: (line: string) => void;
}): Promise<RetentionPlan> {
  const { store, layout, settings } = options;
  const backups = await listBackups(store, layout);
  const archive = new WalArchive(store, layout.cluster);
  const wal = await archive.list();
  const plan = planRetention({
    backups: backups.map((b) => ({
      id: b.id,
      status: b.status,
      startedAtMs: Date.parse(b.startedAt),
      timeline: b.timeline,
      ...(b.timeline !== null && b.startLsn !== null ? { startSegment: segmentNameFor(b.timeline, b.startLsn) } : {}),
    })),
    policy: {
      keepDaily: settings.keepDaily,
      keepWeekly: settings.keepWeekly,
      ...(settings.keepDays === null ? {} : { keepDays: settings.keepDays }),
    },
    nowMs: options.nowMs,
    walFiles: wal.map((w) => w.name),
  });
  for (const id of plan.delete) {
    await deleteBackup(store, layout, id);
    options.progress(`retention: deleted backup ${id} (${plan.reasons[id] ?? 'not kept by the policy'})`);
  }
  if (plan.deleteWal.length > 0) {
    await archive.delete(plan.deleteWal);
    options.progress(`retention: deleted ${plan.deleteWal.length} archived WAL file${plan.deleteWal.length === 1 ? '' : 's'} older than ${plan.walCutSegment ?? '?'}`);
  }
  return plan;
}
