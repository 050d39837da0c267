/**
 * The agent's REST API (Fastify). Read routes answer from the HA loop's latest snapshot, so a
 * health check never waits on postgres or etcd:
 *   GET /health   200 while postgres runs (any role), else 503
 *   GET /primary  200 only on the writable leader (holds the key, not in recovery), else 503
 *   GET /replica  200 only on a streaming replica within the failover lag limit, else 503
 *   GET /status   this member's record and the loop's last decision
 * Mutating routes (later) require `Authorization: Bearer <cluster token>` (see auth.ts).
 */
import Fastify, { type FastifyInstance } from 'fastify';
import type { LoopSnapshot } from '../ha/loop.js';
import type { DynamicConfig } from '../config/schema.js';
import { lsnDiffBytes } from '../shared/lsn.js';

export interface ApiDeps {
  snapshot(): LoopSnapshot;
  config(): DynamicConfig;
  holdsLeader(): boolean;
}

export function memberHealth(snapshot: LoopSnapshot, holdsLeader: boolean, maxLagBytes: number) {
  const obs = snapshot.observation;
  const pg = obs?.pg;
  const running = pg?.kind === 'running';
  const primary = running && pg.kind === 'running' && !pg.inRecovery && holdsLeader;
  let lagBytes: number | null = null;
  if (pg?.kind === 'running' && pg.inRecovery && pg.lsn !== null && obs?.dcs.kind === 'reachable' && obs.dcs.lastLeaderLsn !== null) {
    lagBytes = lsnDiffBytes(obs.dcs.lastLeaderLsn, pg.lsn);
  }
  const replica =
    pg?.kind === 'running' && pg.inRecovery && pg.walReceiverStatus === 'streaming' && (lagBytes === null || lagBytes <= maxLagBytes);
  return { running, primary, replica, lagBytes };
}

export function buildApi(deps: ApiDeps): FastifyInstance {
  const app = Fastify({ logger: false });

  app.get('/health', async (_request, reply) => {
    const health = memberHealth(deps.snapshot(), deps.holdsLeader(), deps.config().maximumLagOnFailoverBytes);
    return reply.code(health.running ? 200 : 503).send({ healthy: health.running });
  });

  app.get('/primary', async (_request, reply) => {
    const health = memberHealth(deps.snapshot(), deps.holdsLeader(), deps.config().maximumLagOnFailoverBytes);
    return reply.code(health.primary ? 200 : 503).send({ primary: health.primary });
  });

  app.get('/replica', async (_request, reply) => {
    const health = memberHealth(deps.snapshot(), deps.holdsLeader(), deps.config().maximumLagOnFailoverBytes);
    return reply.code(health.replica ? 200 : 503).send({ replica: health.replica, lagBytes: health.lagBytes });
  });

  app.get('/status', () => {
    const snapshot = deps.snapshot();
    return {
      member: snapshot.member,
      holdsLeader: deps.holdsLeader(),
      decision: snapshot.decision?.summary ?? null,
      lastError: snapshot.lastError,
      ticks: snapshot.ticks,
    };
  });

  return app;
}
