/**
 * Runs `bin/pgpilot` the way a user does (a child process, no TTY, no stdin) with a time bound,
 * and gives tests a private PGPILOT home that the postgres OS user can reach (0755, outside /root).
 */
import { execFile } from 'node:child_process';
import { chmodSync, mkdtempSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const PGPILOT_BIN = path.join(REPO_ROOT, 'bin', 'pgpilot');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function runCli(args: readonly string[], options: { home: string; timeoutMs?: number; env?: NodeJS.ProcessEnv }): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = execFile(
      PGPILOT_BIN,
      [...args],
      {
        env: { ...process.env, ...options.env, PGPILOT_HOME: options.home },
        timeout: options.timeoutMs ?? 240_000,
        killSignal: 'SIGKILL',
        maxBuffer: 16 * 1024 * 1024,
      },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : 1;
        resolve({ code, stdout, stderr });
      },
    );
    child.stdin?.end();
  });
}

export function makeTempHome(label: string): string {
  const home = mkdtempSync(path.join(tmpdir(), `pgpilot-${label}-`));
  chmodSync(home, 0o755);
  return home;
}

export async function removeTempHome(home: string): Promise<void> {
  await rm(home, { recursive: true, force: true });
}
