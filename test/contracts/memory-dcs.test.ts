/**
 * MemoryDcs against the DCS contract (time stepped with a FakeClock), plus what only the fake
 * has: reachability switching for scenario tests, lazy expiry on the injected clock, and
 * `expireLeases()`.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Dcs, DcsWatchEvent } from '../../src/dcs/dcs.js';
import { MemoryDcs, MemoryDcsStore } from '../../src/dcs/memory-dcs.js';
import { FakeClock } from '../../src/shared/clock.js';
import { PgpilotError } from '../../src/shared/errors.js';
import { runDcsContract, waitFor } from './dcs-contract.js';

runDcsContract('MemoryDcs', () => {
  const clock = new FakeClock();
  const store = new MemoryDcsStore(clock);
  const dcs = new MemoryDcs(store, { name: 'node-a' });
  const second = new MemoryDcs(store, { name: 'node-b' });
  return Promise.resolve({
    dcs,
    second,
    advanceMs: (ms: number) => {
      clock.advance(ms);
      return Promise.resolve();
    },
    close: async () => {
      await dcs.close();
      await second.close();
    },
  });
});

function isUnavailable(error: unknown): boolean {
  return error instanceof PgpilotError && error.code === 'DCS_UNAVAILABLE' && error.retryable;
}

/** Every method of the port, called with harmless arguments. */
function everyCall(dcs: Dcs): Array<[string, () => Promise<unknown>]> {
  return [
    ['get', () => dcs.get('/k')],
    ['getPrefix', () => dcs.getPrefix('/')],
    ['put', () => dcs.put('/k', 'v')],
    ['createIfAbsent', () => dcs.createIfAbsent('/k', 'v')],
    ['replaceIfEquals', () => dcs.replaceIfEquals('/k', 'v', 'w')],
    ['deleteIfEquals', () => dcs.deleteIfEquals('/k', 'v')],
    ['delete', () => dcs.delete('/k')],
    ['deletePrefix', () => dcs.deletePrefix('/k')],
    ['grantLease', () => dcs.grantLease(5)],
    ['keepAlive', () => dcs.keepAlive('1')],
    ['revokeLease', () => dcs.revokeLease('1')],
    ['watchPrefix', () => dcs.watchPrefix('/', () => undefined)],
  ];
}

void describe('MemoryDcs specifics', () => {
  void it('setReachable(false) makes every call of that client fail with retryable DCS_UNAVAILABLE', async () => {
    const store = new MemoryDcsStore(new FakeClock());
    const cut = new MemoryDcs(store, { name: 'cut' });
    const other = new MemoryDcs(store, { name: 'other' });
    const leaseId = await cut.grantLease(10);
    await cut.put('/k', 'before', { leaseId });

    cut.setReachable(false);
    assert.equal(cut.isReachable(), false);
    for (const [name, call] of everyCall(cut)) {
      await assert.rejects(call(), isUnavailable, `${name} must fail while unreachable`);
    }
    // keepAlive from a cut-off client is an error, never a false "lease is gone".
    await assert.rejects(cut.keepAlive(leaseId), isUnavailable);
    assert.equal(await other.get('/k'), 'before', 'the other client is unaffected');
    await other.put('/k', 'during');

    cut.setReachable(true);
    assert.equal(await cut.get('/k'), 'during');
    assert.equal(await cut.keepAlive(leaseId), true);
  });

  void it('holds back watch events while unreachable and delivers them in order on reconnect', async () => {
    const store = new MemoryDcsStore(new FakeClock());
    const watcher = new MemoryDcs(store, { name: 'watcher' });
    const writer = new MemoryDcs(store, { name: 'writer' });
    const events: DcsWatchEvent[] = [];
    await watcher.watchPrefix('/w/', (event) => events.push(event));
    await writer.put('/w/a', '1');
    await waitFor('the first event', () => events.length === 1);

    watcher.setReachable(false);
    await writer.put('/w/a', '2');
    await writer.delete('/w/a');
    // Let every queued microtask run: nothing may reach a cut-off client.
    await new Promise<void>((resolve) => setImmediate(resolve));
    assert.equal(events.length, 1);

    watcher.setReachable(true);
    await waitFor('the held-back events', () => events.length === 3);
    assert.deepEqual(events, [
      { kind: 'put', key: '/w/a', value: '1' },
      { kind: 'put', key: '/w/a', value: '2' },
      { kind: 'delete', key: '/w/a' },
    ]);
  });

  void it('expires leases lazily on the injected clock, exactly at the TTL', async () => {
    const clock = new FakeClock();
    const store = new MemoryDcsStore(clock);
    const dcs = new MemoryDcs(store);
    const events: DcsWatchEvent[] = [];
    await dcs.watchPrefix('/l/', (event) => events.push(event));
    const leaseId = await dcs.grantLease(3);
    await dcs.put('/l/b', 'b', { leaseId });
    await dcs.put('/l/a', 'a', { leaseId });

    clock.advance(2_999);
    assert.equal(await dcs.get('/l/a'), 'a', 'still alive 1 ms before the TTL');
    clock.advance(1);
    await new Promise<void>((resolve) => setImmediate(resolve));
    assert.equal(events.length, 2, 'nothing happens until the store is touched');
    assert.equal(store.expireLeases(), 1);
    assert.equal(store.expireLeases(), 0);
    await waitFor('the delete events', () => events.length === 4);
    assert.deepEqual(events.slice(2), [
      { kind: 'delete', key: '/l/a' },
      { kind: 'delete', key: '/l/b' },
    ]);
    assert.deepEqual(store.liveLeaseIds(), []);
    assert.equal(await dcs.keepAlive(leaseId), false);
  });

  void it('keepAlive restarts the full TTL from the current clock time', async () => {
    const clock = new FakeClock();
    const store = new MemoryDcsStore(clock);
    const dcs = new MemoryDcs(store);
    const leaseId = await dcs.grantLease(2);
    await dcs.put('/k', 'v', { leaseId });
    clock.advance(1_500);
    assert.equal(await dcs.keepAlive(leaseId), true);
    clock.advance(1_999);
    assert.equal(await dcs.get('/k'), 'v');
    clock.advance(1);
    assert.equal(await dcs.get('/k'), null);
  });

  void it('hands out distinct decimal lease ids and rejects a TTL below one second', async () => {
    const dcs = new MemoryDcs(new MemoryDcsStore(new FakeClock()));
    const ids = await Promise.all([1, 2, 3].map(() => dcs.grantLease(1)));
    assert.equal(new Set(ids).size, 3);
    for (const id of ids) assert.match(id, /^[0-9]+$/);
    await assert.rejects(dcs.grantLease(0), (error: unknown) => error instanceof PgpilotError && error.code === 'INPUT_INVALID');
    await assert.rejects(dcs.grantLease(1.5), (error: unknown) => error instanceof PgpilotError && error.code === 'INPUT_INVALID');
  });

  void it('refuses to delete the empty prefix (the whole store)', async () => {
    const dcs = new MemoryDcs(new MemoryDcsStore(new FakeClock()));
    await dcs.put('/keep', 'v');
    await assert.rejects(dcs.deletePrefix(''), (error: unknown) => error instanceof PgpilotError && error.code === 'INPUT_INVALID');
    assert.equal(await dcs.get('/keep'), 'v');
  });

  void it('a closed client fails its calls and its watches stop', async () => {
    const store = new MemoryDcsStore(new FakeClock());
    const closing = new MemoryDcs(store, { name: 'closing' });
    const other = new MemoryDcs(store);
    const events: DcsWatchEvent[] = [];
    await closing.watchPrefix('/c/', (event) => events.push(event));
    await closing.close();
    await closing.close();
    await other.put('/c/x', '1');
    await new Promise<void>((resolve) => setImmediate(resolve));
    assert.deepEqual(events, []);
    await assert.rejects(closing.get('/c/x'), (error: unknown) => error instanceof PgpilotError && error.code === 'DCS_UNAVAILABLE');
  });
});
