/**
 * Reads postgres statistics for a scrape, within a time bound, on a connection of its own (never
 * the HA loop's, so a slow statistics query cannot delay a lease renewal). Invariants:
 * - at most one read runs at a time: a scrape that arrives while an earlier read is still stuck
 *   (a frozen postgres) waits on that same read instead of opening another connection, so a
 *   wedged server costs one connection, not one per scrape;
 * - every wait is bounded by the caller's timeout, and the connection has a statement_timeout so
 *   a slow but live server cancels the statement itself;
 * - any failure drops the connection; the next scrape connects again.
 */
import type { PgClient } from '../postgres/queries.js';
import { readPostgresStats, type PostgresStats } from '../postgres/stats-queries.js';
import { withDeadline } from './deadline.js';

export class PostgresSampler {
  private client: PgClient | null = null;
  private inFlight: Promise<PostgresStats> | null = null;

  constructor(private readonly connect: () => Promise<PgClient>) {}

  /** Statistics read now, or a rejection once `timeoutMs` passes first. */
  sample(timeoutMs: number): Promise<PostgresStats> {
    this.inFlight ??= this.read().finally(() => {
      this.inFlight = null;
    });
    return withDeadline(this.inFlight, timeoutMs, 'postgres statistics');
  }

  async close(): Promise<void> {
    await this.drop();
  }

  private async read(): Promise<PostgresStats> {
    try {
      if (this.client === null) {
        const client = await this.connect();
        client.on('end', () => {
          if (this.client === client) this.client = null;
        });
        this.client = client;
      }
      return await readPostgresStats(this.client);
    } catch (error) {
      await this.drop();
      throw error;
    }
  }

  private async drop(): Promise<void> {
    const client = this.client;
    this.client = null;
    // Not awaited beyond a moment: ending a connection to a frozen server can wait for ever.
    if (client !== null) await withDeadline(client.end(), 1_000, 'closing the metrics connection').catch(() => undefined);
  }
}
