/**
 * pgbench and the external HAProxy, shared by bench/proxy-pgbench.ts and bench/run.ts: running
 * pgbench against one port, reading its TPS, and starting an HAProxy from the file that
 * `pgpilot haproxy-config` writes (its first `bind` is the write port, routed to the primary).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { run as haproxyConfig } from '../../src/cli/commands/haproxy-config.js';
import { findHaproxyBinary, startHaproxy, stopHaproxy } from '../../src/proxy/haproxy-process.js';
import { exec, runProcess, type ProcessResult } from './exec.js';

export const PG_BIN = '/usr/lib/postgresql/15/bin';
export const PGBENCH = `${PG_BIN}/pgbench`;

export function parseTps(output: string): number {
  const match = /tps = ([\d.]+) \((?:without initial connection time|excluding connections establishing)\)/.exec(output) ?? /tps = ([\d.]+)/.exec(output);
  if (match === null) throw new Error(`no tps in pgbench output: ${output.slice(-300)}`);
  return Number(match[1]);
}

export function haproxyInstalled(): boolean {
  try {
    findHaproxyBinary();
    return true;
  } catch {
    return false;
  }
}

export interface PgTarget {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
  /** The CA to verify the server against (sslmode=verify-full), or null for a plain-text server. */
  caFile: string | null;
}

function pgEnv(target: PgTarget): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, PGPASSWORD: target.password };
  // libpq's own default (prefer) would fall back to plain text: verify the server or fail.
  if (target.caFile !== null) Object.assign(env, { PGSSLMODE: 'verify-full', PGSSLROOTCERT: target.caFile });
  return env;
}

function connArgs(target: PgTarget): string[] {
  return ['-h', target.host, '-p', String(target.port), '-U', target.user];
}

/** `pgbench -i -q -s SCALE` (drops and recreates the pgbench tables). */
export async function pgbenchInit(target: PgTarget, scale: number, timeoutMs = 600_000): Promise<void> {
  await exec(PGBENCH, ['-i', '-q', '-s', String(scale), ...connArgs(target), target.database], pgEnv(target), timeoutMs);
}

/** One pgbench run; the raw result, whatever the exit code (a run aborted by the target is a result too). */
export function pgbenchRun(target: PgTarget, options: { seconds: number; clients: number; jobs: number; selectOnly: boolean; connect?: boolean }): Promise<ProcessResult> {
  const args = ['-c', String(options.clients), '-j', String(options.jobs), '-T', String(options.seconds), ...connArgs(target)];
  if (options.selectOnly) args.unshift('-S');
  if (options.connect === true) args.push('-C');
  return runProcess(PGBENCH, [...args, target.database], { env: pgEnv(target), timeoutMs: (options.seconds + 120) * 1000 });
}

/** The TPS of a run that exited 0, else an Error with pgbench's last lines. */
export function tpsOf(result: ProcessResult): number {
  const output = `${result.stdout}\n${result.stderr}`;
  if (result.code !== 0 || result.error !== null) {
    const tail = result.stderr.trim().split('\n').slice(-2).join(' ');
    throw new Error(`pgbench failed (${result.error ?? `exit ${result.code ?? result.signal ?? '?'}`}): ${tail}`);
  }
  return parseTps(output);
}

export interface RunningHaproxy {
  pid: number;
  /** The write port (routed to the primary). */
  port: number;
  configFile: string;
  stop(): Promise<void>;
}

/**
 * Writes `pgpilot haproxy-config NAME --output DIR/haproxy.cfg` for a cluster of `home` and runs
 * that HAProxy (it dies with this process: setpriv --pdeathsig). The caller stops it.
 */
export async function startClusterHaproxy(home: string, name: string, dir: string): Promise<RunningHaproxy> {
  const configFile = path.join(dir, 'haproxy.cfg');
  await haproxyConfig({ home, name, output: configFile }, { out: () => undefined, err: () => undefined });
  const { pid } = await startHaproxy({ configFile, pidFile: path.join(dir, 'haproxy.pid'), logFile: path.join(dir, 'haproxy.log') });
  // The first `bind` of the generated file is the write (primary) section's.
  const port = Number(/^\s*bind\s+\S*:(\d+)/m.exec(readFileSync(configFile, 'utf8'))?.[1] ?? 0);
  let stopped = false;
  return {
    pid,
    port,
    configFile,
    stop: async () => {
      if (stopped) return;
      stopped = true;
      await stopHaproxy(pid);
    },
  };
}
