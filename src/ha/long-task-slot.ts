/**
 * The HA loop's one slot for long operations (initdb, clone, rejoin, re-clone, step-down,
 * restart): the loop keeps ticking and renewing its lease while a task runs (HA rule 7,
 * docs/architecture.md). Invariants: at most one task runs (a start while one runs is ignored);
 * a task's failure never escapes (it is reported through `onFailed`); a clone, rejoin or
 * initialize that fails is counted in `memory.dataTaskFailures` (the backoff in decide), one that
 * succeeds clears the count; the loop is woken when a task ends.
 */
import type { Clock } from '../shared/clock.js';
import { errorMessage } from '../shared/errors.js';
import type { AgentMemory } from './agent-memory.js';
import type { LongTaskState } from './observation.js';

export interface LongTaskSlotDeps {
  clock: Clock;
  memory: AgentMemory;
  /** A task failed: the loop records the error in its snapshot and logs it. */
  onFailed(kind: LongTaskState['kind'], message: string): void;
  /** A task ended (either way): the loop ticks again at once. */
  onSettled(): void;
}

export class LongTaskSlot {
  private current: (LongTaskState & { promise: Promise<void> }) | null = null;

  constructor(private readonly deps: LongTaskSlotDeps) {}

  /** The running task, as observed (null: the slot is free). */
  state(): LongTaskState | null {
    return this.current === null ? null : { kind: this.current.kind, startedMs: this.current.startedMs };
  }

  kind(): LongTaskState['kind'] | null {
    return this.current?.kind ?? null;
  }

  start(kind: LongTaskState['kind'], task: () => Promise<void>): void {
    if (this.current !== null) return;
    const { clock, memory } = this.deps;
    const startedMs = clock.nowMs();
    const dataTask = kind === 'clone-from' || kind === 'rejoin' || kind === 'initialize-cluster';
    const promise = task()
      .then(() => {
        if (dataTask) memory.dataTaskFailures = null;
      })
      .catch((error: unknown) => {
        this.deps.onFailed(kind, errorMessage(error));
        if (dataTask) {
          const count = (memory.dataTaskFailures?.count ?? 0) + 1;
          memory.dataTaskFailures = { count, lastFailedMs: clock.nowMs() };
        }
      })
      .finally(() => {
        this.current = null;
        this.deps.onSettled();
      });
    this.current = { kind, startedMs, promise };
  }

  /** Waits for the running task, if any (never throws). */
  async settled(): Promise<void> {
    if (this.current !== null) await this.current.promise.catch(() => undefined);
  }
}
