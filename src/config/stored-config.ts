/**
 * Reading the dynamic config stored in etcd (/config). An unreadable value is an error, never the
 * defaults: agents keep their last good copy (src/config/last-good-config.ts) and the CLI refuses
 * with CONFIG_UNREADABLE, pointing at `pgpilot config repair`. Only a missing key means the
 * defaults (a new cluster, before bootstrap writes it).
 */
import { PgpilotError } from '../shared/errors.js';
import { formatZodIssues } from './load.js';
import { defaultDynamicConfig, dynamicConfigSchema, type DynamicConfig } from './schema.js';

/** A /config value: the config, or why it cannot be read (never the value itself: it may be large). */
export function parseStoredConfig(text: string): { kind: 'valid'; config: DynamicConfig } | { kind: 'invalid'; reason: string } {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return { kind: 'invalid', reason: 'not JSON' };
  }
  const parsed = dynamicConfigSchema.safeParse(raw);
  if (!parsed.success) return { kind: 'invalid', reason: formatZodIssues(parsed.error).slice(0, 300) };
  return { kind: 'valid', config: parsed.data };
}

/** The stored config for a CLI command: the defaults when absent; CONFIG_UNREADABLE (exit 1) when unreadable. */
export function storedConfigOrThrow(raw: string | null, cluster: string): DynamicConfig {
  if (raw === null) return defaultDynamicConfig();
  const parsed = parseStoredConfig(raw);
  if (parsed.kind === 'valid') return parsed.config;
  throw new PgpilotError('CONFIG_UNREADABLE', `the cluster config of ${cluster} in etcd is unreadable (${parsed.reason}); nothing was changed`, {
    hint: `pgpilot config repair ${cluster} shows it and restores the newest copy the agents kept`,
  });
}
