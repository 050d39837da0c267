/**
 * `pgpilot config show NAME [--json]` and `pgpilot config update NAME [--synchronous off|quorum]
 * [--synchronous-strict|--no-synchronous-strict] [--synchronous-node-count K] [--ttl-seconds N]
 * [--loop-wait-ms N] [--maximum-lag-on-failover-bytes N] [--failsafe|--no-failsafe] [--json]`.
 * The dynamic cluster config lives in etcd under /config; the agents read it every tick. `update`
 * merges the flags over the stored value, validates the whole result with the same zod schema the
 * agents use (one line per problem, nothing written on error), writes it with a compare-and-set
 * (a concurrent update is reported, not overwritten) and prints what changed. `show` also lists the
 * postgres parameters (pgpilot defaults and overrides). Postgres parameters are changed with
 * `update --set/--reset` in config-parameters.ts (checked against pg_settings, then reloaded or
 * applied by a rolling restart).
 */
import { storedConfigOrThrow } from '../../config/stored-config.js';
import { clusterKeys } from '../../dcs/keys.js';
import { dynamicConfigSchema, type DynamicConfig } from '../../config/schema.js';
import { openClusterHandle } from '../../cluster/open-cluster-handle.js';
import { PgpilotError } from '../../shared/errors.js';
import { printJson, renderTable, type Output } from '../output.js';
import { effectiveParameters } from '../../postgres/settings-validation.js';

/** The settings `config update` can change (each is optional: absent means unchanged). */
export interface ConfigUpdates {
  synchronous?: string;
  synchronousStrict?: boolean;
  synchronousNodeCount?: number;
  ttlSeconds?: number;
  loopWaitMs?: number;
  maximumLagOnFailoverBytes?: number;
  failsafe?: boolean;
}

export interface ConfigChange {
  key: string;
  from: unknown;
  to: unknown;
}

/** Flag spelling of each setting, for messages. */
const FLAGS: Record<keyof ConfigUpdates, string> = {
  synchronous: '--synchronous',
  synchronousStrict: '--synchronous-strict',
  synchronousNodeCount: '--synchronous-node-count',
  ttlSeconds: '--ttl-seconds',
  loopWaitMs: '--loop-wait-ms',
  maximumLagOnFailoverBytes: '--maximum-lag-on-failover-bytes',
  failsafe: '--failsafe',
};

/**
 * Pure: the merged, validated config and the list of changes. Throws CONFIG_INVALID with every
 * problem (flag names, not schema paths) and a hint.
 */
export function applyConfigUpdates(current: DynamicConfig, updates: ConfigUpdates): { next: DynamicConfig; changes: ConfigChange[] } {
  const merged: Record<string, unknown> = { ...current };
  for (const [key, value] of Object.entries(updates)) if (value !== undefined) merged[key] = value;
  const parsed = dynamicConfigSchema.safeParse(merged);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => {
      const key = String(issue.path[0] ?? '');
      return `${key in FLAGS ? FLAGS[key as keyof ConfigUpdates] : key}: ${issue.message}`;
    });
    throw new PgpilotError('CONFIG_INVALID', `invalid config: ${problems.join('; ')}`, {
      hint: 'see pgpilot config update --help; nothing was changed',
      exitCode: 2,
    });
  }
  const next = parsed.data;
  const changes: ConfigChange[] = [];
  for (const key of Object.keys(FLAGS) as Array<keyof ConfigUpdates>) {
    if (JSON.stringify(current[key]) !== JSON.stringify(next[key])) changes.push({ key, from: current[key], to: next[key] });
  }
  return { next, changes };
}

export function renderConfig(config: DynamicConfig): string {
  const rows = Object.entries(config).map(([key, value]) => [key, typeof value === 'object' ? JSON.stringify(value) : String(value)]);
  return renderTable(['SETTING', 'VALUE'], rows);
}

export interface ConfigOptions {
  home: string;
  name: string;
  /** `--context FILE` (else PGPILOT_CONTEXT, else the local cluster). */
  context?: string | undefined;
  json: boolean;
}

/** /config as stored (raw, for the compare-and-set) and parsed (defaults when absent; CONFIG_UNREADABLE when unreadable). */
async function readStored(dcs: { get(key: string): Promise<string | null> }, key: string, cluster: string): Promise<{ raw: string | null; config: DynamicConfig }> {
  const raw = await dcs.get(key);
  return { raw, config: storedConfigOrThrow(raw, cluster) };
}

export async function runShow(options: ConfigOptions, output: Output): Promise<number> {
  const handle = await openClusterHandle(options);
  const { dcs } = await handle.openDcs();
  try {
    const { config } = await readStored(dcs, clusterKeys(handle.name).config, handle.name);
    // Postgres parameters: pgpilot's defaults with the cluster's overrides (`config update --set`).
    const parameters = effectiveParameters(config.postgresql.parameters);
    if (options.json) printJson(output, { ...config, postgresParameters: parameters });
    else {
      output.out(renderConfig(config));
      output.out('');
      output.out(renderTable(['POSTGRES PARAMETER', 'VALUE', 'SOURCE'], parameters.map((p) => [p.name, typeof p.value === 'boolean' ? (p.value ? 'on' : 'off') : String(p.value), p.source === 'override' ? 'override (config update --set)' : 'pgpilot default'])));
    }
    return 0;
  } finally {
    await dcs.close().catch(() => undefined);
  }
}

export async function runUpdate(options: ConfigOptions & { updates: ConfigUpdates }, output: Output): Promise<number> {
  if (Object.values(options.updates).every((v) => v === undefined)) {
    throw new PgpilotError('INPUT_INVALID', 'nothing to change', {
      hint: `e.g. pgpilot config update ${options.name} --synchronous quorum (see --help)`,
      exitCode: 2,
    });
  }
  const handle = await openClusterHandle(options);
  const { dcs } = await handle.openDcs();
  const key = clusterKeys(handle.name).config;
  try {
    const stored = await readStored(dcs, key, handle.name);
    const { next, changes } = applyConfigUpdates(stored.config, options.updates);
    if (changes.length > 0) {
      const value = JSON.stringify(next);
      const written = stored.raw === null ? await dcs.createIfAbsent(key, value) : await dcs.replaceIfEquals(key, stored.raw, value);
      if (!written) {
        throw new PgpilotError('INPUT_INVALID', `the config of ${handle.name} changed while it was being updated`, {
          hint: 'run the command again',
          retryable: true,
          exitCode: 2,
        });
      }
    }
    if (options.json) printJson(output, { cluster: handle.name, changes, config: next });
    else if (changes.length === 0) output.out('nothing changed (the config already has these values)');
    else for (const c of changes) output.out(`${c.key}: ${JSON.stringify(c.from)} -> ${JSON.stringify(c.to)}`);
    return 0;
  } finally {
    await dcs.close().catch(() => undefined);
  }
}
