/**
 * Every configuration shape pgpilot reads, as zod schemas parsed once at the edge (file load,
 * etcd read) and then treated as frozen values. Units are in the names (`ttlSeconds`,
 * `loopWaitMs`, `maximumLagOnFailoverBytes`).
 *
 * - `ClusterManifest` is `cluster.json` of the local provider: ports, paths, node list.
 * - `ClusterSecrets` is `secrets.json` (mode 0600): passwords and the REST API token.
 * - `AgentConfig` is one agent's config file, written by the provider or `node init`.
 * - `DynamicConfig` lives in etcd under /config and may change while the cluster runs.
 */
import { z } from 'zod';

/** Cluster and node names: DNS-label-like, so they are safe in paths, etcd keys and slot names. */
export const NAME_PATTERN = /^[a-z][a-z0-9-]{0,30}[a-z0-9]$|^[a-z]$/;
export const nameSchema = z
  .string()
  .regex(NAME_PATTERN, 'must be 1-32 characters of lower-case letters, digits and dashes, starting with a letter');

export const MIN_NODES = 1;
export const MAX_NODES = 9;

const portSchema = z.number().int().min(1).max(65535);

export const tagsSchema = z
  .object({
    nofailover: z.boolean().optional(),
    noloadbalance: z.boolean().optional(),
    priority: z.number().int().optional(),
  })
  .strict();
export type Tags = z.infer<typeof tagsSchema>;

export const nodeManifestSchema = z
  .object({
    name: nameSchema,
    host: z.string().min(1),
    pgPort: portSchema,
    apiPort: portSchema,
    proxyPort: portSchema,
    replicaProxyPort: portSchema,
    /** PgBouncer's port on this node (`pooler enable`); absent in clusters created before pgpilot had a pooler. */
    poolerPort: portSchema.optional(),
    nodeDir: z.string().min(1),
    dataDir: z.string().min(1),
    configFile: z.string().min(1),
    logFile: z.string().min(1),
    postgresLogFile: z.string().min(1),
    pidFile: z.string().min(1),
  })
  .strict();
export type NodeManifest = z.infer<typeof nodeManifestSchema>;

export const clusterManifestSchema = z
  .object({
    version: z.literal(1),
    name: nameSchema,
    createdAt: z.string(),
    clusterDir: z.string().min(1),
    binDir: z.string().min(1),
    secretsFile: z.string().min(1),
    etcd: z
      .object({
        host: z.string().min(1),
        clientPort: portSchema,
        peerPort: portSchema,
        dataDir: z.string().min(1),
        logFile: z.string().min(1),
        pidFile: z.string().min(1),
      })
      .strict(),
    nodes: z.array(nodeManifestSchema).min(MIN_NODES).max(MAX_NODES),
  })
  .strict();
export type ClusterManifest = z.infer<typeof clusterManifestSchema>;

export const clusterSecretsSchema = z
  .object({
    superuser: z.object({ name: z.string().min(1), password: z.string().min(16) }).strict(),
    replication: z.object({ name: z.string().min(1), password: z.string().min(16) }).strict(),
    apiToken: z.string().min(32),
    /** PgBouncer's auth_user (`pooler enable`, src/pooler/): only looks up SCRAM verifiers. */
    pooler: z.object({ name: z.string().min(1), password: z.string().min(16) }).strict().optional(),
  })
  .strict();
export type ClusterSecrets = z.infer<typeof clusterSecretsSchema>;

/** A party's TLS identity and trust: the cluster CA, its certificate and private key (PEM files). */
export const tlsFilesSchema = z
  .object({
    caFile: z.string().min(1),
    certFile: z.string().min(1),
    keyFile: z.string().min(1),
  })
  .strict();
export type TlsFiles = z.infer<typeof tlsFilesSchema>;

export const agentConfigSchema = z
  .object({
    cluster: nameSchema,
    node: nameSchema,
    /** Address other members and clients use to reach this node's postgres, API and proxy. */
    host: z.string().min(1),
    /** Address postgres and the API listen on. Loopback unless configured otherwise. */
    listenAddress: z.string().min(1),
    pgPort: portSchema,
    apiPort: portSchema,
    /** Leader port of the built-in proxy: every new connection goes to the current leader. */
    proxyPort: portSchema,
    /** Replica port of the built-in proxy: streaming replicas within the lag limit, else the leader. */
    replicaProxyPort: portSchema,
    /** PgBouncer's port (src/pooler/): it runs while the dynamic config's `pooler.enabled` is true. */
    poolerPort: portSchema.optional(),
    /** How long the proxy holds a new connection while there is no leader (failover, switchover). */
    proxyHoldTimeoutMs: z.number().int().min(0).max(600_000).default(30_000),
    nodeDir: z.string().min(1),
    dataDir: z.string().min(1),
    logFile: z.string().min(1),
    postgresLogFile: z.string().min(1),
    binDir: z.string().min(1),
    secretsFile: z.string().min(1),
    /** etcd client URLs; https only (pgpilot's etcd requires TLS and a client certificate). */
    etcdEndpoints: z.array(z.string().url().startsWith('https://', 'must be an https:// URL (etcd speaks TLS only)')).min(1),
    tags: tagsSchema.default({}),
    /** CIDRs allowed in pg_hba.conf (scram-sha-256 only). */
    allowedCidrs: z.array(z.string().min(1)).min(1).default(['127.0.0.1/32', '::1/128']),
    /**
     * The backup store config file (src/backup/store-config.ts, 0600, readable by the postgres OS
     * user). When set, every member archives WAL there and the leader runs the backup schedule.
     */
    backupStoreFile: z.string().min(1).optional(),
    /**
     * The node's certificate: postgres, the REST API and PgBouncer serve it, and the agent and
     * watchdog present it to etcd as their client certificate. Required: pgpilot has no plain-text mode.
     */
    tls: tlsFilesSchema,
    /**
     * The host of every node of the cluster: the only addresses this agent streams from or sends
     * REST calls to (member records naming others are ignored, src/ha/member-trust.ts). Absent:
     * this node's own host and loopback.
     */
    knownHosts: z.array(z.string().min(1)).optional(),
  })
  .strict();
export type AgentConfig = z.infer<typeof agentConfigSchema>;

export const backupSettingsSchema = z
  .object({
    schedule: z.string().min(1).nullable().default('0 3 * * *'),
    keepDaily: z.number().int().min(0).max(3650).default(7),
    keepWeekly: z.number().int().min(0).max(520).default(4),
    /** Keep every backup younger than this many days (null: rule off). */
    keepDays: z.number().int().min(1).max(3650).nullable().default(null),
  })
  .strict();
export type BackupSettings = z.infer<typeof backupSettingsSchema>;

export function defaultBackupSettings(): BackupSettings {
  return { schedule: '0 3 * * *', keepDaily: 7, keepWeekly: 4, keepDays: null };
}

/** PgBouncer on every node (`pooler enable`, src/pooler/), in front of the node's leader port. */
export const poolerSettingsSchema = z
  .object({
    enabled: z.boolean().default(false),
    poolMode: z.enum(['transaction', 'session']).default('transaction'),
    /** Server connections per (database, user) pair on each node. */
    defaultPoolSize: z.number().int().min(1).max(1000).default(20),
  })
  .strict();
export type PoolerSettings = z.infer<typeof poolerSettingsSchema>;

export function defaultPoolerSettings(): PoolerSettings {
  return { enabled: false, poolMode: 'transaction', defaultPoolSize: 20 };
}

export const dynamicConfigSchema = z
  .object({
    /** Leader lease time to live. A leader that cannot renew for this long has already fenced itself. */
    ttlSeconds: z.number().int().min(2).max(600).default(6),
    /** Time between two HA loop ticks. Must leave room for several renewals within one TTL. */
    loopWaitMs: z.number().int().min(100).max(60_000).default(1000),
    /** A replica further behind than this (bytes) is not eligible for promotion. */
    maximumLagOnFailoverBytes: z.number().int().min(0).default(16 * 1024 * 1024),
    /**
     * `quorum`: the leader keeps `synchronous_standby_names = ANY k (...)` over its healthy
     * replicas and publishes the set under /sync; only members of that set may be promoted
     * (src/ha/sync-set.ts, docs/ha-loop.md "Synchronous mode").
     */
    synchronous: z.enum(['off', 'quorum']).default('off'),
    /** Sync mode: when no synchronous replica is left, keep the set (writes block) instead of degrading to async. */
    synchronousStrict: z.boolean().default(false),
    /** Sync mode: k in `ANY k (...)`, the number of replicas that must confirm each commit. */
    synchronousNodeCount: z.number().int().min(1).max(16).default(1),
    failsafe: z.boolean().default(false),
    /**
     * Base backups (src/backup/): a 5-field cron expression in UTC run by the leader's agent
     * (null: no scheduled backups), and how many to keep (src/backup/retention.ts).
     */
    backup: backupSettingsSchema.default(defaultBackupSettings()),
    /** PgBouncer on every node (src/pooler/): each agent starts, reloads or stops its own. */
    pooler: poolerSettingsSchema.default(defaultPoolerSettings()),
    postgresql: z
      .object({
        parameters: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).default({}),
      })
      .strict()
      .default({ parameters: {} }),
  })
  .strict()
  .refine((c) => c.loopWaitMs * 2 < c.ttlSeconds * 1000, {
    message: 'loopWaitMs must be less than half of ttlSeconds so the leader can renew at least twice per lease',
    path: ['loopWaitMs'],
  });
export type DynamicConfig = z.infer<typeof dynamicConfigSchema>;

export function defaultDynamicConfig(): DynamicConfig {
  return dynamicConfigSchema.parse({});
}
