/**
 * The retention planner (src/backup/retention.ts): the union of keepMin / keepDaily (UTC days) /
 * keepWeekly (ISO weeks) / keepDays over complete backups, checked across month, year and ISO-week
 * boundaries; the newest complete backup always survives; running backups are never deleted and
 * failed ones only once a complete backup supersedes them; every backup lands in exactly one of
 * keep/delete; and WAL is cut at the lowest start segment among the kept backups on every
 * timeline, never touching .history files, and not at all when the cut is unknown.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { newBackupId } from '../../src/backup/backup-record.js';
import { isoWeekKey, planRetention, utcDayKey, type RetentionBackup, type RetentionInput, type RetentionPlan, type RetentionPolicy } from '../../src/backup/retention.js';
import { isPgpilotError } from '../../src/shared/errors.js';

const DAY_MS = 24 * 60 * 60 * 1000;
const at = (iso: string): number => Date.parse(iso);

function backup(iso: string, status: RetentionBackup['status'] = 'complete', extra: Partial<RetentionBackup> = {}): RetentionBackup {
  const startedAtMs = at(iso);
  return { id: newBackupId(startedAtMs), status, startedAtMs, timeline: 1, ...extra };
}

function plan(backups: RetentionBackup[], policy: RetentionPolicy, nowIso: string, walFiles: string[] = []): RetentionPlan {
  return planRetention({ backups, policy, nowMs: at(nowIso), walFiles });
}

/** Ids of the given ISO start times, newest first (the order of keep/delete). */
function ids(...isos: string[]): string[] {
  return isos.map((iso) => newBackupId(at(iso))).sort().reverse();
}

function assertPartition(input: RetentionBackup[], result: RetentionPlan): void {
  const all = [...result.keep, ...result.delete].sort();
  assert.deepEqual(all, input.map((b) => b.id).sort(), 'every backup is kept or deleted, exactly once');
  for (const id of all) assert.ok(result.reasons[id], `reason for ${id}`);
}

/** A backup at 03:00 UTC every day from `fromIso` for `days` days. */
function dailyAt3(fromIso: string, days: number): RetentionBackup[] {
  return Array.from({ length: days }, (_, i) => backup(new Date(at(fromIso) + i * DAY_MS).toISOString().replace(/T.*/, 'T03:00:00Z')));
}

void describe('utcDayKey / isoWeekKey', () => {
  void it('names UTC days', () => {
    assert.equal(utcDayKey(at('2024-01-31T23:59:59.999Z')), '2024-01-31');
    assert.equal(utcDayKey(at('2024-02-01T00:00:00Z')), '2024-02-01');
  });

  void it('names ISO weeks, including weeks that belong to the neighbouring year (checked against date +%G-W%V)', () => {
    const expected: Array<[string, string]> = [
      ['2024-12-29', '2024-W52'],
      ['2024-12-30', '2025-W01'],
      ['2026-01-01', '2026-W01'],
      ['2027-01-01', '2026-W53'],
      ['2020-12-28', '2020-W53'],
      ['2021-01-02', '2020-W53'],
      ['2021-01-03', '2020-W53'],
      ['2021-01-04', '2021-W01'],
      ['2021-01-10', '2021-W01'],
      ['2021-01-11', '2021-W02'],
      ['2019-12-30', '2020-W01'],
      ['2023-01-01', '2022-W52'],
      ['2024-01-01', '2024-W01'],
    ];
    for (const [day, week] of expected) {
      assert.equal(isoWeekKey(at(`${day}T00:00:00Z`)), week, day);
      assert.equal(isoWeekKey(at(`${day}T23:59:59.999Z`)), week, `${day} late`);
    }
  });
});

void describe('planRetention: backups', () => {
  void it('with no rules keeps only the newest complete backup', () => {
    const backups = dailyAt3('2024-01-01', 5);
    const result = plan(backups, {}, '2024-01-05T12:00:00Z');
    assert.deepEqual(result.keep, ids('2024-01-05T03:00:00Z'));
    assert.deepEqual(result.delete, ids('2024-01-01T03:00:00Z', '2024-01-02T03:00:00Z', '2024-01-03T03:00:00Z', '2024-01-04T03:00:00Z'));
    assert.equal(result.reasons[newBackupId(at('2024-01-05T03:00:00Z'))], 'newest complete backup; keepMin 1 (#1)');
    assert.equal(result.reasons[newBackupId(at('2024-01-01T03:00:00Z'))], 'complete, kept by no retention rule');
    assertPartition(backups, result);
  });

  void it('keepMin keeps the N newest complete backups; 0 still keeps the newest', () => {
    const backups = dailyAt3('2024-01-01', 5);
    assert.deepEqual(plan(backups, { keepMin: 3 }, '2024-01-05T12:00:00Z').keep, ids('2024-01-05T03:00:00Z', '2024-01-04T03:00:00Z', '2024-01-03T03:00:00Z'));
    assert.deepEqual(plan(backups, { keepMin: 0 }, '2024-01-05T12:00:00Z').keep, ids('2024-01-05T03:00:00Z'));
  });

  void it('keepDaily keeps the newest backup of each of the last N days that have one', () => {
    const backups = [
      backup('2024-01-01T03:00:00Z'),
      backup('2024-01-02T03:00:00Z'),
      backup('2024-01-02T15:30:00Z'), // manual, same day: the newest of Jan 2
      // no backups on Jan 3 and 4
      backup('2024-01-05T03:00:00Z'),
      backup('2024-01-05T03:30:00Z'),
    ];
    const result = plan(backups, { keepDaily: 3 }, '2024-01-05T12:00:00Z');
    assert.deepEqual(result.keep, ids('2024-01-05T03:30:00Z', '2024-01-02T15:30:00Z', '2024-01-01T03:00:00Z'));
    assert.equal(result.reasons[newBackupId(at('2024-01-02T15:30:00Z'))], 'keepDaily 3 (2024-01-02)');
    assert.match(result.reasons[newBackupId(at('2024-01-05T03:30:00Z'))]!, /newest complete backup; keepMin 1 \(#1\); keepDaily 3 \(2024-01-05\)/);
    assertPartition(backups, result);
  });

  void it('keepDaily splits days at UTC midnight across a month boundary', () => {
    const backups = [
      backup('2024-01-30T03:00:00Z'),
      backup('2024-01-31T03:00:00Z'),
      backup('2024-01-31T23:59:59Z'),
      backup('2024-02-01T00:00:00Z'),
      backup('2024-02-02T03:00:00Z'),
    ];
    const result = plan(backups, { keepDaily: 3 }, '2024-02-02T12:00:00Z');
    assert.deepEqual(result.keep, ids('2024-02-02T03:00:00Z', '2024-02-01T00:00:00Z', '2024-01-31T23:59:59Z'));
    assert.deepEqual(result.delete, ids('2024-01-31T03:00:00Z', '2024-01-30T03:00:00Z'));
  });

  void it('keepWeekly keeps the newest backup of each of the last N ISO weeks, across a year end', () => {
    const backups = [
      backup('2020-12-21T03:00:00Z'), // 2020-W52
      backup('2020-12-28T03:00:00Z'), // 2020-W53
      backup('2021-01-02T03:00:00Z'), // 2020-W53
      backup('2021-01-03T03:00:00Z'), // 2020-W53 (Sunday): newest of that week
      backup('2021-01-04T03:00:00Z'), // 2021-W01 (Monday)
      backup('2021-01-10T03:00:00Z'), // 2021-W01 (Sunday): newest of that week
      backup('2021-01-11T03:00:00Z'), // 2021-W02
    ];
    const two = plan(backups, { keepWeekly: 2 }, '2021-01-11T12:00:00Z');
    assert.deepEqual(two.keep, ids('2021-01-11T03:00:00Z', '2021-01-10T03:00:00Z'));
    const three = plan(backups, { keepWeekly: 3 }, '2021-01-11T12:00:00Z');
    assert.deepEqual(three.keep, ids('2021-01-11T03:00:00Z', '2021-01-10T03:00:00Z', '2021-01-03T03:00:00Z'));
    assert.equal(three.reasons[newBackupId(at('2021-01-03T03:00:00Z'))], 'keepWeekly 3 (2020-W53)');
    const four = plan(backups, { keepWeekly: 4 }, '2021-01-11T12:00:00Z');
    assert.ok(four.keep.includes(newBackupId(at('2020-12-21T03:00:00Z'))));
    assert.equal(four.keep.length, 4);
    assertPartition(backups, four);
  });

  void it('keepDays keeps every complete backup started within D days, boundary included', () => {
    const nowIso = '2024-01-10T03:00:00Z';
    const backups = [
      backup('2024-01-03T02:59:59.999Z'), // 7 days + 1 ms before now
      backup('2024-01-03T03:00:00Z'), // exactly 7 days
      backup('2024-01-05T03:00:00Z'),
      backup('2024-01-05T04:00:00Z'),
      backup('2024-01-10T03:00:00Z'),
    ];
    const result = plan(backups, { keepDays: 7 }, nowIso);
    assert.deepEqual(result.keep, ids('2024-01-10T03:00:00Z', '2024-01-05T04:00:00Z', '2024-01-05T03:00:00Z', '2024-01-03T03:00:00Z'));
    assert.deepEqual(result.delete, [newBackupId(at('2024-01-03T02:59:59.999Z'))]);
  });

  void it('unions the rules (daily + weekly + days) over five weeks across a month boundary', () => {
    const backups = dailyAt3('2024-01-20', 35); // Sat 2024-01-20 .. Fri 2024-02-23
    const result = plan(backups, { keepDaily: 3, keepWeekly: 3, keepDays: 5 }, '2024-02-23T12:00:00Z');
    // keepDays 5: Feb 19..23 (Feb 18 03:00 is 5 days 9 h old); keepDaily 3: Feb 21..23;
    // keepWeekly 3: newest of W08 (Feb 23), W07 (Sun Feb 18), W06 (Sun Feb 11).
    assert.deepEqual(
      result.keep,
      ids('2024-02-23T03:00:00Z', '2024-02-22T03:00:00Z', '2024-02-21T03:00:00Z', '2024-02-20T03:00:00Z', '2024-02-19T03:00:00Z', '2024-02-18T03:00:00Z', '2024-02-11T03:00:00Z'),
    );
    assert.equal(result.delete.length, 35 - 7);
    assert.equal(result.reasons[newBackupId(at('2024-02-22T03:00:00Z'))], 'keepDaily 3 (2024-02-22); keepDays 5');
    assert.equal(result.reasons[newBackupId(at('2024-02-18T03:00:00Z'))], 'keepWeekly 3 (2024-W07)');
    assertPartition(backups, result);
  });

  void it('deletes failed backups older than the newest complete one, keeps newer failed ones', () => {
    const backups = [
      backup('2024-01-01T03:00:00Z', 'failed'),
      backup('2024-01-02T03:00:00Z'),
      backup('2024-01-03T03:00:00Z', 'failed'),
      backup('2024-01-04T03:00:00Z'),
      backup('2024-01-05T03:00:00Z', 'failed'),
    ];
    const result = plan(backups, { keepDaily: 7 }, '2024-01-05T12:00:00Z');
    assert.deepEqual(result.keep, ids('2024-01-05T03:00:00Z', '2024-01-04T03:00:00Z', '2024-01-02T03:00:00Z'));
    assert.deepEqual(result.delete, ids('2024-01-03T03:00:00Z', '2024-01-01T03:00:00Z'));
    assert.equal(result.reasons[newBackupId(at('2024-01-05T03:00:00Z'))], 'failed, newer than any complete backup (kept for diagnosis)');
    assert.equal(result.reasons[newBackupId(at('2024-01-01T03:00:00Z'))], `failed, started before the newest complete backup ${newBackupId(at('2024-01-04T03:00:00Z'))}`);
    // Failed backups never count for a rule: keepDaily 7 picks only the complete Jan 4 and Jan 2.
    assertPartition(backups, result);
  });

  void it('never deletes a running backup, however old', () => {
    const backups = [backup('2023-06-01T03:00:00Z', 'running'), ...dailyAt3('2024-01-01', 3), backup('2024-01-04T03:00:00Z', 'running')];
    const result = plan(backups, {}, '2024-01-04T03:10:00Z');
    assert.deepEqual(result.keep, ids('2024-01-04T03:00:00Z', '2024-01-03T03:00:00Z', '2023-06-01T03:00:00Z'));
    assert.equal(result.reasons[newBackupId(at('2023-06-01T03:00:00Z'))], 'running (never deleted)');
    assertPartition(backups, result);
  });

  void it('with no complete backup keeps everything', () => {
    const backups = [backup('2024-01-01T03:00:00Z', 'failed'), backup('2024-01-02T03:00:00Z', 'failed'), backup('2024-01-03T03:00:00Z', 'running')];
    const result = plan(backups, { keepDays: 1 }, '2024-02-01T00:00:00Z', ['000000010000000000000001']);
    assert.deepEqual(result.delete, []);
    assert.equal(result.keep.length, 3);
    assert.deepEqual(result.deleteWal, []);
    assert.equal(result.walReason, 'no complete backup is kept; keeping all WAL');
    assert.deepEqual(plan([], { keepDaily: 7 }, '2024-02-01T00:00:00Z', ['000000010000000000000001']).deleteWal, []);
  });

  void it('holds its invariants over many generated catalogs', () => {
    // Deterministic pseudo-random catalogs (LCG), so a failure is reproducible.
    let seed = 12345;
    const random = (): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const statuses: RetentionBackup['status'][] = ['complete', 'complete', 'complete', 'failed', 'running'];
    for (let round = 0; round < 200; round++) {
      const nowMs = at('2024-03-01T00:00:00Z');
      const byId = new Map<string, RetentionBackup>();
      const count = Math.floor(random() * 30);
      for (let i = 0; i < count; i++) {
        const startedAtMs = nowMs - Math.floor(random() * 90 * DAY_MS);
        const status = statuses[Math.floor(random() * statuses.length)]!;
        byId.set(newBackupId(startedAtMs), { id: newBackupId(startedAtMs), status, startedAtMs, timeline: 1 });
      }
      const backups = [...byId.values()];
      const policy: RetentionPolicy = { keepDaily: Math.floor(random() * 8), keepWeekly: Math.floor(random() * 5), keepDays: Math.floor(random() * 10), keepMin: Math.floor(random() * 3) };
      const result = planRetention({ backups, policy, nowMs, walFiles: [] });
      assertPartition(backups, result);
      const complete = backups.filter((b) => b.status === 'complete').sort((a, b) => b.startedAtMs - a.startedAtMs);
      if (complete[0]) assert.ok(result.keep.includes(complete[0].id), 'newest complete kept');
      for (const b of backups) {
        if (b.status === 'running') assert.ok(result.keep.includes(b.id), 'running kept');
        if (b.status === 'failed' && complete[0] && b.startedAtMs < complete[0].startedAtMs) assert.ok(result.delete.includes(b.id), 'superseded failure deleted');
      }
      assert.ok(result.keep.filter((id) => byId.get(id)!.status === 'complete').length >= Math.min(complete.length, Math.max(1, policy.keepMin!)), 'keepMin honoured');
    }
  });

  void it('rejects invalid policies and duplicate ids', () => {
    const backups = dailyAt3('2024-01-01', 2);
    for (const policy of [{ keepDaily: -1 }, { keepWeekly: 1.5 }, { keepDays: Number.NaN }, { keepMin: -2 }]) {
      assert.throws(() => plan(backups, policy, '2024-01-03T00:00:00Z'), (error: unknown) => isPgpilotError(error) && error.code === 'INPUT_INVALID', JSON.stringify(policy));
    }
    assert.throws(
      () => plan([backups[0]!, { ...backups[1]!, id: backups[0]!.id }], {}, '2024-01-03T00:00:00Z'),
      (error: unknown) => isPgpilotError(error) && /listed twice/.test(error.message),
    );
  });
});

void describe('planRetention: WAL', () => {
  const walFiles = [
    '000000010000000000000004',
    '000000010000000000000005.00000028.backup',
    '00000001000000000000000F',
    '000000010000000000000010',
    '000000010000000000000010.00000060.backup',
    '000000010000000000000011',
    '000000010000000000000012.partial',
    '00000001000000000000000E.partial',
    '00000002.history',
    '00000002000000000000000F', // timeline 2, below the cut: string-greater than ...0010 on timeline 1, numerically lower
    '000000020000000000000010',
    '000000020000000000000013',
    '00000003.history',
    '00000001000000000000000a', // not a name postgres writes: left alone
    'archive.lock',
  ];

  function walInput(backups: RetentionBackup[], policy: RetentionPolicy = { keepMin: 2 }): RetentionInput {
    return { backups, policy, nowMs: at('2024-01-10T12:00:00Z'), walFiles };
  }

  void it('deletes segments, .partial and .backup files below the oldest kept start, on every timeline; never .history', () => {
    const backups = [
      backup('2024-01-07T03:00:00Z', 'complete', { startSegment: '000000010000000000000005' }), // deleted by keepMin 2
      backup('2024-01-08T03:00:00Z', 'complete', { startSegment: '000000010000000000000010' }),
      backup('2024-01-09T03:00:00Z', 'complete', { startSegment: '000000020000000000000013', timeline: 2 }),
    ];
    const result = planRetention(walInput(backups));
    assert.deepEqual(result.delete, [backups[0]!.id]);
    assert.deepEqual(result.deleteWal, [
      '000000010000000000000004',
      '000000010000000000000005.00000028.backup',
      '00000001000000000000000E.partial',
      '00000001000000000000000F',
      '00000002000000000000000F',
    ]);
    assert.equal(result.walCutSegment, '000000010000000000000010');
    for (const kept of ['00000002.history', '00000003.history', '000000010000000000000010.00000060.backup', '000000020000000000000010', '00000001000000000000000a', 'archive.lock']) {
      assert.ok(!result.deleteWal.includes(kept), kept);
    }
  });

  void it('cuts at the lowest kept start segment, even when a newer backup (on a branched timeline) starts lower', () => {
    // Backup on timeline 2 at segment 0x10; later a point-in-time restore branched timeline 3 at
    // segment 0x0E and its first backup starts at 0x0F: that one needs 0x0F onwards.
    const backups = [
      backup('2024-01-08T03:00:00Z', 'complete', { startSegment: '000000020000000000000010', timeline: 2 }),
      backup('2024-01-09T03:00:00Z', 'complete', { startSegment: '00000003000000000000000F', timeline: 3 }),
    ];
    const result = planRetention(walInput(backups));
    assert.equal(result.walCutSegment, '00000003000000000000000F');
    assert.deepEqual(result.deleteWal, ['000000010000000000000004', '000000010000000000000005.00000028.backup', '00000001000000000000000E.partial']);
  });

  void it('a running backup that started lower holds the cut down', () => {
    const backups = [
      backup('2024-01-08T03:00:00Z', 'complete', { startSegment: '000000010000000000000010' }),
      backup('2024-01-09T03:00:00Z', 'running', { startSegment: '00000001000000000000000F' }),
    ];
    assert.equal(planRetention(walInput(backups)).walCutSegment, '00000001000000000000000F');
  });

  void it('compares segment numbers across a log-id boundary', () => {
    const backups = [backup('2024-01-09T03:00:00Z', 'complete', { startSegment: '000000010000000100000002' })];
    const result = planRetention({ ...walInput(backups), walFiles: ['0000000100000000000000FF', '000000010000000100000001', '000000010000000100000002', '000000020000000100000000'] });
    assert.deepEqual(result.deleteWal, ['0000000100000000000000FF', '000000010000000100000001', '000000020000000100000000']);
  });

  void it('deletes no WAL when the cut is unknown', () => {
    const noStart = [backup('2024-01-08T03:00:00Z'), backup('2024-01-09T03:00:00Z', 'complete', { startSegment: '000000010000000000000010' })];
    const a = planRetention(walInput(noStart));
    assert.deepEqual(a.deleteWal, []);
    assert.equal(a.walCutSegment, null);
    assert.match(a.walReason, /complete backup 20240108T030000Z has no start segment/);

    const runningNoStart = [backup('2024-01-08T03:00:00Z', 'complete', { startSegment: '000000010000000000000010' }), backup('2024-01-09T03:00:00Z', 'running')];
    assert.deepEqual(planRetention(walInput(runningNoStart)).deleteWal, []);

    const badStart = [backup('2024-01-09T03:00:00Z', 'complete', { startSegment: '00000002.history' })];
    assert.match(planRetention(walInput(badStart)).walReason, /invalid start segment/);
    assert.deepEqual(planRetention(walInput(badStart)).deleteWal, []);
  });

  void it("ignores a deleted backup's start segment and failed backups", () => {
    const backups = [
      backup('2024-01-05T03:00:00Z', 'complete', { startSegment: '000000010000000000000004' }),
      backup('2024-01-09T03:00:00Z', 'complete', { startSegment: '000000010000000000000011' }),
      backup('2024-01-10T03:00:00Z', 'failed', { startSegment: '000000010000000000000004' }),
    ];
    const result = planRetention(walInput(backups, {}));
    assert.equal(result.walCutSegment, '000000010000000000000011');
    assert.ok(result.deleteWal.includes('000000010000000000000010'));
    assert.ok(!result.deleteWal.includes('000000010000000000000011'));
    assert.ok(!result.deleteWal.includes('000000010000000000000012.partial'));
  });
});
