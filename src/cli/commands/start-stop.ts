/** `pgpilot start NAME` and `pgpilot stop NAME`: keep the data, stop or start every process. */
import { processControlHint, refuseRemote } from '../../cluster/require-local.js';
import { startCluster, stopCluster, type ProviderDeps } from '../../providers/local/local-provider.js';
import { withoutSecrets } from '../../operations/cluster-status.js';
import { printJson, type Output } from '../output.js';
import { renderStatus } from './status.js';

export async function runStart(options: { home: string; name: string; context?: string | undefined; json: boolean; showSecrets?: boolean; timeoutSeconds: number }, deps: ProviderDeps, output: Output): Promise<number> {
  await refuseRemote(options, 'pgpilot start', processControlHint(options.name));
  const { status, alreadyRunning } = await startCluster(options.home, options.name, deps, options.timeoutSeconds * 1000);
  if (options.json) printJson(output, options.showSecrets === true ? status : withoutSecrets(status));
  else {
    if (alreadyRunning) output.out(`cluster ${status.cluster} was already running`);
    output.out(renderStatus(status, { showPasswords: false }));
  }
  return 0;
}

export async function runStop(options: { home: string; name: string; context?: string | undefined }, deps: ProviderDeps, output: Output): Promise<number> {
  await refuseRemote(options, 'pgpilot stop', processControlHint(options.name));
  const { stopped } = await stopCluster(options.home, options.name, deps);
  output.out(stopped === 0 ? `cluster ${options.name} was not running` : `cluster ${options.name} stopped (data kept; start it with: pgpilot start ${options.name})`);
  return 0;
}
