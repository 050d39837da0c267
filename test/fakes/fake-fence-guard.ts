/**
 * An in-memory stand-in for the fencing watchdog (src/agent/watchdog.ts, the `FenceGuard` port of
 * src/ha/fencing.ts) on the fake clock: `arm(pid, deadline)` replaces any earlier arming, `disarm`
 * cancels it, and when the clock reaches an armed deadline the postmaster with that pid is killed
 * (SIGKILL: an unexpected exit of the fake postgres). As the real watchdog, it never kills a
 * postmaster other than the one it was armed with, and it keeps no memory beyond the last command.
 */
import type { FenceGuard } from '../../src/ha/fencing.js';
import type { Clock } from '../../src/shared/clock.js';
import type { FakePostgresWorld } from './fake-postgres-node.js';

export class FakeFenceGuard implements FenceGuard {
  /** Deadlines at which the guard fired, for assertions. */
  readonly fired: number[] = [];
  private armed: { pid: number; deadlineMs: number; cancel: AbortController } | null = null;

  constructor(
    private readonly clock: Clock,
    private readonly world: FakePostgresWorld,
    private readonly node: string,
  ) {}

  arm(postmasterPid: number, deadlineEpochMs: number): void {
    if (this.armed?.pid === postmasterPid && this.armed.deadlineMs === deadlineEpochMs) return;
    this.disarm();
    const cancel = new AbortController();
    const armed = { pid: postmasterPid, deadlineMs: deadlineEpochMs, cancel };
    this.armed = armed;
    void this.clock.sleep(Math.max(0, deadlineEpochMs - this.clock.nowMs()), cancel.signal).then(() => {
      if (this.armed !== armed || cancel.signal.aborted) return;
      this.armed = null;
      this.fired.push(deadlineEpochMs);
      if (this.world.dataOf(this.node)?.pid === postmasterPid) this.world.crash(this.node);
    });
  }

  disarm(): void {
    this.armed?.cancel.abort();
    this.armed = null;
  }

  isArmed(): boolean {
    return this.armed !== null;
  }
}
