/**
 * Operator intents (src/state/intent.ts): `parseIntent` returns the intent for a well-formed value
 * and null for a missing key, invalid JSON or a wrong shape (a bad value must never crash an
 * agent); an intent is live strictly less than INTENT_TIMEOUT_MS after it was requested and
 * `liveIntent` drops it (and a null) from then on.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { INTENT_TIMEOUT_MS, isIntentLive, liveIntent, parseIntent, type FailoverIntent } from '../../src/state/intent.js';

const REQUESTED_MS = 1_700_000_000_000;
const SWITCHOVER: FailoverIntent = { kind: 'switchover', from: 'node1', to: 'node2', requestedAtMs: REQUESTED_MS };

void describe('parseIntent', () => {
  void it('parses a switchover and a failover as written by the CLI', () => {
    assert.deepEqual(parseIntent(JSON.stringify(SWITCHOVER)), SWITCHOVER);
    const failover: FailoverIntent = { kind: 'failover', from: null, to: null, requestedAtMs: REQUESTED_MS };
    assert.deepEqual(parseIntent(JSON.stringify(failover)), failover);
  });

  void it('returns null for a missing key', () => {
    assert.equal(parseIntent(null), null);
  });

  void it('returns null for invalid JSON', () => {
    for (const text of ['', '{', 'not json', '{"kind":"switchover",}', 'undefined']) {
      assert.equal(parseIntent(text), null, text);
    }
  });

  void it('returns null for a wrong shape', () => {
    const cases: unknown[] = [
      null,
      42,
      'switchover',
      [],
      {},
      { ...SWITCHOVER, kind: 'restart' },
      { ...SWITCHOVER, requestedAtMs: '1700000000000' },
      { kind: 'switchover', from: 'node1', to: 'node2' },
      { ...SWITCHOVER, to: 7 },
      { ...SWITCHOVER, from: undefined },
    ];
    for (const value of cases) assert.equal(parseIntent(JSON.stringify(value)), null, JSON.stringify(value));
  });
});

void describe('isIntentLive / liveIntent', () => {
  void it('an intent is live from its request until just before INTENT_TIMEOUT_MS', () => {
    assert.equal(isIntentLive(SWITCHOVER, REQUESTED_MS), true);
    assert.equal(isIntentLive(SWITCHOVER, REQUESTED_MS + INTENT_TIMEOUT_MS - 1), true);
    assert.equal(liveIntent(SWITCHOVER, REQUESTED_MS + INTENT_TIMEOUT_MS - 1), SWITCHOVER);
  });

  void it('an intent is stale at exactly INTENT_TIMEOUT_MS and after', () => {
    assert.equal(isIntentLive(SWITCHOVER, REQUESTED_MS + INTENT_TIMEOUT_MS), false);
    assert.equal(isIntentLive(SWITCHOVER, REQUESTED_MS + INTENT_TIMEOUT_MS + 1), false);
    assert.equal(liveIntent(SWITCHOVER, REQUESTED_MS + INTENT_TIMEOUT_MS), null);
    assert.equal(liveIntent(SWITCHOVER, REQUESTED_MS + 10 * INTENT_TIMEOUT_MS), null);
  });

  void it('liveIntent of no intent is null', () => {
    assert.equal(liveIntent(null, REQUESTED_MS), null);
  });

  void it('the timeout is one minute', () => {
    assert.equal(INTENT_TIMEOUT_MS, 60_000);
  });
});
