/**
 * LSN arithmetic (src/shared/lsn.ts): parse/format round trips exactly over the whole 64-bit
 * range (beyond 2^53, where a JS number would silently round), comparison is numeric (not string
 * order), differences are never negative, and anything that is not an LSN is rejected.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compareLsn, formatLsn, isLsn, lsnDiffBytes, maxLsn, parseLsn } from '../../src/shared/lsn.js';

void describe('parseLsn / formatLsn', () => {
  void it('parses the two hex halves into one position', () => {
    assert.equal(parseLsn('0/0'), 0n);
    assert.equal(parseLsn('0/1'), 1n);
    assert.equal(parseLsn('1/0'), 2n ** 32n);
    assert.equal(parseLsn('16/B374D848'), 0x16b374d848n);
    assert.equal(parseLsn('16/b374d848'), 0x16b374d848n, 'lower case accepted');
    assert.equal(parseLsn('  0/10 '), 16n, 'surrounding whitespace ignored');
  });

  void it('formats upper-case without padding, as postgres prints', () => {
    assert.equal(formatLsn(0n), '0/0');
    assert.equal(formatLsn(0x16b374d848n), '16/B374D848');
    assert.equal(formatLsn(2n ** 32n), '1/0');
    assert.equal(formatLsn(parseLsn('0/00000010')), '0/10');
  });

  void it('round-trips exactly, including positions beyond 2^53 and the maximum', () => {
    const positions = [0n, 1n, 2n ** 32n - 1n, 2n ** 32n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 53n + 1n, 2n ** 63n + 12_345n, 2n ** 64n - 1n];
    for (const position of positions) assert.equal(parseLsn(formatLsn(position)), position, `position ${position}`);
    for (const text of ['0/0', 'FFFFFFFF/FFFFFFFF', '200000/1', 'ABCDEF01/23456789']) assert.equal(formatLsn(parseLsn(text)), text);
    assert.equal(parseLsn('FFFFFFFF/FFFFFFFF'), 2n ** 64n - 1n);
    // Two positions that a double cannot tell apart stay distinct.
    assert.notEqual(parseLsn('200000/1'), parseLsn('200000/0'));
    assert.equal(Number(parseLsn('200000/1')), Number(parseLsn('200000/0')), 'sanity: as doubles they collide');
  });

  void it('rejects anything that is not an LSN', () => {
    for (const bad of ['', '0', '0/', '/0', '0//1', '1-2', 'g/1', '0x1/2', '123456789/0', '0/123456789', '-1/0', '1/0/0', '1 /0']) {
      assert.throws(() => parseLsn(bad), /not an LSN/, JSON.stringify(bad));
      assert.equal(isLsn(bad), false, JSON.stringify(bad));
    }
    assert.equal(isLsn('16/B374D848'), true);
    assert.equal(isLsn(' 0/1 '), true);
  });

  void it('refuses to format positions outside 0..2^64-1', () => {
    assert.throws(() => formatLsn(-1n), /out of range/);
    assert.throws(() => formatLsn(2n ** 64n), /out of range/);
  });
});

void describe('lsnDiffBytes', () => {
  void it('counts bytes from behind to ahead', () => {
    assert.equal(lsnDiffBytes('0/10', '0/0'), 16);
    assert.equal(lsnDiffBytes('1/0', '0/FFFFFFFF'), 1);
    assert.equal(lsnDiffBytes('2/0', '0/0'), 2 * 2 ** 32);
  });

  void it('is never negative (a replica ahead of a stale leader LSN is 0 behind)', () => {
    assert.equal(lsnDiffBytes('0/0', '1/0'), 0);
    assert.equal(lsnDiffBytes('0/5', '0/5'), 0);
    assert.equal(lsnDiffBytes('0/1', 'FFFFFFFF/FFFFFFFF'), 0);
  });

  void it('throws on an invalid operand', () => {
    assert.throws(() => lsnDiffBytes('x', '0/0'), /not an LSN/);
    assert.throws(() => lsnDiffBytes('0/0', 'x'), /not an LSN/);
  });
});

void describe('compareLsn and maxLsn', () => {
  void it('compares numerically, not as strings', () => {
    assert.equal(compareLsn('0/10', '0/9'), 1);
    assert.equal(compareLsn('0/9', '0/10'), -1);
    assert.equal(compareLsn('1/0', '0/FFFFFFFF'), 1);
    assert.equal(compareLsn('A/0', '9/FFFFFFFF'), 1);
    assert.equal(compareLsn('0/a', '0/A'), 0);
    assert.equal(compareLsn('0/0000000A', '0/A'), 0);
  });

  void it('compares exactly beyond 2^53', () => {
    assert.equal(compareLsn('200000/1', '200000/0'), 1);
    assert.equal(compareLsn('FFFFFFFF/FFFFFFFE', 'FFFFFFFF/FFFFFFFF'), -1);
  });

  void it('maxLsn picks the latest, ignoring null and undefined', () => {
    assert.equal(maxLsn(), null);
    assert.equal(maxLsn(null, undefined), null);
    assert.equal(maxLsn('0/9', null, '0/10', undefined, '0/2'), '0/10');
    assert.equal(maxLsn(undefined, '1/0'), '1/0');
    assert.equal(maxLsn('0/A', '0/a'), '0/A', 'on a tie the first given is kept');
  });

  void it('maxLsn throws on an invalid value', () => {
    assert.throws(() => maxLsn('0/1', 'nope'), /not an LSN/);
  });
});
