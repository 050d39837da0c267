/**
 * The workload: N concurrent writers, each inserting rows with unique ids (writer * 1e9 + seq) into
 * chaos_acked, autocommit, one row per statement. An id counts as acknowledged only after the
 * INSERT's CommandComplete came back; a statement that failed or timed out is "unknown" (it may
 * or may not have committed) and is never counted as acknowledged. node-postgres has no
 * multi-host support, so a writer does what libpq's target_session_attrs=read-write does: try each
 * host, keep the first where pg_is_in_recovery() is false, and look again after any error.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import type { HarnessCredentials } from './chaos-tls.js';
import { closeClient, connect, errorText, nowMs } from './pg-client.js';
import { NODE_NAMES, nodeAddress, type NodeName } from './topology.js';

export const ACKED_TABLE_SQL = 'CREATE TABLE IF NOT EXISTS chaos_acked (id bigint PRIMARY KEY, writer int NOT NULL, seq int NOT NULL, node text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())';
const ID_BASE = 1_000_000_000;

export interface AckedRow {
  id: number;
  node: NodeName;
  atMs: number;
}

export interface WorkloadOptions {
  writers: number;
  /** Pause between two inserts of one writer (keeps a 2-core machine usable). */
  paceMs: number;
  connectTimeoutMs: number;
  queryTimeoutMs: number;
}

export class Workload {
  readonly acked: AckedRow[] = [];
  unknown = 0;
  connectFailures = 0;
  lastError: string | null = null;
  private stopped = false;
  private readonly running: Promise<void>[] = [];

  constructor(
    private readonly credentials: HarnessCredentials,
    private readonly options: WorkloadOptions,
  ) {}

  start(): void {
    for (let w = 1; w <= this.options.writers; w += 1) this.running.push(this.writer(w));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.race([Promise.allSettled(this.running), sleep(this.options.queryTimeoutMs + 5_000)]);
  }

  private async findPrimary(writer: number): Promise<{ client: pg.Client; node: NodeName } | null> {
    for (const node of NODE_NAMES) {
      let client: pg.Client | null = null;
      try {
        client = await connect(nodeAddress(node), this.credentials, {
          connectTimeoutMs: this.options.connectTimeoutMs,
          queryTimeoutMs: this.options.queryTimeoutMs,
          applicationName: `chaos-writer-${writer}`,
        });
        const result = await client.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r');
        if (result.rows[0]?.r === false) return { client, node };
      } catch (error) {
        this.lastError = errorText(error);
      }
      if (client !== null) await closeClient(client);
    }
    return null;
  }

  private async writer(writer: number): Promise<void> {
    let seq = 0;
    let session: { client: pg.Client; node: NodeName } | null = null;
    // Bounded by `stopped`: the run stops the workload before it ends.
    while (!this.stopped) {
      if (session === null) {
        session = await this.findPrimary(writer);
        if (session === null) {
          this.connectFailures += 1;
          await sleep(200);
          continue;
        }
      }
      seq += 1;
      const id = writer * ID_BASE + seq;
      try {
        await session.client.query('INSERT INTO chaos_acked (id, writer, seq, node) VALUES ($1, $2, $3, $4)', [id, writer, seq, session.node]);
        this.acked.push({ id, node: session.node, atMs: nowMs() });
      } catch (error) {
        this.unknown += 1;
        this.lastError = errorText(error);
        await closeClient(session.client);
        session = null;
      }
      await sleep(this.options.paceMs);
    }
    if (session !== null) await closeClient(session.client);
  }
}
