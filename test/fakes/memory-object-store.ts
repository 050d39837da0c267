/**
 * In-memory `ObjectStore` for unit and scenario tests, passing the same contract as the file and
 * S3 stores (test/contracts/object-store-contract.ts). Extras for tests: `corrupt(key, offset)`
 * flips one byte of a stored object (to exercise checksum checks), and `setAvailable(false)` makes
 * every call fail with retryable STORE_UNAVAILABLE, like a store that went away.
 *
 * Invariants: bodies are copied in and out (a caller mutating a buffer never changes the store);
 * a stream body is read completely before the object is replaced, so put is atomic and a failed
 * stream leaves the previous object; time comes from the injected clock.
 */
import { Readable } from 'node:stream';
import {
  assertValidObjectKey,
  assertValidObjectKeys,
  assertValidObjectPrefix,
  compareKeys,
  readAll,
  storeUnavailable,
  validatedMetadata,
  type ObjectHead,
  type ObjectInfo,
  type ObjectStore,
  type PutOptions,
} from '../../src/backup/object-store.js';
import { SystemClock, type Clock } from '../../src/shared/clock.js';

interface StoredObject {
  body: Buffer;
  metadata: Record<string, string>;
  lastModifiedMs: number;
}

export class MemoryObjectStore implements ObjectStore {
  readonly description: string;
  private readonly objects = new Map<string, StoredObject>();
  private available = true;

  constructor(
    private readonly clock: Clock = new SystemClock(),
    name = 'test',
  ) {
    this.description = `memory://${name}`;
  }

  /** While false, every call fails with STORE_UNAVAILABLE (after input validation, as the real stores do). */
  setAvailable(available: boolean): void {
    this.available = available;
  }

  /** Flips every bit of the byte at `offset` of the stored object; throws when there is no such byte. */
  corrupt(key: string, offset: number): void {
    const object = this.objects.get(key);
    if (object === undefined) throw new Error(`corrupt: no object ${key}`);
    if (!Number.isInteger(offset) || offset < 0 || offset >= object.body.length) {
      throw new Error(`corrupt: offset ${offset} is outside ${key} (${object.body.length} bytes)`);
    }
    object.body[offset] = (object.body[offset] ?? 0) ^ 0xff;
  }

  /** All keys, sorted (for assertions). */
  keys(): string[] {
    return [...this.objects.keys()].sort(compareKeys);
  }

  async put(key: string, body: Buffer | Readable, options: PutOptions = {}): Promise<void> {
    assertValidObjectKey(key);
    const metadata = validatedMetadata(options.metadata);
    this.checkAvailable(`cannot write ${key}`);
    const bytes = Buffer.isBuffer(body) ? Buffer.from(body) : await readAll(body);
    this.checkAvailable(`cannot write ${key}`);
    this.objects.set(key, { body: bytes, metadata, lastModifiedMs: this.clock.nowMs() });
  }

  async get(key: string): Promise<Readable | null> {
    const bytes = await this.getBuffer(key);
    return bytes === null ? null : Readable.from([bytes]);
  }

  getBuffer(key: string): Promise<Buffer | null> {
    return settle(() => {
      assertValidObjectKey(key);
      this.checkAvailable(`cannot read ${key}`);
      const object = this.objects.get(key);
      return object === undefined ? null : Buffer.from(object.body);
    });
  }

  head(key: string): Promise<ObjectHead | null> {
    return settle(() => {
      assertValidObjectKey(key);
      this.checkAvailable(`cannot read ${key}`);
      const object = this.objects.get(key);
      if (object === undefined) return null;
      return { key, sizeBytes: object.body.length, lastModifiedMs: object.lastModifiedMs, metadata: { ...object.metadata } };
    });
  }

  list(prefix: string): Promise<ObjectInfo[]> {
    return settle(() => {
      assertValidObjectPrefix(prefix);
      this.checkAvailable('cannot list');
      const found: ObjectInfo[] = [];
      for (const [key, object] of this.objects) {
        if (key.startsWith(prefix)) found.push({ key, sizeBytes: object.body.length, lastModifiedMs: object.lastModifiedMs });
      }
      return found.sort((a, b) => compareKeys(a.key, b.key));
    });
  }

  delete(keys: readonly string[]): Promise<void> {
    return settle(() => {
      assertValidObjectKeys(keys);
      this.checkAvailable('cannot delete');
      for (const key of keys) this.objects.delete(key);
    });
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  private checkAvailable(what: string): void {
    if (!this.available) throw storeUnavailable(this.description, `${what}: the store is unavailable (test switch)`);
  }
}

/** Runs `fn` and settles a promise with its result or error (never throws synchronously). */
function settle<T>(fn: () => T): Promise<T> {
  try {
    return Promise.resolve(fn());
  } catch (error) {
    return Promise.reject(error instanceof Error ? error : new Error(String(error)));
  }
}
