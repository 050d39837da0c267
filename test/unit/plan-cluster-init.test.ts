/**
 * The pure planner of `cluster init` (src/multihost/plan-cluster-init.ts): host parsing and its
 * refusals, etcd placement (3 of 3..4, 5 from 5, all of 1..2, none with --etcd-endpoints), the
 * initial cluster, client CIDRs, ports, certificate requests, firewall openings and warnings.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { etcdMemberCount, planClusterInit, type ClusterInitInput } from '../../src/multihost/plan-cluster-init.js';
import { DEFAULT_HOST_PORTS } from '../../src/multihost/bundle.js';
import { parseStoreUrl } from '../../src/backup/store-config.js';
import { PgpilotError } from '../../src/shared/errors.js';

function hosts(n: number, base = '10.0.0.'): string {
  return Array.from({ length: n }, (_, i) => `node${i + 1}=${base}${i + 1}`).join(',');
}

function plan(overrides: Partial<ClusterInitInput> = {}): ReturnType<typeof planClusterInit> {
  return planClusterInit({ cluster: 'demo', hosts: hosts(3), tokenSuffix: '0123456789abcdef', ...overrides });
}

function refused(overrides: Partial<ClusterInitInput>, message: RegExp): void {
  assert.throws(
    () => plan(overrides),
    (error: unknown) => {
      assert.ok(error instanceof PgpilotError, String(error));
      assert.equal(error.code, 'INPUT_INVALID');
      assert.equal(error.exitCode, 2);
      assert.ok(error.hint !== undefined && error.hint.length > 0, 'has a hint');
      assert.ok(!error.message.includes('\n'), 'one line');
      assert.match(error.message, message);
      return true;
    },
  );
}

void describe('planClusterInit: hosts', () => {
  void it('parses names and addresses, canonical and in order', () => {
    const p = plan({ hosts: ' db-a=10.0.0.1 , db-b=FD00:0::2,db-c=[fd00::3]' });
    assert.deepEqual(
      p.nodes.map((n) => [n.name, n.host, n.urlHost]),
      [
        ['db-a', '10.0.0.1', '10.0.0.1'],
        ['db-b', 'fd00::2', '[fd00::2]'],
        ['db-c', 'fd00::3', '[fd00::3]'],
      ],
    );
  });

  void it('refuses bad host lists with a one-line message and a hint', () => {
    refused({ hosts: '' }, /empty/);
    refused({ hosts: hosts(10) }, /10 hosts/);
    refused({ hosts: 'node1=10.0.0.1,,node2=10.0.0.2' }, /empty entry/);
    refused({ hosts: 'node1=10.0.0.1,' }, /empty entry/);
    refused({ hosts: 'node1' }, /not NAME=IP/);
    refused({ hosts: 'Node1=10.0.0.1' }, /host name "Node1"/);
    refused({ hosts: '1node=10.0.0.1' }, /not allowed/);
    refused({ hosts: 'node1=db1.example.com' }, /not an IP address/);
    refused({ hosts: 'node1=10.0.0.256' }, /not an IP address/);
    refused({ hosts: 'node1=10.0.0.1,node1=10.0.0.2' }, /node1 is given twice/);
    refused({ hosts: 'node1=10.0.0.1,node2=10.0.0.1' }, /node1 and node2 have the same address 10.0.0.1/);
    refused({ hosts: 'node1=fd00::1,node2=FD00:0::1' }, /same address fd00::1/);
    refused({ hosts: 'node1=0.0.0.0' }, /unspecified/);
    refused({ hosts: 'node1=::' }, /unspecified/);
    refused({ hosts: 'node1=224.0.0.1' }, /multicast/);
    refused({ hosts: 'node1=ff02::1' }, /multicast/);
    refused({ hosts: 'node1=255.255.255.255' }, /broadcast/);
    refused({ hosts: 'node1=::ffff:10.0.0.1' }, /IPv4-mapped/);
    refused({ cluster: 'Demo' }, /cluster name/);
  });

  void it('never echoes a long input whole', () => {
    const long = `node1=${'x'.repeat(500)}`;
    assert.throws(() => plan({ hosts: long }), (error: unknown) => error instanceof PgpilotError && error.message.length < 200);
  });
});

void describe('planClusterInit: etcd placement', () => {
  void it('member count by host count', () => {
    assert.deepEqual(
      [1, 2, 3, 4, 5, 6, 7, 8, 9].map(etcdMemberCount),
      [1, 2, 3, 3, 5, 5, 5, 5, 5],
    );
  });

  for (const n of [1, 2, 3, 4, 5, 9]) {
    void it(`${n} hosts: the first ${etcdMemberCount(n)} run members; endpoints and initial cluster name exactly them`, () => {
      const p = plan({ hosts: hosts(n) });
      const members = p.nodes.filter((x) => x.etcdMember).map((x) => x.name);
      assert.deepEqual(members, p.nodes.slice(0, etcdMemberCount(n)).map((x) => x.name));
      assert.equal(p.etcd.kind, 'pgpilot');
      assert.deepEqual(p.etcd.endpoints, members.map((_, i) => `https://10.0.0.${i + 1}:2379`));
      assert.equal(p.initialCluster, members.map((m, i) => `${m}=https://10.0.0.${i + 1}:2380`).join(','));
      assert.equal(p.initialClusterToken, 'pgpilot-demo-0123456789abcdef');
      assert.deepEqual(p.etcdMembers.map((m) => m.name), members);
    });
  }

  void it('IPv6 members get bracketed URLs and the port overrides', () => {
    const p = plan({ hosts: 'a=fd00::1,b=fd00::2,c=fd00::3', ports: { etcdClientPort: 12379, etcdPeerPort: 12380 } });
    assert.deepEqual(p.etcd.endpoints, ['https://[fd00::1]:12379', 'https://[fd00::2]:12379', 'https://[fd00::3]:12379']);
    assert.equal(p.initialCluster, 'a=https://[fd00::1]:12380,b=https://[fd00::2]:12380,c=https://[fd00::3]:12380');
  });

  void it('external etcd: no member, no initial cluster, normalized endpoints', () => {
    const p = plan({ hosts: hosts(5), etcdEndpoints: 'https://10.0.1.1:2379, https://[FD00::9]:2379/' });
    assert.ok(p.nodes.every((n) => !n.etcdMember));
    assert.deepEqual(p.etcd, { kind: 'external', endpoints: ['https://10.0.1.1:2379', 'https://[fd00::9]:2379'] });
    assert.equal(p.initialCluster, null);
    assert.equal(p.initialClusterToken, null);
    assert.deepEqual(p.etcdMembers, []);
    assert.ok(!p.leaves.some((l) => l.id.kind === 'etcd'));
    assert.ok(p.firewall.some((f) => f.what.includes('external etcd https://10.0.1.1:2379') && f.port === 2379));
    assert.ok(!p.firewall.some((f) => f.what.startsWith('etcd peer')));
  });

  void it('refuses bad etcd endpoints', () => {
    refused({ etcdEndpoints: '' }, /empty/);
    refused({ etcdEndpoints: 'http://10.0.1.1:2379' }, /not an https:\/\/ URL/);
    refused({ etcdEndpoints: '10.0.1.1:2379' }, /not an https|not a URL/);
    refused({ etcdEndpoints: 'https://u:p@10.0.1.1:2379' }, /credentials/);
    refused({ etcdEndpoints: 'https://10.0.1.1:2379/v3' }, /path/);
    refused({ etcdEndpoints: 'https://10.0.1.1' }, /no port/);
    refused({ etcdEndpoints: 'https://10.0.1.1:2379,https://10.0.1.1:2379' }, /twice/);
  });
});

void describe('planClusterInit: client networks, ports, store', () => {
  void it('default client CIDR: the smallest network holding every host (per family)', () => {
    assert.deepEqual(plan().clientCidrs, ['10.0.0.0/30']);
    assert.equal(plan().clientCidrsDefaulted, true);
    assert.deepEqual(plan({ hosts: 'a=10.0.1.1,b=10.0.2.1,c=fd00::1' }).clientCidrs, ['10.0.0.0/22', 'fd00::1/128']);
  });

  void it('a given client CIDR is validated and normalized', () => {
    const p = plan({ clientCidr: '10.0.0.0/16, 10.0.0.0/30,10.0.0.0/16' });
    assert.deepEqual(p.clientCidrs, ['10.0.0.0/16', '10.0.0.0/30']);
    assert.equal(p.clientCidrsDefaulted, false);
    refused({ clientCidr: '' }, /empty/);
    refused({ clientCidr: '10.0.0.0' }, /no \/PREFIX/);
    refused({ clientCidr: '10.0.0.0/33' }, /prefix length/);
    refused({ clientCidr: '10.0.0.1/24' }, /host bits/);
    refused({ clientCidr: '192.168.0.0/24' }, /holds none of the host addresses/);
    refused({ clientCidr: '10.0.0.0/24,192.168.0.0/24' }, /192.168.0.0\/24 holds none/);
  });

  void it('fd00::/8 is refused for IPv4 hosts only (it must hold a host)', () => {
    refused({ clientCidr: 'fd00::/8' }, /holds none/);
    assert.deepEqual(plan({ hosts: 'a=fd00::1', clientCidr: 'fd00::/8' }).clientCidrs, ['fd00::/8']);
  });

  void it('ports: defaults, overrides, refusals', () => {
    assert.deepEqual(plan().ports, DEFAULT_HOST_PORTS);
    assert.equal(plan({ ports: { pgPort: 15432 } }).ports.pgPort, 15432);
    refused({ ports: { pgPort: 0 } }, /--pg-port 0 is not a port/);
    refused({ ports: { apiPort: 70000 } }, /--api-port/);
    refused({ ports: { pgPort: 5433 } }, /--pg-port and --proxy-port are both 5433/);
  });

  void it('backup store: none, directory and S3 warnings; the URL without credentials', () => {
    assert.ok(plan().warnings.some((w) => w.includes('no --backup-store')));
    assert.equal(plan().backupStore, null);
    const fs = plan({ backupStore: parseStoreUrl('/mnt/shared/pg') });
    assert.deepEqual(fs.backupStore, { url: 'file:///mnt/shared/pg' });
    assert.ok(fs.warnings.some((w) => w.includes('shared storage')));
    const s3 = plan({ backupStore: { ...parseStoreUrl('s3://backups/prod?region=eu-west-1'), ...{ credentials: { accessKeyId: 'AKID', secretAccessKey: 'SECRET' } } } as ReturnType<typeof parseStoreUrl> });
    assert.equal(s3.backupStore?.accessKeyId, 'AKID');
    assert.ok(!s3.warnings.some((w) => w.includes('backup')));
    const bare = plan({ backupStore: parseStoreUrl('s3://backups/prod') });
    assert.ok(bare.warnings.some((w) => w.includes('without credentials')));
    refused({ backupStore: { ...parseStoreUrl('s3://backups/prod'), ...{ credentials: { accessKeyId: 'a b', secretAccessKey: 'x' } } } }, /credentials/);
  });

  void it('warnings for 1 and 2 hosts', () => {
    assert.ok(plan({ hosts: hosts(1) }).warnings.some((w) => w.includes('development only')));
    assert.ok(plan({ hosts: hosts(2) }).warnings.some((w) => w.includes('cannot lose either')));
    assert.ok(!plan({ hosts: hosts(3) }).warnings.some((w) => w.includes('development') || w.includes('cannot lose')));
    assert.ok(plan({ clientCidr: '0.0.0.0/0' }).warnings.some((w) => w.includes('anywhere')));
  });
});

void describe('planClusterInit: certificates and files', () => {
  void it('node certificates carry every node address, loopback, localhost and every node name', () => {
    const p = plan({ hosts: 'a=10.0.0.1,b=10.0.0.2,c=fd00::3,d=10.0.0.4' });
    const nodeLeaves = p.leaves.filter((l) => l.id.kind === 'node');
    assert.equal(nodeLeaves.length, 4);
    for (const leaf of nodeLeaves) {
      assert.deepEqual([...leaf.request.ipAddresses].sort(), ['10.0.0.1', '10.0.0.2', 'fd00::3', '10.0.0.4', '127.0.0.1', '::1'].sort());
      assert.deepEqual(leaf.request.dnsNames, ['localhost', 'a', 'b', 'c', 'd']);
      assert.equal(leaf.request.usage, 'server-and-client');
      assert.equal(leaf.request.commonName, leaf.id.kind === 'node' ? leaf.id.node : '');
    }
    const etcdLeaves = p.leaves.filter((l) => l.id.kind === 'etcd');
    assert.deepEqual(etcdLeaves.map((l) => (l.id.kind === 'etcd' ? l.id.node : '')), ['a', 'b', 'c']);
    assert.deepEqual(etcdLeaves[2]?.request.ipAddresses, ['fd00::3', '127.0.0.1']);
    const admin = p.leaves.filter((l) => l.id.kind === 'admin');
    assert.equal(admin.length, 1);
    assert.equal(admin[0]?.request.usage, 'client');
  });

  void it('file names', () => {
    assert.deepEqual(plan().files, {
      caCert: 'demo.ca.crt',
      caKey: 'demo.ca.key',
      context: 'demo.context.json',
      bundles: [
        { node: 'node1', file: 'demo-node1.bundle' },
        { node: 'node2', file: 'demo-node2.bundle' },
        { node: 'node3', file: 'demo-node3.bundle' },
      ],
    });
  });

  void it('firewall: every port once, etcd ports only on member hosts', () => {
    const p = plan({ hosts: hosts(4) });
    assert.deepEqual(p.firewall.map((f) => f.port), [5432, 5433, 5434, 6432, 8008, 2379, 2380]);
    assert.equal(p.firewall.find((f) => f.port === 2380)?.on, 'node1, node2, node3');
  });
});
