/** `pgpilot destroy NAME --yes`: stop every process of the cluster and delete its directory. */
import { createInterface } from 'node:readline/promises';
import { destroyCluster, validateClusterName, type ProviderDeps } from '../../providers/local/local-provider.js';
import { readManifest } from '../../providers/local/cluster-store.js';
import { PgpilotError } from '../../shared/errors.js';
import type { Output } from '../output.js';

async function confirmInteractively(name: string): Promise<boolean> {
  if (!process.stdin.isTTY) return false;
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = await rl.question(`This deletes cluster ${name} and ALL its data. Type the cluster name to confirm: `);
    return answer.trim() === name;
  } finally {
    rl.close();
  }
}

export async function run(options: { home: string; name: string; yes: boolean }, deps: ProviderDeps, output: Output): Promise<number> {
  const name = validateClusterName(options.name);
  await readManifest(options.home, name); // CLUSTER_NOT_FOUND before asking anything
  if (!options.yes && !(await confirmInteractively(name))) {
    throw new PgpilotError('CONFIRMATION_REQUIRED', `refusing to destroy ${name} without confirmation`, {
      hint: `this deletes all its data; run: pgpilot destroy ${name} --yes`,
      exitCode: 2,
    });
  }
  await destroyCluster(options.home, name, deps);
  output.out(`cluster ${name} destroyed`);
  return 0;
}
