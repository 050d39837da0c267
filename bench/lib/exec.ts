/**
 * Child processes of the benchmark (pgbench, psql-like tools, version probes): always with a time
 * bound, and registered while they run so that an interrupted run (SIGINT) can kill exactly the
 * children it started, by PID, before it exits.
 */
import { execFile, type ChildProcess } from 'node:child_process';
import path from 'node:path';

export interface ProcessResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Set when the process could not be started or was killed at its time bound. */
  error: string | null;
}

const running = new Set<ChildProcess>();

/** Runs `file` to completion (or SIGKILL at `timeoutMs`); never rejects. */
export function runProcess(file: string, args: readonly string[], options: { env?: NodeJS.ProcessEnv; timeoutMs: number }): Promise<ProcessResult> {
  return new Promise((resolve) => {
    const child = execFile(
      file,
      [...args],
      { env: options.env ?? process.env, timeout: options.timeoutMs, killSignal: 'SIGKILL', maxBuffer: 64 * 1024 * 1024 },
      (error, stdout, stderr) => {
        running.delete(child);
        const failure = error as (NodeJS.ErrnoException & { killed?: boolean; signal?: NodeJS.Signals | null }) | null;
        resolve({
          code: child.exitCode,
          signal: child.signalCode,
          stdout: String(stdout),
          stderr: String(stderr),
          error:
            failure === null
              ? null
              : failure.killed === true
                ? `${path.basename(file)} killed after ${options.timeoutMs} ms`
                : typeof failure.code === 'string'
                  ? `${path.basename(file)}: ${failure.message}`
                  : null,
        });
      },
    );
    child.stdin?.end();
    running.add(child);
  });
}

/** Like runProcess, but resolves with stdout + stderr only on exit code 0 and rejects otherwise. */
export async function exec(file: string, args: readonly string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<string> {
  const result = await runProcess(file, args, { env, timeoutMs });
  if (result.code === 0 && result.error === null) return `${result.stdout}\n${result.stderr}`;
  const why = result.error ?? (result.stderr.trim() || `exit ${result.code ?? result.signal ?? '?'}`);
  throw new Error(`${path.basename(file)} failed: ${why}`);
}

/** SIGKILLs every child still running (by the PID we spawned); for an interrupted run. */
export function killRunningChildren(): void {
  for (const child of running) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  running.clear();
}
