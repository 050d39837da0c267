/**
 * Refuses what only works on the machine that runs the cluster (its directories, PID files, the
 * processes it starts) when the handle is remote: LOCAL_ONLY, one line and a hint, exit 2
 * (nothing was changed).
 */
import { PgpilotError } from '../shared/errors.js';
import type { ClusterHandle, LocalClusterDetails } from './cluster-handle.js';
import { contextFileFor, openClusterHandle, type ClusterTarget } from './open-cluster-handle.js';

/** The default hint for commands that are not yet available across hosts. */
export const NOT_YET_REMOTE_HINT = 'not yet available for multi-host clusters; run it on a host with a local cluster (without --context / PGPILOT_CONTEXT)';

/** The hint of start/stop (and anything that starts or stops processes) on a remote cluster. */
export function processControlHint(cluster: string): string {
  return `on each host, use systemctl stop/start pgpilot@${cluster} (or pgpilot node run --bundle FILE --data-dir DIR in the foreground)`;
}

export function requireLocal(handle: ClusterHandle, command: string, hint: string = NOT_YET_REMOTE_HINT): LocalClusterDetails {
  if (handle.local !== null) return handle.local;
  throw new PgpilotError('LOCAL_ONLY', `${command} works on a local cluster only; ${handle.name} is reached through ${handle.source}`, { hint, exitCode: 2 });
}

/** Opens the cluster the command names (src/cluster/open-cluster-handle.ts) and refuses a remote one (LOCAL_ONLY). */
export async function openLocalOnly(target: ClusterTarget, command: string, hint?: string): Promise<{ handle: ClusterHandle; local: LocalClusterDetails }> {
  const handle = await openClusterHandle(target);
  return { handle, local: requireLocal(handle, command, hint) };
}

/**
 * For commands that keep reading the local cluster directory themselves (start, stop, destroy,
 * create, ...): refuses with LOCAL_ONLY when a context applies (`--context` or PGPILOT_CONTEXT,
 * after checking that the context is readable and names this cluster), and does nothing otherwise.
 */
export async function refuseRemote(target: ClusterTarget, command: string, hint?: string): Promise<void> {
  if (contextFileFor(target.context) === null) return;
  requireLocal(await openClusterHandle(target), command, hint);
}
