/** `etcdArgs` and `clientUrl`: a one-member etcd that listens only where it is told. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { clientUrl, etcdArgs } from '../../src/providers/local/etcd-server.js';
import { PgpilotError } from '../../src/shared/errors.js';

/** The value following `flag` in argv. */
function flagValue(argv: string[], flag: string): string | undefined {
  const index = argv.indexOf(flag);
  return index === -1 ? undefined : argv[index + 1];
}

function isInputInvalid(error: unknown): boolean {
  return error instanceof PgpilotError && error.code === 'INPUT_INVALID';
}

void describe('etcdArgs', () => {
  const argv = etcdArgs({ name: 'etcd-1', dataDir: '/tmp/x/etcd', clientPort: 23_791, peerPort: 23_792 });

  void it('listens for clients and peers only on the given loopback ports', () => {
    assert.equal(flagValue(argv, '--listen-client-urls'), 'http://127.0.0.1:23791');
    assert.equal(flagValue(argv, '--advertise-client-urls'), 'http://127.0.0.1:23791');
    assert.equal(flagValue(argv, '--listen-peer-urls'), 'http://127.0.0.1:23792');
    assert.equal(flagValue(argv, '--initial-advertise-peer-urls'), 'http://127.0.0.1:23792');
    assert.ok(!argv.join(' ').includes(':2379 ') && !argv.join(' ').endsWith(':2379'), 'never the default port');
    assert.ok(!argv.includes('--listen-metrics-urls'), 'no extra listener');
    for (const value of argv.filter((arg) => arg.startsWith('http'))) {
      assert.match(value, /^http:\/\/127\.0\.0\.1:2379[12]$/);
    }
  });

  void it('describes a new single-member cluster named after the member', () => {
    assert.equal(flagValue(argv, '--name'), 'etcd-1');
    assert.equal(flagValue(argv, '--data-dir'), '/tmp/x/etcd');
    assert.equal(flagValue(argv, '--initial-cluster'), 'etcd-1=http://127.0.0.1:23792');
    assert.equal(flagValue(argv, '--initial-cluster-state'), 'new');
    assert.equal(flagValue(argv, '--initial-cluster-token'), 'pgpilot-etcd-1');
    // Every flag has its value: flags and values alternate.
    assert.equal(argv.length % 2, 0);
    argv.forEach((arg, index) => assert.equal(arg.startsWith('--'), index % 2 === 0, `argv[${index}] = ${arg}`));
  });

  void it('uses the given host, bracketing IPv6', () => {
    const v6 = etcdArgs({ name: 'n', dataDir: '/d', clientPort: 1_001, peerPort: 1_002, host: '::1' });
    assert.equal(flagValue(v6, '--listen-client-urls'), 'http://[::1]:1001');
    const other = etcdArgs({ name: 'n', dataDir: '/d', clientPort: 1_001, peerPort: 1_002, host: '10.0.0.5' });
    assert.equal(flagValue(other, '--listen-peer-urls'), 'http://10.0.0.5:1002');
  });

  void it('rejects bad ports, equal ports and odd names', () => {
    assert.throws(() => etcdArgs({ name: 'n', dataDir: '/d', clientPort: 0, peerPort: 2 }), isInputInvalid);
    assert.throws(() => etcdArgs({ name: 'n', dataDir: '/d', clientPort: 70_000, peerPort: 2 }), isInputInvalid);
    assert.throws(() => etcdArgs({ name: 'n', dataDir: '/d', clientPort: 5, peerPort: 5 }), isInputInvalid);
    assert.throws(() => etcdArgs({ name: 'a=b,c', dataDir: '/d', clientPort: 5, peerPort: 6 }), isInputInvalid);
  });
});

void describe('clientUrl', () => {
  void it('formats http URLs for IPv4, names and IPv6', () => {
    assert.equal(clientUrl('127.0.0.1', 2_380), 'http://127.0.0.1:2380');
    assert.equal(clientUrl('localhost', 1), 'http://localhost:1');
    assert.equal(clientUrl('::1', 5), 'http://[::1]:5');
    assert.equal(clientUrl('[::1]', 5), 'http://[::1]:5');
  });
});
