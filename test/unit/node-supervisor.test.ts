/**
 * The node supervisor: the pure core (src/node/supervisor-decide.ts) step by step, and the executor
 * (src/node/supervisor.ts) on a FakeClock with a fake process port.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FakeClock } from '../../src/shared/clock.js';
import {
  DEFAULT_SUPERVISOR_TIMING as T,
  decideSupervisor,
  initialSupervisorState,
  nextWakeMs,
  type SupervisorAction,
  type SupervisorEvent,
  type SupervisorState,
} from '../../src/node/supervisor-decide.js';
import { Supervisor, type ChildExit, type ChildHandle, type ChildSpec, type ProcessPort } from '../../src/node/supervisor.js';

const POLICIES = [
  { name: 'etcd', stopGraceMs: 10_000 },
  { name: 'agent', stopGraceMs: 60_000 },
];

/** Applies events in order, collecting every action. */
function run(state: SupervisorState, steps: Array<[SupervisorEvent, number]>): { state: SupervisorState; actions: SupervisorAction[] } {
  let current = state;
  const actions: SupervisorAction[] = [];
  for (const [event, nowMs] of steps) {
    const d = decideSupervisor(current, event, nowMs);
    current = d.state;
    actions.push(...d.actions);
  }
  return { state: current, actions };
}

const nonLog = (actions: SupervisorAction[]): SupervisorAction[] => actions.filter((a) => a.kind !== 'log');

function booted(): SupervisorState {
  return run(initialSupervisorState(POLICIES), [
    [{ kind: 'boot' }, 0],
    [{ kind: 'spawned', child: 'etcd', pid: 100 }, 0],
    [{ kind: 'spawned', child: 'agent', pid: 200 }, 0],
  ]).state;
}

void describe('decideSupervisor', () => {
  void it('boots etcd first, then the agent', () => {
    const d = decideSupervisor(initialSupervisorState(POLICIES), { kind: 'boot' }, 0);
    assert.deepEqual(nonLog(d.actions), [
      { kind: 'spawn', child: 'etcd' },
      { kind: 'spawn', child: 'agent' },
    ]);
  });

  void it('restarts a crashed child with doubling backoff up to the maximum', () => {
    let state = booted();
    let now = 1_000;
    let pid = 200;
    const delays: number[] = [];
    for (let i = 0; i < 8; i += 1) {
      state = decideSupervisor(state, { kind: 'exited', child: 'agent', pid, code: null, signal: 'SIGKILL' }, now).state;
      const wake = nextWakeMs(state);
      assert.ok(wake !== null);
      delays.push(wake - now);
      // Nothing happens before the deadline...
      assert.deepEqual(nonLog(decideSupervisor(state, { kind: 'tick' }, wake - 1).actions), []);
      // ...then the child is spawned again.
      const due = decideSupervisor(state, { kind: 'tick' }, wake);
      assert.deepEqual(nonLog(due.actions), [{ kind: 'spawn', child: 'agent' }]);
      pid += 1;
      now = wake + 100;
      state = decideSupervisor(due.state, { kind: 'spawned', child: 'agent', pid }, now).state;
    }
    assert.deepEqual(delays, [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000]);
    assert.equal(state.children[1]?.restarts, 8);
  });

  void it('resets the backoff after the child stayed up long enough', () => {
    let state = booted();
    for (const [at, pid] of [[1_000, 200], [2_100, 201]] as const) {
      state = decideSupervisor(state, { kind: 'exited', child: 'agent', pid, code: 1, signal: null }, at).state;
      const wake = nextWakeMs(state) ?? 0;
      state = decideSupervisor(decideSupervisor(state, { kind: 'tick' }, wake).state, { kind: 'spawned', child: 'agent', pid: pid + 1 }, wake).state;
    }
    // Backoff is now 4 s; the agent then runs for 60 s and exits: 1 s again.
    const startedAt = (state.children[1]?.phase as { startedAtMs: number }).startedAtMs;
    const after = decideSupervisor(state, { kind: 'exited', child: 'agent', pid: 202, code: 1, signal: null }, startedAt + T.resetAfterMs);
    assert.equal((nextWakeMs(after.state) ?? 0) - (startedAt + T.resetAfterMs), T.initialBackoffMs);
  });

  void it('treats a failed spawn like an exit (backoff, then retry)', () => {
    const state = run(initialSupervisorState(POLICIES), [[{ kind: 'boot' }, 0]]).state;
    const d = decideSupervisor(state, { kind: 'spawn-failed', child: 'etcd', reason: 'ENOENT' }, 0);
    assert.equal(nextWakeMs(d.state), T.initialBackoffMs);
    assert.ok(d.actions.some((a) => a.kind === 'log' && a.message.includes('ENOENT')));
  });

  void it('ignores the exit of a PID it no longer tracks', () => {
    const state = booted();
    const d = decideSupervisor(state, { kind: 'exited', child: 'agent', pid: 999, code: 0, signal: null }, 5);
    assert.deepEqual(d.actions, []);
    assert.equal(d.state, state);
  });

  void it('on SIGTERM stops the agent first, then etcd, then exits 0', () => {
    const state = booted();
    const term = decideSupervisor(state, { kind: 'signal', signal: 'SIGTERM' }, 10);
    assert.deepEqual(nonLog(term.actions), [{ kind: 'kill', child: 'agent', pid: 200, signal: 'SIGTERM' }]);
    assert.equal(nextWakeMs(term.state), 10 + 60_000);
    const agentGone = decideSupervisor(term.state, { kind: 'exited', child: 'agent', pid: 200, code: 0, signal: null }, 2_000);
    assert.deepEqual(nonLog(agentGone.actions), [{ kind: 'kill', child: 'etcd', pid: 100, signal: 'SIGTERM' }]);
    const etcdGone = decideSupervisor(agentGone.state, { kind: 'exited', child: 'etcd', pid: 100, code: 0, signal: null }, 2_500);
    assert.deepEqual(nonLog(etcdGone.actions), [{ kind: 'exit', code: 0 }]);
    assert.equal(etcdGone.state.mode, 'done');
  });

  void it('SIGKILLs a child that outlives its grace, and gives up (exit 1) when even that fails', () => {
    const term = decideSupervisor(booted(), { kind: 'signal', signal: 'SIGTERM' }, 0).state;
    const late = decideSupervisor(term, { kind: 'tick' }, 60_000);
    assert.deepEqual(nonLog(late.actions), [{ kind: 'kill', child: 'agent', pid: 200, signal: 'SIGKILL' }]);
    const stuck = decideSupervisor(late.state, { kind: 'tick' }, 60_000 + T.killWaitMs);
    assert.deepEqual(nonLog(stuck.actions), [{ kind: 'kill', child: 'etcd', pid: 100, signal: 'SIGTERM' }]);
    const end = decideSupervisor(stuck.state, { kind: 'exited', child: 'etcd', pid: 100, code: 0, signal: null }, 70_001);
    assert.deepEqual(nonLog(end.actions), [{ kind: 'exit', code: 1 }]);
  });

  void it('a second signal hurries: SIGKILL now, a short grace for the next child', () => {
    const term = decideSupervisor(booted(), { kind: 'signal', signal: 'SIGINT' }, 0).state;
    const again = decideSupervisor(term, { kind: 'signal', signal: 'SIGINT' }, 500);
    assert.deepEqual(nonLog(again.actions), [{ kind: 'kill', child: 'agent', pid: 200, signal: 'SIGKILL' }]);
    const agentGone = decideSupervisor(again.state, { kind: 'exited', child: 'agent', pid: 200, code: null, signal: 'SIGKILL' }, 600);
    assert.deepEqual(nonLog(agentGone.actions), [{ kind: 'kill', child: 'etcd', pid: 100, signal: 'SIGTERM' }]);
    assert.equal(nextWakeMs(agentGone.state), 600 + T.hurryGraceMs);
  });

  void it('a stop cancels pending restarts, and kills a child whose spawn completes during the stop', () => {
    let state = booted();
    state = decideSupervisor(state, { kind: 'exited', child: 'etcd', pid: 100, code: 1, signal: null }, 0).state;
    const term = decideSupervisor(state, { kind: 'signal', signal: 'SIGTERM' }, 10);
    assert.deepEqual(nonLog(term.actions), [{ kind: 'kill', child: 'agent', pid: 200, signal: 'SIGTERM' }]);
    const done = decideSupervisor(term.state, { kind: 'exited', child: 'agent', pid: 200, code: 0, signal: null }, 20);
    assert.deepEqual(nonLog(done.actions), [{ kind: 'exit', code: 0 }], 'etcd in backoff is not restarted');

    // A signal while the agent is being spawned: once it exists, it is stopped.
    const spawning = run(initialSupervisorState(POLICIES), [[{ kind: 'boot' }, 0], [{ kind: 'spawned', child: 'etcd', pid: 100 }, 0]]).state;
    const sig = decideSupervisor(spawning, { kind: 'signal', signal: 'SIGTERM' }, 1);
    assert.deepEqual(nonLog(sig.actions), [], 'waits for the spawn in flight');
    const spawned = decideSupervisor(sig.state, { kind: 'spawned', child: 'agent', pid: 200 }, 2);
    assert.deepEqual(nonLog(spawned.actions), [{ kind: 'kill', child: 'agent', pid: 200, signal: 'SIGTERM' }]);
  });
});

/** A process port whose children exit when the test says (or when signalled). */
class FakeProcesses implements ProcessPort {
  nextPid = 1000;
  readonly live = new Map<number, { name: string; exit: (e: ChildExit) => void }>();
  readonly spawns: string[] = [];
  readonly kills: Array<{ pid: number; signal: string }> = [];

  spawn(spec: ChildSpec): Promise<ChildHandle> {
    const pid = this.nextPid++;
    this.spawns.push(spec.name);
    let exit: (e: ChildExit) => void = () => {};
    const exited = new Promise<ChildExit>((resolve) => {
      exit = resolve;
    });
    this.live.set(pid, { name: spec.name, exit });
    return Promise.resolve({ pid, exited });
  }

  kill(pid: number, signal: 'SIGTERM' | 'SIGKILL'): void {
    this.kills.push({ pid, signal });
    this.crash(pid, signal === 'SIGKILL' ? { code: null, signal } : { code: 0, signal: null });
  }

  crash(pid: number, exit: ChildExit = { code: null, signal: 'SIGKILL' }): void {
    const child = this.live.get(pid);
    if (child === undefined) return;
    this.live.delete(pid);
    child.exit(exit);
  }

  pidOf(name: string): number {
    for (const [pid, child] of this.live) if (child.name === name) return pid;
    return -1;
  }
}

async function settle(): Promise<void> {
  for (let i = 0; i < 20; i += 1) await new Promise((resolve) => setImmediate(resolve));
}

void describe('Supervisor (executor)', () => {
  void it('restarts a killed agent after the backoff, records PIDs, and stops in order on a signal', async () => {
    const clock = new FakeClock(0);
    const processes = new FakeProcesses();
    const recorded: Array<Record<string, number | null>> = [];
    const lines: string[] = [];
    const spec = (name: string): ChildSpec => ({ name, command: '/bin/true', args: [], logFile: '/dev/null', cwd: '/', stopGraceMs: 5_000, marker: name });
    const supervisor = new Supervisor([spec('etcd'), spec('agent')], { clock, processes, log: (level, m) => lines.push(`${level} ${m}`), onPidsChanged: (p) => void recorded.push(p) });
    const done = supervisor.run();
    await settle();
    assert.deepEqual(processes.spawns, ['etcd', 'agent']);
    const firstAgent = processes.pidOf('agent');
    assert.deepEqual(recorded.at(-1), { etcd: processes.pidOf('etcd'), agent: firstAgent });

    processes.crash(firstAgent);
    await settle();
    assert.deepEqual(processes.spawns, ['etcd', 'agent'], 'not before the backoff');
    clock.advance(999);
    await settle();
    assert.deepEqual(processes.spawns, ['etcd', 'agent']);
    clock.advance(1);
    await settle();
    assert.deepEqual(processes.spawns, ['etcd', 'agent', 'agent']);
    const secondAgent = processes.pidOf('agent');
    assert.notEqual(secondAgent, firstAgent);

    supervisor.signal('SIGTERM');
    assert.equal(await done, 0);
    assert.deepEqual(
      processes.kills.map((k) => k.signal),
      ['SIGTERM', 'SIGTERM'],
    );
    assert.equal(processes.kills[0]?.pid, secondAgent, 'the agent is stopped first');
    assert.deepEqual(recorded.at(-1), { etcd: null, agent: null });
    assert.ok(lines.some((l) => l.startsWith('warn agent killed by SIGKILL unexpectedly')), lines.join('\n'));
  });
});
