/**
 * Picks how to reach the cluster a command names (issue 18, "Precedence"): `--context FILE`, else
 * the PGPILOT_CONTEXT environment variable, else the local cluster of that name under the pgpilot
 * home. With a context, the NAME argument must be the context's cluster (INPUT_INVALID otherwise:
 * a command never acts on another cluster than the one named); a context that cannot be read or
 * does not parse is CONTEXT_INVALID (exit 2).
 */
import { readClusterContext } from '../multihost/bundle.js';
import { openLocalHandle } from '../providers/local/local-handle.js';
import { validateClusterName } from '../providers/local/local-provider.js';
import { openRemoteHandle } from '../providers/remote/remote-handle.js';
import { PgpilotError } from '../shared/errors.js';
import type { ClusterHandle } from './cluster-handle.js';

export const CONTEXT_ENV = 'PGPILOT_CONTEXT';

export interface ClusterTarget {
  /** The NAME argument of the command. */
  name: string;
  /** The resolved pgpilot home (local clusters; the fallback place of a context's CA file). */
  home: string;
  /** `--context FILE`. */
  context?: string | undefined;
}

/** The context file to use, if any (pure): `--context` first, then PGPILOT_CONTEXT. */
export function contextFileFor(option: string | undefined, env: NodeJS.ProcessEnv = process.env): { file: string; from: '--context' | 'PGPILOT_CONTEXT' } | null {
  if (option !== undefined && option.length > 0) return { file: option, from: '--context' };
  const fromEnv = env[CONTEXT_ENV];
  if (fromEnv !== undefined && fromEnv.length > 0) return { file: fromEnv, from: 'PGPILOT_CONTEXT' };
  return null;
}

export async function openClusterHandle(target: ClusterTarget, env: NodeJS.ProcessEnv = process.env): Promise<ClusterHandle> {
  const name = validateClusterName(target.name);
  const chosen = contextFileFor(target.context, env);
  if (chosen === null) return openLocalHandle(target.home, name);
  const context = await readClusterContext(chosen.file);
  if (context.cluster !== name) {
    throw new PgpilotError('INPUT_INVALID', `the context ${chosen.file} (${chosen.from}) is for cluster ${context.cluster}, not ${name}`, {
      hint:
        chosen.from === '--context'
          ? `name the context's cluster (pgpilot COMMAND ${context.cluster} --context ${chosen.file}), or pass the context of ${name}`
          : `name the context's cluster (${context.cluster}), or unset PGPILOT_CONTEXT to reach a local cluster`,
      exitCode: 2,
    });
  }
  return openRemoteHandle({ contextFile: chosen.file, context, home: target.home });
}
