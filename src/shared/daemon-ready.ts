/**
 * The end of starting a daemon we spawned (HAProxy, PgBouncer): wait until it listens on every
 * expected port, then record its PID in a file (atomically). Invariants: the exit event of our own
 * child is authoritative (its /proc cmdline is not while setpriv execs the program); on a timeout
 * or a PID file that cannot be written, the daemon is stopped by its PID before the error, so a
 * failed start leaves nothing running.
 */
import { rename, writeFile } from 'node:fs/promises';
import type { Clock } from './clock.js';
import { PgpilotError, errorMessage } from './errors.js';
import { stopOwnedProcess, type OwnedProcess } from './pid.js';
import { readFile, readdir, readlink } from 'node:fs/promises';

/**
 * Ports in LISTEN state on sockets held by `pid`, from /proc/PID/fd and /proc/PID/net/tcp{,6}
 * (columns: sl local_address rem_address st ... inode; state 0A is LISTEN).
 */
export function parseListeningPorts(procNetTcp: string, socketInodes: ReadonlySet<string>): number[] {
  const ports: number[] = [];
  for (const line of procNetTcp.split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/);
    const local = fields[1];
    const state = fields[3];
    const inode = fields[9];
    if (local === undefined || state !== '0A' || inode === undefined || !socketInodes.has(inode)) continue;
    const portHex = local.slice(local.lastIndexOf(':') + 1);
    ports.push(Number.parseInt(portHex, 16));
  }
  return ports;
}

/** The TCP ports process `pid` listens on (its socket inodes matched against /proc/<pid>/net/tcp{,6}). */
export async function listeningPortsOf(pid: number): Promise<Set<number>> {
  const inodes = new Set<string>();
  for (const fd of await readdir(`/proc/${pid}/fd`).catch(() => [] as string[])) {
    const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
    const match = /^socket:\[(\d+)\]$/.exec(target);
    if (match?.[1] !== undefined) inodes.add(match[1]);
  }
  const ports = new Set<number>();
  for (const table of ['tcp', 'tcp6']) {
    const text = await readFile(`/proc/${pid}/net/${table}`, 'utf8').catch(() => '');
    for (const port of parseListeningPorts(text, inodes)) ports.add(port);
  }
  return ports;
}

export interface DaemonReadyOptions {
  /** For messages: `haproxy`, `pgbouncer`. */
  name: string;
  owned: OwnedProcess;
  ports: readonly number[];
  /** Set by the child's exit handler (`exit 1`), null while it runs. */
  exited: () => string | null;
  logTail: () => Promise<string>;
  logFile: string;
  pidFile: string;
  deadlineMs: number;
  clock: Clock;
}

export async function awaitListeningAndRecordPid(options: DaemonReadyOptions): Promise<void> {
  const { name, owned, clock } = options;
  for (;;) {
    const exited = options.exited();
    if (exited !== null) {
      throw new PgpilotError('COMMAND_FAILED', `${name} stopped right after starting (${exited}): ${await options.logTail()}`, {
        hint: `see ${options.logFile}; a port it needs may be in use`,
        retryable: true,
      });
    }
    const listening = await listeningPortsOf(owned.pid);
    if (options.ports.every((p) => listening.has(p))) break;
    if (clock.nowMs() >= options.deadlineMs) {
      await stopOwnedProcess(owned, clock, { graceMs: 2_000 }).catch(() => undefined);
      throw new PgpilotError('TIMEOUT', `${name} did not listen on ${options.ports.join(', ')} in time: ${await options.logTail()}`, {
        hint: `see ${options.logFile}`,
        retryable: true,
      });
    }
    await clock.sleep(25);
  }
  try {
    const temp = `${options.pidFile}.tmp-${process.pid}`;
    await writeFile(temp, `${owned.pid}\n`, { mode: 0o644 });
    await rename(temp, options.pidFile);
  } catch (error) {
    await stopOwnedProcess(owned, clock, { graceMs: 2_000 }).catch(() => undefined);
    throw new PgpilotError('COMMAND_FAILED', `could not write ${options.pidFile}: ${errorMessage(error)}`, { cause: error });
  }
}
