/**
 * `pgpilot cluster init NAME --hosts node1=ADDR1,... --out DIR [...]`: plans the multi-host cluster
 * (src/multihost/plan-cluster-init.ts), writes the CA, one bundle per host and the admin context
 * (src/multihost/cluster-init.ts), and prints what was written, where etcd runs, the ports and
 * firewall openings, the next steps and the warnings.
 *
 * Invariants: progress goes to stderr; stdout carries the summary (text, or JSON with `--json`);
 * neither ever contains a secret (passwords, the API token, private keys, S3 credentials).
 */
import path from 'node:path';
import type { Clock } from '../../shared/clock.js';
import { parseStoreUrl } from '../../backup/store-config.js';
import { withEnvCredentials } from './backup.js';
import { planClusterInit, type ClusterInitPlan } from '../../multihost/plan-cluster-init.js';
import { randomTokenSuffix, runClusterInit, type ClusterInitResult } from '../../multihost/cluster-init.js';
import type { HostPorts } from '../../multihost/bundle.js';
import { printJson, renderTable, type Output } from '../output.js';

export interface ClusterInitOptions {
  name: string;
  hosts: string;
  out: string;
  etcdEndpoints?: string | undefined;
  clientCidr?: string | undefined;
  ports: Partial<HostPorts>;
  backupStore?: string | undefined;
  force: boolean;
  json: boolean;
  /** Where S3 credentials come from (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY [/ AWS_SESSION_TOKEN]). */
  env: NodeJS.ProcessEnv;
}

function scpTarget(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

/** The commands to run next (pure). */
export function nextSteps(plan: ClusterInitPlan, result: ClusterInitResult): string[] {
  const steps: string[] = [];
  for (const b of result.files.bundles) {
    const node = plan.nodes.find((n) => n.name === b.node);
    steps.push(`scp ${b.file} ${scpTarget(node?.host ?? b.node)}:`);
  }
  const example = path.basename(result.files.bundles[0]?.file ?? `${plan.cluster}-node1.bundle`);
  steps.push(`on each host (as root, systemd): pgpilot node install --bundle ${example}   (each host its own bundle)`);
  steps.push(`  or in the foreground:          pgpilot node run --bundle ${example} --data-dir /var/lib/pgpilot/${plan.cluster}`);
  steps.push(`pgpilot status ${plan.cluster} --context ${result.files.context}`);
  return steps;
}

function jsonSummary(plan: ClusterInitPlan, result: ClusterInitResult, steps: string[]): unknown {
  return {
    cluster: plan.cluster,
    outDir: result.outDir,
    files: {
      caCert: result.files.caCert,
      caKey: result.files.caKey,
      context: result.files.context,
      bundles: result.files.bundles.map((b) => {
        const node = plan.nodes.find((n) => n.name === b.node);
        return { node: b.node, host: node?.host ?? null, etcdMember: node?.etcdMember ?? false, file: b.file };
      }),
    },
    etcd: {
      kind: plan.etcd.kind,
      endpoints: plan.etcd.endpoints,
      members: plan.etcdMembers.map((m) => m.name),
      initialCluster: plan.initialCluster,
    },
    ports: plan.ports,
    clientCidrs: plan.clientCidrs,
    clientCidrsDefaulted: plan.clientCidrsDefaulted,
    // The URL only: credentials stay in the bundles and the context.
    backupStore: plan.backupStore === null ? null : plan.backupStore.url,
    firewall: plan.firewall,
    nextSteps: steps,
    warnings: plan.warnings,
  };
}

function textSummary(plan: ClusterInitPlan, result: ClusterInitResult, steps: string[]): string {
  const lines: string[] = [];
  lines.push(`cluster ${plan.cluster}: ${plan.nodes.length} host${plan.nodes.length === 1 ? '' : 's'}, files in ${result.outDir}`);
  lines.push('');
  lines.push('Files (keep them private: they hold the cluster secrets):');
  const fileRows: string[][] = result.files.bundles.map((b) => {
    const node = plan.nodes.find((n) => n.name === b.node);
    return [path.basename(b.file), `bundle for ${b.node} (${node?.host ?? '?'})${node?.etcdMember === true ? ', runs an etcd member' : ''}`];
  });
  fileRows.push([path.basename(result.files.context), 'admin context: pgpilot COMMAND --context FILE (or PGPILOT_CONTEXT)']);
  fileRows.push([path.basename(result.files.caCert), 'cluster CA certificate']);
  fileRows.push([path.basename(result.files.caKey), 'cluster CA key: stays on this machine (cluster add-node needs it)']);
  lines.push(renderTable(['FILE', 'WHAT'], fileRows));
  lines.push('');
  if (plan.etcd.kind === 'pgpilot') {
    lines.push(`etcd: pgpilot runs ${plan.etcdMembers.length} member${plan.etcdMembers.length === 1 ? '' : 's'} on ${plan.etcdMembers.map((m) => m.name).join(', ')}`);
    const clientsOnly = plan.nodes.filter((n) => !n.etcdMember).map((n) => n.name);
    if (clientsOnly.length > 0) lines.push(`      etcd clients only: ${clientsOnly.join(', ')}`);
  } else {
    lines.push(`etcd: your existing etcd at ${plan.etcd.endpoints.join(', ')} (no host runs a member)`);
  }
  lines.push(`client networks (pg_hba hostssl + scram-sha-256): ${plan.clientCidrs.join(', ')}${plan.clientCidrsDefaulted ? ' (the smallest network holding every host; --client-cidr to change)' : ''}`);
  if (plan.backupStore !== null) lines.push(`backup store: ${plan.backupStore.url}`);
  lines.push('');
  lines.push('Ports (the same on every host) and the firewall openings they need:');
  lines.push(renderTable(['PORT', 'WHAT', 'ON', 'FROM'], plan.firewall.map((f) => [String(f.port), f.what, f.on, f.from])));
  lines.push('');
  lines.push('Next steps:');
  for (const step of steps) lines.push(`  ${step}`);
  if (plan.warnings.length > 0) {
    lines.push('');
    for (const warning of plan.warnings) lines.push(`warning: ${warning}`);
  }
  return lines.join('\n');
}

export async function run(options: ClusterInitOptions, deps: { clock: Clock }, output: Output): Promise<number> {
  const backupStore = options.backupStore === undefined ? undefined : withEnvCredentials(parseStoreUrl(options.backupStore), options.env);
  const plan = planClusterInit({
    cluster: options.name,
    hosts: options.hosts,
    etcdEndpoints: options.etcdEndpoints,
    clientCidr: options.clientCidr,
    ports: options.ports,
    backupStore,
    tokenSuffix: randomTokenSuffix(),
  });
  const result = await runClusterInit(plan, options.out, { force: options.force }, { clock: deps.clock, progress: (line) => output.err(line) });
  const steps = nextSteps(plan, result);
  if (options.json) printJson(output, jsonSummary(plan, result, steps));
  else output.out(textSummary(plan, result, steps));
  // Warnings also on stderr, so they are seen when stdout goes to a file or to jq.
  if (options.json) for (const warning of plan.warnings) output.err(`warning: ${warning}`);
  return 0;
}
