/**
 * The fencing watchdog: a small separate process that SIGKILLs the postmaster when the agent stops
 * feeding it heartbeats, because an agent that is frozen (SIGSTOP, stalled VM) cannot fence its own
 * postgres (Patroni uses the Linux watchdog device for this job; that device is often absent).
 *
 * Invariants:
 * - The watchdog fires at the deadline the agent computed from its own last successful lease
 *   renewal minus the fence margin (`leaseDeadlineMs` in src/ha/decide.ts), i.e. strictly before
 *   the etcd lease can expire, so a frozen leader's postgres is dead before another node can take
 *   the leader key. Every heartbeat is an `arm` carrying a fresh deadline; the latest one wins.
 * - It never kills a PID whose command line does not contain the data directory it was armed with
 *   (PIDs get reused): ownership is checked right before the SIGKILL, and an arm whose marker is not
 *   an absolute path is rejected, so a marker can never match "anything".
 * - Closing its input without a `disarm` does not drop the fence: an armed watchdog whose input ends
 *   keeps waiting until the deadline and fires then; it exits once disarmed-and-closed or
 *   fired-and-closed.
 * - It is a direct child of the agent with a parent-death SIGKILL (setpriv), like the postmaster,
 *   so an agent killed with -9 takes both with it; it runs in its own session so signals aimed at the
 *   agent's terminal or process group (Ctrl-C, `kill -STOP -<pgid>`) do not reach it.
 *
 * Protocol (one command per line on the watchdog's stdin):
 *   `arm <postmasterPid> <deadlineEpochMs> <dataDir>`   (dataDir is the rest of the line)
 *   `disarm`
 * Both processes read the same host wall clock, so the epoch deadline means the same instant to both.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { open } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { SystemClock, type Clock } from '../shared/clock.js';
import { errorMessage, PgpilotError } from '../shared/errors.js';
import { isOwnedProcessAlive } from '../shared/pid.js';

export type WatchdogCommand =
  | { kind: 'arm'; postmasterPid: number; deadlineEpochMs: number; dataDir: string }
  | { kind: 'disarm' };

export type WatchdogState =
  | { kind: 'disarmed' }
  | { kind: 'armed'; postmasterPid: number; deadlineEpochMs: number; dataDir: string };

export type WatchdogVerdict = 'idle' | 'waiting' | 'fire';

/** Longest accepted command line; anything longer is garbage and is dropped. */
const MAX_LINE_CHARS = 16 * 1024;
const DEFAULT_POLL_MS = 100;

function isValidPid(pid: number): boolean {
  return Number.isSafeInteger(pid) && pid > 1;
}

function isValidDataDir(dataDir: string): boolean {
  return dataDir.startsWith('/') && dataDir.trim() === dataDir && !/[\r\n]/.test(dataDir);
}

/** The `arm` line (with its newline). Throws on arguments no agent should ever send. */
export function formatArm(postmasterPid: number, deadlineEpochMs: number, dataDir: string): string {
  if (!isValidPid(postmasterPid)) throw new RangeError(`watchdog: invalid postmaster pid ${postmasterPid}`);
  if (!Number.isSafeInteger(deadlineEpochMs) || deadlineEpochMs < 0) {
    throw new RangeError(`watchdog: invalid deadline ${deadlineEpochMs}`);
  }
  if (!isValidDataDir(dataDir)) throw new RangeError(`watchdog: data directory must be an absolute path on one line: ${JSON.stringify(dataDir)}`);
  return `arm ${postmasterPid} ${deadlineEpochMs} ${dataDir}\n`;
}

export function formatDisarm(): string {
  return 'disarm\n';
}

const ARM_LINE = /^arm[ \t]+(\d+)[ \t]+(\d+)[ \t]+(\/.*)$/;

/** One protocol line (with or without its line ending) to a command; null for anything else. */
export function parseWatchdogCommand(line: string): WatchdogCommand | null {
  const text = line.trim();
  if (text === 'disarm') return { kind: 'disarm' };
  const match = ARM_LINE.exec(text);
  if (match === null) return null;
  const postmasterPid = Number(match[1]);
  const deadlineEpochMs = Number(match[2]);
  const dataDir = match[3] ?? '';
  if (!isValidPid(postmasterPid) || !Number.isSafeInteger(deadlineEpochMs) || !isValidDataDir(dataDir)) return null;
  return { kind: 'arm', postmasterPid, deadlineEpochMs, dataDir };
}

/** Pure: what an armed/disarmed watchdog should do at `nowMs`. Fires once the deadline is reached. */
export function watchdogVerdict(state: WatchdogState, nowMs: number): WatchdogVerdict {
  if (state.kind === 'disarmed') return 'idle';
  return nowMs >= state.deadlineEpochMs ? 'fire' : 'waiting';
}

export interface RunWatchdogOptions {
  input: Readable;
  clock: Clock;
  log: (line: string) => void;
  /** Sends SIGKILL to the postmaster; default `process.kill(pid, 'SIGKILL')` (a vanished PID is fine). */
  kill?: (pid: number) => void;
  /** Whether `pid` still runs with `marker` in its command line; default src/shared/pid.ts. */
  isOwned?: (pid: number, marker: string) => Promise<boolean>;
  /** Longest pause between deadline checks; default 100 ms. */
  pollMs?: number;
}

function defaultKill(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
  }
}

function defaultIsOwned(pid: number, marker: string): Promise<boolean> {
  return isOwnedProcessAlive({ pid, marker });
}

function isoTime(epochMs: number): string {
  return new Date(epochMs).toISOString();
}

/**
 * The watchdog's main loop. Resolves when its input has ended and it is disarmed (or has fired);
 * an input that ends while armed keeps the fence until the deadline.
 */
export async function runWatchdog(options: RunWatchdogOptions): Promise<void> {
  const { input, clock, log } = options;
  const kill = options.kill ?? defaultKill;
  const isOwned = options.isOwned ?? defaultIsOwned;
  const pollMs = Math.max(1, options.pollMs ?? DEFAULT_POLL_MS);

  let state: WatchdogState = { kind: 'disarmed' };
  // Commands change `state` from the input's callbacks; read it through this so the compiler does
  // not narrow it across the loop's awaits.
  const currentState = (): WatchdogState => state;
  let closed = false;
  let pending = '';
  let wake = new AbortController();

  const apply = (command: WatchdogCommand): void => {
    if (command.kind === 'disarm') {
      if (state.kind === 'armed') log(`disarmed (postmaster ${state.postmasterPid})`);
      state = { kind: 'disarmed' };
      return;
    }
    const previous: WatchdogState = state;
    state = { kind: 'armed', postmasterPid: command.postmasterPid, deadlineEpochMs: command.deadlineEpochMs, dataDir: command.dataDir };
    // Heartbeats for the same postmaster are silent; a new target is worth a line.
    if (previous.kind === 'disarmed' || previous.postmasterPid !== command.postmasterPid || previous.dataDir !== command.dataDir) {
      log(`armed for postmaster ${command.postmasterPid} (${command.dataDir}), deadline ${isoTime(command.deadlineEpochMs)}`);
    }
  };

  const onData = (chunk: string | Buffer): void => {
    pending += typeof chunk === 'string' ? chunk : chunk.toString('utf8');
    let newline = pending.indexOf('\n');
    while (newline >= 0) {
      const line = pending.slice(0, newline);
      pending = pending.slice(newline + 1);
      if (line.trim() !== '') {
        const command = parseWatchdogCommand(line);
        if (command === null) {
          log(`ignored an unrecognised command: ${JSON.stringify(line.slice(0, 200))}`);
        } else {
          apply(command);
          // Judge the new state now rather than at the end of the current pause.
          wake.abort();
        }
      }
      newline = pending.indexOf('\n');
    }
    if (pending.length > MAX_LINE_CHARS) {
      log(`dropped ${pending.length} characters without a line ending`);
      pending = '';
    }
  };

  const onClosed = (): void => {
    if (closed) return;
    closed = true;
    // A final line without its newline still counts.
    if (pending.trim() !== '') onData('\n');
    if (state.kind === 'armed') {
      log(`input closed while armed: still fencing postmaster ${state.postmasterPid} at ${isoTime(state.deadlineEpochMs)}`);
    }
    wake.abort();
  };
  const onError = (error: Error): void => {
    log(`input failed: ${error.message}`);
    onClosed();
  };

  input.setEncoding('utf8');
  input.on('data', onData);
  input.once('end', onClosed);
  input.once('close', onClosed);
  input.on('error', onError);
  if (input.readableEnded || input.destroyed) onClosed();

  try {
    for (;;) {
      const current = currentState();
      const verdict = watchdogVerdict(current, clock.nowMs());
      if (verdict === 'fire' && current.kind === 'armed') {
        // Always changes the state (or a command did meanwhile), so this cannot spin.
        await fire(current);
        continue;
      }
      if (verdict === 'idle' && closed) {
        log('input closed and disarmed: exiting');
        return;
      }
      const waitMs = current.kind === 'armed' ? Math.min(pollMs, Math.max(1, current.deadlineEpochMs - clock.nowMs())) : pollMs;
      wake = new AbortController();
      // Once closed, only the deadline is left to wait for: no need to be woken early.
      await clock.sleep(waitMs, closed ? undefined : wake.signal);
    }
  } finally {
    input.off('data', onData);
    input.off('end', onClosed);
    input.off('close', onClosed);
    input.off('error', onError);
  }

  async function fire(armed: Extract<WatchdogState, { kind: 'armed' }>): Promise<void> {
    const owned = await isOwned(armed.postmasterPid, armed.dataDir);
    // A command that arrived during the check wins and the loop judges it afresh: a fresh arm comes
    // from a lease renewal the agent just made (if its deadline has passed too, it fires next turn),
    // and a disarm means the agent fenced or stopped postgres itself.
    if (currentState() !== armed) return;
    state = { kind: 'disarmed' };
    const deadline = isoTime(armed.deadlineEpochMs);
    if (!owned) {
      log(
        `lease deadline ${deadline} passed without a heartbeat, but pid ${armed.postmasterPid} no longer runs ` +
          `with ${armed.dataDir} in its command line: nothing to kill; disarmed`,
      );
      return;
    }
    try {
      kill(armed.postmasterPid);
      log(
        `lease deadline ${deadline} passed ${clock.nowMs() - armed.deadlineEpochMs} ms ago without a heartbeat: ` +
          `SIGKILLed postmaster ${armed.postmasterPid} (${armed.dataDir}); disarmed`,
      );
    } catch (error) {
      log(`lease deadline ${deadline} passed but SIGKILL of postmaster ${armed.postmasterPid} failed: ${errorMessage(error)}; disarmed`);
    }
  }
}

export interface WatchdogStartOptions {
  /** Script run with `process.execPath`, given the `watchdog` argument (bin/cli.js, or a test entry). */
  cliEntry: string;
  /** The watchdog's stdout and stderr are appended here. */
  logFile: string;
  /** Called once when the watchdog is found dead or unwritable (the fence is gone until restarted). */
  onError?: (message: string) => void;
  clock?: Clock;
}

export type WatchdogStopOutcome = 'exited' | 'killed';

/** Heartbeats are tiny; this much unread input means the watchdog has stopped reading. */
const MAX_UNWRITTEN_BYTES = 64 * 1024;
const STOP_TIMEOUT_MS = 5_000;

/** The agent's handle on its watchdog process. Writes never throw into the caller. */
export class WatchdogClient {
  private readonly child: ChildProcess;
  private readonly clock: Clock;
  private readonly onError: (message: string) => void;
  private exited = false;
  private stopping = false;
  private reported = false;
  private readonly exitWaiters = new Set<() => void>();

  private constructor(child: ChildProcess, clock: Clock, onError: (message: string) => void) {
    this.child = child;
    this.clock = clock;
    this.onError = onError;
    child.once('exit', (code, signal) => {
      this.exited = true;
      this.report(`watchdog ${child.pid ?? '?'} exited (${signal ?? `code ${code ?? '?'}`})`);
      for (const wakeUp of [...this.exitWaiters]) wakeUp();
    });
    // EPIPE and friends after the watchdog died: reported once, never thrown.
    child.stdin?.on('error', (error) => this.report(`watchdog input failed: ${error.message}`));
  }

  /** Spawns `setpriv --pdeathsig KILL -- node <cliEntry> watchdog` and resolves once it runs. */
  static async start(options: WatchdogStartOptions): Promise<WatchdogClient> {
    const log = await open(options.logFile, 'a', 0o640);
    let child: ChildProcess;
    try {
      child = spawn('setpriv', ['--pdeathsig', 'KILL', '--', process.execPath, options.cliEntry, 'watchdog'], {
        stdio: ['pipe', log.fd, log.fd],
        // Own session: Ctrl-C or a group stop aimed at the agent must not reach the fence.
        detached: true,
        cwd: '/',
      });
      await new Promise<void>((resolve, reject) => {
        child.once('spawn', resolve);
        child.once('error', (error: NodeJS.ErrnoException) => {
          reject(
            error.code === 'ENOENT'
              ? new PgpilotError('BINARY_MISSING', 'setpriv was not found', { hint: 'install util-linux (setpriv) with scripts/setup.sh' })
              : new PgpilotError('INTERNAL', `could not start the watchdog: ${error.message}`, { cause: error }),
          );
        });
      });
    } finally {
      // The child holds its own copy of the descriptor.
      await log.close();
    }
    if (child.pid === undefined) throw new PgpilotError('INTERNAL', 'the watchdog started without a PID');
    return new WatchdogClient(child, options.clock ?? new SystemClock(), options.onError ?? (() => {}));
  }

  /** The watchdog's PID (setpriv execs node, so this is the watchdog itself). */
  get pid(): number {
    return this.child.pid ?? -1;
  }

  alive(): boolean {
    const stdin = this.child.stdin;
    return !this.exited && stdin !== null && stdin.writable && !stdin.destroyed;
  }

  /** Heartbeat: (re)arms with a fresh deadline. False when the line could not be handed over. */
  arm(postmasterPid: number, deadlineEpochMs: number, dataDir: string): boolean {
    return this.send(formatArm(postmasterPid, deadlineEpochMs, dataDir));
  }

  disarm(): boolean {
    return this.send(formatDisarm());
  }

  /** Disarms, closes the input, waits (bounded) for the exit; SIGKILLs its own child as a fallback. */
  async stop(timeoutMs = STOP_TIMEOUT_MS): Promise<WatchdogStopOutcome> {
    if (this.exited) return 'exited';
    this.stopping = true; // An exit we asked for is not an error.
    this.send(formatDisarm());
    this.child.stdin?.end();
    if (await this.waitForExit(timeoutMs)) return 'exited';
    // By our own child handle, i.e. by its PID; it cannot have been reaped and reused before 'exit'.
    this.child.kill('SIGKILL');
    await this.waitForExit(timeoutMs);
    return 'killed';
  }

  private send(line: string): boolean {
    const stdin = this.child.stdin;
    if (!this.alive() || stdin === null) {
      this.report('watchdog is not running: the postmaster is not fenced against a frozen agent');
      return false;
    }
    if (stdin.writableLength > MAX_UNWRITTEN_BYTES) {
      this.report(`watchdog ${this.pid} is not reading its input`);
      return false;
    }
    try {
      stdin.write(line);
      return true;
    } catch (error) {
      this.report(`watchdog input failed: ${errorMessage(error)}`);
      return false;
    }
  }

  private report(message: string): void {
    if (this.reported || this.stopping) return;
    this.reported = true;
    try {
      this.onError(message);
    } catch {
      // A failing callback must not turn a heartbeat into an exception.
    }
  }

  private async waitForExit(timeoutMs: number): Promise<boolean> {
    if (this.exited) return true;
    const timeout = new AbortController();
    const exited = new Promise<void>((resolve) => {
      const done = (): void => {
        this.exitWaiters.delete(done);
        timeout.abort();
        resolve();
      };
      this.exitWaiters.add(done);
    });
    await Promise.race([exited, this.clock.sleep(timeoutMs, timeout.signal)]);
    return this.exited;
  }
}
