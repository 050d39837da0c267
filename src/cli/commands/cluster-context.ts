/**
 * `pgpilot cluster context NAME --out FILE`: exports a local cluster as an admin context
 * (src/providers/local/local-context.ts), so it can be managed like a multi-host cluster with
 * `--context FILE` / PGPILOT_CONTEXT. The file holds the cluster's secrets and the admin private
 * key: it is created 0600 and never over an existing file (nor through a symlink).
 */
import path from 'node:path';
import { readManifest } from '../../providers/local/cluster-store.js';
import { localClusterContext } from '../../providers/local/local-context.js';
import { refuseRemote } from '../../cluster/require-local.js';
import { validateClusterName } from '../../providers/local/local-provider.js';
import { PgpilotError, errorMessage } from '../../shared/errors.js';
import { writePrivateFile } from '../../shared/fs-safe.js';
import { printJson, type Output } from '../output.js';

export interface ClusterContextOptions {
  home: string;
  name: string;
  context?: string | undefined;
  out: string;
  json: boolean;
}

export async function run(options: ClusterContextOptions, output: Output, nowMs: number): Promise<number> {
  await refuseRemote(options, 'pgpilot cluster context', 'the context file you have is already the way to reach that cluster');
  const manifest = await readManifest(options.home, validateClusterName(options.name));
  const context = localClusterContext(manifest, nowMs);
  const file = path.resolve(options.out);
  try {
    await writePrivateFile(file, `${JSON.stringify(context, null, 2)}\n`);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new PgpilotError('INPUT_INVALID', `cannot write ${file}: ${code === 'EEXIST' ? 'it already exists' : (code ?? errorMessage(error))}`, {
      hint: code === 'EEXIST' ? 'remove it first, or choose another --out file' : 'choose a file in an existing directory you can write to',
      exitCode: 2,
    });
  }
  if (options.json) printJson(output, { cluster: manifest.name, contextFile: file, etcdEndpoints: context.etcd.endpoints, nodes: context.nodes.map((n) => n.name) });
  else {
    output.out(`wrote ${file} (mode 0600: it holds the cluster's passwords and the admin key)`);
    output.out(`use it with: pgpilot status ${manifest.name} --context ${file}   (or PGPILOT_CONTEXT=${file})`);
  }
  return 0;
}
