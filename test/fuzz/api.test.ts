/**
 * Random requests into the agent's REST API (src/api/build-api.ts, Fastify `inject`, no socket):
 * every route, with random bodies, content types and tokens. The API never answers 5xx (its stub
 * dependencies do not fail), never hands a body that fails its schema to the HA loop (failsafe
 * requests), and never acts on a mutating route without the token. (The health routes and
 * `/wal-position` answer 503 by design while postgres is not running.)
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { buildApi } from '../../src/api/build-api.js';
import { defaultDynamicConfig } from '../../src/config/schema.js';
import type { FailsafeRequest } from '../../src/ha/failsafe.js';
import { etcdText, fuzzParams } from './fuzz-settings.js';

const TOKEN = 't'.repeat(40);

void describe('fuzz: REST bodies', () => {
  void it('never 5xx; failsafe gets only valid requests; mutating routes need the token', async () => {
    const received: FailsafeRequest[] = [];
    let restarts = 0;
    let reloads = 0;
    const app = buildApi({
      snapshot: () => ({ observation: null, decision: null, member: null, lastError: null, ticks: 0 }),
      config: () => defaultDynamicConfig(),
      holdsLeader: () => false,
      apiToken: TOKEN,
      requestRestart: () => {
        restarts += 1;
      },
      reloadConfiguration: () => {
        reloads += 1;
        return Promise.resolve();
      },
      answerFailsafe: (request) => {
        received.push(request);
        return { node: 'node1', accepted: false, leader: null, reason: 'fuzz' };
      },
      walPosition: () => Promise.resolve(null),
    });
    await app.ready();
    try {
      const request = fc.record({
        method: fc.constantFrom('GET', 'POST', 'PUT', 'DELETE'),
        url: fc.oneof(fc.constantFrom('/health', '/primary', '/replica', '/status', '/wal-position', '/metrics', '/failsafe', '/restart', '/reload', '/failsafe?x=1', '//status'), fc.string().map((s) => `/${encodeURIComponent(s)}`)),
        body: etcdText(fc.record({ leader: fc.string(), holdMs: fc.integer() })),
        contentType: fc.constantFrom('application/json', 'text/plain', 'application/x-www-form-urlencoded', 'application/json; charset=utf-8', undefined),
        token: fc.constantFrom(TOKEN, 'wrong', undefined),
      });
      await fc.assert(
        fc.asyncProperty(request, async (r) => {
          const before = { restarts, reloads, failsafe: received.length };
          const headers: Record<string, string> = {};
          if (r.contentType !== undefined) headers['content-type'] = r.contentType;
          if (r.token !== undefined) headers['authorization'] = `Bearer ${r.token}`;
          const response = await app.inject({ method: r.method as 'GET', url: r.url, headers, ...(r.method === 'GET' ? {} : { payload: r.body }) });
          const documented503 = r.method === 'GET' && ['/health', '/primary', '/replica', '/wal-position'].includes(r.url) && response.statusCode === 503;
          assert.ok(response.statusCode < 500 || documented503, `${r.method} ${r.url} answered ${response.statusCode}: ${response.body.slice(0, 200)}`);
          if (r.token !== TOKEN) assert.deepEqual({ restarts, reloads, failsafe: received.length }, before, `acted without the token: ${r.method} ${r.url}`);
          for (const req of received) {
            assert.ok(typeof req.leader === 'string' && req.leader.length > 0 && Number.isInteger(req.holdMs) && req.holdMs >= 1 && req.holdMs <= 600_000);
          }
        }),
        fuzzParams(),
      );
    } finally {
      await app.close();
    }
  });
});
