/**
 * `pgpilot cluster ...`: a cluster whose nodes live on different hosts, set up from the operator's
 * machine (docs/production.md). `cluster init` is wired to src/cli/commands/cluster-init.ts.
 *
 * `cluster` is a group other modules may add subcommands to (`cluster add-node`, `remove-node`):
 * it is looked up before it is created, so the registration order does not matter.
 */
import type { Command } from 'commander';
import { SystemClock } from '../shared/clock.js';
import { DEFAULT_HOST_PORTS, type HostPorts } from '../multihost/bundle.js';
import type { ProgramContext } from './program-helpers.js';
import * as clusterInit from './commands/cluster-init.js';

/** The existing `cluster` group, or a new one. */
export function clusterGroup(program: Command, ctx: Pick<ProgramContext, 'examples'>): Command {
  return (
    program.commands.find((c) => c.name() === 'cluster') ??
    program
      .command('cluster')
      .description('a cluster across several hosts: init writes one bundle per host and an admin context (docs/production.md)')
      .addHelpText('after', ctx.examples('pgpilot cluster init prod --hosts node1=10.0.0.1,node2=10.0.0.2,node3=10.0.0.3 --out ./prod'))
  );
}

interface ClusterInitFlags extends Partial<HostPorts> {
  hosts: string;
  out: string;
  etcdEndpoints?: string;
  clientCidr?: string;
  backupStore?: string;
  force?: boolean;
  json?: boolean;
}

export function registerClusterCommands(program: Command, ctx: ProgramContext): void {
  const { wrap, examples, output, parseInteger } = ctx;
  const d = DEFAULT_HOST_PORTS;
  clusterGroup(program, ctx)
    .command('init')
    .description(
      'initialise a multi-host cluster on this machine: a CA, one bundle per host (NAME-NODE.bundle: its config, certificates, secrets, etcd member settings) and the admin context NAME.context.json, all 0600; nothing is started',
    )
    .argument('<name>', 'cluster name (lower-case letters, digits, dashes)')
    .requiredOption('--hosts <list>', 'the hosts, NAME=IP comma-separated, 1..9 (e.g. node1=10.0.0.1,node2=10.0.0.2,node3=10.0.0.3); etcd members run on the first 3 (the first 5 from 5 hosts on)')
    .requiredOption('--out <dir>', 'where the files go (created 0700 when missing)')
    .option('--etcd-endpoints <urls>', "use your existing etcd (comma-separated https:// client URLs) instead of pgpilot's members")
    .option('--client-cidr <cidrs>', 'networks clients may connect from, comma-separated (default: the smallest network holding every host address)')
    .option('--pg-port <port>', `postgres port on every host (default ${d.pgPort})`, parseInteger('--pg-port'))
    .option('--proxy-port <port>', `leader proxy port (default ${d.proxyPort})`, parseInteger('--proxy-port'))
    .option('--replica-proxy-port <port>', `replica proxy port (default ${d.replicaProxyPort})`, parseInteger('--replica-proxy-port'))
    .option('--pooler-port <port>', `PgBouncer port (default ${d.poolerPort})`, parseInteger('--pooler-port'))
    .option('--api-port <port>', `REST API port (default ${d.apiPort})`, parseInteger('--api-port'))
    .option('--etcd-client-port <port>', `etcd client port of the member hosts (default ${d.etcdClientPort})`, parseInteger('--etcd-client-port'))
    .option('--etcd-peer-port <port>', `etcd peer port of the member hosts (default ${d.etcdPeerPort})`, parseInteger('--etcd-peer-port'))
    .option('--backup-store <url>', 'the backup store of every host: s3://bucket/prefix?endpoint=... (S3 credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), or a directory on shared storage')
    .option('--force', 'replace the files of an earlier init in --out (a new CA and new secrets: hosts running the old bundles are cut off)')
    .option('--json', 'print the summary as JSON (files, etcd placement, ports, firewall, next steps, warnings; never a secret)')
    .addHelpText(
      'after',
      examples(
        'pgpilot cluster init prod --hosts node1=10.0.0.1,node2=10.0.0.2,node3=10.0.0.3 --out ./prod',
        'AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... pgpilot cluster init prod --hosts node1=10.0.0.1,node2=10.0.0.2,node3=10.0.0.3 --out ./prod --backup-store "s3://backups/prod?region=eu-west-1"',
        'pgpilot cluster init prod --hosts db1=fd00::11,db2=fd00::12,db3=fd00::13 --out ./prod --client-cidr fd00::/64',
        'pgpilot cluster init prod --hosts node1=10.0.0.1,node2=10.0.0.2,node3=10.0.0.3 --out ./prod --etcd-endpoints https://10.0.1.1:2379,https://10.0.1.2:2379,https://10.0.1.3:2379',
        'pgpilot cluster init prod --hosts node1=10.0.0.1,node2=10.0.0.2,node3=10.0.0.3 --out ./prod --pg-port 15432 --json',
        'scp ./prod/prod-node1.bundle 10.0.0.1:   # then on node1: pgpilot node install --bundle prod-node1.bundle',
        'pgpilot status prod --context ./prod/prod.context.json',
      ) + '\nPorts, firewall openings, TLS and backups across hosts: docs/production.md.\n',
    )
    .action(
      wrap(async (name: string, opts: ClusterInitFlags) => {
        const ports: Partial<HostPorts> = {};
        for (const key of Object.keys(DEFAULT_HOST_PORTS) as (keyof HostPorts)[]) {
          const value = opts[key];
          if (value !== undefined) ports[key] = value;
        }
        return clusterInit.run(
          {
            name,
            hosts: opts.hosts,
            out: opts.out,
            etcdEndpoints: opts.etcdEndpoints,
            clientCidr: opts.clientCidr,
            ports,
            backupStore: opts.backupStore,
            force: opts.force === true,
            json: opts.json === true,
            env: process.env,
          },
          { clock: new SystemClock() },
          output,
        );
      }),
    );
}
