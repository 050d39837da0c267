/**
 * The one module that knows the `prometheus` and `promtool` binaries (Debian's `prometheus`
 * package, 2.42): the argv of a cluster's own Prometheus, starting it detached with its output
 * appended to a log file, waiting until it is ready, checking a config with promtool, reading its
 * recorded state and stopping it by recorded PID.
 *
 * Invariants: Prometheus listens on 127.0.0.1 only, on a port chosen free (never 9090 assumed),
 * keeps its data under the cluster directory, and is recorded by PID with its config path as the
 * command-line marker (src/shared/pid.ts), so only the process we started is ever signalled. Like
 * etcd it is detached: it outlives the CLI that started it; `pgpilot monitoring NAME --stop`,
 * `pgpilot stop` and `pgpilot destroy` stop it.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { z } from 'zod';
import type { Clock } from '../../shared/clock.js';
import { PgpilotError, errorMessage } from '../../shared/errors.js';
import { isOwnedProcessAlive, isPidRunning, stopOwnedProcess } from '../../shared/pid.js';
import { LOOPBACK_HOST } from '../../shared/ports.js';
import { findExecutable, runCommand } from '../../shared/process-runner.js';
import { readPidFile, writeFileAtomic, writePidFile } from './cluster-store.js';
import type { MonitoringPaths } from './paths.js';

const INSTALL_HINT = "run scripts/setup.sh (it installs Debian's prometheus package, which provides prometheus and promtool)";
const EXTRA_BIN_DIRS = ['/usr/bin', '/usr/local/bin'];
/** How long TSDB data is kept: enough for a development cluster's dashboards. */
const RETENTION = '7d';

export function findBinary(name: 'prometheus' | 'promtool', env: NodeJS.ProcessEnv = process.env): string {
  const found = findExecutable(name, EXTRA_BIN_DIRS, env);
  if (found === null) throw new PgpilotError('BINARY_MISSING', `${name} was not found`, { hint: INSTALL_HINT, exitCode: 2 });
  return found;
}

export interface PrometheusArgsOptions {
  configFile: string;
  dataDir: string;
  port: number;
  host?: string;
}

/** The argv (without the binary): loopback listener, data in the cluster directory. */
export function prometheusArgs(options: PrometheusArgsOptions): string[] {
  if (!Number.isInteger(options.port) || options.port < 1 || options.port > 65_535) {
    throw new PgpilotError('INPUT_INVALID', `prometheus port must be a TCP port, got ${options.port}`, { exitCode: 2 });
  }
  return [
    `--config.file=${options.configFile}`,
    `--storage.tsdb.path=${options.dataDir}`,
    `--storage.tsdb.retention.time=${RETENTION}`,
    `--web.listen-address=${options.host ?? LOOPBACK_HOST}:${options.port}`,
    '--log.level=warn',
  ];
}

export const prometheusStateSchema = z.object({
  pid: z.number().int(),
  port: z.number().int(),
  url: z.string(),
  configFile: z.string(),
  dataDir: z.string(),
  logFile: z.string(),
  startedAt: z.string(),
});
export type PrometheusState = z.infer<typeof prometheusStateSchema>;

/** The recorded state of the cluster's Prometheus when it still runs (by PID and command line), else null. */
export async function runningPrometheus(paths: MonitoringPaths): Promise<PrometheusState | null> {
  const pid = await readPidFile(paths.pidFile);
  if (pid === null || !(await isOwnedProcessAlive({ pid, marker: paths.configFile }))) return null;
  try {
    const state = prometheusStateSchema.parse(JSON.parse(await readFile(paths.stateFile, 'utf8')));
    return state.pid === pid ? state : null;
  } catch {
    return null;
  }
}

/** Starts Prometheus detached (own session, unref'd) and records its PID and state. */
export async function startPrometheus(paths: MonitoringPaths, port: number, clock: Clock, host = LOOPBACK_HOST): Promise<PrometheusState> {
  const binary = findBinary('prometheus');
  const args = prometheusArgs({ configFile: paths.configFile, dataDir: paths.dataDir, port, host });
  const logFd = openSync(paths.logFile, 'a', 0o644);
  let pid: number;
  try {
    const child = spawn(binary, args, { stdio: ['ignore', logFd, logFd], detached: true, cwd: paths.dir, env: process.env });
    pid = await new Promise<number>((resolve, reject) => {
      child.once('error', (error) => reject(new PgpilotError('COMMAND_FAILED', `could not start prometheus: ${errorMessage(error)}`, { hint: `see ${paths.logFile}`, cause: error })));
      child.once('spawn', () => (child.pid === undefined ? reject(new PgpilotError('COMMAND_FAILED', 'prometheus started without a PID')) : resolve(child.pid)));
    });
    child.unref();
  } finally {
    closeSync(logFd);
  }
  await writePidFile(paths.pidFile, pid);
  const url = `http://${host}:${port}`;
  const state: PrometheusState = {
    pid,
    port,
    url,
    configFile: paths.configFile,
    dataDir: paths.dataDir,
    logFile: paths.logFile,
    startedAt: new Date(clock.nowMs()).toISOString(),
  };
  await writeFileAtomic(paths.stateFile, `${JSON.stringify(state, null, 2)}\n`, 0o644);
  return state;
}

/** Polls `/-/ready` until Prometheus answers 200; COMMAND_FAILED as soon as it exits, TIMEOUT at the deadline. */
export async function waitForPrometheus(state: PrometheusState, clock: Clock, timeoutMs: number): Promise<void> {
  const deadlineMs = clock.nowMs() + timeoutMs;
  for (;;) {
    try {
      const response = await fetch(`${state.url}/-/ready`, { signal: AbortSignal.timeout(1_000) });
      if (response.ok) return;
    } catch {
      // not listening yet
    }
    if (!(await isPidRunning(state.pid))) {
      throw new PgpilotError('COMMAND_FAILED', `prometheus (pid ${state.pid}) exited before it was ready`, { hint: `read ${state.logFile}` });
    }
    if (clock.nowMs() >= deadlineMs) {
      throw new PgpilotError('TIMEOUT', `prometheus at ${state.url} was not ready within ${Math.round(timeoutMs / 1000)} s`, { hint: `read ${state.logFile}`, retryable: true });
    }
    await clock.sleep(200);
  }
}

/** Stops the cluster's Prometheus if it is ours and running; removes its PID and state files. */
export async function stopPrometheus(paths: MonitoringPaths, clock: Clock): Promise<'not-running' | 'stopped' | 'killed'> {
  const pid = await readPidFile(paths.pidFile);
  const how = pid === null ? 'not-running' : await stopOwnedProcess({ pid, marker: paths.configFile }, clock, { signal: 'SIGTERM', graceMs: 15_000 });
  await rm(paths.pidFile, { force: true });
  await rm(paths.stateFile, { force: true });
  return how;
}

/** `promtool check config FILE` (also checks the rule files it names). */
export async function checkPrometheusConfig(configFile: string): Promise<{ kind: 'ok' } | { kind: 'error'; output: string }> {
  const result = await runCommand(findBinary('promtool'), ['check', 'config', configFile], { timeoutMs: 30_000, check: false });
  if (result.exitCode === 0) return { kind: 'ok' };
  const output = `${result.stdout}\n${result.stderr}`
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.length > 0)
    .join(' | ');
  return { kind: 'error', output };
}
