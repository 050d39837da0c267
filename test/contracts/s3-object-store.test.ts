/**
 * S3ObjectStore against the ObjectStore contract on a real S3-compatible server (s3rver on a free
 * loopback port, its own temp directory and bucket, stopped in `after` even when a test fails),
 * plus failure mapping: an unreachable endpoint, a missing bucket and refused credentials are
 * retryable STORE_UNAVAILABLE within seconds, and no message ever contains a credential.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Readable } from 'node:stream';
import { S3ObjectStore } from '../../src/backup/s3-object-store.js';
import { openObjectStore } from '../../src/backup/store-config.js';
import { SystemClock } from '../../src/shared/clock.js';
import { PgpilotError } from '../../src/shared/errors.js';
import { findFreePort } from '../../src/shared/ports.js';
import { startS3Server, type S3TestServer } from '../helpers/s3-server.js';
import { generatedBody, runObjectStoreContract, streamSha256 } from './object-store-contract.js';

const realClock = new SystemClock();
let server: S3TestServer | undefined;
const started = async (): Promise<S3TestServer> => {
  server ??= await startS3Server({ bucket: 'pgpilot-contract', extraBuckets: ['pgpilot-other'] });
  return server;
};

after(async () => {
  await server?.stop();
});

runObjectStoreContract('S3ObjectStore (s3rver, bucket root)', async () => {
  const s3 = await started();
  const store = openObjectStore(s3.storeConfig(''));
  return { store, close: () => store.close() };
});

runObjectStoreContract('S3ObjectStore (s3rver, under a prefix)', async () => {
  const s3 = await started();
  const store = openObjectStore(s3.storeConfig('cluster-a/backups'));
  return { store, close: () => store.close() };
});

const SECRET = `secret-${randomBytes(12).toString('hex')}`;
const KEY_ID = `AKIA${randomBytes(8).toString('hex').toUpperCase()}`;

/** The error is retryable STORE_UNAVAILABLE naming the store, and nothing in it shows a credential. */
function assertUnavailableWithoutSecrets(error: unknown, description: string): true {
  assert.ok(error instanceof PgpilotError, `not a PgpilotError: ${String(error)}`);
  assert.equal(error.code, 'STORE_UNAVAILABLE', error.message);
  assert.equal(error.retryable, true);
  assert.ok(error.message.includes(description), `the message names the store: ${error.message}`);
  assert.ok((error.hint ?? '').includes(description), 'the hint names the store');
  assert.ok(!error.message.includes('\n'), 'one line');
  const everything = [error.message, error.hint ?? '', String(error.cause), error.stack ?? '', JSON.stringify(error)].join(' ');
  for (const secret of [SECRET, KEY_ID]) assert.ok(!everything.includes(secret), `a credential leaked: ${everything}`);
  return true;
}

void describe('S3ObjectStore failures', () => {
  let s3: S3TestServer;
  before(async () => {
    s3 = await started();
  });

  void it('an unreachable endpoint is STORE_UNAVAILABLE within seconds, without credentials in the message', async () => {
    const port = await findFreePort();
    const store = new S3ObjectStore({
      bucket: 'nowhere',
      prefix: 'p',
      endpoint: `http://127.0.0.1:${port}`,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: KEY_ID, secretAccessKey: SECRET },
    });
    try {
      const calls: Array<[string, () => Promise<unknown>]> = [
        ['put', () => store.put('k', Buffer.from('v'))],
        ['put stream', () => store.put('k', Readable.from([Buffer.from('v')]))],
        ['get', () => store.get('k')],
        ['getBuffer', () => store.getBuffer('k')],
        ['head', () => store.head('k')],
        ['list', () => store.list('')],
        ['delete', () => store.delete(['k'])],
      ];
      for (const [name, call] of calls) {
        const startedMs = realClock.nowMs();
        await assert.rejects(call(), (error: unknown) => assertUnavailableWithoutSecrets(error, store.description), name);
        const elapsedMs = realClock.nowMs() - startedMs;
        assert.ok(elapsedMs < 10_000, `${name} took ${elapsedMs} ms`);
      }
    } finally {
      await store.close();
    }
  });

  void it('a missing bucket is STORE_UNAVAILABLE that says so', async () => {
    const store = new S3ObjectStore({
      bucket: 'no-such-bucket',
      prefix: '',
      endpoint: s3.endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    });
    try {
      for (const call of [() => store.put('k', Buffer.from('v')), () => store.list(''), () => store.getBuffer('k')]) {
        await assert.rejects(call(), (error: unknown) => {
          assertUnavailableWithoutSecrets(error, store.description);
          assert.match((error as Error).message, /no-such-bucket|NoSuchBucket/);
          return true;
        });
      }
    } finally {
      await store.close();
    }
  });

  void it('refused credentials are STORE_UNAVAILABLE without the credentials in the message', async () => {
    const store = new S3ObjectStore({
      bucket: s3.bucket,
      prefix: '',
      endpoint: s3.endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: KEY_ID, secretAccessKey: SECRET },
    });
    try {
      await assert.rejects(store.put('k', Buffer.from('v')), (error: unknown) => {
        assertUnavailableWithoutSecrets(error, store.description);
        assert.match((error as Error).message, /InvalidAccessKeyId/);
        return true;
      });
      await assert.rejects(store.list(''), (error: unknown) => assertUnavailableWithoutSecrets(error, store.description));
    } finally {
      await store.close();
    }
  });

  void it('keeps stores with different prefixes (and buckets) apart', async () => {
    const a = openObjectStore(s3.storeConfig('iso/a'));
    const b = openObjectStore(s3.storeConfig('iso/ab'));
    const other = openObjectStore({ ...s3.storeConfig('iso/a'), ...{ bucket: 'pgpilot-other' } });
    const root = openObjectStore(s3.storeConfig(''));
    try {
      await a.put('k', Buffer.from('a'));
      await b.put('k', Buffer.from('b'));
      assert.deepEqual(await a.getBuffer('k'), Buffer.from('a'));
      assert.deepEqual((await a.list('')).map((info) => info.key), ['k'], "a prefix store does not see a sibling whose name extends its prefix");
      assert.equal(await other.getBuffer('k'), null);
      assert.deepEqual((await root.list('iso/')).map((info) => info.key), ['iso/a/k', 'iso/ab/k']);
      await a.delete(['k']);
      assert.deepEqual(await b.getBuffer('k'), Buffer.from('b'));
    } finally {
      await Promise.all([a.close(), b.close(), other.close(), root.close()]);
    }
  });

  void it('a body failing after the multipart upload began leaves the previous object and rethrows the body error', async () => {
    const config = s3.storeConfig('multipart');
    assert.ok(config.kind === 's3');
    const store = new S3ObjectStore({ ...config, partSizeBytes: 5 * 1024 * 1024 });
    try {
      await store.put('obj', Buffer.from('previous'));
      function* failsAfterOnePart(): Generator<Buffer> {
        for (let i = 0; i < 7; i += 1) yield randomBytes(1024 * 1024);
        throw new Error('the source broke mid-upload');
      }
      await assert.rejects(store.put('obj', Readable.from(failsAfterOnePart())), /the source broke mid-upload/);
      assert.deepEqual(await store.getBuffer('obj'), Buffer.from('previous'));

      const sizeBytes = 11 * 1024 * 1024 + 7;
      const { body, digest } = generatedBody(sizeBytes);
      await store.put('obj', body);
      const stream = await store.get('obj');
      assert.ok(stream !== null);
      assert.deepEqual(await streamSha256(stream), { sha256: digest(), sizeBytes });
    } finally {
      await store.close();
    }
  });
});
