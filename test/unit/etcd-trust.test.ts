/**
 * Agents that trust nothing they read from etcd, the pure parts: the parameter policy
 * (src/postgres/parameter-policy.ts), which leader key is believed (src/ha/leader-trust.ts) and
 * what decide does with an untrusted one (rules L1-L3), which member records are believed
 * (src/ha/member-trust.ts), the alert board, and health lowered by alerts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parameterVerdict, screenParameters } from '../../src/postgres/parameter-policy.js';
import { refusalFor } from '../../src/postgres/settings-validation.js';
import { assessLeaderKey } from '../../src/ha/leader-trust.js';
import { isKnownUrl, knownHostsFor, trustedMemberRecords } from '../../src/ha/member-trust.js';
import { AlertBoard } from '../../src/ha/alerts.js';
import { withAlerts } from '../../src/operations/cluster-status.js';
import { clusterKeys } from '../../src/dcs/keys.js';
import { decide } from '../../src/ha/decide.js';
import { observation, primaryRecord, memberRecord, reachable, running, runningPrimary } from '../builders/observation-builder.js';

void describe('parameter policy', () => {
  void it('forbids commands, libraries, paths, ports, addresses, TLS and what pgpilot manages', () => {
    const forbidden = [
      'archive_command', 'restore_command', 'archive_cleanup_command', 'recovery_end_command', 'archive_library', 'ARCHIVE_MODE',
      'port', 'listen_addresses', 'unix_socket_directories', 'unix_socket_permissions', 'data_directory', 'hba_file', 'ident_file',
      'config_file', 'ssl', 'ssl_cert_file', 'ssl_key_file', 'ssl_passphrase_command', 'log_directory', 'external_pid_file',
      'primary_conninfo', 'primary_slot_name', 'synchronous_standby_names', 'include_dir', 'dynamic_library_path', 'jit_provider', 'cluster_name',
    ];
    for (const name of forbidden) {
      assert.equal(parameterVerdict(name, 'x').kind, 'forbidden', name);
      assert.notEqual(refusalFor(name, null, { memberCount: 3 }), null, `the CLI refuses ${name} too`);
    }
    for (const name of ['work_mem', 'max_connections', 'log_min_duration_statement', 'recovery_min_apply_delay', 'cron.database_name']) {
      assert.equal(parameterVerdict(name, '1').kind, 'allowed', name);
    }
  });

  void it('allows preload lists only of known extension libraries', () => {
    for (const name of ['shared_preload_libraries', 'session_preload_libraries', 'local_preload_libraries']) {
      assert.equal(parameterVerdict(name, 'pg_stat_statements, "$libdir/timescaledb",auto_explain').kind, 'allowed', name);
      for (const bad of ['/tmp/evil.so', 'evil', '$libdir/../../tmp/evil', 'pg_stat_statements,/x/y', "$libdir/plugins/evil"]) {
        assert.equal(parameterVerdict(name, bad).kind, 'forbidden', `${name}=${bad}`);
      }
      assert.equal(parameterVerdict(name, 12).kind, 'forbidden');
    }
    const verdict = parameterVerdict('shared_preload_libraries', 'evil');
    assert.match(verdict.kind === 'forbidden' ? verdict.reason : '', /evil is not a library of a known extension/);
  });

  void it('drops invalid names and unsafe values, keeps the rest', () => {
    const screened = screenParameters({ 'a = 1\nb': 1, work_mem: '4MB', Max_Connections: 200, x: 'a\u0000b', big: 'x'.repeat(5000), archive_command: 'rm -rf /', __proto__: 'y' });
    assert.deepEqual(screened.parameters, { work_mem: '4MB', max_connections: 200, __proto__: 'y' });
    assert.deepEqual(screened.rejected.map((r) => r.name), ['a = 1\nb', 'x', 'big', 'archive_command']);
    assert.equal(Object.getPrototypeOf(screened.parameters), Object.prototype, 'a __proto__ key is a plain entry');
  });
});

const keys = clusterKeys('demo');

void describe('leader key trust', () => {
  const members = [primaryRecord({ name: 'node1' }), memberRecord({ name: 'node2' })];
  const base = { self: 'node2', members, lastTrustedLeader: 'node1', untrustedSinceMs: null, nowMs: 10_000, ttlSeconds: 6 };

  void it('trusts a key on a lease naming a member, and any key naming this node', () => {
    assert.deepEqual(assessLeaderKey({ ...base, key: { value: 'node1', leaseId: '7' } }), { leader: 'node1', untrusted: null });
    assert.deepEqual(assessLeaderKey({ ...base, key: { value: 'node2', leaseId: null } }), { leader: 'node2', untrusted: null });
    assert.deepEqual(assessLeaderKey({ ...base, key: null }), { leader: null, untrusted: null });
  });

  void it('ignores a key without a lease at once; keeps the last trusted leader while it runs as primary', () => {
    const a = assessLeaderKey({ ...base, key: { value: 'ghost', leaseId: null } });
    assert.equal(a.leader, 'node1');
    assert.deepEqual(a.untrusted, { value: 'ghost', reason: 'the leader key has no lease', ignored: true });
    const gone = assessLeaderKey({ ...base, members: [memberRecord({ name: 'node2' })], key: { value: 'ghost', leaseId: null } });
    assert.equal(gone.leader, null, 'the last leader has no record any more');
  });

  void it('a key naming a node without a record is unconfirmed for one TTL, then ignored', () => {
    const key = { value: 'node9', leaseId: '8' };
    assert.equal(assessLeaderKey({ ...base, key })?.untrusted?.ignored, false);
    assert.equal(assessLeaderKey({ ...base, key, untrustedSinceMs: 10_000 - 5_999 }).untrusted?.ignored, false);
    assert.equal(assessLeaderKey({ ...base, key, untrustedSinceMs: 10_000 - 6_000 }).untrusted?.ignored, true);
  });
});

void describe('decide with an untrusted leader key (rules L1-L3)', () => {
  const ghost = { value: 'ghost', reason: 'the leader key has no lease', ignored: true };
  void it('L1: the last trusted leader, still primary, reclaims the key by compare-and-set and never demotes', () => {
    const d = decide(observation({ pg: runningPrimary(), dcs: reachable({ leader: 'node1', untrustedLeader: ghost, members: [primaryRecord({ name: 'node1' })] }) }));
    assert.deepEqual(d.actions, [{ kind: 'acquire-leader', replacing: 'ghost' }]);
    const waiting = decide(observation({ pg: runningPrimary(), dcs: reachable({ leader: 'node1', untrustedLeader: { ...ghost, ignored: false } }) }));
    assert.deepEqual(waiting.actions, [], 'unconfirmed: keeps running, no demote');
  });
  void it('L2: nobody acts on an unconfirmed key; replicas keep following the last trusted leader', () => {
    assert.deepEqual(decide(observation({ node: 'node2', pg: runningPrimary(), dcs: reachable({ leader: null, untrustedLeader: { ...ghost, ignored: false } }) })).actions, []);
    const follow = decide(observation({ node: 'node2', pg: running({ walReceiverStatus: 'streaming' }), configuredUpstream: 'node1', dcs: reachable({ leader: 'node1', untrustedLeader: ghost, members: [primaryRecord({ name: 'node1' })] }) }));
    assert.deepEqual(follow.actions, []);
  });
  void it('L3: with no leader left, the best candidate replaces exactly the ignored value', () => {
    const d = decide(observation({ node: 'node2', lastLeaderSeenMs: 1, agentStartedMs: 0, pg: running(), dcs: reachable({ leader: null, untrustedLeader: ghost, members: [] }) }));
    assert.deepEqual(d.actions[0], { kind: 'acquire-leader', replacing: 'ghost' }, d.summary);
  });
});

void describe('member record trust', () => {
  void it('ignores records under another name or outside the known hosts', () => {
    const hosts = knownHostsFor({ host: '10.0.0.1', knownHosts: ['10.0.0.1', '10.0.0.2'] });
    const ok = memberRecord({ name: 'node1', host: '10.0.0.1', apiUrl: 'http://10.0.0.1:8008' });
    const all = new Map([
      [keys.member('node1'), JSON.stringify(ok)],
      [keys.member('node2'), JSON.stringify(memberRecord({ name: 'node2', host: '10.0.0.2', apiUrl: 'http://evil.example:8008' }))],
      [keys.member('node3'), JSON.stringify(memberRecord({ name: 'node1', host: '10.0.0.2', apiUrl: 'http://10.0.0.2:8008' }))],
      [keys.member('node4'), JSON.stringify(memberRecord({ name: 'node4', host: '192.168.9.9', apiUrl: 'http://10.0.0.2:8008' }))],
    ]);
    const { members, ignored } = trustedMemberRecords(all, keys, hosts);
    assert.deepEqual(members.map((m) => m.name), ['node1']);
    assert.deepEqual(ignored.map((m) => m.name), ['node2', 'node3', 'node4']);
  });
  void it('knows only http(s) URLs without credentials on known hosts; loopback and the own host by default', () => {
    const hosts = knownHostsFor({ host: 'db1' });
    assert.deepEqual(hosts, ['db1', '127.0.0.1', '::1', 'localhost']);
    assert.equal(isKnownUrl('http://[::1]:8008/x', hosts), true);
    assert.equal(isKnownUrl('https://DB1:1', hosts), true);
    for (const url of ['http://db2:8008', 'file:///etc/passwd', 'http://user:pw@db1:1', 'not a url', 'http://127.0.0.1.evil:1']) assert.equal(isKnownUrl(url, hosts), false, url);
  });
});

void describe('alerts', () => {
  void it('tell listeners once per raise or changed message, and lower health', () => {
    const board = new AlertBoard();
    const told: string[] = [];
    board.onRaise((a) => told.push(a.message));
    assert.equal(board.raise('config-rejected', 'warning', 'a'), true);
    assert.equal(board.raise('config-rejected', 'warning', 'a'), false);
    board.raise('config-rejected', 'warning', 'b');
    assert.deepEqual(told, ['a', 'b']);
    assert.equal(board.clear('config-rejected'), true);
    assert.deepEqual(board.list(), []);
    assert.deepEqual(withAlerts({ status: 'ok', summary: 'fine' }, [{ kind: 'config-rejected', severity: 'warning', message: 'dropped x' }]), { status: 'warning', summary: 'dropped x (fine)' });
    assert.equal(withAlerts({ status: 'ok', summary: 'fine' }, [{ kind: 'config-unreadable', severity: 'critical', message: 'bad' }]).status, 'critical');
    assert.deepEqual(withAlerts({ status: 'ok', summary: 'fine' }, []), { status: 'ok', summary: 'fine' });
  });
});
