/**
 * The DCS contract as executable tests: every promise written in src/dcs/dcs.ts, checked against
 * any implementation through a small harness (two clients of one store, and a way to let lease
 * time pass). Invariants of the suite itself: each test works under its own unique key prefix, so
 * tests never see each other's keys (nor a previous run's, against a long-lived etcd); waiting for
 * a state is always a poll of an observed condition with a deadline, never a fixed sleep; the only
 * passing of time is `advanceMs`, which steps a fake clock for MemoryDcs and really waits for
 * etcd, where lease expiry is then observed by polling (etcd revokes expired leases on a ~500 ms
 * tick, so a key can outlive its TTL by up to about a second).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { LeaseNotFoundError, type Dcs, type DcsWatchEvent } from '../../src/dcs/dcs.js';
import { SystemClock } from '../../src/shared/clock.js';

export interface DcsHarness {
  /** The client under test. */
  dcs: Dcs;
  /** A second client of the same store (another node). */
  second: Dcs;
  /** Lets `ms` of lease time pass. */
  advanceMs(ms: number): Promise<void>;
  close(): Promise<void>;
}

/** etcd's minimum lease TTL with default timing is 2 s; both implementations use the same value. */
export const CONTRACT_TTL_SECONDS = 2;
/** Deadline for observing an expiry once the TTL has passed (etcd's revoke tick + slack). */
const EXPIRY_DEADLINE_MS = 4_000;
const realClock = new SystemClock();

/** Polls `condition` (every `pollMs`, real time) until it holds; fails with `what` after `timeoutMs`. */
export async function waitFor(
  what: string,
  condition: () => boolean | Promise<boolean>,
  timeoutMs = 5_000,
  pollMs = 25,
): Promise<void> {
  const deadlineMs = realClock.nowMs() + timeoutMs;
  for (;;) {
    if (await condition()) return;
    if (realClock.nowMs() >= deadlineMs) assert.fail(`timed out after ${timeoutMs} ms waiting for: ${what}`);
    await realClock.sleep(pollMs);
  }
}

/** A key prefix no other test (or earlier run) uses. */
export function uniquePrefix(name: string): string {
  return `/pgpilot-contract/${name}-${randomBytes(4).toString('hex')}/`;
}

export function runDcsContract(label: string, makeHarness: () => Promise<DcsHarness>): void {
  void describe(`Dcs contract: ${label}`, () => {
    let harness: DcsHarness;

    before(async () => {
      harness = await makeHarness();
    });

    after(async () => {
      await harness?.close();
    });

    void it('get returns null for a missing key and the last value put, on both clients', async () => {
      const { dcs, second } = harness;
      const key = `${uniquePrefix('get-put')}k`;
      assert.equal(await dcs.get(key), null);
      await dcs.put(key, 'one');
      assert.equal(await dcs.get(key), 'one');
      assert.equal(await second.get(key), 'one', 'a second client reads the first one write');
      await second.put(key, 'two');
      assert.equal(await dcs.get(key), 'two', 'a read after a write sees it (linearizable)');
      await dcs.put(key, '');
      assert.equal(await second.get(key), '', 'an empty value is a value, not a missing key');
    });

    void it('getPrefix returns exactly the keys under the prefix, prefix included, sorted by key', async () => {
      const { dcs, second } = harness;
      const prefix = uniquePrefix('get-prefix');
      await dcs.put(`${prefix}b`, '2');
      await dcs.put(`${prefix}c/d`, '3');
      await dcs.put(`${prefix}a`, '1');
      await dcs.put(`${prefix.slice(0, -1)}-sibling`, 'outside');
      const expected = [
        [`${prefix}a`, '1'],
        [`${prefix}b`, '2'],
        [`${prefix}c/d`, '3'],
      ];
      assert.deepEqual([...(await dcs.getPrefix(prefix)).entries()], expected);
      assert.deepEqual([...(await second.getPrefix(prefix)).entries()], expected);
      assert.equal((await dcs.getPrefix(uniquePrefix('empty'))).size, 0);
    });

    void it('delete removes one key, deletePrefix every key under the prefix and nothing else', async () => {
      const { dcs, second } = harness;
      const prefix = uniquePrefix('delete');
      const outside = `${prefix.slice(0, -1)}-outside`;
      await dcs.put(`${prefix}a`, '1');
      await dcs.put(`${prefix}b/c`, '2');
      await dcs.put(`${prefix}d`, '3');
      await dcs.put(outside, 'kept');
      await second.delete(`${prefix}a`);
      assert.equal(await dcs.get(`${prefix}a`), null);
      await dcs.delete(`${prefix}never-existed`);
      await second.deletePrefix(prefix);
      assert.equal((await dcs.getPrefix(prefix)).size, 0);
      assert.equal(await dcs.get(outside), 'kept');
      await dcs.delete(outside);
    });

    void it('createIfAbsent: of 5 concurrent callers on two clients exactly one creates the key', async () => {
      const { dcs, second } = harness;
      const key = `${uniquePrefix('create-race')}leader`;
      const clients = [dcs, second, dcs, second, dcs];
      const results = await Promise.all(clients.map((client, index) => client.createIfAbsent(key, `node-${index}`)));
      assert.equal(results.filter((created) => created).length, 1, `results: ${JSON.stringify(results)}`);
      const winner = results.indexOf(true);
      assert.equal(await second.get(key), `node-${winner}`);
      assert.equal(await dcs.createIfAbsent(key, 'late'), false, 'an existing key is never overwritten');
      assert.equal(await dcs.get(key), `node-${winner}`);
      await dcs.delete(key);
      assert.equal(await second.createIfAbsent(key, 'again'), true, 'a deleted key can be created again');
    });

    void it('replaceIfEquals writes only over the expected value, atomically', async () => {
      const { dcs, second } = harness;
      const key = `${uniquePrefix('cas')}k`;
      assert.equal(await dcs.replaceIfEquals(key, '', 'x'), false, 'a missing key never equals anything');
      assert.equal(await dcs.get(key), null);
      await dcs.put(key, 'v1');
      assert.equal(await dcs.replaceIfEquals(key, 'wrong', 'v2'), false);
      assert.equal(await dcs.get(key), 'v1');
      assert.equal(await second.replaceIfEquals(key, 'v1', 'v2'), true);
      assert.equal(await dcs.get(key), 'v2');
      const clients = [dcs, second, dcs, second, dcs];
      const results = await Promise.all(clients.map((client, index) => client.replaceIfEquals(key, 'v2', `v3-${index}`)));
      assert.equal(results.filter((replaced) => replaced).length, 1, `results: ${JSON.stringify(results)}`);
      assert.equal(await dcs.get(key), `v3-${results.indexOf(true)}`);
    });

    void it('getPrefixWithLeases returns the same keys and values as getPrefix, each with its lease (null: none)', async () => {
      const { dcs, second } = harness;
      const prefix = uniquePrefix('with-leases');
      const leaseId = await dcs.grantLease(30);
      await dcs.put(`${prefix}leader`, 'node1', { leaseId });
      await second.put(`${prefix}config`, '{}');
      await dcs.createIfAbsent(`${prefix}member`, 'm', { leaseId });
      const read = await second.getPrefixWithLeases(prefix);
      assert.deepEqual([...read.entries()], [
        [`${prefix}config`, { value: '{}', leaseId: null }],
        [`${prefix}leader`, { value: 'node1', leaseId }],
        [`${prefix}member`, { value: 'm', leaseId }],
      ]);
      assert.deepEqual([...(await dcs.getPrefix(prefix)).entries()], [...read.entries()].map(([k, e]) => [k, e.value]));
      // Overwritten without a lease, the key no longer reports one.
      await second.put(`${prefix}leader`, 'ghost');
      assert.deepEqual((await dcs.getPrefixWithLeases(prefix)).get(`${prefix}leader`), { value: 'ghost', leaseId: null });
      await dcs.revokeLease(leaseId);
      assert.deepEqual([...(await dcs.getPrefixWithLeases(prefix)).keys()], [`${prefix}config`, `${prefix}leader`]);
    });

    void it('deleteIfEquals deletes only the expected value', async () => {
      const { dcs, second } = harness;
      const key = `${uniquePrefix('cad')}k`;
      assert.equal(await dcs.deleteIfEquals(key, 'anything'), false, 'a missing key is not deleted');
      await dcs.put(key, 'mine');
      assert.equal(await second.deleteIfEquals(key, 'theirs'), false);
      assert.equal(await dcs.get(key), 'mine');
      assert.equal(await second.deleteIfEquals(key, 'mine'), true);
      assert.equal(await dcs.get(key), null);
    });

    void it('a key on a lease disappears once the lease TTL passes, with a delete event', async () => {
      const { dcs, second } = harness;
      const prefix = uniquePrefix('lease-expiry');
      const events: DcsWatchEvent[] = [];
      const watch = await second.watchPrefix(prefix, (event) => events.push(event));
      try {
        const leaseId = await dcs.grantLease(CONTRACT_TTL_SECONDS);
        assert.match(leaseId, /^[0-9]+$/, 'lease ids are decimal strings');
        await dcs.put(`${prefix}leased`, 'v', { leaseId });
        await dcs.put(`${prefix}plain`, 'v');
        assert.equal(await second.get(`${prefix}leased`), 'v');
        await harness.advanceMs(CONTRACT_TTL_SECONDS * 1000 + 100);
        await waitFor('the leased key to expire', async () => (await dcs.get(`${prefix}leased`)) === null, EXPIRY_DEADLINE_MS);
        assert.equal(await second.get(`${prefix}plain`), 'v', 'a key without a lease stays');
        await waitFor('the delete event of the expired key', () => events.length >= 3);
        assert.deepEqual(events, [
          { kind: 'put', key: `${prefix}leased`, value: 'v' },
          { kind: 'put', key: `${prefix}plain`, value: 'v' },
          { kind: 'delete', key: `${prefix}leased` },
        ]);
        assert.equal(await dcs.keepAlive(leaseId), false);
      } finally {
        await watch.cancel();
      }
    });

    void it('keepAlive extends a lease to its full TTL; once it is gone keepAlive is false and writes with it fail', async () => {
      const { dcs, second } = harness;
      const prefix = uniquePrefix('keepalive');
      const kept = await dcs.grantLease(CONTRACT_TTL_SECONDS);
      const dropped = await dcs.grantLease(CONTRACT_TTL_SECONDS);
      assert.notEqual(kept, dropped);
      await dcs.put(`${prefix}kept`, 'k', { leaseId: kept });
      await dcs.put(`${prefix}dropped`, 'd', { leaseId: dropped });

      await harness.advanceMs(1_200);
      assert.equal(await dcs.keepAlive(kept), true);
      await harness.advanceMs(1_200);
      // Past the original TTL: only a renewed lease can still be there.
      assert.equal(await second.keepAlive(kept), true, 'any client may keep a lease alive');
      await waitFor('the key of the lease that was not kept alive to expire', async () => (await dcs.get(`${prefix}dropped`)) === null, EXPIRY_DEADLINE_MS);
      assert.equal(await dcs.get(`${prefix}kept`), 'k', 'the renewed lease still holds its key');
      assert.equal(await dcs.keepAlive(dropped), false);

      await harness.advanceMs(CONTRACT_TTL_SECONDS * 1000 + 100);
      await waitFor('the kept lease to expire once renewals stop', async () => (await dcs.get(`${prefix}kept`)) === null, EXPIRY_DEADLINE_MS);
      assert.equal(await dcs.keepAlive(kept), false, 'keepAlive on an expired lease is false, not an error');
      assert.equal(await second.keepAlive(kept), false, 'and the lease stays gone');
      await assert.rejects(dcs.put(`${prefix}kept`, 'again', { leaseId: kept }), LeaseNotFoundError);
      await assert.rejects(dcs.createIfAbsent(`${prefix}new`, 'x', { leaseId: kept }), LeaseNotFoundError);
      assert.equal(await dcs.get(`${prefix}new`), null);
    });

    void it('revokeLease deletes the lease keys at once; revoking again or an unknown lease is fine', async () => {
      const { dcs, second } = harness;
      const prefix = uniquePrefix('revoke');
      const leaseId = await dcs.grantLease(CONTRACT_TTL_SECONDS + 8);
      await dcs.put(`${prefix}a`, '1', { leaseId });
      assert.equal(await dcs.createIfAbsent(`${prefix}b`, '2', { leaseId }), true);
      await dcs.put(`${prefix}c`, '3');
      assert.equal(await dcs.replaceIfEquals(`${prefix}c`, '3', '3b', { leaseId }), true);
      await dcs.put(`${prefix}detached`, 'x', { leaseId });
      await dcs.put(`${prefix}detached`, 'y'); // rewritten without a lease: no longer on it
      await second.revokeLease(leaseId);
      assert.deepEqual([...(await dcs.getPrefix(prefix)).entries()], [[`${prefix}detached`, 'y']]);
      assert.equal(await dcs.keepAlive(leaseId), false);
      await dcs.revokeLease(leaseId);
      await dcs.revokeLease('123456789');
      assert.equal(await dcs.keepAlive('123456789'), false, 'a never-granted lease is not alive');
    });

    void it('writing with a revoked or never-granted lease throws LeaseNotFoundError and writes nothing', async () => {
      const { dcs } = harness;
      const prefix = uniquePrefix('dead-lease');
      const leaseId = await dcs.grantLease(CONTRACT_TTL_SECONDS);
      await dcs.revokeLease(leaseId);
      await assert.rejects(dcs.put(`${prefix}a`, '1', { leaseId }), LeaseNotFoundError);
      await assert.rejects(dcs.createIfAbsent(`${prefix}b`, '1', { leaseId }), LeaseNotFoundError);
      await dcs.put(`${prefix}c`, 'old');
      await assert.rejects(dcs.replaceIfEquals(`${prefix}c`, 'old', 'new', { leaseId }), LeaseNotFoundError);
      await assert.rejects(dcs.put(`${prefix}d`, '1', { leaseId: '987654321' }), LeaseNotFoundError);
      assert.deepEqual([...(await dcs.getPrefix(prefix)).entries()], [[`${prefix}c`, 'old']]);
    });

    void it('a watch delivers every later change under its prefix, in order, until cancelled', async () => {
      const { dcs, second } = harness;
      const prefix = uniquePrefix('watch');
      await second.put(`${prefix}before`, 'not seen');
      const events: DcsWatchEvent[] = [];
      const watch = await dcs.watchPrefix(prefix, (event) => events.push(event));
      await second.put(`${prefix}a`, '1');
      await second.put(`${prefix.slice(0, -1)}-outside`, 'not seen');
      await second.put(`${prefix}a`, '2');
      await second.delete(`${prefix}a`);
      await second.delete(`${prefix}never-existed`);
      await second.put(`${prefix}b/c`, '3');
      await second.deletePrefix(prefix);
      const expected: DcsWatchEvent[] = [
        { kind: 'put', key: `${prefix}a`, value: '1' },
        { kind: 'put', key: `${prefix}a`, value: '2' },
        { kind: 'delete', key: `${prefix}a` },
        { kind: 'put', key: `${prefix}b/c`, value: '3' },
        { kind: 'delete', key: `${prefix}before` },
        { kind: 'delete', key: `${prefix}b/c` },
      ];
      await waitFor('all watch events', () => events.length >= expected.length);
      // deletePrefix removes both keys in one step; their relative order is the store's.
      assert.deepEqual(events.slice(0, 4), expected.slice(0, 4));
      assert.deepEqual(
        [...events.slice(4)].sort((x, y) => x.key.localeCompare(y.key)),
        [...expected.slice(4)].sort((x, y) => x.key.localeCompare(y.key)),
      );

      await watch.cancel();
      await second.put(`${prefix}after-cancel`, 'not seen');
      // A sentinel watch on the same client, opened after the write above: once it has seen its
      // own later write, the cancelled watch would have seen the earlier one.
      const sentinelEvents: DcsWatchEvent[] = [];
      const sentinel = await dcs.watchPrefix(prefix, (event) => sentinelEvents.push(event));
      await second.put(`${prefix}sentinel`, 's');
      await waitFor('the sentinel event', () => sentinelEvents.length >= 1);
      await sentinel.cancel();
      assert.equal(events.length, expected.length, `no events after cancel, got ${JSON.stringify(events.slice(expected.length))}`);
    });
  });
}
