/**
 * The `status --json` contract builder (src/operations/cluster-status.ts): roles and lag
 * come from the leader's own replication entries (with the LSN difference as fallback), members
 * whose agent is not alive show as stopped, a self-declared primary that does not hold the leader
 * key is never shown as primary, and the connection strings cover every node and never leak the
 * password unencoded (and can be masked for display, or left out entirely as `status --json` does
 * without --show-secrets). Each member gets the leader-measured replay
 * lag in seconds and a one-line health verdict (ok / warning / critical), shown by `status`.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { MemberRecord } from '../../src/state/member-record.js';
import { buildClusterStatus, connectionStrings, formatBytes, maskPassword, withoutPassword, withoutSecrets, type StatusInputs } from '../../src/operations/cluster-status.js';
import { renderStatus } from '../../src/cli/commands/status.js';
import { memberRecord, primaryRecord } from '../builders/observation-builder.js';
import { clusterManifest, clusterSecrets } from '../builders/manifest-builder.js';
import { localTopology } from '../../src/providers/local/local-topology.js';

const manifest = clusterManifest({ nodes: 3 });
const secrets = clusterSecrets();

function inputs(overrides: Partial<StatusInputs> = {}): StatusInputs {
  return {
    topology: localTopology(manifest),
    secrets,
    etcd: 'running',
    leader: 'node1',
    members: healthyMembers(),
    syncMode: 'off',
    // memberRecord() publishes pid 1000 + index: these are the agents that wrote the records.
    aliveAgents: new Map([
      ['node1', 1001],
      ['node2', 1002],
      ['node3', 1003],
    ]),
    ...overrides,
  };
}

function healthyMembers(): MemberRecord[] {
  return [
    primaryRecord({
      name: 'node1',
      lsn: '0/5000000',
      timeline: 3,
      proxyPort: 16432,
      replicaProxyPort: 17432,
      tags: { priority: 2 },
      replication: [
        { applicationName: 'node2', state: 'streaming', replayLsn: '0/4FFFF00', lagBytes: 256, syncState: 'async' },
        { applicationName: 'node3', state: 'catchup', replayLsn: null, lagBytes: null, syncState: 'async' },
      ],
    }),
    memberRecord({ name: 'node2', lsn: '0/4FFFF00', timeline: 3, following: 'node1' }),
    memberRecord({ name: 'node3', lsn: '0/4000000', timeline: 3, following: 'node1' }),
  ];
}

function member(status: ReturnType<typeof buildClusterStatus>, name: string): ReturnType<typeof buildClusterStatus>['members'][number] {
  const found = status.members.find((m) => m.name === name);
  assert.ok(found, `member ${name} present`);
  return found;
}

void describe('buildClusterStatus', () => {
  void it('reports the leader as primary, replicas with lag from the leader replication entries', () => {
    const status = buildClusterStatus(inputs());
    assert.equal(status.cluster, 'demo');
    assert.equal(status.leader, 'node1');
    assert.equal(status.timeline, 3);
    assert.equal(status.syncMode, 'off');
    assert.equal(status.etcd, 'running');
    assert.deepEqual(status.members.map((m) => [m.name, m.role]), [
      ['node1', 'primary'],
      ['node2', 'replica'],
      ['node3', 'replica'],
    ]);
    const leader = member(status, 'node1');
    assert.equal(leader.lagBytes, 0);
    assert.equal(leader.pid, 1001);
    assert.equal(leader.postgresPid, 2001);
    assert.equal(leader.proxyPort, 16432);
    assert.deepEqual(leader.tags, { priority: 2 });
    assert.equal(leader.apiUrl, 'https://127.0.0.1:18008');
    assert.equal(leader.port, 15432);
    assert.equal(member(status, 'node2').lagBytes, 256, 'from pg_stat_replication on the leader');
  });

  void it('falls back to the LSN difference when the entry is missing or has no lag', () => {
    const status = buildClusterStatus(inputs());
    assert.equal(member(status, 'node3').lagBytes, 0x1000000, 'entry without lag: leader LSN - replica LSN');
    const members = healthyMembers().map((m) => (m.name === 'node1' ? { ...m, replication: [] } : m));
    const fallback = buildClusterStatus(inputs({ members }));
    assert.equal(member(fallback, 'node2').lagBytes, 0x100);
    const ahead = healthyMembers().map((m) => (m.name === 'node2' ? { ...m, lsn: '0/6000000' } : m.name === 'node1' ? { ...m, replication: [] } : m));
    assert.equal(member(buildClusterStatus(inputs({ members: ahead })), 'node2').lagBytes, 0, 'never negative');
  });

  void it('gives no lag when the leader is not a running primary or positions are unknown', () => {
    const noLeader = buildClusterStatus(inputs({ leader: null }));
    assert.equal(noLeader.timeline, null);
    assert.equal(member(noLeader, 'node2').lagBytes, null);
    const unknownLsn = healthyMembers().map((m) => (m.name === 'node3' ? { ...m, lsn: null } : m));
    assert.equal(member(buildClusterStatus(inputs({ members: unknownLsn })), 'node3').lagBytes, null);
  });

  void it('shows a member whose agent is not alive as stopped, whatever its stale record says', () => {
    const status = buildClusterStatus(inputs({ aliveAgents: new Map([['node1', 1001], ['node3', 1003]]) }));
    const node2 = member(status, 'node2');
    assert.equal(node2.role, 'stopped');
    assert.equal(node2.state, 'stopped');
    assert.equal(node2.pid, null);
    assert.equal(node2.postgresPid, null);
    assert.equal(node2.lsn, null);
    assert.equal(node2.lagBytes, null);
    assert.equal(node2.streaming, false);
    assert.equal(node2.host, '127.0.0.1');
    assert.equal(node2.port, 15433);
  });

  void it('shows an alive agent without a record as unknown', () => {
    const status = buildClusterStatus(inputs({ members: healthyMembers().filter((m) => m.name !== 'node3') }));
    const node3 = member(status, 'node3');
    assert.equal(node3.role, 'unknown');
    assert.equal(node3.state, 'agent running, not reporting');
    assert.equal(node3.pid, 1003);
  });

  void it('ignores a record written by an earlier agent process (pid differs from the live agent)', () => {
    const status = buildClusterStatus(inputs({ aliveAgents: new Map([['node1', 1001], ['node2', 5555], ['node3', 1003]]) }));
    const node2 = member(status, 'node2');
    assert.equal(node2.role, 'unknown');
    assert.equal(node2.state, 'agent running, not reporting');
    assert.equal(node2.pid, 5555);
    assert.equal(node2.lsn, null);
    assert.equal(node2.lagBytes, null);
  });

  void it('never shows a primary record that does not hold the leader key as primary', () => {
    const members = [...healthyMembers().filter((m) => m.name !== 'node3'), primaryRecord({ name: 'node3', lsn: '0/4000000' })];
    const status = buildClusterStatus(inputs({ members }));
    assert.equal(member(status, 'node3').role, 'unknown');
    assert.equal(member(status, 'node3').lagBytes, null);
    const leaderless = buildClusterStatus(inputs({ leader: null }));
    assert.equal(member(leaderless, 'node1').role, 'unknown', 'no leader key: no primary');
    assert.equal(leaderless.members.filter((m) => m.role === 'primary').length, 0);
  });

  void it('reports a replica that is running but not streaming as such, and other states verbatim', () => {
    const members = healthyMembers().map((m) => (m.name === 'node2' ? { ...m, streaming: false } : m.name === 'node3' ? { ...m, role: 'stopped' as const, state: 'cloning' } : m));
    const status = buildClusterStatus(inputs({ members }));
    assert.equal(member(status, 'node2').state, 'running, not streaming');
    assert.equal(member(status, 'node2').streaming, false);
    assert.equal(member(status, 'node3').state, 'cloning');
    assert.equal(member(status, 'node3').role, 'stopped');
  });

  void it('keeps the manifest node order and ignores records of unknown nodes', () => {
    const status = buildClusterStatus(inputs({ members: [...healthyMembers().reverse(), memberRecord({ name: 'node9' })] }));
    assert.deepEqual(status.members.map((m) => m.name), ['node1', 'node2', 'node3']);
  });
});

void describe('connectionStrings and maskPassword', () => {
  void it('lists every node host:port and asks for the right session type', () => {
    const multi = clusterManifest({ nodes: 3, host: (i) => `10.0.0.${i + 1}` });
    const { connectionString, replicaConnectionString } = connectionStrings(localTopology(multi), secrets);
    const tls = `sslmode=verify-full&sslrootcert=${multi.clusterDir}/tls/ca.crt`;
    assert.equal(connectionString, `postgresql://postgres:superuser-password-0123456789@10.0.0.1:16432,10.0.0.2:16433,10.0.0.3:16434/postgres?target_session_attrs=read-write&${tls}`);
    assert.equal(
      replicaConnectionString,
      `postgresql://postgres:superuser-password-0123456789@10.0.0.1:17432,10.0.0.2:17433,10.0.0.3:17434/postgres?target_session_attrs=prefer-standby&${tls}`,
    );
    const status = buildClusterStatus(inputs());
    for (const node of manifest.nodes) assert.ok(status.connectionString.includes(`${node.host}:${node.proxyPort}`));
  });

  void it('URL-encodes user, password and database', () => {
    const tricky = clusterSecrets({ superuser: 'ad min', password: 'p@ss:w/rd#%?&=0123456789' });
    const { connectionString } = connectionStrings(localTopology(manifest), tricky, 'my db');
    assert.ok(connectionString.startsWith(`postgresql://ad%20min:${encodeURIComponent('p@ss:w/rd#%?&=0123456789')}@127.0.0.1:16432,`));
    assert.ok(connectionString.includes('/my%20db?target_session_attrs=read-write'));
    assert.ok(!connectionString.includes('p@ss'));
    const url = new URL(connectionString.replace(/@[^/]+\//, '@h/'));
    assert.equal(decodeURIComponent(url.password), 'p@ss:w/rd#%?&=0123456789');
    assert.equal(decodeURIComponent(url.username), 'ad min');
  });

  void it('maskPassword hides the password and keeps everything else', () => {
    const tricky = clusterSecrets({ password: 'p@ss:w/rd#%?&=0123456789' });
    const { connectionString, replicaConnectionString } = connectionStrings(localTopology(manifest), tricky);
    const masked = maskPassword(connectionString);
    assert.equal(
      masked,
      `postgresql://postgres:****@127.0.0.1:16432,127.0.0.1:16433,127.0.0.1:16434/postgres?target_session_attrs=read-write&sslmode=verify-full&sslrootcert=${manifest.clusterDir}/tls/ca.crt`,
    );
    assert.ok(!maskPassword(replicaConnectionString).includes(encodeURIComponent('p@ss')));
    assert.equal(maskPassword('postgresql://host:5432/db'), 'postgresql://host:5432/db', 'nothing to mask');
  });
});

void describe('withoutSecrets (status --json without --show-secrets)', () => {
  const poolerManifest = { ...manifest, nodes: manifest.nodes.map((n, i) => ({ ...n, poolerPort: 19000 + i })) };
  const full = buildClusterStatus(
    inputs({
      topology: localTopology(poolerManifest),
      secrets: { ...clusterSecrets({ password: 'p@ss:w/rd#%?&=0123456789' }), pooler: { name: 'pgpilot_pooler', password: 'pooler-password-0123456789' } },
      pooler: { settings: { enabled: true, poolMode: 'transaction', defaultPoolSize: 20 }, alive: new Map() },
      apps: [{ app: 'shop', database: 'shop', user: 'shop' }],
    }),
  );

  void it('drops the password from every connection string, keeping user, hosts, database and parameters', () => {
    const plain = withoutSecrets(full);
    const tls = `sslmode=verify-full&sslrootcert=${manifest.clusterDir}/tls/ca.crt`;
    assert.equal(plain.connectionString, `postgresql://postgres@127.0.0.1:16432,127.0.0.1:16433,127.0.0.1:16434/postgres?target_session_attrs=read-write&${tls}`);
    assert.equal(plain.replicaConnectionString, `postgresql://postgres@127.0.0.1:17432,127.0.0.1:17433,127.0.0.1:17434/postgres?target_session_attrs=prefer-standby&${tls}`);
    assert.equal(plain.pooler?.connectionString, `postgresql://postgres@127.0.0.1:19000,127.0.0.1:19001,127.0.0.1:19002/postgres?${tls}`);
    // libpq still parses it: no password, the same user.
    const url = new URL(plain.connectionString.replace(/@[^/]+\//, '@h/'));
    assert.equal(url.username, 'postgres');
    assert.equal(url.password, '');
    // Everything else is untouched, and the input is not modified.
    assert.deepEqual({ ...plain, connectionString: '', replicaConnectionString: '', pooler: null }, { ...full, connectionString: '', replicaConnectionString: '', pooler: null });
    assert.ok(full.connectionString.includes(encodeURIComponent('p@ss:w/rd#%?&=0123456789')));
  });

  void it('leaves no secret of the cluster anywhere in the serialized status', () => {
    const text = JSON.stringify(withoutSecrets(full));
    for (const secret of ['p@ss:w/rd#%?&=0123456789', 'replication-password-0123456789', 'a'.repeat(40), 'pooler-password-0123456789']) {
      assert.ok(!text.includes(secret) && !text.includes(encodeURIComponent(secret)), `a secret leaks: ${secret.slice(0, 6)}...`);
    }
    // The check itself can fail: the full status does carry the superuser password.
    assert.ok(JSON.stringify(full).includes(encodeURIComponent('p@ss:w/rd#%?&=0123456789')));
  });

  void it('withoutPassword leaves URLs without a password as they are', () => {
    assert.equal(withoutPassword('postgresql://postgres@h:1/db'), 'postgresql://postgres@h:1/db');
    assert.equal(withoutPassword('postgresql://h:1/db'), 'postgresql://h:1/db');
    assert.equal(withoutPassword('postgresql://u:p%40w@h:1,h:2/db?x=a@b'), 'postgresql://u@h:1,h:2/db?x=a@b');
  });
});

void describe('lag seconds and health verdicts', () => {
  const health = (status: ReturnType<typeof buildClusterStatus>, name: string): string => {
    const h = member(status, name).health;
    return `${h.status}: ${h.summary}`;
  };

  void it('takes lag seconds from the leader entry (0 for the leader, null when unknown)', () => {
    const members = healthyMembers().map((m) =>
      m.name === 'node1' ? { ...m, replication: m.replication.map((r) => (r.applicationName === 'node2' ? { ...r, lagSeconds: 0.75 } : r)) } : m,
    );
    const status = buildClusterStatus(inputs({ members }));
    assert.equal(member(status, 'node1').lagSeconds, 0);
    assert.equal(member(status, 'node2').lagSeconds, 0.75);
    assert.equal(member(status, 'node3').lagSeconds, null, 'no lagSeconds in the entry (older agent)');
    assert.equal(member(buildClusterStatus(inputs({ leader: null })), 'node2').lagSeconds, null);
  });

  void it('says ok for a writable leader and for streaming replicas within the failover lag limit', () => {
    const status = buildClusterStatus(inputs());
    assert.equal(health(status, 'node1'), 'ok: leader, accepting writes');
    assert.equal(health(status, 'node2'), 'ok: streaming, 256 B behind');
    assert.equal(health(status, 'node3'), 'ok: streaming, 16.0 MiB behind', 'exactly at the limit is still eligible');
  });

  void it('warns about lag over the limit, a replica not streaming, and transitions', () => {
    const lagging = buildClusterStatus(inputs({ maxLagBytes: 1024 * 1024 }));
    assert.equal(health(lagging, 'node3'), 'warning: lagging: 16.0 MiB behind (over the failover limit 1.0 MiB)');
    const members = healthyMembers().map((m) => (m.name === 'node2' ? { ...m, streaming: false } : m.name === 'node3' ? { ...m, role: 'stopped' as const, state: 'cloning' } : m));
    const status = buildClusterStatus(inputs({ members }));
    assert.equal(health(status, 'node2'), 'warning: replica not streaming');
    assert.equal(health(status, 'node3'), 'warning: in transition: cloning');
  });

  void it('is critical for a stopped agent, a silent agent, a stopped postgres and a primary without the key', () => {
    assert.equal(health(buildClusterStatus(inputs({ aliveAgents: new Map([['node1', 1001], ['node3', 1003]]) })), 'node2'), 'critical: down: agent not running');
    assert.equal(health(buildClusterStatus(inputs({ members: healthyMembers().filter((m) => m.name !== 'node3') })), 'node3'), 'critical: agent running but not reporting to etcd');
    const crashed = healthyMembers().map((m) => (m.name === 'node2' ? { ...m, role: 'stopped' as const, state: 'crashed', postgresPid: null } : m));
    assert.equal(health(buildClusterStatus(inputs({ members: crashed })), 'node2'), 'critical: postgres crashed');
    const twoPrimaries = [...healthyMembers().filter((m) => m.name !== 'node3'), primaryRecord({ name: 'node3', lsn: '0/4000000' })];
    assert.equal(health(buildClusterStatus(inputs({ members: twoPrimaries })), 'node3'), 'critical: runs as primary without the leader key');
  });

  void it('formats bytes for people', () => {
    assert.deepEqual([0, 512, 1024, 1536, 16 * 1024 * 1024, 3 * 1024 ** 3].map(formatBytes), ['0 B', '512 B', '1.0 KiB', '1.5 KiB', '16.0 MiB', '3.0 GiB']);
  });

  void it('status shows LAG(S) and a HEALTH column, one line per member', () => {
    const members = healthyMembers().map((m) =>
      m.name === 'node1' ? { ...m, replication: m.replication.map((r) => (r.applicationName === 'node2' ? { ...r, lagSeconds: 0.25 } : r)) } : m,
    );
    const lines = renderStatus(buildClusterStatus(inputs({ members })), { showPasswords: false }).split('\n');
    const header = lines.find((l) => l.startsWith('NODE'));
    assert.ok(header?.includes('LAG(S)') && header.includes('HEALTH'), header);
    const node2 = lines.find((l) => l.startsWith('node2')) ?? '';
    assert.match(node2, /\s0\.3\s/, 'lag seconds, one decimal');
    assert.match(node2, /ok: streaming, 256 B behind, 0\.3 s$/);
    assert.match(lines.find((l) => l.startsWith('node1')) ?? '', /ok: leader, accepting writes$/);
  });
});
