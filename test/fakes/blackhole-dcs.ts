/**
 * A `Dcs` decorator that simulates etcd becoming unreachable the way a real network partition
 * looks to `EtcdDcs`: requests are not refused at once, they hang until the client's operation
 * timeout (on the injected clock) and then fail with a retryable DCS_UNAVAILABLE. It can be armed
 * to cut off right after the next successful read, the worst moment for a leader (its last
 * renewal is as recent as possible, and everything after it in the tick hangs).
 */
import type { Dcs, DcsEntry, DcsWatch, DcsWatchEvent, LeaseId, PutOptions } from '../../src/dcs/dcs.js';
import type { Clock } from '../../src/shared/clock.js';
import { PgpilotError } from '../../src/shared/errors.js';

export class BlackholeDcs implements Dcs {
  private blackholed = false;
  private cutAfterRead = false;

  constructor(
    private readonly inner: Dcs,
    private readonly clock: Clock,
    /** How long a request hangs before failing (EtcdDcs: `operationTimeoutMs`, 2000 in compose.ts). */
    readonly operationTimeoutMs: number,
  ) {}

  setBlackholed(blackholed: boolean): void {
    this.blackholed = blackholed;
  }

  isBlackholed(): boolean {
    return this.blackholed;
  }

  /** Lets the next prefix read succeed, then every request hangs and fails. */
  cutAfterNextRead(): void {
    this.cutAfterRead = true;
  }

  get(key: string): Promise<string | null> {
    return this.call(() => this.inner.get(key));
  }

  async getPrefix(prefix: string): Promise<Map<string, string>> {
    const result = await this.call(() => this.inner.getPrefix(prefix));
    this.afterRead();
    return result;
  }

  async getPrefixWithLeases(prefix: string): Promise<Map<string, DcsEntry>> {
    const result = await this.call(() => this.inner.getPrefixWithLeases(prefix));
    this.afterRead();
    return result;
  }

  private afterRead(): void {
    if (this.cutAfterRead) {
      this.cutAfterRead = false;
      this.blackholed = true;
    }
  }

  put(key: string, value: string, options?: PutOptions): Promise<void> {
    return this.call(() => this.inner.put(key, value, options));
  }

  createIfAbsent(key: string, value: string, options?: PutOptions): Promise<boolean> {
    return this.call(() => this.inner.createIfAbsent(key, value, options));
  }

  replaceIfEquals(key: string, expected: string, value: string, options?: PutOptions): Promise<boolean> {
    return this.call(() => this.inner.replaceIfEquals(key, expected, value, options));
  }

  deleteIfEquals(key: string, expected: string): Promise<boolean> {
    return this.call(() => this.inner.deleteIfEquals(key, expected));
  }

  delete(key: string): Promise<void> {
    return this.call(() => this.inner.delete(key));
  }

  deletePrefix(prefix: string): Promise<void> {
    return this.call(() => this.inner.deletePrefix(prefix));
  }

  grantLease(ttlSeconds: number): Promise<LeaseId> {
    return this.call(() => this.inner.grantLease(ttlSeconds));
  }

  keepAlive(leaseId: LeaseId): Promise<boolean> {
    return this.call(() => this.inner.keepAlive(leaseId));
  }

  revokeLease(leaseId: LeaseId): Promise<void> {
    return this.call(() => this.inner.revokeLease(leaseId));
  }

  watchPrefix(prefix: string, onEvent: (event: DcsWatchEvent) => void): Promise<DcsWatch> {
    return this.call(() => this.inner.watchPrefix(prefix, onEvent));
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  private async call<T>(operation: () => Promise<T>): Promise<T> {
    if (!this.blackholed) return operation();
    await this.clock.sleep(this.operationTimeoutMs);
    throw new PgpilotError('DCS_UNAVAILABLE', `no answer within ${this.operationTimeoutMs} ms`, { retryable: true });
  }
}
