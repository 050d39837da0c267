/**
 * `pgpilot config repair NAME [--yes] [--json]`: when /config in etcd is unreadable (not JSON, or
 * fails the schema), show the bad value (truncated; /config holds no secrets) and why, then, once
 * confirmed, write back the newest last good copy the agents kept in their node directories
 * (src/providers/local/config-copies.ts). Invariants: the write is a compare-and-set on exactly
 * the bad value shown, so a fix made meanwhile by someone else is never overwritten; a readable
 * /config is left alone; nothing is written without --yes or a "yes" at a terminal.
 */
import { clusterKeys } from '../../dcs/keys.js';
import { parseStoredConfig } from '../../config/stored-config.js';
import { recordEvent } from '../../state/events.js';
import { openLocalOnly } from '../../cluster/require-local.js';
import { lastGoodConfigCopies } from '../../providers/local/config-copies.js';
import { PgpilotError } from '../../shared/errors.js';
import { confirmYes } from '../confirm.js';
import { printJson, type Output } from '../output.js';

const SHOWN_CHARS = 300;

export interface RepairOptions {
  home: string;
  name: string;
  context?: string | undefined;
  yes: boolean;
  json: boolean;
}

/** The bad value for people: at most SHOWN_CHARS characters, control characters escaped. */
export function shownValue(raw: string): string {
  const head = JSON.stringify(raw.slice(0, SHOWN_CHARS));
  return raw.length > SHOWN_CHARS ? `${head} ... (${raw.length} characters)` : head;
}

export async function run(options: RepairOptions, output: Output, ask: (question: string) => Promise<boolean> = confirmYes): Promise<number> {
  // The last good copies are files in each node's directory: on a multi-host cluster, on each host.
  const { handle, local } = await openLocalOnly(options, 'config repair');
  const manifest = local.manifest;
  const key = clusterKeys(manifest.name).config;
  const { dcs } = await handle.openDcs();
  try {
    const raw = await dcs.get(key);
    const parsed = raw === null ? null : parseStoredConfig(raw);
    if (raw === null || parsed === null || parsed.kind === 'valid') {
      const why = raw === null ? 'there is no /config yet (agents use the defaults)' : '/config is readable';
      if (options.json) printJson(output, { cluster: manifest.name, repaired: false, reason: why });
      else output.out(`nothing to repair: ${why}`);
      return 0;
    }
    const { copies, missing } = await lastGoodConfigCopies(manifest);
    const newest = copies[0];
    if (!options.json) {
      output.out(`/config of ${manifest.name} is unreadable: ${parsed.reason}`);
      output.out(`stored value: ${shownValue(raw)}`);
    }
    if (newest === undefined) {
      throw new PgpilotError('CONFIG_UNREADABLE', `/config of ${manifest.name} is unreadable and no node kept a last good copy (${missing.join(', ')})`, {
        hint: `write a valid value by hand (etcdctl put ${key} '{}' gives the defaults)`,
      });
    }
    const savedAt = new Date(newest.savedAtMs).toISOString();
    if (!options.json) output.out(`newest last good copy: ${newest.node}, saved ${savedAt}${missing.length > 0 ? ` (no copy on ${missing.join(', ')})` : ''}`);
    if (!options.yes && !(await ask(`Replace /config of ${manifest.name} with the copy of ${newest.node} from ${savedAt}?`))) {
      throw new PgpilotError('CONFIRMATION_REQUIRED', `repairing /config of ${manifest.name} needs a confirmation; nothing was changed`, {
        hint: `pgpilot config repair ${manifest.name} --yes`,
        exitCode: 2,
      });
    }
    // Compare-and-set on the bad value: a fix written meanwhile stays.
    const written = await dcs.replaceIfEquals(key, raw, JSON.stringify(newest.config));
    if (!written) {
      throw new PgpilotError('INPUT_INVALID', `/config of ${manifest.name} changed while it was being repaired; nothing was written`, {
        hint: `run pgpilot config repair ${manifest.name} again to see the current value`,
        retryable: true,
        exitCode: 2,
      });
    }
    await recordEvent(dcs, clusterKeys(manifest.name), {
      at: new Date().toISOString(),
      kind: 'config-repaired',
      node: 'cli',
      message: `/config restored from the last good copy of ${newest.node} (${savedAt}); it was unreadable: ${parsed.reason}`,
      timeline: null,
    });
    if (options.json) printJson(output, { cluster: manifest.name, repaired: true, reason: parsed.reason, badValue: raw.slice(0, SHOWN_CHARS), from: { node: newest.node, savedAt }, config: newest.config });
    else output.out(`repaired: /config restored from ${newest.node}'s copy; the agents use it at their next tick`);
    return 0;
  } finally {
    await dcs.close().catch(() => undefined);
  }
}
