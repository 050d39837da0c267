/**
 * The ObjectStore contract as executable tests: every promise written in
 * src/backup/object-store.ts, checked against any implementation. Invariants of the suite: each
 * test works under its own unique key prefix, so tests never see each other's objects (nor an
 * earlier run's, against a long-lived bucket); waiting is a poll of an observed state with a
 * deadline, never a fixed sleep; large bodies are generated and hashed as streams, so a 20 MiB
 * round trip proves byte-exactness without holding two copies in the test.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { PassThrough, Readable } from 'node:stream';
import type { ObjectStore } from '../../src/backup/object-store.js';
import { SystemClock } from '../../src/shared/clock.js';
import { PgpilotError } from '../../src/shared/errors.js';
import { waitUntil } from '../helpers/wait.js';

export interface ObjectStoreHarness {
  store: ObjectStore;
  close(): Promise<void>;
}

/** S3 reports LastModified in whole seconds and file mtimes lag the wall clock by a tick. */
const TIME_SLACK_MS = 2_000;
const MIB = 1024 * 1024;
const realClock = new SystemClock();

/** A key prefix no other test (or earlier run) uses; ends with '/'. */
export function uniqueObjectPrefix(name: string): string {
  return `contract/${name}-${randomBytes(4).toString('hex')}/`;
}

export function isInputInvalid(error: unknown): boolean {
  return error instanceof PgpilotError && error.code === 'INPUT_INVALID';
}

export async function streamSha256(stream: Readable): Promise<{ sha256: string; sizeBytes: number }> {
  const hash = createHash('sha256');
  let sizeBytes = 0;
  for await (const chunk of stream) {
    const bytes = chunk as Buffer;
    hash.update(bytes);
    sizeBytes += bytes.length;
  }
  return { sha256: hash.digest('hex'), sizeBytes };
}

/** A stream of `sizeBytes` pseudo-random bytes in 64 KiB chunks, and (once consumed) their sha256. */
export function generatedBody(sizeBytes: number): { body: Readable; digest: () => string } {
  const hash = createHash('sha256');
  let digest: string | null = null;
  function* chunks(): Generator<Buffer> {
    const chunkBytes = 64 * 1024;
    for (let sent = 0; sent < sizeBytes; sent += chunkBytes) {
      const chunk = randomBytes(Math.min(chunkBytes, sizeBytes - sent));
      hash.update(chunk);
      yield chunk;
    }
    digest = hash.digest('hex');
  }
  return {
    body: Readable.from(chunks()),
    digest: () => {
      if (digest === null) throw new Error('the body was not consumed completely');
      return digest;
    },
  };
}

/** Runs `work` over `items` with at most `concurrency` in flight. */
export async function forEachConcurrently<T>(items: readonly T[], concurrency: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next] as T;
      next += 1;
      await work(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
}

export function runObjectStoreContract(label: string, makeHarness: () => Promise<ObjectStoreHarness>): void {
  void describe(`ObjectStore contract: ${label}`, () => {
    let harness: ObjectStoreHarness | undefined;
    const store = (): ObjectStore => {
      if (harness === undefined) throw new Error('the harness did not start');
      return harness.store;
    };

    before(async () => {
      harness = await makeHarness();
    });

    after(async () => {
      await harness?.close();
    });

    void it('has a description', () => {
      assert.match(store().description, /^[a-z0-9]+:\/\/\S+$/);
    });

    void it('answers null for a missing object and [] for a prefix with nothing under it', async () => {
      const prefix = uniqueObjectPrefix('missing');
      assert.equal(await store().get(`${prefix}nope`), null);
      assert.equal(await store().getBuffer(`${prefix}nope`), null);
      assert.equal(await store().head(`${prefix}nope`), null);
      assert.deepEqual(await store().list(prefix), []);
      await store().delete([`${prefix}nope`, `${prefix}deeper/nope`]);
    });

    void it('stores a buffer and returns it through get, getBuffer, head and list', async () => {
      const prefix = uniqueObjectPrefix('round-trip');
      const key = `${prefix}A-Z_a.z-0_9/x.y_z`;
      const body = randomBytes(3000);
      const beforeMs = realClock.nowMs();
      await store().put(key, body);
      const afterMs = realClock.nowMs();

      assert.deepEqual(await store().getBuffer(key), body);
      const stream = await store().get(key);
      assert.ok(stream !== null);
      const streamed = await streamSha256(stream);
      assert.deepEqual(streamed, { sha256: createHash('sha256').update(body).digest('hex'), sizeBytes: body.length });

      const head = await store().head(key);
      assert.ok(head !== null);
      assert.equal(head.key, key);
      assert.equal(head.sizeBytes, body.length);
      assert.deepEqual(head.metadata, {});
      assert.ok(
        head.lastModifiedMs >= beforeMs - TIME_SLACK_MS && head.lastModifiedMs <= afterMs + TIME_SLACK_MS,
        `lastModifiedMs ${head.lastModifiedMs} is not within the put (${beforeMs}..${afterMs})`,
      );
      const listed = await store().list(prefix);
      assert.deepEqual(listed, [{ key, sizeBytes: body.length, lastModifiedMs: listed[0]?.lastModifiedMs }]);
      assert.ok(Math.abs((listed[0]?.lastModifiedMs ?? 0) - head.lastModifiedMs) <= TIME_SLACK_MS);
    });

    void it('stores an empty object', async () => {
      const key = `${uniqueObjectPrefix('empty')}zero`;
      await store().put(key, Buffer.alloc(0));
      assert.deepEqual(await store().getBuffer(key), Buffer.alloc(0));
      assert.equal((await store().head(key))?.sizeBytes, 0);
      const stream = await store().get(key);
      assert.ok(stream !== null);
      assert.equal((await streamSha256(stream)).sizeBytes, 0);
    });

    void it('round-trips metadata exactly and replaces it with the object on overwrite', async () => {
      const key = `${uniqueObjectPrefix('metadata')}obj`;
      const metadata = {
        sha256: createHash('sha256').update('x').digest('hex'),
        'wal-segment': '000000010000000000000001',
        'size-bytes': '16777216',
        punctuation: 'a b!#$%&()*+,-./:;<=>?@[]^_`{|}~z',
      };
      await store().put(key, Buffer.from('one'), { metadata });
      assert.deepEqual((await store().head(key))?.metadata, metadata);

      await store().put(key, Buffer.from('second'), { metadata: { generation: '2' } });
      const second = await store().head(key);
      assert.deepEqual(second?.metadata, { generation: '2' }, 'old metadata keys do not survive an overwrite');
      assert.equal(second?.sizeBytes, 6);
      assert.deepEqual(await store().getBuffer(key), Buffer.from('second'));

      await store().put(key, Buffer.from('3'));
      assert.deepEqual((await store().head(key))?.metadata, {}, 'a put without metadata clears it');
      assert.deepEqual(await store().getBuffer(key), Buffer.from('3'));
      assert.equal((await store().list(key)).length, 1, 'an overwrite is one object');
    });

    void it('lists by plain string prefix, recursively, sorted by key', async () => {
      const prefix = uniqueObjectPrefix('list');
      // Put out of order; '-' (0x2d) sorts before '/' (0x2f), so p/b-d comes before p/b/c.
      const keys = ['b/e/f', 'ab', 'b/c', 'b-d', 'a', 'c.txt'].map((suffix) => `${prefix}${suffix}`);
      for (const [index, key] of keys.entries()) await store().put(key, Buffer.alloc(index + 1, 7));
      const sizeOf = (key: string) => keys.indexOf(key) + 1;
      const listedKeys = async (listPrefix: string) => (await store().list(listPrefix)).map((info) => info.key);

      const all = await store().list(prefix);
      assert.deepEqual(
        all.map((info) => info.key),
        ['a', 'ab', 'b-d', 'b/c', 'b/e/f', 'c.txt'].map((suffix) => `${prefix}${suffix}`),
      );
      for (const info of all) assert.equal(info.sizeBytes, sizeOf(info.key), `size of ${info.key}`);
      assert.deepEqual(await listedKeys(`${prefix}a`), [`${prefix}a`, `${prefix}ab`], 'a partial last segment matches');
      assert.deepEqual(await listedKeys(`${prefix}b`), [`${prefix}b-d`, `${prefix}b/c`, `${prefix}b/e/f`]);
      assert.deepEqual(await listedKeys(`${prefix}b/`), [`${prefix}b/c`, `${prefix}b/e/f`]);
      assert.deepEqual(await listedKeys(`${prefix}b/e/f`), [`${prefix}b/e/f`], 'a whole key lists itself');
      assert.deepEqual(await listedKeys(`${prefix}zz`), []);
      assert.deepEqual(await listedKeys(prefix.slice(0, -1)), await listedKeys(prefix), 'without the trailing slash');
      const everything = await listedKeys('');
      for (const key of keys) assert.ok(everything.includes(key), `list('') includes ${key}`);
      assert.deepEqual(everything, [...everything].sort(), "list('') is sorted too");
    });

    void it('deletes what exists, ignores what does not, and validates every key before deleting any', async () => {
      const prefix = uniqueObjectPrefix('delete');
      const [a, b, c] = ['a', 'sub/b', 'sub/c'].map((suffix) => `${prefix}${suffix}`) as [string, string, string];
      for (const key of [a, b, c]) await store().put(key, Buffer.from(key));
      await assert.rejects(store().delete([a, '../escape']), isInputInvalid);
      assert.ok((await store().head(a)) !== null, 'nothing is deleted when one key is invalid');

      await store().delete([a, b, `${prefix}never-existed`, a]);
      assert.equal(await store().getBuffer(a), null);
      assert.equal(await store().head(b), null);
      assert.deepEqual(
        (await store().list(prefix)).map((info) => info.key),
        [c],
      );
      await store().delete([]);
      await store().delete([c]);
      assert.deepEqual(await store().list(prefix), []);
      // The "directory" of deleted keys can be used again.
      await store().put(b, Buffer.from('again'));
      assert.deepEqual(await store().getBuffer(b), Buffer.from('again'));
    });

    void it('rejects invalid keys, prefixes and metadata with INPUT_INVALID before any I/O', async () => {
      const badKeys = [
        '',
        '/abs',
        'a/../b',
        '..',
        '.',
        'a/./b',
        'a//b',
        'a/',
        'has space',
        'back\\slash',
        'ümlaut',
        'q?x',
        'x'.repeat(1025),
        `${'y'.repeat(201)}/z`,
        '.hidden',
        'dir/.tmp-file',
        'obj.meta.json',
      ];
      for (const key of badKeys) {
        const shown = JSON.stringify(key.slice(0, 20));
        await assert.rejects(store().put(key, Buffer.from('x')), isInputInvalid, `put ${shown}`);
        await assert.rejects(store().get(key), isInputInvalid, `get ${shown}`);
        await assert.rejects(store().getBuffer(key), isInputInvalid, `getBuffer ${shown}`);
        await assert.rejects(store().head(key), isInputInvalid, `head ${shown}`);
        await assert.rejects(store().delete([key]), isInputInvalid, `delete ${shown}`);
      }
      for (const prefix of ['/abs', '../', 'a//', 'a/../', 'sp ace', '.x']) {
        await assert.rejects(store().list(prefix), isInputInvalid, `list ${JSON.stringify(prefix)}`);
      }
      const key = `${uniqueObjectPrefix('bad-metadata')}k`;
      const badMetadata: Array<Record<string, string>> = [
        { Upper: 'x' },
        { under_score: 'x' },
        { '': 'x' },
        { ok: 'non-ascii é' },
        { ok: 'line\nbreak' },
        { ok: ' leading space' },
        { ok: 'x'.repeat(2100) },
      ];
      for (const metadata of badMetadata) {
        await assert.rejects(store().put(key, Buffer.from('x'), { metadata }), isInputInvalid, JSON.stringify(metadata).slice(0, 40));
      }
      assert.equal(await store().head(key), null, 'a rejected put stores nothing');
    });

    void it('round-trips a 20 MiB stream byte for byte', async () => {
      const key = `${uniqueObjectPrefix('big')}base.tar`;
      const sizeBytes = 20 * MIB + 12_345;
      const { body, digest } = generatedBody(sizeBytes);
      await store().put(key, body, { metadata: { kind: 'stream' } });
      const expected = digest();

      const stream = await store().get(key);
      assert.ok(stream !== null);
      assert.deepEqual(await streamSha256(stream), { sha256: expected, sizeBytes });
      const head = await store().head(key);
      assert.equal(head?.sizeBytes, sizeBytes);
      assert.deepEqual(head?.metadata, { kind: 'stream' });
      const buffer = await store().getBuffer(key);
      assert.equal(buffer?.length, sizeBytes);
      assert.equal(createHash('sha256').update(buffer ?? Buffer.alloc(0)).digest('hex'), expected);
      await store().delete([key]);
    });

    void it('keeps an object being written invisible, and the previous one readable, until put resolves', async () => {
      const prefix = uniqueObjectPrefix('atomic');
      const key = `${prefix}segment`;
      await store().put(key, Buffer.from('old'), { metadata: { generation: '1' } });
      const body = new PassThrough();
      const firstHalf = randomBytes(256 * 1024);
      const secondHalf = randomBytes(256 * 1024);
      body.write(firstHalf);
      const putting = store().put(key, body, { metadata: { generation: '2' } });
      let settled = false;
      void putting.then(
        () => (settled = true),
        () => (settled = true),
      );
      await waitUntil('the store to consume the first half of the body', () => Promise.resolve(body.readableLength === 0), 10_000, 5);
      assert.equal(settled, false, 'put cannot finish before the body ends');
      assert.deepEqual(await store().getBuffer(key), Buffer.from('old'), 'readers see the previous object');
      assert.deepEqual((await store().head(key))?.metadata, { generation: '1' });
      assert.deepEqual(
        (await store().list(prefix)).map((info) => [info.key, info.sizeBytes]),
        [[key, 3]],
        'no partial or temporary object is listed',
      );
      body.end(secondHalf);
      await putting;
      assert.deepEqual(await store().getBuffer(key), Buffer.concat([firstHalf, secondHalf]));
      assert.deepEqual((await store().head(key))?.metadata, { generation: '2' });
      assert.deepEqual((await store().list(prefix)).map((info) => info.key), [key]);
    });

    void it('leaves the previous object intact when the body stream fails', async () => {
      const prefix = uniqueObjectPrefix('failed-put');
      const key = `${prefix}obj`;
      await store().put(key, Buffer.from('previous'), { metadata: { generation: '1' } });
      function* breaking(): Generator<Buffer> {
        yield randomBytes(128 * 1024);
        yield randomBytes(128 * 1024);
        throw new Error('the source broke');
      }
      await assert.rejects(store().put(key, Readable.from(breaking()), { metadata: { generation: '2' } }), /the source broke/);
      assert.deepEqual(await store().getBuffer(key), Buffer.from('previous'));
      assert.deepEqual((await store().head(key))?.metadata, { generation: '1' });
      assert.deepEqual((await store().list(prefix)).map((info) => info.key), [key], 'no debris is listed');

      await assert.rejects(store().put(`${prefix}new`, Readable.from(breaking())), /the source broke/);
      assert.equal(await store().head(`${prefix}new`), null, 'a failed first put leaves no object');
    });

    void it('lists and deletes more than 1000 objects (all pages)', async () => {
      const prefix = uniqueObjectPrefix('many');
      const count = 1100;
      const keys = Array.from({ length: count }, (_, index) => `${prefix}k-${String(index).padStart(4, '0')}`);
      await forEachConcurrently(keys, 16, (key) => store().put(key, Buffer.from(key.slice(-4))));

      const listed = await store().list(prefix);
      assert.equal(listed.length, count);
      assert.deepEqual(
        listed.map((info) => info.key),
        keys,
      );
      assert.ok(listed.every((info) => info.sizeBytes === 4));
      assert.deepEqual(
        (await store().list(`${prefix}k-10`)).map((info) => info.key),
        keys.slice(1000, 1100),
      );

      await store().delete(keys);
      assert.deepEqual(await store().list(prefix), []);
    });
  });
}
