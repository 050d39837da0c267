/**
 * The pure core of `pgpilot node run`: (state, event, nowMs) -> (state, actions). The executor
 * (src/node/supervisor.ts) spawns and signals processes and feeds back what happened; every timing
 * decision is made here, so unit tests drive it with plain numbers (test/unit/node-supervisor.test.ts).
 *
 * Invariants:
 * - Children start in the order given (etcd member first, then the agent) and stop in the reverse
 *   order: the agent first (SIGTERM: it stops postgres cleanly and releases its etcd keys, which
 *   needs etcd), then the etcd member; each gets SIGKILL after its own bounded grace.
 * - A child that exits while the supervisor runs is restarted after a backoff that starts at
 *   `initialBackoffMs` and doubles up to `maxBackoffMs`; a child that stayed up `resetAfterMs`
 *   before exiting starts again from `initialBackoffMs`. A failed spawn counts as an exit.
 * - The first stop signal cancels every pending restart; a second one hurries: the child being
 *   stopped is SIGKILLed now and the next ones get only `hurryGraceMs`.
 * - A child that does not exit even after SIGKILL (`killWaitMs`) is given up on (logged) so the
 *   stop always ends in bounded time; the exit code is then 1, else 0.
 */

export interface SupervisorTiming {
  initialBackoffMs: number;
  maxBackoffMs: number;
  resetAfterMs: number;
  hurryGraceMs: number;
  killWaitMs: number;
}

export const DEFAULT_SUPERVISOR_TIMING: SupervisorTiming = {
  initialBackoffMs: 1_000,
  maxBackoffMs: 30_000,
  resetAfterMs: 60_000,
  hurryGraceMs: 2_000,
  killWaitMs: 10_000,
};

export interface ChildPolicy {
  name: string;
  /** How long a SIGTERMed child may take before SIGKILL. */
  stopGraceMs: number;
}

export type ChildPhase =
  /** Not started yet, or given up on after the stop. */
  | { kind: 'idle' }
  | { kind: 'spawning' }
  | { kind: 'running'; pid: number; startedAtMs: number }
  | { kind: 'backoff'; restartAtMs: number }
  | { kind: 'stopping'; pid: number; killAtMs: number; killed: boolean }
  | { kind: 'stopped' };

export interface ChildState {
  policy: ChildPolicy;
  phase: ChildPhase;
  /** The delay before the next restart. */
  nextBackoffMs: number;
  restarts: number;
}

export interface SupervisorState {
  mode: 'running' | 'stopping' | 'done';
  hurry: boolean;
  children: ChildState[];
  exitCode: number;
}

export type SupervisorEvent =
  | { kind: 'boot' }
  | { kind: 'spawned'; child: string; pid: number }
  | { kind: 'spawn-failed'; child: string; reason: string }
  | { kind: 'exited'; child: string; pid: number; code: number | null; signal: string | null }
  | { kind: 'signal'; signal: string }
  | { kind: 'tick' };

export type SupervisorAction =
  | { kind: 'spawn'; child: string }
  | { kind: 'kill'; child: string; pid: number; signal: 'SIGTERM' | 'SIGKILL' }
  | { kind: 'log'; level: 'info' | 'warn' | 'error'; message: string }
  | { kind: 'exit'; code: number };

export interface Decision {
  state: SupervisorState;
  actions: SupervisorAction[];
}

export function initialSupervisorState(policies: readonly ChildPolicy[], timing: SupervisorTiming = DEFAULT_SUPERVISOR_TIMING): SupervisorState {
  return {
    mode: 'running',
    hurry: false,
    exitCode: 0,
    children: policies.map((policy) => ({ policy, phase: { kind: 'idle' }, nextBackoffMs: timing.initialBackoffMs, restarts: 0 })),
  };
}

function describeExit(code: number | null, signal: string | null): string {
  return signal !== null ? `killed by ${signal}` : `exited with code ${code ?? '?'}`;
}

function withChild(state: SupervisorState, name: string, update: (child: ChildState) => ChildState): SupervisorState {
  return { ...state, children: state.children.map((c) => (c.policy.name === name ? update(c) : c)) };
}

/**
 * While stopping: the child to stop next is the last (in start order) that still has a process or
 * may get one; starts its stop when it runs, and ends the run once nothing is left.
 */
function advanceStop(state: SupervisorState, nowMs: number, timing: SupervisorTiming): Decision {
  const actions: SupervisorAction[] = [];
  let next = state;
  for (let i = next.children.length - 1; i >= 0; i -= 1) {
    const child = next.children[i] as ChildState;
    const phase = child.phase;
    if (phase.kind === 'stopping' || phase.kind === 'spawning') return { state: next, actions };
    if (phase.kind === 'running') {
      const graceMs = next.hurry ? Math.min(timing.hurryGraceMs, child.policy.stopGraceMs) : child.policy.stopGraceMs;
      next = withChild(next, child.policy.name, (c) => ({ ...c, phase: { kind: 'stopping', pid: phase.pid, killAtMs: nowMs + graceMs, killed: false } }));
      actions.push({ kind: 'log', level: 'info', message: `stopping ${child.policy.name} (pid ${phase.pid}, SIGTERM, SIGKILL after ${Math.round(graceMs / 1000)} s)` });
      actions.push({ kind: 'kill', child: child.policy.name, pid: phase.pid, signal: 'SIGTERM' });
      return { state: next, actions };
    }
    if (phase.kind === 'backoff' || phase.kind === 'idle') {
      next = withChild(next, child.policy.name, (c) => ({ ...c, phase: { kind: 'stopped' } }));
    }
  }
  next = { ...next, mode: 'done' };
  actions.push({ kind: 'log', level: 'info', message: `every child stopped; exiting with code ${next.exitCode}` });
  actions.push({ kind: 'exit', code: next.exitCode });
  return { state: next, actions };
}

function onExit(state: SupervisorState, event: Extract<SupervisorEvent, { kind: 'exited' | 'spawn-failed' }>, nowMs: number, timing: SupervisorTiming): Decision {
  const child = state.children.find((c) => c.policy.name === event.child);
  if (child === undefined) return { state, actions: [] };
  const phase = child.phase;
  const what = event.kind === 'exited' ? describeExit(event.code, event.signal) : `could not start: ${event.reason}`;
  if (event.kind === 'exited' && (phase.kind === 'running' || phase.kind === 'stopping') && phase.pid !== event.pid) return { state, actions: [] };
  if (state.mode !== 'running') {
    const next = withChild(state, event.child, (c) => ({ ...c, phase: { kind: 'stopped' } }));
    const decision = advanceStop(next, nowMs, timing);
    return { state: decision.state, actions: [{ kind: 'log', level: 'info', message: `${event.child} stopped (${what})` }, ...decision.actions] };
  }
  const stayedUpMs = phase.kind === 'running' ? nowMs - phase.startedAtMs : 0;
  const delayMs = stayedUpMs >= timing.resetAfterMs ? timing.initialBackoffMs : child.nextBackoffMs;
  const next = withChild(state, event.child, (c) => ({
    ...c,
    phase: { kind: 'backoff', restartAtMs: nowMs + delayMs },
    nextBackoffMs: Math.min(timing.maxBackoffMs, delayMs * 2),
  }));
  return {
    state: next,
    actions: [{ kind: 'log', level: 'warn', message: `${event.child} ${what} unexpectedly${phase.kind === 'running' ? ` after ${Math.round(stayedUpMs / 1000)} s` : ''}; restarting in ${Math.round(delayMs / 100) / 10} s` }],
  };
}

export function decideSupervisor(state: SupervisorState, event: SupervisorEvent, nowMs: number, timing: SupervisorTiming = DEFAULT_SUPERVISOR_TIMING): Decision {
  if (state.mode === 'done') return { state, actions: [] };
  switch (event.kind) {
    case 'boot': {
      let next = state;
      const actions: SupervisorAction[] = [];
      for (const child of state.children) {
        if (child.phase.kind !== 'idle') continue;
        next = withChild(next, child.policy.name, (c) => ({ ...c, phase: { kind: 'spawning' } }));
        actions.push({ kind: 'spawn', child: child.policy.name });
      }
      return { state: next, actions };
    }
    case 'spawned': {
      const child = state.children.find((c) => c.policy.name === event.child);
      if (child === undefined || child.phase.kind !== 'spawning') return { state, actions: [] };
      const next = withChild(state, event.child, (c) => ({ ...c, phase: { kind: 'running', pid: event.pid, startedAtMs: nowMs } }));
      const log: SupervisorAction = { kind: 'log', level: 'info', message: `${event.child} started (pid ${event.pid}${child.restarts > 0 ? `, restart ${child.restarts}` : ''})` };
      if (state.mode === 'stopping') {
        const decision = advanceStop(next, nowMs, timing);
        return { state: decision.state, actions: [log, ...decision.actions] };
      }
      return { state: next, actions: [log] };
    }
    case 'spawn-failed':
    case 'exited':
      return onExit(state, event, nowMs, timing);
    case 'signal': {
      if (state.mode === 'running') {
        const stopping: SupervisorState = { ...state, mode: 'stopping' };
        const decision = advanceStop(stopping, nowMs, timing);
        return { state: decision.state, actions: [{ kind: 'log', level: 'info', message: `${event.signal}: stopping (the agent first, then the etcd member)` }, ...decision.actions] };
      }
      // A second signal: no more waiting for graceful exits.
      const actions: SupervisorAction[] = [{ kind: 'log', level: 'warn', message: `${event.signal} again: hurrying (SIGKILL to the child being stopped)` }];
      let next: SupervisorState = { ...state, hurry: true };
      for (const child of next.children) {
        const phase = child.phase;
        if (phase.kind !== 'stopping' || phase.killed) continue;
        next = withChild(next, child.policy.name, (c) => ({ ...c, phase: { ...phase, killed: true, killAtMs: nowMs + timing.killWaitMs } }));
        actions.push({ kind: 'kill', child: child.policy.name, pid: phase.pid, signal: 'SIGKILL' });
      }
      return { state: next, actions };
    }
    case 'tick': {
      const actions: SupervisorAction[] = [];
      let next = state;
      for (const child of state.children) {
        const phase = child.phase;
        if (state.mode === 'running' && phase.kind === 'backoff' && phase.restartAtMs <= nowMs) {
          next = withChild(next, child.policy.name, (c) => ({ ...c, phase: { kind: 'spawning' }, restarts: c.restarts + 1 }));
          actions.push({ kind: 'spawn', child: child.policy.name });
        }
        if (phase.kind === 'stopping' && phase.killAtMs <= nowMs) {
          if (!phase.killed) {
            next = withChild(next, child.policy.name, (c) => ({ ...c, phase: { ...phase, killed: true, killAtMs: nowMs + timing.killWaitMs } }));
            actions.push({ kind: 'log', level: 'warn', message: `${child.policy.name} (pid ${phase.pid}) did not stop within its grace; SIGKILL` });
            actions.push({ kind: 'kill', child: child.policy.name, pid: phase.pid, signal: 'SIGKILL' });
          } else {
            next = withChild({ ...next, exitCode: 1 }, child.policy.name, (c) => ({ ...c, phase: { kind: 'stopped' } }));
            actions.push({ kind: 'log', level: 'error', message: `${child.policy.name} (pid ${phase.pid}) is still there after SIGKILL; giving up on it` });
            const decision = advanceStop(next, nowMs, timing);
            next = decision.state;
            actions.push(...decision.actions);
          }
        }
      }
      return { state: next, actions };
    }
  }
}

/** When the executor must next deliver a `tick` (null: only events can change anything). */
export function nextWakeMs(state: SupervisorState): number | null {
  let wake: number | null = null;
  for (const child of state.children) {
    const phase = child.phase;
    const at = phase.kind === 'backoff' && state.mode === 'running' ? phase.restartAtMs : phase.kind === 'stopping' ? phase.killAtMs : null;
    if (at !== null && (wake === null || at < wake)) wake = at;
  }
  return wake;
}
