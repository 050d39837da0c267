/**
 * POST /reload of the agent REST API (src/api/build-api.ts), through Fastify's `inject`: 401
 * without the cluster token (and the agent is not asked to reload), 200 once the agent rewrote
 * postgresql.conf and reloaded, 503 with the reason when it could not (postgres not running),
 * 404 on an agent without the route's dependency.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { buildApi, type ApiDeps } from '../../src/api/build-api.js';
import { defaultDynamicConfig } from '../../src/config/schema.js';
import { PgpilotError } from '../../src/shared/errors.js';

const TOKEN = 'r'.repeat(40);

function app(reload: ApiDeps['reloadConfiguration']): ReturnType<typeof buildApi> {
  return buildApi({
    snapshot: () => ({ observation: null, decision: null, member: null, lastError: null, ticks: 0 }),
    config: () => defaultDynamicConfig(),
    holdsLeader: () => false,
    apiToken: TOKEN,
    requestRestart: () => undefined,
    reloadConfiguration: reload,
  });
}

void describe('POST /reload', () => {
  void it('needs the token and reloads once with it', async () => {
    let calls = 0;
    const api = app(() => {
      calls += 1;
      return Promise.resolve();
    });
    try {
      const anonymous = await api.inject({ method: 'POST', url: '/reload' });
      assert.equal(anonymous.statusCode, 401);
      const wrong = await api.inject({ method: 'POST', url: '/reload', headers: { authorization: `Bearer ${'x'.repeat(40)}` } });
      assert.equal(wrong.statusCode, 401);
      assert.equal(calls, 0);
      const ok = await api.inject({ method: 'POST', url: '/reload', headers: { authorization: `Bearer ${TOKEN}` } });
      assert.equal(ok.statusCode, 200);
      assert.deepEqual(ok.json(), { reloaded: true });
      assert.equal(calls, 1);
    } finally {
      await api.close();
    }
  });
  void it('503 with the reason when the agent cannot reload; 404 without the route', async () => {
    const failing = app(() => Promise.reject(new PgpilotError('POSTGRES_FAILED', 'postgres is not running; cannot reload')));
    const absent = app(undefined);
    try {
      const refused = await failing.inject({ method: 'POST', url: '/reload', headers: { authorization: `Bearer ${TOKEN}` } });
      assert.equal(refused.statusCode, 503);
      assert.match(refused.json<{ error: string }>().error, /postgres is not running/);
      const missing = await absent.inject({ method: 'POST', url: '/reload', headers: { authorization: `Bearer ${TOKEN}` } });
      assert.equal(missing.statusCode, 404);
    } finally {
      await failing.close();
      await absent.close();
    }
  });
});
