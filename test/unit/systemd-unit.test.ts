/**
 * The node's systemd unit (src/node/systemd-unit.ts) and `node install --unit-dir` (src/node/node-install.ts):
 * the rendered text, and `systemd-analyze verify` on the generated file (systemd need not be PID 1).
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { directoryStoreRoot, installNode } from '../../src/node/node-install.js';
import { nodeUnitName, renderNodeUnit, systemdWord, UNIT_CAPABILITIES } from '../../src/node/systemd-unit.js';
import { runCommand } from '../../src/shared/process-runner.js';
import { nodeBundle } from '../builders/bundle-builder.js';

const CLI_ENTRY = fileURLToPath(new URL('../../src/bin/cli.js', import.meta.url));

function setting(unit: string, key: string): string[] {
  return unit
    .split('\n')
    .filter((l) => l.startsWith(`${key}=`))
    .map((l) => l.slice(key.length + 1));
}

async function verify(unitFile: string): Promise<{ exitCode: number | null; output: string }> {
  const result = await runCommand('systemd-analyze', ['verify', '--man=no', unitFile], { check: false, timeoutMs: 60_000, cwd: path.dirname(unitFile) });
  return { exitCode: result.exitCode, output: `${result.stdout}${result.stderr}` };
}

const input = {
  cluster: 'demo',
  node: 'node1',
  nodeBinary: process.execPath,
  cliEntry: CLI_ENTRY,
  bundleFile: '/etc/pgpilot/demo-node1.bundle',
  dataDir: '/var/lib/pgpilot/demo-node1',
  agentStopGraceMs: 60_000,
  etcdStopGraceMs: 10_000,
};

void describe('renderNodeUnit', () => {
  const unit = renderNodeUnit(input);

  void it('runs exactly node run --bundle --data-dir, restarted always, stopped mixed', () => {
    assert.deepEqual(setting(unit, 'ExecStart'), [`${process.execPath} ${CLI_ENTRY} node run --bundle /etc/pgpilot/demo-node1.bundle --data-dir /var/lib/pgpilot/demo-node1`]);
    assert.deepEqual(setting(unit, 'Restart'), ['always']);
    assert.deepEqual(setting(unit, 'KillMode'), ['mixed']);
    assert.ok(Number(setting(unit, 'TimeoutStopSec')[0]) > 70, 'longer than the agent and etcd graces together');
    assert.deepEqual(setting(unit, 'ReadWritePaths'), ['/var/lib/pgpilot/demo-node1']);
    assert.deepEqual(setting(unit, 'ProtectSystem'), ['strict']);
    assert.equal(nodeUnitName('demo', 'node1'), 'pgpilot@demo-node1.service');
  });

  void it('keeps the capabilities setpriv and the priority boost need', () => {
    const caps = (setting(unit, 'CapabilityBoundingSet')[0] ?? '').split(' ');
    for (const cap of ['CAP_SETUID', 'CAP_SETGID', 'CAP_CHOWN', 'CAP_FOWNER', 'CAP_DAC_OVERRIDE', 'CAP_KILL', 'CAP_SYS_NICE']) assert.ok(caps.includes(cap), cap);
    assert.deepEqual(caps, [...UNIT_CAPABILITIES]);
    assert.deepEqual(setting(unit, 'User'), [], 'runs as root: the agent switches postgres to its own user');
  });

  void it('quotes and escapes paths for systemd', () => {
    assert.equal(systemdWord('/plain/path'), '/plain/path');
    assert.equal(systemdWord('/with space/x'), '"/with space/x"');
    assert.equal(systemdWord('/100%/x'), '/100%%/x');
    assert.equal(systemdWord('/a$b'), '/a$$b');
    assert.equal(systemdWord('/q"uote'), '"/q\\"uote"');
    const spaced = renderNodeUnit({ ...input, dataDir: '/srv/my data' });
    assert.deepEqual(setting(spaced, 'ReadWritePaths'), ['"/srv/my data"']);
    assert.ok(setting(spaced, 'ExecStart')[0]?.endsWith('--data-dir "/srv/my data"'));
  });

  void it('lets the node write a directory backup store, not an S3 one', () => {
    assert.equal(directoryStoreRoot('/srv/backups'), '/srv/backups');
    assert.equal(directoryStoreRoot('file:///srv/backups'), '/srv/backups');
    assert.equal(directoryStoreRoot('s3://bucket/x'), null);
    assert.deepEqual(setting(renderNodeUnit({ ...input, extraWritablePaths: ['/srv/backups'] }), 'ReadWritePaths'), ['/var/lib/pgpilot/demo-node1 /srv/backups']);
  });
});

void describe('node install --unit-dir (systemd-analyze verify)', () => {
  void it('writes the bundle copy 0600 and a unit that passes systemd-analyze verify; a broken unit does not', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'pgpilot-unit-'));
    try {
      await chmod(dir, 0o755);
      const source = path.join(dir, 'demo-node1.bundle');
      await writeFile(source, JSON.stringify(nodeBundle()), { mode: 0o644 });
      const unitDir = path.join(dir, 'units');
      const dataDir = path.join(dir, 'data', 'demo-node1');
      const result = await installNode({ bundleFile: source, dataDir, unitDir, noStart: false, nodeBinary: process.execPath, cliEntry: CLI_ENTRY });
      assert.equal(result.outcome, 'written', 'a unit outside /etc/systemd/system is never started');
      assert.equal(result.unitFile, path.join(unitDir, 'pgpilot@demo-node1.service'));
      assert.equal(result.bundleFile, path.join(unitDir, 'demo-node1.bundle'));
      assert.equal((await stat(result.bundleFile)).mode & 0o777, 0o600);
      assert.ok(existsSync(dataDir), 'the data directory exists (ReadWritePaths= needs it)');
      const unit = await readFile(result.unitFile, 'utf8');
      assert.ok(unit.includes(`--bundle ${result.bundleFile} --data-dir ${dataDir}`));

      const ok = await verify(result.unitFile);
      assert.equal(ok.exitCode, 0, ok.output);

      // The check is real: a unit with an unknown setting value and a relative binary fails it.
      const broken = path.join(unitDir, 'pgpilot@demo-broken.service');
      await writeFile(broken, unit.replace(/^ExecStart=\S+/m, 'ExecStart=no-such-binary-here').replace('KillMode=mixed', 'KillMode=sideways'));
      const bad = await verify(broken);
      assert.notEqual(bad.exitCode, 0, bad.output);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  void it('refuses a file that is not a bundle, writing nothing', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'pgpilot-unit-'));
    try {
      const source = path.join(dir, 'x.bundle');
      await writeFile(source, '{"kind":"something-else"}');
      await assert.rejects(installNode({ bundleFile: source, unitDir: path.join(dir, 'units'), noStart: true, nodeBinary: process.execPath, cliEntry: CLI_ENTRY }), { code: 'BUNDLE_INVALID' });
      assert.ok(!existsSync(path.join(dir, 'units')));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
