/**
 * The executor of `pgpilot node run`: runs the children of one node (the etcd member when the host
 * runs one, and the agent), feeds what happens to the pure core (src/node/supervisor-decide.ts) and
 * carries out its actions. Ports: `ProcessPort` (spawn/signal; `realProcessPort` below) and a Clock.
 *
 * Invariants:
 * - Children are direct children of this process: their exit is observed (no polling of PIDs), and
 *   a signal only ever goes to a PID we spawned and have not yet seen exit.
 * - Each child runs in its own session (detached), so a Ctrl-C or a group signal aimed at the
 *   supervisor reaches only the supervisor, which then stops the children in order; and each
 *   carries a parent-death SIGTERM (setpriv --pdeathsig, which execs in place: same PID), so a
 *   SIGKILLed supervisor leaves nothing behind: the agent then stops postgres cleanly (the
 *   postmaster itself has a parent-death SIGKILL on the agent). The parent-death signal is not
 *   inherited by the agent's own children (the kernel clears it on fork), so the fencing watchdog
 *   still outlives an agent killed with -9, as src/agent/watchdog.ts requires.
 * - Child output is appended to a log file per child (never through a pipe to us: a supervisor
 *   that dies must not leave a child writing into a closed pipe). One plain line per supervisor
 *   event goes to `log` (stderr: the journal under systemd); no secret is ever in those lines
 *   (argv holds file paths only).
 * - The main loop is bounded per iteration: it sleeps until the next event or the core's next
 *   deadline, and ends when the core says exit.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync } from 'node:fs';
import type { Clock } from '../shared/clock.js';
import { errorMessage } from '../shared/errors.js';
import { atControlPlanePriority, boostSessionOf } from '../shared/priority.js';
import {
  DEFAULT_SUPERVISOR_TIMING,
  decideSupervisor,
  initialSupervisorState,
  nextWakeMs,
  type SupervisorAction,
  type SupervisorEvent,
  type SupervisorState,
  type SupervisorTiming,
} from './supervisor-decide.js';

export interface ChildSpec {
  /** `etcd` or `agent`. */
  name: string;
  command: string;
  args: string[];
  /** stdout and stderr are appended here. */
  logFile: string;
  cwd: string;
  /** SIGTERM -> SIGKILL grace when stopping. */
  stopGraceMs: number;
  /** A string of the child's command line, to recognise it by recorded PID later (src/shared/pid.ts). */
  marker: string;
}

export interface ChildExit {
  code: number | null;
  signal: string | null;
}

export interface ChildHandle {
  pid: number;
  exited: Promise<ChildExit>;
}

export interface ProcessPort {
  spawn(spec: ChildSpec): Promise<ChildHandle>;
  kill(pid: number, signal: 'SIGTERM' | 'SIGKILL'): void;
}

export type LogLevel = 'info' | 'warn' | 'error';

export interface SupervisorDeps {
  clock: Clock;
  processes: ProcessPort;
  log: (level: LogLevel, message: string) => void;
  /** Called whenever a child's PID appears or goes (the CLI records them in a file). */
  onPidsChanged?(pids: Record<string, number | null>): Promise<void> | void;
}

const IDLE_WAIT_MS = 3_600_000;
const SETPRIV_PATH = '/usr/bin/setpriv';

export class Supervisor {
  private state: SupervisorState;
  private readonly queue: SupervisorEvent[] = [];
  private wake: (() => void) | null = null;
  private readonly specs: Map<string, ChildSpec>;
  private readonly pids = new Map<string, number | null>();
  private exitCode: number | null = null;

  constructor(
    specs: readonly ChildSpec[],
    private readonly deps: SupervisorDeps,
    private readonly timing: SupervisorTiming = DEFAULT_SUPERVISOR_TIMING,
  ) {
    this.specs = new Map(specs.map((s) => [s.name, s]));
    this.state = initialSupervisorState(
      specs.map((s) => ({ name: s.name, stopGraceMs: s.stopGraceMs })),
      timing,
    );
  }

  /** Delivers a stop signal (SIGTERM/SIGINT); a second one hurries the stop. */
  signal(name: string): void {
    this.push({ kind: 'signal', signal: name });
  }

  /** The current state of the core (tests, status). */
  snapshot(): SupervisorState {
    return this.state;
  }

  private push(event: SupervisorEvent): void {
    this.queue.push(event);
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }

  /** Runs until every child is stopped after a signal; resolves with the exit code. */
  async run(): Promise<number> {
    this.push({ kind: 'boot' });
    while (this.exitCode === null) {
      const event = this.queue.shift();
      if (event !== undefined) {
        await this.apply(event);
        continue;
      }
      const wakeAtMs = nextWakeMs(this.state);
      const now = this.deps.clock.nowMs();
      if (wakeAtMs !== null && wakeAtMs <= now) {
        await this.apply({ kind: 'tick' });
        continue;
      }
      const controller = new AbortController();
      this.wake = () => controller.abort();
      await this.deps.clock.sleep(wakeAtMs === null ? IDLE_WAIT_MS : wakeAtMs - now, controller.signal);
      this.wake = null;
    }
    return this.exitCode;
  }

  private async apply(event: SupervisorEvent): Promise<void> {
    const decision = decideSupervisor(this.state, event, this.deps.clock.nowMs(), this.timing);
    this.state = decision.state;
    for (const action of decision.actions) await this.execute(action);
  }

  private async recordPid(name: string, pid: number | null): Promise<void> {
    this.pids.set(name, pid);
    try {
      await this.deps.onPidsChanged?.(Object.fromEntries(this.pids));
    } catch (error) {
      this.deps.log('warn', `could not record child PIDs: ${errorMessage(error)}`);
    }
  }

  private async execute(action: SupervisorAction): Promise<void> {
    switch (action.kind) {
      case 'log':
        this.deps.log(action.level, action.message);
        return;
      case 'exit':
        this.exitCode = action.code;
        return;
      case 'kill':
        try {
          this.deps.processes.kill(action.pid, action.signal);
        } catch (error) {
          this.deps.log('warn', `could not signal ${action.child} (pid ${action.pid}): ${errorMessage(error)}`);
        }
        return;
      case 'spawn': {
        const spec = this.specs.get(action.child);
        if (spec === undefined) {
          this.push({ kind: 'spawn-failed', child: action.child, reason: 'no such child' });
          return;
        }
        try {
          const handle = await this.deps.processes.spawn(spec);
          await this.recordPid(spec.name, handle.pid);
          this.push({ kind: 'spawned', child: spec.name, pid: handle.pid });
          void handle.exited.then(async (exit) => {
            await this.recordPid(spec.name, null);
            this.push({ kind: 'exited', child: spec.name, pid: handle.pid, code: exit.code, signal: exit.signal });
          });
        } catch (error) {
          this.push({ kind: 'spawn-failed', child: spec.name, reason: errorMessage(error) });
        }
        return;
      }
    }
  }
}

/**
 * The real process port: `spec.command spec.args` in its own session, output appended to
 * `spec.logFile`, under a parent-death SIGTERM (setpriv) when `withDeathSignal` and setpriv exists.
 * Control-plane children get the raised priority (root only; src/shared/priority.ts) and their
 * session the control plane's weight.
 */
export function realProcessPort(options: { withDeathSignal: boolean } = { withDeathSignal: true }): ProcessPort {
  const useSetpriv = options.withDeathSignal && existsSync(SETPRIV_PATH);
  return {
    spawn(spec: ChildSpec): Promise<ChildHandle> {
      const inner = useSetpriv ? { command: SETPRIV_PATH, args: ['--pdeathsig', 'TERM', '--', spec.command, ...spec.args] } : { command: spec.command, args: spec.args };
      const prioritized = atControlPlanePriority(inner.command, inner.args);
      const fd = openSync(spec.logFile, 'a', 0o600);
      try {
        const child = spawn(prioritized.command, prioritized.args, { detached: true, stdio: ['ignore', fd, fd], cwd: spec.cwd, env: process.env });
        const exited = new Promise<ChildExit>((resolve) => {
          child.once('exit', (code, signal) => resolve({ code, signal }));
        });
        return new Promise<ChildHandle>((resolve, reject) => {
          child.once('error', (error) => reject(error));
          child.once('spawn', () => {
            if (child.pid === undefined) {
              reject(new Error(`${spec.name} started without a PID`));
              return;
            }
            boostSessionOf(child.pid);
            resolve({ pid: child.pid, exited });
          });
        });
      } finally {
        closeSync(fd);
      }
    },
    kill(pid: number, signal: 'SIGTERM' | 'SIGKILL'): void {
      try {
        process.kill(pid, signal);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
      }
    },
  };
}
