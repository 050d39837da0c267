/**
 * The last dynamic config an agent read and validated from etcd, kept in its own node directory
 * (`<nodeDir>/last-good-config.json`, mode 0600; never in etcd, which is what it protects
 * against). The agent uses it while /config is unreadable (docs/ha-loop.md "What agents read from
 * etcd"), and `pgpilot config repair` writes the newest copy among the nodes back to etcd.
 * Invariants: a copy is written atomically (temp file in the same directory, fsync, rename), so a
 * crash leaves the old copy or the new one, never half of one; a copy is only ever written from
 * a value that passed the schema, and is checked against it again when read (a damaged file reads
 * as absent, never as a config).
 */
import { open, readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { dynamicConfigSchema, type DynamicConfig } from './schema.js';

export const LAST_GOOD_CONFIG_FILE = 'last-good-config.json';

const fileSchema = z.object({ savedAtMs: z.number(), config: dynamicConfigSchema }).strict();

export interface LastGoodConfig {
  savedAtMs: number;
  config: DynamicConfig;
}

export function lastGoodConfigPath(nodeDir: string): string {
  return path.join(nodeDir, LAST_GOOD_CONFIG_FILE);
}

/** The copy in `nodeDir`, or null when there is none or it does not validate. */
export async function readLastGoodConfig(nodeDir: string): Promise<LastGoodConfig | null> {
  let text: string;
  try {
    text = await readFile(lastGoodConfigPath(nodeDir), 'utf8');
  } catch {
    return null;
  }
  try {
    const parsed = fileSchema.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}

/** Replaces the copy in `nodeDir` atomically (0600). */
export async function writeLastGoodConfig(nodeDir: string, copy: LastGoodConfig): Promise<void> {
  const target = lastGoodConfigPath(nodeDir);
  const temp = `${target}.tmp-${process.pid}`;
  const handle = await open(temp, 'w', 0o600);
  try {
    await handle.writeFile(`${JSON.stringify(fileSchema.parse(copy))}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await rename(temp, target);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
}
