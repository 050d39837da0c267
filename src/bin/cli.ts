/**
 * Entry point of `bin/pgpilot`: parses argv with commander, resolves the home directory, calls
 * one command module and maps its result or error to an exit code (message + hint, never a stack).
 */
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError, Option } from 'commander';
import { SystemClock } from '../shared/clock.js';
import { PgpilotError } from '../shared/errors.js';
import { PGPILOT_VERSION } from '../shared/version.js';
import { resolveHome } from '../providers/local/paths.js';
import type { ProviderDeps } from '../providers/local/local-provider.js';
import { reportError, type Output } from '../cli/output.js';
import { quietIpServernameWarning } from '../shared/warnings.js';
import * as createCommand from '../cli/commands/create.js';
import * as statusCommand from '../cli/commands/status.js';
import * as listCommand from '../cli/commands/list.js';
import * as destroyCommand from '../cli/commands/destroy.js';
import * as connectCommand from '../cli/commands/connect.js';
import * as agentCommand from '../cli/commands/agent.js';
import * as switchoverCommand from '../cli/commands/switchover.js';
import * as eventsCommand from '../cli/commands/events.js';
import * as configCommand from '../cli/commands/config.js';
import type { ConfigUpdates } from '../cli/commands/config.js';
import * as watchdogCommand from '../cli/commands/watchdog.js';
import * as restartCommand from '../cli/commands/restart.js';
import * as haproxyConfigCommand from '../cli/commands/haproxy-config.js';
import * as monitoringCommand from '../cli/commands/monitoring.js';
import { runStart, runStop } from '../cli/commands/start-stop.js';
import { registerBackupCommands } from '../cli/register-backup-commands.js';
import { contextOption, examples, homeOption, makeWrap, output, parseInteger, type ContextOption, type HomeOption, type Wrap } from '../cli/program-helpers.js';
import { registerAppCommands } from '../cli/register-app-commands.js';
import { registerOperateCommands } from '../cli/register-operate-commands.js';
import { registerTuningCommands } from '../cli/register-tuning-commands.js';
import { registerClusterCommands } from '../cli/register-cluster-commands.js';
import { registerNodeCommands } from '../cli/register-node-commands.js';
import { registerClusterContextCommand } from '../cli/register-cluster-context-command.js';
import * as configParameters from '../cli/commands/config-parameters.js';
import * as certsCommand from '../cli/commands/certs.js';
import * as configRepair from '../cli/commands/config-repair.js';

function providerDeps(): ProviderDeps {
  return {
    clock: new SystemClock(),
    progress: (line) => output.err(line),
    cliEntry: fileURLToPath(import.meta.url),
  };
}

/**
 * What a test may replace (test/fuzz/cli.test.ts): the command bodies (`wrap`: a stub that never
 * runs them), the output, and where commander writes its own messages.
 */
export interface ProgramSeams {
  wrap?: Wrap;
  output?: Output;
  writeOut?: (text: string) => void;
  writeErr?: (text: string) => void;
}

export function buildProgram(setExitCode: (code: number) => void, seams: ProgramSeams = {}): Command {
  const out = seams.output ?? output;
  const program = new Command('pgpilot')
    .description('Automated PostgreSQL clusters: streaming replication, automatic failover, one CLI.')
    .version(PGPILOT_VERSION, '-v, --version')
    .showSuggestionAfterError(true)
    .configureOutput({ writeErr: seams.writeErr ?? ((text) => process.stderr.write(text)), writeOut: seams.writeOut ?? ((text) => process.stdout.write(text)) })
    .exitOverride()
    .addHelpText('after', examples('pgpilot create demo', 'pgpilot status demo', 'pgpilot connect demo', 'pgpilot destroy demo --yes'));

  const wrap = seams.wrap ?? makeWrap(setExitCode, out);

  program
    .command('create')
    .description('create a local cluster (etcd + N nodes) and wait until it is ready')
    .argument('<name>', 'cluster name (lower-case letters, digits, dashes)')
    .option('-n, --nodes <count>', 'number of nodes, 1-9 (1 is for development only)', parseInteger('--nodes'), 3)
    .addOption(homeOption())
    .addOption(contextOption())
    .option('--bin-dir <dir>', 'PostgreSQL 15 binaries (default: /usr/lib/postgresql/15/bin)')
    .option('--timeout <seconds>', 'how long to wait for the cluster to be ready', parseInteger('--timeout'), 180)
    .option('--json', 'print the final status as JSON (no passwords unless --show-secrets)')
    .option('--show-secrets', 'with --json: put the superuser password in the connection strings (omitted by default)')
    .option('--from-backup <cluster>', 'restore: start from a base backup of this cluster and its WAL archive (the source is not changed)')
    .option('--backup <id>', 'restore: this base backup (default: the newest one consistent before the target)')
    .option('--target-time <time>', 'restore: recover up to this time (ISO 8601 with a timezone), then promote')
    .option('--target-lsn <lsn>', 'restore: recover up to this WAL position, then promote')
    .option('--backup-store <url>', "restore: read the source's backups from this store (e.g. the S3 store of a destroyed cluster)")
    .addHelpText(
      'after',
      examples(
        'pgpilot create demo',
        'pgpilot create dev --nodes 1',
        'pgpilot create demo --home /srv/pgpilot --json',
        'pgpilot create demo2 --from-backup demo',
        'pgpilot create demo2 --from-backup demo --target-time "2026-11-26T07:30:00Z"',
        'pgpilot create demo2 --from-backup demo --backup 20261126T030000Z --target-lsn 0/5000060',
      ),
    )
    .action(
      wrap(
        async (
          name: string,
          opts: HomeOption & ContextOption & { nodes: number; binDir?: string; timeout: number; json?: boolean; showSecrets?: boolean; fromBackup?: string; backup?: string; targetTime?: string; targetLsn?: string; backupStore?: string },
        ) => {
          if (opts.fromBackup === undefined && [opts.backup, opts.targetTime, opts.targetLsn, opts.backupStore].some((v) => v !== undefined)) {
            throw new PgpilotError('INPUT_INVALID', '--backup, --target-time, --target-lsn and --backup-store need --from-backup', {
              hint: `pgpilot create ${name} --from-backup SOURCE [--target-time T]`,
              exitCode: 2,
            });
          }
          const restore =
            opts.fromBackup === undefined
              ? undefined
              : { fromBackup: opts.fromBackup, backupId: opts.backup, targetTime: opts.targetTime, targetLsn: opts.targetLsn, backupStore: opts.backupStore };
          return createCommand.run(
            { home: resolveHome(opts.home), context: opts.context, name, nodes: opts.nodes, binDir: opts.binDir, timeoutSeconds: opts.timeout, json: opts.json === true, showSecrets: opts.showSecrets === true, ...(restore === undefined ? {} : { restore }) },
            providerDeps(),
            output,
          );
        },
      ),
    );

  program
    .command('list')
    .description('list the clusters in the home directory')
    .addOption(homeOption())
    .option('--json', 'print JSON')
    .addHelpText('after', examples('pgpilot list', 'pgpilot list --json'))
    .action(wrap(async (opts: HomeOption & { json?: boolean }) => listCommand.run({ home: resolveHome(opts.home), json: opts.json === true }, output)));

  program
    .command('status')
    .description('show roles, lag and connection strings of a cluster')
    .argument('<name>', 'cluster name')
    .addOption(homeOption())
    .addOption(contextOption())
    .option('--json', 'print the status contract as JSON (connection strings without the password)')
    .option('--show-secrets', 'put the superuser password in the connection strings (JSON and table)')
    .addHelpText('after', examples('pgpilot status demo', 'pgpilot status demo --json | jq .leader', 'pgpilot status demo --json --show-secrets | jq -r .connectionString', 'pgpilot status demo --context demo.context.json   # a cluster on other hosts'))
    .action(
      wrap(async (name: string, opts: HomeOption & ContextOption & { json?: boolean; showSecrets?: boolean }) =>
        statusCommand.run({ home: resolveHome(opts.home), context: opts.context, name, json: opts.json === true, showSecrets: opts.showSecrets === true }, output),
      ),
    );

  program
    .command('connect')
    .description('open psql on the leader (default), a replica, or one node')
    .argument('<name>', 'cluster name')
    .argument('[psql-args...]', 'extra psql arguments, after --')
    .option('--replica', 'connect to a standby when one is running')
    .option('--node <node>', 'connect to this node whatever its role')
    .option('-d, --database <db>', 'database name', 'postgres')
    .option('-U, --user <user>', 'user name (default: the cluster superuser)')
    .addOption(homeOption())
    .addOption(contextOption())
    .addHelpText('after', examples('pgpilot connect demo', 'pgpilot connect demo --replica', 'pgpilot connect demo -- -c "select now()"', 'PGPILOT_CONTEXT=demo.context.json pgpilot connect demo'))
    .action(
      wrap(async (name: string, psqlArgs: string[], opts: HomeOption & ContextOption & { replica?: boolean; node?: string; database: string; user?: string }) =>
        connectCommand.run({
          home: resolveHome(opts.home),
          context: opts.context,
          name,
          replica: opts.replica === true,
          node: opts.node,
          database: opts.database,
          user: opts.user,
          psqlArgs,
        }),
      ),
    );

  program
    .command('stop')
    .description('stop every process of a cluster, keeping its data (replicas first, then the leader)')
    .argument('<name>', 'cluster name')
    .addOption(homeOption())
    .addOption(contextOption())
    .addHelpText('after', examples('pgpilot stop demo'))
    .action(wrap(async (name: string, opts: HomeOption & ContextOption) => runStop({ home: resolveHome(opts.home), context: opts.context, name }, providerDeps(), output)));

  program
    .command('start')
    .description('start a stopped cluster again (same roles, same data); safe to repeat')
    .argument('<name>', 'cluster name')
    .addOption(homeOption())
    .addOption(contextOption())
    .option('--timeout <seconds>', 'how long to wait for the cluster to be ready', parseInteger('--timeout'), 180)
    .option('--json', 'print the final status as JSON (no passwords unless --show-secrets)')
    .option('--show-secrets', 'with --json: put the superuser password in the connection strings (omitted by default)')
    .addHelpText('after', examples('pgpilot start demo'))
    .action(
      wrap(async (name: string, opts: HomeOption & ContextOption & { timeout: number; json?: boolean; showSecrets?: boolean }) =>
        runStart({ home: resolveHome(opts.home), context: opts.context, name, json: opts.json === true, showSecrets: opts.showSecrets === true, timeoutSeconds: opts.timeout }, providerDeps(), output),
      ),
    );

  program
    .command('destroy')
    .description('stop a cluster and delete it with all its data')
    .argument('<name>', 'cluster name')
    .option('-y, --yes', 'do not ask for confirmation')
    .addOption(homeOption())
    .addOption(contextOption())
    .addHelpText('after', examples('pgpilot destroy demo --yes'))
    .action(
      wrap(async (name: string, opts: HomeOption & ContextOption & { yes?: boolean }) =>
        destroyCommand.run({ home: resolveHome(opts.home), context: opts.context, name, yes: opts.yes === true }, providerDeps(), output),
      ),
    );

  for (const kind of ['switchover', 'failover'] as const) {
    const planned = kind === 'switchover';
    program
      .command(kind)
      .description(
        planned
          ? 'move the leader to a replica after it has caught up (no committed transaction is lost)'
          : 'force a replica to lead now, without waiting for it to catch up (asks for --yes)',
      )
      .argument('<name>', 'cluster name')
      .option('--to <node>', 'the node that should lead (default: the best replica)')
      .option('-y, --yes', planned ? 'accepted for symmetry; a switchover needs no confirmation' : 'confirm a forced failover')
      .option('--timeout <seconds>', 'how long to wait for the new leader', parseInteger('--timeout'), 60)
      .option('--json', 'print the resulting status as JSON')
      .addOption(homeOption())
    .addOption(contextOption())
      .addHelpText('after', planned ? examples('pgpilot switchover demo', 'pgpilot switchover demo --to node3', 'pgpilot switchover demo --to node3 --context demo.context.json') : examples('pgpilot failover demo --to node2 --yes'))
      .action(
        wrap(async (name: string, opts: HomeOption & ContextOption & { to?: string; yes?: boolean; timeout: number; json?: boolean }) =>
          switchoverCommand.run(
            { home: resolveHome(opts.home), context: opts.context, name, to: opts.to, kind, yes: opts.yes === true, json: opts.json === true, timeoutSeconds: opts.timeout },
            providerDeps(),
            output,
          ),
        ),
      );
  }

  program
    .command('restart')
    .description('rolling restart of postgres: replicas first, then a switchover, then the former leader')
    .argument('<name>', 'cluster name')
    .option('--node <node>', 'restart only this node, in its current role')
    .option('--timeout <seconds>', 'how long to wait for each node', parseInteger('--timeout'), 120)
    .addOption(homeOption())
    .addOption(contextOption())
    .addHelpText('after', examples('pgpilot restart demo', 'pgpilot restart demo --node node2'))
    .action(
      wrap(async (name: string, opts: HomeOption & ContextOption & { node?: string; timeout: number }) =>
        restartCommand.run({ home: resolveHome(opts.home), context: opts.context, name, node: opts.node, timeoutSeconds: opts.timeout }, providerDeps(), output),
      ),
    );

  const certsGroup = program
    .command('certs')
    .description("the cluster's TLS certificates: show them, or renew the node and client certificates with no downtime")
    .addHelpText('after', examples('pgpilot certs show demo', 'pgpilot certs show demo --json | jq -r .caFile', 'pgpilot certs rotate demo'));
  certsGroup
    .command('show')
    .description('print the CA, node, etcd and admin certificates: files, subjects, serials, expiry, SANs')
    .argument('<name>', 'cluster name')
    .option('--json', 'print JSON ({ caFile, adminCert, adminKey, etcdEndpoints, certificates })')
    .addOption(homeOption())
    .addOption(contextOption())
    .addHelpText('after', examples('pgpilot certs show demo', 'pgpilot certs show demo --json'))
    .action(wrap(async (name: string, opts: HomeOption & ContextOption & { json?: boolean }) => certsCommand.runShow({ home: resolveHome(opts.home), context: opts.context, name, json: opts.json === true }, output, Date.now())));
  certsGroup
    .command('rotate')
    .description('issue new node, etcd and admin certificates (same CA) and have every running node serve them; no restart, no dropped connection')
    .argument('<name>', 'cluster name')
    .option('--json', 'print the result as JSON')
    .addOption(homeOption())
    .addOption(contextOption())
    .addHelpText('after', examples('pgpilot certs rotate demo', 'pgpilot certs rotate demo --json'))
    .action(wrap(async (name: string, opts: HomeOption & ContextOption & { json?: boolean }) => certsCommand.runRotate({ home: resolveHome(opts.home), context: opts.context, name, json: opts.json === true }, providerDeps(), output)));

  const configGroup = program
    .command('config')
    .description('show or change the dynamic cluster config in etcd (sync mode, timing, failover lag limit, failsafe, postgres parameters)')
    .addHelpText('after', examples('pgpilot config show demo', 'pgpilot config update demo --synchronous quorum', 'pgpilot config update demo --set work_mem=16MB', 'pgpilot config repair demo'));
  configGroup
    .command('show')
    .description('print the dynamic cluster config')
    .argument('<name>', 'cluster name')
    .option('--json', 'print JSON')
    .addOption(homeOption())
    .addOption(contextOption())
    .addHelpText('after', examples('pgpilot config show demo', 'pgpilot config show demo --json | jq .synchronous'))
    .action(
      wrap(async (name: string, opts: HomeOption & ContextOption & { json?: boolean }) => configCommand.runShow({ home: resolveHome(opts.home), context: opts.context, name, json: opts.json === true }, output)),
    );
  configGroup
    .command('update')
    .description('change settings of the dynamic cluster config (validated as a whole; prints what changed); postgres parameters with --set are checked against pg_settings, then reloaded or applied with a rolling restart')
    .argument('<name>', 'cluster name')
    .option('--set <key=value>', 'a postgres parameter (or a pgpilot setting such as ttlSeconds); repeat for more', (value: string, previous: string[]) => [...previous, value], [] as string[])
    .option('--reset <key>', 'remove a postgres parameter override (the default applies again); repeat for more', (value: string, previous: string[]) => [...previous, value], [] as string[])
    .option('--yes', 'do not ask before a rolling restart')
    .option('--dry-run', 'with --set/--reset: print the plan and change nothing')
    .option('--timeout <seconds>', 'with --set/--reset: how long to wait for each member to restart', parseInteger('--timeout'), 120)
    .addOption(new Option('--synchronous <mode>', 'synchronous replication: off, or quorum (ANY k of the healthy replicas confirm each commit)').choices(['off', 'quorum']))
    .option('--synchronous-strict', 'sync mode: when no synchronous replica is left, writes block (no silent fall-back to async)')
    .option('--no-synchronous-strict', 'sync mode: when no synchronous replica is left, commit asynchronously (default)')
    .option('--synchronous-node-count <k>', 'sync mode: replicas that must confirm each commit (k in ANY k)', parseInteger('--synchronous-node-count'))
    .option('--ttl-seconds <n>', 'leader lease TTL', parseInteger('--ttl-seconds'))
    .option('--loop-wait-ms <n>', 'HA loop interval (less than half the TTL)', parseInteger('--loop-wait-ms'))
    .option('--maximum-lag-on-failover-bytes <n>', 'a replica further behind may not be promoted', parseInteger('--maximum-lag-on-failover-bytes'))
    .option('--failsafe', 'a leader that loses etcd keeps running while it reaches every member')
    .option('--no-failsafe', 'a leader that loses etcd fences at its lease deadline (default)')
    .option('--json', 'print the changes and the resulting config as JSON')
    .addOption(homeOption())
    .addOption(contextOption())
    .addHelpText(
      'after',
      examples(
        'pgpilot config update demo --synchronous quorum',
        'pgpilot config update demo --synchronous quorum --synchronous-node-count 2 --synchronous-strict',
        'pgpilot config update demo --synchronous off',
        'pgpilot config update demo --ttl-seconds 10 --loop-wait-ms 2000 --json',
        'pgpilot config update demo --set work_mem=16MB --set log_min_duration_statement=500ms',
        'pgpilot config update demo --set max_connections=200 --yes   # rolling restart: replicas, switchover, leader',
        'pgpilot config update demo --reset work_mem',
      ) + '\nContexts, rolling restarts and refused settings: docs/configuration.md.\n',
    )
    .action(
      wrap(
        async (name: string, opts: HomeOption & ContextOption & ConfigUpdates & { json?: boolean; set: string[]; reset: string[]; yes?: boolean; dryRun?: boolean; timeout: number }) => {
          // Every other option commander collected is one of the settings (ConfigUpdates).
          const { home, context, json, set, reset, yes, dryRun, timeout, ...updates } = opts;
          if (set.length > 0 || reset.length > 0 || dryRun === true) {
            return configParameters.runParameterUpdate(
              { home: resolveHome(home), context, name, set: set.map(configParameters.parseSetPair), reset, pgpilot: updates },
              { yes: yes === true, dryRun: dryRun === true, json: json === true, timeoutSeconds: timeout },
              providerDeps(),
              output,
            );
          }
          return configCommand.runUpdate({ home: resolveHome(home), context, name, json: json === true, updates }, output);
        },
      ),
    );

  configGroup
    .command('repair')
    .description('when /config in etcd is unreadable: show it and, once confirmed, restore the newest last good copy the agents kept (compare-and-set on the bad value)')
    .argument('<name>', 'cluster name')
    .option('--yes', 'do not ask before replacing the bad value')
    .option('--json', 'print the outcome as JSON')
    .addOption(homeOption())
    .addOption(contextOption())
    .addHelpText('after', examples('pgpilot config repair demo', 'pgpilot config repair demo --yes', 'pgpilot config repair demo --yes --json'))
    .action(
      wrap(async (name: string, opts: HomeOption & ContextOption & { yes?: boolean; json?: boolean }) =>
        configRepair.run({ home: resolveHome(opts.home), context: opts.context, name, yes: opts.yes === true, json: opts.json === true }, output),
      ),
    );

  program
    .command('events')
    .description('show the cluster event log: role changes, switchovers, failovers, fencing, rejoins')
    .argument('<name>', 'cluster name')
    .option('--limit <count>', 'show at most this many of the newest events', parseInteger('--limit'), 100)
    .option('--json', 'print JSON')
    .addOption(homeOption())
    .addOption(contextOption())
    .addHelpText('after', examples('pgpilot events demo', 'pgpilot events demo --json --limit 10'))
    .action(
      wrap(async (name: string, opts: HomeOption & ContextOption & { json?: boolean; limit: number }) =>
        eventsCommand.run({ home: resolveHome(opts.home), context: opts.context, name, json: opts.json === true, limit: opts.limit }, output),
      ),
    );

  program
    .command('haproxy-config')
    .description('print (or write) an HAProxy config for an external load balancer: a write port to the primary, a read port to the replicas')
    .argument('<name>', 'cluster name')
    .option('--port <port>', 'write port, routed to the primary (default: a free loopback port)', parseInteger('--port'))
    .option('--replica-port <port>', 'read port, routed to the replicas, else the primary (default: a free loopback port)', parseInteger('--replica-port'))
    .option('-o, --output <file>', 'write the config to this file (mode 0644) instead of stdout')
    .addOption(homeOption())
    .addOption(contextOption())
    .addHelpText(
      'after',
      examples(
        'pgpilot haproxy-config demo > haproxy.cfg',
        'pgpilot haproxy-config demo --port 6432 --replica-port 6433 --output /etc/haproxy/pgpilot-demo.cfg',
        'haproxy -f /etc/haproxy/pgpilot-demo.cfg',
      ),
    )
    .action(
      wrap(async (name: string, opts: HomeOption & ContextOption & { port?: number; replicaPort?: number; output?: string }) =>
        haproxyConfigCommand.run({ home: resolveHome(opts.home), context: opts.context, name, port: opts.port, replicaPort: opts.replicaPort, output: opts.output }, output),
      ),
    );

  program
    .command('monitoring')
    .description("Prometheus for a cluster: print a scrape config (alert rules included), or run Debian's prometheus with it")
    .argument('<name>', 'cluster name')
    .option('--serve', 'start prometheus for this cluster (detached, 127.0.0.1, data in the cluster directory); prints its URL')
    .option('--stop', 'stop the prometheus started with --serve (stop and destroy also stop it)')
    .option('--port <port>', 'with --serve: the port prometheus listens on (default: a free loopback port)', parseInteger('--port'))
    .option('--file-sd', 'print the targets as a file_sd JSON list instead of a whole prometheus.yml')
    .option('-o, --output <file>', 'write the prometheus.yml to this file instead of stdout')
    .option('--timeout <seconds>', 'with --serve: how long to wait for prometheus to be ready', parseInteger('--timeout'), 30)
    .option('--json', 'print targets, files and the running prometheus (or what --serve/--stop did) as JSON')
    .addOption(homeOption())
    .addOption(contextOption())
    .addHelpText(
      'after',
      examples(
        'pgpilot monitoring demo > prometheus.yml',
        'pgpilot monitoring demo --file-sd > /etc/prometheus/pgpilot-demo.json',
        'pgpilot monitoring demo --serve',
        "curl -s 'http://127.0.0.1:PORT/api/v1/query?query=pgpilot_is_leader'",
        'pgpilot monitoring demo --stop',
      ) + '\nDashboard: monitoring/grafana-dashboard.json; alert rules: monitoring/alerts.yml (docs/monitoring.md).\n',
    )
    .action(
      wrap(async (name: string, opts: HomeOption & ContextOption & { serve?: boolean; stop?: boolean; port?: number; fileSd?: boolean; output?: string; timeout: number; json?: boolean }) =>
        monitoringCommand.run(
          {
            home: resolveHome(opts.home),
            context: opts.context,
            name,
            serve: opts.serve === true,
            stop: opts.stop === true,
            fileSd: opts.fileSd === true,
            json: opts.json === true,
            port: opts.port,
            output: opts.output,
            timeoutSeconds: opts.timeout,
          },
          providerDeps(),
          output,
        ),
      ),
    );

  registerBackupCommands(program, { wrap, homeOption, contextOption, examples, parseInteger, output: out });

  program
    .command('agent')
    .description('run the node agent in the foreground (started for you by create/start)')
    .requiredOption('-c, --config <file>', 'agent configuration file (JSON)')
    .addHelpText('after', examples('pgpilot agent --config /var/lib/pgpilot/clusters/demo/nodes/node1/agent.json'))
    .action(wrap(async (opts: { config: string }) => agentCommand.run({ configFile: opts.config })));

  program
    .command('watchdog', { hidden: true })
    .description('fencing watchdog fed by the agent over stdin (started by the agent, not by hand)')
    .option('--etcd-endpoints <urls>', 'comma-separated etcd client URLs: release the agent lease there after fencing')
    .action(wrap(async () => watchdogCommand.run()));

  registerAppCommands(program, { wrap, homeOption, contextOption, examples, output: out, parseInteger });
  registerOperateCommands(program, { wrap, homeOption, contextOption, examples, output: out, parseInteger });
  registerTuningCommands(program, { wrap, homeOption, contextOption, examples, output: out, parseInteger });
  registerClusterCommands(program, { wrap, homeOption, contextOption, examples, output: out, parseInteger });
  registerClusterContextCommand(program, { wrap, homeOption, contextOption, examples, output: out, parseInteger });
  registerNodeCommands(program, { wrap, homeOption, contextOption, examples, output: out, parseInteger });

  return program;
}

/** Parses `argv` (node, script, args...) and runs the command: its exit code; never throws. */
export async function runCli(argv: string[], seams: ProgramSeams = {}): Promise<number> {
  let exitCode = 0;
  const program = buildProgram((code) => {
    exitCode = code;
  }, seams);
  const writeErr = seams.writeErr ?? ((text: string) => process.stderr.write(text));
  try {
    await program.parseAsync(argv);
  } catch (error) {
    if (error instanceof CommanderError) {
      if (error.code === 'commander.helpDisplayed' || error.code === 'commander.version' || error.code === 'commander.help') return 0;
      writeErr('hint: run pgpilot --help, or pgpilot COMMAND --help for examples\n');
      return error.exitCode === 0 ? 0 : 2;
    }
    return reportError(seams.output ?? output, error instanceof PgpilotError ? error : error);
  }
  return exitCode;
}

/** True when this module is the process entry (bin/pgpilot runs `node dist/src/bin/cli.js`), not an import. */
function isEntry(): boolean {
  const entry = process.argv[1];
  if (entry === undefined) return false;
  try {
    return realpathSync(entry) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

// A closed stdout (`pgpilot status demo | head`) is not an error worth a stack trace.
if (isEntry()) {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'EPIPE') process.exit(process.exitCode ?? 0);
      throw error;
    });
  }
  quietIpServernameWarning();
  process.exitCode = await runCli(process.argv);
}
