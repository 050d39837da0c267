/**
 * `pgpilot restart NAME [--node NODE] [--context FILE]`: a rolling restart of postgres (replicas
 * first, a switchover, then the former leader), or one node in its current role with --node. The
 * work is src/operations/rolling-restart.ts (REST calls to the agents, which do the restarts).
 */
import { openClusterHandle } from '../../cluster/open-cluster-handle.js';
import type { OperationDeps } from '../../operations/operation-deps.js';
import { restartOneNode, rollingRestart } from '../../operations/rolling-restart.js';
import type { Output } from '../output.js';

export interface RestartOptions {
  home: string;
  name: string;
  context?: string | undefined;
  node?: string;
  timeoutSeconds: number;
}

export async function run(options: RestartOptions, deps: OperationDeps, output: Output): Promise<number> {
  const handle = await openClusterHandle(options);
  if (options.node !== undefined) {
    await restartOneNode(handle, options.node, options.timeoutSeconds, deps);
    output.out(`${options.node} restarted`);
    return 0;
  }
  const final = await rollingRestart(handle, options.timeoutSeconds, deps);
  output.out(`rolling restart of ${handle.name} done: ${final.leader ?? 'no'} leads (timeline ${final.timeline ?? '-'})`);
  return 0;
}
