/**
 * Bounding a wait: `withDeadline(p, ms, what)` settles like `p`, or rejects with a TIMEOUT error
 * once `ms` pass first. The underlying work is not cancelled (the caller decides what to do with
 * it); the timer is cleared as soon as `p` settles, so it keeps a process alive at most `ms`.
 */
import { PgpilotError } from '../shared/errors.js';

export function withDeadline<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new PgpilotError('TIMEOUT', `${what} took longer than ${timeoutMs} ms`, { retryable: true })), Math.max(0, timeoutMs));
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error instanceof Error ? error : new Error(String(error)));
      },
    );
  });
}
