/**
 * `pgpilot node run` and `pgpilot node install`: running one node of a multi-host cluster on its
 * host (src/node/). `node run` is the foreground supervisor a systemd unit runs; `node install`
 * writes that unit. The `node` group is reused when another module registered it first.
 */
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { SystemClock } from '../shared/clock.js';
import { PgpilotError } from '../shared/errors.js';
import { installNode } from '../node/node-install.js';
import { runNodeFromAgentConfig, runNodeFromBundle } from '../node/node-run.js';
import type { ProgramContext } from './program-helpers.js';
import { printJson } from './output.js';

export function registerNodeCommands(program: Command, ctx: ProgramContext): void {
  const { wrap, examples, output } = ctx;
  const cliEntry = (): string => fileURLToPath(new URL('../bin/cli.js', import.meta.url));
  const group =
    program.commands.find((c) => c.name() === 'node') ??
    program.command('node').description('run one node of a cluster on this host (multi-host clusters: see docs/node-run.md)');

  group
    .command('run')
    .description('run this host\'s node in the foreground: its etcd member (if any) and the agent, restarted with backoff when they die, all stopped on SIGTERM')
    .option('--bundle <file>', 'the node bundle written by pgpilot cluster init (NAME-NODE.bundle)')
    .option('--data-dir <dir>', 'the node\'s data directory (with --bundle; e.g. /var/lib/pgpilot/NAME-NODE)')
    .option('--config <file>', 'instead of --bundle: supervise only the agent of an existing node (its agent.json)')
    .option('--agent-pid-file <file>', 'with --config: also keep the current agent\'s PID in this file (the local provider\'s agent.pid)')
    .option('--bin-dir <dir>', 'with --bundle: PostgreSQL 15 binaries (default: /usr/lib/postgresql/15/bin)')
    .addHelpText(
      'after',
      examples('pgpilot node run --bundle /etc/pgpilot/demo-node1.bundle --data-dir /var/lib/pgpilot/demo-node1', 'pgpilot node run --config ~/.pgpilot/clusters/demo/nodes/node1/agent.json') +
        '\nStop it with SIGTERM or Ctrl-C (a second one hurries). Under systemd: pgpilot node install.\n',
    )
    .action(
      wrap(async (opts: { bundle?: string; dataDir?: string; config?: string; agentPidFile?: string; binDir?: string }) => {
        const deps = {
          clock: new SystemClock(),
          cliEntry: cliEntry(),
          log: (level: string, message: string) => output.err(`${new Date().toISOString()} node-run ${level}: ${message}`),
        };
        if (opts.config !== undefined) {
          if (opts.bundle !== undefined || opts.dataDir !== undefined) {
            throw new PgpilotError('INPUT_INVALID', '--config cannot be combined with --bundle or --data-dir', { hint: 'use either --bundle FILE --data-dir DIR or --config AGENT_JSON', exitCode: 2 });
          }
          return runNodeFromAgentConfig({ configFile: opts.config, ...(opts.agentPidFile === undefined ? {} : { agentPidFile: opts.agentPidFile }) }, deps);
        }
        if (opts.agentPidFile !== undefined) {
          throw new PgpilotError('INPUT_INVALID', '--agent-pid-file goes with --config', { hint: 'with --bundle, the PIDs are in DIR/node-run.children.json', exitCode: 2 });
        }
        if (opts.bundle === undefined || opts.dataDir === undefined) {
          throw new PgpilotError('INPUT_INVALID', 'node run needs --bundle FILE and --data-dir DIR (or --config AGENT_JSON)', {
            hint: 'e.g. pgpilot node run --bundle /etc/pgpilot/demo-node1.bundle --data-dir /var/lib/pgpilot/demo-node1',
            exitCode: 2,
          });
        }
        return runNodeFromBundle({ bundleFile: opts.bundle, dataDir: opts.dataDir, ...(opts.binDir === undefined ? {} : { binDir: opts.binDir }) }, deps);
      }),
    );

  group
    .command('install')
    .description('put this host\'s node under systemd: copy the bundle to /etc/pgpilot, write pgpilot@NAME-NODE.service, enable and start it')
    .requiredOption('--bundle <file>', 'the node bundle written by pgpilot cluster init')
    .option('--data-dir <dir>', 'the node\'s data directory (default: /var/lib/pgpilot/NAME-NODE)')
    .option('--unit-dir <dir>', 'write the unit (and the bundle copy) here instead of /etc/systemd/system and /etc/pgpilot; nothing is started')
    .option('--no-start', 'write the files only; do not run systemctl')
    .option('--json', 'print JSON')
    .addHelpText(
      'after',
      examples('pgpilot node install --bundle demo-node1.bundle', 'pgpilot node install --bundle demo-node1.bundle --data-dir /srv/pgpilot/demo-node1 --no-start', 'pgpilot node install --bundle demo-node1.bundle --unit-dir /tmp/units --json'),
    )
    .action(
      wrap(async (opts: { bundle: string; dataDir?: string; unitDir?: string; start: boolean; json?: boolean }) => {
        const result = await installNode({
          bundleFile: opts.bundle,
          ...(opts.dataDir === undefined ? {} : { dataDir: opts.dataDir }),
          ...(opts.unitDir === undefined ? {} : { unitDir: opts.unitDir }),
          noStart: !opts.start,
          nodeBinary: process.execPath,
          cliEntry: cliEntry(),
        });
        if (opts.json === true) {
          printJson(output, result);
          return 0;
        }
        output.out(`bundle: ${result.bundleFile} (0600)`);
        output.out(`data directory: ${result.dataDir}`);
        output.out(`unit: ${result.unitFile}`);
        if (result.outcome === 'started') output.out(`${result.unitName} enabled and started (journalctl -u ${result.unitName} -f)`);
        else output.out(`not started (${result.reason ?? ''}); start it with:\n${result.startCommands.map((c) => `  ${c}`).join('\n')}`);
        return 0;
      }),
    );
}
