/**
 * The backup object store as a port: a flat namespace of immutable-by-replacement objects under
 * relative '/'-separated keys, used for daily base backups and the WAL archive. Implementations:
 * `FsObjectStore` (a directory), `S3ObjectStore` (a bucket and prefix, any S3-compatible server),
 * and the in-memory fake `MemoryObjectStore` (test/fakes); all pass one contract suite
 * (test/contracts/object-store-contract.ts).
 *
 * The contract every implementation keeps:
 * - `put` is atomic: a reader sees the previous object (or none) until `put` resolves, then the
 *   whole new one; never a prefix of it. A failed `put` (I/O error, the body stream erroring)
 *   leaves the previous object untouched. `put` replaces the object and its metadata as a whole.
 * - Absence is a value, not an error: `get`, `getBuffer` and `head` resolve `null`, `delete` of a
 *   missing key succeeds.
 * - `list(prefix)` returns every object whose key starts with `prefix` (plain string prefix, not a
 *   directory: `a/b` matches `a/b-c` and `a/b/c`), recursively, sorted by key (keys are ASCII, so
 *   JS string order is byte order), with all pages of a paginated backend.
 * - Keys and metadata are validated the same way everywhere (INPUT_INVALID) before any I/O, so a
 *   key that works on one store works on every store.
 * - Store failures (unreachable, permission denied, disk full, refused credentials) are
 *   `PgpilotError('STORE_UNAVAILABLE')`, retryable, with a hint naming `description`; messages
 *   never contain credentials.
 *
 * Key rules: 1..1024 characters of [A-Za-z0-9._/-]; no leading '/', no empty segment (so no
 * trailing '/' and no '//'); no segment starting with '.' (rules out '.', '..' and the names
 * `FsObjectStore` uses for temp files); no last segment ending in `.meta.json` (the file store's
 * metadata sidecars); each segment at most 200 characters (file name limits, with room for
 * suffixes). A key must not also be a "directory" of another key (`a` and `a/b`): a file store
 * cannot hold both, so portable callers never do it.
 */
import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { PgpilotError } from '../shared/errors.js';

export interface ObjectInfo {
  key: string;
  sizeBytes: number;
  lastModifiedMs: number;
}

export interface ObjectHead extends ObjectInfo {
  metadata: Record<string, string>;
}

export interface PutOptions {
  /** User metadata: keys [a-z0-9-] (1..64), values printable ASCII without surrounding spaces. */
  metadata?: Record<string, string>;
}

export interface ObjectStore {
  /** Where the store is, for messages and logs: `file:///var/lib/x`, `s3://bucket/prefix?...`. Never credentials. */
  readonly description: string;
  /** Atomic create-or-replace of the object and its metadata. */
  put(key: string, body: Buffer | Readable, options?: PutOptions): Promise<void>;
  /** The object's bytes as a stream, or null when absent. */
  get(key: string): Promise<Readable | null>;
  getBuffer(key: string): Promise<Buffer | null>;
  head(key: string): Promise<ObjectHead | null>;
  /** Every object whose key starts with `prefix` ('' for all), sorted by key. */
  list(prefix: string): Promise<ObjectInfo[]>;
  /** Deletes the objects that exist; absent keys are fine. */
  delete(keys: readonly string[]): Promise<void>;
  close(): Promise<void>;
}

export const MAX_KEY_LENGTH = 1024;
export const MAX_SEGMENT_LENGTH = 200;
/** Suffix of `FsObjectStore`'s metadata sidecar files; no key may end with it. */
export const METADATA_SIDECAR_SUFFIX = '.meta.json';
/** S3 limits user metadata to 2 KiB (keys plus values); we keep every store within that. */
export const MAX_METADATA_BYTES = 2048;

const KEY_CHARACTERS = /^[A-Za-z0-9._/-]*$/;
const METADATA_KEY = /^[a-z0-9-]{1,64}$/;
const METADATA_VALUE = /^[\x20-\x7e]*$/;
const KEY_HINT = "keys are relative paths of [A-Za-z0-9._/-], e.g. 'base/20240101T000000Z/base.tar'";

function invalidKey(what: string, value: string, reason: string): PgpilotError {
  return new PgpilotError('INPUT_INVALID', `invalid object ${what} ${JSON.stringify(value.slice(0, 120))}: ${reason}`, {
    hint: KEY_HINT,
    exitCode: 2,
  });
}

/** The first rule `text` breaks as a key (or a prefix, which may be '' or end with '/'), else null. */
function keyProblem(text: string, isPrefix: boolean): string | null {
  if (typeof text !== 'string') return 'not a string';
  if (!isPrefix && text.length === 0) return 'empty';
  if (text.length > MAX_KEY_LENGTH) return `longer than ${MAX_KEY_LENGTH} characters`;
  if (!KEY_CHARACTERS.test(text)) return 'only A-Z a-z 0-9 . _ / - are allowed';
  if (text.startsWith('/')) return "starts with '/'";
  const segments = text.split('/');
  // A prefix may end with '/' (an empty last segment) and its last segment may be partial.
  const whole = isPrefix ? segments.slice(0, -1) : segments;
  const last = segments[segments.length - 1] ?? '';
  for (const segment of whole) {
    if (segment.length === 0) return 'has an empty segment';
  }
  for (const segment of segments) {
    if (segment.startsWith('.')) return "has a segment starting with '.'";
    if (segment.length > MAX_SEGMENT_LENGTH) return `has a segment longer than ${MAX_SEGMENT_LENGTH} characters`;
  }
  if (!isPrefix && last.endsWith(METADATA_SIDECAR_SUFFIX)) return `ends with the reserved suffix ${METADATA_SIDECAR_SUFFIX}`;
  return null;
}

export function isValidObjectKey(key: string): boolean {
  return keyProblem(key, false) === null;
}

export function assertValidObjectKey(key: string): void {
  const problem = keyProblem(key, false);
  if (problem !== null) throw invalidKey('key', String(key), problem);
}

export function assertValidObjectKeys(keys: readonly string[]): void {
  for (const key of keys) assertValidObjectKey(key);
}

/** A list prefix: '' (everything), a key, a partial key, or a key "directory" ending with '/'. */
export function assertValidObjectPrefix(prefix: string): void {
  const problem = keyProblem(prefix, true);
  if (problem !== null) throw invalidKey('prefix', String(prefix), problem);
}

/** Validates user metadata and returns a plain copy (never the caller's object). */
export function validatedMetadata(metadata: Record<string, string> | undefined): Record<string, string> {
  const copy: Record<string, string> = {};
  if (metadata === undefined) return copy;
  let bytes = 0;
  for (const [key, value] of Object.entries(metadata)) {
    const fail = (reason: string) =>
      new PgpilotError('INPUT_INVALID', `invalid object metadata ${JSON.stringify(key.slice(0, 80))}: ${reason}`, {
        hint: 'metadata keys are 1..64 characters of [a-z0-9-]; values are printable ASCII without leading or trailing spaces',
        exitCode: 2,
      });
    if (!METADATA_KEY.test(key)) throw fail('keys are 1..64 characters of [a-z0-9-]');
    if (typeof value !== 'string' || !METADATA_VALUE.test(value)) throw fail('the value must be printable ASCII');
    if (value.trim() !== value) throw fail('the value must not start or end with a space');
    bytes += key.length + value.length;
    copy[key] = value;
  }
  if (bytes > MAX_METADATA_BYTES) {
    throw new PgpilotError('INPUT_INVALID', `object metadata is ${bytes} bytes, more than ${MAX_METADATA_BYTES}`, {
      hint: 'keep metadata small (checksums, sizes, timestamps); put larger data in an object',
      exitCode: 2,
    });
  }
  return copy;
}

/** Orders keys (ASCII) by byte value, as S3 does. */
export function compareKeys(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The retryable error for a store that cannot be used right now. `reason` must hold no secret. */
export function storeUnavailable(description: string, reason: string, cause?: unknown): PgpilotError {
  return new PgpilotError('STORE_UNAVAILABLE', `backup store ${description}: ${reason}`, {
    hint: `check that ${description} is reachable and that its credentials and permissions allow this; then retry`,
    retryable: true,
    cause,
  });
}

/** Everything a readable stream yields, as one buffer. */
export async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) {
    chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer));
  }
  return Buffer.concat(chunks);
}

/**
 * Stores the local file `sourceFile` under `key`: a directory store copies the file (no stream
 * through this process), any other store streams it.
 */
export async function putFile(store: ObjectStore, key: string, sourceFile: string, options: PutOptions = {}): Promise<void> {
  const withPutFile = store as ObjectStore & { putFile?: (key: string, file: string, options: PutOptions) => Promise<void> };
  if (typeof withPutFile.putFile === 'function') {
    await withPutFile.putFile(key, sourceFile, options);
    return;
  }
  await store.put(key, createReadStream(sourceFile), options);
}
