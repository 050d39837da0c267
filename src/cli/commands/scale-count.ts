/**
 * `pgpilot scale count NAME N [--node NODE,...] [--delete-data] [--yes] [--json]`: grows the
 * cluster with new replicas (cloned from the leader while it serves) or shrinks it (never the
 * leader; the data of removed nodes is kept under `<clusterDir>/removed/` unless --delete-data).
 * Shrinking asks for confirmation (or --yes) and names the nodes it would remove first. Progress
 * goes to stderr; the result (or JSON) to stdout. The work is in src/providers/local/local-provider.ts
 * (`scaleCluster`).
 */
import { refuseRemote } from '../../cluster/require-local.js';
import { confirmYes } from '../confirm.js';
import { chooseNodesToRemove, clusterStatus, openClusterDcs, scaleCluster, validateClusterName, type ProviderDeps, type ScaleResult } from '../../providers/local/local-provider.js';
import { withoutSecrets } from '../../operations/cluster-status.js';
import { readManifest } from '../../providers/local/cluster-store.js';
import { PgpilotError } from '../../shared/errors.js';
import { MAX_NODES, MIN_NODES } from '../../config/schema.js';
import { printJson, type Output } from '../output.js';

export interface ScaleCountOptions {
  home: string;
  name: string;
  context?: string | undefined;
  count: number;
  /** Shrinking: the nodes to remove (default: chosen by pgpilot). */
  nodes?: string[];
  deleteData: boolean;
  yes: boolean;
  json: boolean;
  timeoutSeconds: number;
}

/** `--node node4,node5` (or repeated) -> names (pure). */
export function parseNodeList(values: readonly string[] | undefined): string[] | undefined {
  if (values === undefined) return undefined;
  const names = values.flatMap((v) => v.split(',')).map((v) => v.trim()).filter((v) => v.length > 0);
  return names.length === 0 ? undefined : names;
}

export function describeScaleResult(result: ScaleResult): string {
  const s = result.status;
  const replicas = s.members.filter((m) => m.role === 'replica' && m.streaming).length;
  const change =
    result.added.length > 0
      ? `added ${result.added.join(', ')}`
      : result.removed.length > 0
        ? `removed ${result.removed.map((r) => (r.dataKeptAt === null ? r.name : `${r.name} (data kept in ${r.dataKeptAt})`)).join(', ')}`
        : 'nothing to do';
  return `${result.cluster}: ${result.from} -> ${result.to} nodes, ${change}; leader ${s.leader ?? 'none'}, ${replicas} streaming replica${replicas === 1 ? '' : 's'}`;
}

export async function run(options: ScaleCountOptions, deps: ProviderDeps, output: Output): Promise<number> {
  await refuseRemote(options, 'pgpilot scale count');
  const name = validateClusterName(options.name);
  if (!Number.isInteger(options.count) || options.count < MIN_NODES || options.count > MAX_NODES) {
    throw new PgpilotError('INPUT_INVALID', `invalid node count ${String(options.count)}`, {
      hint: `use a whole number from ${MIN_NODES} to ${MAX_NODES} (3 is the usual HA size)`,
      exitCode: 2,
    });
  }
  const manifest = await readManifest(options.home, name);
  const from = manifest.nodes.length;
  let remove = parseNodeList(options.nodes);
  if (remove !== undefined && options.count >= from) {
    throw new PgpilotError('INPUT_INVALID', '--node names nodes to remove; it only applies when scaling down', {
      hint: `pgpilot scale count ${name} ${Math.max(MIN_NODES, from - remove.length)} --node ${remove.join(',')}`,
      exitCode: 2,
    });
  }
  if (options.count < from) {
    if (remove === undefined) {
      // Decide here which nodes would go, so the confirmation names them and exactly they are removed.
      const status = await clusterStatus(options.home, name);
      const { dcs, config } = await openClusterDcs(manifest);
      await dcs.close().catch(() => undefined);
      remove = chooseNodesToRemove(status, from - options.count, config.maximumLagOnFailoverBytes);
    }
    const what = `This removes ${remove.join(', ')} from ${name} (${from} -> ${options.count} nodes); ${options.deleteData ? 'their data is DELETED' : `their data is kept under ${manifest.clusterDir}/removed/`}.`;
    if (!options.yes && !(await confirmYes(what))) {
      throw new PgpilotError('CONFIRMATION_REQUIRED', `refusing to remove ${remove.join(', ')} from ${name} without confirmation`, {
        hint: `run: pgpilot scale count ${name} ${options.count} --yes`,
        exitCode: 2,
      });
    }
  }
  if (options.count === 1 && from > 1) deps.progress('warning: a single node has no replica and no failover; use it for development only');
  const result = await scaleCluster(options.home, name, options.count, deps, {
    ...(remove === undefined ? {} : { remove }),
    deleteData: options.deleteData,
    timeoutMs: options.timeoutSeconds * 1000,
  });
  if (options.json) printJson(output, { ...result, status: withoutSecrets(result.status) });
  else output.out(describeScaleResult(result));
  return 0;
}
