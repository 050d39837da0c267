/**
 * CPU priority of the control plane. On a database host the HA agent, its fencing watchdog and
 * etcd must keep running while postgres, the proxy and clients saturate the CPUs: an agent
 * starved for longer than its lease margin fences a healthy leader (a false failover). So, when
 * running as root, the control plane raises its own priority and starts the data plane (postgres,
 * HAProxy) back at normal priority.
 *
 * Linux specifics this relies on:
 * - with `kernel.sched_autogroup_enabled=1` (the default on Debian), CPU is shared first between
 *   sessions ("autogroups") and only then between the processes of a session, so per-process nice
 *   alone does nothing against load from other sessions; the session's weight is set by writing a
 *   nice value to /proc/<pid>/autogroup. Postgres, HAProxy, the watchdog and etcd each run in a
 *   session of their own (spawned detached), so boosting the agent's session boosts only the agent;
 * - `setpriority(PRIO_PROCESS, 0, n)` (os.setPriority) sets the calling thread's nice value, which
 *   threads and children created afterwards inherit; children of the data plane are therefore
 *   started through `nice -n <back to 0>`.
 * Invariant: never lowers anyone's priority below normal, and is a no-op without root.
 */
import { writeFileSync } from 'node:fs';
import os from 'node:os';

/** The nice value (and autogroup nice) the control plane runs at when it can. */
export const CONTROL_PLANE_NICE = -10;

function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

export interface BoostResult {
  nice: number | null;
  autogroup: boolean;
}

/** Raises this process's priority (and its session's, with autogroups) when root; reports what it did. */
export function boostControlPlane(pid: number = process.pid): BoostResult {
  if (!isRoot()) return { nice: null, autogroup: false };
  let nice: number | null = null;
  try {
    os.setPriority(pid === process.pid ? 0 : pid, CONTROL_PLANE_NICE);
    nice = CONTROL_PLANE_NICE;
  } catch {
    // no CAP_SYS_NICE (e.g. a restricted container): run at normal priority
  }
  let autogroup = false;
  try {
    writeFileSync(`/proc/${pid}/autogroup`, String(CONTROL_PLANE_NICE));
    autogroup = true;
  } catch {
    // autogroups disabled or /proc read-only: the per-process nice is what counts then
  }
  return { nice, autogroup };
}

/** `command args` wrapped so that it runs at normal priority (nice 0) even when we are boosted. */
export function atNormalPriority(command: string, args: readonly string[]): { command: string; args: string[] } {
  let current = 0;
  try {
    current = os.getPriority();
  } catch {
    current = 0;
  }
  if (current >= 0) return { command, args: [...args] };
  return { command: 'nice', args: ['-n', String(-current), command, ...args] };
}

/** `command args` wrapped so that it starts at the control plane's priority (root only; etcd). */
export function atControlPlanePriority(command: string, args: readonly string[]): { command: string; args: string[] } {
  if (!isRoot()) return { command, args: [...args] };
  return { command: 'nice', args: ['-n', String(CONTROL_PLANE_NICE), command, ...args] };
}

/** Gives the session of an already started control-plane process (etcd) the control plane's weight. */
export function boostSessionOf(pid: number): boolean {
  if (!isRoot()) return false;
  try {
    writeFileSync(`/proc/${pid}/autogroup`, String(CONTROL_PLANE_NICE));
    return true;
  } catch {
    return false;
  }
}
