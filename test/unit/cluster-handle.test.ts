/**
 * How a command reaches its cluster (src/cluster/open-cluster-handle.ts): `--context FILE` beats
 * PGPILOT_CONTEXT, which beats the local home; a context naming another cluster is INPUT_INVALID,
 * an unreadable or malformed one CONTEXT_INVALID (exit 2). And the remote status
 * (src/providers/remote/remote-handle.ts), built from etcd alone over a MemoryDcs, has exactly the
 * shape of a local one: agents count as alive when their member record exists, PIDs come from the
 * records, an unreadable etcd is `unreachable`. Local-only commands refuse a remote handle with
 * LOCAL_ONLY (src/cluster/require-local.ts).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { contextFileFor, openClusterHandle } from '../../src/cluster/open-cluster-handle.js';
import { refuseRemote, requireLocal } from '../../src/cluster/require-local.js';
import { clusterKeys } from '../../src/dcs/keys.js';
import { MemoryDcs, MemoryDcsStore } from '../../src/dcs/memory-dcs.js';
import { CONTEXT_KIND, DEFAULT_HOST_PORTS, type ClusterContext } from '../../src/multihost/bundle.js';
import { buildClusterStatus, type ClusterStatus } from '../../src/operations/cluster-status.js';
import { localTopology } from '../../src/providers/local/local-topology.js';
import { contextTopology, openRemoteHandle, remoteStatus } from '../../src/providers/remote/remote-handle.js';
import { FakeClock } from '../../src/shared/clock.js';
import { PgpilotError } from '../../src/shared/errors.js';
import { memberRecord, primaryRecord } from '../builders/observation-builder.js';
import { clusterManifest, clusterSecrets } from '../builders/manifest-builder.js';

const FAKE_PEM = '-----BEGIN CERTIFICATE-----\nnot-a-real-certificate\n-----END CERTIFICATE-----\n';
const tmp = mkdtempSync(path.join(os.tmpdir(), 'pgpilot-handle-unit-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

function context(cluster = 'demo'): ClusterContext {
  return {
    kind: CONTEXT_KIND,
    version: 1,
    cluster,
    createdAt: '2026-12-01T00:00:00.000Z',
    ports: { ...DEFAULT_HOST_PORTS },
    nodes: [
      { name: 'node1', host: '10.0.0.1', etcdMember: true },
      { name: 'node2', host: '10.0.0.2', etcdMember: true },
      { name: 'node3', host: '10.0.0.3', etcdMember: true },
    ],
    etcd: { kind: 'pgpilot', endpoints: ['https://10.0.0.1:2379', 'https://10.0.0.2:2379', 'https://10.0.0.3:2379'] },
    clientCidrs: ['10.0.0.0/24'],
    secrets: clusterSecrets(),
    tls: { caPem: FAKE_PEM, certPem: FAKE_PEM, keyPem: '-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n' },
    caKeyFile: 'demo.ca.key',
  };
}

function writeContext(name: string, value: unknown): string {
  const file = path.join(tmp, name);
  writeFileSync(file, typeof value === 'string' ? value : JSON.stringify(value), { mode: 0o600 });
  return file;
}

async function refusal(promise: Promise<unknown>, code: string, exitCode: number, message: RegExp): Promise<PgpilotError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof PgpilotError, `a PgpilotError, got ${String(error)}`);
    assert.equal(error.code, code);
    assert.equal(error.exitCode, exitCode);
    assert.match(error.message, message);
    assert.ok(error.hint !== undefined && error.hint.length > 0, 'with a hint');
    return error;
  }
  assert.fail(`expected ${code}`);
}

void describe('contextFileFor (precedence)', () => {
  void it('takes --context first, then PGPILOT_CONTEXT, else none', () => {
    assert.deepEqual(contextFileFor('a.json', { PGPILOT_CONTEXT: 'b.json' }), { file: 'a.json', from: '--context' });
    assert.deepEqual(contextFileFor(undefined, { PGPILOT_CONTEXT: 'b.json' }), { file: 'b.json', from: 'PGPILOT_CONTEXT' });
    assert.equal(contextFileFor(undefined, {}), null);
    assert.equal(contextFileFor('', { PGPILOT_CONTEXT: '' }), null);
  });
});

void describe('openClusterHandle', () => {
  const home = path.join(tmp, 'home');
  const good = writeContext('demo.context.json', context());

  void it('opens a remote handle from --context, with the CA written next to the context', async () => {
    const handle = await openClusterHandle({ name: 'demo', home, context: good }, {});
    assert.equal(handle.kind, 'remote');
    assert.equal(handle.local, null);
    assert.equal(handle.contextFile, good);
    assert.deepEqual(handle.etcdEndpoints, context().etcd.endpoints);
    assert.deepEqual(
      handle.nodes.map((n) => `${n.name}@${n.host}:${n.pgPort}/${n.proxyPort}/${n.apiPort}`),
      ['node1@10.0.0.1:5432/5433/8008', 'node2@10.0.0.2:5432/5433/8008', 'node3@10.0.0.3:5432/5433/8008'],
    );
    assert.equal(handle.caFile, path.join(tmp, 'demo.ca.crt'));
    assert.equal(readFileSync(handle.caFile, 'utf8'), FAKE_PEM);
    assert.equal(statSync(handle.caFile).mode & 0o777, 0o644);
  });

  void it('uses PGPILOT_CONTEXT without --context, and --context wins over it', async () => {
    assert.equal((await openClusterHandle({ name: 'demo', home }, { PGPILOT_CONTEXT: good })).kind, 'remote');
    const broken = writeContext('broken.json', '{ not json');
    assert.equal((await openClusterHandle({ name: 'demo', home, context: good }, { PGPILOT_CONTEXT: broken })).kind, 'remote');
    await refusal(openClusterHandle({ name: 'demo', home }, { PGPILOT_CONTEXT: broken }), 'CONTEXT_INVALID', 2, /not a pgpilot context/);
  });

  void it('falls back to the local home (CLUSTER_NOT_FOUND there) when no context applies', async () => {
    await refusal(openClusterHandle({ name: 'demo', home }, {}), 'CLUSTER_NOT_FOUND', 1, /no cluster named "demo"/);
  });

  void it('refuses a context for another cluster (INPUT_INVALID) and bad or missing files (CONTEXT_INVALID)', async () => {
    const error = await refusal(openClusterHandle({ name: 'other', home, context: good }, {}), 'INPUT_INVALID', 2, /is for cluster demo, not other/);
    assert.match(error.hint ?? '', /pgpilot COMMAND demo --context/);
    await refusal(openClusterHandle({ name: 'demo', home, context: path.join(tmp, 'missing.json') }, {}), 'CONTEXT_INVALID', 2, /cannot read the context/);
    await refusal(openClusterHandle({ name: 'demo', home, context: writeContext('bundle.json', { ...context(), kind: 'pgpilot-node-bundle' }) }, {}), 'CONTEXT_INVALID', 2, /kind/);
    await refusal(openClusterHandle({ name: 'demo', home, context: writeContext('http.json', { ...context(), etcd: { kind: 'pgpilot', endpoints: ['http://10.0.0.1:2379'] } }) }, {}), 'CONTEXT_INVALID', 2, /etcd/);
    await refusal(openClusterHandle({ name: 'Bad_Name', home, context: good }, {}), 'INPUT_INVALID', 2, /invalid cluster name/);
  });

  void it('local-only commands refuse a remote handle with LOCAL_ONLY and a hint', async () => {
    const handle = await openClusterHandle({ name: 'demo', home, context: good }, {});
    assert.throws(() => requireLocal(handle, 'pgpilot stop'), (e: unknown) => e instanceof PgpilotError && e.code === 'LOCAL_ONLY' && e.exitCode === 2 && /works on a local cluster only/.test(e.message));
    await refusal(refuseRemote({ name: 'demo', home, context: good }, 'pgpilot stop', 'use systemctl'), 'LOCAL_ONLY', 2, /pgpilot stop works on a local cluster only/);
    // No context: nothing to refuse (the command then reads the local home itself).
    await refuseRemote({ name: 'demo', home }, 'pgpilot stop');
  });
});

void describe('remote status over etcd (MemoryDcs)', () => {
  const ctx = context();
  const topology = contextTopology(ctx, '/tmp/demo.ca.crt');
  const keys = clusterKeys('demo');
  const records = [
    primaryRecord({
      name: 'node1',
      lsn: '0/5000000',
      timeline: 2,
      replication: [{ applicationName: 'node2', state: 'streaming', replayLsn: '0/5000000', lagBytes: 0, syncState: 'async' }],
    }),
    memberRecord({ name: 'node2', lsn: '0/5000000', timeline: 2, following: 'node1' }),
  ];

  function seeded(): MemoryDcsStore {
    const store = new MemoryDcsStore(new FakeClock());
    store.put(keys.leader, 'node1');
    for (const r of records) store.put(keys.member(r.name), JSON.stringify(r));
    return store;
  }

  /** The status's structure: every object's keys, recursively (values left out). */
  function shape(value: unknown): unknown {
    if (Array.isArray(value)) return value.map(shape);
    if (value !== null && typeof value === 'object') return Object.fromEntries(Object.keys(value).sort().map((k) => [k, shape((value as Record<string, unknown>)[k])]));
    return value === null ? 'null-or-value' : typeof value === 'number' || typeof value === 'string' || typeof value === 'boolean' ? 'null-or-value' : typeof value;
  }

  void it('counts an agent alive when its record exists, with the PIDs the record carries', async () => {
    const status = await remoteStatus(topology, ctx, new MemoryDcs(seeded()), null);
    assert.equal(status.etcd, 'running');
    assert.equal(status.leader, 'node1');
    const byName = new Map(status.members.map((m) => [m.name, m]));
    assert.equal(byName.get('node1')?.role, 'primary');
    assert.equal(byName.get('node1')?.pid, records[0]?.pid);
    assert.equal(byName.get('node1')?.postgresPid, records[0]?.postgresPid);
    assert.equal(byName.get('node2')?.role, 'replica');
    assert.equal(byName.get('node2')?.lagBytes, 0);
    assert.equal(byName.get('node2')?.health.status, 'ok');
    // No record: no agent (no PID can be checked on another host).
    assert.equal(byName.get('node3')?.role, 'stopped');
    assert.equal(byName.get('node3')?.pid, null);
    assert.equal(byName.get('node3')?.health.status, 'critical');
    assert.equal(byName.get('node2')?.apiUrl, 'https://10.0.0.2:8008');
    assert.match(status.connectionString, /@10\.0\.0\.1:5433,10\.0\.0\.2:5433,10\.0\.0\.3:5433\/postgres\?target_session_attrs=read-write&sslmode=verify-full&sslrootcert=\/tmp\/demo\.ca\.crt$/);
    assert.equal(status.tls?.caFile, '/tmp/demo.ca.crt');
  });

  void it('has exactly the shape of a local status built from the same etcd content', async () => {
    const remote = await remoteStatus(topology, ctx, new MemoryDcs(seeded()), null);
    const local: ClusterStatus = buildClusterStatus({
      topology: localTopology(clusterManifest({ nodes: 3 })),
      secrets: clusterSecrets(),
      etcd: 'running',
      leader: 'node1',
      members: records,
      syncMode: 'off',
      aliveAgents: new Map(records.map((r) => [r.name, r.pid])),
      maxLagBytes: 16 * 1024 * 1024,
      lastLeaderLsn: null,
      historyTimeline: null,
      ttlSeconds: 6,
      synchronous: { strict: false, nodeCount: 1, set: null },
      apps: [],
      pooler: { settings: { enabled: false, poolMode: 'transaction', defaultPoolSize: 20 }, alive: new Map() },
      certificatesExpireAtMs: null,
    });
    assert.deepEqual(shape(remote), shape(local));
    assert.deepEqual(
      remote.members.map((m) => [m.name, m.role, m.state, m.health.status, m.eligible]),
      local.members.map((m) => [m.name, m.role, m.state, m.health.status, m.eligible]),
    );
  });

  void it('is etcd unreachable (same shape, nothing known) when etcd cannot be read', async () => {
    const dcs = new MemoryDcs(seeded());
    dcs.setReachable(false);
    const status = await remoteStatus(topology, ctx, dcs, null);
    assert.equal(status.etcd, 'unreachable');
    assert.equal(status.leader, null);
    assert.ok(status.members.every((m) => m.role === 'stopped' && m.pid === null));
  });

  void it('a whole remote handle: status, openDcs and the leader REST target, over an injected DCS', async () => {
    const store = seeded();
    const file = writeContext('handle.context.json', ctx);
    const handle = await openRemoteHandle({ contextFile: file, context: ctx, home: path.join(tmp, 'home'), makeDcs: () => new MemoryDcs(store) });
    assert.equal((await handle.status()).leader, 'node1');
    const { dcs, config } = await handle.openDcs();
    try {
      assert.equal(config.synchronous, 'off');
      assert.equal(await dcs.get(keys.leader), 'node1');
    } finally {
      await dcs.close();
    }
    store.delete(keys.leader);
    await refusal(handle.callLeader('/restart', { method: 'POST', timeoutMs: 100 }), 'CLUSTER_NOT_RUNNING', 1, /has no leader/);
    await refusal(handle.callAgent('node9', '/restart', { timeoutMs: 100 }), 'NODE_NOT_FOUND', 2, /no node node9/);
  });
});
