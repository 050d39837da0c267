/**
 * The WAL archive (src/backup/wal-archive.ts) over the in-memory store: a push stores
 * `<cluster>/wal/<name>.gz` with the sha256 of the RAW file as metadata; pushing the same content
 * again is a no-op success; different content under an archived name never replaces the first copy
 * (it is kept aside as `.conflict-<sha16>`); a fetch restores byte-exact through a temporary file,
 * answers `not-found` (and writes nothing) for a missing name, and refuses a damaged copy with
 * BACKUP_CORRUPT without leaving any file behind; only WAL file names get through; list() shows
 * archived names (never conflict copies or foreign objects). Files live in a per-test temp dir.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { gunzipSync, gzipSync } from 'node:zlib';
import { WalArchive } from '../../src/backup/wal-archive.js';
import { FakeClock } from '../../src/shared/clock.js';
import { isPgpilotError } from '../../src/shared/errors.js';
import { MemoryObjectStore } from '../fakes/memory-object-store.js';

const SEGMENT = '000000010000000000000003';
const START_MS = Date.parse('2026-11-26T07:00:00Z');

let root = '';
let dirCount = 0;

before(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'pgpilot-wal-archive-test-'));
});

after(async () => {
  if (root !== '') await rm(root, { recursive: true, force: true });
});

/** A fresh directory under the test root (one per source file or restore target). */
async function freshDir(): Promise<string> {
  dirCount += 1;
  const dir = path.join(root, `d${dirCount}`);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  return dir;
}

/** Writes `bytes` as `<fresh dir>/<name>` (a pg_wal file as archive_command sees it). */
async function walFile(name: string, bytes: Buffer): Promise<string> {
  const file = path.join(await freshDir(), name);
  await writeFile(file, bytes);
  return file;
}

function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function setup(): { clock: FakeClock; store: MemoryObjectStore; archive: WalArchive } {
  const clock = new FakeClock(START_MS);
  const store = new MemoryObjectStore(clock, 'wal-test');
  return { clock, store, archive: new WalArchive(store, 'shop') };
}

function hasCode(code: string): (error: unknown) => boolean {
  return (error: unknown) => isPgpilotError(error) && error.code === code;
}

async function storedRaw(store: MemoryObjectStore, key: string): Promise<Buffer> {
  const body = await store.getBuffer(key);
  assert.ok(body !== null, `${key} is stored`);
  return gunzipSync(body);
}

void describe('WalArchive.push', () => {
  void it('stores <cluster>/wal/<name>.gz, gzip of the raw bytes, with the raw sha256 and size as metadata', async () => {
    const { store, archive } = setup();
    const raw = randomBytes(64 * 1024);
    const result = await archive.push(await walFile(SEGMENT, raw));
    const key = `shop/wal/${SEGMENT}.gz`;
    const stored = await store.getBuffer(key);
    assert.ok(stored !== null);
    assert.deepEqual(result, { kind: 'archived', key, rawBytes: raw.length, storedBytes: stored.length });
    assert.deepEqual(store.keys(), [key]);
    assert.deepEqual(gunzipSync(stored), raw);
    const head = await store.head(key);
    assert.deepEqual(head?.metadata, { sha256: sha256(raw), 'raw-size': String(raw.length) });
    assert.equal(head?.lastModifiedMs, START_MS);
  });

  void it('compresses a mostly empty 16 MiB segment (what a forced switch writes) by far', async () => {
    const { store, archive } = setup();
    const raw = Buffer.alloc(16 * 1024 * 1024);
    randomBytes(8192).copy(raw, 0);
    const result = await archive.push(await walFile('000000010000000000000004', raw));
    assert.equal(result.kind, 'archived');
    if (result.kind !== 'archived') return;
    assert.equal(result.rawBytes, 16 * 1024 * 1024);
    assert.ok(result.storedBytes < 256 * 1024, `stored ${result.storedBytes} bytes`);
    assert.deepEqual(await storedRaw(store, result.key), raw);
  });

  void it('pushing the same file again is "already-archived" and changes nothing', async () => {
    const { clock, store, archive } = setup();
    const raw = randomBytes(10_000);
    const file = await walFile(SEGMENT, raw);
    await archive.push(file);
    const key = `shop/wal/${SEGMENT}.gz`;
    const bodyBefore = await store.getBuffer(key);
    clock.advance(60_000);
    // Same content from another directory (another member's pg_wal) is the same file.
    for (const again of [file, await walFile(SEGMENT, Buffer.from(raw))]) {
      assert.deepEqual(await archive.push(again), { kind: 'already-archived', key });
    }
    assert.deepEqual(store.keys(), [key]);
    assert.deepEqual(await store.getBuffer(key), bodyBefore);
    assert.equal((await store.head(key))?.lastModifiedMs, START_MS, 'not rewritten');
  });

  void it('different content under an archived name is a conflict: the first copy stays, the second is kept aside', async () => {
    const { store, archive } = setup();
    const first = randomBytes(8000);
    const second = randomBytes(8000);
    await archive.push(await walFile(SEGMENT, first));
    const key = `shop/wal/${SEGMENT}.gz`;
    const firstStored = await store.getBuffer(key);
    const keptAt = `${key}.conflict-${sha256(second).slice(0, 16)}`;

    assert.deepEqual(await archive.push(await walFile(SEGMENT, second)), { kind: 'conflict', key, keptAt });
    assert.deepEqual(store.keys(), [key, keptAt]);
    assert.deepEqual(await store.getBuffer(key), firstStored, 'the archived copy is never overwritten');
    assert.equal((await store.head(key))?.metadata['sha256'], sha256(first));
    assert.deepEqual(await storedRaw(store, keptAt), second);
    assert.equal((await store.head(keptAt))?.metadata['sha256'], sha256(second));

    // Restore reads the first copy only.
    const dest = path.join(await freshDir(), 'RECOVERYXLOG');
    assert.deepEqual(await archive.fetch(SEGMENT, dest), { kind: 'restored', rawBytes: first.length });
    assert.deepEqual(await readFile(dest), first);

    // The first content pushed again is still "already-archived"; the conflicting one again is another conflict report.
    assert.equal((await archive.push(await walFile(SEGMENT, first))).kind, 'already-archived');
    assert.equal((await archive.push(await walFile(SEGMENT, second))).kind, 'conflict');
    assert.deepEqual(store.keys(), [key, keptAt]);
  });

  void it('fails (does not report success) while the store is unavailable, and archives once it is back', async () => {
    const { store, archive } = setup();
    const file = await walFile(SEGMENT, randomBytes(100));
    store.setAvailable(false);
    await assert.rejects(archive.push(file), hasCode('STORE_UNAVAILABLE'));
    store.setAvailable(true);
    assert.deepEqual(store.keys(), []);
    assert.equal((await archive.push(file)).kind, 'archived');
  });

  void it('rejects a missing source file', async () => {
    const { store, archive } = setup();
    await assert.rejects(archive.push(path.join(await freshDir(), SEGMENT)), (error: unknown) => (error as NodeJS.ErrnoException).code === 'ENOENT');
    assert.deepEqual(store.keys(), []);
  });
});

void describe('WalArchive.fetch', () => {
  void it('restores byte-exact to the destination, through no leftover temporary file, mode 0600', async () => {
    const { store, archive } = setup();
    const raw = randomBytes(123_457);
    await archive.push(await walFile(SEGMENT, raw));
    const dir = await freshDir();
    const dest = path.join(dir, 'RECOVERYXLOG');
    assert.deepEqual(await archive.fetch(SEGMENT, dest), { kind: 'restored', rawBytes: raw.length });
    assert.deepEqual(await readFile(dest), raw);
    assert.deepEqual(await readdir(dir), ['RECOVERYXLOG']);
    assert.equal((await stat(dest)).mode & 0o777, 0o600);
    assert.deepEqual(store.keys(), [`shop/wal/${SEGMENT}.gz`], 'fetch writes nothing to the store');
  });

  void it('replaces an existing destination file', async () => {
    const { archive } = setup();
    const raw = randomBytes(500);
    await archive.push(await walFile(SEGMENT, raw));
    const dest = path.join(await freshDir(), 'RECOVERYXLOG');
    await writeFile(dest, 'stale');
    assert.equal((await archive.fetch(SEGMENT, dest)).kind, 'restored');
    assert.deepEqual(await readFile(dest), raw);
  });

  void it('answers not-found for a name that was never archived, and writes no file', async () => {
    const { archive } = setup();
    await archive.push(await walFile(SEGMENT, randomBytes(100)));
    const dir = await freshDir();
    const dest = path.join(dir, 'RECOVERYXLOG');
    assert.deepEqual(await archive.fetch('000000010000000000000004', dest), { kind: 'not-found' });
    assert.deepEqual(await archive.fetch('00000002.history', dest), { kind: 'not-found' });
    assert.deepEqual(await readdir(dir), []);
  });

  void it('does not take another cluster\'s archive for its own', async () => {
    const { store } = setup();
    await new WalArchive(store, 'blog').push(await walFile(SEGMENT, randomBytes(100)));
    const dir = await freshDir();
    assert.deepEqual(await new WalArchive(store, 'shop').fetch(SEGMENT, path.join(dir, 'x')), { kind: 'not-found' });
    assert.deepEqual(await readdir(dir), []);
  });

  void it('never answers not-found while the store is unavailable (recovery would end early)', async () => {
    const { store, archive } = setup();
    await archive.push(await walFile(SEGMENT, randomBytes(100)));
    store.setAvailable(false);
    const dir = await freshDir();
    await assert.rejects(archive.fetch(SEGMENT, path.join(dir, 'x')), hasCode('STORE_UNAVAILABLE'));
    await assert.rejects(archive.fetch('000000010000000000000009', path.join(dir, 'x')), hasCode('STORE_UNAVAILABLE'));
    assert.deepEqual(await readdir(dir), []);
  });

  void it('refuses a damaged copy with BACKUP_CORRUPT and leaves neither the file nor its .pgpilot-partial', async () => {
    const raw = randomBytes(40_000);
    const key = `shop/wal/${SEGMENT}.gz`;
    // A flipped byte in the compressed data, and one in the gzip trailer (CRC32 / size).
    for (const where of ['middle', 'trailer'] as const) {
      const { store, archive } = setup();
      await archive.push(await walFile(SEGMENT, raw));
      const size = (await store.head(key))!.sizeBytes;
      store.corrupt(key, where === 'middle' ? Math.floor(size / 2) : size - 3);
      const dir = await freshDir();
      const dest = path.join(dir, 'RECOVERYXLOG');
      await assert.rejects(archive.fetch(SEGMENT, dest), (error: unknown) => isPgpilotError(error) && error.code === 'BACKUP_CORRUPT' && error.message.includes(SEGMENT), where);
      assert.equal(existsSync(dest), false, where);
      assert.equal(existsSync(`${dest}.pgpilot-partial`), false, where);
      assert.deepEqual(await readdir(dir), [], where);
    }
  });

  void it('refuses valid gzip whose content does not match the recorded sha256, or has no sha256', async () => {
    const { store, archive } = setup();
    const raw = randomBytes(1000);
    const other = randomBytes(1000);
    const key = `shop/wal/${SEGMENT}.gz`;
    await store.put(key, gzipSync(other), { metadata: { sha256: sha256(raw), 'raw-size': '1000' } });
    const dir = await freshDir();
    const dest = path.join(dir, 'RECOVERYXLOG');
    await assert.rejects(archive.fetch(SEGMENT, dest), (error: unknown) => isPgpilotError(error) && error.code === 'BACKUP_CORRUPT' && /does not match its checksum/.test(error.message));
    await store.put(key, gzipSync(raw), { metadata: {} });
    await assert.rejects(archive.fetch(SEGMENT, dest), (error: unknown) => isPgpilotError(error) && error.code === 'BACKUP_CORRUPT' && (error.hint ?? '').includes('missing'));
    assert.deepEqual(await readdir(dir), []);
    // The control: the right metadata restores.
    await store.put(key, gzipSync(raw), { metadata: { sha256: sha256(raw) } });
    assert.equal((await archive.fetch(SEGMENT, dest)).kind, 'restored');
    assert.deepEqual(await readFile(dest), raw);
  });
});

void describe('WalArchive names', () => {
  const invalid = ['../x', 'foo', '00000001000000000000000G', '00000001000000000000000a', '000000010000000000000003.gz', '00000000.history', 'a/000000010000000000000003', ''];

  void it('rejects anything but a WAL file name with INPUT_INVALID, touching neither the store nor the disk', async () => {
    const { store, archive } = setup();
    await archive.push(await walFile(SEGMENT, randomBytes(10)));
    const dir = await freshDir();
    for (const name of invalid) {
      await assert.rejects(archive.fetch(name, path.join(dir, 'out')), hasCode('INPUT_INVALID'), `fetch ${JSON.stringify(name)}`);
      await assert.rejects(archive.delete([SEGMENT, name]), hasCode('INPUT_INVALID'), `delete ${JSON.stringify(name)}`);
    }
    // push takes a path: its base name must be a WAL name (the file is never read otherwise).
    for (const name of ['foo', '00000001000000000000000G', 'backup_label']) {
      await assert.rejects(archive.push(path.join(dir, name)), hasCode('INPUT_INVALID'), `push ${name}`);
    }
    await writeFile(path.join(dir, 'foo'), 'not wal');
    await assert.rejects(archive.push(path.join(dir, 'foo')), hasCode('INPUT_INVALID'));
    assert.deepEqual(store.keys(), [`shop/wal/${SEGMENT}.gz`], 'a rejected delete removes nothing');
    assert.deepEqual(await readdir(dir), ['foo']);
  });

  void it('round-trips a .history file, a .partial segment and a .backup label', async () => {
    const { store, archive } = setup();
    const files: Array<[string, Buffer]> = [
      ['00000002.history', Buffer.from('1\t0/5000000\tno recovery target specified\n')],
      ['000000010000000000000005.partial', randomBytes(4096)],
      ['000000010000000000000003.00000028.backup', Buffer.from('START WAL LOCATION: 0/3000028 (file 000000010000000000000003)\n')],
    ];
    for (const [name, raw] of files) {
      assert.equal((await archive.push(await walFile(name, raw))).kind, 'archived', name);
      const dest = path.join(await freshDir(), 'RECOVERYHISTORY');
      assert.deepEqual(await archive.fetch(name, dest), { kind: 'restored', rawBytes: raw.length }, name);
      assert.deepEqual(await readFile(dest), raw, name);
    }
    assert.deepEqual(store.keys(), [
      'shop/wal/000000010000000000000003.00000028.backup.gz',
      'shop/wal/000000010000000000000005.partial.gz',
      'shop/wal/00000002.history.gz',
    ]);
  });
});

void describe('WalArchive.list / delete', () => {
  void it('lists archived names with their stored sizes and archive times, skipping conflict copies and foreign objects', async () => {
    const { clock, store, archive } = setup();
    const pushed: Array<{ name: string; archivedAtMs: number; sizeBytes: number }> = [];
    for (const name of ['000000010000000000000003', '000000010000000000000004', '00000002.history']) {
      const result = await archive.push(await walFile(name, randomBytes(2000)));
      assert.equal(result.kind, 'archived');
      if (result.kind === 'archived') pushed.push({ name, archivedAtMs: clock.nowMs(), sizeBytes: result.storedBytes });
      clock.advance(1000);
    }
    assert.equal((await archive.push(await walFile('000000010000000000000004', randomBytes(2000)))).kind, 'conflict');
    await store.put('shop/wal/README', Buffer.from('x'));
    await store.put('shop/wal/not-a-wal-file.gz', Buffer.from('x'));
    await store.put('shop/basebackups/20261126T030000Z/backup.json', Buffer.from('{}'));
    await new WalArchive(store, 'blog').push(await walFile('000000010000000000000009', randomBytes(10)));

    // In key order, which is name order.
    assert.deepEqual(await archive.list(), pushed);
    assert.deepEqual(await new WalArchive(store, 'other').list(), []);
  });

  void it('deletes exactly the named files', async () => {
    const { store, archive } = setup();
    for (const name of ['000000010000000000000003', '000000010000000000000004', '00000002.history']) {
      await archive.push(await walFile(name, randomBytes(100)));
    }
    await archive.delete(['000000010000000000000003', '00000002.history', '000000010000000000000007']);
    assert.deepEqual(store.keys(), ['shop/wal/000000010000000000000004.gz']);
    assert.deepEqual((await archive.list()).map((f) => f.name), ['000000010000000000000004']);
  });

  void it('rejects an invalid cluster name', () => {
    const store = new MemoryObjectStore(new FakeClock(START_MS));
    for (const cluster of ['', 'Shop', '../shop', 'a/b']) {
      assert.throws(() => new WalArchive(store, cluster), hasCode('INPUT_INVALID'), JSON.stringify(cluster));
    }
  });
});
