/**
 * The agent REST API (src/api/build-api.ts), driven through Fastify's `inject` (no sockets):
 * /health, /primary and /replica answer 200 or 503 purely from the LoopSnapshot, the leader flag
 * and the lag limit of the dynamic config; /status reports the snapshot's member, decision
 * summary, last error and tick count; POST /restart answers 401 without the right bearer token
 * (and then never calls requestRestart) and 202 with it (calling requestRestart exactly once).
 */
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { buildApi, type ApiDeps } from '../../src/api/build-api.js';
import { defaultDynamicConfig, type DynamicConfig } from '../../src/config/schema.js';
import type { LoopSnapshot } from '../../src/ha/loop.js';
import type { LocalPostgres } from '../../src/state/agent-snapshot.js';
import type { DcsView } from '../../src/state/dcs-view.js';
import {
  memberRecord,
  noData,
  observation,
  reachable,
  running,
  runningPrimary,
  starting,
  stopped,
  unreachable,
} from '../builders/observation-builder.js';

const TOKEN = 't'.repeat(40);
const AUTH = { authorization: `Bearer ${TOKEN}` };
const MIB = 1024 * 1024;

interface Harness {
  app: FastifyInstance;
  restartCalls: () => number;
}

const apps: FastifyInstance[] = [];

afterEach(async () => {
  while (apps.length > 0) await apps.pop()?.close();
});

function snapshotOf(pg: LocalPostgres | null, dcs: DcsView = reachable(), extra: Partial<LoopSnapshot> = {}): LoopSnapshot {
  return {
    observation: pg === null ? null : observation({ pg, dcs }),
    decision: null,
    member: null,
    lastError: null,
    ticks: 0,
    ...extra,
  };
}

function harness(snapshot: LoopSnapshot, options: { holdsLeader?: boolean; config?: Partial<DynamicConfig> } = {}): Harness {
  let calls = 0;
  const deps: ApiDeps = {
    snapshot: () => snapshot,
    config: () => ({ ...defaultDynamicConfig(), ...options.config }),
    holdsLeader: () => options.holdsLeader ?? false,
    apiToken: TOKEN,
    requestRestart: () => {
      calls += 1;
    },
  };
  const app = buildApi(deps);
  apps.push(app);
  return { app, restartCalls: () => calls };
}

async function codes(h: Harness): Promise<{ health: number; primary: number; replica: number }> {
  const [health, primary, replica] = await Promise.all(
    ['/health', '/primary', '/replica'].map((url) => h.app.inject({ method: 'GET', url })),
  );
  return { health: health!.statusCode, primary: primary!.statusCode, replica: replica!.statusCode };
}

void describe('buildApi health routes', () => {
  void it('answers 503 everywhere before the first tick (no observation)', async () => {
    assert.deepEqual(await codes(harness(snapshotOf(null))), { health: 503, primary: 503, replica: 503 });
  });

  void it('answers 503 everywhere while postgres is not running (no data, stopped, starting)', async () => {
    for (const pg of [noData(), stopped(), starting()]) {
      assert.deepEqual(await codes(harness(snapshotOf(pg), { holdsLeader: true })), { health: 503, primary: 503, replica: 503 }, pg.kind);
    }
  });

  void it('a writable leader holding the key: health 200, primary 200, replica 503', async () => {
    const h = harness(snapshotOf(runningPrimary()), { holdsLeader: true });
    assert.deepEqual(await codes(h), { health: 200, primary: 200, replica: 503 });
    const primary = await h.app.inject({ method: 'GET', url: '/primary' });
    assert.deepEqual(primary.json(), { primary: true });
    const health = await h.app.inject({ method: 'GET', url: '/health' });
    assert.deepEqual(health.json(), { healthy: true });
  });

  void it('a running primary that does not hold the leader key is not /primary', async () => {
    assert.deepEqual(await codes(harness(snapshotOf(runningPrimary()), { holdsLeader: false })), { health: 200, primary: 503, replica: 503 });
  });

  void it('a node in recovery is never /primary, even if it believes it holds the key', async () => {
    assert.equal((await codes(harness(snapshotOf(running()), { holdsLeader: true }))).primary, 503);
  });

  void it('a streaming replica within the lag limit: /replica 200 with its lag in bytes', async () => {
    const dcs = reachable({ lastLeaderLsn: '0/3100000' });
    const h = harness(snapshotOf(running({ lsn: '0/3000000' }), dcs));
    assert.deepEqual(await codes(h), { health: 200, primary: 503, replica: 200 });
    const replica = await h.app.inject({ method: 'GET', url: '/replica' });
    assert.deepEqual(replica.json(), { replica: true, lagBytes: 0x100000 });
  });

  void it('a streaming replica exactly at the lag limit is still a replica; one byte over is not', async () => {
    const at = harness(snapshotOf(running({ lsn: '0/0' }), reachable({ lastLeaderLsn: '0/1000000' })), { config: { maximumLagOnFailoverBytes: 16 * MIB } });
    assert.equal((await codes(at)).replica, 200);
    const over = harness(snapshotOf(running({ lsn: '0/0' }), reachable({ lastLeaderLsn: '0/1000001' })), { config: { maximumLagOnFailoverBytes: 16 * MIB } });
    const response = await over.app.inject({ method: 'GET', url: '/replica' });
    assert.equal(response.statusCode, 503);
    assert.deepEqual(response.json(), { replica: false, lagBytes: 16 * MIB + 1 });
  });

  void it('uses the lag limit of the current dynamic config', async () => {
    const dcs = reachable({ lastLeaderLsn: '0/3000400' });
    const tight = harness(snapshotOf(running({ lsn: '0/3000000' }), dcs), { config: { maximumLagOnFailoverBytes: 1023 } });
    assert.equal((await codes(tight)).replica, 503);
    const loose = harness(snapshotOf(running({ lsn: '0/3000000' }), dcs), { config: { maximumLagOnFailoverBytes: 1024 } });
    assert.equal((await codes(loose)).replica, 200);
  });

  void it('a replica whose WAL receiver is not streaming is running but not /replica', async () => {
    const h = harness(snapshotOf(running({ walReceiverStatus: null })));
    assert.deepEqual(await codes(h), { health: 200, primary: 503, replica: 503 });
    const h2 = harness(snapshotOf(running({ walReceiverStatus: 'starting' })));
    assert.equal((await codes(h2)).replica, 503);
  });

  void it('with no known leader LSN (or etcd unreachable) the lag is unknown and a streaming replica passes', async () => {
    for (const dcs of [reachable({ lastLeaderLsn: null }), unreachable()]) {
      const h = harness(snapshotOf(running(), dcs));
      const response = await h.app.inject({ method: 'GET', url: '/replica' });
      assert.equal(response.statusCode, 200, dcs.kind);
      assert.deepEqual(response.json(), { replica: true, lagBytes: null });
    }
  });
});

void describe('buildApi /status', () => {
  void it('reports the snapshot member, leader flag, decision summary, last error and ticks', async () => {
    const member = memberRecord({ name: 'node1' });
    const snapshot = snapshotOf(running(), reachable(), {
      member,
      decision: { actions: [], summary: 'following node2' },
      lastError: 'boom',
      ticks: 42,
    });
    const response = await harness(snapshot, { holdsLeader: false }).app.inject({ method: 'GET', url: '/status', headers: AUTH });
    assert.equal(response.statusCode, 200);
    assert.deepEqual(response.json(), { member, holdsLeader: false, decision: 'following node2', lastError: 'boom', ticks: 42 });
  });

  void it('reports nulls before the first tick', async () => {
    const response = await harness(snapshotOf(null), { holdsLeader: true }).app.inject({ method: 'GET', url: '/status', headers: AUTH });
    assert.equal(response.statusCode, 200);
    assert.deepEqual(response.json(), { member: null, holdsLeader: true, decision: null, lastError: null, ticks: 0 });
  });

  void it('reads the snapshot afresh on every request', async () => {
    let ticks = 1;
    const app = buildApi({
      snapshot: () => ({ observation: null, decision: null, member: null, lastError: null, ticks }),
      config: defaultDynamicConfig,
      holdsLeader: () => false,
      apiToken: TOKEN,
      requestRestart: () => undefined,
    });
    apps.push(app);
    assert.equal((await app.inject({ method: 'GET', url: '/status', headers: AUTH })).json<{ ticks: number }>().ticks, 1);
    ticks = 7;
    assert.equal((await app.inject({ method: 'GET', url: '/status', headers: AUTH })).json<{ ticks: number }>().ticks, 7);
  });

  void it('answers 401 without the token or with a wrong one, and shows nothing of the snapshot', async () => {
    const member = memberRecord({ name: 'node1' });
    const h = harness(snapshotOf(running(), reachable(), { member, lastError: 'secret-ish detail', ticks: 3 }));
    for (const headers of [{}, { authorization: `Bearer ${'u'.repeat(40)}` }, { authorization: `Basic ${TOKEN}` }]) {
      const response = await h.app.inject({ method: 'GET', url: '/status', headers });
      assert.equal(response.statusCode, 401, JSON.stringify(headers));
      assert.ok(!response.body.includes('secret-ish detail') && !response.body.includes('node1'), response.body);
      assert.ok(!response.body.includes(TOKEN), 'the token is never echoed');
    }
  });
});

void describe('buildApi: open and token routes', () => {
  void it('keeps /health, /primary and /replica open for load balancers (no token needed)', async () => {
    const h = harness(snapshotOf(runningPrimary()), { holdsLeader: true });
    for (const url of ['/health', '/primary', '/replica']) {
      const response = await h.app.inject({ method: 'GET', url });
      assert.notEqual(response.statusCode, 401, url);
    }
  });

  void it('POST /reload-tls answers 401 without the token and 404 with it on an agent without TLS reload', async () => {
    const h = harness(snapshotOf(running()));
    assert.equal((await h.app.inject({ method: 'POST', url: '/reload-tls' })).statusCode, 401);
    assert.equal((await h.app.inject({ method: 'POST', url: '/reload-tls', headers: { authorization: `Bearer ${'u'.repeat(40)}` } })).statusCode, 401);
    assert.equal((await h.app.inject({ method: 'POST', url: '/reload-tls', headers: AUTH })).statusCode, 404);
  });
});

void describe('buildApi POST /restart', () => {
  void it('answers 401 without an Authorization header and does not request a restart', async () => {
    const h = harness(snapshotOf(running()));
    const response = await h.app.inject({ method: 'POST', url: '/restart' });
    assert.equal(response.statusCode, 401);
    const body = response.json<{ error: string; hint: string }>();
    assert.ok(body.error.length > 0);
    assert.ok(body.hint.length > 0);
    assert.ok(!response.body.includes(TOKEN), 'the token is never echoed');
    assert.equal(h.restartCalls(), 0);
  });

  void it('answers 401 with a wrong token or scheme and does not request a restart', async () => {
    const h = harness(snapshotOf(running()));
    for (const authorization of [`Bearer ${'u'.repeat(40)}`, `Bearer ${TOKEN}x`, `Basic ${TOKEN}`, TOKEN]) {
      const response = await h.app.inject({ method: 'POST', url: '/restart', headers: { authorization } });
      assert.equal(response.statusCode, 401, authorization);
      assert.ok(!response.body.includes(TOKEN), 'the token is never echoed');
    }
    assert.equal(h.restartCalls(), 0);
  });

  void it('answers 202 with the right token and requests exactly one restart', async () => {
    const h = harness(snapshotOf(running()));
    const response = await h.app.inject({ method: 'POST', url: '/restart', headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(response.statusCode, 202);
    assert.deepEqual(response.json(), { accepted: true });
    assert.equal(h.restartCalls(), 1);
  });

  void it('GET /restart is not a route (restart is only reachable by POST)', async () => {
    const h = harness(snapshotOf(running()));
    const response = await h.app.inject({ method: 'GET', url: '/restart', headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(response.statusCode, 404);
    assert.equal(h.restartCalls(), 0);
  });
});
