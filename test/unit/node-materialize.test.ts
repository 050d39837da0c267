/** Bundle -> node files (src/node/materialize-bundle.ts): the plan (pure) and the files on disk. */
import assert from 'node:assert/strict';
import { chmod, mkdtemp, readFile, rm, stat, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { agentConfigSchema } from '../../src/config/schema.js';
import { hostCidr, identityMismatch, materializeBundle, planNodeFiles } from '../../src/node/materialize-bundle.js';
import { nodeLayout } from '../../src/node/node-layout.js';
import { postgresOsIds } from '../../src/postgres/initdb.js';
import { PgpilotError } from '../../src/shared/errors.js';
import { isRoot } from '../../src/shared/process-runner.js';
import { nodeBundle } from '../builders/bundle-builder.js';

const BIN_DIR = '/usr/lib/postgresql/15/bin';

function isCode(code: string): (error: unknown) => boolean {
  return (error: unknown) => error instanceof PgpilotError && error.code === code;
}

void describe('planNodeFiles (pure)', () => {
  const bundle = nodeBundle({ clientCidrs: ['192.168.7.0/24'] });
  const plan = planNodeFiles(bundle, '/srv/pgpilot/demo-node1', BIN_DIR);
  const config = plan.agentConfig;

  void it('derives the agent config from the bundle', () => {
    assert.doesNotThrow(() => agentConfigSchema.parse(config));
    assert.equal(config.cluster, 'demo');
    assert.equal(config.node, 'node1');
    assert.equal(config.host, '10.0.0.1');
    assert.equal(config.listenAddress, '10.0.0.1');
    assert.equal(config.pgPort, bundle.ports.pgPort);
    assert.equal(config.apiPort, bundle.ports.apiPort);
    assert.equal(config.proxyPort, bundle.ports.proxyPort);
    assert.equal(config.replicaProxyPort, bundle.ports.replicaProxyPort);
    assert.equal(config.poolerPort, bundle.ports.poolerPort);
    assert.deepEqual(config.knownHosts, ['10.0.0.1', '10.0.0.2', '10.0.0.3']);
    assert.deepEqual(config.etcdEndpoints, bundle.etcd.endpoints);
    assert.equal(config.binDir, BIN_DIR);
    assert.equal(config.dataDir, '/srv/pgpilot/demo-node1/pgdata');
    assert.equal(config.nodeDir, '/srv/pgpilot/demo-node1');
    assert.deepEqual(config.tls, { caFile: '/srv/pgpilot/demo-node1/tls/ca.crt', certFile: '/srv/pgpilot/demo-node1/tls/node.crt', keyFile: '/srv/pgpilot/demo-node1/tls/node.key' });
    assert.equal(config.backupStoreFile, undefined, 'no store in the bundle: no backup store file');
  });

  void it('allows the client CIDRs plus every node address as a single host (replication between hosts)', () => {
    assert.deepEqual(config.allowedCidrs, ['192.168.7.0/24', '10.0.0.1/32', '10.0.0.2/32', '10.0.0.3/32']);
    assert.equal(hostCidr('fd00::1'), 'fd00::1/128');
  });

  void it('writes secrets and keys 0600, the node key postgres-owned, etcd files only for an etcd member', () => {
    const byName = new Map(plan.files.map((f) => [path.basename(f.file), f]));
    assert.equal(byName.get('secrets.json')?.mode, 0o600);
    assert.equal(byName.get('agent.json')?.mode, 0o600);
    assert.equal(byName.get('node.key')?.mode, 0o600);
    assert.equal(byName.get('node.key')?.owner, 'postgres');
    assert.equal(byName.get('etcd.key')?.mode, 0o600);
    assert.equal(byName.get('etcd.key')?.owner, 'self');
    const client = nodeBundle({ nodes: [{ name: 'node1', host: '10.0.0.1', etcdMember: true }, { name: 'node4', host: '10.0.0.4', etcdMember: false }], node: 'node4' });
    const names = planNodeFiles(client, '/d', BIN_DIR).files.map((f) => path.basename(f.file));
    assert.ok(!names.includes('etcd.key') && !names.includes('etcd.crt'), names.join(','));
  });

  void it('with a backup store: a postgres-readable 0600 store file named in the agent config', () => {
    const withStore = planNodeFiles(nodeBundle({ backupStoreUrl: 's3://bucket/prefix' }), '/d', BIN_DIR);
    const store = withStore.files.find((f) => f.file === '/d/backup-store.json');
    assert.equal(store?.mode, 0o600);
    assert.equal(store?.owner, 'postgres');
    assert.deepEqual(JSON.parse(store?.content ?? '{}'), { url: 's3://bucket/prefix' });
    assert.equal(withStore.agentConfig.backupStoreFile, '/d/backup-store.json');
  });

  void it('compares a recorded identity with the bundle', () => {
    const recorded = { kind: 'pgpilot-node-data-dir' as const, version: 1 as const, cluster: 'demo', node: 'node1', createdAt: 'x' };
    assert.equal(identityMismatch(recorded, { cluster: 'demo', node: 'node1' }), null);
    assert.match(identityMismatch(recorded, { cluster: 'demo', node: 'node2' }) ?? '', /node1 of cluster demo/);
    assert.match(identityMismatch(recorded, { cluster: 'other', node: 'node1' }) ?? '', /not to node1 of other/);
  });
});

void describe('materializeBundle (files on disk)', () => {
  void it('writes every file with its mode and owner, keeps pgdata, refuses another node', async () => {
    const root = await mkdtemp(path.join(tmpdir(), 'pgpilot-materialize-'));
    try {
      // The postgres OS user must reach the data directory (mkdtemp makes 0700).
      await chmod(root, 0o755);
      const dir = path.join(root, 'demo-node1');
      const bundle = nodeBundle();
      const first = await materializeBundle(bundle, dir, { binDir: BIN_DIR, nowIso: '2026-01-01T00:00:00.000Z' });
      assert.equal(first.fresh, true);
      const layout = nodeLayout(dir);
      assert.equal((await stat(layout.secretsFile)).mode & 0o777, 0o600);
      assert.equal((await stat(layout.agentConfigFile)).mode & 0o777, 0o600);
      assert.equal((await stat(layout.nodeKeyFile)).mode & 0o777, 0o600);
      assert.equal((await stat(layout.etcdKeyFile)).mode & 0o777, 0o600);
      assert.equal((await stat(layout.pgDataDir)).mode & 0o777, 0o700);
      assert.equal((await stat(layout.etcdDataDir)).mode & 0o777, 0o700);
      assert.equal((await stat(layout.dataDir)).mode & 0o777, 0o755);
      if (isRoot()) {
        const ids = await postgresOsIds();
        assert.equal((await stat(layout.nodeKeyFile)).uid, ids.uid, 'postgres reads the node key');
        assert.equal((await stat(layout.pgDataDir)).uid, ids.uid);
        assert.equal((await stat(layout.etcdKeyFile)).uid, 0, 'the etcd key stays root-only');
      }
      const config = agentConfigSchema.parse(JSON.parse(await readFile(layout.agentConfigFile, 'utf8')));
      assert.equal(config.node, 'node1');
      assert.deepEqual(JSON.parse(await readFile(layout.secretsFile, 'utf8')), bundle.secrets);

      // A second start rewrites the files from the bundle and never touches the data.
      await writeFile(path.join(layout.pgDataDir, 'PG_VERSION'), '15\n');
      await writeFile(layout.caFile, 'tampered');
      const second = await materializeBundle(bundle, dir, { binDir: BIN_DIR, nowIso: '2026-01-02T00:00:00.000Z' });
      assert.equal(second.fresh, false);
      assert.equal(await readFile(layout.caFile, 'utf8'), bundle.tls.caPem);
      assert.equal(await readFile(path.join(layout.pgDataDir, 'PG_VERSION'), 'utf8'), '15\n');

      // Another node's (or cluster's) bundle on the same directory: refused.
      await assert.rejects(materializeBundle(nodeBundle({ node: 'node2' }), dir, { binDir: BIN_DIR, nowIso: 'x' }), isCode('DATA_DIR_FOREIGN'));
      await assert.rejects(materializeBundle(nodeBundle({ cluster: 'other' }), dir, { binDir: BIN_DIR, nowIso: 'x' }), isCode('DATA_DIR_FOREIGN'));

      // A non-empty directory pgpilot did not make: refused, nothing written into it.
      const foreign = path.join(root, 'foreign');
      await mkdir(foreign);
      await writeFile(path.join(foreign, 'something'), 'x');
      await assert.rejects(materializeBundle(bundle, foreign, { binDir: BIN_DIR, nowIso: 'x' }), isCode('DATA_DIR_FOREIGN'));
      await assert.rejects(stat(path.join(foreign, 'secrets.json')), { code: 'ENOENT' });
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
