/** `pgpilot create NAME [--nodes N] [--home DIR]`: a new local cluster, waited for until ready. */
import { createCluster, type ProviderDeps } from '../../providers/local/local-provider.js';
import { printJson, type Output } from '../output.js';
import { renderStatus } from './status.js';

export interface CreateCommandOptions {
  home: string;
  name: string;
  nodes: number;
  binDir?: string;
  timeoutSeconds: number;
  json: boolean;
}

export async function run(options: CreateCommandOptions, deps: ProviderDeps, output: Output): Promise<number> {
  const status = await createCluster(
    { home: options.home, name: options.name, nodes: options.nodes, binDir: options.binDir, timeoutMs: options.timeoutSeconds * 1000 },
    deps,
  );
  if (options.json) {
    printJson(output, status);
    return 0;
  }
  output.out(renderStatus(status, { showPasswords: true }));
  output.out('');
  output.out('Save the connection strings: they hold the superuser password (also in secrets.json, mode 0600).');
  output.out(`Connect with: pgpilot connect ${status.cluster}`);
  return 0;
}
