/**
 * Time as a port. Modules under ha/, dcs/ and backup/ never read the wall clock or arm timers
 * directly: they get a `Clock`, so scenario tests can step a `FakeClock` through lease expiry
 * deterministically. `nowMs` is monotonic-enough wall time in milliseconds; `sleep` resolves after
 * the given time on that clock (or early when the signal aborts).
 */

export interface Clock {
  nowMs(): number;
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

export class SystemClock implements Clock {
  nowMs(): number {
    return Date.now();
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal?.aborted) return resolve();
      const timer = setTimeout(done, Math.max(0, ms));
      function done(): void {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        resolve();
      }
      signal?.addEventListener('abort', done, { once: true });
    });
  }
}

interface Sleeper {
  wakeAtMs: number;
  resolve: () => void;
}

/** A clock that only moves when told to; sleepers wake in order as `advance` passes them. */
export class FakeClock implements Clock {
  private currentMs: number;
  private sleepers: Sleeper[] = [];

  constructor(startMs = 1_700_000_000_000) {
    this.currentMs = startMs;
  }

  nowMs(): number {
    return this.currentMs;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal?.aborted) return resolve();
      const sleeper: Sleeper = { wakeAtMs: this.currentMs + Math.max(0, ms), resolve };
      this.sleepers.push(sleeper);
      signal?.addEventListener(
        'abort',
        () => {
          this.sleepers = this.sleepers.filter((s) => s !== sleeper);
          resolve();
        },
        { once: true },
      );
    });
  }

  /** Moves time forward, waking every sleeper whose deadline is passed. */
  advance(ms: number): void {
    this.currentMs += ms;
    const due = this.sleepers.filter((s) => s.wakeAtMs <= this.currentMs);
    this.sleepers = this.sleepers.filter((s) => s.wakeAtMs > this.currentMs);
    for (const s of due.sort((a, b) => a.wakeAtMs - b.wakeAtMs)) s.resolve();
  }

  pendingSleepers(): number {
    return this.sleepers.length;
  }
}
