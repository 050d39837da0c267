/**
 * `pgpilot extensions list|enable` and `pgpilot scale vm`: the subcommands and their help, wired
 * to src/cli/commands/extensions.ts and scale-vm.ts. `scale` is a group shared with `scale count`:
 * the group is reused when another module registered it first (and created otherwise).
 */
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { SystemClock } from '../shared/clock.js';
import { resolveHome } from '../providers/local/paths.js';
import type { ProviderDeps } from '../providers/local/local-provider.js';
import type { ContextOption, HomeOption, ProgramContext } from './program-helpers.js';
import * as extensions from './commands/extensions.js';
import * as scaleVm from './commands/scale-vm.js';

export function registerTuningCommands(program: Command, ctx: ProgramContext): void {
  const { wrap, homeOption, contextOption, examples, parseInteger, output } = ctx;
  const providerDeps = (): ProviderDeps => ({
    clock: new SystemClock(),
    progress: (line) => output.err(line),
    cliEntry: fileURLToPath(new URL('../bin/cli.js', import.meta.url)),
  });

  const group = program
    .command('extensions')
    .description('list the extensions postgres can install, and enable one (preloading it with a rolling restart when it needs that)')
    .addHelpText('after', examples('pgpilot extensions list demo', 'pgpilot extensions enable demo pg_stat_statements --yes', 'pgpilot extensions enable demo hstore --database shop'));

  group
    .command('list')
    .description('extensions available on the leader: name, default and installed version, whether it needs preloading, comment')
    .argument('<name>', 'cluster name')
    .option('--database <db>', 'show installed versions in this database', 'postgres')
    .option('--json', 'print JSON')
    .addOption(homeOption())
    .addOption(contextOption())
    .addHelpText('after', examples('pgpilot extensions list demo', 'pgpilot extensions list demo --database shop --json | jq ".extensions[] | select(.installedVersion)"'))
    .action(
      wrap(async (name: string, opts: HomeOption & ContextOption & { database: string; json?: boolean }) =>
        extensions.runList({ home: resolveHome(opts.home), context: opts.context, name, database: opts.database, json: opts.json === true }, output),
      ),
    );

  group
    .command('enable')
    .description('install an extension in a database; adds it to shared_preload_libraries first (rolling restart, confirmed) when it needs preloading')
    .argument('<name>', 'cluster name')
    .argument('<extension>', 'extension name, e.g. pg_stat_statements, pgcrypto, timescaledb')
    .option('--database <db>', 'database to create the extension in', 'postgres')
    .option('--yes', 'do not ask before a rolling restart')
    .option('--timeout <seconds>', 'how long to wait for each member to restart', parseInteger('--timeout'), 120)
    .option('--json', 'print JSON')
    .addOption(homeOption())
    .addOption(contextOption())
    .addHelpText(
      'after',
      examples(
        'pgpilot extensions enable demo pgcrypto',
        'pgpilot extensions enable demo pg_stat_statements --yes',
        'pgpilot extensions enable demo timescaledb --database metrics --yes',
      ) + '\nAn extension that is not installed on every node is refused with the Debian package to install (see docs/configuration.md).\n',
    )
    .action(
      wrap(async (name: string, extension: string, opts: HomeOption & ContextOption & { database: string; yes?: boolean; timeout: number; json?: boolean }) =>
        extensions.runEnable(
          { home: resolveHome(opts.home), context: opts.context, name, extension, database: opts.database, yes: opts.yes === true, json: opts.json === true, timeoutSeconds: opts.timeout },
          providerDeps(),
          output,
        ),
      ),
    );

  const scale =
    program.commands.find((c) => c.name() === 'scale') ??
    program.command('scale').description('change the size of a cluster: its number of nodes, or the machine size postgres is tuned for');
  scale
    .command('vm')
    .description('retune memory and CPU dependent settings for a machine size; prints the plan, applies it with a rolling restart')
    .argument('<name>', 'cluster name')
    .requiredOption('--memory <size>', 'memory of each machine, e.g. 4GB, 512MB (binary units)')
    .requiredOption('--cpus <n>', 'CPUs of each machine', parseInteger('--cpus'))
    .option('--max-connections <n>', 'max_connections to plan for (default: keep the current value)', parseInteger('--max-connections'))
    .option('--dry-run', 'print the plan and change nothing')
    .option('--yes', 'do not ask before the rolling restart')
    .option('--timeout <seconds>', 'how long to wait for each member to restart', parseInteger('--timeout'), 120)
    .option('--json', 'print the plan and the result as JSON')
    .addOption(homeOption())
    .addOption(contextOption())
    .addHelpText('after', examples('pgpilot scale vm demo --memory 4GB --cpus 2 --dry-run', 'pgpilot scale vm demo --memory 16GB --cpus 8 --yes'))
    .action(
      wrap(async (name: string, opts: HomeOption & ContextOption & { memory: string; cpus: number; maxConnections?: number; dryRun?: boolean; yes?: boolean; timeout: number; json?: boolean }) =>
        scaleVm.run(
          {
            home: resolveHome(opts.home),
            context: opts.context,
            name,
            memory: opts.memory,
            cpus: opts.cpus,
            maxConnections: opts.maxConnections,
            yes: opts.yes === true,
            dryRun: opts.dryRun === true,
            json: opts.json === true,
            timeoutSeconds: opts.timeout,
          },
          providerDeps(),
          output,
        ),
      ),
    );
}
