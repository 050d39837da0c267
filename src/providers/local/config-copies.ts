/**
 * The last good copies of /config that the agents of a local cluster keep in their node
 * directories (src/config/last-good-config.ts), for `pgpilot config repair`. Read-only: the newest
 * valid copy wins; a node whose copy is missing or damaged is skipped (and listed).
 */
import type { ClusterManifest, DynamicConfig } from '../../config/schema.js';
import { readLastGoodConfig } from '../../config/last-good-config.js';

export interface ConfigCopy {
  node: string;
  savedAtMs: number;
  config: DynamicConfig;
}

/** Every node's valid copy, newest first, and the nodes without one. */
export async function lastGoodConfigCopies(manifest: ClusterManifest): Promise<{ copies: ConfigCopy[]; missing: string[] }> {
  const copies: ConfigCopy[] = [];
  const missing: string[] = [];
  for (const node of manifest.nodes) {
    const copy = await readLastGoodConfig(node.nodeDir);
    if (copy === null) missing.push(node.name);
    else copies.push({ node: node.name, savedAtMs: copy.savedAtMs, config: copy.config });
  }
  copies.sort((a, b) => b.savedAtMs - a.savedAtMs || a.node.localeCompare(b.node));
  return { copies, missing };
}
