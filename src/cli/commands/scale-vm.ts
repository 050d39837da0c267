/**
 * `pgpilot scale vm NAME --memory SIZE --cpus N [--max-connections N] [--dry-run] [--yes] [--json]`:
 * retunes the memory- and CPU-dependent settings for a machine of that size
 * (src/postgres/vm-tuning.ts), prints the plan (setting, current, new, reload or restart) and
 * applies it through the `config update` path: validated against pg_settings, stored in etcd,
 * then a rolling restart (shared_buffers and the worker limits need one) after confirmation.
 * The size is the VM's, not necessarily this machine's: a size above this machine's memory is
 * planned with a warning, not refused.
 */
import os from 'node:os';
import { formatMegabytes, parseSizeBytes, planVmSettings } from '../../postgres/vm-tuning.js';
import type { ProviderDeps } from '../../providers/local/local-provider.js';
import { withAppContext } from '../../operations/app-context.js';
import { openClusterHandle } from '../../cluster/open-cluster-handle.js';
import { printJson, type Output } from '../output.js';
import { applyPrepared, prepareChanges } from './config-parameters.js';

export interface ScaleVmOptions {
  home: string;
  name: string;
  /** `--context FILE` (else PGPILOT_CONTEXT, else the local cluster). */
  context?: string | undefined;
  memory: string;
  cpus: number;
  /** Default: keep the current value. */
  maxConnections?: number;
  yes: boolean;
  dryRun: boolean;
  json: boolean;
  timeoutSeconds: number;
}

export async function run(options: ScaleVmOptions, deps: ProviderDeps, output: Output): Promise<number> {
  const memoryBytes = parseSizeBytes(options.memory);
  // Checks the sizes before connecting anywhere (throws INPUT_INVALID with the limits).
  planVmSettings({ memoryBytes, cpus: options.cpus, maxConnections: options.maxConnections });
  if (memoryBytes > os.totalmem()) {
    output.err(
      `warning: --memory ${formatMegabytes(memoryBytes)} is more than this machine's ${formatMegabytes(os.totalmem())}: the plan is for a VM of that size; members on this machine may fail to start with it (the first one that does rolls the change back)`,
    );
  }
  const maxConnections =
    options.maxConnections ??
    (await withAppContext(await openClusterHandle(options), async (ctx) => Number((await ctx.client.query<{ v: string }>("SELECT current_setting('max_connections') AS v")).rows[0]?.v ?? 100)));
  const settings = planVmSettings({ memoryBytes, cpus: options.cpus, maxConnections });
  const prepared = await prepareChanges({
    home: options.home,
    name: options.name,
    context: options.context,
    set: Object.entries(settings).map(([key, value]) => [key, String(value)] as const),
    reset: [],
  });
  if (!options.json) output.out(`plan for ${formatMegabytes(memoryBytes)} of memory and ${options.cpus} CPU${options.cpus === 1 ? '' : 's'} (max_connections ${maxConnections}):`);
  const outcome = await applyPrepared(prepared, { yes: options.yes, dryRun: options.dryRun, json: options.json, timeoutSeconds: options.timeoutSeconds }, deps, output);
  if (options.json) printJson(output, { memoryBytes, cpus: options.cpus, settings, ...outcome });
  return 0;
}
