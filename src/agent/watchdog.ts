/**
 * The fencing watchdog: a small separate process that SIGKILLs the postmaster when the agent stops
 * feeding it heartbeats, because an agent that is frozen (SIGSTOP, stalled VM) cannot fence its own
 * postgres (Patroni uses the Linux watchdog device for this job; that device is often absent).
 *
 * Invariants:
 * - The watchdog fires at the deadline the agent computed from its own last successful lease
 *   renewal minus the fence margin (`leaseDeadlineMs` in src/ha/timing.ts), i.e. strictly before
 *   the etcd lease can expire, so a frozen leader's postgres is dead before another node can take
 *   the leader key. Every heartbeat is an `arm` carrying a fresh deadline; the latest one wins.
 * - It never kills a PID whose command line does not contain the data directory it was armed with
 *   (PIDs get reused): ownership is checked right before the SIGKILL, and an arm whose marker is not
 *   an absolute path is rejected, so a marker can never match "anything".
 * - Its input ending without a `disarm` means the agent is gone (killed, crashed: the kernel closes
 *   the pipe; a planned stop always disarms first). An armed watchdog then fences at once instead of
 *   waiting for the deadline: the agent that fed it is not coming back in this process, and a
 *   leader's postgres must not outlive its agent. It exits once disarmed-and-closed or
 *   fired-and-closed.
 * - Lease release (agent crash fast path): after it has fenced (postmaster and every backend
 *   SIGKILLed and *proven gone*), it revokes the agent's lease through etcd's HTTP gateway, so the
 *   leader key disappears now rather than when the lease would run out and a replica takes over in
 *   about a second. Safe because nothing of the old primary can accept a write any more; when the
 *   kill cannot be proven, nothing is released and the lease simply expires. Releasing is best
 *   effort (etcd unreachable: the lease expires as before). A whole-host loss kills the watchdog
 *   too: then only the lease TTL ends the old lead.
 * - It is a child of the agent but NOT tied to it by a parent-death signal (it must outlive an agent
 *   killed with -9 to do the above); its input closing is its parent-death signal, and it always
 *   exits after that in bounded time. It runs in its own session so signals aimed at the agent's
 *   terminal or process group (Ctrl-C, `kill -STOP -<pgid>`) do not reach it.
 *
 * Protocol (one command per line on the watchdog's stdin):
 *   `arm <postmasterPid> <deadlineEpochMs> <dataDir>`   (dataDir is the rest of the line)
 *   `disarm`
 *   `lease <leaseId>`   (decimal etcd lease ID of the agent; released after a fence)
 * Both processes read the same host wall clock, so the epoch deadline means the same instant to both.
 */
import type { TlsFiles } from '../config/schema.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { open, readdir, readFile } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { SystemClock, type Clock } from '../shared/clock.js';
import { errorMessage, PgpilotError } from '../shared/errors.js';
import { isOwnedProcessAlive, isPidRunning } from '../shared/pid.js';

export type WatchdogCommand =
  | { kind: 'arm'; postmasterPid: number; deadlineEpochMs: number; dataDir: string }
  | { kind: 'disarm' }
  | { kind: 'lease'; leaseId: string };

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

/** etcd lease IDs are positive int64 values, written in decimal. */
const LEASE_ID = /^[1-9][0-9]{0,18}$/;

/** The `lease` line (with its newline). Throws on an ID etcd could not have granted. */
export function formatLease(leaseId: string): string {
  if (!LEASE_ID.test(leaseId)) throw new RangeError(`watchdog: invalid lease id ${JSON.stringify(leaseId)}`);
  return `lease ${leaseId}\n`;
}

const ARM_LINE = /^arm[ \t]+(\d+)[ \t]+(\d+)[ \t]+(\/.*)$/;
const LEASE_LINE = /^lease[ \t]+(\d+)$/;

/** One protocol line (with or without its line ending) to a command; null for anything else. */
export function parseWatchdogCommand(line: string): WatchdogCommand | null {
  const text = line.trim();
  if (text === 'disarm') return { kind: 'disarm' };
  const lease = LEASE_LINE.exec(text);
  if (lease !== null) return LEASE_ID.test(lease[1] ?? '') ? { kind: 'lease', leaseId: lease[1] ?? '' } : null;
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
  /**
   * SIGKILLs the postmaster and returns every PID it signalled (default `killPostmasterTree`: the
   * postmaster and its backends); a returned void means just `[pid]`. A vanished PID is fine.
   */
  kill?: (pid: number) => Promise<readonly number[]> | readonly number[] | void;
  /** True once every PID is gone (exited or a zombie); default polls /proc. */
  allGone?: (pids: readonly number[]) => Promise<boolean>;
  /** How long to wait for the killed processes to disappear before giving up on releasing. */
  goneTimeoutMs?: number;
  /** Revokes the agent's etcd lease (best effort, bounded); absent: leases are never released. */
  releaseLease?: (leaseId: string) => Promise<void>;
  /** Whether `pid` still runs with `marker` in its command line; default src/shared/pid.ts. */
  isOwned?: (pid: number, marker: string) => Promise<boolean>;
  /** Longest pause between deadline checks; default 100 ms. */
  pollMs?: number;
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
  }
}

/** The PIDs whose parent is `pid` (from /proc/<n>/stat, field 4). */
async function childrenOf(pid: number): Promise<number[]> {
  const children: number[] = [];
  for (const entry of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => null);
    if (stat === null) continue;
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (ppid === pid) children.push(Number(entry));
  }
  return children;
}

/**
 * SIGKILLs a postmaster and its children. Backends run in sessions of their own, so they are found
 * by parent PID; the postmaster is stopped first so that it cannot fork a new one (or die and have
 * its children re-parented) between the listing and the kill.
 */
export async function killPostmasterTree(pid: number): Promise<number[]> {
  signal(pid, 'SIGSTOP');
  const children = await childrenOf(pid);
  signal(pid, 'SIGKILL');
  for (const child of children) signal(child, 'SIGKILL');
  return [pid, ...children];
}

async function defaultAllGone(pids: readonly number[]): Promise<boolean> {
  for (const pid of pids) if (await isPidRunning(pid)) return false;
  return true;
}

const DEFAULT_GONE_TIMEOUT_MS = 5_000;

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
  const kill = options.kill ?? killPostmasterTree;
  const allGone = options.allGone ?? defaultAllGone;
  const goneTimeoutMs = options.goneTimeoutMs ?? DEFAULT_GONE_TIMEOUT_MS;
  const isOwned = options.isOwned ?? defaultIsOwned;
  let leaseId: string | null = null;
  const pollMs = Math.max(1, options.pollMs ?? DEFAULT_POLL_MS);

  let state: WatchdogState = { kind: 'disarmed' };
  // Commands change `state` from the input's callbacks; read it through this so the compiler does
  // not narrow it across the loop's awaits.
  const currentState = (): WatchdogState => state;
  let closed = false;
  let pending = '';
  let wake = new AbortController();

  const apply = (command: WatchdogCommand): void => {
    if (command.kind === 'lease') {
      if (command.leaseId !== leaseId) log(`lease ${command.leaseId}`);
      leaseId = command.leaseId;
      return;
    }
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
    if (state.kind === 'armed') log(`input closed while armed: the agent is gone; fencing postmaster ${state.postmasterPid} now`);
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
      // The agent is gone (input closed while armed): nobody will renew the lease, fence now.
      if ((verdict === 'fire' || (closed && verdict === 'waiting')) && current.kind === 'armed') {
        // Always changes the state (or a command did meanwhile), so this cannot spin.
        await fire(current, verdict === 'fire' ? 'deadline' : 'agent-gone');
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

  async function fire(armed: Extract<WatchdogState, { kind: 'armed' }>, why: 'deadline' | 'agent-gone'): Promise<void> {
    const owned = await isOwned(armed.postmasterPid, armed.dataDir);
    // A command that arrived during the check wins and the loop judges it afresh: a fresh arm comes
    // from a lease renewal the agent just made (if its deadline has passed too, it fires next turn),
    // and a disarm means the agent fenced or stopped postgres itself.
    if (currentState() !== armed) return;
    state = { kind: 'disarmed' };
    const because =
      why === 'deadline'
        ? `lease deadline ${isoTime(armed.deadlineEpochMs)} passed ${clock.nowMs() - armed.deadlineEpochMs} ms ago without a heartbeat`
        : 'the agent is gone';
    if (!owned) {
      log(`${because}, but pid ${armed.postmasterPid} no longer runs with ${armed.dataDir} in its command line: nothing to kill; disarmed`);
      // Already gone (an agent killed with -9 takes its postmaster with it): as fenced as can be.
      if (why === 'agent-gone') await release(armed, []);
      return;
    }
    let killed: readonly number[];
    try {
      killed = (await kill(armed.postmasterPid)) ?? [armed.postmasterPid];
      log(`${because}: SIGKILLed postmaster ${armed.postmasterPid} (${armed.dataDir}) and ${killed.length - 1} other postgres processes; disarmed`);
    } catch (error) {
      log(`${because} but SIGKILL of postmaster ${armed.postmasterPid} failed: ${errorMessage(error)}; disarmed`);
      return;
    }
    await release(armed, killed);
  }

  /** Revokes the lease once every killed process is proven gone; otherwise leaves it to expire. */
  async function release(armed: Extract<WatchdogState, { kind: 'armed' }>, killed: readonly number[]): Promise<void> {
    if (options.releaseLease === undefined || leaseId === null) return;
    const pids = [...new Set([armed.postmasterPid, ...killed])];
    const deadlineMs = clock.nowMs() + goneTimeoutMs;
    let gone = await allGone(pids);
    while (!gone && clock.nowMs() < deadlineMs) {
      await clock.sleep(Math.min(pollMs, 20));
      gone = await allGone(pids);
    }
    if (!gone) {
      log(`postgres processes ${pids.join(', ')} still exist after ${goneTimeoutMs} ms: not releasing lease ${leaseId}; it expires by itself`);
      return;
    }
    const id = leaseId;
    try {
      await options.releaseLease(id);
      log(`postgres is gone: released lease ${id} so that another member can take over now`);
    } catch (error) {
      log(`could not release lease ${id} (${errorMessage(error)}); it expires by itself`);
    }
  }
}

export interface WatchdogStartOptions {
  /** Script run with `process.execPath`, given the `watchdog` argument (bin/cli.js, or a test entry). */
  cliEntry: string;
  /** The watchdog's stdout and stderr are appended here. */
  logFile: string;
  /** etcd client URLs: the watchdog releases the agent's lease there after fencing a gone agent. */
  etcdEndpoints?: readonly string[];
  /** The node's client certificate for etcd (the release goes over HTTPS); required with etcdEndpoints. */
  etcdTls?: TlsFiles;
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
  private lastLeaseId: string | null = null;
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

  /**
   * Spawns `node <cliEntry> watchdog [--etcd-endpoints a,b]` and resolves once it runs. No
   * parent-death signal on purpose: it must outlive an agent killed with -9 to fence and release
   * (see the invariants at the top); it exits by itself once its input closes.
   */
  static async start(options: WatchdogStartOptions): Promise<WatchdogClient> {
    const log = await open(options.logFile, 'a', 0o640);
    const args = [options.cliEntry, 'watchdog'];
    if (options.etcdEndpoints !== undefined && options.etcdEndpoints.length > 0) args.push('--etcd-endpoints', options.etcdEndpoints.join(','));
    if (options.etcdTls !== undefined) args.push('--tls-ca', options.etcdTls.caFile, '--tls-cert', options.etcdTls.certFile, '--tls-key', options.etcdTls.keyFile);
    let child: ChildProcess;
    try {
      child = spawn(process.execPath, args, {
        stdio: ['pipe', log.fd, log.fd],
        // Own session: Ctrl-C or a group stop aimed at the agent must not reach the fence.
        detached: true,
        cwd: '/',
      });
      await new Promise<void>((resolve, reject) => {
        child.once('spawn', resolve);
        child.once('error', (error: NodeJS.ErrnoException) => {
          reject(new PgpilotError('INTERNAL', `could not start the watchdog: ${error.message}`, { cause: error }));
        });
      });
    } finally {
      // The child holds its own copy of the descriptor.
      await log.close();
    }
    if (child.pid === undefined) throw new PgpilotError('INTERNAL', 'the watchdog started without a PID');
    return new WatchdogClient(child, options.clock ?? new SystemClock(), options.onError ?? (() => {}));
  }

  /** The watchdog's PID. */
  get pid(): number {
    return this.child.pid ?? -1;
  }

  alive(): boolean {
    const stdin = this.child.stdin;
    return !this.exited && stdin !== null && stdin.writable && !stdin.destroyed;
  }

  /**
   * Heartbeat: (re)arms with a fresh deadline, telling the watchdog the agent's current lease first
   * when it changed. False when a line could not be handed over.
   */
  arm(postmasterPid: number, deadlineEpochMs: number, dataDir: string, leaseId: string | null = null): boolean {
    if (leaseId !== null && leaseId !== this.lastLeaseId) {
      if (!this.send(formatLease(leaseId))) return false;
      this.lastLeaseId = leaseId;
    }
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
