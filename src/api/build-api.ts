/**
 * The agent's REST API (Fastify). Read routes answer from the HA loop's latest snapshot, so a
 * health check never waits on postgres or etcd:
 *   GET /health   200 while postgres runs (any role), else 503
 *   GET /primary  200 only on the writable leader (holds the key, not in recovery), else 503
 *   GET /replica  200 only on a streaming replica within the failover lag limit, else 503
 *   GET /status   this member's record and the loop's last decision (token)
 *   GET /wal-position  live WAL position for sync-mode elections (token)
 *   GET /metrics  Prometheus text format (src/metrics/agent-metrics.ts), collected at scrape time
 *                 within a time bound; read-only and without secrets, so it needs no token
 *   POST /restart restart postgres in its current role (202; the agent does it on its next tick)
 *   POST /reload  rewrite postgresql.conf from the stored cluster config and reload (200 when done)
 *   POST /reload-tls  serve the node certificate files anew (after `certs rotate`): REST, postgres, PgBouncer
 * The agent serves it over HTTPS only, with the node certificate (`tls`). `/health`, `/primary`,
 * `/replica` and `/metrics` stay open for load balancers and Prometheus; every other route
 * requires `Authorization: Bearer <cluster token>` (auth.ts): 401 without it.
 */
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Server as HttpsServer } from 'node:https';
import type { LoopSnapshot } from '../ha/loop.js';
import type { DynamicConfig } from '../config/schema.js';
import { lsnDiffBytes } from '../shared/lsn.js';
import { isAuthorized } from './auth.js';
import { z } from 'zod';
import type { FailsafeAnswer, FailsafeRequest } from '../ha/failsafe.js';
import type { PeerPosition } from '../ha/sync-set.js';

const failsafeRequestSchema = z.object({ leader: z.string().min(1), holdMs: z.number().int().min(1).max(600_000) }).strict();

export interface ApiDeps {
  snapshot(): LoopSnapshot;
  config(): DynamicConfig;
  holdsLeader(): boolean;
  apiToken: string;
  /** Records a restart request and wakes the HA loop; the agent, not the API, acts on it. */
  requestRestart(): void;
  /** POST /reload: rewrite postgresql.conf from the stored cluster config and reload postgres; absent: 404. */
  reloadConfiguration?: () => Promise<void>;
  /** POST /failsafe (failsafe mode): the HA loop's answer to a failsafe leader; absent: 404. */
  answerFailsafe?: (request: FailsafeRequest) => FailsafeAnswer;
  /** GET /metrics; absent: 404. */
  metrics?: MetricsEndpoint;
  /** GET /wal-position (sync mode elections): this node's live position, null when postgres does not run; absent: 404. */
  walPosition?: () => Promise<PeerPosition | null>;
  /** The certificate and key (PEM) the API serves; absent only in tests that use `inject`. */
  tls?: { cert: string; key: string };
  /**
   * POST /reload-tls: re-read the node's certificate files and return them (the API then serves
   * them for new connections), after postgres and PgBouncer were reloaded; absent: 404.
   */
  reloadTls?: () => Promise<{ cert: string; key: string }>;
}

export interface MetricsEndpoint {
  readonly contentType: string;
  /** The whole exposition, collected now (bounded in time by the implementation). */
  render(): Promise<string>;
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

const UNAUTHORIZED = { error: 'missing or wrong API token', hint: 'send Authorization: Bearer <apiToken from secrets.json>' };

export function buildApi(deps: ApiDeps): FastifyInstance {
  const app = (deps.tls === undefined ? Fastify({ logger: false }) : Fastify({ logger: false, https: { cert: deps.tls.cert, key: deps.tls.key } })) as unknown as FastifyInstance;
  /** False (and the 401 sent) when the request does not carry the cluster token. */
  const authorized = (request: FastifyRequest, reply: FastifyReply): boolean => {
    if (isAuthorized(request.headers.authorization, deps.apiToken)) return true;
    void reply.code(401).send(UNAUTHORIZED);
    return false;
  };

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

  app.get('/status', async (request, reply) => {
    if (!authorized(request, reply)) return reply;
    const snapshot = deps.snapshot();
    return {
      member: snapshot.member,
      holdsLeader: deps.holdsLeader(),
      decision: snapshot.decision?.summary ?? null,
      lastError: snapshot.lastError,
      ticks: snapshot.ticks,
    };
  });

  // Sync mode (src/ha/sync-set.ts): a candidate asks every member of the synchronous set for its
  // position after the leader key went free. Read live from postgres (never the loop's snapshot),
  // so the answer is newer than the question. It steers elections, so only members (token) ask.
  app.get('/wal-position', async (request, reply) => {
    if (!authorized(request, reply)) return reply;
    if (deps.walPosition === undefined) return reply.code(404).send({ error: 'wal positions are not served by this agent' });
    const position = await deps.walPosition().catch(() => null);
    if (position === null) return reply.code(503).send({ error: 'postgres is not running' });
    return reply.code(200).send(position);
  });

  app.get('/metrics', async (_request, reply) => {
    const metrics = deps.metrics;
    if (metrics === undefined) return reply.code(404).send({ error: 'metrics are not enabled on this agent' });
    const text = await metrics.render();
    return reply.code(200).header('content-type', metrics.contentType).send(text);
  });

  // Failsafe mode (src/ha/failsafe.ts): a leader that lost etcd asks this member to accept it; an
  // accepted request is a promise not to race for the leader key, so it needs the token.
  app.post('/failsafe', async (request, reply) => {
    if (!authorized(request, reply)) return reply;
    if (deps.answerFailsafe === undefined) return reply.code(404).send({ error: 'failsafe answers are not enabled on this agent' });
    const parsed = failsafeRequestSchema.safeParse(request.body);
    if (!parsed.success) return reply.code(400).send({ error: 'expected {leader, holdMs}' });
    const answer = deps.answerFailsafe(parsed.data);
    return reply.code(answer.accepted ? 200 : 409).send(answer);
  });

  app.post('/restart', async (request, reply) => {
    if (!authorized(request, reply)) return reply;
    deps.requestRestart();
    return reply.code(202).send({ accepted: true });
  });

  // `config update` of reloadable settings: done at once (a file write and a SIGHUP), answered
  // when done; 503 when postgres does not run here (it gets the config at its next start).
  app.post('/reload', async (request, reply) => {
    if (!authorized(request, reply)) return reply;
    if (deps.reloadConfiguration === undefined) return reply.code(404).send({ error: 'reload is not enabled on this agent' });
    try {
      await deps.reloadConfiguration();
    } catch (error) {
      return reply.code(503).send({ error: error instanceof Error ? error.message : String(error) });
    }
    return reply.code(200).send({ reloaded: true });
  });

  // `certs rotate`: postgres and PgBouncer re-read their files on reload; the API swaps its
  // secure context, so connections opened from now on see the new certificate and open ones stay.
  app.post('/reload-tls', async (request, reply) => {
    if (!authorized(request, reply)) return reply;
    if (deps.reloadTls === undefined || deps.tls === undefined) return reply.code(404).send({ error: 'TLS reload is not enabled on this agent' });
    try {
      const fresh = await deps.reloadTls();
      (app.server as unknown as HttpsServer).setSecureContext({ cert: fresh.cert, key: fresh.key });
    } catch (error) {
      return reply.code(503).send({ error: error instanceof Error ? error.message : String(error) });
    }
    return reply.code(200).send({ reloaded: true });
  });

  return app;
}
