/** `pgpilot list [--json]`: the clusters under the home directory and what runs of each. */
import { listClusters } from '../../providers/local/local-provider.js';
import { printJson, renderTable, type Output } from '../output.js';

export async function run(options: { home: string; json: boolean }, output: Output): Promise<number> {
  const clusters = await listClusters(options.home);
  if (options.json) {
    printJson(output, clusters);
    return 0;
  }
  if (clusters.length === 0) {
    output.out(`no clusters in ${options.home} (create one with: pgpilot create NAME)`);
    return 0;
  }
  output.out(
    renderTable(
      ['NAME', 'NODES', 'AGENTS RUNNING', 'ETCD', 'DIRECTORY'],
      clusters.map((c) => [c.name, String(c.nodes), String(c.running), c.etcd, c.clusterDir]),
    ),
  );
  return 0;
}
