/**
 * Restoring a base backup (plus archived WAL, up to a target) into the first node of a NEW
 * cluster, before its agents start. The steps, each one checked before the next:
 *   1. download every stored file and check its sha256; unpack; pg_verifybackup (backup-files.ts);
 *   2. archive recovery with `restore_command = wal fetch` from the source's archive, stopping at
 *      the target and promoting there (postgres of the new node, as the postgres OS user, no TCP
 *      listener: nobody can connect to a half-recovered database);
 *   3. a clean shutdown, then the new cluster's superuser and replication passwords set in
 *      single-user mode (no authentication method is loosened at any point, and no password of
 *      the source cluster is needed);
 * and the data directory is then an ordinary cleanly shut-down primary that the node's agent
 * takes the lead with (decide.ts rule C), while the other nodes clone from it.
 *
 * Invariants: the source store is only read; the target directory is fresh (the caller created
 * it); on any failure an error says which step failed and why (the postgres log tail for
 * recovery), and the caller removes the half-made cluster.
 */
import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { ClusterSecrets } from '../config/schema.js';
import { renderPgHba, renderPostgresqlConf, type ArchiveConf, type PostgresTls } from '../postgres/conf.js';
import { readControldata } from '../postgres/controldata.js';
import { ensurePostgresOwnedDir, postgresEnv } from '../postgres/initdb.js';
import { Postmaster } from '../postgres/postmaster.js';
import { pgBinary } from '../postgres/bin-dir.js';
import { scramSha256Verifier } from '../postgres/scram.js';
import type { Clock } from '../shared/clock.js';
import { PgpilotError } from '../shared/errors.js';
import { asPostgresUser, isRoot, POSTGRES_OS_USER, runCommand } from '../shared/process-runner.js';
import { downloadBackupFiles, unpackAndVerify } from './backup-files.js';
import type { BackupRecord } from './backup-record.js';
import type { ObjectStore } from './object-store.js';
import type { RestoreTarget } from './restore-plan.js';
import type { StoreLayout } from './store-layout.js';

export interface RestoreDataOptions {
  store: ObjectStore;
  layout: StoreLayout;
  record: BackupRecord;
  target: RestoreTarget;
  /** restore_command reading the source archive (restoreCommandFor). */
  restoreCommand: string;
  /** The new cluster's own archiving, so the new timeline's first WAL and history are archived. */
  archive: ArchiveConf | null;
  /** The node certificate the recovering postgres is configured with (ssl = on; it has no TCP listener). */
  tls: PostgresTls;
  binDir: string;
  dataDir: string;
  /** Scratch space for the downloaded files (removed afterwards). */
  stageDir: string;
  socketDir: string;
  postgresLogFile: string;
  port: number;
  clusterName: string;
  nodeName: string;
  secrets: ClusterSecrets;
  cidrs: string[];
  clock: Clock;
  progress: (line: string) => void;
  timeoutMs: number;
}

const POLL_MS = 500;
const STOP_TIMEOUT_MS = 120_000;

async function logTail(file: string, lines = 40): Promise<string[]> {
  try {
    return (await readFile(file, 'utf8')).trim().split('\n').slice(-lines);
  } catch {
    return [];
  }
}

/** The most telling line of a failed recovery's log (its last FATAL/PANIC, else the last line). */
function failureLine(tail: readonly string[]): string {
  const fatal = [...tail].reverse().find((line) => /\b(FATAL|PANIC):/.test(line));
  return (fatal ?? tail.at(-1) ?? 'no log output').replace(/^\S+ \S+ \S+ \[\d+\] /, '');
}

/** SQL for single-user mode: the new cluster's roles and passwords (SCRAM verifiers, never clear text). */
export function passwordResetSql(secrets: ClusterSecrets): string {
  const literal = (text: string): string => `'${text.replace(/'/g, "''")}'`;
  const ident = (name: string): string => `"${name.replace(/"/g, '""')}"`;
  const role = (name: string, password: string, attributes: string): string => {
    const verifier = literal(scramSha256Verifier(password));
    return (
      `DO $pgpilot$ BEGIN IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = ${literal(name)}) ` +
      `THEN ALTER ROLE ${ident(name)} WITH ${attributes} PASSWORD ${verifier}; ` +
      `ELSE CREATE ROLE ${ident(name)} WITH ${attributes} PASSWORD ${verifier}; END IF; END $pgpilot$;`
    );
  };
  return [
    role(secrets.superuser.name, secrets.superuser.password, 'LOGIN SUPERUSER'),
    role(secrets.replication.name, secrets.replication.password, 'LOGIN REPLICATION'),
    '',
  ].join('\n');
}

async function chownToPostgres(dir: string): Promise<void> {
  if (!isRoot()) return;
  await runCommand('chown', ['-R', `${POSTGRES_OS_USER}:${POSTGRES_OS_USER}`, dir], { timeoutMs: 10 * 60_000 });
}

export async function restoreDataDirectory(options: RestoreDataOptions): Promise<{ systemIdentifier: string; timeline: number | null }> {
  const { record, dataDir, progress, clock } = options;
  progress(`restore: backup ${record.id} of ${options.layout.cluster} (timeline ${record.timeline ?? '?'}, ${record.startLsn ?? '?'} - ${record.stopLsn ?? '?'}), target ${describeTarget(options.target)}`);

  // 1. the copy, checked
  try {
    const problems = await downloadBackupFiles(options.store, options.layout, record, options.stageDir, progress);
    if (problems.length === 0) problems.push(...(await unpackAndVerify({ binDir: options.binDir, stageDir: options.stageDir, dataDir, progress, id: record.id })));
    if (problems.length > 0) {
      throw new PgpilotError('BACKUP_CORRUPT', `backup ${record.id} failed verification: ${problems[0] ?? ''}${problems.length > 1 ? ` (and ${problems.length - 1} more)` : ''}`, {
        hint: `nothing was restored; check it with: pgpilot backup verify ${options.layout.cluster} ${record.id}, or restore another backup with --backup ID`,
        exitCode: 1,
      });
    }
  } finally {
    await rm(options.stageDir, { recursive: true, force: true });
  }

  // 2. archive recovery to the target, promoting there
  await writeFile(path.join(dataDir, 'postgresql.auto.conf'), '# settings of the source cluster were cleared by pgpilot restore\n');
  await rm(path.join(dataDir, 'standby.signal'), { force: true });
  await writeFile(path.join(dataDir, 'recovery.signal'), '');
  await writeFile(
    path.join(dataDir, 'postgresql.conf'),
    renderPostgresqlConf({
      port: options.port,
      listenAddresses: '',
      socketDir: options.socketDir,
      clusterName: options.clusterName,
      nodeName: options.nodeName,
      tls: options.tls,
      archive: options.archive === null ? null : { ...options.archive, mode: 'on' },
      recovery: {
        restoreCommand: options.restoreCommand,
        target: options.target.kind === 'time' ? { kind: 'time', time: options.target.text } : options.target,
      },
    }),
  );
  await writeFile(path.join(dataDir, 'pg_hba.conf'), renderPgHba({ superuser: options.secrets.superuser.name, replicationUser: options.secrets.replication.name, cidrs: options.cidrs }));
  await chownToPostgres(dataDir);
  await ensurePostgresOwnedDir(dataDir, 0o700);
  await ensurePostgresOwnedDir(options.socketDir, 0o700);

  const postmaster = new Postmaster({ clock });
  progress('restore: replaying archived WAL (postgres recovery; follow it in the node\'s postgres.log)');
  await postmaster.start({ binDir: options.binDir, dataDir, logFile: options.postgresLogFile, socketDir: options.socketDir });
  const deadlineMs = clock.nowMs() + options.timeoutMs;
  try {
    let lastState = '';
    for (;;) {
      if (!postmaster.isRunning()) {
        const tail = await logTail(options.postgresLogFile);
        throw new PgpilotError('RESTORE_FAILED', `recovery stopped: ${failureLine(tail)}`, {
          hint: `read ${options.postgresLogFile}; a target past the end of the archived WAL or a damaged WAL file stops recovery`,
        });
      }
      const control = await readControldata(options.binDir, dataDir).catch(() => null);
      const state = control?.clusterState ?? 'unknown';
      if (state !== lastState) {
        lastState = state;
        progress(`restore: ${state}${control?.latestCheckpointLsn ? ` (checkpoint at ${control.latestCheckpointLsn})` : ''}`);
      }
      if (state === 'in production') break;
      if (clock.nowMs() >= deadlineMs) {
        throw new PgpilotError('TIMEOUT', `recovery did not finish within ${Math.round(options.timeoutMs / 1000)} s`, {
          hint: `read ${options.postgresLogFile}; use a longer --timeout for large archives`,
          retryable: true,
        });
      }
      await clock.sleep(POLL_MS);
    }
    progress('restore: target reached and promoted; shutting down cleanly');
    const clean = await postmaster.stop('fast', STOP_TIMEOUT_MS);
    if (!clean) throw new PgpilotError('RESTORE_FAILED', 'the restored postgres did not shut down cleanly', { hint: `read ${options.postgresLogFile}` });
  } finally {
    if (postmaster.isRunning()) await postmaster.stop('immediate', 10_000);
  }

  // 3. the new cluster's passwords, without any network listener or loosened authentication
  const single = asPostgresUser(pgBinary(options.binDir, 'postgres'), ['--single', '-D', dataDir, '-c', 'listen_addresses=', '-c', 'archive_mode=off', 'postgres']);
  const result = await runCommand(single.command, single.args, { input: passwordResetSql(options.secrets), env: postgresEnv({ LC_ALL: 'C' }), cwd: '/', timeoutMs: 120_000, check: false });
  if (result.exitCode !== 0 || /\b(ERROR|FATAL|PANIC):/.test(result.stderr)) {
    const line = result.stderr.split('\n').find((l) => /\b(ERROR|FATAL|PANIC):/.test(l)) ?? `exit ${result.exitCode ?? result.signal}`;
    throw new PgpilotError('RESTORE_FAILED', `setting the new cluster's passwords failed: ${line.trim()}`, { hint: `read ${options.postgresLogFile}` });
  }
  const control = await readControldata(options.binDir, dataDir);
  if (control.clusterState !== 'shut down') {
    throw new PgpilotError('RESTORE_FAILED', `the restored data directory is "${control.clusterState}", not cleanly shut down`, { hint: `read ${options.postgresLogFile}` });
  }
  progress(`restore: done (system ${control.systemIdentifier}, timeline ${control.timeline ?? '?'})`);
  return { systemIdentifier: control.systemIdentifier, timeline: control.timeline };
}

export function describeTarget(target: RestoreTarget): string {
  switch (target.kind) {
    case 'latest':
      return 'the end of the archived WAL';
    case 'time':
      return `time ${target.text}`;
    case 'lsn':
      return `LSN ${target.lsn}`;
  }
}
