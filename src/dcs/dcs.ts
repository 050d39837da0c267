/**
 * The DCS port: the narrow slice of a consistent key-value store that pgpilot relies on.
 * Implementations: `EtcdDcs` (etcd v3) and `MemoryDcs` (in-memory, fake-clock driven, for unit
 * and scenario tests). Both pass test/contracts/dcs-contract.ts.
 *
 * Contract (every implementation must keep all of it):
 * - Reads are linearizable: a `get` after a successful write sees that write.
 * - `createIfAbsent` is atomic: of N concurrent callers for the same absent key exactly one gets
 *   `true`. `replaceIfEquals` / `deleteIfEquals` are atomic compare-and-set on the current value.
 * - A key written with a `leaseId` disappears when that lease expires or is revoked. A lease
 *   expires `ttlSeconds` after it was granted or last kept alive; `keepAlive` returns `false`
 *   (never throws) when the lease is already gone, and then it stays gone.
 * - Writing with a lease that does not exist (expired, revoked, never granted) throws
 *   `LeaseNotFoundError`, so a holder learns at once that its lease is gone.
 * - `getPrefixWithLeases` returns what `getPrefix` returns plus, for each key, the lease it is
 *   attached to (null: none), read in the same request: a reader can tell a key written on a
 *   lease (a leader key) from one written without (src/ha/leader-trust.ts).
 * - Watches deliver every change under the prefix after the watch was established, in order.
 * - Any failure to reach the store throws `PgpilotError` with code `DCS_UNAVAILABLE` and
 *   `retryable: true`, within the implementation's operation timeout: no call hangs unbounded.
 */

export type LeaseId = string;

export interface PutOptions {
  /** Attach the key to this lease: it is deleted when the lease ends. */
  leaseId?: LeaseId;
}

export type DcsWatchEvent =
  | { kind: 'put'; key: string; value: string }
  | { kind: 'delete'; key: string };

/** One key as read with its lease. */
export interface DcsEntry {
  value: string;
  /** The lease the key is attached to; null when it has none. */
  leaseId: LeaseId | null;
}

export interface DcsWatch {
  cancel(): Promise<void>;
}

export interface Dcs {
  get(key: string): Promise<string | null>;
  /** Every key under `prefix` (prefix included in the returned keys), sorted by key. */
  getPrefix(prefix: string): Promise<Map<string, string>>;
  /** Like `getPrefix`, with each key's lease (one request). */
  getPrefixWithLeases(prefix: string): Promise<Map<string, DcsEntry>>;
  put(key: string, value: string, options?: PutOptions): Promise<void>;
  /** Writes only when the key does not exist; true when this call created it. */
  createIfAbsent(key: string, value: string, options?: PutOptions): Promise<boolean>;
  /** Writes only when the current value equals `expected`; true when it did. */
  replaceIfEquals(key: string, expected: string, value: string, options?: PutOptions): Promise<boolean>;
  /** Deletes only when the current value equals `expected`; true when it did. */
  deleteIfEquals(key: string, expected: string): Promise<boolean>;
  delete(key: string): Promise<void>;
  deletePrefix(prefix: string): Promise<void>;
  grantLease(ttlSeconds: number): Promise<LeaseId>;
  /** Refreshes the lease to its full TTL; false when the lease no longer exists. */
  keepAlive(leaseId: LeaseId): Promise<boolean>;
  /** Ends the lease now, deleting its keys. Revoking an unknown lease is not an error. */
  revokeLease(leaseId: LeaseId): Promise<void>;
  watchPrefix(prefix: string, onEvent: (event: DcsWatchEvent) => void): Promise<DcsWatch>;
  close(): Promise<void>;
}

/** Thrown by writes that name a lease the store no longer has. */
export class LeaseNotFoundError extends Error {
  constructor(leaseId: LeaseId) {
    super(`lease ${leaseId} not found`);
    this.name = 'LeaseNotFoundError';
  }
}
