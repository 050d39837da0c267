/**
 * Runs one of the project's long-running entry points (`dist/bench/run.js`, `dist/chaos/run.js`)
 * as a child process for an end-to-end test, bounded: SIGINT at `timeoutMs` (the tools clean up on
 * SIGINT), SIGKILL `killGraceMs` later. Collects stdout and stderr.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { REPO_ROOT } from './cli.js';

export interface BoundedRunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

export function runBounded(
  script: string,
  args: readonly string[],
  options: { timeoutMs: number; killGraceMs: number; env?: NodeJS.ProcessEnv },
): Promise<BoundedRunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(REPO_ROOT, script), ...args], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: options.env ?? process.env,
    });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    let killTimer: NodeJS.Timeout | undefined;
    const interruptTimer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGINT');
      killTimer = setTimeout(() => child.kill('SIGKILL'), options.killGraceMs);
    }, options.timeoutMs);
    child.once('error', (error) => {
      clearTimeout(interruptTimer);
      clearTimeout(killTimer);
      reject(error);
    });
    child.once('close', (code, signal) => {
      clearTimeout(interruptTimer);
      clearTimeout(killTimer);
      resolve({ code, signal, stdout, stderr, timedOut });
    });
  });
}
