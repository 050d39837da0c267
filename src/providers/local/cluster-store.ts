/**
 * Reading and writing a local cluster's files: cluster.json (the manifest), secrets.json (0600,
 * passwords and API token), each agent's config, and PID files. Writes go through a temp file and
 * a rename so a crash never leaves a half-written manifest.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, readdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import {
  agentConfigSchema,
  clusterManifestSchema,
  clusterSecretsSchema,
  type AgentConfig,
  type ClusterManifest,
  type ClusterSecrets,
} from '../../config/schema.js';
import { loadJsonFile } from '../../config/load.js';
import { PgpilotError } from '../../shared/errors.js';
import { clusterPaths, clustersDir } from './paths.js';

export async function writeFileAtomic(file: string, content: string, mode: number): Promise<void> {
  const temp = `${file}.tmp-${process.pid}`;
  await writeFile(temp, content, { mode });
  await rename(temp, file);
}

export function generateSecrets(): ClusterSecrets {
  const secret = () => randomBytes(24).toString('base64url');
  return {
    superuser: { name: 'postgres', password: secret() },
    replication: { name: 'replicator', password: secret() },
    apiToken: randomBytes(32).toString('base64url'),
  };
}

export async function writeSecrets(file: string, secrets: ClusterSecrets): Promise<void> {
  await writeFileAtomic(file, `${JSON.stringify(secrets, null, 2)}\n`, 0o600);
}

export function readSecrets(file: string): ClusterSecrets {
  return loadJsonFile(clusterSecretsSchema, file);
}

export async function writeManifest(manifest: ClusterManifest): Promise<void> {
  await writeFileAtomic(path.join(manifest.clusterDir, 'cluster.json'), `${JSON.stringify(manifest, null, 2)}\n`, 0o644);
}

export async function writeAgentConfig(file: string, config: AgentConfig): Promise<void> {
  await writeFileAtomic(file, `${JSON.stringify(config, null, 2)}\n`, 0o600);
}

export function readAgentConfig(file: string): AgentConfig {
  return loadJsonFile(agentConfigSchema, file);
}

/** The manifest of cluster `name` under `home`, or CLUSTER_NOT_FOUND with the names that exist. */
export async function readManifest(home: string, name: string): Promise<ClusterManifest> {
  const paths = clusterPaths(home, name);
  if (!existsSync(paths.manifestFile)) {
    const known = await listClusterNames(home);
    throw new PgpilotError('CLUSTER_NOT_FOUND', `no cluster named ${JSON.stringify(name)} in ${home}`, {
      hint: known.length > 0 ? `known clusters: ${known.join(', ')} (pgpilot list)` : 'create one with: pgpilot create NAME',
    });
  }
  return loadJsonFile(clusterManifestSchema, paths.manifestFile);
}

export async function listClusterNames(home: string): Promise<string[]> {
  try {
    const entries = await readdir(clustersDir(home), { withFileTypes: true });
    return entries
      .filter((e) => e.isDirectory() && existsSync(path.join(clustersDir(home), e.name, 'cluster.json')))
      .map((e) => e.name)
      .sort();
  } catch {
    return [];
  }
}

export async function readPidFile(file: string): Promise<number | null> {
  try {
    const pid = Number.parseInt((await readFile(file, 'utf8')).trim(), 10);
    return Number.isInteger(pid) && pid > 1 ? pid : null;
  } catch {
    return null;
  }
}

export async function writePidFile(file: string, pid: number): Promise<void> {
  await writeFileAtomic(file, `${pid}\n`, 0o644);
}
