import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { parseControldata } from '../../src/postgres/controldata.js';
import { PgpilotError } from '../../src/shared/errors.js';

// dist/test/unit -> repository root -> test/fixtures
const fixture = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../test/fixtures/controldata-15.txt');
const recorded = readFileSync(fixture, 'utf8');

void test('parseControldata reads a recorded PostgreSQL 15 output', () => {
  const data = parseControldata(recorded);
  assert.equal(data.systemIdentifier, '7712280022764410088');
  assert.equal(data.clusterState, 'shut down');
  assert.equal(data.latestCheckpointLsn, '0/1741890');
  assert.equal(data.latestCheckpointRedoLsn, '0/1741890');
  assert.equal(data.timeline, 1);
  assert.equal(data.minRecoveryEndLsn, '0/0');
  assert.equal(data.minRecoveryEndTimeline, 0);
  assert.equal(data.dataChecksumVersion, 1);
  assert.equal(data.pgControlVersion, 1300);
  assert.equal(data.fields["Latest checkpoint's NextXID"], '0:725');
  assert.equal(data.fields["Latest checkpoint's oldestCommitTsXid"], '0');
});

void test('parseControldata handles a replica in recovery on a later timeline', () => {
  const text = recorded
    .replace('shut down', 'in archive recovery')
    .replace("Latest checkpoint's TimeLineID:       1", "Latest checkpoint's TimeLineID:       12")
    .replace('Minimum recovery ending location:     0/0', 'Minimum recovery ending location:     1A/b000028')
    .replace("Min recovery ending loc's timeline:   0", "Min recovery ending loc's timeline:   12");
  const data = parseControldata(text);
  assert.equal(data.clusterState, 'in archive recovery');
  assert.equal(data.timeline, 12);
  assert.equal(data.minRecoveryEndLsn, '1A/B000028');
  assert.equal(data.minRecoveryEndTimeline, 12);
});

void test('parseControldata fails loudly on missing or malformed fields', () => {
  assert.throws(() => parseControldata(''), PgpilotError);
  const noTimeline = recorded.split('\n').filter((l) => !l.startsWith("Latest checkpoint's TimeLineID")).join('\n');
  assert.throws(() => parseControldata(noTimeline), /TimeLineID/);
  assert.throws(() => parseControldata(recorded.replace('0/1741890', 'zz')), /invalid LSN/);
});
