/**
 * Where the local provider keeps things (src/providers/local/paths.ts): `--home` beats
 * $PGPILOT_HOME beats the default; as root the default is /var/lib/pgpilot (the postgres OS user
 * cannot enter /root), otherwise ~/.pgpilot; the per-cluster and per-node layout is as documented
 * in architecture.md §1. The environment is passed in as an object: the real one is never read
 * or modified.
 */
import assert from 'node:assert/strict';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { clusterPaths, clusterPathsIn, clustersDir, defaultHome, nodeName, nodePaths, resolveHome } from '../../src/providers/local/paths.js';

const runningAsRoot = typeof process.getuid === 'function' && process.getuid() === 0;
const expectedDefault = runningAsRoot ? '/var/lib/pgpilot' : path.join(os.homedir(), '.pgpilot');

void describe('resolveHome and defaultHome', () => {
  void it('an explicit option wins over the environment, resolved to an absolute path', () => {
    assert.equal(resolveHome('/srv/pg', { PGPILOT_HOME: '/elsewhere' }), '/srv/pg');
    assert.equal(resolveHome('rel/home', {}), path.resolve('rel/home'));
  });

  void it('PGPILOT_HOME is used when no option is given, resolved to an absolute path', () => {
    assert.equal(resolveHome(undefined, { PGPILOT_HOME: '/tmp/pgpilot-home' }), '/tmp/pgpilot-home');
    assert.equal(resolveHome('', { PGPILOT_HOME: '/tmp/pgpilot-home' }), '/tmp/pgpilot-home', 'an empty option counts as absent');
    assert.equal(resolveHome(undefined, { PGPILOT_HOME: 'relative' }), path.resolve('relative'));
    assert.equal(defaultHome({ PGPILOT_HOME: '/x/../y' }), '/y');
  });

  void it(`without option or environment the default is ${expectedDefault} (running as ${runningAsRoot ? 'root' : 'non-root'})`, () => {
    assert.equal(defaultHome({}), expectedDefault);
    assert.equal(resolveHome(undefined, {}), expectedDefault);
    assert.equal(resolveHome(undefined, { PGPILOT_HOME: '' }), expectedDefault, 'an empty PGPILOT_HOME counts as unset');
  });

  void it('as root, the default home is outside /root', { skip: !runningAsRoot && 'not running as root' }, () => {
    assert.equal(defaultHome({}), '/var/lib/pgpilot');
    assert.ok(!defaultHome({}).startsWith('/root'));
  });
});

void describe('cluster and node layout', () => {
  void it('places each cluster under <home>/clusters/<name>', () => {
    assert.equal(clustersDir('/h'), '/h/clusters');
    assert.deepEqual(clusterPaths('/h', 'demo'), {
      clusterDir: '/h/clusters/demo',
      manifestFile: '/h/clusters/demo/cluster.json',
      secretsFile: '/h/clusters/demo/secrets.json',
      etcdDir: '/h/clusters/demo/etcd',
      etcdDataDir: '/h/clusters/demo/etcd/data',
      etcdLogFile: '/h/clusters/demo/etcd/etcd.log',
      etcdPidFile: '/h/clusters/demo/etcd/etcd.pid',
      nodesDir: '/h/clusters/demo/nodes',
      backupsDir: '/h/clusters/demo/backups',
      backupStoreFile: '/h/clusters/demo/backup-store.json',
      tmpDir: '/h/clusters/demo/tmp',
      tlsDir: '/h/clusters/demo/tls',
      caFile: '/h/clusters/demo/tls/ca.crt',
      caKeyFile: '/h/clusters/demo/tls/ca.key',
      adminCertFile: '/h/clusters/demo/tls/admin.crt',
      adminKeyFile: '/h/clusters/demo/tls/admin.key',
      etcdCertFile: '/h/clusters/demo/tls/etcd.crt',
      etcdKeyFile: '/h/clusters/demo/tls/etcd.key',
    });
    assert.deepEqual(clusterPathsIn('/h/clusters/demo'), clusterPaths('/h', 'demo'));
  });

  void it('places each node under nodes/<node> with pgdata and agent.log', () => {
    assert.deepEqual(nodePaths('/h/clusters/demo', 'node2'), {
      nodeDir: '/h/clusters/demo/nodes/node2',
      dataDir: '/h/clusters/demo/nodes/node2/pgdata',
      configFile: '/h/clusters/demo/nodes/node2/agent.json',
      logFile: '/h/clusters/demo/nodes/node2/agent.log',
      postgresLogFile: '/h/clusters/demo/nodes/node2/postgres.log',
      pidFile: '/h/clusters/demo/nodes/node2/agent.pid',
      stdoutFile: '/h/clusters/demo/nodes/node2/agent.out',
      tlsCertFile: '/h/clusters/demo/nodes/node2/tls/node.crt',
      tlsKeyFile: '/h/clusters/demo/nodes/node2/tls/node.key',
    });
  });

  void it('names nodes node1..nodeN from a zero-based index', () => {
    assert.deepEqual([0, 1, 8].map(nodeName), ['node1', 'node2', 'node9']);
  });
});
