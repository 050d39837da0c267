/**
 * `pgpilot pooler enable NAME [--pool-mode transaction|session] [--pool-size N]`,
 * `pgpilot pooler disable NAME` and `pgpilot pooler show NAME [--json]`: PgBouncer on every node,
 * in front of that node's leader port (src/pooler/, docs/operations.md).
 *
 * `enable` prepares postgres first (the pooler's auth role with a generated password kept in
 * secrets.json, the lookup function and CONNECT in every database, on the leader), then writes
 * the settings into the dynamic config in etcd with a compare-and-set; every agent starts or
 * reloads its PgBouncer within a loop tick or two, and the command waits until each running node
 * serves the new settings and a login through a pooler port works. `disable` writes
 * `enabled: false` and waits until every PgBouncer has stopped (the role and function stay; they
 * only allow looking up verifiers, and a later `enable` reuses them).
 */
import { clusterCaPem } from '../../providers/local/local-tls.js';
import { storedConfigOrThrow } from '../../config/stored-config.js';
import { readFile } from 'node:fs/promises';
import { clusterKeys } from '../../dcs/keys.js';
import type { Dcs } from '../../dcs/dcs.js';
import { recordEvent } from '../../state/events.js';
import { defaultDynamicConfig, dynamicConfigSchema, type ClusterManifest, type DynamicConfig, type PoolerSettings } from '../../config/schema.js';
import { connectLocal } from '../../postgres/queries.js';
import { openClusterDcs, snapshotCluster, type ProviderDeps } from '../../providers/local/local-provider.js';
import { readSecrets, writeSecrets } from '../../providers/local/cluster-store.js';
import { maskPassword, poolerWithoutSecrets } from '../../operations/cluster-status.js';
import { PgpilotError, errorMessage } from '../../shared/errors.js';
import { withAppContext } from '../../operations/app-context.js';
import { openLocalOnly } from '../../cluster/require-local.js';
import { openClusterHandle } from '../../cluster/open-cluster-handle.js';
import type { ClusterHandle } from '../../cluster/cluster-handle.js';
import { printJson, renderTable, type Output } from '../output.js';
import { findPgbouncerBinary } from '../../pooler/pgbouncer-process.js';
import { POOLER_ROLE, connectableDatabases, ensureLookupFunction, ensurePoolerRole, generatePoolerPassword, grantConnect } from '../../pooler/pooler-auth.js';
import { livePoolerPids, poolerPaths } from '../../pooler/pooler-files.js';
import type { PoolerStatus } from '../../pooler/pooler-status.js';

export interface PoolerEnableOptions {
  home: string;
  name: string;
  context?: string | undefined;
  poolMode?: string;
  poolSize?: number;
  json: boolean;
  timeoutSeconds: number;
}

export interface PoolerDisableOptions {
  home: string;
  name: string;
  context?: string | undefined;
  json: boolean;
  timeoutSeconds: number;
}

const CAS_ATTEMPTS = 5;

/** The pooler settings after applying the flags (pure); CONFIG_INVALID with the flag names. */
export function nextPoolerSettings(current: PoolerSettings, flags: { enabled: boolean; poolMode?: string; poolSize?: number }): PoolerSettings {
  const candidate = {
    enabled: flags.enabled,
    poolMode: flags.poolMode ?? current.poolMode,
    defaultPoolSize: flags.poolSize ?? current.defaultPoolSize,
  };
  const parsed = dynamicConfigSchema.safeParse({ ...defaultDynamicConfig(), pooler: candidate });
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => {
      const key = String(issue.path[1] ?? issue.path[0] ?? '');
      const flag = key === 'poolMode' ? '--pool-mode' : key === 'defaultPoolSize' ? '--pool-size' : key;
      return `${flag}: ${issue.message}`;
    });
    throw new PgpilotError('CONFIG_INVALID', `invalid pooler settings: ${problems.join('; ')}`, {
      hint: '--pool-mode transaction|session, --pool-size 1..1000; nothing was changed',
      exitCode: 2,
    });
  }
  return parsed.data.pooler;
}

/** Writes the pooler settings into /config with a compare-and-set (retried on a concurrent change). */
async function writePoolerSettings(dcs: Dcs, cluster: string, change: (current: PoolerSettings) => PoolerSettings): Promise<{ before: PoolerSettings; after: PoolerSettings }> {
  const key = clusterKeys(cluster).config;
  for (let attempt = 1; attempt <= CAS_ATTEMPTS; attempt += 1) {
    const raw = await dcs.get(key);
    // An unreadable /config is refused (CONFIG_UNREADABLE), never overwritten with the defaults.
    const config: DynamicConfig = storedConfigOrThrow(raw, cluster);
    const after = change(config.pooler);
    if (JSON.stringify(after) === JSON.stringify(config.pooler)) return { before: config.pooler, after };
    const value = JSON.stringify({ ...config, pooler: after });
    const written = raw === null ? await dcs.createIfAbsent(key, value) : await dcs.replaceIfEquals(key, raw, value);
    if (written) return { before: config.pooler, after };
  }
  throw new PgpilotError('INPUT_INVALID', `the config of ${cluster} kept changing while the pooler settings were being written`, {
    hint: 'run the command again',
    retryable: true,
    exitCode: 2,
  });
}

/** Every node must have a pooler port (recorded at create time since pgpilot has a pooler). */
export function requirePoolerPorts(manifest: ClusterManifest): void {
  const missing = manifest.nodes.filter((n) => n.poolerPort === undefined).map((n) => n.name);
  if (missing.length > 0) {
    throw new PgpilotError('POOLER_PORT_MISSING', `${missing.join(', ')} of ${manifest.name} ha${missing.length === 1 ? 's' : 've'} no pooler port (the cluster was created before pgpilot had a pooler)`, {
      hint: `re-create the cluster to get pooler ports: take a backup, then pgpilot create NEW --from-backup ${manifest.name} (docs/operations.md)`,
      exitCode: 2,
    });
  }
}

/** The pooler role and its lookup function on the leader, in every database that accepts connections. */
async function preparePostgres(handle: ClusterHandle, password: string, deps: ProviderDeps): Promise<void> {
  await withAppContext(handle, async (ctx) => {
    const role = await ensurePoolerRole(ctx.client, password);
    deps.progress(`${ctx.leader.name}: role ${POOLER_ROLE} ${role}`);
    for (const db of await connectableDatabases(ctx.client)) {
      if (!db.poolerCanConnect) await grantConnect(ctx.client, db.name);
      const client = await ctx.connectTo(db.name);
      try {
        const done = await ensureLookupFunction(client, ctx.secrets.superuser.name, db.name);
        deps.progress(`${ctx.leader.name}: database ${db.name}: ${done.length === 0 && db.poolerCanConnect ? 'lookup function in place' : `prepared (${[...(db.poolerCanConnect ? [] : ['connect']), ...done].join(', ')})`}`);
      } finally {
        await client.end().catch(() => undefined);
      }
    }
  });
}

/** Whether the node's PgBouncer has read these settings (its ini file shows them). */
async function iniShows(nodeDir: string, settings: PoolerSettings): Promise<boolean> {
  const text = await readFile(poolerPaths(nodeDir).iniFile, 'utf8').catch(() => '');
  return text.includes(`\npool_mode = ${settings.poolMode}\n`) && text.includes(`\ndefault_pool_size = ${settings.defaultPoolSize}\n`);
}

/** Waits until every node with a running agent runs PgBouncer with `settings` (or, disabled, none runs). */
async function waitForPoolers(manifest: ClusterManifest, settings: PoolerSettings, deps: ProviderDeps, timeoutSeconds: number): Promise<void> {
  const deadlineMs = deps.clock.nowMs() + timeoutSeconds * 1000;
  let shown = '';
  for (;;) {
    const snapshot = await snapshotCluster(manifest);
    const alive = await livePoolerPids(manifest.nodes);
    const waiting: string[] = [];
    for (const node of manifest.nodes) {
      if (!settings.enabled) {
        if (alive.has(node.name)) waiting.push(node.name);
      } else if (snapshot.aliveAgents.has(node.name) && !(alive.has(node.name) && (await iniShows(node.nodeDir, settings)))) {
        waiting.push(node.name);
      }
    }
    const line = waiting.length === 0 ? '' : `waiting for ${waiting.join(', ')} to ${settings.enabled ? 'start or reload' : 'stop'} pgbouncer`;
    if (line !== shown && line !== '') deps.progress(line);
    shown = line;
    if (waiting.length === 0) return;
    if (deps.clock.nowMs() >= deadlineMs) {
      const node = manifest.nodes.find((n) => n.name === waiting[0]);
      throw new PgpilotError('TIMEOUT', `pgbouncer did not ${settings.enabled ? 'start' : 'stop'} within ${timeoutSeconds} s on ${waiting.join(', ')}`, {
        hint: `read ${node === undefined ? 'the agent log' : `${node.logFile} (component pooler) and ${poolerPaths(node.nodeDir).logFile}`}`,
        retryable: true,
      });
    }
    await deps.clock.sleep(250);
  }
}

/** Logs in through one pooler port as the superuser and runs SELECT 1 (proves auth_query and routing). */
async function probeThroughPooler(manifest: ClusterManifest, deps: ProviderDeps, timeoutSeconds: number): Promise<string> {
  const secrets = readSecrets(manifest.secretsFile);
  const deadlineMs = deps.clock.nowMs() + timeoutSeconds * 1000;
  const nodes = manifest.nodes.filter((n) => n.poolerPort !== undefined);
  let lastError = 'no node has a pooler port';
  for (let attempt = 0; ; attempt += 1) {
    const node = nodes[attempt % Math.max(1, nodes.length)];
    if (node?.poolerPort !== undefined) {
      try {
        const client = await connectLocal({
        ca: clusterCaPem(manifest),
          host: node.host,
          port: node.poolerPort,
          user: secrets.superuser.name,
          password: secrets.superuser.password,
          connectTimeoutMs: 5_000,
          // No statement_timeout startup parameter: PgBouncer refuses parameters it does not track.
          statementTimeoutMs: 0,
          applicationName: 'pgpilot-pooler-check',
        });
        try {
          await client.query('SELECT 1');
          return `${node.host}:${node.poolerPort}`;
        } finally {
          await client.end().catch(() => undefined);
        }
      } catch (error) {
        lastError = errorMessage(error);
      }
    }
    if (deps.clock.nowMs() >= deadlineMs) {
      throw new PgpilotError('COMMAND_FAILED', `could not log in through the pooler: ${lastError}`, {
        hint: `read the pgbouncer.log under ${manifest.clusterDir}/nodes/*/pgbouncer/`,
        retryable: true,
      });
    }
    await deps.clock.sleep(500);
  }
}

async function poolerStatusOf(handle: ClusterHandle): Promise<PoolerStatus> {
  const name = handle.name;
  const status = await handle.status();
  if (status.pooler === undefined || status.pooler === null) {
    throw new PgpilotError('CLUSTER_NOT_RUNNING', `cluster ${name} is not running (its etcd cannot be read)`, { hint: `start it with: pgpilot start ${name}` });
  }
  return status.pooler;
}

function describe(pooler: PoolerStatus): string {
  return `${pooler.poolMode} mode, pool size ${pooler.defaultPoolSize}`;
}

export async function runEnable(options: PoolerEnableOptions, deps: ProviderDeps, output: Output): Promise<number> {
  const { handle, local } = await openLocalOnly(options, 'pooler enable');
  const name = handle.name;
  const manifest = local.manifest;
  requirePoolerPorts(manifest);
  findPgbouncerBinary();
  const { dcs, config } = await openClusterDcs(manifest);
  try {
    const wanted = nextPoolerSettings(config.pooler, { enabled: true, poolMode: options.poolMode, poolSize: options.poolSize });
    // The auth user's password is generated once and kept in secrets.json (0600); agents read it
    // from there when they (re)write PgBouncer's auth file.
    let secrets = readSecrets(manifest.secretsFile);
    if (secrets.pooler === undefined) {
      secrets = { ...secrets, pooler: { name: POOLER_ROLE, password: generatePoolerPassword() } };
      await writeSecrets(manifest.secretsFile, secrets);
      deps.progress(`generated the password of ${POOLER_ROLE} (kept in ${manifest.secretsFile})`);
    }
    await preparePostgres(handle, secrets.pooler?.password ?? '', deps);
    const { before, after } = await writePoolerSettings(dcs, name, () => wanted);
    const keys = clusterKeys(name);
    if (JSON.stringify(before) !== JSON.stringify(after)) {
      await recordEvent(dcs, keys, {
        at: new Date(deps.clock.nowMs()).toISOString(),
        kind: 'pooler-enabled',
        node: '-',
        message: `pooler ${before.enabled ? 'reconfigured' : 'enabled'}: ${after.poolMode} mode, pool size ${after.defaultPoolSize}`,
        timeline: null,
      });
    }
    deps.progress(`pooler settings written (${after.poolMode} mode, pool size ${after.defaultPoolSize}); waiting for the agents`);
    await waitForPoolers(manifest, after, deps, options.timeoutSeconds);
    const via = await probeThroughPooler(manifest, deps, options.timeoutSeconds);
    deps.progress(`login through the pooler at ${via} works`);
  } finally {
    await dcs.close().catch(() => undefined);
  }
  const pooler = await poolerStatusOf(handle);
  if (options.json) printJson(output, { cluster: name, pooler: poolerWithoutSecrets(pooler) });
  else {
    output.out(`pooler enabled on ${name}: ${describe(pooler)}, PgBouncer on ${pooler.nodes.filter((n) => n.pid !== null).length}/${pooler.nodes.length} nodes`);
    output.out(`pooler connection string:  ${maskPassword(pooler.connectionString ?? '-')}`);
    output.out(`(password hidden; \`pgpilot pooler show ${name} --show-secrets\` shows it; use -M simple with pgbench in transaction mode)`);
  }
  return 0;
}

export async function runDisable(options: PoolerDisableOptions, deps: ProviderDeps, output: Output): Promise<number> {
  const { handle, local } = await openLocalOnly(options, 'pooler disable');
  const name = handle.name;
  const manifest = local.manifest;
  const { dcs } = await openClusterDcs(manifest);
  let changed = false;
  try {
    const { before, after } = await writePoolerSettings(dcs, name, (current) => ({ ...current, enabled: false }));
    changed = before.enabled;
    if (changed) {
      await recordEvent(dcs, clusterKeys(name), {
        at: new Date(deps.clock.nowMs()).toISOString(),
        kind: 'pooler-disabled',
        node: '-',
        message: 'pooler disabled',
        timeline: null,
      });
    }
    await waitForPoolers(manifest, after, deps, options.timeoutSeconds);
  } finally {
    await dcs.close().catch(() => undefined);
  }
  const pooler = await poolerStatusOf(handle);
  if (options.json) printJson(output, { cluster: name, changed, pooler: poolerWithoutSecrets(pooler) });
  else output.out(changed ? `pooler disabled on ${name}: every PgBouncer stopped` : `the pooler of ${name} was not enabled; nothing runs`);
  return 0;
}

export async function runShow(options: { home: string; name: string; context?: string | undefined; json: boolean; showSecrets?: boolean }, output: Output): Promise<number> {
  const handle = await openClusterHandle(options);
  const name = handle.name;
  const shown = await poolerStatusOf(handle);
  const pooler = options.showSecrets === true ? shown : poolerWithoutSecrets(shown);
  if (options.json) {
    printJson(output, { cluster: name, pooler });
    return 0;
  }
  output.out(`pooler of ${name}: ${pooler.enabled ? `enabled, ${describe(pooler)}` : 'disabled'}`);
  output.out('');
  output.out(
    renderTable(
      ['NODE', 'ADDRESS', 'PGBOUNCER PID'],
      pooler.nodes.map((n) => [n.name, n.port === null ? '- (no pooler port)' : `${n.host}:${n.port}`, n.pid === null ? '-' : String(n.pid)]),
    ),
  );
  if (shown.connectionString !== null) {
    output.out('');
    output.out(`pooler connection string:  ${options.showSecrets === true ? shown.connectionString : maskPassword(shown.connectionString)}`);
  }
  return 0;
}
