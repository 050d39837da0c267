import { test } from 'node:test';
import assert from 'node:assert/strict';
import { slotNameFor } from '../../src/postgres/queries.js';
import { PgpilotError } from '../../src/shared/errors.js';

void test('slotNameFor lower-cases and replaces characters outside [a-z0-9_]', () => {
  assert.equal(slotNameFor('node1'), 'node1');
  assert.equal(slotNameFor('Node-1'), 'node_1');
  assert.equal(slotNameFor('db.eu-west.2'), 'db_eu_west_2');
  assert.equal(slotNameFor('ünïcode'), '_n_code');
});

void test('slotNameFor stays within 63 characters and keeps long names apart', () => {
  const a = slotNameFor(`${'x'.repeat(70)}a`);
  const b = slotNameFor(`${'x'.repeat(70)}b`);
  assert.equal(a.length, 63);
  assert.equal(b.length, 63);
  assert.notEqual(a, b);
  assert.match(a, /^[a-z0-9_]{1,63}$/);
  assert.equal(slotNameFor('y'.repeat(63)), 'y'.repeat(63));
  assert.equal(a, slotNameFor(`${'x'.repeat(70)}a`));
});

void test('slotNameFor rejects an empty name', () => {
  assert.throws(() => slotNameFor(''), PgpilotError);
});
