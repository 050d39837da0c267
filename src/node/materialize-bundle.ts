/**
 * Bundle + data directory -> the files a node runs from (layout: src/node/node-layout.ts).
 *
 * Invariants:
 * - The bundle is the source of truth: the agent config, secrets, TLS files and backup store
 *   config are written afresh at every start (atomically: temp file + rename, owner and mode set
 *   before the rename), so a new bundle (rotated certificates, a new node list) takes effect on the
 *   next `node run`. The PostgreSQL data directory and the etcd data directory are never touched
 *   beyond creating them empty with the right owner and mode.
 * - A data directory belongs to exactly one (cluster, node): `node.json` records it on first use
 *   and every later start compares; a directory of another cluster or node, or a non-empty one
 *   pgpilot did not make, is refused (DATA_DIR_FOREIGN) rather than reused.
 * - Secret files are 0600: secrets.json, agent.json and etcd.key belong to the user running
 *   `node run`; node.key and backup-store.json are handed to the postgres OS user when root
 *   (postgres and PgBouncer read the key; archive_command reads the store config).
 * - pg_hba.conf admits the bundle's client CIDRs plus every node's address (/32 or /128) so that
 *   replicas can stream and the REST/pg_rewind paths work between hosts; always hostssl + SCRAM.
 */
import { isIPv6 } from 'node:net';
import { chmod, chown, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import { agentConfigSchema, type AgentConfig } from '../config/schema.js';
import { parseConfig } from '../config/load.js';
import type { NodeBundle } from '../multihost/bundle.js';
import { findPgBinDir } from '../postgres/bin-dir.js';
import { ensurePostgresCanReach as ensurePostgresCanReachDir, ensurePostgresOwnedDir, postgresOsIds } from '../postgres/initdb.js';
import { PgpilotError, errorMessage } from '../shared/errors.js';
import { makeDirectories } from '../shared/fs-safe.js';
import { isRoot } from '../shared/process-runner.js';
import { nodeLayout, type NodeLayout } from './node-layout.js';
import { z } from 'zod';

export const NODE_IDENTITY_KIND = 'pgpilot-node-data-dir';

const identitySchema = z.object({ kind: z.literal(NODE_IDENTITY_KIND), version: z.literal(1), cluster: z.string(), node: z.string(), createdAt: z.string() }).strict();
export type NodeIdentity = z.infer<typeof identitySchema>;

/** Entries a fresh file system may already hold in an otherwise empty data directory. */
const IGNORABLE_ENTRIES = new Set(['lost+found']);

export type FileOwner = 'self' | 'postgres';

export interface PlannedFile {
  file: string;
  content: string;
  mode: number;
  owner: FileOwner;
}

export interface NodeFilesPlan {
  layout: NodeLayout;
  agentConfig: AgentConfig;
  files: PlannedFile[];
}

/** `addr/32` (IPv4) or `addr/128` (IPv6): one host as a pg_hba network. */
export function hostCidr(address: string): string {
  return isIPv6(address) ? `${address}/128` : `${address}/32`;
}

/** The agent config of the bundle's node running from `layout` (pure). */
export function agentConfigForBundle(bundle: NodeBundle, layout: NodeLayout, binDir: string): AgentConfig {
  const knownHosts = [...new Set(bundle.nodes.map((n) => n.host))];
  const allowedCidrs = [...new Set([...bundle.clientCidrs, ...knownHosts.map(hostCidr)])];
  return parseConfig(
    agentConfigSchema,
    {
      cluster: bundle.cluster,
      node: bundle.node,
      host: bundle.host,
      listenAddress: bundle.host,
      pgPort: bundle.ports.pgPort,
      apiPort: bundle.ports.apiPort,
      proxyPort: bundle.ports.proxyPort,
      replicaProxyPort: bundle.ports.replicaProxyPort,
      poolerPort: bundle.ports.poolerPort,
      proxyHoldTimeoutMs: 30_000,
      nodeDir: layout.dataDir,
      dataDir: layout.pgDataDir,
      logFile: layout.agentLogFile,
      postgresLogFile: layout.postgresLogFile,
      binDir,
      secretsFile: layout.secretsFile,
      etcdEndpoints: [...bundle.etcd.endpoints],
      tags: { ...bundle.tags },
      allowedCidrs,
      ...(bundle.backupStore === undefined ? {} : { backupStoreFile: layout.backupStoreFile }),
      tls: { caFile: layout.caFile, certFile: layout.nodeCertFile, keyFile: layout.nodeKeyFile },
      knownHosts,
    },
    'agent config from the bundle',
  );
}

const json = (value: unknown): string => `${JSON.stringify(value, null, 2)}\n`;

/** Every file written at a start, with its content, mode and owner (pure). */
export function planNodeFiles(bundle: NodeBundle, dataDir: string, binDir: string): NodeFilesPlan {
  const layout = nodeLayout(dataDir);
  const agentConfig = agentConfigForBundle(bundle, layout, binDir);
  const files: PlannedFile[] = [
    { file: layout.agentConfigFile, content: json(agentConfig), mode: 0o600, owner: 'self' },
    { file: layout.secretsFile, content: json(bundle.secrets), mode: 0o600, owner: 'self' },
    { file: layout.caFile, content: bundle.tls.caPem, mode: 0o644, owner: 'self' },
    { file: layout.nodeCertFile, content: bundle.tls.certPem, mode: 0o644, owner: 'postgres' },
    { file: layout.nodeKeyFile, content: bundle.tls.keyPem, mode: 0o600, owner: 'postgres' },
  ];
  if (bundle.etcdMember !== null) {
    files.push({ file: layout.etcdCertFile, content: bundle.etcdMember.certPem, mode: 0o644, owner: 'self' });
    files.push({ file: layout.etcdKeyFile, content: bundle.etcdMember.keyPem, mode: 0o600, owner: 'self' });
  }
  if (bundle.backupStore !== undefined) {
    files.push({ file: layout.backupStoreFile, content: json(bundle.backupStore), mode: 0o600, owner: 'postgres' });
  }
  return { layout, agentConfig, files };
}

/** Compares a recorded identity with the bundle: null when DIR is the bundle node's, else why not (pure). */
export function identityMismatch(recorded: NodeIdentity, bundle: Pick<NodeBundle, 'cluster' | 'node'>): string | null {
  if (recorded.cluster === bundle.cluster && recorded.node === bundle.node) return null;
  return `it belongs to node ${recorded.node} of cluster ${recorded.cluster}, not to ${bundle.node} of ${bundle.cluster}`;
}

function foreign(dataDir: string, why: string): PgpilotError {
  return new PgpilotError('DATA_DIR_FOREIGN', `refusing data directory ${dataDir}: ${why}`, {
    hint: 'give each node its own --data-dir (the default is /var/lib/pgpilot/<cluster>-<node>); remove the old one only if its data is no longer needed',
    exitCode: 2,
  });
}

/** Reads DIR/node.json; null when DIR is new (absent or empty). Throws DATA_DIR_FOREIGN otherwise. */
export async function readNodeIdentity(layout: NodeLayout): Promise<NodeIdentity | null> {
  let text: string;
  try {
    text = await readFile(layout.identityFile, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw foreign(layout.dataDir, `cannot read node.json: ${errorMessage(error)}`);
    const entries = await readdir(layout.dataDir).catch(() => [] as string[]);
    const others = entries.filter((e) => !IGNORABLE_ENTRIES.has(e));
    if (others.length > 0) throw foreign(layout.dataDir, `it is not empty and holds no node.json (pgpilot did not make it; found ${others.slice(0, 3).join(', ')})`);
    return null;
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw foreign(layout.dataDir, 'its node.json is not JSON');
  }
  const parsed = identitySchema.safeParse(raw);
  if (!parsed.success) throw foreign(layout.dataDir, 'its node.json is not a pgpilot node identity');
  return parsed.data;
}

async function writeInPlace(planned: PlannedFile, postgres: { uid: number; gid: number } | null): Promise<void> {
  const temp = `${planned.file}.tmp-${process.pid}`;
  await writeFile(temp, planned.content, { mode: planned.mode });
  await chmod(temp, planned.mode);
  if (planned.owner === 'postgres' && postgres !== null) await chown(temp, postgres.uid, postgres.gid);
  await rename(temp, planned.file);
}

/** As root, postgres runs as the postgres OS user: it must be able to reach `dir`. */
async function ensurePostgresCanReach(dir: string): Promise<void> {
  await ensurePostgresCanReachDir(dir, 'use a data directory outside /root (the default is /var/lib/pgpilot/<cluster>-<node>), or make its parent directories traversable (chmod o+x)');
}

export interface MaterializeOptions {
  /** PostgreSQL binaries (default: findPgBinDir). */
  binDir?: string;
  /** createdAt of a new node.json. */
  nowIso: string;
}

export interface MaterializedNode {
  layout: NodeLayout;
  agentConfig: AgentConfig;
  /** true when this start created DIR's identity (a new node). */
  fresh: boolean;
}

/** Checks DIR's identity, then writes every file of the plan and creates pgdata/ and etcd/ when absent. */
export async function materializeBundle(bundle: NodeBundle, dataDir: string, options: MaterializeOptions): Promise<MaterializedNode> {
  const binDir = await findPgBinDir(options.binDir);
  const plan = planNodeFiles(bundle, dataDir, binDir);
  const { layout } = plan;
  const recorded = await readNodeIdentity(layout);
  if (recorded !== null) {
    const why = identityMismatch(recorded, bundle);
    if (why !== null) throw foreign(layout.dataDir, why);
  }
  try {
    await makeDirectories(layout.dataDir, 0o755);
    await chmod(layout.dataDir, 0o755);
    await makeDirectories(layout.tlsDir, 0o755);
    await chmod(layout.tlsDir, 0o755);
  } catch (error) {
    throw new PgpilotError('HOME_UNUSABLE', `cannot use ${layout.dataDir} as the node's data directory: ${(error as NodeJS.ErrnoException).code ?? errorMessage(error)}`, {
      hint: 'choose a writable directory with --data-dir (run as root on a server)',
      exitCode: 2,
      cause: error,
    });
  }
  await ensurePostgresCanReach(layout.dataDir);
  if (recorded === null) {
    const identity: NodeIdentity = { kind: NODE_IDENTITY_KIND, version: 1, cluster: bundle.cluster, node: bundle.node, createdAt: options.nowIso };
    await writeInPlace({ file: layout.identityFile, content: json(identity), mode: 0o644, owner: 'self' }, null);
  }
  const postgres = isRoot() ? await postgresOsIds() : null;
  for (const planned of plan.files) await writeInPlace(planned, postgres);
  // Only created (and given the right owner and mode), never emptied or rewritten.
  await ensurePostgresOwnedDir(layout.pgDataDir, 0o700);
  if (bundle.etcdMember !== null) {
    await makeDirectories(layout.etcdDataDir, 0o700);
    await chmod(layout.etcdDataDir, 0o700);
  }
  return { layout, agentConfig: plan.agentConfig, fresh: recorded === null };
}
