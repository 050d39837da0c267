/**
 * In-memory DCS for unit and scenario tests. A `MemoryDcsStore` is the shared state (what etcd is
 * to a cluster); each `MemoryDcs` is one node's client view of it and can be cut off with
 * `setReachable(false)`. Invariants, mirroring etcd so scenario tests mean something: every
 * operation is applied synchronously (no await between its check and its write), so
 * create-if-absent and compare-and-set are atomic; lease time is read only from the injected
 * `Clock`, and expiry is lazy: every store operation first expires the leases whose deadline has
 * passed (deleting their keys, with delete events) so a stepped `FakeClock` is all a test needs;
 * a lease that expired or was revoked never comes back; lease ids are decimal strings, never
 * reused; watch events are delivered asynchronously but in the order the changes happened, and a
 * client that is unreachable receives the events it missed once it is reachable again (as an etcd
 * watch resumes from its last revision). No wall clock, no timers: only the Clock.
 */
import type { Clock } from '../shared/clock.js';
import { PgpilotError } from '../shared/errors.js';
import { LeaseNotFoundError, type Dcs, type DcsEntry, type DcsWatch, type DcsWatchEvent, type LeaseId, type PutOptions } from './dcs.js';

interface StoredValue {
  value: string;
  leaseId: LeaseId | null;
}

interface StoredLease {
  id: LeaseId;
  ttlSeconds: number;
  expiresAtMs: number;
  keys: Set<string>;
}

interface StoreWatcher {
  prefix: string;
  deliver(event: DcsWatchEvent): void;
}

/** Byte order of the UTF-8 encoding, as etcd sorts keys. */
function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

function assertTtl(ttlSeconds: number): void {
  if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1) {
    throw new PgpilotError('INPUT_INVALID', `lease TTL must be a whole number of seconds >= 1, got ${ttlSeconds}`);
  }
}

function assertPrefixToDelete(prefix: string): void {
  // An empty prefix would wipe every cluster's state in a shared etcd.
  if (prefix.length === 0) throw new PgpilotError('INPUT_INVALID', 'refusing to delete an empty prefix (the whole store)');
}

/** The shared state of an in-memory DCS; hand the same store to every node's `MemoryDcs`. */
export class MemoryDcsStore {
  readonly clock: Clock;
  private readonly data = new Map<string, StoredValue>();
  private readonly leases = new Map<LeaseId, StoredLease>();
  private readonly watchers = new Set<StoreWatcher>();
  private nextLeaseNumber = 7_000_000_001n;

  constructor(clock: Clock) {
    this.clock = clock;
  }

  /**
   * Ends every lease whose deadline has passed on the clock, deleting its keys (with delete
   * events), earliest deadline first. Returns how many leases expired. Every operation calls this
   * first; tests may call it directly after advancing a FakeClock.
   */
  expireLeases(): number {
    const nowMs = this.clock.nowMs();
    const expired = [...this.leases.values()]
      .filter((lease) => lease.expiresAtMs <= nowMs)
      .sort((a, b) => a.expiresAtMs - b.expiresAtMs);
    for (const lease of expired) this.endLease(lease);
    return expired.length;
  }

  /** Current keys and values, sorted by key (for test assertions and debugging). */
  snapshot(): Map<string, string> {
    this.expireLeases();
    return this.readPrefix('');
  }

  /** Live lease ids (for test assertions). */
  liveLeaseIds(): LeaseId[] {
    this.expireLeases();
    return [...this.leases.keys()];
  }

  get(key: string): string | null {
    this.expireLeases();
    return this.data.get(key)?.value ?? null;
  }

  getPrefix(prefix: string): Map<string, string> {
    this.expireLeases();
    return this.readPrefix(prefix);
  }

  getPrefixWithLeases(prefix: string): Map<string, DcsEntry> {
    this.expireLeases();
    const keys = [...this.readPrefix(prefix).keys()];
    return new Map(keys.map((key) => [key, { value: this.data.get(key)?.value ?? '', leaseId: this.data.get(key)?.leaseId ?? null }]));
  }

  put(key: string, value: string, options: PutOptions = {}): void {
    this.expireLeases();
    this.write(key, value, this.leaseForWrite(options));
  }

  createIfAbsent(key: string, value: string, options: PutOptions = {}): boolean {
    this.expireLeases();
    if (this.data.has(key)) return false;
    this.write(key, value, this.leaseForWrite(options));
    return true;
  }

  replaceIfEquals(key: string, expected: string, value: string, options: PutOptions = {}): boolean {
    this.expireLeases();
    if (this.data.get(key)?.value !== expected) return false;
    this.write(key, value, this.leaseForWrite(options));
    return true;
  }

  deleteIfEquals(key: string, expected: string): boolean {
    this.expireLeases();
    if (this.data.get(key)?.value !== expected) return false;
    this.remove(key);
    return true;
  }

  delete(key: string): void {
    this.expireLeases();
    this.remove(key);
  }

  deletePrefix(prefix: string): void {
    assertPrefixToDelete(prefix);
    this.expireLeases();
    for (const key of this.readPrefix(prefix).keys()) this.remove(key);
  }

  grantLease(ttlSeconds: number): LeaseId {
    assertTtl(ttlSeconds);
    this.expireLeases();
    const id = String(this.nextLeaseNumber);
    this.nextLeaseNumber += 1n;
    this.leases.set(id, { id, ttlSeconds, expiresAtMs: this.clock.nowMs() + ttlSeconds * 1000, keys: new Set() });
    return id;
  }

  keepAlive(leaseId: LeaseId): boolean {
    this.expireLeases();
    const lease = this.leases.get(leaseId);
    if (lease === undefined) return false;
    lease.expiresAtMs = this.clock.nowMs() + lease.ttlSeconds * 1000;
    return true;
  }

  revokeLease(leaseId: LeaseId): void {
    this.expireLeases();
    const lease = this.leases.get(leaseId);
    if (lease !== undefined) this.endLease(lease);
  }

  /** Registers a watcher; events for keys under `prefix` are passed to `deliver` synchronously. */
  watch(prefix: string, deliver: (event: DcsWatchEvent) => void): () => void {
    this.expireLeases();
    const watcher: StoreWatcher = { prefix, deliver };
    this.watchers.add(watcher);
    return () => {
      this.watchers.delete(watcher);
    };
  }

  private readPrefix(prefix: string): Map<string, string> {
    const keys = [...this.data.keys()].filter((key) => key.startsWith(prefix)).sort(compareKeys);
    return new Map(keys.map((key) => [key, this.data.get(key)?.value ?? '']));
  }

  /** The lease a write attaches to; throws LeaseNotFoundError when it names a lease that is gone. */
  private leaseForWrite(options: PutOptions): StoredLease | null {
    if (options.leaseId === undefined) return null;
    const lease = this.leases.get(options.leaseId);
    if (lease === undefined) throw new LeaseNotFoundError(options.leaseId);
    return lease;
  }

  private write(key: string, value: string, lease: StoredLease | null): void {
    const previous = this.data.get(key);
    if (previous?.leaseId != null) this.leases.get(previous.leaseId)?.keys.delete(key);
    this.data.set(key, { value, leaseId: lease?.id ?? null });
    lease?.keys.add(key);
    this.emit({ kind: 'put', key, value });
  }

  private remove(key: string): void {
    const previous = this.data.get(key);
    if (previous === undefined) return;
    if (previous.leaseId !== null) this.leases.get(previous.leaseId)?.keys.delete(key);
    this.data.delete(key);
    this.emit({ kind: 'delete', key });
  }

  private endLease(lease: StoredLease): void {
    this.leases.delete(lease.id);
    // Sorted, as etcd deletes a revoked lease's keys.
    for (const key of [...lease.keys].sort(compareKeys)) this.remove(key);
  }

  private emit(event: DcsWatchEvent): void {
    for (const watcher of [...this.watchers]) {
      if (event.key.startsWith(watcher.prefix)) watcher.deliver(event);
    }
  }
}

export interface MemoryDcsOptions {
  /** Shown in errors, to tell nodes apart in scenario tests. */
  name?: string;
}

interface ClientWatch {
  onEvent: (event: DcsWatchEvent) => void;
  /** Events not yet handed to `onEvent`, oldest first. */
  pending: DcsWatchEvent[];
  cancelled: boolean;
  unregister: () => void;
}

/** One client of a `MemoryDcsStore`. */
export class MemoryDcs implements Dcs {
  readonly name: string;
  private readonly store: MemoryDcsStore;
  private reachable = true;
  private closed = false;
  private readonly watches = new Set<ClientWatch>();

  constructor(store: MemoryDcsStore, options: MemoryDcsOptions = {}) {
    this.store = store;
    this.name = options.name ?? 'memory-dcs';
  }

  /**
   * Cuts this client off the store (false) or reconnects it (true). While cut off every call
   * throws DCS_UNAVAILABLE and watch events are held back; they are delivered, in order, on
   * reconnect.
   */
  setReachable(reachable: boolean): void {
    this.reachable = reachable;
    if (reachable) for (const watch of this.watches) this.scheduleDrain(watch);
  }

  isReachable(): boolean {
    return this.reachable;
  }

  get(key: string): Promise<string | null> {
    return this.run(() => this.store.get(key));
  }

  getPrefix(prefix: string): Promise<Map<string, string>> {
    return this.run(() => this.store.getPrefix(prefix));
  }

  getPrefixWithLeases(prefix: string): Promise<Map<string, DcsEntry>> {
    return this.run(() => this.store.getPrefixWithLeases(prefix));
  }

  put(key: string, value: string, options?: PutOptions): Promise<void> {
    return this.run(() => this.store.put(key, value, options));
  }

  createIfAbsent(key: string, value: string, options?: PutOptions): Promise<boolean> {
    return this.run(() => this.store.createIfAbsent(key, value, options));
  }

  replaceIfEquals(key: string, expected: string, value: string, options?: PutOptions): Promise<boolean> {
    return this.run(() => this.store.replaceIfEquals(key, expected, value, options));
  }

  deleteIfEquals(key: string, expected: string): Promise<boolean> {
    return this.run(() => this.store.deleteIfEquals(key, expected));
  }

  delete(key: string): Promise<void> {
    return this.run(() => this.store.delete(key));
  }

  deletePrefix(prefix: string): Promise<void> {
    return this.run(() => this.store.deletePrefix(prefix));
  }

  grantLease(ttlSeconds: number): Promise<LeaseId> {
    return this.run(() => this.store.grantLease(ttlSeconds));
  }

  keepAlive(leaseId: LeaseId): Promise<boolean> {
    return this.run(() => this.store.keepAlive(leaseId));
  }

  revokeLease(leaseId: LeaseId): Promise<void> {
    return this.run(() => this.store.revokeLease(leaseId));
  }

  watchPrefix(prefix: string, onEvent: (event: DcsWatchEvent) => void): Promise<DcsWatch> {
    return this.run(() => {
      const watch: ClientWatch = { onEvent, pending: [], cancelled: false, unregister: () => undefined };
      watch.unregister = this.store.watch(prefix, (event) => {
        watch.pending.push(event);
        this.scheduleDrain(watch);
      });
      this.watches.add(watch);
      return {
        cancel: () => {
          this.endWatch(watch);
          return Promise.resolve();
        },
      };
    });
  }

  /** Ends this client's watches; later calls fail. Closing twice is harmless. */
  close(): Promise<void> {
    this.closed = true;
    for (const watch of [...this.watches]) this.endWatch(watch);
    return Promise.resolve();
  }

  private endWatch(watch: ClientWatch): void {
    watch.cancelled = true;
    watch.pending = [];
    watch.unregister();
    this.watches.delete(watch);
  }

  /**
   * Delivers pending events in a microtask, so a callback never runs inside the write that caused
   * it, oldest first; a write made by a callback queues behind the events already pending.
   */
  private scheduleDrain(watch: ClientWatch): void {
    queueMicrotask(() => {
      while (!watch.cancelled && this.reachable) {
        const event = watch.pending.shift();
        if (event === undefined) return;
        watch.onEvent(event);
      }
    });
  }

  private run<T>(operation: () => T): Promise<T> {
    return new Promise<T>((resolve) => {
      if (this.closed) {
        throw new PgpilotError('DCS_UNAVAILABLE', `DCS client ${this.name} is closed`, {
          hint: 'this is a bug: the client was used after close()',
        });
      }
      if (!this.reachable) {
        throw new PgpilotError('DCS_UNAVAILABLE', `DCS unreachable from ${this.name}`, {
          retryable: true,
          hint: 'the in-memory DCS was made unreachable for this client (setReachable(false))',
        });
      }
      resolve(operation());
    });
  }
}
