/**
 * The pure and file parts of "an unreadable /config is an error, never the defaults": parsing a
 * stored value (src/config/stored-config.ts), the CLI's CONFIG_UNREADABLE refusal, the agents'
 * last good copy (atomic, 0600, validated again when read) and how `config repair` picks the
 * newest copy among the nodes (src/providers/local/config-copies.ts) and shows a bad value.
 */
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { defaultDynamicConfig } from '../../src/config/schema.js';
import { parseStoredConfig, storedConfigOrThrow } from '../../src/config/stored-config.js';
import { lastGoodConfigPath, readLastGoodConfig, writeLastGoodConfig } from '../../src/config/last-good-config.js';
import { lastGoodConfigCopies } from '../../src/providers/local/config-copies.js';
import { shownValue } from '../../src/cli/commands/config-repair.js';
import { PgpilotError } from '../../src/shared/errors.js';
import { clusterManifest } from '../builders/manifest-builder.js';

const dirs: string[] = [];
after(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pgpilot-repair-'));
  dirs.push(dir);
  return dir;
}

void describe('stored /config', () => {
  void it('parses a valid value, says why an invalid one is unreadable', () => {
    assert.deepEqual(parseStoredConfig('{}'), { kind: 'valid', config: defaultDynamicConfig() });
    assert.deepEqual(parseStoredConfig('{nope'), { kind: 'invalid', reason: 'not JSON' });
    const bad = parseStoredConfig('{"ttlSeconds":"x"}');
    assert.equal(bad.kind, 'invalid');
    assert.match(bad.kind === 'invalid' ? bad.reason : '', /ttlSeconds/);
  });
  void it('the CLI takes a missing value for the defaults and refuses an unreadable one with CONFIG_UNREADABLE', () => {
    assert.deepEqual(storedConfigOrThrow(null, 'demo'), defaultDynamicConfig());
    assert.throws(
      () => storedConfigOrThrow('[]', 'demo'),
      (error: unknown) => error instanceof PgpilotError && error.code === 'CONFIG_UNREADABLE' && /pgpilot config repair demo/.test(error.hint ?? ''),
    );
  });
});

void describe('last good copies', () => {
  void it('are written atomically with mode 0600 and read back validated; a damaged file reads as none', async () => {
    const dir = await tempDir();
    assert.equal(await readLastGoodConfig(dir), null);
    const config = { ...defaultDynamicConfig(), ttlSeconds: 10, loopWaitMs: 2000 };
    await writeLastGoodConfig(dir, { savedAtMs: 5, config });
    assert.deepEqual(await readLastGoodConfig(dir), { savedAtMs: 5, config });
    assert.equal((await stat(lastGoodConfigPath(dir))).mode & 0o777, 0o600);
    assert.deepEqual(await readdir(dir), ['last-good-config.json'], 'no temp file left');
    await writeFile(lastGoodConfigPath(dir), '{"savedAtMs":1,"config":{"ttlSeconds":"x"}}');
    assert.equal(await readLastGoodConfig(dir), null);
  });
  void it('config repair picks the newest valid copy among the nodes and names the nodes without one', async () => {
    const root = await tempDir();
    const manifest = clusterManifest({ clusterDir: root });
    for (const node of manifest.nodes) await mkdir(node.nodeDir, { recursive: true });
    const [a, b] = manifest.nodes;
    assert.ok(a !== undefined && b !== undefined);
    await writeLastGoodConfig(a.nodeDir, { savedAtMs: 100, config: { ...defaultDynamicConfig(), failsafe: true } });
    await writeLastGoodConfig(b.nodeDir, { savedAtMs: 200, config: { ...defaultDynamicConfig(), synchronous: 'quorum' } });
    const { copies, missing } = await lastGoodConfigCopies(manifest);
    assert.deepEqual(copies.map((c) => c.node), [b.name, a.name]);
    assert.equal(copies[0]?.config.synchronous, 'quorum');
    assert.deepEqual(missing, manifest.nodes.slice(2).map((n) => n.name));
  });
  void it('shows a bad value truncated and escaped', () => {
    assert.equal(shownValue('{"a"\n'), '"{\\"a\\"\\n"');
    assert.match(shownValue('x'.repeat(1000)), /\.\.\. \(1000 characters\)$/);
  });
});
