/**
 * `parseMemberRecord` (src/state/member-record.ts): what another node published under
 * /members/<node> is untrusted input. Every LSN field (lsn, receiveLsn, replication[].replayLsn)
 * must be an LSN as postgres prints it, or the whole record is ignored (null): decide() and the
 * election compare LSNs exactly and must never see a malformed one.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { memberRecordsIn, parseMemberRecord, type MemberRecord } from '../../src/state/member-record.js';
import { clusterKeys } from '../../src/dcs/keys.js';
import { memberRecord, primaryRecord } from '../builders/observation-builder.js';

const REPLICATION_ENTRY = { applicationName: 'node2', state: 'streaming', replayLsn: '0/3000000', lagBytes: 0, syncState: 'async' };

function text(record: MemberRecord | Record<string, unknown>): string {
  return JSON.stringify(record);
}

void describe('parseMemberRecord', () => {
  void it('reads a well-formed record back unchanged', () => {
    const record = primaryRecord({ name: 'node1', lsn: '16/B374D848', receiveLsn: null, replication: [REPLICATION_ENTRY] });
    assert.deepEqual(parseMemberRecord(text(record)), record);
  });

  void it('accepts null LSNs (a member whose postgres does not answer)', () => {
    const record = memberRecord({ name: 'node2', role: 'stopped', state: 'stopped', lsn: null, receiveLsn: null, replication: [{ ...REPLICATION_ENTRY, replayLsn: null }] });
    assert.deepEqual(parseMemberRecord(text(record)), record);
  });

  void it('defaults a missing replication list to []', () => {
    const { replication: _omitted, ...rest } = memberRecord({ name: 'node2' });
    assert.deepEqual(parseMemberRecord(text(rest))?.replication, []);
  });

  for (const bad of ['garbage', '', '0/', '/0', '0/3000000/1', '123456789/0', '0x0/0', 'G/0', '0:3000000']) {
    void it(`ignores a record whose lsn is ${JSON.stringify(bad)}`, () => {
      assert.equal(parseMemberRecord(text(memberRecord({ name: 'node2', lsn: bad }))), null);
    });
  }

  void it('ignores a record whose receiveLsn is malformed', () => {
    assert.equal(parseMemberRecord(text(memberRecord({ name: 'node2', receiveLsn: 'not-an-lsn' }))), null);
  });

  void it('ignores a record with a malformed replayLsn in its replication list', () => {
    const record = primaryRecord({ name: 'node1', replication: [REPLICATION_ENTRY, { ...REPLICATION_ENTRY, applicationName: 'node3', replayLsn: 'bogus' }] });
    assert.equal(parseMemberRecord(text(record)), null);
  });

  void it('ignores an LSN of the wrong type', () => {
    assert.equal(parseMemberRecord(text({ ...memberRecord({ name: 'node2' }), lsn: 50_331_648 })), null);
  });

  void it('ignores values that are not a member record at all', () => {
    for (const value of ['', 'not json', '{', 'null', '[]', '42', '{}', text({ ...memberRecord({ name: 'node2' }), role: 'leader' })]) {
      assert.equal(parseMemberRecord(value), null, value);
    }
  });
});

void describe('memberRecordsIn', () => {
  void it('returns the readable records directly under the members prefix, nothing else', () => {
    const keys = clusterKeys('demo');
    const node1 = primaryRecord({ name: 'node1' });
    const node2 = memberRecord({ name: 'node2' });
    const all = new Map<string, string>([
      [keys.leader, 'node1'],
      [`${keys.membersPrefix}node1`, JSON.stringify(node1)],
      [`${keys.membersPrefix}node2`, JSON.stringify(node2)],
      [`${keys.membersPrefix}node3`, '{not json'],
      [`${keys.membersPrefix}nested/node4`, JSON.stringify(memberRecord({ name: 'node4' }))],
    ]);
    assert.deepEqual(
      memberRecordsIn(all, keys).map((m) => m.name),
      ['node1', 'node2'],
    );
  });
});
