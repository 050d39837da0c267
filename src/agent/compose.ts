/**
 * Composition root of the agent: builds the real components from a parsed config and wires them
 * together. No logic lives here; startup and shutdown order are the only decisions:
 * start the API first (so health checks answer "not yet"), then the HA loop; on SIGTERM stop the
 * loop, stop postgres cleanly, then release the leader key and member key so a replica can take
 * over at once instead of waiting for the TTL.
 */
import { readFileSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import path from 'node:path';
import { WatchdogClient } from './watchdog.js';
import { TcpRouter } from '../proxy/tcp-router.js';
import { changesRouting, desiredRoutes, knownTargets, leaderRoute, replicaRoute } from '../proxy/routes.js';
import { DATA_PLANE_SLOTS, HaproxyDataPlane, dataPlaneSocketPath } from '../proxy/haproxy-data-plane.js';
import { memberNameFromKey } from '../dcs/keys.js';
import { parseMemberRecord } from '../state/member-record.js';
import { findFreePorts } from '../shared/ports.js';
import { boostControlPlane } from '../shared/priority.js';
import os from 'node:os';
import { pino } from 'pino';
import { buildApi } from '../api/build-api.js';
import { HttpPeerProbe } from './http-peer-probe.js';
import { HttpPeerPositions } from './http-peer-positions.js';
import type { AgentConfig } from '../config/schema.js';
import { clusterSecretsSchema, defaultDynamicConfig, type DynamicConfig } from '../config/schema.js';
import { parseStoredConfig } from '../config/stored-config.js';
import { readLastGoodConfig, writeLastGoodConfig } from '../config/last-good-config.js';
import { AlertBoard } from '../ha/alerts.js';
import { knownHostsFor } from '../ha/member-trust.js';
import { screenParameters } from '../postgres/parameter-policy.js';
import { parseConfig } from '../config/load.js';
import { readTlsMaterial } from '../tls/tls-files.js';
import { describeCertificateFile } from '../tls/certificate-info.js';
import { urlHost } from '../shared/ports.js';
import { EtcdDcs } from '../dcs/etcd-dcs.js';
import { clusterKeys } from '../dcs/keys.js';
import { freshAgentMemory } from '../ha/agent-memory.js';
import { HaLoop } from '../ha/loop.js';
import { LocalPostgresNode } from '../postgres/local-postgres-node.js';
import { SystemClock } from '../shared/clock.js';
import { errorMessage } from '../shared/errors.js';
import { createLogger } from '../shared/logger.js';
import { PGPILOT_VERSION } from '../shared/version.js';
import { AgentMetrics } from '../metrics/agent-metrics.js';
import { PostgresSampler } from '../metrics/postgres-sampler.js';
import { connectLocal } from '../postgres/queries.js';
import { PoolerSupervisor } from '../pooler/pooler-supervisor.js';
import { recordEvent } from '../state/events.js';
import { BackupChild } from './backup-child.js';
import { BackupScheduler } from './backup-scheduler.js';
import { listBackups } from '../backup/backup-catalog.js';
import { openObjectStore, readStoreConfigFile } from '../backup/store-config.js';
import { storeLayout } from '../backup/store-layout.js';

/** How often event-loop stalls are checked, and from which longest delay one is logged. */
const EVENT_LOOP_REPORT_EVERY_MS = 10_000;
const EVENT_LOOP_STALL_WARN_MS = 500;

export interface RunningAgent {
  stop(): Promise<void>;
  done: Promise<void>;
}

export async function startAgent(config: AgentConfig, options: { cliEntry: string; configFile?: string }): Promise<RunningAgent> {
  const log = createLogger({ destination: pino.destination({ dest: config.logFile, mkdir: true, sync: false }) }).child({
    cluster: config.cluster,
    node: config.node,
  });
  // Control plane first: raised CPU priority for this process (and its session) before anything
  // is spawned, so that database load cannot starve lease renewals (src/shared/priority.ts).
  const boost = boostControlPlane();
  log.info({ nice: boost.nice, sessionBoosted: boost.autogroup }, 'control-plane priority');
  const secrets = parseConfig(clusterSecretsSchema, JSON.parse(readFileSync(config.secretsFile, 'utf8')), config.secretsFile);
  const clock = new SystemClock();
  // The node certificate: etcd's client certificate, and what postgres, the API and PgBouncer serve.
  const tls = readTlsMaterial(config.tls);
  const dcs = new EtcdDcs({ endpoints: [...config.etcdEndpoints], operationTimeoutMs: 2_000, tls });
  const keys = clusterKeys(config.cluster);
  const memory = freshAgentMemory();
  // postgresql.conf is rendered from /config each time it is written (start, follow, promotion,
  // POST /reload), read fresh so that a restart or reload right after `config update` uses the new
  // values without waiting for the loop's next read; the loop's copy if etcd does not answer in 1 s.
  // An unreadable value falls back to the loop's copy (the last good one), never to the defaults;
  // forbidden parameters are dropped and reported (src/postgres/parameter-policy.ts).
  const alerts = new AlertBoard();
  const postgresParameters = async (): Promise<DynamicConfig['postgresql']['parameters']> => {
    const timer = new AbortController();
    const fresh = await Promise.race([
      dcs
        .get(keys.config)
        .then((raw) => {
          if (raw === null) return defaultDynamicConfig();
          const parsed = parseStoredConfig(raw);
          return parsed.kind === 'valid' ? parsed.config : null;
        })
        .catch(() => null),
      clock.sleep(1_000, timer.signal).then(() => null, () => null),
    ]);
    timer.abort();
    const screened = screenParameters((fresh ?? loopRef?.currentConfig() ?? defaultDynamicConfig()).postgresql.parameters);
    if (screened.rejected.length > 0) alerts.raise('config-rejected', 'warning', `dropped postgres parameters from /config: ${screened.rejected.map((r) => r.reason).join('; ')}`);
    return screened.parameters;
  };
  const pg = new LocalPostgresNode({ config, secrets, clock, log: log.child({ component: 'postgres' }), parameters: postgresParameters });
  const apiUrl = `https://${urlHost(config.host)}:${config.apiPort}`;
  const knownHosts = knownHostsFor(config);
  const watchdog = await WatchdogClient.start({
    // The lean entry next to the CLI's (dist/src/bin/watchdog.js), not the whole CLI.
    cliEntry: path.join(path.dirname(options.cliEntry), 'watchdog.js'),
    logFile: path.join(config.nodeDir, 'watchdog.log'),
    etcdEndpoints: config.etcdEndpoints,
    etcdTls: config.tls,
    onError: (message) => log.error({ err: message }, 'the fencing watchdog is gone; a frozen leader could not be fenced'),
  });
  // Event-loop stalls delay lease renewals, health answers and proxied bytes alike: log them, so
  // a slow /primary answer under load can be told apart from a slow network (see docs/routing.md).
  const loopDelay = monitorEventLoopDelay({ resolution: 20 });
  loopDelay.enable();
  let loopDelayReportedMs = clock.nowMs();
  const reportEventLoopStalls = (): void => {
    if (clock.nowMs() - loopDelayReportedMs < EVENT_LOOP_REPORT_EVERY_MS) return;
    const maxMs = loopDelay.max / 1e6;
    if (maxMs >= EVENT_LOOP_STALL_WARN_MS) {
      log.warn({ maxMs: Math.round(maxMs), p99Ms: Math.round(loopDelay.percentile(99) / 1e6) }, 'the agent event loop stalled');
    }
    loopDelay.reset();
    loopDelayReportedMs = clock.nowMs();
  };
  // The data plane of the leader and replica ports. With HAProxy installed (scripts/setup.sh
  // installs it), HAProxy serves both ports and the built-in routers only take the connections it
  // cannot place (hold during a hand-over; src/proxy/haproxy-data-plane.ts). Without HAProxy the
  // built-in routers serve the ports themselves.
  let loopRef: HaLoop | null = null;
  // GET /metrics: its own postgres connection (never the loop's), reads bounded per scrape.
  const sampler = new PostgresSampler(() =>
    connectLocal({
      ca: tls.ca,
      host: config.host,
      port: config.pgPort,
      user: secrets.superuser.name,
      password: secrets.superuser.password,
      connectTimeoutMs: 1_000,
      statementTimeoutMs: 2_000,
      applicationName: `pgpilot-metrics-${config.node}`,
    }),
  );
  const metricsLog = log.child({ component: 'metrics' });
  const metrics = new AgentMetrics({
    cluster: config.cluster,
    node: config.node,
    version: PGPILOT_VERSION,
    snapshot: () => loopRef?.snapshot() ?? null,
    holdsLeader: () => memory.holdsLeader,
    postgresStats: (timeoutMs) => sampler.sample(timeoutMs),
    dataDirectory: config.dataDir,
    processMetrics: true,
    certificates: () => [
      { name: 'node', notAfterEpochMs: describeCertificateFile(config.tls.certFile).notAfterEpochMs },
      { name: 'ca', notAfterEpochMs: describeCertificateFile(config.tls.caFile).notAfterEpochMs },
    ],
    ...(config.backupStoreFile === undefined ? {} : { backupStatus: () => Promise.resolve(backups?.scheduler.status() ?? null) }),
    onCollectError: (what, message) => metricsLog.warn({ err: message }, `metrics: could not read ${what}`),
  });
  // The backup schedule (leader only; the run is a child process: src/agent/backup-scheduler.ts).
  let backups: { scheduler: BackupScheduler; child: BackupChild } | null = null;
  if (config.backupStoreFile !== undefined && options.configFile !== undefined) {
    const storeFile = config.backupStoreFile;
    const child = new BackupChild({ cliEntry: options.cliEntry, agentConfigFile: options.configFile, logFile: path.join(config.nodeDir, 'backup.log') });
    const scheduler = new BackupScheduler({
      clock,
      log: log.child({ component: 'backup' }),
      isLeader: () => memory.holdsLeader,
      settings: () => loopRef?.currentConfig().backup ?? null,
      listBackups: async () => {
        const store = openObjectStore(await readStoreConfigFile(storeFile));
        try {
          return await listBackups(store, storeLayout(config.cluster));
        } finally {
          await store.close().catch(() => undefined);
        }
      },
      runBackup: () => child.run(),
      lockHolder: () => dcs.get(keys.backupLock),
      referenceMs: clock.nowMs(),
    });
    backups = { scheduler, child };
  }
  let replicaTurn = 0;
  const proxyLog = log.child({ component: 'proxy' });
  let dataPlane: HaproxyDataPlane | null = null;
  try {
    const binary = HaproxyDataPlane.findBinary();
    const [leaderHoldPort, replicaHoldPort] = await findFreePorts(2);
    dataPlane = new HaproxyDataPlane({
      layout: {
        listenHost: config.listenAddress,
        leaderPort: config.proxyPort,
        replicaPort: config.replicaProxyPort,
        leaderHoldPort: leaderHoldPort ?? 0,
        replicaHoldPort: replicaHoldPort ?? 0,
        socketPath: dataPlaneSocketPath(config.nodeDir, os.tmpdir(), `${config.cluster}-${config.node}-${process.pid}`),
        slotCount: DATA_PLANE_SLOTS,
      },
      configFile: path.join(config.nodeDir, 'haproxy-data-plane.cfg'),
      logFile: path.join(config.nodeDir, 'haproxy.log'),
      binary,
      clock,
      log: proxyLog,
    });
    await dataPlane.start();
  } catch (error) {
    await dataPlane?.stop().catch(() => undefined);
    dataPlane = null;
    proxyLog.error({ err: errorMessage(error) }, 'haproxy cannot serve the proxy ports: the built-in router serves them (slower; run scripts/setup.sh)');
  }
  const routerHost = dataPlane === null ? config.listenAddress : '127.0.0.1';
  const leaderRouter = new TcpRouter({
    name: 'leader',
    listenHost: routerHost,
    port: dataPlane?.options.layout.leaderHoldPort ?? config.proxyPort,
    resolve: () => leaderRoute(loopRef?.clusterView() ?? null, clock.nowMs()),
    holdTimeoutMs: config.proxyHoldTimeoutMs,
    clock,
    log: proxyLog,
  });
  const replicaRouter = new TcpRouter({
    name: 'replica',
    listenHost: routerHost,
    port: dataPlane?.options.layout.replicaHoldPort ?? config.replicaProxyPort,
    resolve: () => replicaRoute(loopRef?.clusterView() ?? null, clock.nowMs(), loopRef?.currentConfig().maximumLagOnFailoverBytes ?? 0, replicaTurn++),
    holdTimeoutMs: config.proxyHoldTimeoutMs,
    clock,
    log: proxyLog,
  });
  const applyRoutes = (): void => {
    const view = loopRef?.clusterView() ?? null;
    if (dataPlane === null || view === null) return;
    const routes = desiredRoutes(view, clock.nowMs(), loopRef?.currentConfig().maximumLagOnFailoverBytes ?? 0);
    void dataPlane.apply(knownTargets(view), routes).then(() => dataPlane?.refreshStats());
  };
  // PgBouncer in front of this node's leader port while the dynamic config enables it (src/pooler/).
  const pooler = new PoolerSupervisor({
    node: config.node,
    nodeDir: config.nodeDir,
    listenAddress: config.listenAddress,
    poolerPort: config.poolerPort,
    proxyPort: config.proxyPort,
    secretsFile: config.secretsFile,
    clock,
    log: log.child({ component: 'pooler' }),
    tls: config.tls,
    connect: (database) =>
      connectLocal({
        ca: tls.ca,
        host: config.host,
        port: config.pgPort,
        user: secrets.superuser.name,
        password: secrets.superuser.password,
        database,
        connectTimeoutMs: 2_000,
        statementTimeoutMs: 10_000,
        applicationName: `pgpilot-pooler-${config.node}`,
      }),
    superuser: secrets.superuser.name,
    onAuthRefused: (message) =>
      void recordEvent(dcs, keys, { at: new Date(clock.nowMs()).toISOString(), kind: 'pooler-auth-refused', node: config.node, message, timeline: null }),
  });
  const loop = new HaLoop({
    node: config.node,
    host: config.host,
    pgPort: config.pgPort,
    apiUrl,
    proxyPort: config.proxyPort,
    replicaProxyPort: config.replicaProxyPort,
    proxyStats: () => {
      const a = leaderRouter.snapshot();
      const b = replicaRouter.snapshot();
      // Through HAProxy, held connections reach the routers too: they count in HAProxy's totals.
      const h = dataPlane?.snapshot() ?? { open: a.open + b.open, total: a.total + b.total };
      return { open: h.open, held: a.held + b.held, total: h.total, failed: a.failed + b.failed };
    },
    onTick: () => {
      leaderRouter.notify();
      replicaRouter.notify();
      applyRoutes();
      if (loopRef !== null) pooler.reconcile(loopRef.currentConfig().pooler, memory.holdsLeader);
      reportEventLoopStalls();
    },
    tags: config.tags,
    version: PGPILOT_VERSION,
    agentPid: process.pid,
    dcs,
    keys,
    pg,
    clock,
    log: log.child({ component: 'ha' }),
    memory,
    metrics,
    peerProbe: new HttpPeerProbe(secrets.apiToken, tls.ca, knownHosts),
    peerPositions: new HttpPeerPositions(secrets.apiToken, tls.ca, knownHosts),
    knownHosts,
    alerts,
    lastGoodConfig: {
      load: async () => (await readLastGoodConfig(config.nodeDir))?.config ?? null,
      save: (saved) => writeLastGoodConfig(config.nodeDir, { savedAtMs: clock.nowMs(), config: saved }),
    },
    fenceGuard: {
      // The lease travels with the heartbeat: a watchdog that outlives this agent releases it.
      arm: (pid, deadlineEpochMs) => watchdog.arm(pid, deadlineEpochMs, config.dataDir, memory.leaseId),
      disarm: () => watchdog.disarm(),
    },
  });
  loopRef = loop;
  await leaderRouter.start();
  await replicaRouter.start();
  const api = buildApi({
    snapshot: () => loop.snapshot(),
    config: () => loop.currentConfig(),
    holdsLeader: () => memory.holdsLeader,
    apiToken: secrets.apiToken,
    requestRestart: () => {
      memory.restartRequested = true;
      loop.wake();
    },
    reloadConfiguration: () => pg.reloadConfiguration(),
    answerFailsafe: (request) => loop.answerFailsafe(request),
    walPosition: () => loop.walPosition(),
    metrics,
    tls: { cert: tls.cert, key: tls.key },
    // `certs rotate` wrote new node files: postgres re-reads them on reload (ssl_*_file), PgBouncer
    // on RELOAD, and the API takes the returned pair for new connections.
    reloadTls: async () => {
      const fresh = readTlsMaterial(config.tls);
      await pg.reloadConfiguration();
      await pooler.reloadTls();
      return { cert: fresh.cert, key: fresh.key };
    },
  });
  await api.listen({ host: config.listenAddress, port: config.apiPort });
  // React to a leader change or an operator intent at once instead of at the next loop tick
  // (a free leader key, a switchover target). Best effort: the loop polls anyway.
  const watch = await dcs
    .watchPrefix(keys.root, (event) => {
      if (event.key === keys.leader || event.key === keys.failover) {
        loop.wake();
        return;
      }
      // A member that changes role or state (a promotion finished, a replica started streaming)
      // changes routing: re-read the view now rather than at the next loop tick.
      const member = memberNameFromKey(keys, event.key);
      if (member === null) return;
      const before = loop.clusterView()?.members.find((m) => m.name === member);
      if (changesRouting(before, event.kind === 'put' ? parseMemberRecord(event.value) : null)) loop.wake();
    })
    .catch((error: unknown) => {
      log.warn({ err: errorMessage(error) }, 'could not watch etcd; relying on the loop interval');
      return null;
    });
  log.info({ apiUrl, pgPort: config.pgPort, version: PGPILOT_VERSION }, 'agent started');
  const done = loop.run();
  const schedulerDone = backups?.scheduler.run() ?? Promise.resolve();

  let stopping: Promise<void> | null = null;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      log.info('stopping: shutting postgres down cleanly, then releasing etcd keys');
      backups?.child.stop();
      await backups?.scheduler.stop();
      await schedulerDone;
      await loop.stop();
      await done;
      await watch?.cancel().catch(() => undefined);
      loopDelay.disable();
      try {
        await pg.stop('fast');
      } catch (error) {
        log.error({ err: errorMessage(error) }, 'postgres did not stop cleanly');
      }
      await watchdog.stop().catch(() => undefined);
      await loop.releaseAll();
      await api.close().catch(() => undefined);
      await pooler.stop();
      await dataPlane?.stop();
      await leaderRouter.stop();
      await replicaRouter.stop();
      await pg.close();
      await sampler.close();
      await dcs.close().catch(() => undefined);
      log.info('agent stopped');
      log.flush();
    })();
    return stopping;
  };
  return { stop, done };
}
