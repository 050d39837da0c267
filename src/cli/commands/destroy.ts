/** `pgpilot destroy NAME --yes`: stop every process of the cluster and delete its directory. */
import { processControlHint, refuseRemote } from '../../cluster/require-local.js';
import { askOnTerminal } from '../confirm.js';
import { destroyCluster, validateClusterName, type ProviderDeps } from '../../providers/local/local-provider.js';
import { readManifest } from '../../providers/local/cluster-store.js';
import { PgpilotError } from '../../shared/errors.js';
import type { Output } from '../output.js';
import { describeStore, readStoreConfigFile } from '../../backup/store-config.js';
import { clusterPathsIn } from '../../providers/local/paths.js';

/** What `destroy` deletes besides the data: the backups, when they are kept inside the cluster directory. */
async function backupsNote(clusterDir: string): Promise<string> {
  try {
    const store = await readStoreConfigFile(clusterPathsIn(clusterDir).backupStoreFile);
    if (store.kind === 'fs' && (store.rootDir === clusterDir || store.rootDir.startsWith(`${clusterDir}/`))) {
      return ` and ALL its backups and archived WAL (stored in ${store.rootDir}; use an S3 store for backups that outlive the cluster)`;
    }
    return ` (its backups in ${describeStore(store)} are kept)`;
  } catch {
    return '';
  }
}

export async function run(options: { home: string; name: string; context?: string | undefined; yes: boolean }, deps: ProviderDeps, output: Output): Promise<number> {
  await refuseRemote(options, 'pgpilot destroy', processControlHint(options.name));
  const name = validateClusterName(options.name);
  const manifest = await readManifest(options.home, name); // CLUSTER_NOT_FOUND before asking anything
  const note = await backupsNote(manifest.clusterDir);
  if (!options.yes && !(await askOnTerminal(`This deletes cluster ${name} and ALL its data${note}. Type the cluster name to confirm: `, (answer) => answer === name))) {
    throw new PgpilotError('CONFIRMATION_REQUIRED', `refusing to destroy ${name} without confirmation`, {
      hint: `this deletes all its data${note}; run: pgpilot destroy ${name} --yes`,
      exitCode: 2,
    });
  }
  await destroyCluster(options.home, name, deps);
  output.out(`cluster ${name} destroyed${note === '' ? '' : `: its data${note.replace(/^ and /, ', ')}`}`);
  return 0;
}
