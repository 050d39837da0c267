/**
 * `GET /wal-position` (src/api/build-api.ts), the answer a sync-mode candidate asks every member of
 * the synchronous set for (src/ha/sync-set.ts): 200 with the live position, 503 when postgres does
 * not run, 404 on an agent that does not serve it; 401 without the cluster token (it tells who is
 * ahead, so only members may ask).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { buildApi, type ApiDeps } from '../../src/api/build-api.js';
import { defaultDynamicConfig } from '../../src/config/schema.js';
import type { PeerPosition } from '../../src/ha/sync-set.js';

const TOKEN = 'x'.repeat(32);
const AUTH = { authorization: `Bearer ${TOKEN}` };

function deps(walPosition?: () => Promise<PeerPosition | null>): ApiDeps {
  return {
    snapshot: () => ({ observation: null, decision: null, member: null, lastError: null, ticks: 0 }),
    config: () => defaultDynamicConfig(),
    holdsLeader: () => false,
    apiToken: TOKEN,
    requestRestart: () => undefined,
    ...(walPosition === undefined ? {} : { walPosition }),
  };
}

void describe('GET /wal-position', () => {
  void it('answers the live position', async () => {
    const app = buildApi(deps(() => Promise.resolve({ name: 'node2', timeline: 3, lsn: '0/5000060' })));
    const response = await app.inject({ method: 'GET', url: '/wal-position', headers: AUTH });
    assert.equal(response.statusCode, 200);
    assert.deepEqual(response.json(), { name: 'node2', timeline: 3, lsn: '0/5000060' });
    await app.close();
  });
  void it('503 when postgres does not run (or the read fails)', async () => {
    for (const fn of [() => Promise.resolve(null), () => Promise.reject(new Error('connection refused'))]) {
      const app = buildApi(deps(fn));
      assert.equal((await app.inject({ method: 'GET', url: '/wal-position', headers: AUTH })).statusCode, 503);
      await app.close();
    }
  });
  void it('401 without the token or with a wrong one, without asking postgres', async () => {
    let asked = 0;
    const app = buildApi(deps(() => {
      asked += 1;
      return Promise.resolve({ name: 'node2', timeline: 3, lsn: '0/5000060' });
    }));
    for (const headers of [{}, { authorization: `Bearer ${'y'.repeat(32)}` }]) {
      const response = await app.inject({ method: 'GET', url: '/wal-position', headers });
      assert.equal(response.statusCode, 401);
      assert.ok(!response.body.includes('0/5000060'));
    }
    assert.equal(asked, 0);
    await app.close();
  });
  void it('404 when the agent does not serve positions', async () => {
    const app = buildApi(deps());
    assert.equal((await app.inject({ method: 'GET', url: '/wal-position', headers: AUTH })).statusCode, 404);
    await app.close();
  });
});
