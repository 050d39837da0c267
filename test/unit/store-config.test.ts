/** Store URLs and the store config file: parsing, defaults, round trips, and what is rejected. */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FsObjectStore } from '../../src/backup/fs-object-store.js';
import { S3ObjectStore } from '../../src/backup/s3-object-store.js';
import {
  ACCEPTED_STORE_URLS,
  describeStore,
  openObjectStore,
  parseStoreUrl,
  readStoreConfigFile,
  writeStoreConfigFile,
  type StoreConfig,
} from '../../src/backup/store-config.js';
import { PgpilotError } from '../../src/shared/errors.js';

function rejectsUrl(url: string, pattern?: RegExp): void {
  assert.throws(
    () => parseStoreUrl(url),
    (error: unknown) => {
      assert.ok(error instanceof PgpilotError, String(error));
      assert.equal(error.code, 'INPUT_INVALID');
      assert.equal(error.hint, ACCEPTED_STORE_URLS);
      assert.match(error.hint ?? '', /file:\/\/\/abs\/path.*s3:\/\/BUCKET/);
      if (pattern) assert.match(error.message, pattern);
      return true;
    },
    url,
  );
}

void describe('parseStoreUrl', () => {
  void it('accepts absolute paths and file URLs as directory stores', () => {
    assert.deepEqual(parseStoreUrl('/var/lib/pgpilot/backups'), { kind: 'fs', rootDir: '/var/lib/pgpilot/backups' });
    assert.deepEqual(parseStoreUrl('/var/lib/pgpilot/backups/'), { kind: 'fs', rootDir: '/var/lib/pgpilot/backups' });
    assert.deepEqual(parseStoreUrl('/var/lib/../lib/x'), { kind: 'fs', rootDir: '/var/lib/x' });
    assert.deepEqual(parseStoreUrl('file:///srv/backups'), { kind: 'fs', rootDir: '/srv/backups' });
    assert.deepEqual(parseStoreUrl('file://localhost/srv/backups'), { kind: 'fs', rootDir: '/srv/backups' });
    assert.deepEqual(parseStoreUrl('file:///srv/with%20space'), { kind: 'fs', rootDir: '/srv/with space' });
  });

  void it('parses s3 URLs with their defaults', () => {
    assert.deepEqual(parseStoreUrl('s3://my-bucket'), {
      kind: 's3',
      bucket: 'my-bucket',
      prefix: '',
      region: 'us-east-1',
      forcePathStyle: false,
    });
    assert.deepEqual(parseStoreUrl('s3://my.bucket/pgpilot/cluster-a/'), {
      kind: 's3',
      bucket: 'my.bucket',
      prefix: 'pgpilot/cluster-a',
      region: 'us-east-1',
      forcePathStyle: false,
    });
    assert.deepEqual(parseStoreUrl('s3://b01/p?endpoint=http://127.0.0.1:9000'), {
      kind: 's3',
      bucket: 'b01',
      prefix: 'p',
      endpoint: 'http://127.0.0.1:9000',
      region: 'us-east-1',
      forcePathStyle: true,
    });
    assert.deepEqual(parseStoreUrl('s3://b01?endpoint=https://minio.internal/&region=eu-west-3&force-path-style=false'), {
      kind: 's3',
      bucket: 'b01',
      prefix: '',
      endpoint: 'https://minio.internal',
      region: 'eu-west-3',
      forcePathStyle: false,
    });
    assert.equal((parseStoreUrl('s3://b01?force-path-style=true') as { forcePathStyle: boolean }).forcePathStyle, true);
    assert.equal(
      (parseStoreUrl('s3://b01?endpoint=http%3A%2F%2F127.0.0.1%3A9000') as { endpoint?: string }).endpoint,
      'http://127.0.0.1:9000',
      'a percent-encoded endpoint is decoded',
    );
  });

  void it('rejects everything else with INPUT_INVALID and the accepted forms', () => {
    rejectsUrl('', /empty/);
    rejectsUrl('   ', /empty/);
    rejectsUrl(' /x', /spaces/);
    rejectsUrl('relative/dir', /absolute/);
    rejectsUrl('./dir', /absolute/);
    rejectsUrl('/', /root directory/);
    rejectsUrl('file://otherhost/x', /local path/);
    rejectsUrl('file:///x?y=1', /query/);
    rejectsUrl('http://example.com/bucket', /unsupported scheme http:/);
    rejectsUrl('gs://bucket', /unsupported scheme gs:/);
    rejectsUrl('s3://', /bucket name/);
    rejectsUrl('s3://ab', /bucket name/);
    rejectsUrl('s3://Upper', /bucket name/);
    rejectsUrl('s3://under_score', /bucket name/);
    rejectsUrl('s3://a..b', /bucket name/);
    rejectsUrl('s3://bucket:9000', /port/);
    rejectsUrl('s3://bucket/a//b', /prefix/);
    rejectsUrl('s3://bucket/a/../b', /prefix|bucket/);
    rejectsUrl('s3://bucket/sp%20ace', /prefix/);
    rejectsUrl('s3://bucket?foo=1', /unknown query parameter "foo"/);
    rejectsUrl('s3://bucket?region=us-east-1&region=eu-west-1', /twice/);
    rejectsUrl('s3://bucket?region=EU', /region/);
    rejectsUrl('s3://bucket?force-path-style=yes', /force-path-style/);
    rejectsUrl('s3://bucket?endpoint=not-a-url', /endpoint/);
    rejectsUrl('s3://bucket?endpoint=ftp://host', /http/);
    rejectsUrl('s3://bucket?endpoint=http://host/path', /path/);
    rejectsUrl('s3://bucket#frag', /fragment/);
  });

  void it('never echoes credentials given in a URL', () => {
    for (const url of ['s3://AKIAEXAMPLE:hunter2secret@bucket/p', 's3://bucket?endpoint=http://user:hunter2secret@127.0.0.1:9000']) {
      assert.throws(
        () => parseStoreUrl(url),
        (error: unknown) => {
          assert.ok(error instanceof PgpilotError);
          assert.equal(error.code, 'INPUT_INVALID');
          assert.match(error.message, /credentials/);
          assert.ok(!`${error.message} ${error.hint}`.includes('hunter2secret'));
          return true;
        },
      );
    }
  });
});

void describe('describeStore', () => {
  void it('round-trips through parseStoreUrl and never shows credentials', () => {
    const configs: StoreConfig[] = [
      { kind: 'fs', rootDir: '/var/lib/pgpilot/backups' },
      { kind: 'fs', rootDir: '/srv/with space' },
      { kind: 's3', bucket: 'b01', prefix: '', region: 'us-east-1', forcePathStyle: false },
      { kind: 's3', bucket: 'b01', prefix: 'a/b', endpoint: 'http://127.0.0.1:9000', region: 'us-east-1', forcePathStyle: true },
      { kind: 's3', bucket: 'b01', prefix: 'a', endpoint: 'https://minio.internal', region: 'eu-west-3', forcePathStyle: false },
      { kind: 's3', bucket: 'b01', prefix: 'a', region: 'eu-west-3', forcePathStyle: true },
    ];
    for (const config of configs) assert.deepEqual(parseStoreUrl(describeStore(config)), config, describeStore(config));
    assert.equal(describeStore(configs[0] as StoreConfig), 'file:///var/lib/pgpilot/backups');
    assert.equal(describeStore(configs[3] as StoreConfig), 's3://b01/a/b?endpoint=http://127.0.0.1:9000');
    const withSecret: StoreConfig = {
      kind: 's3',
      bucket: 'b01',
      prefix: 'p',
      region: 'us-east-1',
      forcePathStyle: false,
      credentials: { accessKeyId: 'AKIAEXAMPLEKEY', secretAccessKey: 'very-secret-value' },
    };
    assert.equal(describeStore(withSecret), 's3://b01/p');
  });

  void it('matches the description of the store it opens', async () => {
    const fs = openObjectStore({ kind: 'fs', rootDir: '/tmp/pgpilot-never-created' });
    assert.ok(fs instanceof FsObjectStore);
    assert.equal(fs.description, 'file:///tmp/pgpilot-never-created');
    const s3Config: StoreConfig = parseStoreUrl('s3://b01/p?endpoint=http://127.0.0.1:9');
    const s3 = openObjectStore(s3Config);
    // The S3 store loads the AWS SDK on first use (it is not an S3ObjectStore until then).
    assert.ok(!(s3 instanceof FsObjectStore));
    assert.equal(s3.description, describeStore(s3Config));
    assert.equal(s3.description, new S3ObjectStore({ bucket: 'b01', prefix: 'p', endpoint: 'http://127.0.0.1:9', region: 'us-east-1', forcePathStyle: true }).description);
    await Promise.all([fs.close(), s3.close()]);
  });
});

void describe('store config file', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'pgpilot-store-config-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  void it('writes mode 0600 JSON of url and credentials, and reads it back', async () => {
    const file = path.join(dir, 'store.json');
    const config: StoreConfig = {
      kind: 's3',
      bucket: 'b01',
      prefix: 'cluster-a',
      endpoint: 'http://127.0.0.1:9000',
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: 'AKIAEXAMPLEKEY', secretAccessKey: 'very/secret+value' },
    };
    await writeFile(file, 'old content', { mode: 0o644 });
    await writeStoreConfigFile(file, config);
    assert.equal((await stat(file)).mode & 0o777, 0o600, 'replaced by a 0600 file');
    assert.deepEqual(JSON.parse(await readFile(file, 'utf8')), {
      url: 's3://b01/cluster-a?endpoint=http://127.0.0.1:9000',
      accessKeyId: 'AKIAEXAMPLEKEY',
      secretAccessKey: 'very/secret+value',
    });
    assert.deepEqual(await readStoreConfigFile(file), config);

    const fsFile = path.join(dir, 'fs.json');
    await writeStoreConfigFile(fsFile, { kind: 'fs', rootDir: '/srv/backups' });
    assert.deepEqual(JSON.parse(await readFile(fsFile, 'utf8')), { url: 'file:///srv/backups' });
    assert.deepEqual(await readStoreConfigFile(fsFile), { kind: 'fs', rootDir: '/srv/backups' });
  });

  void it('without credentials in the file, leaves them to the AWS SDK default chain', async () => {
    const file = path.join(dir, 'no-credentials.json');
    await writeFile(file, JSON.stringify({ url: 's3://b01' }));
    const config = await readStoreConfigFile(file);
    assert.equal('credentials' in config, false);
  });

  void it('rejects a bad file with CONFIG_INVALID naming the file, never echoing a secret', async () => {
    const cases: Array<[string, string, RegExp]> = [
      ['missing.json', '', /cannot read/],
      ['not-json.json', '{"url": "s3://b01", "secretAccessKey": "hunter2secret"', /not valid JSON/],
      ['no-url.json', '{}', /url/],
      ['unknown-field.json', '{"url": "s3://b01", "password": "hunter2secret"}', /password|unrecognized/i],
      ['half-credentials.json', '{"url": "s3://b01", "accessKeyId": "AKIAEXAMPLEKEY"}', /secretAccessKey/],
      ['bad-url.json', '{"url": "ftp://x"}', /url: invalid backup store URL/],
      ['fs-credentials.json', '{"url": "/srv/x", "accessKeyId": "AKIAEXAMPLEKEY", "secretAccessKey": "hunter2secret"}', /only for s3/],
      ['spaces.json', '{"url": "s3://b01", "accessKeyId": "AKIA EXAMPLE", "secretAccessKey": "hunter2secret"}', /accessKeyId/],
    ];
    for (const [name, content, pattern] of cases) {
      const file = path.join(dir, name);
      if (content !== '') await writeFile(file, content, { mode: 0o600 });
      await assert.rejects(
        readStoreConfigFile(file),
        (error: unknown) => {
          assert.ok(error instanceof PgpilotError, String(error));
          assert.equal(error.code, 'CONFIG_INVALID', name);
          assert.ok(error.message.includes(file), `${name}: names the file`);
          assert.match(error.message, pattern, name);
          assert.ok(!`${error.message} ${error.hint} ${String(error.cause)}`.includes('hunter2secret'), `${name}: leaks the secret`);
          return true;
        },
        name,
      );
    }
  });
});
