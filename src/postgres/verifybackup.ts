/**
 * pg_verifybackup: checks every file of an unpacked base backup against the SHA-256 checksums in
 * its backup_manifest, and parses (with pg_waldump) the WAL the backup needs to become consistent.
 * The output parser is pure; problems are returned, not thrown, so `backup verify` can list them.
 */
import { runCommand } from '../shared/process-runner.js';
import { pgBinary } from './bin-dir.js';
import { postgresEnv } from './initdb.js';

export interface VerifybackupResult {
  ok: boolean;
  /** One line per problem pg_verifybackup reported (its "error: ..." lines), at most 20. */
  problems: string[];
}

export function verifybackupArgs(options: { backupDir: string; manifestPath: string; walDir: string }): string[] {
  return ['--manifest-path', options.manifestPath, '--wal-directory', options.walDir, options.backupDir];
}

/** The problem lines of pg_verifybackup's stderr (pure). */
export function parseVerifybackupOutput(stderr: string): string[] {
  return stderr
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line.length > 0 && !/successfully verified/.test(line))
    .map((line) => line.replace(/^pg_verifybackup:\s*/, '').replace(/^error:\s*/, ''))
    .slice(0, 20);
}

export async function runVerifybackup(options: { binDir: string; backupDir: string; manifestPath: string; walDir: string; timeoutMs?: number }): Promise<VerifybackupResult> {
  const result = await runCommand(pgBinary(options.binDir, 'pg_verifybackup'), verifybackupArgs(options), {
    check: false,
    env: postgresEnv({ LC_ALL: 'C' }),
    timeoutMs: options.timeoutMs ?? 60 * 60_000,
  });
  if (result.exitCode === 0) return { ok: true, problems: [] };
  const problems = parseVerifybackupOutput(result.stderr);
  return { ok: false, problems: problems.length > 0 ? problems : [`pg_verifybackup exited with ${result.exitCode ?? result.signal}`] };
}
