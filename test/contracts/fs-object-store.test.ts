/**
 * FsObjectStore against the ObjectStore contract, plus the file layout (sidecars, temp files,
 * modes), crash debris staying invisible, key/directory conflicts, I/O errors as
 * STORE_UNAVAILABLE, and (when the tests run as root) the store used by the postgres OS user.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmod, chown, mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FsObjectStore } from '../../src/backup/fs-object-store.js';
import { putFile } from '../../src/backup/object-store.js';
import { MemoryObjectStore } from '../fakes/memory-object-store.js';
import { PgpilotError } from '../../src/shared/errors.js';
import { asPostgresUser, POSTGRES_OS_USER } from '../../src/shared/process-runner.js';
import { isInputInvalid, runObjectStoreContract } from './object-store-contract.js';

async function tempDir(name: string): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), `pgpilot-fs-store-${name}-`));
}

runObjectStoreContract('FsObjectStore', async () => {
  const dir = await tempDir('contract');
  const store = new FsObjectStore(path.join(dir, 'store'));
  return {
    store,
    close: async () => {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});

function isUnavailable(error: unknown): boolean {
  return error instanceof PgpilotError && error.code === 'STORE_UNAVAILABLE' && error.retryable && (error.hint ?? '').includes('file://');
}

/** Every file under `dir`, relative, sorted. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((entry) => entry.isFile())
    .map((entry) => path.relative(dir, path.join(entry.parentPath, entry.name)))
    .sort();
}

void describe('FsObjectStore specifics', () => {
  let dir: string;
  before(async () => {
    dir = await tempDir('specifics');
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  void it('lays objects out as files, metadata as sidecars, with the configured modes', async () => {
    const root = path.join(dir, 'layout');
    const store = new FsObjectStore(root, { fileMode: 0o640, dirMode: 0o750 });
    assert.equal(store.description, `file://${root}`);
    await store.put('base/b1/base.tar', Buffer.from('tar'), { metadata: { sha256: 'abc' } });
    await store.put('wal/000000010000000000000001', Buffer.from('wal'));
    assert.deepEqual(await filesUnder(root), ['base/b1/base.tar', 'base/b1/base.tar.meta.json', 'wal/000000010000000000000001']);
    assert.deepEqual(JSON.parse(await readFile(path.join(root, 'base/b1/base.tar.meta.json'), 'utf8')), { sha256: 'abc' });
    const umask = process.umask();
    assert.equal((await stat(path.join(root, 'base/b1/base.tar'))).mode & 0o777, 0o640 & ~umask);
    assert.equal((await stat(path.join(root, 'base/b1/base.tar.meta.json'))).mode & 0o777, 0o640 & ~umask);
    assert.equal((await stat(path.join(root, 'base/b1'))).mode & 0o777, 0o750 & ~umask);

    const defaults = new FsObjectStore(path.join(dir, 'defaults'));
    await defaults.put('x/y', Buffer.from('1'));
    assert.equal((await stat(path.join(dir, 'defaults/x/y'))).mode & 0o777, 0o600 & ~umask);
    assert.equal((await stat(path.join(dir, 'defaults/x'))).mode & 0o777, 0o700 & ~umask);

    await store.put('base/b1/base.tar', Buffer.from('tar2'));
    assert.deepEqual(await filesUnder(path.join(root, 'base')), ['b1/base.tar'], 'a put without metadata removes the sidecar');
    await store.delete(['base/b1/base.tar']);
    assert.deepEqual(await readdir(root), ['wal'], 'directories left empty by a delete are removed');
  });

  void it('never lists crash debris: temp files, orphaned sidecars, symlinks', async () => {
    const root = path.join(dir, 'debris');
    const store = new FsObjectStore(root);
    await store.put('wal/a', Buffer.from('a'));
    await writeFile(path.join(root, 'wal/.b.tmp-0123456789ab'), 'partial');
    await writeFile(path.join(root, 'wal/c.meta.json'), '{}');
    await writeFile(path.join(root, 'wal/.c.meta.json.tmp-0123456789ab'), '{');
    assert.deepEqual((await store.list('')).map((info) => info.key), ['wal/a']);
    assert.equal(await store.head('wal/c'), null);
    assert.equal(await store.get('wal/b'), null);
  });

  void it('reports a corrupt sidecar as BACKUP_CORRUPT', async () => {
    const root = path.join(dir, 'corrupt-sidecar');
    const store = new FsObjectStore(root);
    await store.put('k', Buffer.from('v'), { metadata: { a: '1' } });
    await writeFile(path.join(root, 'k.meta.json'), '{"a": 1');
    await assert.rejects(store.head('k'), (error: unknown) => error instanceof PgpilotError && error.code === 'BACKUP_CORRUPT');
    assert.deepEqual(await store.getBuffer('k'), Buffer.from('v'), 'the object itself is still readable');
  });

  void it('rejects a key that collides with a directory of keys or lies under an object', async () => {
    const store = new FsObjectStore(path.join(dir, 'conflicts'));
    await store.put('a/b', Buffer.from('1'));
    await assert.rejects(store.put('a', Buffer.from('2')), isInputInvalid);
    await assert.rejects(store.put('a/b/c', Buffer.from('3')), isInputInvalid);
    assert.equal(await store.getBuffer('a'), null, 'a directory is not an object');
    assert.equal(await store.head('a/b/c'), null);
    assert.deepEqual((await store.list('')).map((info) => info.key), ['a/b']);
  });

  void it('maps I/O failures to retryable STORE_UNAVAILABLE naming the store', async () => {
    const file = path.join(dir, 'a-file');
    await writeFile(file, 'not a directory');
    const store = new FsObjectStore(path.join(file, 'store'));
    await assert.rejects(store.put('k', Buffer.from('v')), isUnavailable);
    assert.throws(() => new FsObjectStore('relative/dir'), isInputInvalid);
  });

  void it('rethrows the error of a failing body stream as it is', async () => {
    const store = new FsObjectStore(path.join(dir, 'body-error'));
    const { Readable } = await import('node:stream');
    function* broken(): Generator<Buffer> {
      yield Buffer.from('x');
      throw new Error('caller stream failed');
    }
    await assert.rejects(store.put('k', Readable.from(broken())), (error: unknown) => !(error instanceof PgpilotError) && /caller stream failed/.test(String(error)));
    assert.deepEqual(await filesUnder(path.join(dir, 'body-error')), [], 'the temp file is removed');
  });

  const asRoot = process.getuid?.() === 0;
  void it('works for the postgres OS user in a directory it owns, and reports a directory it cannot write', { skip: asRoot ? false : 'needs root to switch to the postgres OS user' }, async () => {
    const owned = path.join(dir, 'postgres-owned');
    await mkdir(owned, { mode: 0o700 });
    const ids = spawnSync('id', ['-u', POSTGRES_OS_USER], { encoding: 'utf8' });
    const gids = spawnSync('id', ['-g', POSTGRES_OS_USER], { encoding: 'utf8' });
    assert.equal(ids.status, 0, `the ${POSTGRES_OS_USER} OS user exists`);
    await chown(owned, Number(ids.stdout.trim()), Number(gids.stdout.trim()));
    await chmod(dir, 0o755);
    const rootOnly = path.join(dir, 'root-only');
    await mkdir(rootOnly, { mode: 0o700 });

    const moduleUrl = new URL('../../src/backup/fs-object-store.js', import.meta.url).href;
    const script = `
      const { FsObjectStore } = await import(${JSON.stringify(moduleUrl)});
      const out = {};
      const store = new FsObjectStore(${JSON.stringify(path.join(owned, 'backups'))});
      await store.put('wal/000000010000000000000001', Buffer.from('segment'), { metadata: { sha256: 'x' } });
      out.listed = (await store.list('')).map((info) => info.key);
      out.body = (await store.getBuffer('wal/000000010000000000000001')).toString();
      out.metadata = (await store.head('wal/000000010000000000000001')).metadata;
      try {
        await new FsObjectStore(${JSON.stringify(path.join(rootOnly, 'backups'))}).put('k', Buffer.from('v'));
        out.denied = 'no error';
      } catch (error) {
        out.denied = error.code + ' ' + error.retryable + ' ' + error.message;
      }
      process.stdout.write(JSON.stringify(out));
    `;
    const wrapped = asPostgresUser(process.execPath, ['--input-type=module', '-e', script]);
    const child = spawnSync(wrapped.command, wrapped.args, { encoding: 'utf8', timeout: 20_000, cwd: '/' });
    assert.equal(child.status, 0, `child failed: ${child.stderr}`);
    const out = JSON.parse(child.stdout) as { listed: string[]; body: string; metadata: Record<string, string>; denied: string };
    assert.deepEqual(out.listed, ['wal/000000010000000000000001']);
    assert.equal(out.body, 'segment');
    assert.deepEqual(out.metadata, { sha256: 'x' });
    assert.match(out.denied, /^STORE_UNAVAILABLE true .*EACCES/);
    const written = await stat(path.join(owned, 'backups/wal/000000010000000000000001'));
    assert.equal(written.uid, Number(ids.stdout.trim()), 'files belong to the user that wrote them');
  });
});

void describe('putFile', () => {
  let dir = '';
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'pgpilot-putfile-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  void it('copies a local file into a directory store (atomically, with metadata); other stores get a stream', async () => {
    const source = path.join(dir, 'source.bin');
    const bytes = Buffer.alloc(3 * 1024 * 1024 + 17, 0);
    for (let i = 0; i < bytes.length; i += 4096) bytes[i] = i % 251;
    await writeFile(source, bytes);
    const store = new FsObjectStore(path.join(dir, 'store'));
    await putFile(store, 'c/basebackups/1/base.tar.gz', source, { metadata: { sha256: 'abc' } });
    assert.ok((await store.getBuffer('c/basebackups/1/base.tar.gz'))?.equals(bytes));
    assert.deepEqual((await store.head('c/basebackups/1/base.tar.gz'))?.metadata, { sha256: 'abc' });
    assert.deepEqual(await readdir(path.join(dir, 'store/c/basebackups/1')), ['base.tar.gz', 'base.tar.gz.meta.json'], 'no temp file left');
    const memory = new MemoryObjectStore();
    await putFile(memory, 'k', source);
    assert.ok((await memory.getBuffer('k'))?.equals(bytes));
    await assert.rejects(putFile(store, 'c/missing', path.join(dir, 'nope')), (error: unknown) => error instanceof PgpilotError);
    assert.equal(await store.head('c/missing'), null);
  });
});
