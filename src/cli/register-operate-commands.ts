/**
 * Registers the "operate and evolve" commands (docs/operations.md): `pooler enable|disable|show`,
 * `scale count` and `image show|update`. Each command only maps its flags to one module in
 * src/cli/commands/; src/bin/cli.ts calls `registerOperateCommands(program, ctx)`.
 *
 * `scale` is a group other modules add subcommands to as well (`scale vm`): it is looked up
 * before it is created, so the registration order does not matter.
 */
import { Option, type Command } from 'commander';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { SystemClock } from '../shared/clock.js';
import { resolveHome } from '../providers/local/paths.js';
import type { ProviderDeps } from '../providers/local/local-provider.js';
import type { ContextOption, HomeOption, ProgramContext } from './program-helpers.js';
import * as poolerCommand from './commands/pooler.js';
import * as scaleCountCommand from './commands/scale-count.js';
import * as imageCommand from './commands/image.js';

interface JsonOption {
  json?: boolean;
}

/** The compiled CLI entry (dist/src/bin/cli.js), which new agents are started with. */
function cliEntry(): string {
  return path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'cli.js');
}

function providerDeps(ctx: ProgramContext): ProviderDeps {
  return { clock: new SystemClock(), progress: (line) => ctx.output.err(line), cliEntry: cliEntry() };
}

/** The existing subcommand group `name`, or a new one. */
function group(program: Command, name: string, create: (program: Command) => Command): Command {
  return program.commands.find((c) => c.name() === name) ?? create(program);
}

export function registerOperateCommands(program: Command, ctx: ProgramContext): void {
  const { wrap, homeOption, contextOption, examples, output, parseInteger } = ctx;

  // ----- pooler -----
  const pooler = program
    .command('pooler')
    .description("PgBouncer on every node, in front of the node's leader port (SCRAM auth through auth_query)")
    .addHelpText('after', examples('pgpilot pooler enable demo', 'pgpilot pooler enable demo --pool-mode session --pool-size 40', 'pgpilot pooler show demo', 'pgpilot pooler disable demo'));
  pooler
    .command('enable')
    .description('start (or reconfigure) PgBouncer on every node and wait until a login through it works')
    .argument('<name>', 'cluster name')
    .addOption(new Option('--pool-mode <mode>', 'transaction (default: a server connection per transaction) or session').choices(['transaction', 'session']))
    .option('--pool-size <n>', 'server connections per database and user on each node (default 20)', parseInteger('--pool-size'))
    .option('--timeout <seconds>', 'how long to wait for every node', parseInteger('--timeout'), 60)
    .option('--json', 'print the pooler status as JSON (the connection string without the password)')
    .addOption(homeOption())
    .addOption(contextOption())
    .addHelpText(
      'after',
      examples(
        'pgpilot pooler enable demo',
        'pgpilot pooler enable demo --pool-mode session --pool-size 40',
        "PGPASSWORD=... pgbench -h 127.0.0.1 -p POOLER_PORT -U postgres -M simple -c 8 -T 30 postgres",
      ) + '\nIn transaction mode use -M simple with pgbench (prepared statements need session mode). See docs/operations.md.\n',
    )
    .action(
      wrap(async (name: string, opts: HomeOption & ContextOption & JsonOption & { poolMode?: string; poolSize?: number; timeout: number }) =>
        poolerCommand.runEnable(
          { home: resolveHome(opts.home), context: opts.context, name, poolMode: opts.poolMode, poolSize: opts.poolSize, json: opts.json === true, timeoutSeconds: opts.timeout },
          providerDeps(ctx),
          output,
        ),
      ),
    );
  pooler
    .command('disable')
    .description('stop PgBouncer on every node (clients of the pooler ports are disconnected)')
    .argument('<name>', 'cluster name')
    .option('--timeout <seconds>', 'how long to wait for every node', parseInteger('--timeout'), 60)
    .option('--json', 'print the pooler status as JSON')
    .addOption(homeOption())
    .addOption(contextOption())
    .addHelpText('after', examples('pgpilot pooler disable demo'))
    .action(
      wrap(async (name: string, opts: HomeOption & ContextOption & JsonOption & { timeout: number }) =>
        poolerCommand.runDisable({ home: resolveHome(opts.home), context: opts.context, name, json: opts.json === true, timeoutSeconds: opts.timeout }, providerDeps(ctx), output),
      ),
    );
  pooler
    .command('show')
    .description('show the pooler settings, its port and PgBouncer PID on each node')
    .argument('<name>', 'cluster name')
    .option('--json', 'print JSON (the connection string without the password)')
    .option('--show-secrets', 'put the superuser password in the connection string (JSON and text)')
    .addOption(homeOption())
    .addOption(contextOption())
    .addHelpText('after', examples('pgpilot pooler show demo', 'pgpilot pooler show demo --json --show-secrets | jq -r .pooler.connectionString'))
    .action(
      wrap(async (name: string, opts: HomeOption & ContextOption & JsonOption & { showSecrets?: boolean }) =>
        poolerCommand.runShow({ home: resolveHome(opts.home), context: opts.context, name, json: opts.json === true, showSecrets: opts.showSecrets === true }, output),
      ),
    );

  // ----- scale count -----
  const scale = group(program, 'scale', (p) =>
    p.command('scale').description('change the size of a cluster: its number of nodes (scale count) or their resources (scale vm)'),
  );
  scale
    .command('count')
    .description('add replicas (cloned while the cluster serves) or remove them (never the leader); shrinking asks for confirmation')
    .argument('<name>', 'cluster name')
    .argument('<count>', `the number of nodes wanted, 1-9 (1 is for development only)`, parseInteger('count'))
    .option('--node <nodes...>', 'when scaling down: remove these nodes (comma-separated or repeated; default: pgpilot chooses replicas, never the leader)')
    .option('--delete-data', "when scaling down: delete the removed nodes' data instead of keeping it under <clusterDir>/removed/")
    .option('-y, --yes', 'do not ask for confirmation when scaling down')
    .option('--timeout <seconds>', 'how long to wait for the cluster to be ready', parseInteger('--timeout'), 300)
    .option('--json', 'print the result (added/removed nodes and the final status) as JSON')
    .addOption(homeOption())
    .addOption(contextOption())
    .addHelpText(
      'after',
      examples('pgpilot scale count demo 5', 'pgpilot scale count demo 3 --yes', 'pgpilot scale count demo 2 --node node3 --yes --delete-data', 'pgpilot scale count demo 4 --json | jq .added'),
    )
    .action(
      wrap(async (name: string, count: number, opts: HomeOption & ContextOption & JsonOption & { node?: string[]; deleteData?: boolean; yes?: boolean; timeout: number }) =>
        scaleCountCommand.run(
          {
            home: resolveHome(opts.home),
            context: opts.context,
            name,
            count,
            ...(opts.node === undefined ? {} : { nodes: opts.node }),
            deleteData: opts.deleteData === true,
            yes: opts.yes === true,
            json: opts.json === true,
            timeoutSeconds: opts.timeout,
          },
          providerDeps(ctx),
          output,
        ),
      ),
    );

  // ----- image -----
  const image = program
    .command('image')
    .description('PostgreSQL point releases: show installed vs running versions, roll every node onto new binaries')
    .addHelpText('after', examples('pgpilot image show demo', 'pgpilot image update demo --yes', 'pgpilot image update demo --bin-dir /opt/pg15.9/bin --yes'));
  image
    .command('show')
    .description('per member: the running PostgreSQL version (and since when) and the version installed in its bin dir')
    .argument('<name>', 'cluster name')
    .option('--bin-dir <dir>', 'also show the version installed in this directory')
    .option('--json', 'print JSON')
    .addOption(homeOption())
    .addOption(contextOption())
    .addHelpText('after', examples('pgpilot image show demo', 'pgpilot image show demo --bin-dir /usr/lib/postgresql/15/bin --json'))
    .action(
      wrap(async (name: string, opts: HomeOption & ContextOption & JsonOption & { binDir?: string }) =>
        imageCommand.runShow({ home: resolveHome(opts.home), context: opts.context, name, binDir: opts.binDir, json: opts.json === true }, output),
      ),
    );
  image
    .command('update')
    .description('rolling restart onto the binaries of --bin-dir (default: the configured one): replicas, a switchover, the former leader')
    .argument('<name>', 'cluster name')
    .option('--bin-dir <dir>', 'PostgreSQL bin directory of the same major version (default: the configured one, e.g. after apt-get upgrade)')
    .option('-y, --yes', 'do not ask for confirmation')
    .option('--timeout <seconds>', 'how long to wait for each node and for the switchover', parseInteger('--timeout'), 180)
    .option('--json', 'print the result as JSON')
    .addOption(homeOption())
    .addOption(contextOption())
    .addHelpText(
      'after',
      examples('apt-get install --only-upgrade postgresql-15 && pgpilot image update demo --yes', 'pgpilot image update demo --bin-dir /opt/pg15.9/bin --yes') +
        '\nA different major version is refused: that needs pg_upgrade. Events: pgpilot events demo.\n',
    )
    .action(
      wrap(async (name: string, opts: HomeOption & ContextOption & JsonOption & { binDir?: string; yes?: boolean; timeout: number }) =>
        imageCommand.runUpdate(
          { home: resolveHome(opts.home), context: opts.context, name, binDir: opts.binDir, yes: opts.yes === true, json: opts.json === true, timeoutSeconds: opts.timeout },
          providerDeps(ctx),
          output,
        ),
      ),
    );
}
