/**
 * The files `pgpilot cluster init` writes for a cluster whose nodes live on different hosts:
 *
 * - a **node bundle** per host (`DIR/<cluster>-<node>.bundle`, mode 0600): everything one host needs
 *   to run its node with `pgpilot node run --bundle FILE --data-dir DIR` — the node's address and
 *   ports, every node's address (the agent's knownHosts), how to reach etcd (and, for the hosts that
 *   run one, the etcd member's settings), the client CIDRs of pg_hba.conf, the cluster secrets and
 *   the node's TLS material (CA, node certificate and key, etcd member certificate and key);
 * - an **admin context** (`DIR/<cluster>.context.json`, mode 0600): what an operator's CLI needs to
 *   manage the cluster from anywhere (`--context FILE` / PGPILOT_CONTEXT): etcd endpoints, the CA,
 *   the admin client certificate, the secrets and the node list with their ports.
 *
 * Invariants:
 * - Both are plain JSON parsed once with these schemas; a file that does not parse is rejected
 *   with BUNDLE_INVALID / CONTEXT_INVALID and a hint, never half-used.
 * - Both hold secrets (passwords, the API token, private keys): written 0600, never logged.
 * - Ports are the same on every host (the operator's machine cannot probe remote hosts): the
 *   defaults below, each overridable at `cluster init`.
 * - The CA private key is in neither file: it stays next to the context (`caKeyFile`, 0600) and is
 *   needed only to issue certificates for new nodes (`cluster add-node`).
 */
import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { clusterSecretsSchema, nameSchema, tagsSchema } from '../config/schema.js';
import { storeConfigSchema } from '../backup/store-config.js';
import { PgpilotError, errorMessage } from '../shared/errors.js';

const portSchema = z.number().int().min(1).max(65535);
const pemSchema = z.string().min(1).includes('-----BEGIN ');
const httpsUrlSchema = z.string().url().startsWith('https://', 'must be an https:// URL (etcd speaks TLS only)');

/** The fixed default ports of every host of a multi-host cluster (docs/production.md "Ports"). */
export const DEFAULT_HOST_PORTS = {
  pgPort: 5432,
  proxyPort: 5433,
  replicaProxyPort: 5434,
  poolerPort: 6432,
  apiPort: 8008,
  etcdClientPort: 2379,
  etcdPeerPort: 2380,
} as const;

export const hostPortsSchema = z
  .object({
    pgPort: portSchema,
    proxyPort: portSchema,
    replicaProxyPort: portSchema,
    poolerPort: portSchema,
    apiPort: portSchema,
    etcdClientPort: portSchema,
    etcdPeerPort: portSchema,
  })
  .strict()
  .refine((p) => new Set(Object.values(p)).size === Object.values(p).length, { message: 'every port must differ from the others' });
export type HostPorts = z.infer<typeof hostPortsSchema>;

/** One node of the cluster as every bundle and the context list it. */
export const clusterNodeSchema = z
  .object({
    name: nameSchema,
    /** The host's address (an IP address: certificates carry it as an IP SAN). */
    host: z.string().min(1),
    /** Whether this host runs a member of pgpilot's etcd cluster. */
    etcdMember: z.boolean(),
  })
  .strict();
export type ClusterNode = z.infer<typeof clusterNodeSchema>;

/** pgpilot's own etcd (a member on the first 3, or 5, hosts) or the operator's existing etcd. */
export const etcdPlacementSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('pgpilot'), endpoints: z.array(httpsUrlSchema).min(1) }).strict(),
  z.object({ kind: z.literal('external'), endpoints: z.array(httpsUrlSchema).min(1) }).strict(),
]);
export type EtcdPlacement = z.infer<typeof etcdPlacementSchema>;

/** The settings of the etcd member a host runs (only hosts with `etcdMember: true`). */
export const etcdMemberSchema = z
  .object({
    /** Member name: the node name. */
    name: nameSchema,
    /** `name=https://addr:peerPort,...` of every member the cluster starts with. */
    initialCluster: z.string().min(1),
    /** `new` at `cluster init`; `existing` for a member added later (`cluster add-node`). */
    initialClusterState: z.enum(['new', 'existing']),
    initialClusterToken: z.string().min(1),
    /** The member's server and peer certificate (SANs: the host address) and key. */
    certPem: pemSchema,
    keyPem: pemSchema,
  })
  .strict();
export type EtcdMember = z.infer<typeof etcdMemberSchema>;

export const BUNDLE_KIND = 'pgpilot-node-bundle';

export const nodeBundleSchema = z
  .object({
    kind: z.literal(BUNDLE_KIND),
    version: z.literal(1),
    cluster: nameSchema,
    node: nameSchema,
    createdAt: z.string(),
    /** This node's address: postgres, the REST API and the proxy listen on it. */
    host: z.string().min(1),
    ports: hostPortsSchema,
    /** Every node of the cluster when the bundle was made (this one included). */
    nodes: z.array(clusterNodeSchema).min(1),
    etcd: etcdPlacementSchema,
    /** Present when this host runs an etcd member. */
    etcdMember: etcdMemberSchema.nullable(),
    /** Client networks allowed in pg_hba.conf (hostssl + scram-sha-256 only); members' addresses are added by the agent. */
    clientCidrs: z.array(z.string().min(1)).min(1),
    tags: tagsSchema.default({}),
    secrets: clusterSecretsSchema,
    tls: z
      .object({
        caPem: pemSchema,
        /** The node certificate: postgres, REST API, PgBouncer, and the etcd client certificate of agent and watchdog. */
        certPem: pemSchema,
        keyPem: pemSchema,
      })
      .strict(),
    /** The backup store every host archives WAL to (S3 across hosts); absent: no backups. */
    backupStore: storeConfigSchema.optional(),
  })
  .strict()
  .refine((b) => b.nodes.some((n) => n.name === b.node && n.host === b.host), { message: 'the bundle node must be in its own node list' })
  .refine((b) => (b.etcdMember !== null) === (b.nodes.find((n) => n.name === b.node)?.etcdMember === true), {
    message: 'etcdMember must be set exactly when this node runs an etcd member',
  });
export type NodeBundle = z.infer<typeof nodeBundleSchema>;

export const CONTEXT_KIND = 'pgpilot-context';

/**
 * A node of the context: a cluster node, optionally with its own ports. Hosts of a multi-host
 * cluster all use the context's `ports` (no override); a local cluster exported as a context
 * (`pgpilot cluster context NAME`) has every node on one address with ports of its own.
 */
export const contextNodeSchema = clusterNodeSchema
  .extend({
    ports: z
      .object({ pgPort: portSchema, proxyPort: portSchema, replicaProxyPort: portSchema, poolerPort: portSchema.optional(), apiPort: portSchema })
      .strict()
      .optional(),
  })
  .strict();
export type ContextNode = z.infer<typeof contextNodeSchema>;

export const clusterContextSchema = z
  .object({
    kind: z.literal(CONTEXT_KIND),
    version: z.literal(1),
    cluster: nameSchema,
    createdAt: z.string(),
    ports: hostPortsSchema,
    nodes: z.array(contextNodeSchema).min(1),
    etcd: etcdPlacementSchema,
    clientCidrs: z.array(z.string().min(1)).min(1),
    secrets: clusterSecretsSchema,
    /** The admin client certificate (etcd requires one) and the CA that every server is verified against. */
    tls: z.object({ caPem: pemSchema, certPem: pemSchema, keyPem: pemSchema }).strict(),
    /** The CA key file (0600) next to the context, for `cluster add-node`; relative paths are relative to the context file. */
    caKeyFile: z.string().min(1),
    backupStore: storeConfigSchema.optional(),
  })
  .strict();
export type ClusterContext = z.infer<typeof clusterContextSchema>;

function parseWith<T>(schema: z.ZodType<T>, text: string, what: string, file: string, code: 'BUNDLE_INVALID' | 'CONTEXT_INVALID', hint: string): T {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new PgpilotError(code, `${file} is not a ${what} (not JSON: ${errorMessage(error)})`, { hint, exitCode: 2 });
  }
  const result = schema.safeParse(raw);
  if (!result.success) {
    const issue = result.error.issues[0];
    const where = issue === undefined ? '' : `${issue.path.join('.') || '(top)'}: ${issue.message}`;
    throw new PgpilotError(code, `${file} is not a valid ${what} (${where})`, { hint, exitCode: 2 });
  }
  return result.data;
}

export function parseNodeBundle(text: string, file: string): NodeBundle {
  return parseWith(nodeBundleSchema, text, 'pgpilot node bundle', file, 'BUNDLE_INVALID', 'use a bundle written by pgpilot cluster init (or cluster add-node), unchanged');
}

export function parseClusterContext(text: string, file: string): ClusterContext {
  return parseWith(clusterContextSchema, text, 'pgpilot context', file, 'CONTEXT_INVALID', 'use the NAME.context.json written by pgpilot cluster init, unchanged');
}

async function readText(file: string, code: 'BUNDLE_INVALID' | 'CONTEXT_INVALID', what: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    throw new PgpilotError(code, `cannot read the ${what} ${file}: ${(error as NodeJS.ErrnoException).code ?? errorMessage(error)}`, {
      hint: `check the path; cluster init writes it (mode 0600, readable by its owner only)`,
      exitCode: 2,
      cause: error,
    });
  }
}

export async function readNodeBundle(file: string): Promise<NodeBundle> {
  return parseNodeBundle(await readText(file, 'BUNDLE_INVALID', 'node bundle'), file);
}

export async function readClusterContext(file: string): Promise<ClusterContext> {
  return parseClusterContext(await readText(file, 'CONTEXT_INVALID', 'context'), file);
}
