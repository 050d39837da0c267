/**
 * Backup scheduling (src/backup/schedule.ts): cron expressions are 5-field UTC and anything else
 * is INPUT_INVALID with a hint; the next run is strictly after the given time; and the pure
 * `decideBackupRun`, driven by a simulated agent whose "now" steps through several days, runs
 * the daily backup once per day at 03:00 UTC, never two at once, catches a missed run up once
 * (not once per missed day), spaces retries after a failure, and does nothing when disabled.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEFAULT_BACKUP_SCHEDULE, decideBackupRun, nextRunAfterMs, validateSchedule, type BackupRunDecision, type BackupRunInput } from '../../src/backup/schedule.js';
import { isPgpilotError } from '../../src/shared/errors.js';

const MINUTE_MS = 60_000;
const HOUR_MS = 60 * MINUTE_MS;
const at = (iso: string): number => Date.parse(iso);
const isoOf = (ms: number): string => new Date(ms).toISOString();

function isInvalidSchedule(error: unknown): boolean {
  return isPgpilotError(error) && error.code === 'INPUT_INVALID' && error.hint === "e.g. '0 3 * * *' (03:00 UTC daily)" && /invalid backup schedule/.test(error.message);
}

function decide(overrides: Partial<BackupRunInput>): BackupRunDecision {
  return decideBackupRun({
    nowMs: at('2024-01-02T12:00:00Z'),
    schedule: DEFAULT_BACKUP_SCHEDULE,
    lastStartedMs: null,
    referenceMs: at('2024-01-01T10:00:00Z'),
    running: false,
    lastFailedMs: null,
    retryAfterFailureMs: HOUR_MS,
    ...overrides,
  });
}

void describe('validateSchedule', () => {
  void it('accepts 5-field cron expressions and normalizes spacing', () => {
    assert.equal(DEFAULT_BACKUP_SCHEDULE, '0 3 * * *');
    assert.equal(validateSchedule('0 3 * * *'), '0 3 * * *');
    assert.equal(validateSchedule('  0   3\t* * *  '), '0 3 * * *');
    for (const expr of ['*/15 * * * *', '30 2 * * 0', '0 3 * * MON-FRI', '0 3 * * THU', '0 4 1 * *', '0 3 L * *', '0 0 29 2 *', '0 3 1,15 JAN *']) {
      assert.equal(validateSchedule(expr), expr);
    }
  });

  void it('rejects anything else as INPUT_INVALID with a hint', () => {
    const bad = [
      '', // cron-parser alone would read this as every minute
      '0 3 * *', // 4 fields, also accepted by cron-parser
      '0 0 3 * * *', // 6 fields: the first would be seconds
      '@daily',
      'garbage',
      '61 * * * *',
      '0 24 * * *',
      '0 3 32 * *',
      '0 3 * 13 *',
      '0 3 * * 8',
      '*/0 * * * *',
      '0 0 30 2 *', // never fires
      '0 0 31 4,6 *', // never fires
      'H 3 * * *', // random per parse
      'H/5 3 * * *',
      '0 3 * * 1H',
      '0 3 * * * # comment',
    ];
    for (const expr of bad) assert.throws(() => validateSchedule(expr), isInvalidSchedule, JSON.stringify(expr));
  });
});

void describe('nextRunAfterMs', () => {
  void it('is the first slot strictly after the given time, in UTC', () => {
    assert.equal(isoOf(nextRunAfterMs('0 3 * * *', at('2024-01-01T02:59:59.999Z'))), '2024-01-01T03:00:00.000Z');
    assert.equal(isoOf(nextRunAfterMs('0 3 * * *', at('2024-01-01T03:00:00.000Z'))), '2024-01-02T03:00:00.000Z', 'a time on the slot yields the next one');
    assert.equal(isoOf(nextRunAfterMs('0 3 * * *', at('2024-01-01T03:00:00.001Z'))), '2024-01-02T03:00:00.000Z');
    assert.equal(isoOf(nextRunAfterMs('0 3 * * *', at('2024-02-28T04:00:00Z'))), '2024-02-29T03:00:00.000Z', 'leap day');
    assert.equal(isoOf(nextRunAfterMs('0 3 * * *', at('2024-12-31T03:00:00Z'))), '2025-01-01T03:00:00.000Z', 'year boundary');
    assert.equal(isoOf(nextRunAfterMs('*/15 * * * *', at('2024-01-01T10:07:00Z'))), '2024-01-01T10:15:00.000Z');
    assert.equal(isoOf(nextRunAfterMs('30 2 * * 0', at('2024-01-03T00:00:00Z'))), '2024-01-07T02:30:00.000Z', 'Sunday');
    // Europe changes clocks on 2024-03-31; UTC schedules do not move.
    assert.equal(isoOf(nextRunAfterMs('0 3 * * *', at('2024-03-30T03:00:00Z'))), '2024-03-31T03:00:00.000Z');
    assert.equal(isoOf(nextRunAfterMs('0 3 * * *', at('2024-03-31T03:00:00Z'))), '2024-04-01T03:00:00.000Z');
  });

  void it('rejects an invalid expression or time', () => {
    assert.throws(() => nextRunAfterMs('0 3 * *', 0), isInvalidSchedule);
    assert.throws(() => nextRunAfterMs('0 3 * * *', Number.NaN), (error: unknown) => isPgpilotError(error) && error.code === 'INPUT_INVALID');
  });
});

/**
 * A simulated agent: every `stepMs` it asks decideBackupRun; on 'run' it starts a backup that
 * takes `durationMs` and then completes or fails as `outcome` says. Returns the start times.
 */
function simulate(options: {
  fromMs: number;
  untilMs: number;
  stepMs: number;
  durationMs: number;
  schedule?: string | null;
  referenceMs: number;
  lastStartedMs?: number | null;
  outcome?: (startMs: number) => 'complete' | 'failed';
  retryAfterFailureMs?: number;
}): { starts: number[]; decisions: Array<{ nowMs: number; decision: BackupRunDecision }> } {
  let lastStartedMs = options.lastStartedMs ?? null;
  let lastFailedMs: number | null = null;
  let runningUntilMs: number | null = null;
  let runningOutcome: 'complete' | 'failed' = 'complete';
  const starts: number[] = [];
  const decisions: Array<{ nowMs: number; decision: BackupRunDecision }> = [];
  const maxSteps = Math.ceil((options.untilMs - options.fromMs) / options.stepMs) + 1;
  for (let step = 0; step < maxSteps; step++) {
    const nowMs = options.fromMs + step * options.stepMs;
    if (runningUntilMs !== null && nowMs >= runningUntilMs) {
      if (runningOutcome === 'failed') lastFailedMs = runningUntilMs;
      runningUntilMs = null;
    }
    const decision = decideBackupRun({
      nowMs,
      schedule: options.schedule === undefined ? DEFAULT_BACKUP_SCHEDULE : options.schedule,
      lastStartedMs,
      referenceMs: options.referenceMs,
      running: runningUntilMs !== null,
      lastFailedMs,
      retryAfterFailureMs: options.retryAfterFailureMs ?? HOUR_MS,
    });
    decisions.push({ nowMs, decision });
    if (decision.kind === 'run') {
      assert.equal(runningUntilMs, null, `run decided at ${isoOf(nowMs)} while a backup is running`);
      assert.ok(decision.dueMs <= nowMs, 'a run is never early');
      starts.push(nowMs);
      lastStartedMs = nowMs;
      runningUntilMs = nowMs + options.durationMs;
      runningOutcome = options.outcome?.(nowMs) ?? 'complete';
    }
  }
  return { starts, decisions };
}

void describe('decideBackupRun', () => {
  void it('runs once a day at 03:00 UTC over several days, starting the day after creation', () => {
    const { starts, decisions } = simulate({
      referenceMs: at('2024-01-01T10:00:00Z'),
      fromMs: at('2024-01-01T10:00:00Z'),
      untilMs: at('2024-01-06T12:00:00Z'),
      stepMs: 5 * MINUTE_MS,
      durationMs: 40 * MINUTE_MS,
    });
    assert.deepEqual(starts.map(isoOf), [
      '2024-01-02T03:00:00.000Z',
      '2024-01-03T03:00:00.000Z',
      '2024-01-04T03:00:00.000Z',
      '2024-01-05T03:00:00.000Z',
      '2024-01-06T03:00:00.000Z',
    ]);
    const firstWait = decisions[0]!.decision;
    assert.deepEqual(firstWait, { kind: 'wait', nextMs: at('2024-01-02T03:00:00Z'), reason: 'next scheduled run at 2024-01-02T03:00:00.000Z' });
    const onTime = decisions.find((d) => d.decision.kind === 'run')!.decision;
    assert.deepEqual(onTime, { kind: 'run', dueMs: at('2024-01-02T03:00:00Z'), reason: 'scheduled run due at 2024-01-02T03:00:00.000Z' });
    // While the backup runs (03:00-03:40) every answer is wait.
    const during = decisions.filter((d) => d.nowMs > at('2024-01-02T03:00:00Z') && d.nowMs < at('2024-01-02T03:40:00Z'));
    assert.ok(during.length > 0 && during.every((d) => d.decision.kind === 'wait'));
  });

  void it('with a coarse tick, runs at the first tick after 03:00 and still once a day', () => {
    const { starts } = simulate({
      referenceMs: at('2024-01-01T00:00:00Z'),
      fromMs: at('2024-01-01T00:07:00Z'),
      untilMs: at('2024-01-04T00:00:00Z'),
      stepMs: 17 * MINUTE_MS,
      durationMs: 10 * MINUTE_MS,
    });
    assert.equal(starts.length, 3);
    for (const start of starts) {
      const slot = new Date(start);
      assert.equal(slot.getUTCHours(), 3, isoOf(start));
      assert.ok(slot.getUTCMinutes() < 17, isoOf(start));
    }
  });

  void it('catches up a run missed while the agent was down once, not once per missed day', () => {
    // Last backup 2024-01-01 03:00; the agent is down until 2024-01-04 12:00 (three slots missed).
    const { starts, decisions } = simulate({
      referenceMs: at('2023-12-01T00:00:00Z'),
      lastStartedMs: at('2024-01-01T03:00:00Z'),
      fromMs: at('2024-01-04T12:00:00Z'),
      untilMs: at('2024-01-05T06:00:00Z'),
      stepMs: 10 * MINUTE_MS,
      durationMs: 30 * MINUTE_MS,
    });
    assert.deepEqual(starts.map(isoOf), ['2024-01-04T12:00:00.000Z', '2024-01-05T03:00:00.000Z']);
    assert.deepEqual(decisions[0]!.decision, {
      kind: 'run',
      dueMs: at('2024-01-02T03:00:00Z'),
      reason: 'catch-up: the run due at 2024-01-02T03:00:00.000Z and later ones were missed; running once',
    });
    // After the catch-up finishes, the next answer waits for the regular slot.
    const after = decisions.find((d) => d.nowMs === at('2024-01-04T12:30:00Z'))!.decision;
    assert.deepEqual(after, { kind: 'wait', nextMs: at('2024-01-05T03:00:00Z'), reason: 'next scheduled run at 2024-01-05T03:00:00.000Z' });
  });

  void it('a single missed slot is a plain scheduled run', () => {
    const decision = decide({ lastStartedMs: at('2024-01-01T03:00:00Z'), nowMs: at('2024-01-02T09:00:00Z') });
    assert.deepEqual(decision, { kind: 'run', dueMs: at('2024-01-02T03:00:00Z'), reason: 'scheduled run due at 2024-01-02T03:00:00.000Z' });
  });

  void it('never starts a second backup while one runs, even when overdue', () => {
    const overdue = decide({ lastStartedMs: at('2024-01-01T03:00:00Z'), nowMs: at('2024-01-03T09:00:00Z'), running: true });
    assert.deepEqual(overdue, { kind: 'wait', nextMs: at('2024-01-03T09:00:00Z'), reason: 'a backup is running; deciding again when it ends' });
    const notDue = decide({ lastStartedMs: at('2024-01-02T03:00:00Z'), nowMs: at('2024-01-02T03:10:00Z'), running: true });
    assert.equal(notDue.kind, 'wait');
    assert.equal((notDue as { nextMs: number }).nextMs, at('2024-01-03T03:00:00Z'));
  });

  void it('after a failure, waits retryAfterFailureMs, then retries, and returns to the schedule on success', () => {
    // The 03:00 run of Jan 2 and its first retry fail; the second retry succeeds.
    const failedStarts = new Set([at('2024-01-02T03:00:00Z'), at('2024-01-02T04:20:00Z')]);
    const { starts, decisions } = simulate({
      referenceMs: at('2024-01-01T10:00:00Z'),
      fromMs: at('2024-01-02T02:00:00Z'),
      untilMs: at('2024-01-03T04:00:00Z'),
      stepMs: 10 * MINUTE_MS,
      durationMs: 20 * MINUTE_MS,
      outcome: (startMs) => (failedStarts.has(startMs) ? 'failed' : 'complete'),
    });
    // Fails at 03:20 -> retry at 04:20, fails at 04:40 -> retry at 05:40 succeeds -> next day 03:00.
    assert.deepEqual(starts.map(isoOf), ['2024-01-02T03:00:00.000Z', '2024-01-02T04:20:00.000Z', '2024-01-02T05:40:00.000Z', '2024-01-03T03:00:00.000Z']);
    const waiting = decisions.find((d) => d.nowMs === at('2024-01-02T03:30:00Z'))!.decision;
    assert.deepEqual(waiting, {
      kind: 'wait',
      nextMs: at('2024-01-02T04:20:00Z'),
      reason: 'the last attempt failed at 2024-01-02T03:20:00.000Z; retrying at 2024-01-02T04:20:00.000Z',
    });
    const retry = decisions.find((d) => d.nowMs === at('2024-01-02T04:20:00Z'))!.decision;
    assert.deepEqual(retry, { kind: 'run', dueMs: at('2024-01-02T04:20:00Z'), reason: 'retry: the last attempt failed at 2024-01-02T03:20:00.000Z' });
  });

  void it('a persistently failing backup is retried at the retry pace, not every tick', () => {
    const { starts } = simulate({
      referenceMs: at('2024-01-01T10:00:00Z'),
      fromMs: at('2024-01-02T02:00:00Z'),
      untilMs: at('2024-01-02T12:00:00Z'),
      stepMs: MINUTE_MS,
      durationMs: 5 * MINUTE_MS,
      outcome: () => 'failed',
      retryAfterFailureMs: 2 * HOUR_MS,
    });
    // 03:00 (fails 03:05), 05:05 (fails 05:10), 07:10, 09:15, 11:20.
    assert.deepEqual(starts.map(isoOf), ['2024-01-02T03:00:00.000Z', '2024-01-02T05:05:00.000Z', '2024-01-02T07:10:00.000Z', '2024-01-02T09:15:00.000Z', '2024-01-02T11:20:00.000Z']);
  });

  void it('the retry wait applies even when the cron would fire sooner', () => {
    const decision = decide({
      schedule: '*/15 * * * *',
      lastStartedMs: at('2024-01-02T10:00:00Z'),
      lastFailedMs: at('2024-01-02T10:05:00Z'),
      nowMs: at('2024-01-02T10:30:00Z'),
    });
    assert.equal(decision.kind, 'wait');
    assert.equal((decision as { nextMs: number }).nextMs, at('2024-01-02T11:05:00Z'));
  });

  void it('a failure long ago (agent down since) is caught up once', () => {
    const failedMs = at('2024-01-01T03:10:00Z');
    const decision = decide({ lastStartedMs: at('2024-01-01T03:00:00Z'), lastFailedMs: failedMs, nowMs: at('2024-01-05T12:00:00Z') });
    assert.deepEqual(decision, { kind: 'run', dueMs: failedMs + HOUR_MS, reason: 'retry: the last attempt failed at 2024-01-01T03:10:00.000Z' });
    const afterwards = decide({ lastStartedMs: at('2024-01-05T12:00:00Z'), lastFailedMs: failedMs, nowMs: at('2024-01-05T12:30:00Z') });
    assert.deepEqual(afterwards, { kind: 'wait', nextMs: at('2024-01-06T03:00:00Z'), reason: 'next scheduled run at 2024-01-06T03:00:00.000Z' });
  });

  void it('ignores a failure that a later attempt superseded', () => {
    const decision = decide({ lastStartedMs: at('2024-01-02T03:00:00Z'), lastFailedMs: at('2024-01-01T03:20:00Z'), nowMs: at('2024-01-02T04:00:00Z') });
    assert.deepEqual(decision, { kind: 'wait', nextMs: at('2024-01-03T03:00:00Z'), reason: 'next scheduled run at 2024-01-03T03:00:00.000Z' });
  });

  void it('counts a manual backup as the newest attempt (the next slot after it still runs)', () => {
    const decision = decide({ lastStartedMs: at('2024-01-02T02:50:00Z'), nowMs: at('2024-01-02T03:00:00Z') });
    assert.equal(decision.kind, 'run');
    const manualAfterSlot = decide({ lastStartedMs: at('2024-01-02T03:05:00Z'), nowMs: at('2024-01-02T04:00:00Z') });
    assert.deepEqual(manualAfterSlot, { kind: 'wait', nextMs: at('2024-01-03T03:00:00Z'), reason: 'next scheduled run at 2024-01-03T03:00:00.000Z' });
  });

  void it('is disabled when there is no schedule, whatever else is true', () => {
    assert.deepEqual(decide({ schedule: null }), { kind: 'disabled' });
    assert.deepEqual(decide({ schedule: null, running: true, lastFailedMs: at('2024-01-02T03:20:00Z') }), { kind: 'disabled' });
    const { starts } = simulate({ schedule: null, referenceMs: 0, fromMs: at('2024-01-01T00:00:00Z'), untilMs: at('2024-01-04T00:00:00Z'), stepMs: HOUR_MS, durationMs: MINUTE_MS });
    assert.deepEqual(starts, []);
  });

  void it('rejects an invalid schedule or inputs', () => {
    assert.throws(() => decide({ schedule: '0 3 * *' }), isInvalidSchedule);
    assert.throws(() => decide({ schedule: 'every day' }), isInvalidSchedule);
    for (const overrides of [{ retryAfterFailureMs: -1 }, { retryAfterFailureMs: Number.NaN }, { nowMs: Number.NaN }, { lastStartedMs: Number.POSITIVE_INFINITY }]) {
      assert.throws(() => decide(overrides), (error: unknown) => isPgpilotError(error) && error.code === 'INPUT_INVALID', JSON.stringify(overrides));
    }
  });

  void it('before any backup, the first run is the first slot after the reference time', () => {
    assert.deepEqual(decide({ referenceMs: at('2024-01-02T02:00:00Z'), nowMs: at('2024-01-02T02:30:00Z') }), {
      kind: 'wait',
      nextMs: at('2024-01-02T03:00:00Z'),
      reason: 'next scheduled run at 2024-01-02T03:00:00.000Z',
    });
    assert.equal(decide({ referenceMs: at('2024-01-02T03:00:00Z'), nowMs: at('2024-01-02T03:00:00Z') }).kind, 'wait', 'a slot at the reference time itself is not due');
  });
});
