/**
 * `ObjectStore` over a local directory (or a mounted network file system): the object under key
 * `a/b/c` is the file `<rootDir>/a/b/c`, its metadata (if any) the sidecar `<rootDir>/a/b/c.meta.json`.
 *
 * Invariants:
 * - Atomic put: bytes go to a temp file `.<name>.tmp-<random>` in the target directory, are
 *   fsynced, and only then renamed over the target (rename within a directory is atomic on POSIX),
 *   after which the directory is fsynced. A reader therefore sees the old file or the whole new one.
 * - The sidecar is written (atomically, the same way) BEFORE the object is renamed into place, so a
 *   visible new object always has its new metadata. A put without metadata removes the old sidecar
 *   before the rename, so a new object never shows stale metadata (during a concurrent overwrite an
 *   old object may briefly show no metadata, the safe side for checksums).
 * - Temp files and sidecars start with '.' or end with `.meta.json`, names no valid key can have
 *   (see object-store.ts), so `list` hides them by name and a crash can only leave invisible debris.
 * - We never chown or chmod anything existing: files are created with `fileMode`, directories with
 *   `dirMode` (both subject to the umask); the caller owns permissions, so the store works as root
 *   and as the postgres OS user in a directory it owns.
 * - Every OS error other than "absent" is STORE_UNAVAILABLE naming the store.
 */
import { randomBytes } from 'node:crypto';
import { chmod, copyFile, lstat, open, readFile, readdir, rename, rmdir, stat, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { PgpilotError, errorMessage } from '../shared/errors.js';
import { makeDirectories } from '../shared/fs-safe.js';
import {
  METADATA_SIDECAR_SUFFIX,
  assertValidObjectKey,
  assertValidObjectKeys,
  assertValidObjectPrefix,
  compareKeys,
  storeUnavailable,
  validatedMetadata,
  type ObjectHead,
  type ObjectInfo,
  type ObjectStore,
  type PutOptions,
} from './object-store.js';

export interface FsObjectStoreOptions {
  /** Mode of new object and sidecar files (before the umask). Default 0600: backups hold the database. */
  fileMode?: number;
  /** Mode of new directories (before the umask). Default 0700. */
  dirMode?: number;
}

/** How a file store names itself: a file URL of its root. */
export function describeFsLocation(rootDir: string): string {
  return pathToFileURL(path.resolve(rootDir)).href;
}

/** Error codes that mean "no such object" when opening or statting an object path. */
const ABSENT_CODES = new Set(['ENOENT', 'ENOTDIR', 'EISDIR']);
/** Attempts at creating a directory and a temp file in it (a concurrent delete may remove the empty directory). */
const PUT_DIRECTORY_ATTEMPTS = 3;

function errnoCode(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | null)?.code;
}

/** An error from the operating system (errno code such as EACCES), as opposed to one from the caller's stream. */
function isOsError(error: unknown): boolean {
  return /^E[A-Z0-9]+$/.test(errnoCode(error) ?? '');
}

/**
 * Writes `data` to `file` atomically and durably: temp file in the same directory, fsync, rename,
 * fsync of the directory. The temp name starts with '.' so a listing of the directory skips it.
 */
export async function writeFileDurably(file: string, data: Buffer | string, mode: number): Promise<void> {
  const temp = path.join(path.dirname(file), `.${path.basename(file)}.tmp-${randomBytes(6).toString('hex')}`);
  try {
    const handle = await open(temp, 'wx', mode);
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, file);
  } catch (error) {
    await unlink(temp).catch(() => undefined);
    throw error;
  }
  await syncDirectory(path.dirname(file));
}

/** fsync of a directory, so a rename in it survives a crash. Some file systems refuse; that is not fatal. */
async function syncDirectory(dir: string): Promise<void> {
  let handle: FileHandle | undefined;
  try {
    handle = await open(dir, 'r');
    await handle.sync();
  } catch (error) {
    if (!['EINVAL', 'ENOTSUP', 'EOPNOTSUPP', 'EISDIR', 'EBADF'].includes(errnoCode(error) ?? '')) throw error;
  } finally {
    await handle?.close();
  }
}

export class FsObjectStore implements ObjectStore {
  readonly description: string;
  readonly rootDir: string;
  private readonly fileMode: number;
  private readonly dirMode: number;

  constructor(rootDir: string, options: FsObjectStoreOptions = {}) {
    if (!path.isAbsolute(rootDir)) {
      throw new PgpilotError('INPUT_INVALID', `the backup directory must be an absolute path, not ${JSON.stringify(rootDir)}`, {
        hint: 'give a path such as /var/lib/pgpilot/backups',
        exitCode: 2,
      });
    }
    this.rootDir = path.resolve(rootDir);
    this.description = describeFsLocation(this.rootDir);
    this.fileMode = options.fileMode ?? 0o600;
    this.dirMode = options.dirMode ?? 0o700;
  }

  async put(key: string, body: Buffer | Readable, options: PutOptions = {}): Promise<void> {
    await this.putWith(key, options, (dir, temp) => this.writeTemp(dir, temp, body));
  }

  /**
   * `put` of a local file's bytes by copying the file (no stream in this process): the temp copy
   * is fsynced, then renamed into place like any put.
   */
  async putFile(key: string, sourceFile: string, options: PutOptions = {}): Promise<void> {
    await this.putWith(key, options, async (dir, temp) => {
      const handle = await this.openTemp(dir, temp);
      await handle.close();
      await copyFile(sourceFile, temp);
      await chmod(temp, this.fileMode);
      const copy = await open(temp, 'r');
      try {
        await copy.sync();
      } finally {
        await copy.close();
      }
    });
  }

  /**
   * The commit shared by every put: `fill` writes the object's bytes into a temp file beside it
   * (durably); the metadata sidecar is written (or removed) next, and only then is the temp file
   * renamed into place, so a reader never sees an object with another object's metadata.
   */
  private async putWith(key: string, options: PutOptions, fill: (dir: string, temp: string) => Promise<void>): Promise<void> {
    assertValidObjectKey(key);
    const metadata = validatedMetadata(options.metadata);
    const file = this.objectPath(key);
    const dir = path.dirname(file);
    const temp = path.join(dir, `.${path.basename(file)}.tmp-${randomBytes(6).toString('hex')}`);
    try {
      await fill(dir, temp);
      if (Object.keys(metadata).length > 0) {
        await writeFileDurably(this.sidecarPath(key), `${JSON.stringify(metadata)}\n`, this.fileMode);
      } else {
        await unlink(this.sidecarPath(key)).catch((error: unknown) => {
          if (!ABSENT_CODES.has(errnoCode(error) ?? '')) throw error;
        });
      }
      await rename(temp, file);
      await syncDirectory(dir);
    } catch (error) {
      await unlink(temp).catch(() => undefined);
      const code = errnoCode(error);
      if (code === 'ENOTDIR' || code === 'EISDIR') {
        const conflict = await this.keyConflict(key);
        if (conflict !== null) throw conflict;
      }
      throw this.mapError(error, `cannot write ${key}`);
    }
  }

  async get(key: string): Promise<Readable | null> {
    assertValidObjectKey(key);
    let handle: FileHandle;
    try {
      handle = await open(this.objectPath(key), 'r');
    } catch (error) {
      if (ABSENT_CODES.has(errnoCode(error) ?? '')) return null;
      throw this.mapError(error, `cannot read ${key}`);
    }
    // The open descriptor keeps the bytes readable even if the file is replaced or deleted meanwhile.
    try {
      const info = await handle.stat();
      if (!info.isFile()) {
        await handle.close();
        return null;
      }
    } catch (error) {
      await handle.close();
      throw this.mapError(error, `cannot read ${key}`);
    }
    return handle.createReadStream({ autoClose: true });
  }

  async getBuffer(key: string): Promise<Buffer | null> {
    assertValidObjectKey(key);
    try {
      return await readFile(this.objectPath(key));
    } catch (error) {
      if (ABSENT_CODES.has(errnoCode(error) ?? '')) return null;
      throw this.mapError(error, `cannot read ${key}`);
    }
  }

  async head(key: string): Promise<ObjectHead | null> {
    assertValidObjectKey(key);
    let sizeBytes: number;
    let lastModifiedMs: number;
    try {
      const info = await stat(this.objectPath(key));
      if (!info.isFile()) return null;
      sizeBytes = info.size;
      lastModifiedMs = Math.floor(info.mtimeMs);
    } catch (error) {
      if (ABSENT_CODES.has(errnoCode(error) ?? '')) return null;
      throw this.mapError(error, `cannot read ${key}`);
    }
    return { key, sizeBytes, lastModifiedMs, metadata: await this.readSidecar(key) };
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    assertValidObjectPrefix(prefix);
    // Start at the deepest directory the prefix names completely; the rest filters names.
    const cut = prefix.lastIndexOf('/');
    const baseKey = cut === -1 ? '' : prefix.slice(0, cut + 1);
    const found: ObjectInfo[] = [];
    try {
      await this.walk(baseKey, prefix, found);
    } catch (error) {
      throw this.mapError(error, `cannot list ${prefix === '' ? 'the store' : prefix}`);
    }
    return found.sort((a, b) => compareKeys(a.key, b.key));
  }

  async delete(keys: readonly string[]): Promise<void> {
    assertValidObjectKeys(keys);
    for (const key of keys) {
      try {
        for (const file of [this.objectPath(key), this.sidecarPath(key)]) {
          await unlink(file).catch((error: unknown) => {
            if (!ABSENT_CODES.has(errnoCode(error) ?? '')) throw error;
          });
        }
      } catch (error) {
        throw this.mapError(error, `cannot delete ${key}`);
      }
      await this.removeEmptyParents(key);
    }
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  private objectPath(key: string): string {
    return path.join(this.rootDir, ...key.split('/'));
  }

  private sidecarPath(key: string): string {
    return `${this.objectPath(key)}${METADATA_SIDECAR_SUFFIX}`;
  }

  /** Writes and fsyncs the temp file. Once it exists its directory is not empty, so no delete removes it. */
  private async writeTemp(dir: string, temp: string, body: Buffer | Readable): Promise<void> {
    const handle = await this.openTemp(dir, temp);
    try {
      if (Buffer.isBuffer(body)) {
        await handle.writeFile(body);
      } else {
        // Plain writes, not a stream over the handle: such a stream keeps the handle referenced
        // and handle.close() would then never settle. Leaving the loop early destroys the body.
        for await (const chunk of body) {
          const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
          // A write may take fewer bytes than offered; bounded, since each round takes at least one.
          for (let offset = 0; offset < bytes.length; ) {
            const { bytesWritten } = await handle.write(bytes, offset, bytes.length - offset);
            if (bytesWritten <= 0) throw Object.assign(new Error(`write returned ${bytesWritten}`), { code: 'EIO' });
            offset += bytesWritten;
          }
        }
      }
      await handle.sync();
    } finally {
      await handle.close();
    }
  }

  /**
   * Creates the directory and the temp file in it. A concurrent delete may remove the directory
   * (left empty) between the two steps; then we create it again. Bounded.
   */
  private async openTemp(dir: string, temp: string): Promise<FileHandle> {
    for (let attempt = 1; ; attempt += 1) {
      await makeDirectories(dir, this.dirMode);
      try {
        return await open(temp, 'wx', this.fileMode);
      } catch (error) {
        if (errnoCode(error) !== 'ENOENT' || attempt >= PUT_DIRECTORY_ATTEMPTS) throw error;
      }
    }
  }

  /** INPUT_INVALID when `key` cannot be a file here: it names a directory of keys, or lies under an object. */
  private async keyConflict(key: string): Promise<PgpilotError | null> {
    const segments = key.split('/');
    const conflict = (reason: string) =>
      new PgpilotError('INPUT_INVALID', `object key ${key} ${reason} in ${this.description}`, {
        hint: 'a key cannot be both an object and a directory of other keys (like a and a/b); choose another key',
        exitCode: 2,
      });
    try {
      for (let depth = 1; depth < segments.length; depth += 1) {
        const parentKey = segments.slice(0, depth).join('/');
        if ((await lstat(this.objectPath(parentKey))).isFile()) return conflict(`lies under the object ${parentKey}`);
      }
      if ((await lstat(this.objectPath(key))).isDirectory()) return conflict('is a directory of other keys');
    } catch {
      return null;
    }
    return null;
  }

  private async readSidecar(key: string): Promise<Record<string, string>> {
    let text: string;
    try {
      text = await readFile(this.sidecarPath(key), 'utf8');
    } catch (error) {
      if (ABSENT_CODES.has(errnoCode(error) ?? '')) return {};
      throw this.mapError(error, `cannot read the metadata of ${key}`);
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = null;
    }
    const valid =
      parsed !== null &&
      typeof parsed === 'object' &&
      !Array.isArray(parsed) &&
      Object.values(parsed as Record<string, unknown>).every((value) => typeof value === 'string');
    if (!valid) {
      throw new PgpilotError('BACKUP_CORRUPT', `the metadata sidecar of ${key} in ${this.description} is not a JSON object of strings`, {
        hint: `inspect ${this.sidecarPath(key)}; re-upload the object (a new put rewrites it)`,
      });
    }
    return { ...(parsed as Record<string, string>) };
  }

  /**
   * Depth-first walk of `<root>/<dirKey>` collecting files whose key starts with `prefix`. Bounded
   * by the tree: every directory is visited once (symbolic links are not followed into).
   */
  private async walk(dirKey: string, prefix: string, found: ObjectInfo[]): Promise<void> {
    let entries;
    try {
      entries = await readdir(path.join(this.rootDir, ...dirKey.split('/').filter(Boolean)), { withFileTypes: true });
    } catch (error) {
      if (ABSENT_CODES.has(errnoCode(error) ?? '')) return;
      throw error;
    }
    for (const entry of entries) {
      const name = entry.name;
      if (name.startsWith('.') || name.endsWith(METADATA_SIDECAR_SUFFIX)) continue;
      const key = `${dirKey}${name}`;
      if (entry.isDirectory()) {
        const childKey = `${key}/`;
        // Descend only where keys under it can match: the child is under the prefix or on its path.
        if (childKey.startsWith(prefix) || prefix.startsWith(childKey)) await this.walk(childKey, prefix, found);
        continue;
      }
      if (!entry.isFile() || !key.startsWith(prefix)) continue;
      try {
        const info = await stat(path.join(this.rootDir, ...key.split('/')));
        found.push({ key, sizeBytes: info.size, lastModifiedMs: Math.floor(info.mtimeMs) });
      } catch (error) {
        // Deleted between readdir and stat: it is simply not there any more.
        if (!ABSENT_CODES.has(errnoCode(error) ?? '')) throw error;
      }
    }
  }

  /** Removes directories left empty by a delete, up to (never including) the root. Best effort. */
  private async removeEmptyParents(key: string): Promise<void> {
    const segments = key.split('/').slice(0, -1);
    for (let depth = segments.length; depth > 0; depth -= 1) {
      try {
        await rmdir(path.join(this.rootDir, ...segments.slice(0, depth)));
      } catch {
        return; // not empty (ENOTEMPTY/EEXIST), already gone, or not ours to remove
      }
    }
  }

  private mapError(error: unknown, what: string): unknown {
    if (error instanceof PgpilotError) return error;
    if (!isOsError(error)) return error; // e.g. the caller's body stream failed: theirs, not the store's
    const code = errnoCode(error) ?? 'EIO';
    return storeUnavailable(this.description, `${what}: ${code} (${describeErrno(code)})`, new Error(errorMessage(error)));
  }
}

function describeErrno(code: string): string {
  switch (code) {
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'ENOSPC':
      return 'no space left on the device';
    case 'EROFS':
      return 'read-only file system';
    case 'ENOTDIR':
      return 'a path component is not a directory';
    case 'EDQUOT':
      return 'disk quota exceeded';
    case 'EIO':
      return 'input/output error';
    default:
      return 'file system error';
  }
}
