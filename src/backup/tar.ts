/**
 * GNU tar (Debian's essential `tar`), the one external binary that unpacks base backups. Members
 * are extracted without their recorded owners (`--no-same-owner`): files belong to whoever
 * extracts them, and the restore hands the data directory to the postgres OS user afterwards.
 */
import { PgpilotError } from '../shared/errors.js';
import { runCommand } from '../shared/process-runner.js';

/** The tar argv that unpacks gzip-compressed `archive` into `dir` (pure). */
export function extractArgs(archive: string, dir: string): string[] {
  return ['--extract', '--gzip', '--no-same-owner', '--file', archive, '--directory', dir];
}

export async function extractTarGz(archive: string, dir: string, timeoutMs = 60 * 60_000): Promise<void> {
  const result = await runCommand('tar', extractArgs(archive, dir), { check: false, timeoutMs, env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', LC_ALL: 'C' } });
  if (result.exitCode !== 0) {
    const tail = result.stderr.trim().split('\n').slice(-2).join(' | ');
    throw new PgpilotError('BACKUP_CORRUPT', `cannot unpack ${archive}: ${tail || `tar exited with ${result.exitCode ?? result.signal}`}`, {
      hint: 'the stored file is damaged or incomplete; restore from another backup (pgpilot backup list)',
    });
  }
}
