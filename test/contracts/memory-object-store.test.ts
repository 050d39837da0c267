/**
 * MemoryObjectStore against the ObjectStore contract, plus what only the fake has: `corrupt`,
 * the availability switch, and time from the injected clock.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FakeClock } from '../../src/shared/clock.js';
import { PgpilotError } from '../../src/shared/errors.js';
import { MemoryObjectStore } from '../fakes/memory-object-store.js';
import { runObjectStoreContract } from './object-store-contract.js';

runObjectStoreContract('MemoryObjectStore', () => {
  const store = new MemoryObjectStore();
  return Promise.resolve({ store, close: () => store.close() });
});

function isUnavailable(error: unknown): boolean {
  return error instanceof PgpilotError && error.code === 'STORE_UNAVAILABLE' && error.retryable;
}

void describe('MemoryObjectStore specifics', () => {
  void it('corrupt(key, offset) flips one stored byte and nothing else', async () => {
    const store = new MemoryObjectStore();
    const original = Buffer.from([1, 2, 3, 4]);
    await store.put('k', original);
    store.corrupt('k', 2);
    assert.deepEqual(await store.getBuffer('k'), Buffer.from([1, 2, 3 ^ 0xff, 4]));
    assert.deepEqual(original, Buffer.from([1, 2, 3, 4]), "the caller's buffer is not the stored one");
    assert.throws(() => store.corrupt('k', 4), /outside/);
    assert.throws(() => store.corrupt('missing', 0), /no object/);
  });

  void it('copies buffers in and out', async () => {
    const store = new MemoryObjectStore();
    const body = Buffer.from('abc');
    await store.put('k', body);
    body[0] = 0x7a;
    const read = await store.getBuffer('k');
    assert.deepEqual(read, Buffer.from('abc'));
    if (read) read[1] = 0x7a;
    assert.deepEqual(await store.getBuffer('k'), Buffer.from('abc'));
  });

  void it('setAvailable(false) makes every call fail with retryable STORE_UNAVAILABLE; validation still comes first', async () => {
    const store = new MemoryObjectStore(new FakeClock(), 'cut');
    await store.put('k', Buffer.from('v'));
    store.setAvailable(false);
    await assert.rejects(store.put('k', Buffer.from('w')), isUnavailable);
    await assert.rejects(store.get('k'), isUnavailable);
    await assert.rejects(store.getBuffer('k'), isUnavailable);
    await assert.rejects(store.head('k'), isUnavailable);
    await assert.rejects(store.list(''), isUnavailable);
    await assert.rejects(store.delete(['k']), isUnavailable);
    await assert.rejects(store.get('../x'), (error: unknown) => error instanceof PgpilotError && error.code === 'INPUT_INVALID');
    store.setAvailable(true);
    assert.deepEqual(await store.getBuffer('k'), Buffer.from('v'), 'nothing changed while unavailable');
  });

  void it('takes lastModifiedMs from the injected clock', async () => {
    const clock = new FakeClock(1_000_000);
    const store = new MemoryObjectStore(clock);
    await store.put('a', Buffer.from('1'));
    clock.advance(5_000);
    await store.put('b', Buffer.from('2'));
    assert.deepEqual(
      (await store.list('')).map((info) => info.lastModifiedMs),
      [1_000_000, 1_005_000],
    );
  });
});
