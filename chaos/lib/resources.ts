/**
 * Everything a chaos run creates is recorded before or right after it exists, and removed by
 * `cleanupRun` (finally, SIGINT/SIGTERM, and at the start of the next run for a crashed one):
 *
 * - state.json (outer process): its PID, the namespaces, the tmpfs mount points;
 * - pids.json (inner process): every process it started, with a command-line marker.
 *
 * Cleanup order: recorded PIDs (checked against their marker, SIGTERM then SIGKILL); then any
 * process still inside one of the run's own namespaces (`ip netns pids`: the postmasters, HAProxy
 * and watchdogs the agents started; nothing else can be in a namespace this run created), SIGKILL;
 * then the tmpfs mounts; then the namespaces. Nothing is ever found or signalled by name.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { SystemClock } from '../../src/shared/clock.js';
import { isPidRunning, readCmdline, stopOwnedProcess } from '../../src/shared/pid.js';
import { runCommand } from '../../src/shared/process-runner.js';
import { CHAOS_PREFIX, deleteNamespace, listNamespaces, namespacePids } from './topology.js';
import { runLayout } from './layout.js';

export interface OuterState {
  runId: string;
  outerPid: number;
  namespaces: string[];
  mounts: string[];
}

export interface RecordedProcess {
  pid: number;
  marker: string;
  what: string;
}

export function writeOuterState(file: string, state: OuterState): void {
  writeFileSync(file, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o644 });
}

export function readJsonFile<T>(file: string): T | null {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as T;
  } catch {
    return null;
  }
}

/** The inner process's record of the processes it started (append-only list, rewritten whole). */
export class PidRecord {
  private readonly entries: RecordedProcess[] = [];
  constructor(private readonly file: string) {}
  add(entry: RecordedProcess): void {
    this.entries.push(entry);
    writeFileSync(this.file, `${JSON.stringify(this.entries, null, 2)}\n`, { mode: 0o644 });
  }
  all(): readonly RecordedProcess[] {
    return this.entries;
  }
}

/** Mount points in /proc/self/mounts at or under `dir`. */
export async function mountsUnder(dir: string): Promise<string[]> {
  const text = await readFile('/proc/self/mounts', 'utf8');
  return text
    .split('\n')
    .map((line) => line.split(' ')[1] ?? '')
    .map((p) => p.replace(/\\040/g, ' '))
    .filter((p) => p === dir || p.startsWith(`${dir}/`));
}

async function killNamespaceProcesses(ns: string, log: (line: string) => void): Promise<void> {
  for (let round = 0; round < 20; round += 1) {
    const pids = await namespacePids(ns);
    const alive: number[] = [];
    for (const pid of pids) if (await isPidRunning(pid)) alive.push(pid);
    if (alive.length === 0) return;
    if (round === 0) log(`cleanup: ${alive.length} process(es) left in ${ns}: SIGKILL ${alive.join(' ')}`);
    for (const pid of alive) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
    await sleep(250);
  }
  log(`cleanup: processes in ${ns} did not go away within 5 s`);
}

/**
 * Removes whatever of run `runId` still exists: processes, tmpfs mounts, namespaces. Idempotent,
 * never throws (each step is attempted; problems are logged).
 */
export async function cleanupRun(home: string, runId: string, log: (line: string) => void): Promise<void> {
  if (!runId.startsWith(CHAOS_PREFIX)) throw new Error(`refusing to clean ${runId}: not a chaos run id`);
  const layout = runLayout(home, runId);
  const clock = new SystemClock();
  const recorded = readJsonFile<RecordedProcess[]>(layout.pidsFile) ?? [];
  for (const proc of recorded) {
    try {
      // An agent that was SIGSTOPped must be continued to act on SIGTERM.
      if ((await readCmdline(proc.pid))?.includes(proc.marker) === true) process.kill(proc.pid, 'SIGCONT');
      await stopOwnedProcess({ pid: proc.pid, marker: proc.marker }, clock, { signal: 'SIGTERM', graceMs: 10_000 });
    } catch (error) {
      log(`cleanup: could not stop ${proc.what} (pid ${proc.pid}): ${String(error)}`);
    }
  }
  const namespaces = (await listNamespaces().catch(() => [] as string[])).filter((ns) => ns.startsWith(`${runId}-`));
  for (const ns of namespaces) await killNamespaceProcesses(ns, log).catch((error: unknown) => log(`cleanup: ${ns}: ${String(error)}`));
  if (existsSync(layout.runDir)) {
    const mounts = (await mountsUnder(layout.runDir)).sort((a, b) => b.length - a.length);
    for (const mount of mounts) {
      const result = await runCommand('umount', [mount], { check: false, timeoutMs: 30_000 });
      if (result.exitCode !== 0) {
        const lazy = await runCommand('umount', ['-l', mount], { check: false, timeoutMs: 30_000 });
        if (lazy.exitCode !== 0) log(`cleanup: umount ${mount} failed: ${result.stderr.trim()}`);
      }
    }
  }
  for (const ns of namespaces) await deleteNamespace(ns).catch((error: unknown) => log(`cleanup: ip netns del ${ns}: ${String(error)}`));
}

/** Run ids that have namespaces or a state file and whose outer process is gone (crashed runs). */
export async function findLeftoverRuns(home: string): Promise<string[]> {
  const ids = new Set<string>();
  for (const ns of await listNamespaces()) {
    if (!ns.startsWith(CHAOS_PREFIX)) continue;
    const runId = ns.slice(0, ns.lastIndexOf('-'));
    if (runId.startsWith(CHAOS_PREFIX) && runId.length > CHAOS_PREFIX.length) ids.add(runId);
  }
  for (const mount of await mountsUnder(home)) {
    const runId = mount.slice(home.length + 1).split('/')[0] ?? '';
    if (runId.startsWith(CHAOS_PREFIX)) ids.add(runId);
  }
  const leftovers: string[] = [];
  for (const runId of ids) {
    const state = readJsonFile<OuterState>(runLayout(home, runId).stateFile);
    // A run whose outer process is still alive is someone else's live run: leave it alone.
    if (state !== null && (await readCmdline(state.outerPid))?.includes('chaos/run.js') === true) continue;
    leftovers.push(runId);
  }
  return leftovers;
}
