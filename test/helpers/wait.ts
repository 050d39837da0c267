/** Polling with a deadline: the only way tests wait for a state (never a fixed sleep). */
import { readFileSync } from 'node:fs';
import { SystemClock } from '../../src/shared/clock.js';

const clock = new SystemClock();

/** Thrown by a probe to end the wait at once (the state cannot come any more), instead of being retried. */
export class WaitAbortedError extends Error {}

/**
 * Polls `probe` every `pollMs` until it returns a value (not null/undefined/false). A probe error is
 * remembered and polling goes on, except `WaitAbortedError`, which ends the wait at once.
 */
export async function waitUntil<T>(what: string | (() => string), probe: () => Promise<T | null | undefined | false>, timeoutMs = 30_000, pollMs = 200): Promise<T> {
  const deadlineMs = clock.nowMs() + timeoutMs;
  let lastError: unknown = null;
  for (;;) {
    try {
      const value = await probe();
      if (value !== null && value !== undefined && value !== false) return value;
    } catch (error) {
      if (error instanceof WaitAbortedError) throw error;
      lastError = error;
    }
    if (clock.nowMs() >= deadlineMs) {
      const detail = lastError instanceof Error ? ` (last error: ${lastError.message})` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === 'string' ? what : what()}${detail}`);
    }
    await clock.sleep(Math.max(0, Math.min(pollMs, deadlineMs - clock.nowMs())));
  }
}

/** True while `pid` exists and is not a zombie waiting to be reaped. */
export function isPidAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}
