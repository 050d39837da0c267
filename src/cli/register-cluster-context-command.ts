/**
 * Registers `pgpilot cluster context NAME --out FILE` under the `cluster` group (found or made by
 * clusterGroup: `cluster init` and friends live in the same group, register-cluster-commands.ts).
 */
import type { Command } from 'commander';
import { resolveHome } from '../providers/local/paths.js';
import * as clusterContext from './commands/cluster-context.js';
import { clusterGroup } from './register-cluster-commands.js';
import type { ContextOption, HomeOption, ProgramContext } from './program-helpers.js';

export function registerClusterContextCommand(program: Command, ctx: ProgramContext): void {
  const { wrap, homeOption, contextOption, examples, output } = ctx;
  clusterGroup(program, ctx)
    .command('context')
    .description('export a local cluster as an admin context file, to manage it with --context FILE like a multi-host cluster')
    .argument('<name>', 'cluster name')
    .requiredOption('-o, --out <file>', 'the context file to write (mode 0600; never over an existing file)')
    .option('--json', 'print what was written as JSON (no secrets)')
    .addOption(homeOption())
    .addOption(contextOption().hideHelp())
    .addHelpText('after', examples('pgpilot cluster context demo --out demo.context.json', 'pgpilot status demo --context demo.context.json', 'PGPILOT_CONTEXT=demo.context.json pgpilot switchover demo'))
    .action(
      wrap(async (name: string, opts: HomeOption & ContextOption & { out: string; json?: boolean }) =>
        clusterContext.run({ home: resolveHome(opts.home), context: opts.context, name, out: opts.out, json: opts.json === true }, output, Date.now()),
      ),
    );
}
