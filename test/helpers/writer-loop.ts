/**
 * A client that opens a new connection and INSERTs a row every 50 ms through one port (the
 * routing endpoint under test), counting successes, failures and the longest gap between two
 * successful writes, until `stop()`. Connections use TLS verified against the cluster CA.
 */
import pg from 'pg';
import { SystemClock } from '../../src/shared/clock.js';
import { pgClientOptions, type PgAccess } from './cluster.js';

export interface WriterLoopResult {
  ok: number;
  failed: number;
  errors: string[];
  maxGapMs: number;
}

export function writerLoop(port: number, access: PgAccess, table = 'writes'): { okSoFar: () => number; stop: () => Promise<WriterLoopResult> } {
  const clock = new SystemClock();
  const result: WriterLoopResult = { ok: 0, failed: 0, errors: [], maxGapMs: 0 };
  let running = true;
  let lastOkMs = clock.nowMs();
  const done = (async () => {
    while (running) {
      const startedMs = clock.nowMs();
      const client = new pg.Client(pgClientOptions(access, { host: '127.0.0.1', port }, { connectionTimeoutMillis: 60_000 }));
      client.on('error', () => undefined);
      try {
        await client.connect();
        await client.query(`INSERT INTO ${client.escapeIdentifier(table)} DEFAULT VALUES`);
        const nowMs = clock.nowMs();
        result.maxGapMs = Math.max(result.maxGapMs, nowMs - lastOkMs);
        lastOkMs = nowMs;
        result.ok += 1;
      } catch (error) {
        result.failed += 1;
        if (result.errors.length < 10) result.errors.push(error instanceof Error ? error.message : String(error));
      } finally {
        await client.end().catch(() => undefined);
      }
      await clock.sleep(Math.max(0, 50 - (clock.nowMs() - startedMs)));
    }
  })();
  return {
    okSoFar: () => result.ok,
    stop: async () => {
      running = false;
      await done;
      return result;
    },
  };
}
