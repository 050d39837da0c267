/**
 * Runs one scheduled backup as a child process of the agent (`pgpilot backup create
 * --agent-config FILE --scheduled`), its output appended to the node's backup.log. The child is
 * ours: it is stopped by its PID when the agent stops or when it outlives its time bound.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { open } from 'node:fs/promises';
import { PgpilotError } from '../shared/errors.js';
import { MAX_BACKUP_DURATION_MS } from '../backup/base-backup.js';

export class BackupChild {
  private child: ChildProcess | null = null;

  constructor(private readonly options: { cliEntry: string; agentConfigFile: string; logFile: string }) {}

  /** Resolves when the run succeeded; rejects with its exit status otherwise. */
  async run(): Promise<void> {
    if (this.child !== null) throw new PgpilotError('BACKUP_RUNNING', 'a scheduled backup is already running');
    const log = await open(this.options.logFile, 'a', 0o640);
    let child: ChildProcess;
    try {
      child = spawn(process.execPath, [this.options.cliEntry, 'backup', 'create', '--agent-config', this.options.agentConfigFile, '--scheduled'], {
        stdio: ['ignore', log.fd, log.fd],
        cwd: '/',
      });
      this.child = child;
    } finally {
      await log.close();
    }
    const timer = setTimeout(() => child.kill('SIGTERM'), MAX_BACKUP_DURATION_MS);
    try {
      await new Promise<void>((resolve, reject) => {
        child.once('error', reject);
        child.once('exit', (code, signal) => {
          if (code === 0) resolve();
          else reject(new PgpilotError('BACKUP_FAILED', `backup create exited with ${signal ?? `code ${code ?? '?'}`}`, { hint: `read ${this.options.logFile}` }));
        });
      });
    } finally {
      clearTimeout(timer);
      this.child = null;
    }
  }

  /** Stops a running child (SIGTERM); no-op when none runs. */
  stop(): void {
    this.child?.kill('SIGTERM');
  }
}
