/**
 * The pure parts of `scale count`, `image` and `pooler` (docs/operations.md): new node names never
 * reuse a name whose data is kept, the nodes chosen for removal are never the leader (unhealthy,
 * lagging, asynchronous and high-numbered first), version parsing and the same-major rule of
 * `image update`, the pooler settings validation with flag names, and the pooler part of the status
 * (JSON and text).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { chooseNodesToRemove, nextNodeNames } from '../../src/providers/local/local-provider.js';
import { buildClusterStatus, type ClusterStatus, type MemberStatus } from '../../src/operations/cluster-status.js';
import { checkSameMajor, parsePostgresVersion, versionFromNum } from '../../src/cli/commands/image.js';
import { nextPoolerSettings, requirePoolerPorts } from '../../src/cli/commands/pooler.js';
import { parseNodeList } from '../../src/cli/commands/scale-count.js';
import { buildPoolerStatus, poolerStatusLines } from '../../src/pooler/pooler-status.js';
import { defaultPoolerSettings } from '../../src/config/schema.js';
import { PgpilotError } from '../../src/shared/errors.js';
import { clusterManifest, clusterSecrets } from '../builders/manifest-builder.js';
import { localTopology } from '../../src/providers/local/local-topology.js';

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    return error instanceof PgpilotError ? error.code : `not a PgpilotError: ${String(error)}`;
  }
  return 'no error';
}

void describe('nextNodeNames', () => {
  void it('continues after the highest node number', () => {
    assert.deepEqual(nextNodeNames(['node1', 'node2', 'node3'], 2), ['node4', 'node5']);
  });

  void it('never reuses the name of a removed node whose data is kept', () => {
    assert.deepEqual(nextNodeNames(['node1', 'node2', 'node4-2026-11-26T07-34-49-020Z'], 1), ['node5']);
    // A node directory left behind counts too.
    assert.deepEqual(nextNodeNames(['node1', 'node2', 'node3', 'node6'], 1), ['node7']);
  });

  void it('starts at node1 when nothing is taken and skips names that are not nodeN', () => {
    assert.deepEqual(nextNodeNames(['primary-a'], 2), ['node1', 'node2']);
  });
});

function member(name: string, overrides: Partial<MemberStatus> = {}): MemberStatus {
  return {
    name,
    role: 'replica',
    state: 'running',
    host: '127.0.0.1',
    port: 1,
    proxyPort: 2,
    replicaProxyPort: 3,
    proxy: null,
    apiUrl: 'http://127.0.0.1:4',
    pid: 100,
    postgresPid: 200,
    timeline: 1,
    lsn: '0/3000000',
    lagBytes: 0,
    lagSeconds: 0,
    streaming: true,
    tags: {},
    health: { status: 'ok', summary: 'streaming' },
    sync: false,
    ...overrides,
  };
}

function statusWith(leader: string, members: MemberStatus[]): ClusterStatus {
  return { cluster: 'demo', leader, timeline: 1, syncMode: 'off', etcd: 'running', members, connectionString: '', replicaConnectionString: '' };
}

void describe('chooseNodesToRemove', () => {
  const limit = 16 * 1024 * 1024;

  void it('removes the highest-numbered healthy replicas, never the leader', () => {
    const status = statusWith('node4', [member('node1'), member('node2'), member('node3'), member('node4', { role: 'primary' })]);
    assert.deepEqual(chooseNodesToRemove(status, 2, limit), ['node3', 'node2']);
    assert.deepEqual(chooseNodesToRemove(status, 5, limit), ['node3', 'node2', 'node1']);
  });

  void it('prefers members that do not serve, then lagging ones, then asynchronous ones', () => {
    const status = statusWith('node1', [
      member('node1', { role: 'primary' }),
      member('node2', { sync: true }),
      member('node3', { role: 'stopped', streaming: false, pid: null, lagBytes: null }),
      member('node4', { lagBytes: limit + 1 }),
      member('node5', { sync: true }),
      member('node6'),
    ]);
    assert.deepEqual(chooseNodesToRemove(status, 4, limit), ['node3', 'node4', 'node6', 'node5']);
  });

  void it('sorts node10 after node9', () => {
    const status = statusWith('node1', [member('node1', { role: 'primary' }), member('node9'), member('node10')]);
    assert.deepEqual(chooseNodesToRemove(status, 1, limit), ['node10']);
  });
});

void describe('image versions', () => {
  void it('parses `postgres --version` and server_version_num', () => {
    assert.deepEqual(parsePostgresVersion('postgres (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)\n'), { version: '15.14', major: 15 });
    assert.deepEqual(parsePostgresVersion('postgres (PostgreSQL) 16beta1'), { version: '16', major: 16 });
    assert.equal(parsePostgresVersion('bash: postgres: not found'), null);
    assert.deepEqual(versionFromNum(150014), { version: '15.14', major: 15 });
    assert.deepEqual(versionFromNum(160002), { version: '16.2', major: 16 });
  });

  void it('refuses another major version, naming pg_upgrade', () => {
    assert.doesNotThrow(() => checkSameMajor({ version: '15.9', major: 15 }, [{ name: 'node1', major: 15 }], '/opt/pg'));
    assert.throws(
      () => checkSameMajor({ version: '16.2', major: 16 }, [{ name: 'node1', major: 15 }], '/opt/pg16'),
      (error: unknown) => error instanceof PgpilotError && error.code === 'MAJOR_VERSION_MISMATCH' && /pg_upgrade is needed/.test(error.message) && error.exitCode === 2,
    );
  });
});

void describe('pooler settings and status', () => {
  void it('applies the flags over the current settings and validates them with the flag names', () => {
    const current = defaultPoolerSettings();
    assert.deepEqual(nextPoolerSettings(current, { enabled: true }), { enabled: true, poolMode: 'transaction', defaultPoolSize: 20 });
    assert.deepEqual(nextPoolerSettings({ ...current, poolMode: 'session' }, { enabled: true, poolSize: 40 }), { enabled: true, poolMode: 'session', defaultPoolSize: 40 });
    assert.throws(() => nextPoolerSettings(current, { enabled: true, poolSize: 0 }), /--pool-size/);
    assert.throws(() => nextPoolerSettings(current, { enabled: true, poolMode: 'statement' }), /--pool-mode/);
  });

  void it('refuses clusters whose nodes have no pooler port', () => {
    const old = clusterManifest({ nodes: 2 });
    assert.equal(codeOf(() => requirePoolerPorts(old)), 'POOLER_PORT_MISSING');
    const current = { ...old, nodes: old.nodes.map((n, i) => ({ ...n, poolerPort: 19000 + i })) };
    assert.equal(codeOf(() => requirePoolerPorts(current)), 'no error');
  });

  void it('reports every pooler port and live PgBouncer, and a connection string only while enabled', () => {
    const base = clusterManifest({ nodes: 2 });
    const manifest = { ...base, nodes: base.nodes.map((n, i) => ({ ...n, poolerPort: 19000 + i })) };
    const secrets = clusterSecrets({ password: 'p@ss/word-0123456789' });
    const enabled = buildPoolerStatus(localTopology(manifest), secrets, { settings: { enabled: true, poolMode: 'transaction', defaultPoolSize: 20 }, alive: new Map([['node1', 4242]]) });
    assert.ok(enabled !== null);
    assert.deepEqual(enabled.nodes, [
      { name: 'node1', host: '127.0.0.1', port: 19000, pid: 4242 },
      { name: 'node2', host: '127.0.0.1', port: 19001, pid: null },
    ]);
    const tls = `sslmode=verify-full&sslrootcert=${manifest.clusterDir}/tls/ca.crt`;
    assert.equal(enabled.connectionString, `postgresql://postgres:${encodeURIComponent('p@ss/word-0123456789')}@127.0.0.1:19000,127.0.0.1:19001/postgres?${tls}`);
    const lines = poolerStatusLines(enabled, (url) => url.replace(/:[^:@/]+@/, ':****@'));
    assert.equal(lines[0]?.replace(/string: +/, 'string: '), `pooler connection string: postgresql://postgres:****@127.0.0.1:19000,127.0.0.1:19001/postgres?${tls}`);
    assert.match(lines[1] ?? '', /running on 1\/2 nodes \(node1\)/);

    const disabled = buildPoolerStatus(localTopology(manifest), secrets, { settings: defaultPoolerSettings(), alive: new Map() });
    assert.equal(disabled?.connectionString, null);
    assert.deepEqual(poolerStatusLines(disabled, (u) => u), []);
    assert.equal(buildPoolerStatus(localTopology(manifest), secrets, undefined), null);
  });

  void it('is part of the status contract', () => {
    const manifest = clusterManifest({ nodes: 1 });
    const status = buildClusterStatus({
      topology: localTopology(manifest),
      secrets: clusterSecrets(),
      etcd: 'running',
      leader: null,
      members: [],
      syncMode: 'off',
      aliveAgents: new Map(),
      pooler: { settings: defaultPoolerSettings(), alive: new Map() },
    });
    assert.equal(status.pooler?.enabled, false);
    assert.equal(status.pooler?.nodes[0]?.port, null);
  });
});

void describe('parseNodeList', () => {
  void it('accepts comma-separated and repeated values', () => {
    assert.deepEqual(parseNodeList(['node4,node5', ' node6 ']), ['node4', 'node5', 'node6']);
    assert.equal(parseNodeList(undefined), undefined);
    assert.equal(parseNodeList(['', ',']), undefined);
  });
});
