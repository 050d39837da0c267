/**
 * `pgpilot backup ...`: the subcommands and their help, wired to src/cli/commands/backup.ts.
 */
import type { Command } from 'commander';
import type { ContextOption, HomeOption, ProgramContext } from './program-helpers.js';
import { SystemClock } from '../shared/clock.js';
import { PgpilotError } from '../shared/errors.js';
import { resolveHome } from '../providers/local/paths.js';
import * as backup from './commands/backup.js';
import { refuseRemote } from '../cluster/require-local.js';



/**
 * Backups are taken and read by this machine from the cluster's store for now (issue 18: an
 * agent's REST route later): a cluster reached through a context is refused with LOCAL_ONLY.
 */
async function localTarget(opts: HomeOption & ContextOption, name: string, command: string): Promise<backup.BackupTarget> {
  const home = resolveHome(opts.home);
  await refuseRemote({ name, home, context: opts.context }, `pgpilot ${command}`);
  return backup.targetFromCluster(home, name);
}

export function registerBackupCommands(program: Command, ctx: ProgramContext): void {
  const { wrap, homeOption, contextOption, examples, parseInteger, output } = ctx;
  const group = program
    .command('backup')
    .description('base backups, the continuous WAL archive, verification and point-in-time restore')
    .addHelpText(
      'after',
      examples('pgpilot backup create demo', 'pgpilot backup list demo', 'pgpilot backup verify demo 20261126T030000Z', 'pgpilot backup config demo --schedule "0 3 * * *" --keep-daily 7', 'pgpilot backup restore demo'),
    );

  group
    .command('create')
    .description('take a base backup now (from a healthy replica, else the leader), with progress on stderr')
    .argument('[name]', 'cluster name')
    .option('--json', 'print the backup record as JSON')
    .option('--agent-config <file>', 'run for the node whose agent config this is (used by the agent schedule)')
    .option('--scheduled', 'record the backup as scheduled (used by the agent schedule)')
    .addOption(homeOption())
    .addOption(contextOption())
    .addHelpText('after', examples('pgpilot backup create demo', 'pgpilot backup create demo --json | jq .id'))
    .action(
      wrap(async (name: string | undefined, opts: HomeOption & ContextOption & { json?: boolean; agentConfig?: string; scheduled?: boolean }) => {
        const target = opts.agentConfig !== undefined ? backup.targetFromAgentConfig(opts.agentConfig) : await localTarget(opts, requireName(name), 'backup create');
        return backup.runCreate(target, { json: opts.json === true, scheduled: opts.scheduled === true }, output, new SystemClock());
      }),
    );

  group
    .command('list')
    .description('list base backups (id, status, start/stop time and LSN, timeline, size) and the WAL archive')
    .argument('<name>', 'cluster name')
    .option('--json', 'print JSON')
    .addOption(homeOption())
    .addOption(contextOption())
    .addHelpText('after', examples('pgpilot backup list demo', 'pgpilot backup list demo --json | jq ".backups[-1].id"'))
    .action(wrap(async (name: string, opts: HomeOption & ContextOption & { json?: boolean }) => backup.runList(await localTarget(opts, name, 'backup list'), { json: opts.json === true }, output)));

  group
    .command('verify')
    .description('check a backup: every stored file against its checksum, then pg_verifybackup on an unpacked copy (data files and the WAL it needs)')
    .argument('<name>', 'cluster name')
    .argument('<id>', 'backup id (see backup list)')
    .option('--json', 'print JSON')
    .addOption(homeOption())
    .addOption(contextOption())
    .addHelpText('after', examples('pgpilot backup verify demo 20261126T030000Z'))
    .action(
      wrap(async (name: string, id: string, opts: HomeOption & ContextOption & { json?: boolean }) =>
        backup.runVerify(await localTarget(opts, name, 'backup verify'), { id, json: opts.json === true }, output),
      ),
    );

  group
    .command('config')
    .description('show or change the backup schedule, retention and store')
    .argument('<name>', 'cluster name')
    .option('--schedule <cron>', 'cron expression in UTC (5 fields), or "off"')
    .option('--keep-daily <n>', 'keep the newest backup of each of the last N days', parseInteger('--keep-daily'))
    .option('--keep-weekly <n>', 'keep the newest backup of each of the last N ISO weeks', parseInteger('--keep-weekly'))
    .option('--keep-days <n>', 'keep every backup younger than N days, or "off"')
    .option('--store <url>', 'where backups and WAL go: /abs/path, file:///abs/path or s3://bucket/prefix?endpoint=...; S3 credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY')
    .option('--json', 'print JSON')
    .addOption(homeOption())
    .addOption(contextOption())
    .addHelpText(
      'after',
      examples(
        'pgpilot backup config demo',
        'pgpilot backup config demo --schedule "30 2 * * *" --keep-daily 14 --keep-weekly 8',
        'pgpilot backup config demo --schedule off',
        'AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... pgpilot backup config demo --store "s3://backups/pg?endpoint=http://127.0.0.1:9000"',
      ),
    )
    .action(
      wrap(async (name: string, opts: HomeOption & ContextOption & backup.BackupConfigUpdates & { json?: boolean }) => {
        const { home, context, json, ...updates } = opts;
        await refuseRemote({ name, home: resolveHome(home), context }, 'pgpilot backup config');
        return backup.runConfig({ home: resolveHome(home), name, json: json === true, updates }, output, new SystemClock());
      }),
    );

  group
    .command('restore')
    .description('explain how to restore: a restore creates a NEW cluster (pgpilot create NEW --from-backup NAME)')
    .argument('<name>', 'cluster name')
    .addOption(homeOption())
    .addOption(contextOption())
    .addHelpText('after', examples('pgpilot backup restore demo', 'pgpilot create demo-restored --from-backup demo --target-time 2026-11-26T07:30:00Z'))
    .action(
      wrap(async (name: string, opts: HomeOption & ContextOption) => {
        await refuseRemote({ name, home: resolveHome(opts.home), context: opts.context }, 'pgpilot backup restore');
        return backup.runRestoreHelp({ home: resolveHome(opts.home), name }, output);
      }),
    );
}

function requireName(name: string | undefined): string {
  if (name === undefined) {
    throw new PgpilotError('INPUT_INVALID', 'missing cluster name', { hint: 'pgpilot backup create NAME', exitCode: 2 });
  }
  return name;
}
