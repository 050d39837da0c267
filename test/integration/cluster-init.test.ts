/**
 * `pgpilot cluster init` run for real (bin/pgpilot into a temp directory; only openssl runs, no
 * postgres or etcd): the files and their modes, bundles and context against their schemas, every
 * certificate chaining to the CA with the SANs a multi-host cluster needs, etcd certificates only
 * on member hosts, the CA key in no bundle, no secret on stdout/stderr, a second run refused
 * without --force (nothing changed) and replaced with it, and bad input refused with one line,
 * a hint and exit 2, writing nothing.
 */
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { clusterContextSchema, nodeBundleSchema, type ClusterContext, type NodeBundle } from '../../src/multihost/bundle.js';
import { runCli, type CliResult } from '../helpers/cli.js';

const HOSTS = [
  ['node1', '10.0.0.1'],
  ['node2', '10.0.0.2'],
  ['node3', 'fd00::3'],
  ['node4', '10.0.0.4'],
] as const;
const HOSTS_FLAG = HOSTS.map(([n, a]) => `${n}=${a}`).join(',');
const S3_SECRET = 'S3SECRETvalue-never-printed-0123456789';
const S3_ENV = { AWS_ACCESS_KEY_ID: 'AKIAEXAMPLEKEYID', AWS_SECRET_ACCESS_KEY: S3_SECRET };

let root = '';

function init(args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  return runCli(['cluster', 'init', ...args], { home: path.join(root, 'home'), env, timeoutMs: 120_000 });
}

/** SAN entries, IP addresses in canonical text (the URL parser's serialisation, not ours). */
function sans(cert: X509Certificate): { ips: string[]; dns: string[] } {
  const entries = (cert.subjectAltName ?? '').split(', ').filter((e) => e !== '');
  const ips = entries
    .filter((e) => e.startsWith('IP Address:'))
    .map((e) => e.slice('IP Address:'.length))
    .map((ip) => (ip.includes(':') ? new URL(`http://[${ip}]/`).hostname.slice(1, -1) : ip));
  const dns = entries.filter((e) => e.startsWith('DNS:')).map((e) => e.slice(4));
  return { ips: ips.sort(), dns: dns.sort() };
}

function snapshot(dir: string): Map<string, { mtimeMs: number; content: string }> {
  const result = new Map<string, { mtimeMs: number; content: string }>();
  for (const name of readdirSync(dir)) {
    const file = path.join(dir, name);
    result.set(name, { mtimeMs: statSync(file).mtimeMs, content: readFileSync(file, 'utf8') });
  }
  return result;
}

function mode(file: string): number {
  return statSync(file).mode & 0o777;
}

function assertRefused(result: CliResult, pattern: RegExp): void {
  assert.equal(result.code, 2, `exit 2: ${result.stderr}`);
  const lines = result.stderr.split('\n').filter((l) => l.length > 0);
  assert.equal(lines.length, 2, `one error line and one hint: ${result.stderr}`);
  assert.match(lines[0] ?? '', /^error: /);
  assert.match(lines[0] ?? '', pattern);
  assert.match(lines[1] ?? '', /^hint: ./);
  assert.equal(result.stdout, '');
}

void describe('cluster init (real command)', () => {
  const out = (): string => path.join(root, 'prod');
  let first: CliResult;
  const bundles = new Map<string, NodeBundle>();
  let context: ClusterContext;
  let ca: X509Certificate;

  before(async () => {
    root = await mkdtemp(path.join(tmpdir(), 'pgpilot-cluster-init-'));
    first = await init(['prod', '--hosts', HOSTS_FLAG, '--out', out(), '--backup-store', 's3://backups/prod?region=eu-west-1'], S3_ENV);
  });

  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  void it('writes the CA, one bundle per host and the context, with their modes', () => {
    assert.equal(first.code, 0, first.stderr);
    const expected = ['prod.ca.crt', 'prod.ca.key', 'prod.context.json', ...HOSTS.map(([n]) => `prod-${n}.bundle`)].sort();
    assert.deepEqual(readdirSync(out()).sort(), expected, 'exactly these files (no staging left behind)');
    assert.equal(mode(out()) & 0o077, 0, 'the output directory is private');
    assert.equal(mode(path.join(out(), 'prod.ca.crt')), 0o644);
    for (const name of expected.filter((n) => n !== 'prod.ca.crt')) assert.equal(mode(path.join(out(), name)), 0o600, name);
    for (const [node] of HOSTS) bundles.set(node, nodeBundleSchema.parse(JSON.parse(readFileSync(path.join(out(), `prod-${node}.bundle`), 'utf8'))));
    context = clusterContextSchema.parse(JSON.parse(readFileSync(path.join(out(), 'prod.context.json'), 'utf8')));
    ca = new X509Certificate(readFileSync(path.join(out(), 'prod.ca.crt')));
    assert.ok(ca.ca);
  });

  void it('node certificates chain to the CA and carry every node address, loopback and every node name', () => {
    const expectedIps = [...HOSTS.map(([, a]) => a), '127.0.0.1', '::1'].sort();
    const expectedDns = ['localhost', ...HOSTS.map(([n]) => n)].sort();
    for (const [node, address] of HOSTS) {
      const bundle = bundles.get(node);
      assert.ok(bundle !== undefined);
      assert.equal(bundle.host, address);
      assert.equal(bundle.tls.caPem, ca.toString());
      const cert = new X509Certificate(bundle.tls.certPem);
      assert.ok(cert.checkIssued(ca), `${node} issued by the CA`);
      assert.ok(cert.verify(ca.publicKey), `${node} signed by the CA key`);
      assert.equal(cert.subject, `CN=${node}`);
      assert.deepEqual(sans(cert), { ips: expectedIps, dns: expectedDns });
      assert.deepEqual(cert.keyUsage?.sort(), ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2'], 'serverAuth + clientAuth');
      assert.ok(cert.checkPrivateKey(createPrivateKey(bundle.tls.keyPem)), `${node} key matches its certificate`);
    }
  });

  void it('etcd: members on the first 3 hosts only, the initial cluster names exactly them', () => {
    const members = ['node1', 'node2', 'node3'];
    assert.deepEqual(context.etcd, { kind: 'pgpilot', endpoints: ['https://10.0.0.1:2379', 'https://10.0.0.2:2379', 'https://[fd00::3]:2379'] });
    const tokens = new Set<string>();
    for (const [node, address] of HOSTS) {
      const bundle = bundles.get(node);
      assert.ok(bundle !== undefined);
      assert.deepEqual(bundle.etcd, context.etcd);
      if (!members.includes(node)) {
        assert.equal(bundle.etcdMember, null, `${node} runs no etcd member`);
        continue;
      }
      const member = bundle.etcdMember;
      assert.ok(member !== null, `${node} runs an etcd member`);
      assert.equal(member.name, node);
      assert.equal(member.initialClusterState, 'new');
      assert.deepEqual(
        member.initialCluster.split(',').map((e) => e.split('=')[0]),
        members,
      );
      assert.equal(member.initialCluster, 'node1=https://10.0.0.1:2380,node2=https://10.0.0.2:2380,node3=https://[fd00::3]:2380');
      tokens.add(member.initialClusterToken);
      const cert = new X509Certificate(member.certPem);
      assert.ok(cert.checkIssued(ca) && cert.verify(ca.publicKey), `etcd cert of ${node} chains to the CA`);
      assert.deepEqual(sans(cert).ips, [address, '127.0.0.1'].sort());
      assert.ok(cert.checkPrivateKey(createPrivateKey(member.keyPem)));
    }
    assert.equal(tokens.size, 1, 'one initial cluster token');
  });

  void it('the context: admin client certificate, same secrets, the CA key file, the S3 store', () => {
    const admin = new X509Certificate(context.tls.certPem);
    assert.ok(admin.checkIssued(ca) && admin.verify(ca.publicKey));
    assert.equal(admin.subject, 'CN=admin');
    assert.deepEqual(admin.keyUsage, ['1.3.6.1.5.5.7.3.2'], 'clientAuth only');
    assert.equal(context.caKeyFile, 'prod.ca.key');
    assert.ok(existsSync(path.resolve(out(), context.caKeyFile)));
    assert.deepEqual(context.clientCidrs, ['10.0.0.0/29', 'fd00::3/128']);
    for (const bundle of bundles.values()) {
      assert.deepEqual(bundle.secrets, context.secrets);
      assert.deepEqual(bundle.nodes, context.nodes);
      assert.deepEqual(bundle.backupStore, { url: 's3://backups/prod?region=eu-west-1', accessKeyId: 'AKIAEXAMPLEKEYID', secretAccessKey: S3_SECRET });
    }
    assert.deepEqual(context.backupStore, bundles.get('node1')?.backupStore);
  });

  void it('the CA key is in no bundle and not in the context', () => {
    const caKey = readFileSync(path.join(out(), 'prod.ca.key'), 'utf8').trim();
    const body = caKey.split('\n').slice(1, -1).join('');
    assert.ok(body.length > 40);
    for (const name of readdirSync(out()).filter((n) => n !== 'prod.ca.key')) {
      const text = readFileSync(path.join(out(), name), 'utf8').replaceAll('\\n', '').replaceAll('\n', '');
      assert.ok(!text.includes(body), `${name} holds no CA key`);
    }
  });

  void it('prints the files, etcd placement, firewall, next steps and no secret', () => {
    for (const text of ['prod-node1.bundle', 'prod.context.json', 'etcd: pgpilot runs 3 members on node1, node2, node3', 'etcd clients only: node4', '2380', 'scp ', '[fd00::3]:', 'pgpilot node install --bundle', 'pgpilot node run --bundle', `pgpilot status prod --context ${path.join(out(), 'prod.context.json')}`]) {
      assert.ok(first.stdout.includes(text), `stdout shows ${text}`);
    }
    assert.match(first.stderr, /signing 8 certificates/);
    const secrets = [S3_SECRET, context.secrets.superuser.password, context.secrets.replication.password, context.secrets.apiToken, ...[...bundles.values()].map((b) => b.tls.keyPem.split('\n')[1] ?? 'x')];
    for (const secret of secrets) {
      assert.ok(!first.stdout.includes(secret) && !first.stderr.includes(secret), 'no secret printed');
    }
  });

  void it('a second run without --force fails with exit 2 and changes nothing; --force makes a new cluster', async () => {
    const before = snapshot(out());
    const again = await init(['prod', '--hosts', HOSTS_FLAG, '--out', out()]);
    assert.equal(again.code, 2, again.stderr);
    assert.match(again.stderr, /^error: cluster init prod: .* already exist\nhint: .*--force/);
    assert.deepEqual(snapshot(out()), before, 'nothing changed');
    // A smaller cluster over the same files is refused too (the CA and node1..2 exist).
    const smaller = await init(['prod', '--hosts', 'node1=10.0.0.1,node2=10.0.0.2', '--out', out()]);
    assert.equal(smaller.code, 2);
    assert.deepEqual(snapshot(out()), before, 'nothing changed');

    const forced = await init(['prod', '--hosts', HOSTS_FLAG, '--out', out(), '--force', '--json']);
    assert.equal(forced.code, 0, forced.stderr);
    const summary = JSON.parse(forced.stdout) as { files: { bundles: { node: string; etcdMember: boolean }[] }; etcd: { members: string[] }; backupStore: unknown; warnings: string[] };
    assert.deepEqual(summary.etcd.members, ['node1', 'node2', 'node3']);
    assert.deepEqual(summary.files.bundles.map((b) => [b.node, b.etcdMember]), [['node1', true], ['node2', true], ['node3', true], ['node4', false]]);
    assert.equal(summary.backupStore, null);
    assert.ok(summary.warnings.some((w) => w.includes('no --backup-store')));
    const after = snapshot(out());
    assert.notEqual(after.get('prod.ca.crt')?.content, before.get('prod.ca.crt')?.content, 'a new CA');
    const newContext = clusterContextSchema.parse(JSON.parse(after.get('prod.context.json')?.content ?? ''));
    assert.notEqual(newContext.secrets.apiToken, context.secrets.apiToken, 'new secrets');
    assert.ok(!forced.stdout.includes(newContext.secrets.superuser.password) && !forced.stdout.includes(newContext.secrets.apiToken));
  });

  void it('external etcd: no member anywhere, no etcd certificate', async () => {
    const dir = path.join(root, 'ext');
    const result = await init(['ext', '--hosts', 'a=10.1.0.1,b=10.1.0.2,c=10.1.0.3', '--out', dir, '--etcd-endpoints', 'https://10.1.1.1:2379,https://10.1.1.2:2379,https://10.1.1.3:2379', '--client-cidr', '10.1.0.0/16', '--pg-port', '15432']);
    assert.equal(result.code, 0, result.stderr);
    for (const node of ['a', 'b', 'c']) {
      const bundle = nodeBundleSchema.parse(JSON.parse(readFileSync(path.join(dir, `ext-${node}.bundle`), 'utf8')));
      assert.equal(bundle.etcdMember, null);
      assert.equal(bundle.etcd.kind, 'external');
      assert.deepEqual(bundle.clientCidrs, ['10.1.0.0/16']);
      assert.equal(bundle.ports.pgPort, 15432);
    }
    assert.match(result.stderr, /signing 4 certificates/);
  });

  void it('bad input: one line, a hint, exit 2, nothing written', async () => {
    const cases: [string[], RegExp][] = [
      [['--hosts', 'node1=10.0.0.1,node2=10.0.0.1,node3=10.0.0.3'], /node1 and node2 have the same address 10\.0\.0\.1/],
      [['--hosts', 'node1=10.0.0.1,node2=10.0.0.300'], /not an IP address/],
      [['--hosts', Array.from({ length: 10 }, (_, i) => `node${i + 1}=10.0.0.${i + 1}`).join(',')], /10 hosts/],
      [['--hosts', 'node1=10.0.0.1,node2=10.0.0.2,node3=10.0.0.3', '--client-cidr', '192.168.0.0/24'], /holds none of the host addresses/],
    ];
    // Independent child processes: run together (each refuses before writing anything). The
    // other refusals are covered in process by test/unit/cluster-init-command.test.ts.
    const results = await Promise.all(cases.map(([args], i) => init(['bad', ...args, '--out', path.join(root, `bad${i}`)])));
    for (const [i, [args, pattern]] of cases.entries()) {
      const result = results[i];
      assert.ok(result !== undefined);
      assertRefused(result, pattern);
      assert.ok(!existsSync(path.join(root, `bad${i}`)), `nothing written for ${args.join(' ')}`);
    }
  });
});

