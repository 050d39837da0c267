/**
 * A TCP router: every accepted client connection is piped, byte for byte and with backpressure
 * (stream.pipe), to the upstream that `resolve()` names at that moment — the leader for the
 * leader port, a streaming replica for the replica port. It never parses the PostgreSQL protocol.
 *
 * Invariants:
 * - A connection is routed only to an upstream `resolve()` returned for it; while `resolve()`
 *   says `hold` (a switchover in progress, no leader yet) the client waits, paused, in a queue
 *   bounded in time (`holdTimeoutMs`) and size (`maxHeld`), and is released by `notify()` when the
 *   route is known again. A client never sees an error for a hand-over that completes in time.
 * - An upstream that refuses the connection is not an error for the client either: the
 *   connection goes back to the hold queue until its deadline (the leader may just have died).
 * - Closing either side closes the other; nothing is left half-open.
 */
import net from 'node:net';
import type { Clock } from '../shared/clock.js';
import type { Logger } from '../shared/logger.js';

export type RouteDecision = { kind: 'route'; host: string; port: number; name: string } | { kind: 'hold'; reason: string };

export interface TcpRouterOptions {
  name: string;
  listenHost: string;
  port: number;
  resolve(): RouteDecision;
  holdTimeoutMs: number;
  maxHeld?: number;
  connectTimeoutMs?: number;
  clock: Clock;
  log: Logger;
}

export interface RouterStats {
  /** Client connections currently piped to an upstream. */
  open: number;
  /** Client connections waiting for a route. */
  held: number;
  /** Client connections accepted since start. */
  total: number;
  /** Client connections closed because no route appeared within the hold timeout (or the queue was full). */
  failed: number;
}

interface Held {
  socket: net.Socket;
  deadlineMs: number;
  timer: AbortController;
}

export class TcpRouter {
  private server: net.Server | null = null;
  private readonly held = new Set<Held>();
  private readonly piped = new Set<net.Socket>();
  private stats: RouterStats = { open: 0, held: 0, total: 0, failed: 0 };

  constructor(private readonly options: TcpRouterOptions) {}

  async start(): Promise<void> {
    const server = net.createServer({ pauseOnConnect: true, noDelay: true }, (socket) => this.accept(socket));
    server.on('error', (error) => this.options.log.error({ err: error.message, router: this.options.name }, 'router listener error'));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: this.options.listenHost, port: this.options.port, exclusive: true }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.server = server;
  }

  snapshot(): RouterStats {
    return { ...this.stats, open: this.piped.size, held: this.held.size };
  }

  /** Re-evaluates held connections (call when the cluster view changed). */
  notify(): void {
    for (const entry of [...this.held]) {
      const decision = this.options.resolve();
      if (decision.kind !== 'route') return;
      this.release(entry);
      this.connect(entry.socket, decision, entry.deadlineMs);
    }
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    for (const entry of [...this.held]) this.fail(entry, 'router stopping');
    for (const socket of [...this.piped]) socket.destroy();
    if (server !== null) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private accept(socket: net.Socket): void {
    this.stats.total += 1;
    socket.on('error', () => undefined);
    const deadlineMs = this.options.clock.nowMs() + this.options.holdTimeoutMs;
    const decision = this.options.resolve();
    if (decision.kind === 'route') this.connect(socket, decision, deadlineMs);
    else this.hold(socket, deadlineMs);
  }

  private hold(socket: net.Socket, deadlineMs: number): void {
    if (socket.destroyed) return;
    if (this.held.size >= (this.options.maxHeld ?? 10_000)) {
      this.stats.failed += 1;
      socket.destroy();
      return;
    }
    const timer = new AbortController();
    const entry: Held = { socket, deadlineMs, timer };
    this.held.add(entry);
    socket.once('close', () => this.release(entry));
    const waitMs = Math.max(0, deadlineMs - this.options.clock.nowMs());
    void this.options.clock.sleep(waitMs, timer.signal).then(() => {
      if (!timer.signal.aborted && this.held.has(entry)) this.fail(entry, 'no route within the hold timeout');
    });
  }

  private release(entry: Held): void {
    entry.timer.abort();
    this.held.delete(entry);
  }

  private fail(entry: Held, reason: string): void {
    this.release(entry);
    this.stats.failed += 1;
    this.options.log.warn({ router: this.options.name, reason }, 'closing a held client connection');
    entry.socket.destroy();
  }

  private connect(client: net.Socket, route: Extract<RouteDecision, { kind: 'route' }>, deadlineMs: number): void {
    if (client.destroyed) return;
    const upstream = net.connect({ host: route.host, port: route.port, noDelay: true });
    let connected = false;
    const timeout = setTimeout(() => upstream.destroy(new Error('connect timeout')), this.options.connectTimeoutMs ?? 2_000);
    upstream.once('connect', () => {
      connected = true;
      clearTimeout(timeout);
      this.piped.add(client);
      client.pipe(upstream);
      upstream.pipe(client);
      client.resume();
    });
    upstream.on('error', () => {
      clearTimeout(timeout);
      if (!connected) {
        // Refused or timed out before any byte went through: the client can still be routed later.
        upstream.destroy();
        if (this.options.clock.nowMs() < deadlineMs) this.hold(client, deadlineMs);
        else {
          this.stats.failed += 1;
          client.destroy();
        }
      }
    });
    upstream.on('close', () => {
      clearTimeout(timeout);
      if (connected) {
        this.piped.delete(client);
        client.destroy();
      }
    });
    client.once('close', () => {
      if (connected) {
        this.piped.delete(client);
        upstream.destroy();
      }
    });
  }
}
