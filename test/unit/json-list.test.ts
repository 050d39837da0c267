/**
 * The append-only JSON lists in etcd (src/state/json-list.ts) and their two users, the event log
 * (src/state/events.ts) and the timeline history (src/state/history.ts), over a MemoryDcs driven by a
 * FakeClock: entries are appended in order, capped to the newest N, concurrent appends through
 * two clients lose nothing, a malformed stored value reads as [] and is replaced on the next
 * append, and `recordEvent` never throws (nor writes) when its client cannot reach the store.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { z } from 'zod';
import { MemoryDcs, MemoryDcsStore } from '../../src/dcs/memory-dcs.js';
import { clusterKeys } from '../../src/dcs/keys.js';
import { FakeClock } from '../../src/shared/clock.js';
import { appendJsonList, parseJsonList } from '../../src/state/json-list.js';
import { parseEvents, recordEvent, type NewClusterEvent } from '../../src/state/events.js';
import { appendHistory, parseHistory, type HistoryEntry } from '../../src/state/history.js';

const KEY = '/pgpilot/test/list';
const numberSchema = z.number().int();
const keys = clusterKeys('demo');

function world(): { store: MemoryDcsStore; a: MemoryDcs; b: MemoryDcs } {
  const store = new MemoryDcsStore(new FakeClock());
  return { store, a: new MemoryDcs(store, { name: 'a' }), b: new MemoryDcs(store, { name: 'b' }) };
}

function event(n: number, overrides: Partial<NewClusterEvent> = {}): NewClusterEvent {
  return { at: new Date(1_700_000_000_000 + n * 1000).toISOString(), kind: 'restarted', node: `node${(n % 3) + 1}`, message: `event ${n}`, timeline: 1, ...overrides };
}

function historyEntry(timeline: number): HistoryEntry {
  return { timeline, lsn: `0/${timeline}000000`, reason: `promotion ${timeline}`, at: new Date(1_700_000_000_000 + timeline).toISOString(), newLeader: 'node2' };
}

void describe('parseJsonList', () => {
  void it('reads a missing key as an empty list', () => {
    assert.deepEqual(parseJsonList(numberSchema, null), []);
  });

  void it('reads a valid list', () => {
    assert.deepEqual(parseJsonList(numberSchema, '[1,2,3]'), [1, 2, 3]);
  });

  void it('reads malformed JSON or a non-list as an empty list', () => {
    for (const text of ['', '[1,2', 'garbage', '{"a":1}', '42', 'null', '[1.5]']) {
      assert.deepEqual(parseJsonList(numberSchema, text), [], text);
    }
  });

  void it('skips only the malformed entries of a list: one bad entry never hides the others', () => {
    assert.deepEqual(parseJsonList(numberSchema, '[1,"two",3,null,{"x":1},4.5,5]'), [1, 3, 5]);
  });
});

void describe('appendJsonList', () => {
  void it('creates the key on the first append and appends in order after that', async () => {
    const { a } = world();
    for (let i = 1; i <= 5; i += 1) assert.equal(await appendJsonList(a, KEY, numberSchema, i, 100), true);
    assert.deepEqual(parseJsonList(numberSchema, await a.get(KEY)), [1, 2, 3, 4, 5]);
  });

  void it('keeps only the newest maxEntries', async () => {
    const { a } = world();
    for (let i = 1; i <= 12; i += 1) await appendJsonList(a, KEY, numberSchema, i, 5);
    assert.deepEqual(parseJsonList(numberSchema, await a.get(KEY)), [8, 9, 10, 11, 12]);
  });

  void it('trims an existing list that is longer than the cap on the next append', async () => {
    const { a } = world();
    await a.put(KEY, JSON.stringify([1, 2, 3, 4, 5, 6]));
    await appendJsonList(a, KEY, numberSchema, 7, 3);
    assert.deepEqual(parseJsonList(numberSchema, await a.get(KEY)), [5, 6, 7]);
  });

  void it('replaces a stored value that is not a list with a list holding just the new entry', async () => {
    for (const garbage of ['not json', '{"x":1}', '42']) {
      const { a } = world();
      await a.put(KEY, garbage);
      assert.equal(await appendJsonList(a, KEY, numberSchema, 9, 10), true, garbage);
      assert.deepEqual(JSON.parse((await a.get(KEY)) ?? 'null'), [9], garbage);
    }
  });

  void it('loses nothing when 8 appends race through two clients', async () => {
    const { a, b } = world();
    const values = Array.from({ length: 8 }, (_, i) => i);
    const results = await Promise.all(values.map((v) => appendJsonList(v % 2 === 0 ? a : b, KEY, numberSchema, v, 100)));
    assert.deepEqual(results, values.map(() => true));
    assert.deepEqual([...parseJsonList(numberSchema, await a.get(KEY))].sort((x, y) => x - y), values);
  });

  void it('loses nothing when 20 appends race through two clients', async () => {
    const { a, b } = world();
    const values = Array.from({ length: 20 }, (_, i) => i);
    const results = await Promise.all(values.map((v) => appendJsonList(v % 2 === 0 ? a : b, KEY, numberSchema, v, 100)));
    const stored = parseJsonList(numberSchema, await a.get(KEY));
    assert.deepEqual(
      [...stored].sort((x, y) => x - y),
      values,
      `stored ${stored.length} of 20 entries; append results: ${JSON.stringify(results)}`,
    );
    assert.ok(results.every((r) => r), `every append reports success: ${JSON.stringify(results)}`);
  });

  void it('loses nothing when appends from two clients interleave one at a time', async () => {
    const { a, b } = world();
    for (let i = 0; i < 10; i += 1) await appendJsonList(i % 2 === 0 ? a : b, KEY, numberSchema, i, 100);
    assert.deepEqual(parseJsonList(numberSchema, await b.get(KEY)), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  void it('throws DCS_UNAVAILABLE (does not report a lost race) when the client is cut off', async () => {
    const { a } = world();
    a.setReachable(false);
    await assert.rejects(appendJsonList(a, KEY, numberSchema, 1, 10), { code: 'DCS_UNAVAILABLE' });
  });
});

void describe('events', () => {
  void it('recordEvent appends events under /events in order and parseEvents reads them back', async () => {
    const { a, b } = world();
    await recordEvent(a, keys, event(1, { kind: 'leader-acquired' }));
    await recordEvent(b, keys, event(2, { kind: 'switchover-requested' }));
    await recordEvent(a, keys, event(3, { kind: 'promoted', timeline: 2 }));
    const events = parseEvents(await a.get(keys.events));
    assert.deepEqual(
      events.map((e) => [e.kind, e.message, e.timeline]),
      [
        ['leader-acquired', 'event 1', 1],
        ['switchover-requested', 'event 2', 1],
        ['promoted', 'event 3', 2],
      ],
    );
  });

  void it('parseEvents defaults a missing timeline to null and keeps entries of unknown kinds', () => {
    const { timeline: _drop, ...noTimeline } = event(1);
    assert.deepEqual(parseEvents(JSON.stringify([noTimeline])), [{ ...noTimeline, timeline: null }]);
    assert.deepEqual(parseEvents(JSON.stringify([{ ...event(1), kind: 'exploded' }, event(2)])), [{ ...event(1), kind: 'exploded' }, event(2)]);
    assert.deepEqual(parseEvents(JSON.stringify([{ bad: true }, event(2), 'x'])), [event(2)], 'a malformed entry is skipped, the rest kept');
    assert.deepEqual(parseEvents(null), []);
    assert.deepEqual(parseEvents('{{{'), []);
  });

  void it('an append keeps stored entries verbatim, of unknown kinds or malformed', async () => {
    const { a } = world();
    const newer = { ...event(1), kind: 'from-a-newer-agent', extra: { x: 1 } };
    await a.put(keys.events, JSON.stringify([newer, { garbage: true }]));
    await recordEvent(a, keys, event(2));
    assert.deepEqual(JSON.parse((await a.get(keys.events)) ?? 'null'), [newer, { garbage: true }, event(2)]);
    assert.deepEqual(parseEvents(await a.get(keys.events)).map((e) => e.kind), ['from-a-newer-agent', 'restarted']);
  });

  void it('keeps only the newest 500 events', async () => {
    const { a } = world();
    await a.put(keys.events, JSON.stringify(Array.from({ length: 500 }, (_, i) => event(i))));
    await recordEvent(a, keys, event(500));
    const events = parseEvents(await a.get(keys.events));
    assert.equal(events.length, 500);
    assert.equal(events[0]?.message, 'event 1');
    assert.equal(events.at(-1)?.message, 'event 500');
  });

  void it('a malformed /events value reads as [] and is overwritten by the next event', async () => {
    const { a } = world();
    await a.put(keys.events, 'corrupted');
    assert.deepEqual(parseEvents(await a.get(keys.events)), []);
    await recordEvent(a, keys, event(1));
    assert.deepEqual(parseEvents(await a.get(keys.events)), [event(1)]);
  });

  void it('recordEvent never throws when the client cannot reach the store, and writes nothing', async () => {
    const { a, b } = world();
    a.setReachable(false);
    await assert.doesNotReject(recordEvent(a, keys, event(1)));
    assert.equal(await b.get(keys.events), null);
    a.setReachable(true);
    await recordEvent(a, keys, event(2));
    assert.deepEqual(parseEvents(await b.get(keys.events)), [event(2)]);
  });

  void it('recordEvent never throws when the client is closed', async () => {
    const { a } = world();
    await a.close();
    await assert.doesNotReject(recordEvent(a, keys, event(1)));
  });

  void it('8 events recorded in parallel through two clients are all kept', async () => {
    const { a, b } = world();
    await Promise.all(Array.from({ length: 8 }, (_, i) => recordEvent(i % 2 === 0 ? a : b, keys, event(i))));
    const messages = parseEvents(await a.get(keys.events)).map((e) => e.message);
    assert.deepEqual(new Set(messages), new Set(Array.from({ length: 8 }, (_, i) => `event ${i}`)));
    assert.equal(messages.length, 8);
  });

  void it('20 events recorded in parallel through two clients are all kept', async () => {
    const { a, b } = world();
    await Promise.all(Array.from({ length: 20 }, (_, i) => recordEvent(i % 2 === 0 ? a : b, keys, event(i))));
    const messages = parseEvents(await a.get(keys.events)).map((e) => e.message);
    assert.equal(messages.length, 20, `kept ${messages.length} of 20: ${messages.join(', ')}`);
    assert.deepEqual(new Set(messages), new Set(Array.from({ length: 20 }, (_, i) => `event ${i}`)));
  });
});

void describe('history', () => {
  void it('appendHistory appends under /history in order and parseHistory reads it back', async () => {
    const { a, b } = world();
    await appendHistory(a, keys, historyEntry(2));
    await appendHistory(b, keys, historyEntry(3));
    assert.deepEqual(parseHistory(await a.get(keys.history)), [historyEntry(2), historyEntry(3)]);
  });

  void it('a malformed /history value reads as [] and is overwritten by the next entry', async () => {
    const { a } = world();
    await a.put(keys.history, '[{"timeline":"two"}]');
    assert.deepEqual(parseHistory(await a.get(keys.history)), []);
    await appendHistory(a, keys, historyEntry(2));
    assert.deepEqual(parseHistory(await a.get(keys.history)), [historyEntry(2)]);
  });

  void it('keeps only the newest 1000 entries', async () => {
    const { a } = world();
    await a.put(keys.history, JSON.stringify(Array.from({ length: 1000 }, (_, i) => historyEntry(i + 1))));
    await appendHistory(a, keys, historyEntry(1001));
    const history = parseHistory(await a.get(keys.history));
    assert.equal(history.length, 1000);
    assert.equal(history[0]?.timeline, 2);
    assert.equal(history.at(-1)?.timeline, 1001);
  });

  void it('appendHistory, unlike recordEvent, reports an unreachable store to its caller', async () => {
    const { a } = world();
    a.setReachable(false);
    await assert.rejects(appendHistory(a, keys, historyEntry(2)), { code: 'DCS_UNAVAILABLE' });
  });
});
