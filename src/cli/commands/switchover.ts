/**
 * `pgpilot switchover NAME [--to NODE]` (planned: the target catches up first, nothing committed
 * is lost) and `pgpilot failover NAME [--to NODE] --yes` (forced: no catch-up wait), on a local
 * cluster or through `--context FILE`. The work is src/operations/switchover.ts; this prints it.
 */
import { openClusterHandle } from '../../cluster/open-cluster-handle.js';
import { withoutSecrets } from '../../operations/cluster-status.js';
import type { OperationDeps } from '../../operations/operation-deps.js';
import { switchover } from '../../operations/switchover.js';
import { printJson, type Output } from '../output.js';

export interface SwitchoverOptions {
  home: string;
  name: string;
  /** `--context FILE` (else PGPILOT_CONTEXT, else the local cluster). */
  context?: string | undefined;
  to?: string;
  kind: 'switchover' | 'failover';
  yes: boolean;
  json: boolean;
  timeoutSeconds: number;
}

export async function run(options: SwitchoverOptions, deps: OperationDeps, output: Output): Promise<number> {
  const handle = await openClusterHandle(options);
  const { before, status, tookMs } = await switchover(handle, { kind: options.kind, to: options.to, yes: options.yes, timeoutSeconds: options.timeoutSeconds }, deps);
  if (options.json) printJson(output, { ...withoutSecrets(status), tookMs });
  else output.out(`${options.kind} done: ${before.leader ?? 'no leader'} -> ${status.leader ?? '?'} in ${(tookMs / 1000).toFixed(1)} s (timeline ${status.timeline ?? '?'})`);
  return 0;
}
