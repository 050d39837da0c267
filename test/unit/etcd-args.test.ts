/** `etcdArgs` and `clientUrl`: a one-member etcd that listens only where it is told. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { clientUrl, etcdArgs } from '../../src/etcd/etcd-server.js';
import { PgpilotError } from '../../src/shared/errors.js';

/** The value following `flag` in argv. */
function flagValue(argv: string[], flag: string): string | undefined {
  const index = argv.indexOf(flag);
  return index === -1 ? undefined : argv[index + 1];
}

function isInputInvalid(error: unknown): boolean {
  return error instanceof PgpilotError && error.code === 'INPUT_INVALID';
}

const tls = { caFile: '/tmp/x/tls/ca.crt', certFile: '/tmp/x/tls/etcd.crt', keyFile: '/tmp/x/tls/etcd.key' };

/** Flags that take no value. */
const BOOLEAN_FLAGS = new Set(['--client-cert-auth', '--peer-client-cert-auth', '--pre-vote']);

void describe('etcdArgs', () => {
  const argv = etcdArgs({ name: 'etcd-1', dataDir: '/tmp/x/etcd', clientPort: 23_791, peerPort: 23_792, tls });

  void it('listens for clients and peers only on the given loopback ports', () => {
    assert.equal(flagValue(argv, '--listen-client-urls'), 'https://127.0.0.1:23791');
    assert.equal(flagValue(argv, '--advertise-client-urls'), 'https://127.0.0.1:23791');
    assert.equal(flagValue(argv, '--listen-peer-urls'), 'https://127.0.0.1:23792');
    assert.equal(flagValue(argv, '--initial-advertise-peer-urls'), 'https://127.0.0.1:23792');
    assert.ok(!argv.join(' ').includes(':2379 ') && !argv.join(' ').endsWith(':2379'), 'never the default port');
    assert.ok(!argv.includes('--listen-metrics-urls'), 'no extra listener');
    for (const value of argv.filter((arg) => arg.includes('://') && !arg.includes('='))) {
      assert.match(value, /^https:\/\/127\.0\.0\.1:2379[12]$/);
    }
  });

  void it('describes a new single-member cluster named after the member', () => {
    assert.equal(flagValue(argv, '--name'), 'etcd-1');
    assert.equal(flagValue(argv, '--data-dir'), '/tmp/x/etcd');
    assert.equal(flagValue(argv, '--initial-cluster'), 'etcd-1=https://127.0.0.1:23792');
    assert.equal(flagValue(argv, '--initial-cluster-state'), 'new');
    assert.equal(flagValue(argv, '--initial-cluster-token'), 'pgpilot-etcd-1');
    // Every flag but the boolean ones has its value: flags and values alternate.
    const valued = argv.filter((arg) => !BOOLEAN_FLAGS.has(arg));
    assert.equal(valued.length % 2, 0);
    valued.forEach((arg, index) => assert.equal(arg.startsWith('--'), index % 2 === 0, `argv[${index}] = ${arg}`));
  });

  void it('serves TLS on client and peer ports and requires client certificates of the CA on both', () => {
    assert.equal(flagValue(argv, '--cert-file'), tls.certFile);
    assert.equal(flagValue(argv, '--key-file'), tls.keyFile);
    assert.equal(flagValue(argv, '--trusted-ca-file'), tls.caFile);
    assert.equal(flagValue(argv, '--peer-cert-file'), tls.certFile);
    assert.equal(flagValue(argv, '--peer-key-file'), tls.keyFile);
    assert.equal(flagValue(argv, '--peer-trusted-ca-file'), tls.caFile);
    assert.ok(argv.includes('--client-cert-auth'));
    assert.ok(argv.includes('--peer-client-cert-auth'));
    // Never `--auto-tls` (self-signed, unverified) and no plain-text listener.
    assert.ok(!argv.some((arg) => arg.startsWith('--auto-tls') || arg.startsWith('--peer-auto-tls')));
    assert.ok(!argv.some((arg) => arg.includes('http://')));
  });

  void it('runs raft with pre-vote, so a member back from a partition does not depose the leader', () => {
    assert.ok(argv.includes('--pre-vote'));
  });

  void it('uses the given host, bracketing IPv6', () => {
    const v6 = etcdArgs({ name: 'n', dataDir: '/d', clientPort: 1_001, peerPort: 1_002, host: '::1', tls });
    assert.equal(flagValue(v6, '--listen-client-urls'), 'https://[::1]:1001');
    const other = etcdArgs({ name: 'n', dataDir: '/d', clientPort: 1_001, peerPort: 1_002, host: '10.0.0.5', tls });
    assert.equal(flagValue(other, '--listen-peer-urls'), 'https://10.0.0.5:1002');
  });

  void it('rejects bad ports, equal ports and odd names', () => {
    assert.throws(() => etcdArgs({ name: 'n', dataDir: '/d', clientPort: 0, peerPort: 2, tls }), isInputInvalid);
    assert.throws(() => etcdArgs({ name: 'n', dataDir: '/d', clientPort: 70_000, peerPort: 2, tls }), isInputInvalid);
    assert.throws(() => etcdArgs({ name: 'n', dataDir: '/d', clientPort: 5, peerPort: 5, tls }), isInputInvalid);
    assert.throws(() => etcdArgs({ name: 'a=b,c', dataDir: '/d', clientPort: 5, peerPort: 6, tls }), isInputInvalid);
  });
});

void describe('clientUrl', () => {
  void it('formats https URLs for IPv4, names and IPv6', () => {
    assert.equal(clientUrl('127.0.0.1', 2_380), 'https://127.0.0.1:2380');
    assert.equal(clientUrl('localhost', 1), 'https://localhost:1');
    assert.equal(clientUrl('::1', 5), 'https://[::1]:5');
    assert.equal(clientUrl('[::1]', 5), 'https://[::1]:5');
  });
});

void describe('etcdArgs for a member of a multi-host cluster', () => {
  const initialCluster = 'node1=https://10.0.0.1:2380,node2=https://10.0.0.2:2380,node3=https://10.0.0.3:2380';
  const argv = etcdArgs({
    name: 'node2',
    dataDir: '/var/lib/pgpilot/etcd',
    clientPort: 2379,
    peerPort: 2380,
    host: '10.0.0.2',
    tls,
    initialCluster,
    initialClusterState: 'existing',
    initialClusterToken: 'pgpilot-prod',
    listenOnLoopback: true,
  });

  void it('joins the named members with the given state and token', () => {
    assert.equal(flagValue(argv, '--initial-cluster'), initialCluster);
    assert.equal(flagValue(argv, '--initial-cluster-state'), 'existing');
    assert.equal(flagValue(argv, '--initial-cluster-token'), 'pgpilot-prod');
  });

  void it('advertises its host address and serves clients on loopback as well', () => {
    assert.equal(flagValue(argv, '--listen-client-urls'), 'https://10.0.0.2:2379,https://127.0.0.1:2379');
    assert.equal(flagValue(argv, '--advertise-client-urls'), 'https://10.0.0.2:2379');
    assert.equal(flagValue(argv, '--listen-peer-urls'), 'https://10.0.0.2:2380');
  });

  void it('refuses an initial cluster that does not name this member at its peer URL', () => {
    assert.throws(
      () => etcdArgs({ name: 'node4', dataDir: '/d', clientPort: 2379, peerPort: 2380, host: '10.0.0.4', tls, initialCluster }),
      isInputInvalid,
    );
  });
});

void describe('etcdArgs keepalive', () => {
  void it('lets clients ping every second or more (agents find a silently dead member by ping, src/dcs/etcd-dcs.ts)', () => {
    const argv = etcdArgs({ name: 'etcd-1', dataDir: '/tmp/x/etcd', clientPort: 23_791, peerPort: 23_792, tls });
    assert.equal(flagValue(argv, '--grpc-keepalive-min-time'), '1s');
  });
});
