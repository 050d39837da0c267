/**
 * The small pure pieces of the backup feature: the archive/recovery settings in postgresql.conf and
 * the shell words of archive_command / restore_command (run through a real /bin/sh after a
 * postgres-style %-expansion), the backup source choice, the password reset SQL of a restore
 * (SCRAM verifiers that match the passwords, never the passwords), the `backup config` flag
 * handling, the backup table, the cluster's archive status and its one-line description, and the
 * argv / output parsers of pg_basebackup, pg_verifybackup and tar, and the store key layout.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { chooseBackupSource } from '../../src/backup/base-backup.js';
import { backupRecordSchema, newBackupId, type BackupRecord } from '../../src/backup/backup-record.js';
import { passwordResetSql } from '../../src/backup/restore.js';
import { parseStoreUrl, type StoreConfig } from '../../src/backup/store-config.js';
import { storeLayout, walFileNameOfKey } from '../../src/backup/store-layout.js';
import { extractArgs } from '../../src/backup/tar.js';
import { applyBackupUpdates, renderBackups, withEnvCredentials } from '../../src/cli/commands/backup.js';
import { describeArchive } from '../../src/cli/commands/status.js';
import { clusterSecretsSchema, defaultBackupSettings, type ClusterSecrets } from '../../src/config/schema.js';
import type { ArchiveState, MemberRecord } from '../../src/state/member-record.js';
import { parseBasebackupProgress, tarBackupArgs } from '../../src/postgres/basebackup.js';
import { renderPostgresqlConf, shellQuote, walCommand, type PostgresqlConfInput } from '../../src/postgres/conf.js';
import { scramSha256Verifier } from '../../src/postgres/scram.js';
import { parseVerifybackupOutput, verifybackupArgs } from '../../src/postgres/verifybackup.js';
import { archiveStatusOf, buildClusterStatus } from '../../src/operations/cluster-status.js';
import { isPgpilotError } from '../../src/shared/errors.js';
import { clusterManifest, clusterSecrets } from '../builders/manifest-builder.js';
import { memberRecord, primaryRecord } from '../builders/observation-builder.js';
import { localTopology } from '../../src/providers/local/local-topology.js';

function hasCode(code: string, pattern?: RegExp): (error: unknown) => boolean {
  return (error: unknown) => isPgpilotError(error) && error.code === code && (pattern === undefined || pattern.test(error.message));
}

// ------------------------------------------------------------------ postgresql.conf

const BASE_CONF: PostgresqlConfInput = {
  port: 5432,
  listenAddresses: '127.0.0.1',
  socketDir: '/run/pg',
  clusterName: 'shop',
  nodeName: 'node1',
  tls: { certFile: '/tls/node.crt', keyFile: '/tls/node.key', caFile: '/tls/ca.crt' },
};

/** Every `name = value` line of a rendered file, in order. */
function settingLines(conf: string): string[] {
  return conf.split('\n').filter((line) => /^[a-z_.]+ = /.test(line));
}

function valuesOf(conf: string, name: string): string[] {
  return settingLines(conf)
    .filter((line) => line.startsWith(`${name} = `))
    .map((line) => line.slice(name.length + 3));
}

void describe('renderPostgresqlConf: archive and recovery', () => {
  void it('renders the archive settings, quoted', () => {
    const conf = renderPostgresqlConf({ ...BASE_CONF, archive: { mode: 'always', command: "node 'wal.js' push %p", timeoutSeconds: 300 } });
    const lines = settingLines(conf);
    const start = lines.indexOf("archive_mode = 'always'");
    assert.ok(start > 0, conf);
    assert.deepEqual(lines.slice(start, start + 3), ["archive_mode = 'always'", "archive_command = 'node ''wal.js'' push %p'", "archive_timeout = '300s'"]);
    assert.deepEqual(valuesOf(conf, 'archive_mode'), ["'always'"], 'exactly once');
    assert.deepEqual(valuesOf(renderPostgresqlConf({ ...BASE_CONF, archive: { mode: 'on', command: 'x', timeoutSeconds: 60 } }), 'archive_mode'), ["'on'"]);
  });

  void it('renders no archive or recovery setting when not asked', () => {
    for (const conf of [renderPostgresqlConf(BASE_CONF), renderPostgresqlConf({ ...BASE_CONF, archive: null, recovery: null })]) {
      for (const name of ['archive_mode', 'archive_command', 'archive_timeout', 'restore_command', 'recovery_target_time', 'recovery_target_lsn', 'recovery_target_action']) {
        assert.deepEqual(valuesOf(conf, name), [], name);
      }
    }
  });

  void it('renders recovery to the end of the archive, to a time and to an LSN, then promote on the latest timeline', () => {
    const restoreCommand = "'/usr/bin/node' 'wal.js' 'fetch' %f %p";
    const quoted = "'''/usr/bin/node'' ''wal.js'' ''fetch'' %f %p'";
    const latest = renderPostgresqlConf({ ...BASE_CONF, recovery: { restoreCommand, target: { kind: 'latest' } } });
    const tail = (conf: string): string[] => settingLines(conf).slice(settingLines(conf).findIndex((l) => l.startsWith('restore_command')));
    assert.deepEqual(tail(latest), [`restore_command = ${quoted}`, "recovery_target_timeline = 'latest'", "recovery_target_action = 'promote'"]);

    const timed = renderPostgresqlConf({ ...BASE_CONF, recovery: { restoreCommand, target: { kind: 'time', time: '2026-11-26 07:30:00.123456+00' } } });
    assert.deepEqual(tail(timed), [
      `restore_command = ${quoted}`,
      "recovery_target_timeline = 'latest'",
      "recovery_target_time = '2026-11-26 07:30:00.123456+00'",
      "recovery_target_action = 'promote'",
    ]);
    assert.deepEqual(valuesOf(timed, 'recovery_target_lsn'), []);

    const lsn = renderPostgresqlConf({ ...BASE_CONF, recovery: { restoreCommand, target: { kind: 'lsn', lsn: '0/5000138' } } });
    assert.deepEqual(tail(lsn), [`restore_command = ${quoted}`, "recovery_target_timeline = 'latest'", "recovery_target_lsn = '0/5000138'", "recovery_target_action = 'promote'"]);
    assert.deepEqual(valuesOf(lsn, 'recovery_target_time'), []);
  });

  void it('a target time cannot break out of its quotes', () => {
    const conf = renderPostgresqlConf({ ...BASE_CONF, recovery: { restoreCommand: 'x', target: { kind: 'time', time: "2026-11-26 07:30:00+00'\nrestore_command = 'evil" } } });
    assert.deepEqual(valuesOf(conf, 'restore_command'), ["'x'"]);
    assert.deepEqual(valuesOf(conf, 'recovery_target_time'), ["'2026-11-26 07:30:00+00''\\nrestore_command = ''evil'"]);
  });

  void it('never renders archive, restore and recovery target settings from free-form parameters (dropped)', () => {
    for (const name of ['archive_command', 'ARCHIVE_MODE', 'archive_library', 'restore_command', 'recovery_target_time', 'recovery_target_lsn', 'recovery_target_action', 'recovery_target_timeline', 'archive_cleanup_command', 'recovery_end_command']) {
      const conf = renderPostgresqlConf({ ...BASE_CONF, parameters: { [name]: 'x', work_mem: '4MB' } });
      assert.deepEqual(valuesOf(conf, name.toLowerCase()), [], name);
      assert.deepEqual(valuesOf(conf, 'work_mem'), ["'4MB'"], `${name}: the rest of the parameters still apply`);
    }
    // The control: an ordinary parameter is accepted.
    assert.deepEqual(valuesOf(renderPostgresqlConf({ ...BASE_CONF, parameters: { work_mem: '8MB' } }), 'work_mem'), ["'8MB'"]);
  });
});

void describe('shellQuote / walCommand', () => {
  void it('quotes one word for /bin/sh', () => {
    assert.equal(shellQuote("a'b"), "'a'\\''b'");
    assert.equal(shellQuote('plain'), "'plain'");
    assert.equal(shellQuote(''), "''");
    assert.equal(shellQuote('$HOME `id` "x" \\'), "'$HOME `id` \"x\" \\'");
  });

  void it('doubles % inside the words and appends the placeholders unquoted', () => {
    assert.equal(
      walCommand('/usr/bin/node', '/opt/pg pilot/wal.js', ['push', '--store', "/b/100%/it's"], ['%p']),
      "'/usr/bin/node' '/opt/pg pilot/wal.js' 'push' '--store' '/b/100%%/it'\\''s' %p",
    );
    assert.equal(walCommand('node', 'wal.js', ['fetch'], ['%f', '%p']), "'node' 'wal.js' 'fetch' %f %p");
    assert.equal(walCommand('node', 'wal.js', [], []), "'node' 'wal.js'");
  });

  void it('survives postgres %-expansion and /bin/sh word splitting with every awkward character', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "pgpilot wal %p it's $x-"));
    try {
      const script = path.join(dir, 'print "args" `x`.mjs');
      writeFileSync(script, 'process.stdout.write(JSON.stringify(process.argv.slice(2)));\n');
      const awkward = ["it's 100% $HOME `id` \"q\" \\n %f %%", 'two  spaces\ttab', '-n', ''];
      const command = walCommand(process.execPath, script, ['fetch', ...awkward], ['%f', '%p']);
      // What postgres does with archive_command / restore_command before running it with /bin/sh -c.
      const walFile = '000000010000000000000003';
      const walPath = 'pg_wal/RECOVERYXLOG';
      const expanded = command.replace(/%([pf%])/g, (_, c: string) => (c === 'f' ? walFile : c === 'p' ? walPath : '%'));
      const output = execFileSync('/bin/sh', ['-c', expanded], { encoding: 'utf8', env: { PATH: '/usr/bin:/bin', HOME: '/nonexistent' } });
      assert.deepEqual(JSON.parse(output), ['fetch', ...awkward, walFile, walPath]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// ------------------------------------------------------------------ backup source

void describe('chooseBackupSource', () => {
  const MAX_LAG = 1024 * 1024;

  function leaderWith(lags: Record<string, number | null>, overrides: Partial<MemberRecord> = {}): MemberRecord {
    return primaryRecord({
      name: 'node1',
      replication: Object.entries(lags).map(([name, lagBytes]) => ({ applicationName: name, state: 'streaming', replayLsn: '0/3000000', lagBytes, syncState: 'async' })),
      ...overrides,
    });
  }

  const replica = (name: string, overrides: Partial<MemberRecord> = {}): MemberRecord => memberRecord({ name, following: 'node1', ...overrides });

  void it('prefers the least-lagging streaming replica of the leader', () => {
    const members = [leaderWith({ node2: 5000, node3: 100 }), replica('node2'), replica('node3')];
    assert.deepEqual(chooseBackupSource(members, 'node1', MAX_LAG), { node: 'node3', host: '127.0.0.1', port: 5433, role: 'replica' });
  });

  void it('breaks a lag tie by name', () => {
    const members = [leaderWith({ node3: 0, node2: 0 }), replica('node3'), replica('node2')];
    assert.equal(chooseBackupSource(members, 'node1', MAX_LAG)?.node, 'node2');
  });

  void it('skips replicas over the lag limit (the limit itself is fine), not streaming, following another node, or with unknown lag', () => {
    assert.equal(chooseBackupSource([leaderWith({ node2: MAX_LAG + 1, node3: MAX_LAG }), replica('node2'), replica('node3')], 'node1', MAX_LAG)?.node, 'node3');
    assert.equal(chooseBackupSource([leaderWith({ node2: 10, node3: 500 }), replica('node2', { streaming: false }), replica('node3')], 'node1', MAX_LAG)?.node, 'node3');
    assert.equal(chooseBackupSource([leaderWith({ node2: 10, node3: 500 }), replica('node2', { following: 'node9' }), replica('node3')], 'node1', MAX_LAG)?.node, 'node3');
    assert.equal(chooseBackupSource([leaderWith({ node2: null, node3: 500 }), replica('node2'), replica('node3')], 'node1', MAX_LAG)?.node, 'node3');
    assert.equal(chooseBackupSource([leaderWith({ node3: 500 }), replica('node2'), replica('node3')], 'node1', MAX_LAG)?.node, 'node3', 'absent from pg_stat_replication');
    assert.equal(chooseBackupSource([leaderWith({ node2: 10, node3: 500 }), replica('node2', { role: 'unknown' }), replica('node3')], 'node1', MAX_LAG)?.node, 'node3');
  });

  void it('falls back to the leader when no replica qualifies', () => {
    const leaderOnly = { node: 'node1', host: '127.0.0.1', port: 5431, role: 'primary' };
    assert.deepEqual(chooseBackupSource([leaderWith({})], 'node1', MAX_LAG), leaderOnly);
    assert.deepEqual(chooseBackupSource([leaderWith({ node2: MAX_LAG * 2 }), replica('node2')], 'node1', MAX_LAG), leaderOnly);
    assert.deepEqual(chooseBackupSource([leaderWith({ node2: 0 }), replica('node2', { streaming: false, following: null })], 'node1', 0), leaderOnly);
  });

  void it('answers null without a running leader', () => {
    const members = [leaderWith({ node2: 0 }), replica('node2')];
    assert.equal(chooseBackupSource(members, null, MAX_LAG), null);
    assert.equal(chooseBackupSource(members, 'node2', MAX_LAG), null, 'the named leader is a replica');
    assert.equal(chooseBackupSource(members, 'node7', MAX_LAG), null, 'no record');
    assert.equal(chooseBackupSource([leaderWith({ node2: 0 }, { state: 'starting' }), replica('node2')], 'node1', MAX_LAG), null);
    assert.equal(chooseBackupSource([], 'node1', MAX_LAG), null);
  });
});

// ------------------------------------------------------------------ restore SQL

void describe('passwordResetSql', () => {
  /** Checks that `verifier` is a SCRAM-SHA-256 verifier of `password` (recomputed with its salt and iterations). */
  function assertVerifies(verifier: string, password: string): void {
    const match = /^SCRAM-SHA-256\$(\d+):([A-Za-z0-9+/=]+)\$/.exec(verifier);
    assert.ok(match, verifier);
    assert.equal(scramSha256Verifier(password, { iterations: Number(match[1]), salt: Buffer.from(match[2]!, 'base64') }), verifier);
  }

  void it('sets both roles with SCRAM verifiers of their passwords, one DO block per role, never the passwords', () => {
    const secrets = clusterSecrets();
    const sql = passwordResetSql(secrets);
    const lines = sql.split('\n');
    assert.equal(lines.length, 3);
    assert.equal(lines[2], '', 'ends with a newline (single-user mode runs a line at a time)');
    for (const [line, role, password, attributes] of [
      [lines[0]!, secrets.superuser.name, secrets.superuser.password, 'LOGIN SUPERUSER'],
      [lines[1]!, secrets.replication.name, secrets.replication.password, 'LOGIN REPLICATION'],
    ] as const) {
      assert.match(line, /^DO \$pgpilot\$ BEGIN IF EXISTS \(SELECT 1 FROM pg_roles WHERE rolname = '[^']+'\) THEN ALTER ROLE "[^"]+" WITH .* END IF; END \$pgpilot\$;$/);
      assert.ok(line.includes(`rolname = '${role}'`));
      assert.ok(line.includes(`ALTER ROLE "${role}" WITH ${attributes} PASSWORD 'SCRAM-SHA-256$`));
      assert.ok(line.includes(`ELSE CREATE ROLE "${role}" WITH ${attributes} PASSWORD 'SCRAM-SHA-256$`));
      const verifiers = [...line.matchAll(/PASSWORD '([^']+)'/g)].map((m) => m[1]!);
      assert.equal(verifiers.length, 2);
      assert.equal(verifiers[0], verifiers[1]);
      assertVerifies(verifiers[0]!, password);
    }
    assert.ok(!sql.includes(secrets.superuser.password));
    assert.ok(!sql.includes(secrets.replication.password));
    assert.ok(!sql.includes(secrets.apiToken));
  });

  void it('quotes awkward role names as identifiers and literals', () => {
    const secrets: ClusterSecrets = clusterSecretsSchema.parse({
      superuser: { name: `o'neil "admin"`, password: "pass'word-0123456789" },
      replication: { name: 'Repl User', password: 'replication-password-0123456789' },
      apiToken: 'a'.repeat(40),
    });
    const [su, repl] = passwordResetSql(secrets).split('\n');
    assert.ok(su!.includes(`rolname = 'o''neil "admin"'`), su);
    assert.ok(su!.includes(`ALTER ROLE "o'neil ""admin""" WITH LOGIN SUPERUSER`), su);
    assert.ok(su!.includes(`CREATE ROLE "o'neil ""admin""" WITH LOGIN SUPERUSER`), su);
    assert.ok(!su!.includes("pass'word"));
    assert.ok(repl!.includes(`rolname = 'Repl User'`) && repl!.includes('ALTER ROLE "Repl User" WITH LOGIN REPLICATION'), repl);
  });
});

// ------------------------------------------------------------------ backup config / list

void describe('applyBackupUpdates', () => {
  const current = defaultBackupSettings();

  void it('applies nothing for no flags, and never mutates the current settings', () => {
    assert.deepEqual(applyBackupUpdates(current, {}), { schedule: '0 3 * * *', keepDaily: 7, keepWeekly: 4, keepDays: null });
    applyBackupUpdates(current, { schedule: 'off', keepDaily: 1, keepDays: '3' });
    assert.deepEqual(current, { schedule: '0 3 * * *', keepDaily: 7, keepWeekly: 4, keepDays: null });
  });

  void it('schedule: "off" disables, a cron is normalized, an invalid cron is INPUT_INVALID', () => {
    assert.equal(applyBackupUpdates(current, { schedule: 'off' }).schedule, null);
    assert.equal(applyBackupUpdates(current, { schedule: '  30   2 * * 0 ' }).schedule, '30 2 * * 0');
    for (const schedule of ['0 3 * *', 'daily', '@daily', '0 3 * * * *', '61 3 * * *', 'OFF']) {
      assert.throws(() => applyBackupUpdates(current, { schedule }), hasCode('INPUT_INVALID', /invalid backup schedule/), schedule);
    }
  });

  void it('keepDays: "off" -> null, digits -> days, anything else or 0 is INPUT_INVALID', () => {
    assert.equal(applyBackupUpdates({ ...current, keepDays: 30 }, { keepDays: 'off' }).keepDays, null);
    assert.equal(applyBackupUpdates(current, { keepDays: '14' }).keepDays, 14);
    for (const keepDays of ['x', '1.5', '-1', '', ' 14', '14d']) {
      assert.throws(() => applyBackupUpdates(current, { keepDays }), hasCode('INPUT_INVALID', /--keep-days must be a number of days or "off"/), JSON.stringify(keepDays));
    }
    assert.throws(() => applyBackupUpdates(current, { keepDays: '0' }), hasCode('INPUT_INVALID', /--keep-days must be at least 1/));
  });

  void it('keepDaily / keepWeekly: whole numbers >= 0, naming the flag', () => {
    assert.deepEqual(applyBackupUpdates(current, { keepDaily: 0, keepWeekly: 12 }), { schedule: '0 3 * * *', keepDaily: 0, keepWeekly: 12, keepDays: null });
    assert.throws(() => applyBackupUpdates(current, { keepDaily: -1 }), hasCode('INPUT_INVALID', /--keep-daily must be a whole number >= 0/));
    assert.throws(() => applyBackupUpdates(current, { keepWeekly: 1.5 }), hasCode('INPUT_INVALID', /--keep-weekly must be a whole number >= 0/));
  });

  void it(
    'refuses values the dynamic config schema rejects (the written config would be unreadable)',
    () => {
      assert.throws(() => applyBackupUpdates(current, { keepDaily: 5000 }), hasCode('INPUT_INVALID'));
      assert.throws(() => applyBackupUpdates(current, { keepWeekly: 1000 }), hasCode('INPUT_INVALID'));
      assert.throws(() => applyBackupUpdates(current, { keepDays: '99999' }), hasCode('INPUT_INVALID'));
    },
  );
});

void describe('withEnvCredentials', () => {
  const s3 = parseStoreUrl('s3://backups/shop?endpoint=http://127.0.0.1:9000');

  void it('leaves a directory store unchanged whatever the environment', () => {
    const fs = parseStoreUrl('/var/backups/pgpilot');
    assert.equal(withEnvCredentials(fs, { AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE', AWS_SECRET_ACCESS_KEY: 'secret' }), fs);
    assert.deepEqual(fs, { kind: 'fs', rootDir: '/var/backups/pgpilot' });
  });

  void it('adds S3 credentials only when both key and secret are set (and the session token when set)', () => {
    assert.ok(s3.kind === 's3');
    const both = withEnvCredentials(s3, { AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE', AWS_SECRET_ACCESS_KEY: 'wJalrXUtnFEMI' });
    assert.deepEqual(both, { ...s3, credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI' } });
    const token = withEnvCredentials(s3, { AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE', AWS_SECRET_ACCESS_KEY: 'wJalrXUtnFEMI', AWS_SESSION_TOKEN: 'FwoGZX' });
    assert.deepEqual((token as Extract<StoreConfig, { kind: 's3' }>).credentials, { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI', sessionToken: 'FwoGZX' });
    const emptyToken = withEnvCredentials(s3, { AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE', AWS_SECRET_ACCESS_KEY: 'wJalrXUtnFEMI', AWS_SESSION_TOKEN: '' });
    assert.deepEqual((emptyToken as Extract<StoreConfig, { kind: 's3' }>).credentials, { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI' });
    for (const env of [{}, { AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE' }, { AWS_SECRET_ACCESS_KEY: 'x' }, { AWS_ACCESS_KEY_ID: '', AWS_SECRET_ACCESS_KEY: 'x' }, { AWS_SESSION_TOKEN: 't' }]) {
      assert.deepEqual(withEnvCredentials(s3, env), s3, JSON.stringify(env));
    }
    assert.equal((s3 as { credentials?: unknown }).credentials, undefined, 'the input is not mutated');
  });
});

function backupRecord(fields: { started: string; status: BackupRecord['status']; finished?: string; sizeBytes?: number }): BackupRecord {
  const complete = fields.status === 'complete';
  const sizeBytes = complete ? (fields.sizeBytes ?? 1024) : 0;
  return backupRecordSchema.parse({
    version: 1,
    id: newBackupId(Date.parse(fields.started)),
    cluster: 'shop',
    systemIdentifier: '7321456789012345678',
    status: fields.status,
    kind: fields.status === 'running' ? 'manual' : 'scheduled',
    sourceNode: complete ? 'node2' : 'node1',
    sourceRole: complete ? 'replica' : 'primary',
    startedAt: fields.started,
    finishedAt: fields.finished ?? null,
    startLsn: complete ? '0/3000028' : null,
    stopLsn: complete ? '0/3000100' : null,
    timeline: complete ? 2 : null,
    pgVersion: '15.4',
    sizeBytes,
    files: complete ? [{ name: 'base.tar.gz', sizeBytes, sha256: 'c'.repeat(64), rawSizeBytes: sizeBytes }] : [],
  });
}

void describe('renderBackups', () => {
  void it('says so when there is nothing', () => {
    assert.equal(renderBackups([]), 'no backups yet');
  });

  void it('renders a header and one row per record, with "-" for what a record does not have', () => {
    const records = [
      backupRecord({ started: '2026-11-25T03:00:00.000Z', status: 'complete', finished: '2026-11-25T03:12:30.456Z', sizeBytes: 1572864 }),
      backupRecord({ started: '2026-11-26T03:00:00.000Z', status: 'failed', finished: '2026-11-26T03:01:00.000Z' }),
      backupRecord({ started: '2026-11-26T09:15:00.000Z', status: 'running' }),
    ];
    const lines = renderBackups(records).split('\n');
    assert.equal(lines.length, 4);
    const cells = lines.map((line) => line.split(/ {2,}/));
    assert.deepEqual(cells[0], ['ID', 'STATUS', 'KIND', 'STARTED', 'FINISHED', 'TL', 'START LSN', 'STOP LSN', 'SIZE', 'SOURCE']);
    assert.deepEqual(cells[1], ['20261125T030000Z', 'complete', 'scheduled', '2026-11-25T03:00:00Z', '2026-11-25T03:12:30Z', '2', '0/3000028', '0/3000100', '1.5 MiB', 'node2 (replica)']);
    assert.deepEqual(cells[2], ['20261126T030000Z', 'failed', 'scheduled', '2026-11-26T03:00:00Z', '2026-11-26T03:01:00Z', '-', '-', '-', '-', 'node1 (primary)']);
    assert.deepEqual(cells[3], ['20261126T091500Z', 'running', 'manual', '2026-11-26T09:15:00Z', '-', '-', '-', '-', '-', 'node1 (primary)']);
    // Columns line up: every row's STATUS starts where the header's does.
    const statusColumn = lines[0]!.indexOf('STATUS');
    for (const line of lines.slice(1)) assert.match(line.slice(statusColumn), /^(complete|failed|running)/);
  });
});

// ------------------------------------------------------------------ archive status

void describe('archiveStatusOf / describeArchive', () => {
  const T1 = Date.parse('2026-11-26T07:00:00Z');
  const T2 = Date.parse('2026-11-26T07:05:00Z');
  const T3 = Date.parse('2026-11-26T07:06:00Z');

  function archive(overrides: Partial<ArchiveState> = {}): ArchiveState {
    return { archivedCount: 0, failedCount: 0, lastArchivedWal: null, lastArchivedAtMs: null, lastFailedWal: null, lastFailedAtMs: null, ...overrides };
  }

  const WAL7 = '000000010000000000000007';
  const WAL8 = '000000010000000000000008';
  const WAL9 = '000000010000000000000009';

  function members(archives: [ArchiveState | null | undefined, ArchiveState | null | undefined, ArchiveState | null | undefined]): MemberRecord[] {
    const withArchive = (record: MemberRecord, state: ArchiveState | null | undefined): MemberRecord => (state === undefined ? record : { ...record, archive: state });
    return [
      withArchive(primaryRecord({ name: 'node1' }), archives[0]),
      withArchive(memberRecord({ name: 'node2', following: 'node1' }), archives[1]),
      withArchive(memberRecord({ name: 'node3', following: 'node1' }), archives[2]),
    ];
  }

  function statusOf(records: MemberRecord[], alive: string[] = ['node1', 'node2', 'node3']): ReturnType<typeof buildClusterStatus> {
    const pids = new Map(records.filter((r) => alive.includes(r.name)).map((r) => [r.name, r.pid]));
    return buildClusterStatus({ topology: localTopology(clusterManifest({ nodes: 3 })), secrets: clusterSecrets(), etcd: 'running', leader: 'node1', members: records, syncMode: 'off', aliveAgents: pids });
  }

  void it('unknown without any report', () => {
    const unknown = { state: 'unknown', lastArchivedWal: null, lastArchivedAt: null, failing: [] };
    assert.deepEqual(archiveStatusOf([]), unknown);
    assert.deepEqual(archiveStatusOf(members([undefined, null, undefined])), unknown);
    assert.equal(describeArchive(statusOf(members([undefined, null, undefined]))), 'unknown (no member reports)');
  });

  void it('idle while nothing was archived', () => {
    const records = members([archive(), archive(), undefined]);
    assert.deepEqual(archiveStatusOf(records), { state: 'idle', lastArchivedWal: null, lastArchivedAt: null, failing: [] });
    assert.equal(describeArchive(statusOf(records)), 'ok, nothing archived yet');
  });

  void it('ok with the newest archived file over all members', () => {
    const records = members([archive({ archivedCount: 7, lastArchivedWal: WAL7, lastArchivedAtMs: T1 }), archive({ archivedCount: 8, lastArchivedWal: WAL8, lastArchivedAtMs: T2 }), null]);
    assert.deepEqual(archiveStatusOf(records), { state: 'ok', lastArchivedWal: WAL8, lastArchivedAt: '2026-11-26T07:05:00.000Z', failing: [] });
    assert.equal(describeArchive(statusOf(records)), `ok, last ${WAL8} at 2026-11-26T07:05:00.000Z`);
  });

  void it('failing when a member\'s newest attempt failed; not for an older failure followed by a success', () => {
    const recovered = archive({ archivedCount: 8, failedCount: 3, lastArchivedWal: WAL8, lastArchivedAtMs: T2, lastFailedWal: WAL7, lastFailedAtMs: T1 });
    const failing = archive({ archivedCount: 7, failedCount: 12, lastArchivedWal: WAL7, lastArchivedAtMs: T1, lastFailedWal: WAL9, lastFailedAtMs: T3 });
    assert.equal(archiveStatusOf(members([recovered, undefined, undefined])).state, 'ok');

    const records = members([recovered, failing, undefined]);
    assert.deepEqual(archiveStatusOf(records), {
      state: 'failing',
      lastArchivedWal: WAL8,
      lastArchivedAt: '2026-11-26T07:05:00.000Z',
      failing: [{ node: 'node2', wal: WAL9, since: '2026-11-26T07:06:00.000Z', failedCount: 12 }],
    });
    assert.equal(
      describeArchive(statusOf(records)),
      `FAILING on node2 (WAL ${WAL9}, 12 failed attempts, last 2026-11-26T07:06:00.000Z); last ${WAL8} at 2026-11-26T07:05:00.000Z. Check the backup store (pgpilot backup config demo) and postgres.log`,
    );
  });

  void it('failing when a member never archived anything but failed', () => {
    const records = members([archive({ failedCount: 2, lastFailedWal: WAL7, lastFailedAtMs: T1 }), archive(), undefined]);
    assert.deepEqual(archiveStatusOf(records), {
      state: 'failing',
      lastArchivedWal: null,
      lastArchivedAt: null,
      failing: [{ node: 'node1', wal: WAL7, since: '2026-11-26T07:00:00.000Z', failedCount: 2 }],
    });
    assert.equal(describeArchive(statusOf(records)), `FAILING on node1 (WAL ${WAL7}, 2 failed attempts, last 2026-11-26T07:00:00.000Z); nothing archived yet. Check the backup store (pgpilot backup config demo) and postgres.log`);
  });

  void it('ignores the record of a member whose agent is not running (status)', () => {
    const failing = archive({ failedCount: 12, lastFailedWal: WAL9, lastFailedAtMs: T3 });
    const records = members([archive({ lastArchivedWal: WAL8, lastArchivedAtMs: T2 }), failing, undefined]);
    assert.equal(describeArchive(statusOf(records, ['node1', 'node3'])), `ok, last ${WAL8} at 2026-11-26T07:05:00.000Z`);
    assert.match(describeArchive(statusOf(records)), /^FAILING on node2 /);
  });
});

// ------------------------------------------------------------------ external binaries

void describe('pg_basebackup (tar backups)', () => {
  const options = { targetDir: '/w/backup-20261126T030000Z/data', host: '127.0.0.1', port: 5433, user: 'replicator', label: 'pgpilot backup 20261126T030000Z' };

  void it('copies to gzip tar files with a SHA-256 manifest and streamed WAL, never prompting', () => {
    assert.deepEqual(tarBackupArgs(options), [
      '-D',
      '/w/backup-20261126T030000Z/data',
      '-h',
      '127.0.0.1',
      '-p',
      '5433',
      '-U',
      'replicator',
      '--wal-method=stream',
      '--checkpoint=fast',
      '--no-password',
      '--format=tar',
      '--gzip',
      '--manifest-checksums=SHA256',
      '--progress',
      '--label=pgpilot backup 20261126T030000Z',
    ]);
  });

  void it('carries no password and rejects a bad port', () => {
    const args = tarBackupArgs(options);
    assert.ok(!args.some((a) => /password=|^-W$|^--password$|^-d$|^--dbname/.test(a)), args.join(' '));
    assert.throws(() => tarBackupArgs({ ...options, port: 0 }), hasCode('INPUT_INVALID'));
  });

  void it('parses progress reports', () => {
    assert.deepEqual(parseBasebackupProgress('  1234/5678 kB (21%), 0/1 tablespace'), { doneKb: 1234, totalKb: 5678, percent: 21 });
    assert.deepEqual(parseBasebackupProgress('5678/5678 kB (100%), 1/1 tablespace'), { doneKb: 5678, totalKb: 5678, percent: 100 });
    assert.deepEqual(parseBasebackupProgress('     0/23456 kB (0%), 0/1 tablespace (...global/pg_control)'), { doneKb: 0, totalKb: 23456, percent: 0 });
    for (const line of ['', 'pg_basebackup: initiating base backup, waiting for checkpoint to complete', 'pg_basebackup: base backup completed', '12 kB']) {
      assert.equal(parseBasebackupProgress(line), null, line);
    }
  });
});

void describe('pg_verifybackup', () => {
  void it('runs against the manifest and WAL directory', () => {
    assert.deepEqual(verifybackupArgs({ backupDir: '/s/data', manifestPath: '/s/backup_manifest', walDir: '/s/pg_wal' }), [
      '--manifest-path',
      '/s/backup_manifest',
      '--wal-directory',
      '/s/pg_wal',
      '/s/data',
    ]);
  });

  void it('turns pg_verifybackup 15 stderr into problem lines', () => {
    const stderr = [
      'pg_verifybackup: error: "base/1/1234" has size 8192 on disk but size 0 in the manifest',
      'pg_verifybackup: error: checksum mismatch for file "global/pg_control"',
      'pg_verifybackup: error: "base/5/16384" is present on disk but not in the manifest',
      'pg_waldump: error: could not find file "000000010000000000000003": No such file or directory',
      'pg_verifybackup: error: WAL parsing failed for timeline 1',
      '',
    ].join('\n');
    assert.deepEqual(parseVerifybackupOutput(stderr), [
      '"base/1/1234" has size 8192 on disk but size 0 in the manifest',
      'checksum mismatch for file "global/pg_control"',
      '"base/5/16384" is present on disk but not in the manifest',
      'pg_waldump: error: could not find file "000000010000000000000003": No such file or directory',
      'WAL parsing failed for timeline 1',
    ]);
  });

  void it('drops the success line and blank lines, and keeps at most 20 problems', () => {
    assert.deepEqual(parseVerifybackupOutput('backup successfully verified\n\n'), []);
    const many = Array.from({ length: 25 }, (_, i) => `pg_verifybackup: error: "base/1/${i}" is present on disk but not in the manifest`).join('\n');
    const problems = parseVerifybackupOutput(many);
    assert.equal(problems.length, 20);
    assert.equal(problems[0], '"base/1/0" is present on disk but not in the manifest');
    assert.equal(problems[19], '"base/1/19" is present on disk but not in the manifest');
  });
});

void describe('tar', () => {
  void it('extracts gzip archives without the recorded owners', () => {
    assert.deepEqual(extractArgs('/stage/base.tar.gz', '/data/pgdata'), ['--extract', '--gzip', '--no-same-owner', '--file', '/stage/base.tar.gz', '--directory', '/data/pgdata']);
  });
});

// ------------------------------------------------------------------ store layout

void describe('storeLayout / walFileNameOfKey', () => {
  const layout = storeLayout('shop');

  void it('builds every key under the cluster prefix', () => {
    assert.equal(layout.cluster, 'shop');
    assert.equal(layout.walPrefix, 'shop/wal/');
    assert.equal(layout.walKey('000000010000000000000003'), 'shop/wal/000000010000000000000003.gz');
    assert.equal(layout.walKey('00000002.history'), 'shop/wal/00000002.history.gz');
    assert.equal(layout.backupsPrefix, 'shop/basebackups/');
    assert.equal(layout.backupPrefix('20261126T030000Z'), 'shop/basebackups/20261126T030000Z/');
    assert.equal(layout.backupRecordKey('20261126T030000Z'), 'shop/basebackups/20261126T030000Z/backup.json');
    assert.equal(layout.backupFileKey('20261126T030000Z', 'base.tar.gz'), 'shop/basebackups/20261126T030000Z/base.tar.gz');
  });

  void it('reads WAL file names back from archive keys only', () => {
    assert.equal(walFileNameOfKey(layout, 'shop/wal/000000010000000000000003.gz'), '000000010000000000000003');
    assert.equal(walFileNameOfKey(layout, 'shop/wal/000000010000000000000005.partial.gz'), '000000010000000000000005.partial');
    assert.equal(walFileNameOfKey(layout, 'shop/wal/00000002.history.gz'), '00000002.history');
    for (const key of [
      'shop/wal/000000010000000000000003.gz.conflict-0123456789abcdef',
      'shop/wal/000000010000000000000003.conflict-0123456789abcdef.gz',
      'shop/wal/000000010000000000000003',
      'shop/wal/.gz',
      'shop/wal/sub/000000010000000000000003.gz',
      'blog/wal/000000010000000000000003.gz',
      'shop/basebackups/20261126T030000Z/base.tar.gz',
      'shop/000000010000000000000003.gz',
    ]) {
      assert.equal(walFileNameOfKey(layout, key), null, key);
    }
  });

  void it('rejects an invalid cluster name', () => {
    for (const cluster of ['', 'Shop', '../shop', 'shop/wal', '1shop', 'a'.repeat(33), 'shop_1']) {
      assert.throws(() => storeLayout(cluster), hasCode('INPUT_INVALID', /invalid cluster name/), JSON.stringify(cluster));
    }
    assert.equal(storeLayout('a-1').walPrefix, 'a-1/wal/');
  });
});
