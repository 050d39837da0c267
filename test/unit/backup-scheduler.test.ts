/**
 * The agent's backup scheduler (src/agent/backup-scheduler.ts) on a FakeClock, with a fake catalog
 * (the records a real run writes: `running` at start, `complete` or `failed` at the end) and a fake
 * run that takes time on the fake clock. Days are simulated by stepping the clock and calling
 * `checkOnce()`: one run per day at the first check at/after the cron time, none while not leader
 * or disabled, a failed run retried after `retryAfterFailureMs` and not before, failures counted,
 * `status()` from the newest complete backup. `run()`/`stop()` are driven the same way; every wait
 * is bounded in event-loop turns (nothing here sleeps in real time).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BackupScheduler } from '../../src/agent/backup-scheduler.js';
import { backupRecordSchema, newBackupId, type BackupRecord } from '../../src/backup/backup-record.js';
import type { BackupRunDecision } from '../../src/backup/schedule.js';
import type { BackupSettings } from '../../src/config/schema.js';
import { FakeClock } from '../../src/shared/clock.js';
import { createLogger } from '../../src/shared/logger.js';

const MINUTE_MS = 60_000;
const HOUR_MS = 60 * MINUTE_MS;
const DAY_MS = 24 * HOUR_MS;
const at = (iso: string): number => Date.parse(iso);
const iso = (ms: number): string => new Date(ms).toISOString();

type Outcome = 'complete' | 'failed' | 'no-record';

interface HarnessOptions {
  startMs: number;
  schedule?: string | null;
  leader?: boolean;
  runDurationMs?: number;
  retryAfterFailureMs?: number;
  checkEveryMs?: number;
  /** Outcomes of the runs in order; later runs complete. */
  outcomes?: Outcome[];
  records?: BackupRecord[];
}

interface Harness {
  clock: FakeClock;
  scheduler: BackupScheduler;
  /** The catalog, oldest first (as listBackups returns it). */
  records: BackupRecord[];
  /** Fake-clock start time of every run. */
  starts: number[];
  /** Fake-clock time of every listBackups call. */
  listCalls: number[];
  logs: Array<{ level: number; msg: string; err?: string; reason?: string }>;
  state: { leader: boolean; settings: BackupSettings | null; failNextList: boolean; lock: string | null };
  /** Advances the clock, lets woken work finish, then checks once. */
  step(ms: number): Promise<BackupRunDecision | { kind: 'not-leader' }>;
}

/** One macrotask turn: every pending promise continuation has run. */
async function settle(): Promise<void> {
  await new Promise<void>((resolve) => setImmediate(resolve));
}

async function within(what: string, condition: () => boolean, turns = 200): Promise<void> {
  for (let i = 0; i < turns; i++) {
    if (condition()) return;
    await settle();
  }
  assert.fail(`${what}: not within ${turns} event-loop turns`);
}

function backupRecord(fields: { startedMs: number; status: BackupRecord['status']; finishedMs?: number; sizeBytes?: number }): BackupRecord {
  const complete = fields.status === 'complete';
  const sizeBytes = complete ? (fields.sizeBytes ?? 1000) : 0;
  return backupRecordSchema.parse({
    version: 1,
    id: newBackupId(fields.startedMs),
    cluster: 'shop',
    systemIdentifier: '7321456789012345678',
    status: fields.status,
    kind: 'scheduled',
    sourceNode: 'node2',
    sourceRole: 'replica',
    startedAt: iso(fields.startedMs),
    finishedAt: fields.finishedMs === undefined ? null : iso(fields.finishedMs),
    startLsn: complete ? '0/3000028' : null,
    stopLsn: complete ? '0/3000100' : null,
    timeline: complete ? 1 : null,
    pgVersion: '15.4',
    sizeBytes,
    files: complete ? [{ name: 'base.tar.gz', sizeBytes, sha256: 'b'.repeat(64), rawSizeBytes: sizeBytes * 3 }] : [],
  });
}

function harness(options: HarnessOptions): Harness {
  const clock = new FakeClock(options.startMs);
  const records: BackupRecord[] = [...(options.records ?? [])];
  const starts: number[] = [];
  const listCalls: number[] = [];
  const logs: Harness['logs'] = [];
  const outcomes = [...(options.outcomes ?? [])];
  const state = {
    leader: options.leader ?? true,
    settings: { schedule: options.schedule === undefined ? '0 3 * * *' : options.schedule, keepDaily: 7, keepWeekly: 4, keepDays: null } as BackupSettings | null,
    failNextList: false,
    /** The backup lock's holder (the id of the run in progress anywhere), as etcd would say. */
    lock: null as string | null,
  };
  const upsert = (record: BackupRecord): void => {
    const index = records.findIndex((r) => r.id === record.id);
    if (index >= 0) records[index] = record;
    else records.push(record);
    records.sort((a, b) => a.id.localeCompare(b.id));
  };
  const durationMs = options.runDurationMs ?? 20 * MINUTE_MS;
  const log = createLogger({ level: 'debug', destination: { write: (line: string) => void logs.push(JSON.parse(line) as Harness['logs'][number]) } });
  const scheduler = new BackupScheduler({
    clock,
    log,
    isLeader: () => state.leader,
    settings: () => state.settings,
    listBackups: () => {
      listCalls.push(clock.nowMs());
      if (state.failNextList) {
        state.failNextList = false;
        return Promise.reject(new Error('store unavailable'));
      }
      return Promise.resolve(records.map((r) => ({ ...r })));
    },
    runBackup: async () => {
      const startedMs = clock.nowMs();
      starts.push(startedMs);
      const outcome = outcomes.shift() ?? 'complete';
      upsert(backupRecord({ startedMs, status: 'running' }));
      state.lock = newBackupId(startedMs);
      await clock.sleep(durationMs);
      state.lock = null;
      const finishedMs = clock.nowMs();
      if (outcome === 'complete') {
        upsert(backupRecord({ startedMs, status: 'complete', finishedMs, sizeBytes: 1000 * starts.length }));
        return;
      }
      if (outcome === 'failed') upsert(backupRecord({ startedMs, status: 'failed', finishedMs }));
      else records.splice(records.findIndex((r) => r.id === newBackupId(startedMs)), 1);
      throw new Error(`pg_basebackup failed (run ${starts.length})`);
    },
    lockHolder: () => Promise.resolve(state.lock),
    referenceMs: options.startMs,
    ...(options.checkEveryMs === undefined ? {} : { checkEveryMs: options.checkEveryMs }),
    ...(options.retryAfterFailureMs === undefined ? {} : { retryAfterFailureMs: options.retryAfterFailureMs }),
  });
  return {
    clock,
    scheduler,
    records,
    starts,
    listCalls,
    logs,
    state,
    async step(ms: number) {
      clock.advance(ms);
      await settle();
      const decision = await scheduler.checkOnce();
      await settle();
      return decision;
    },
  };
}

/** Steps `h` by `stepMs` until `untilMs`, returning every decision with its time. */
async function simulate(h: Harness, stepMs: number, untilMs: number): Promise<Array<{ nowMs: number; decision: BackupRunDecision | { kind: 'not-leader' } }>> {
  const decisions: Array<{ nowMs: number; decision: BackupRunDecision | { kind: 'not-leader' } }> = [];
  const maxSteps = Math.ceil((untilMs - h.clock.nowMs()) / stepMs) + 1;
  for (let i = 0; i < maxSteps && h.clock.nowMs() + stepMs <= untilMs; i++) {
    const decision = await h.step(stepMs);
    decisions.push({ nowMs: h.clock.nowMs(), decision });
  }
  return decisions;
}

const START_MS = at('2026-11-20T00:00:00Z');

void describe('BackupScheduler.checkOnce over simulated days', () => {
  void it('runs exactly once a day, at the first check at or after 03:00 UTC', async () => {
    const stepMs = 7 * MINUTE_MS; // does not divide a day: the first check after 03:00 moves every day
    const h = harness({ startMs: START_MS });
    const decisions = await simulate(h, stepMs, START_MS + 3 * DAY_MS);
    const expected = [0, 1, 2].map((day) => START_MS + Math.ceil((day * DAY_MS + 3 * HOUR_MS) / stepMs) * stepMs);
    assert.deepEqual(h.starts.map(iso), expected.map(iso));
    assert.deepEqual(expected.map(iso), ['2026-11-20T03:02:00.000Z', '2026-11-21T03:04:00.000Z', '2026-11-22T03:06:00.000Z']);
    assert.equal(decisions.filter((d) => d.decision.kind === 'run').length, 3);
    assert.deepEqual(h.records.map((r) => [r.id, r.status]), expected.map((ms) => [newBackupId(ms), 'complete']));
    // A check during a run waits for it; one just before 03:00 names the next slot.
    const during = decisions.find((d) => d.nowMs === expected[0]! + stepMs)!.decision;
    assert.deepEqual(during, { kind: 'wait', nextMs: at('2026-11-21T03:00:00Z'), reason: 'a backup is running; deciding again when it ends' });
    const before = decisions.filter((d) => d.nowMs < at('2026-11-21T03:00:00Z')).at(-1)!.decision;
    assert.deepEqual(before, { kind: 'wait', nextMs: at('2026-11-21T03:00:00Z'), reason: 'next scheduled run at 2026-11-21T03:00:00.000Z' });
    assert.equal(h.scheduler.status().failuresTotal, 0);
  });

  void it('never runs while not the leader, and does not even read the store', async () => {
    const h = harness({ startMs: START_MS, leader: false });
    const decisions = await simulate(h, 10 * MINUTE_MS, START_MS + 3 * DAY_MS);
    assert.equal(decisions.length, 3 * 24 * 6);
    assert.ok(decisions.every((d) => d.decision.kind === 'not-leader'));
    assert.deepEqual(h.starts, []);
    assert.deepEqual(h.listCalls, []);
    // Becoming leader with no backup since the reference time: one catch-up run at once, then the schedule.
    h.state.leader = true;
    await simulate(h, 10 * MINUTE_MS, START_MS + 4 * DAY_MS);
    assert.deepEqual(h.starts.map(iso), ['2026-11-23T00:10:00.000Z', '2026-11-23T03:00:00.000Z']);
  });

  void it('a new leader continues the schedule from the backups the old leader took (no extra run)', async () => {
    const old = backupRecord({ startedMs: at('2026-11-20T03:00:00Z'), status: 'complete', finishedMs: at('2026-11-20T03:20:00Z') });
    const h = harness({ startMs: at('2026-11-20T12:00:00Z'), records: [old] });
    await simulate(h, 10 * MINUTE_MS, at('2026-11-22T00:00:00Z'));
    assert.deepEqual(h.starts.map(iso), ['2026-11-21T03:00:00.000Z']);
  });

  void it('stops running when leadership is lost mid-way', async () => {
    const h = harness({ startMs: START_MS });
    await simulate(h, 10 * MINUTE_MS, at('2026-11-20T12:00:00Z'));
    h.state.leader = false;
    await simulate(h, 10 * MINUTE_MS, START_MS + 3 * DAY_MS);
    assert.deepEqual(h.starts.map(iso), ['2026-11-20T03:00:00.000Z']);
  });

  void it('is disabled when the schedule is null, and not-leader while the settings are unknown', async () => {
    const h = harness({ startMs: START_MS, schedule: null });
    const decisions = await simulate(h, 30 * MINUTE_MS, START_MS + 3 * DAY_MS);
    assert.ok(decisions.length > 100);
    assert.ok(decisions.every((d) => d.decision.kind === 'disabled'), 'every decision is disabled');
    assert.deepEqual(h.starts, []);
    h.state.settings = null;
    assert.deepEqual(await h.step(MINUTE_MS), { kind: 'not-leader' });
    const callsBefore = h.listCalls.length;
    await h.step(MINUTE_MS);
    assert.equal(h.listCalls.length, callsBefore, 'no store read without settings');
  });

  for (const outcome of ['failed', 'no-record'] as const) {
    void it(`retries a failed run (${outcome === 'failed' ? 'failed record written' : 'no record written'}) after retryAfterFailureMs, not before`, async () => {
      const h = harness({ startMs: START_MS, runDurationMs: 5 * MINUTE_MS, retryAfterFailureMs: HOUR_MS, outcomes: [outcome] });
      const decisions = await simulate(h, MINUTE_MS, at('2026-11-21T04:00:00Z'));
      assert.deepEqual(h.starts.map(iso), ['2026-11-20T03:00:00.000Z', '2026-11-20T04:05:00.000Z', '2026-11-21T03:00:00.000Z']);
      const justBefore = decisions.find((d) => d.nowMs === at('2026-11-20T04:04:00Z'))!.decision;
      assert.deepEqual(justBefore, {
        kind: 'wait',
        nextMs: at('2026-11-20T04:05:00Z'),
        reason: 'the last attempt failed at 2026-11-20T03:05:00.000Z; retrying at 2026-11-20T04:05:00.000Z',
      });
      assert.equal(h.scheduler.status().failuresTotal, 1);
      const failedLog = h.logs.find((l) => l.msg === 'scheduled backup failed');
      assert.equal(failedLog?.err, 'pg_basebackup failed (run 1)');
      assert.equal(failedLog?.level, 50);
    });
  }

  void it('retries after 15 minutes by default, and counts every failure of a persistently failing backup', async () => {
    const h = harness({ startMs: START_MS, runDurationMs: 5 * MINUTE_MS, outcomes: ['failed', 'failed', 'failed', 'failed'] });
    await simulate(h, MINUTE_MS, at('2026-11-20T05:00:00Z'));
    // 03:00 fails 03:05 -> 03:20 fails 03:25 -> 03:40 fails 03:45 -> 04:00 fails 04:05 -> 04:20 completes.
    assert.deepEqual(h.starts.map(iso), ['2026-11-20T03:00:00.000Z', '2026-11-20T03:20:00.000Z', '2026-11-20T03:40:00.000Z', '2026-11-20T04:00:00.000Z', '2026-11-20T04:20:00.000Z']);
    assert.equal(h.scheduler.status().failuresTotal, 4);
    assert.equal(h.records.filter((r) => r.status === 'failed').length, 4);
    assert.equal(h.records.at(-1)?.status, 'complete');
  });

  void it('does not start a second run while a manual backup is running; the slot it overlapped is caught up once after', async () => {
    const manual = backupRecord({ startedMs: at('2026-11-20T02:50:00Z'), status: 'running' });
    const h = harness({ startMs: START_MS, records: [manual] });
    h.state.lock = manual.id;
    const decisions = await simulate(h, 10 * MINUTE_MS, at('2026-11-20T04:00:00Z'));
    assert.deepEqual(h.starts, []);
    assert.deepEqual(decisions.at(-1)?.decision, { kind: 'wait', nextMs: at('2026-11-20T04:00:00Z'), reason: 'a backup is running; deciding again when it ends' });
    // It ends. It started before the 03:00 slot, so that slot is still owed: one run at once, then the schedule.
    h.records[0] = backupRecord({ startedMs: at('2026-11-20T02:50:00Z'), status: 'complete', finishedMs: at('2026-11-20T04:00:00Z') });
    h.state.lock = null;
    await simulate(h, 10 * MINUTE_MS, at('2026-11-21T04:00:00Z'));
    assert.deepEqual(h.starts.map(iso), ['2026-11-20T04:10:00.000Z', '2026-11-21T03:00:00.000Z']);
  });

  void it(
    'is not blocked for ever by a "running" record a crashed run left behind (its lock went with its lease)',
    async () => {
      const stale = backupRecord({ startedMs: at('2026-11-18T03:00:00Z'), status: 'running' });
      const h = harness({ startMs: START_MS, records: [stale] });
      await simulate(h, 10 * MINUTE_MS, START_MS + 3 * DAY_MS);
      assert.ok(h.starts.length >= 1, `expected a scheduled run within 3 days, got ${h.starts.length}`);
    },
  );
});

void describe('BackupScheduler.status', () => {
  void it('reports nothing before the first check', () => {
    const h = harness({ startMs: START_MS });
    assert.deepEqual(h.scheduler.status(), { lastSuccessEpochSeconds: null, lastSizeBytes: null, lastDurationSeconds: null, failuresTotal: 0 });
  });

  void it('reports the newest complete backup (finish time, size, duration), not a newer failed one', async () => {
    const h = harness({ startMs: START_MS, runDurationMs: 25 * MINUTE_MS, retryAfterFailureMs: 6 * HOUR_MS, outcomes: ['complete', 'complete', 'failed'] });
    await simulate(h, 5 * MINUTE_MS, at('2026-11-22T05:00:00Z'));
    assert.deepEqual(h.records.map((r) => r.status), ['complete', 'complete', 'failed']);
    assert.deepEqual(h.scheduler.status(), {
      lastSuccessEpochSeconds: at('2026-11-21T03:25:00Z') / 1000,
      lastSizeBytes: 2000,
      lastDurationSeconds: 25 * 60,
      failuresTotal: 1,
    });
  });
});

void describe('BackupScheduler.run / stop', () => {
  void it('checks every checkEveryMs on the clock, decides again as soon as a run ends, and stops', async () => {
    const h = harness({ startMs: at('2026-11-20T02:57:00Z'), runDurationMs: 150_000, checkEveryMs: MINUTE_MS });
    let loopDone = false;
    void h.scheduler.run().then(() => {
      loopDone = true;
    });
    await within('the first check', () => h.listCalls.length === 1 && h.clock.pendingSleepers() === 1);
    for (let i = 0; i < 13; i++) {
      h.clock.advance(30_000);
      await settle();
      await settle();
    }
    // Checks at 02:57 .. 03:02 each minute; the run (03:00 - 03:02:30) ends and a check follows at
    // once, then the minute pace resumes from there.
    assert.deepEqual(h.listCalls.map(iso), [
      '2026-11-20T02:57:00.000Z',
      '2026-11-20T02:58:00.000Z',
      '2026-11-20T02:59:00.000Z',
      '2026-11-20T03:00:00.000Z',
      '2026-11-20T03:01:00.000Z',
      '2026-11-20T03:02:00.000Z',
      '2026-11-20T03:02:30.000Z',
      '2026-11-20T03:03:30.000Z',
    ]);
    assert.deepEqual(h.starts.map(iso), ['2026-11-20T03:00:00.000Z']);
    assert.equal(h.records.at(-1)?.status, 'complete');

    const stopping = h.scheduler.stop();
    await within('run() to end after stop()', () => loopDone);
    await stopping;
    assert.equal(h.clock.pendingSleepers(), 0);
    const calls = h.listCalls.length;
    h.clock.advance(DAY_MS);
    for (let i = 0; i < 5; i++) await settle();
    assert.equal(h.listCalls.length, calls, 'no check after stop');
    assert.equal(h.starts.length, 1);
  });

  void it('stop() during a run ends the loop at once but resolves only when the run has ended', async () => {
    const h = harness({ startMs: at('2026-11-20T02:59:00Z'), runDurationMs: 10 * MINUTE_MS, checkEveryMs: MINUTE_MS });
    let loopDone = false;
    void h.scheduler.run().then(() => {
      loopDone = true;
    });
    await within('the first check', () => h.listCalls.length === 1 && h.clock.pendingSleepers() === 1);
    h.clock.advance(MINUTE_MS);
    await within('the run to start', () => h.starts.length === 1);
    let stopDone = false;
    void h.scheduler.stop().then(() => {
      stopDone = true;
    });
    await within('run() to end', () => loopDone);
    for (let i = 0; i < 5; i++) await settle();
    assert.equal(stopDone, false, 'stop() waits for the run in progress');
    assert.equal(h.records.at(-1)?.status, 'running');
    h.clock.advance(10 * MINUTE_MS);
    await within('stop() to resolve', () => stopDone);
    assert.equal(h.records.at(-1)?.status, 'complete');
    assert.equal(h.clock.pendingSleepers(), 0);
  });

  void it('keeps checking after a failed check (logged), and stop() before the first sleep ends the loop', async () => {
    const h = harness({ startMs: at('2026-11-20T01:00:00Z'), checkEveryMs: MINUTE_MS });
    h.state.failNextList = true;
    let loopDone = false;
    void h.scheduler.run().then(() => {
      loopDone = true;
    });
    await within('the failed check', () => h.listCalls.length === 1 && h.clock.pendingSleepers() === 1);
    const warning = h.logs.find((l) => l.msg === 'backup schedule check failed');
    assert.equal(warning?.err, 'store unavailable');
    assert.equal(warning?.level, 40);
    h.clock.advance(MINUTE_MS);
    await within('the next check', () => h.listCalls.length === 2);
    await h.scheduler.stop();
    await within('run() to end', () => loopDone);
    assert.equal(h.listCalls.length, 2);
  });
});
