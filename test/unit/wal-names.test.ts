/**
 * WAL file names (src/backup/wal-names.ts): the four forms postgres writes into the archive parse
 * to the right timeline and segment number (16 MiB segments = 256 per log id, other sizes scale),
 * LSN <-> segment name conversion agrees with postgres' naming (expected names below are what
 * PostgreSQL 15 prints for pg_walfile_name / backup_label), and nothing but those exact names is a
 * valid wal-fetch request: no paths, no '..', no lower-case, no near misses.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  DEFAULT_WAL_SEGMENT_SIZE_BYTES,
  isValidWalRequestName,
  parseWalFileName,
  segmentEndLsn,
  segmentNameFor,
  segmentStartLsn,
} from '../../src/backup/wal-names.js';
import { parseLsn } from '../../src/shared/lsn.js';

const MiB = 1024 * 1024;

void describe('parseWalFileName', () => {
  void it('parses a segment name into timeline and segment number', () => {
    assert.deepEqual(parseWalFileName('000000010000000000000003'), { kind: 'segment', timeline: 1, segmentNumber: 3, name: '000000010000000000000003' });
    // Log id 1, segment 0xFF: 1 * 256 + 255.
    assert.deepEqual(parseWalFileName('0000000A00000001000000FF'), { kind: 'segment', timeline: 10, segmentNumber: 511, name: '0000000A00000001000000FF' });
    assert.equal(parseWalFileName('FFFFFFFFFFFFFFFF000000FF')?.kind, 'segment');
  });

  void it('parses .partial, .history and .backup names', () => {
    assert.deepEqual(parseWalFileName('000000010000000000000003.partial'), {
      kind: 'partial',
      timeline: 1,
      segmentNumber: 3,
      name: '000000010000000000000003.partial',
    });
    assert.deepEqual(parseWalFileName('00000002.history'), { kind: 'history', timeline: 2, name: '00000002.history' });
    assert.deepEqual(parseWalFileName('000000010000000000000003.00000028.backup'), {
      kind: 'backup-label',
      timeline: 1,
      segmentNumber: 3,
      offsetBytes: 0x28,
      startLsn: '0/3000028',
      name: '000000010000000000000003.00000028.backup',
    });
    assert.equal(parseWalFileName('0000000300000002000000A1.00FFFFF8.backup')?.kind, 'backup-label');
  });

  void it('rejects everything else', () => {
    const bad = [
      '',
      '00000001000000000000003', // 23 digits
      '0000000100000000000000030', // 25 digits
      '000000010000000000000003 ',
      '00000001000000000000000a', // postgres writes upper case only
      '0000000g0000000000000003',
      '000000000000000000000003', // timeline 0 does not exist
      '000000010000000000000100', // 0x100 is not a segment within a log id at 16 MiB
      '000000010000000000000003.partia',
      '000000010000000000000003.partial.partial',
      '00000000.history',
      '0000002.history',
      '0000000200000000.history',
      '00000002.HISTORY',
      '000000010000000000000003.0000028.backup',
      '000000010000000000000003.01000000.backup', // offset 16 MiB is past the segment
      '000000010000000000000003.backup',
      '000000010000000000000003.gz',
      'RECOVERYXLOG',
      'RECOVERYHISTORY',
      'archive_status',
      '../000000010000000000000003',
      'pg_wal/000000010000000000000003',
    ];
    for (const name of bad) assert.equal(parseWalFileName(name), null, JSON.stringify(name));
  });

  void it('derives the segment number from the segment size', () => {
    // 1 MiB segments: 4096 per log id, so 0x100 is a valid in-log-id segment.
    assert.equal((parseWalFileName('000000010000000000000100', 1 * MiB) as { segmentNumber: number }).segmentNumber, 256);
    assert.equal((parseWalFileName('000000010000000100000001', 1 * MiB) as { segmentNumber: number }).segmentNumber, 4097);
    // 1 GiB segments: 4 per log id.
    assert.equal((parseWalFileName('000000010000000100000003', 1024 * MiB) as { segmentNumber: number }).segmentNumber, 7);
    assert.equal(parseWalFileName('000000010000000000000004', 1024 * MiB), null);
    assert.equal(parseWalFileName('000000010000000000000003.00FFFFFF.backup', 1024 * MiB)?.kind, 'backup-label');
  });

  void it('refuses segment sizes postgres cannot have', () => {
    for (const size of [0, 512 * 1024, 3 * MiB, 2048 * MiB, 16 * MiB + 1, Number.NaN]) {
      assert.throws(() => parseWalFileName('000000010000000000000003', size), /not a WAL segment size/, String(size));
    }
  });
});

void describe('segmentNameFor / segmentStartLsn / segmentEndLsn', () => {
  void it('names the segment holding an LSN as postgres does', () => {
    assert.equal(DEFAULT_WAL_SEGMENT_SIZE_BYTES, 16 * MiB);
    // backup_label of the recorded PG 15 backup: "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)".
    assert.equal(segmentNameFor(1, '0/2000028'), '000000010000000000000002');
    assert.equal(segmentNameFor(1, '0/3000000'), '000000010000000000000003');
    assert.equal(segmentNameFor(1, '0/2FFFFFF'), '000000010000000000000002');
    assert.equal(segmentNameFor(1, '0/FFFFFFFF'), '0000000100000000000000FF');
    assert.equal(segmentNameFor(1, '1/0'), '000000010000000100000000');
    assert.equal(segmentNameFor(26, '16/B374D848'), '0000001A00000016000000B3');
    assert.equal(segmentNameFor(0xffffffff, 'FFFFFFFF/FFFFFFFF'), 'FFFFFFFFFFFFFFFF000000FF');
    assert.equal(segmentNameFor(1, '0/3000000', 1 * MiB), '000000010000000000000030');
    assert.equal(segmentNameFor(1, '1/40000000', 1024 * MiB), '000000010000000100000001');
  });

  void it('gives the start and exclusive end LSN of a segment', () => {
    assert.equal(segmentStartLsn('000000010000000000000003'), '0/3000000');
    assert.equal(segmentEndLsn('000000010000000000000003'), '0/4000000');
    assert.equal(segmentEndLsn('0000000100000000000000FF'), '1/0');
    assert.equal(segmentStartLsn('0000001A00000016000000B3'), '16/B3000000');
    assert.equal(segmentStartLsn('000000010000000000000003.partial'), '0/3000000');
    assert.equal(segmentEndLsn('000000010000000000000003.00000028.backup'), '0/4000000');
    assert.equal(segmentStartLsn('000000010000000000000030', 1 * MiB), '0/3000000');
    assert.equal(segmentEndLsn('000000010000000000000030', 1 * MiB), '0/3100000');
  });

  void it('round-trips: every LSN lies in [start, end) of its segment, beyond 2^53 too', () => {
    const lsns = ['0/0', '0/1', '0/FFFFFF', '0/1000000', '0/2000028', '5/FF000000', '16/B374D848', '200000/1', 'FFFFFFFE/FFFFFFFF'];
    for (const size of [1 * MiB, 16 * MiB, 64 * MiB, 1024 * MiB]) {
      for (const lsn of lsns) {
        const name = segmentNameFor(7, lsn, size);
        assert.equal(parseWalFileName(name, size)?.kind, 'segment', `${lsn} @ ${size}`);
        const start = parseLsn(segmentStartLsn(name, size));
        const end = parseLsn(segmentEndLsn(name, size));
        assert.ok(start <= parseLsn(lsn) && parseLsn(lsn) < end, `${lsn} in ${name} @ ${size}`);
        assert.equal(end - start, BigInt(size));
      }
    }
  });

  void it('refuses the end of the very last segment, .history names, and bad timelines', () => {
    assert.throws(() => segmentEndLsn('FFFFFFFFFFFFFFFF000000FF'), /out of range/);
    assert.equal(segmentStartLsn('FFFFFFFFFFFFFFFF000000FF'), 'FFFFFFFF/FF000000');
    assert.throws(() => segmentStartLsn('00000002.history'), /not a WAL segment name/);
    assert.throws(() => segmentEndLsn('garbage'), /not a WAL segment name/);
    for (const timeline of [0, -1, 1.5, 2 ** 32]) assert.throws(() => segmentNameFor(timeline, '0/0'), /not a timeline/, String(timeline));
    assert.throws(() => segmentNameFor(1, 'nope'), /not an LSN/);
  });
});

void describe('isValidWalRequestName', () => {
  void it('accepts the four archive file-name forms', () => {
    for (const name of ['000000010000000000000003', '000000010000000000000003.partial', '00000002.history', '000000010000000000000003.00000028.backup']) {
      assert.equal(isValidWalRequestName(name), true, name);
    }
  });

  void it('rejects paths, traversal and anything that is not exactly such a name', () => {
    const bad = [
      '',
      '.',
      '..',
      '../000000010000000000000003',
      '..000000010000000000000003',
      '000000010000000000000003/..',
      '/000000010000000000000003',
      'x/000000010000000000000003',
      '..\\000000010000000000000003',
      '000000010000000000000003\0',
      '000000010000000000000003\n',
      ' 000000010000000000000003',
      '00000001000000000000000a',
      '000000010000000000000003..partial',
      '00000002..history',
      'RECOVERYXLOG',
      '%f',
    ];
    for (const name of bad) assert.equal(isValidWalRequestName(name), false, JSON.stringify(name));
  });
});
