/**
 * `PostgresNode` over real PostgreSQL 15 binaries: the agent's hands on its own postgres. It owns
 * the data directory's configuration files (postgresql.conf, pg_hba.conf, standby.signal are
 * rewritten from the agent config on every start, so a node's role is always what the HA loop
 * decided) and one supervised postmaster. Invariants:
 * - postgres runs as the postgres OS user and dies with the agent (postmaster.ts);
 * - authentication is scram-sha-256 only, listening on the configured address only, TCP over TLS
 *   only (the node certificate); every client here (the agent, replication, pg_rewind,
 *   pg_basebackup) verifies the server against the cluster CA and the address dialled (verify-full);
 * - the replication password reaches libpq through a 0600 passfile, never through argv or conf;
 * - every call is bounded in time; a failure is a PgpilotError, an ordinary "down" is a state.
 */
import { existsSync, readFileSync } from 'node:fs';
import { readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import type { AgentConfig, ClusterSecrets } from '../config/schema.js';
import type { LocalPostgres } from '../state/agent-snapshot.js';
import type { PostgresNode, SynchronousState, UpstreamAddress } from '../ha/postgres-node.js';
import type { ReplicationEntry } from '../state/member-record.js';
import type { Clock } from '../shared/clock.js';
import type { Logger } from '../shared/logger.js';
import { PgpilotError, errorMessage } from '../shared/errors.js';
import { lsnDiffBytes } from '../shared/lsn.js';
import { archiveCommandFor } from '../backup/wal-entry.js';
import { segmentStartLsn } from '../backup/wal-names.js';
import { runBasebackup } from './basebackup.js';
import { runRewind } from './rewind.js';
import { renderConninfo, renderPgHba, renderPgpass, renderPostgresqlConf } from './conf.js';
import { readControldata } from './controldata.js';
import { ensurePostgresOwnedDir, runInitdb, writePostgresPrivateFile } from './initdb.js';
import { Postmaster } from './postmaster.js';
import {
  connectLocal,
  dropSlotIfExists,
  ensurePhysicalSlot,
  listSlots,
  ensureRole,
  probeNode,
  replicationStatus,
  slotNameFor,
  type PgClient,
} from './queries.js';

export interface LocalPostgresNodeOptions {
  config: AgentConfig;
  secrets: ClusterSecrets;
  clock: Clock;
  log: Logger;
  /**
   * Dynamic postgres parameters from the cluster config, read each time postgresql.conf is written
   * (every start, follow, promotion and `reloadConfiguration`), so a start uses the stored config.
   */
  parameters?: () => Record<string, string | number | boolean> | Promise<Record<string, string | number | boolean>>;
}

/** pg_controldata states of a data directory that was running as a primary (not a standby). */
const PRIMARY_CLUSTER_STATES = new Set(['shut down', 'in production', 'in crash recovery']);
const CONNECT_TIMEOUT_MS = 2_000;
const DRAIN_POLL_MS = 20;
const READY_TIMEOUT_MS = 120_000;
const FAST_STOP_TIMEOUT_MS = 60_000;
const IMMEDIATE_STOP_TIMEOUT_MS = 10_000;
/** A segment with writes in it is archived at the latest after this long (the data a restore can miss). */
export const ARCHIVE_TIMEOUT_SECONDS = 300;

export class LocalPostgresNode implements PostgresNode {
  private readonly postmaster: Postmaster;
  private client: PgClient | null = null;
  private probeFailingSinceMs: number | null = null;
  private stopRequested = false;
  private readonly exitListeners: Array<() => void> = [];
  /** The role the configuration files were last written for (what `reloadConfiguration` rewrites). */
  private lastRole: { mode: 'primary' | 'standby'; upstream: UpstreamAddress | null } | null = null;
  /** Tail of the configuration writes: one at a time, in call order (see `writeConfiguration`). */
  private configWrites: Promise<void> = Promise.resolve();
  /** PEM of the cluster CA (it never changes; node certificates do, and postgres re-reads them on reload). */
  private readonly ca: string;

  constructor(private readonly options: LocalPostgresNodeOptions) {
    this.ca = readFileSync(options.config.tls.caFile, 'utf8');
    this.postmaster = new Postmaster({ clock: options.clock });
    this.postmaster.onExit((exit) => {
      void this.dropClient();
      if (this.stopRequested) return;
      options.log.warn({ code: exit.code, signal: exit.signal }, 'postmaster exited without being asked to');
      for (const listener of this.exitListeners) listener();
    });
  }

  private get dataDir(): string {
    return this.options.config.dataDir;
  }

  private get socketDir(): string {
    return path.join(this.options.config.nodeDir, 'run');
  }

  private get passfile(): string {
    return path.join(this.options.config.nodeDir, 'pgpass');
  }

  postmasterPid(): number | null {
    return this.postmaster.pid;
  }

  onUnexpectedExit(listener: () => void): void {
    this.exitListeners.push(listener);
  }

  async observe(): Promise<LocalPostgres> {
    if (!existsSync(path.join(this.dataDir, 'PG_VERSION'))) return { kind: 'no-data' };
    const pid = this.postmaster.pid;
    if (pid !== null && this.postmaster.isRunning()) {
      try {
        const probe = await probeNode(await this.getClient());
        this.probeFailingSinceMs = null;
        return {
          kind: 'running',
          pid,
          inRecovery: probe.inRecovery,
          timeline: probe.timeline,
          lsn: probe.inRecovery ? probe.replayLsn : probe.currentLsn,
          receiveLsn: probe.receiveLsn,
          walReceiverStatus: probe.walReceiverStatus,
          systemIdentifier: probe.systemIdentifier,
          archiver: probe.archiver,
        };
      } catch {
        await this.dropClient();
        // "Starting" is measured from the first failed probe: one slow probe of a postmaster that
        // has run for hours must not look like a start that took hours.
        this.probeFailingSinceMs ??= this.options.clock.nowMs();
        return { kind: 'starting', pid, sinceMs: this.probeFailingSinceMs };
      }
    }
    try {
      const control = await readControldata(this.options.config.binDir, this.dataDir);
      return {
        kind: 'stopped',
        clusterState: control.clusterState,
        cleanShutdownPrimary: control.clusterState === 'shut down',
        wasPrimary: PRIMARY_CLUSTER_STATES.has(control.clusterState),
        timeline: control.timeline,
        lsn: control.latestCheckpointLsn,
        systemIdentifier: control.systemIdentifier,
        crashed: false,
      };
    } catch (error) {
      this.options.log.warn({ err: errorMessage(error) }, 'pg_controldata failed');
      return { kind: 'stopped', clusterState: 'unknown', cleanShutdownPrimary: false, wasPrimary: false, timeline: null, lsn: null, systemIdentifier: null, crashed: false };
    }
  }

  async initialize(): Promise<{ systemIdentifier: string }> {
    const { config, secrets } = this.options;
    await runInitdb({
      binDir: config.binDir,
      dataDir: this.dataDir,
      superuser: secrets.superuser.name,
      superuserPassword: secrets.superuser.password,
    });
    await this.start('primary', null);
    const client = await this.waitReady();
    await ensureRole(client, { name: secrets.replication.name, password: secrets.replication.password, login: true, replication: true });
    const probe = await probeNode(client);
    return { systemIdentifier: probe.systemIdentifier };
  }

  async cloneFrom(upstream: UpstreamAddress): Promise<void> {
    const { config, secrets } = this.options;
    await this.writePassfile();
    await runBasebackup({
      binDir: config.binDir,
      dataDir: this.dataDir,
      host: upstream.host,
      port: upstream.port,
      user: secrets.replication.name,
      passfile: this.passfile,
      applicationName: config.node,
      caFile: config.tls.caFile,
    });
    await this.start('standby', upstream);
  }

  async start(mode: 'primary' | 'standby', upstream: UpstreamAddress | null): Promise<void> {
    const { config } = this.options;
    await this.writeConfiguration(mode, upstream);
    this.stopRequested = false;
    this.probeFailingSinceMs = null;
    await this.postmaster.start({ binDir: config.binDir, dataDir: this.dataDir, logFile: config.postgresLogFile, socketDir: this.socketDir });
    this.options.log.info({ mode, upstream: upstream?.name ?? null, pid: this.postmaster.pid }, 'postgres started');
  }

  async stop(mode: 'fast' | 'immediate'): Promise<void> {
    if (!this.postmaster.isRunning()) return;
    this.stopRequested = true;
    await this.dropClient();
    const clean = await this.postmaster.stop(mode, mode === 'fast' ? FAST_STOP_TIMEOUT_MS : IMMEDIATE_STOP_TIMEOUT_MS);
    this.options.log.info({ mode, clean }, 'postgres stopped');
  }

  async drainClients(timeoutMs: number): Promise<number> {
    const deadlineMs = this.options.clock.nowMs() + timeoutMs;
    let remaining = 0;
    for (;;) {
      const result = await (await this.getClient()).query<{ n: string }>(
        `SELECT count(*) AS n FROM pg_stat_activity
          WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
            AND coalesce(application_name, '') NOT LIKE 'pgpilot%'`,
      );
      remaining = Number(result.rows[0]?.n ?? 0);
      if (remaining === 0 || this.options.clock.nowMs() >= deadlineMs) return remaining;
      await this.options.clock.sleep(DRAIN_POLL_MS);
    }
  }

  async checkpoint(): Promise<void> {
    await (await this.getClient()).query('CHECKPOINT');
  }

  async rejoin(upstream: UpstreamAddress): Promise<{ kind: 'rewound' | 'not-needed' } | { kind: 'moved-aside'; path: string }> {
    const { config, secrets, log } = this.options;
    await this.writePassfile();
    let outcome: { kind: 'rewound' | 'not-needed' };
    try {
      outcome = await runRewind({
        binDir: config.binDir,
        dataDir: this.dataDir,
        source: { host: upstream.host, port: upstream.port, user: secrets.superuser.name },
        passfile: this.passfile,
        caFile: config.tls.caFile,
      });
    } catch (error) {
      // An unreachable leader says nothing about our data: keep it and let the loop try again.
      if (!(await this.canReach(upstream))) throw error;
      // Nothing is deleted: the diverged data stays beside the new clone for inspection.
      const aside = `${this.dataDir}.diverged-${new Date(this.options.clock.nowMs()).toISOString().replace(/[:.]/g, '-')}`;
      await rename(this.dataDir, aside);
      log.warn({ err: errorMessage(error), aside }, 'pg_rewind failed; data directory moved aside, the node will re-clone');
      return { kind: 'moved-aside', path: aside };
    }
    log.info({ outcome: outcome.kind, upstream: upstream.name }, 'rewind finished');
    await this.start('standby', upstream);
    return outcome;
  }

  /** True when `upstream` accepts a superuser connection now (pg_rewind's source). */
  private async canReach(upstream: UpstreamAddress): Promise<boolean> {
    const { secrets } = this.options;
    try {
      const client = await connectLocal({
        ca: this.ca,
        host: upstream.host,
        port: upstream.port,
        user: secrets.superuser.name,
        password: secrets.superuser.password,
        connectTimeoutMs: CONNECT_TIMEOUT_MS,
      });
      await client.end().catch(() => undefined);
      return true;
    } catch {
      return false;
    }
  }

  async promote(): Promise<void> {
    const client = await this.getClient();
    const result = await client.query<{ promoted: boolean }>('SELECT pg_promote(true, 60) AS promoted');
    if (result.rows[0]?.promoted !== true) throw new PgpilotError('POSTGRES_FAILED', 'pg_promote did not complete within 60 s', { retryable: true });
    await this.writeConfiguration('primary', null);
    this.options.log.info('promoted to primary');
  }

  async follow(upstream: UpstreamAddress | null): Promise<void> {
    await this.writeConfiguration('standby', upstream);
    if (!this.postmaster.reload()) throw new PgpilotError('POSTGRES_FAILED', 'postgres is not running; cannot reload');
    this.options.log.info({ upstream: upstream?.name ?? null }, 'now following');
  }

  async syncSlots(memberNames: readonly string[]): Promise<void> {
    const client = await this.getClient();
    const wanted = new Set(memberNames.map(slotNameFor));
    // An invalidated slot (max_slot_wal_keep_size) keeps nothing and refuses its member: drop it
    // while nobody uses it, so the member (re-cloned by rule D8) gets a working one below.
    for (const slot of await listSlots(client)) {
      if (wanted.has(slot.slotName) && slot.walStatus === 'lost' && !slot.active) {
        await dropSlotIfExists(client, slot.slotName);
        this.options.log.warn({ slot: slot.slotName }, 'replication slot was invalidated; made anew');
      }
    }
    for (const name of wanted) await ensurePhysicalSlot(client, name);
  }

  async oldestWalLsn(): Promise<string | null> {
    const result = await (await this.getClient()).query<{ name: string | null }>(
      "SELECT min(name) AS name FROM pg_ls_waldir() WHERE name ~ '^[0-9A-F]{24}$'",
    );
    const name = result.rows[0]?.name ?? null;
    return name === null ? null : segmentStartLsn(name);
  }

  async moveDataAside(): Promise<string> {
    const aside = `${this.dataDir}.stale-${new Date(this.options.clock.nowMs()).toISOString().replace(/[:.]/g, '-')}`;
    await rename(this.dataDir, aside);
    return aside;
  }

  async replicationStatus(): Promise<ReplicationEntry[]> {
    const client = await this.getClient();
    const current = await client.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
    const currentLsn = current.rows[0]?.lsn ?? null;
    const rows = await replicationStatus(client);
    return rows.map((row) => {
      const lagBytes = currentLsn !== null && row.replayLsn !== null ? lsnDiffBytes(currentLsn, row.replayLsn) : null;
      return {
        applicationName: row.applicationName,
        state: row.state ?? 'unknown',
        replayLsn: row.replayLsn,
        lagBytes,
        // replay_lag is NULL once a caught-up standby has had nothing to replay for a while.
        lagSeconds: row.replayLagMs !== null ? row.replayLagMs / 1000 : lagBytes === 0 ? 0 : null,
        syncState: row.syncState,
      };
    });
  }

  async synchronousState(): Promise<SynchronousState> {
    const client = await this.getClient();
    const result = await client.query<{ names: string; lsn: string }>(
      "SELECT current_setting('synchronous_standby_names') AS names, pg_current_wal_lsn()::text AS lsn",
    );
    const row = result.rows[0];
    if (row === undefined) throw new PgpilotError('POSTGRES_FAILED', 'could not read synchronous_standby_names');
    const rows = await replicationStatus(client);
    return {
      standbyNames: row.names,
      currentLsn: row.lsn,
      standbys: rows.map((r) => ({ name: r.applicationName, state: r.state ?? 'unknown', syncState: r.syncState, flushLsn: r.flushLsn })),
    };
  }

  async setSynchronousStandbyNames(value: string): Promise<void> {
    const client = await this.getClient();
    // ALTER SYSTEM takes no parameters: the value is a literal, quotes doubled (node names are [a-z0-9-]).
    await client.query(`ALTER SYSTEM SET synchronous_standby_names = '${value.replace(/'/g, "''")}'`);
    await client.query('SELECT pg_reload_conf()');
    this.options.log.info({ synchronousStandbyNames: value }, 'synchronous_standby_names set');
  }

  /**
   * Rewrites postgresql.conf for the role it was last written for, from the current parameters,
   * and reloads postgres (`POST /reload` after `config update`). The role is read inside the
   * serialized write, so a reload racing a promotion or a re-point never writes an older role
   * after the newer one. Settings that need a restart stay pending until the next start.
   */
  async reloadConfiguration(): Promise<void> {
    if (!this.postmaster.isRunning()) throw new PgpilotError('POSTGRES_FAILED', 'postgres is not running; cannot reload', { retryable: true });
    await this.serializedWrite(async () => {
      const role = this.lastRole;
      if (role === null) throw new PgpilotError('POSTGRES_FAILED', 'postgres was not started by this agent; cannot reload', { retryable: true });
      await this.writeConfigurationNow(role.mode, role.upstream);
    });
    if (!this.postmaster.reload()) throw new PgpilotError('POSTGRES_FAILED', 'postgres is not running; cannot reload', { retryable: true });
    this.options.log.info('configuration rewritten and reloaded');
  }

  async close(): Promise<void> {
    await this.dropClient();
  }

  /**
   * A standby starts with no synchronous_standby_names of its own (ALTER SYSTEM keeps it in
   * postgresql.auto.conf, pg_rewind copies the leader's): should it be promoted later, its commits
   * must not wait for a set a former leader chose. The new leader publishes an empty /sync before
   * promoting and builds its own set (src/ha/sync-set.ts). A restart as primary keeps the value:
   * the published set still relies on it.
   */
  private async clearSynchronousStandbyNames(): Promise<void> {
    const file = path.join(this.dataDir, 'postgresql.auto.conf');
    if (!existsSync(file)) return;
    const text = await readFile(file, 'utf8');
    const kept = text.split('\n').filter((line) => !/^\s*synchronous_standby_names\s*=/.test(line));
    if (kept.length === text.split('\n').length) return;
    await writePostgresPrivateFile(file, kept.join('\n'));
  }

  private async getClient(): Promise<PgClient> {
    if (this.client !== null) return this.client;
    const { config, secrets } = this.options;
    this.client = await connectLocal({
      ca: this.ca,
      host: config.host,
      port: config.pgPort,
      user: secrets.superuser.name,
      password: secrets.superuser.password,
      connectTimeoutMs: CONNECT_TIMEOUT_MS,
      applicationName: `pgpilot-agent-${config.node}`,
    });
    this.client.on('end', () => {
      this.client = null;
    });
    return this.client;
  }

  private async dropClient(): Promise<void> {
    const client = this.client;
    this.client = null;
    if (client !== null) await client.end().catch(() => undefined);
  }

  private async waitReady(): Promise<PgClient> {
    const deadlineMs = this.options.clock.nowMs() + READY_TIMEOUT_MS;
    let lastError = 'not started';
    while (this.options.clock.nowMs() < deadlineMs) {
      if (!this.postmaster.isRunning()) break;
      try {
        const client = await this.getClient();
        await probeNode(client);
        return client;
      } catch (error) {
        lastError = errorMessage(error);
        await this.dropClient();
      }
      await this.options.clock.sleep(200);
    }
    throw new PgpilotError('POSTGRES_FAILED', `postgres did not become ready: ${lastError}`, {
      hint: `read ${this.options.config.postgresLogFile}`,
      retryable: true,
    });
  }

  private async writePassfile(): Promise<void> {
    const { secrets } = this.options;
    await ensurePostgresOwnedDir(this.socketDir, 0o700);
    await writePostgresPrivateFile(
      this.passfile,
      renderPgpass([
        { host: '*', port: '*', database: '*', user: secrets.replication.name, password: secrets.replication.password },
        // pg_rewind reads the new leader's files through a superuser connection.
        { host: '*', port: '*', database: '*', user: secrets.superuser.name, password: secrets.superuser.password },
      ]),
    );
  }

  /** Runs `write` after every configuration write queued before it (a failed one does not block the next). */
  private serializedWrite(write: () => Promise<void>): Promise<void> {
    const next = this.configWrites.then(write, write);
    this.configWrites = next.catch(() => undefined);
    return next;
  }

  /**
   * Rewrites postgresql.conf, pg_hba.conf and standby.signal for the role; the passfile too.
   * Serialized with `reloadConfiguration` (the loop and the REST API both write these files).
   */
  private writeConfiguration(mode: 'primary' | 'standby', upstream: UpstreamAddress | null): Promise<void> {
    return this.serializedWrite(() => this.writeConfigurationNow(mode, upstream));
  }

  private async writeConfigurationNow(mode: 'primary' | 'standby', upstream: UpstreamAddress | null): Promise<void> {
    this.lastRole = { mode, upstream };
    const { config, secrets } = this.options;
    await this.writePassfile();
    const standby =
      mode === 'standby' && upstream !== null
        ? {
            primaryConninfo: renderConninfo({
              host: upstream.host,
              port: upstream.port,
              user: secrets.replication.name,
              passfile: this.passfile,
              application_name: config.node,
              connect_timeout: 2,
              sslmode: 'verify-full',
              sslrootcert: config.tls.caFile,
            }),
            primarySlotName: slotNameFor(config.node),
          }
        : null;
    const conf = renderPostgresqlConf({
      port: config.pgPort,
      listenAddresses: config.listenAddress,
      socketDir: this.socketDir,
      clusterName: config.cluster,
      nodeName: config.node,
      tls: { certFile: config.tls.certFile, keyFile: config.tls.keyFile, caFile: config.tls.caFile },
      parameters: (await this.options.parameters?.()) ?? {},
      standby,
      archive:
        config.backupStoreFile === undefined
          ? null
          : { mode: 'always', command: archiveCommandFor(config.backupStoreFile, config.cluster), timeoutSeconds: ARCHIVE_TIMEOUT_SECONDS },
    });
    await writePostgresPrivateFile(path.join(this.dataDir, 'postgresql.conf'), conf);
    await writePostgresPrivateFile(
      path.join(this.dataDir, 'pg_hba.conf'),
      renderPgHba({ superuser: secrets.superuser.name, replicationUser: secrets.replication.name, cidrs: [...config.allowedCidrs] }),
    );
    const signal = path.join(this.dataDir, 'standby.signal');
    if (mode === 'standby') {
      await writePostgresPrivateFile(signal, '');
      await this.clearSynchronousStandbyNames();
    } else {
      await rm(signal, { force: true });
    }
  }
}
