/**
 * The DCS port over etcd v3 (npm `etcd3`, gRPC). Invariants: no call outlives the operation
 * timeout (a gRPC deadline on every unary call plus a race against the injected Clock, which also
 * bounds connection set-up and the one-shot keepalive stream); etcd3's fault handling is replaced
 * so a call fails fast instead of being retried for seconds or refused by an open circuit breaker
 * (the HA loop is the retry policy: it retries on its next tick, with its own deadline); the only
 * retry kept, with several endpoints, is trying the next one after UNAVAILABLE (a refused or lost
 * connection). With several endpoints, a member that let a call run into its deadline or refused it
 * is passed over by the following calls for SILENT_HOST_SKIP_MS while another member is not (a
 * partitioned or powered-off host drops packets instead of refusing them: without this, every call
 * the client's random pick sends there waits for the whole operation timeout, and a leader whose
 * renewals land there twice in a row misses its lease deadline). A lost connection can, rarely, hide a write that did apply, so a retried
 * compare-and-set may answer false for its own write: callers re-read before concluding. Every
 * failure surfaces as `PgpilotError('DCS_UNAVAILABLE', retryable)`, except a write naming a lease
 * etcd no longer has, which is `LeaseNotFoundError`. Compare-and-set operations are single etcd
 * transactions (create revision == 0 for create-if-absent, value equality otherwise), so they are
 * atomic across clients. Reads are linearizable (etcd3's default). etcd grants at least its
 * minimum TTL (2 s with default timing), which only makes a lease outlive the holder's own
 * deadline, the safe direction. Lease ids are etcd's int64 ids as decimal strings.
 */
import { Etcd3, EtcdLeaseInvalidError, GRPCUnavailableError, type IOptions, type Watcher } from 'etcd3';
import { BrokenCircuitError, ExponentialBackoff, handleType, noop, retry, type IDefaultPolicyContext, type IPolicy } from 'cockatiel';
import { GRPCDeadlineExceededError } from 'etcd3';
import { SystemClock, type Clock } from '../shared/clock.js';
import { PgpilotError, errorMessage } from '../shared/errors.js';
import { LeaseNotFoundError, type Dcs, type DcsEntry, type DcsWatch, type DcsWatchEvent, type LeaseId, type PutOptions } from './dcs.js';

export interface EtcdDcsOptions {
  /** Client URLs, e.g. `https://127.0.0.1:23790`. */
  endpoints: string[];
  /**
   * The CA that signed etcd's certificate and this client's certificate + key (PEM): pgpilot's
   * etcd requires a client certificate of the cluster CA (`--client-cert-auth`).
   */
  tls: { ca: string; cert: string; key: string };
  /** Upper bound of every call, connection included. Default 2000. */
  operationTimeoutMs?: number;
  /** Time source for deadlines; the system clock unless a test injects one. */
  clock?: Clock;
}

export const DEFAULT_OPERATION_TIMEOUT_MS = 2_000;
/** Ping interval and answer timeout of the gRPC channels when there are several members (above). */
export const KEEPALIVE_TIME_MS = 2_000;
export const KEEPALIVE_TIMEOUT_MS = 1_000;

/**
 * How long a member that did not answer (deadline exceeded, or unavailable) is passed over while
 * another member is not. Long enough that a partitioned member costs a caller at most one timed-out
 * call every SILENT_HOST_SKIP_MS (a leader renewing every second survives one), short enough that
 * a member that came back is used again soon; a passed-over member is still tried when every
 * member is being passed over (an etcd-wide stall, such as an election, skips nobody).
 */
export const SILENT_HOST_SKIP_MS = 10_000;

/**
 * The per-member policy of etcd3's connection pool (`faultHandling.host`): remembers which members
 * recently failed to answer and makes the pool pass over them (etcd3 moves on to the next member
 * when a host policy refuses a call before running it). State is per client, not global.
 */
export class SilentHostSkipper {
  private readonly skipUntilMs = new Map<string, number>();
  private readonly hosts: string[] = [];
  constructor(
    private readonly clock: Clock,
    private readonly skipMs: number = SILENT_HOST_SKIP_MS,
  ) {}

  /** Whether `host` is passed over now: it failed recently and some other member did not. */
  skips(host: string): boolean {
    const nowMs = this.clock.nowMs();
    if ((this.skipUntilMs.get(host) ?? 0) <= nowMs) return false;
    return this.hosts.some((other) => other !== host && (this.skipUntilMs.get(other) ?? 0) <= nowMs);
  }

  /** Records the outcome of a call that ran on `host`. */
  record(host: string, error: unknown): void {
    if (error === null) this.skipUntilMs.delete(host);
    else if (error instanceof GRPCDeadlineExceededError || error instanceof GRPCUnavailableError) this.skipUntilMs.set(host, this.clock.nowMs() + this.skipMs);
  }

  policyFor(host: string): IPolicy<IDefaultPolicyContext> {
    this.hosts.push(host);
    return {
      _altReturn: undefined as never,
      onSuccess: noop.onSuccess,
      onFailure: noop.onFailure,
      execute: async <T>(fn: (context: IDefaultPolicyContext) => PromiseLike<T> | T, signal?: AbortSignal): Promise<T> => {
        if (this.skips(host)) throw new BrokenCircuitError(`etcd member ${host} did not answer recently: trying another one`);
        try {
          const result = await fn({ signal: signal ?? new AbortController().signal });
          this.record(host, null);
          return result;
        } catch (error) {
          this.record(host, error);
          throw error;
        }
      },
    };
  }
}

const TIMED_OUT: unique symbol = Symbol('timed-out');
const LEASE_ID_PATTERN = /^[0-9]+$/;

/** The DCS_UNAVAILABLE error for a failed call, naming the endpoints in its hint. */
function unavailable(what: string, endpoints: readonly string[], cause: unknown): PgpilotError {
  return new PgpilotError('DCS_UNAVAILABLE', `etcd ${what} failed: ${errorMessage(cause)}`, {
    retryable: true,
    hint: `check that etcd is running and reachable at ${endpoints.join(', ')}`,
    cause,
  });
}

export class EtcdDcs implements Dcs {
  private readonly client: Etcd3;
  private readonly endpoints: readonly string[];
  private readonly operationTimeoutMs: number;
  private readonly clock: Clock;
  private readonly watchers = new Set<Watcher>();
  private closed = false;

  constructor(options: EtcdDcsOptions) {
    if (options.endpoints.length === 0) throw new PgpilotError('CONFIG_INVALID', 'etcd endpoints must not be empty');
    this.endpoints = [...options.endpoints];
    this.operationTimeoutMs = options.operationTimeoutMs ?? DEFAULT_OPERATION_TIMEOUT_MS;
    this.clock = options.clock ?? new SystemClock();
    const skipper = new SilentHostSkipper(this.clock);
    const faultHandling: IOptions['faultHandling'] = {
      // No circuit breaker: an open breaker would refuse calls for seconds after etcd is back. With
      // several members, one that did not answer is passed over while another one is not (above).
      host: (host) => (this.endpoints.length > 1 ? skipper.policyFor(host) : noop),
      // One attempt per endpoint, and only when the member refused the connection.
      global:
        this.endpoints.length > 1
          ? retry(handleType(GRPCUnavailableError), { maxAttempts: this.endpoints.length - 1 })
          : noop,
      // Watch streams reconnect quickly (and replay from their last revision). etcd3 wants a
      // backoff *instance* here (it calls next() on it for the first delay).
      watchBackoff: new ExponentialBackoff({ initialDelay: 100, maxDelay: 2_000 }).next(),
    };
    this.client = new Etcd3({
      hosts: [...this.endpoints],
      // Streams (watch) are long-lived and must not carry a deadline; one-shot keepalive streams
      // get an explicit one below.
      defaultCallOptions: (context) => (context.isStream ? {} : { deadline: this.deadlineMs() }),
      faultHandling,
      // With several members, HTTP/2 pings find a member that died silently (a lost host drops
      // packets: no RST) within KEEPALIVE_TIME_MS + KEEPALIVE_TIMEOUT_MS, so the watch stream pinned
      // to it reconnects to another member instead of hanging until TCP gives up (without it a
      // leader change is only seen at the next loop tick). pgpilot's members allow pings this
      // often (--grpc-keepalive-min-time in src/etcd/etcd-server.ts); another etcd that does not
      // answers GOAWAY and grpc-js backs off its ping interval.
      ...(this.endpoints.length > 1
        ? { grpcOptions: { 'grpc.keepalive_time_ms': KEEPALIVE_TIME_MS, 'grpc.keepalive_timeout_ms': KEEPALIVE_TIMEOUT_MS } }
        : {}),
      credentials: {
        rootCertificate: Buffer.from(options.tls.ca),
        certChain: Buffer.from(options.tls.cert),
        privateKey: Buffer.from(options.tls.key),
      },
    });
  }

  get(key: string): Promise<string | null> {
    return this.call('get', () => this.client.get(key).string());
  }

  getPrefix(prefix: string): Promise<Map<string, string>> {
    return this.call('get prefix', async () => {
      const response = await this.client.getAll().prefix(prefix).sort('Key', 'Ascend').exec();
      return new Map(response.kvs.map((kv) => [kv.key.toString('utf8'), kv.value.toString('utf8')]));
    });
  }

  getPrefixWithLeases(prefix: string): Promise<Map<string, DcsEntry>> {
    return this.call('get prefix', async () => {
      const response = await this.client.getAll().prefix(prefix).sort('Key', 'Ascend').exec();
      // etcd reports lease 0 for a key without a lease.
      return new Map(
        response.kvs.map((kv) => [kv.key.toString('utf8'), { value: kv.value.toString('utf8'), leaseId: kv.lease === '0' || kv.lease === '' ? null : String(kv.lease) }]),
      );
    });
  }

  put(key: string, value: string, options: PutOptions = {}): Promise<void> {
    return this.call(
      'put',
      async () => {
        const builder = this.client.put(key).value(value);
        if (options.leaseId !== undefined) builder.lease(this.checkedLeaseId(options.leaseId));
        await builder.exec();
      },
      options.leaseId,
    );
  }

  createIfAbsent(key: string, value: string, options: PutOptions = {}): Promise<boolean> {
    return this.call(
      'create-if-absent',
      async () => {
        const write = this.client.put(key).value(value);
        if (options.leaseId !== undefined) write.lease(this.checkedLeaseId(options.leaseId));
        const response = await this.client.if(key, 'Create', '==', 0).then(write).commit();
        return response.succeeded;
      },
      options.leaseId,
    );
  }

  replaceIfEquals(key: string, expected: string, value: string, options: PutOptions = {}): Promise<boolean> {
    return this.call(
      'compare-and-set',
      async () => {
        const write = this.client.put(key).value(value);
        if (options.leaseId !== undefined) write.lease(this.checkedLeaseId(options.leaseId));
        // etcd fails a Value comparison on a missing key, so a missing key is never "equal".
        const response = await this.client.if(key, 'Value', '==', expected).then(write).commit();
        return response.succeeded;
      },
      options.leaseId,
    );
  }

  deleteIfEquals(key: string, expected: string): Promise<boolean> {
    return this.call('compare-and-delete', async () => {
      const response = await this.client.if(key, 'Value', '==', expected).then(this.client.delete().key(key)).commit();
      return response.succeeded;
    });
  }

  delete(key: string): Promise<void> {
    return this.call('delete', async () => {
      await this.client.delete().key(key).exec();
    });
  }

  deletePrefix(prefix: string): Promise<void> {
    // An empty prefix would wipe every cluster's state in a shared etcd.
    if (prefix.length === 0) {
      return Promise.reject(new PgpilotError('INPUT_INVALID', 'refusing to delete an empty prefix (the whole store)'));
    }
    return this.call('delete prefix', async () => {
      await this.client.delete().prefix(prefix).exec();
    });
  }

  grantLease(ttlSeconds: number): Promise<LeaseId> {
    if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1) {
      return Promise.reject(
        new PgpilotError('INPUT_INVALID', `lease TTL must be a whole number of seconds >= 1, got ${ttlSeconds}`),
      );
    }
    return this.call('lease grant', async () => {
      const response = await this.client.leaseClient.leaseGrant({ TTL: ttlSeconds, ID: 0 });
      if (response.error) throw new Error(response.error);
      return String(response.ID);
    });
  }

  keepAlive(leaseId: LeaseId): Promise<boolean> {
    if (!LEASE_ID_PATTERN.test(leaseId)) return Promise.resolve(false);
    return this.call('lease keepalive', async () => {
      try {
        const response = await this.keepAliveOnce(leaseId);
        // etcd answers TTL 0 for a lease it does not have (expired, revoked, never granted).
        return Number(response.TTL) > 0;
      } catch (error) {
        if (error instanceof EtcdLeaseInvalidError) return false;
        throw error;
      }
    });
  }

  revokeLease(leaseId: LeaseId): Promise<void> {
    if (!LEASE_ID_PATTERN.test(leaseId)) return Promise.resolve();
    return this.call('lease revoke', async () => {
      try {
        await this.client.leaseClient.leaseRevoke({ ID: leaseId });
      } catch (error) {
        // Revoking a lease that is already gone is not an error (contract).
        if (!(error instanceof EtcdLeaseInvalidError)) throw error;
      }
    });
  }

  watchPrefix(prefix: string, onEvent: (event: DcsWatchEvent) => void): Promise<DcsWatch> {
    return this.call('watch', async () => {
      const watcher = this.client.watch().prefix(prefix).watcher();
      this.watchers.add(watcher);
      // Both listeners sit on the same emitter, fed event by event from each watch response,
      // so puts and deletes reach `onEvent` in revision order.
      watcher.on('put', (kv) => onEvent({ kind: 'put', key: kv.key.toString('utf8'), value: kv.value.toString('utf8') }));
      watcher.on('delete', (kv) => onEvent({ kind: 'delete', key: kv.key.toString('utf8') }));
      const connected = new Promise<void>((resolve, reject) => {
        watcher.once('connected', () => resolve());
        // Failing to open the stream the first time is reported now rather than retried until
        // the timeout; later disconnections are retried by etcd3, resuming at the last revision.
        watcher.once('disconnected', (error: Error) => reject(error));
        // Always listened to: an unhandled 'error' event would crash the process. After the
        // watch is established, etcd only cancels it for a compacted revision; the watcher then
        // stops and callers' periodic reads remain the source of truth.
        watcher.on('error', (error) => reject(error));
      });
      try {
        await this.raceTimeout(connected);
      } catch (error) {
        this.watchers.delete(watcher);
        void this.raceTimeout(watcher.cancel()).catch(() => undefined);
        throw error;
      }
      return {
        cancel: async () => {
          if (!this.watchers.delete(watcher)) return;
          await this.call('watch cancel', () => watcher.cancel());
        },
      };
    });
  }

  /** Cancels the watches (bounded) and closes the connections. Closing twice is harmless. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const watchers = [...this.watchers];
    this.watchers.clear();
    await Promise.all(watchers.map((watcher) => this.raceTimeout(watcher.cancel()).catch(() => undefined)));
    this.client.close();
  }

  private deadlineMs(): number {
    return this.clock.nowMs() + this.operationTimeoutMs;
  }

  private checkedLeaseId(leaseId: LeaseId): LeaseId {
    if (!LEASE_ID_PATTERN.test(leaseId)) throw new LeaseNotFoundError(leaseId);
    return leaseId;
  }

  /** One keepalive round trip on a short-lived stream that carries the operation deadline. */
  private async keepAliveOnce(leaseId: LeaseId): Promise<{ TTL: string }> {
    const stream = await this.client.leaseClient.leaseKeepAlive({ deadline: this.deadlineMs() });
    try {
      return await new Promise<{ TTL: string }>((resolve, reject) => {
        stream.on('data', (response) => resolve(response));
        stream.on('error', (error) => reject(error));
        stream.on('end', () => reject(new Error('keepalive stream ended without an answer')));
        stream.write({ ID: leaseId });
      });
    } finally {
      stream.end();
    }
  }

  /** Resolves like `operation`, or rejects with a timeout error once the operation timeout passes. */
  private async raceTimeout<T>(operation: Promise<T>): Promise<T> {
    const abort = new AbortController();
    try {
      const result = await Promise.race<T | typeof TIMED_OUT>([
        operation,
        this.clock.sleep(this.operationTimeoutMs, abort.signal).then(() => TIMED_OUT),
      ]);
      if (result === TIMED_OUT) throw new Error(`no answer within ${this.operationTimeoutMs} ms`);
      return result;
    } finally {
      abort.abort();
    }
  }

  /** Runs one bounded call and maps its failure to the port's errors. */
  private async call<T>(what: string, operation: () => Promise<T>, leaseId?: LeaseId): Promise<T> {
    if (this.closed) {
      throw new PgpilotError('DCS_UNAVAILABLE', `etcd ${what} failed: the client is closed`, {
        hint: 'this is a bug: the DCS client was used after close()',
      });
    }
    try {
      return await this.raceTimeout(operation());
    } catch (error) {
      if (error instanceof PgpilotError || error instanceof LeaseNotFoundError) throw error;
      if (leaseId !== undefined && error instanceof EtcdLeaseInvalidError) throw new LeaseNotFoundError(leaseId);
      throw unavailable(what, this.endpoints, error);
    }
  }
}
