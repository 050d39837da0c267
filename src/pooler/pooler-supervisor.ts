/**
 * The agent's pooler component: keeps this node's PgBouncer in line with the dynamic config's
 * `pooler` settings (etcd /config), which the HA loop re-reads every tick. `pooler enable` only
 * writes etcd; within a tick or two every agent starts its PgBouncer, a changed pool mode or size
 * is applied with a reload (SIGHUP, no client is dropped), and `pooler disable` stops it.
 *
 * Invariants and why:
 * - One reconcile runs at a time; calls made meanwhile collapse into one more run with the newest
 *   settings, so a burst of ticks never starts two PgBouncers.
 * - `decidePoolerStep` is pure: start when wanted and not running (at most once per
 *   RESTART_BACKOFF_MS, so a port taken by someone else cannot spin), reload when the rendered
 *   files differ from the ones the running process read, stop when not wanted.
 * - A PgBouncer that exits on its own is noticed through its exit event and started again by the
 *   next reconcile; it runs only while this agent runs (parent-death signal, pgbouncer-process.ts).
 * - On the leader, the auth upkeep (pooler-auth.ts) gives the pooler role CONNECT on, and the
 *   lookup function in, databases created after `pooler enable` (each database once per agent
 *   process, by OID); it never runs on a replica (it writes catalogs).
 * - PgBouncer starts only after this node's postgres showed that the auth schema and function, in
 *   every database, are the cluster superuser's or absent (`auditLookupFunctions`, read-only, so
 *   replicas check their replayed catalog too), checked again before every start and every
 *   AUTH_AUDIT_EVERY_MS. An impostor's schema or function (pooler-auth.ts) is a blocker: PgBouncer
 *   is stopped or not started, the reason is logged as an error and recorded once as a
 *   `pooler-auth-refused` event, and the leader's upkeep leaves it untouched.
 * - Failures are logged and retried; they never stop the agent or the HA loop.
 */
import { readFile } from 'node:fs/promises';
import { clusterSecretsSchema, type PoolerSettings } from '../config/schema.js';
import type { Clock } from '../shared/clock.js';
import { errorMessage } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import { parseJsonOrNull } from '../shared/json.js';
import type { PgClient } from '../postgres/queries.js';
import { ensurePostgresOwnedDir, writePostgresPrivateFile } from '../postgres/initdb.js';
import { renderAuthFile, renderPgbouncerIni, serverHostFor } from './pgbouncer-config.js';
import { findPgbouncerBinary, reloadPgbouncer, startPgbouncer, stopPgbouncer } from './pgbouncer-process.js';
import { poolerPaths, type PoolerPaths } from './pooler-files.js';
import { AUTH_QUERY, POOLER_ROLE, auditLookupFunctions, connectableDatabases, ensureLookupFunction, grantConnect, poolerRoleExists } from './pooler-auth.js';
import { isPgpilotError } from '../shared/errors.js';
import { rm } from 'node:fs/promises';

/** A failed or crashed PgBouncer is started again at most this often. */
export const RESTART_BACKOFF_MS = 2_000;
/** How often the leader looks for databases that lack the pooler's grant or lookup function. */
export const AUTH_UPKEEP_EVERY_MS = 10_000;
/** How often every node re-checks that the auth schema and function are still the superuser's. */
export const AUTH_AUDIT_EVERY_MS = 30_000;

export type PoolerStep =
  | { kind: 'none' }
  | { kind: 'start' }
  | { kind: 'reload' }
  | { kind: 'stop' }
  | { kind: 'wait'; reason: string };

export interface PoolerStepInput {
  /** Enabled in the dynamic config. */
  enabled: boolean;
  /** Why it cannot run even though enabled (no port, no auth user yet); null when it can. */
  blocker: string | null;
  running: boolean;
  /** Files the running PgBouncer read (null: none running). */
  appliedFiles: string | null;
  desiredFiles: string | null;
  lastStartAttemptMs: number;
  nowMs: number;
}

/** What to do next (pure). */
export function decidePoolerStep(input: PoolerStepInput): PoolerStep {
  if (!input.enabled) return input.running ? { kind: 'stop' } : { kind: 'none' };
  if (input.blocker !== null) return input.running ? { kind: 'stop' } : { kind: 'wait', reason: input.blocker };
  if (!input.running) {
    if (input.nowMs - input.lastStartAttemptMs < RESTART_BACKOFF_MS) return { kind: 'wait', reason: 'restart back-off' };
    return { kind: 'start' };
  }
  if (input.desiredFiles !== input.appliedFiles) return { kind: 'reload' };
  return { kind: 'none' };
}

export interface PoolerSupervisorOptions {
  node: string;
  nodeDir: string;
  listenAddress: string;
  /** This node's pooler port (agent.json); absent for nodes created before pgpilot had a pooler. */
  poolerPort: number | undefined;
  /** This node's leader proxy port: PgBouncer's server side. */
  proxyPort: number;
  secretsFile: string;
  clock: Clock;
  log: Logger;
  /** A new superuser connection to the local postgres, database `database` (audit, leader upkeep). */
  connect: (database: string) => Promise<PgClient>;
  /** The node certificate and the cluster CA (pgbouncer-config.ts). */
  tls: { certFile: string; keyFile: string; caFile: string };
  /** The cluster superuser: the only owner the auth schema and function may have. */
  superuser: string;
  /** Called once per new refusal (an untrusted auth schema or function), e.g. to record an event. */
  onAuthRefused?: (message: string) => void;
}

interface Running {
  pid: number;
  files: string;
  exited: boolean;
}

export class PoolerSupervisor {
  private readonly paths: PoolerPaths;
  private running: Running | null = null;
  private lastStartAttemptMs = -Infinity;
  private lastLogged = '';
  private busy: Promise<void> | null = null;
  private latest: { settings: PoolerSettings; isLeader: boolean } | null = null;
  private again = false;
  private stopping = false;
  private lastUpkeepMs = -Infinity;
  private readonly upkept = new Set<number>();
  /** The last audit's verdict: undefined before one succeeded, null when trusted, else why not. */
  private authProblem: string | null | undefined = undefined;
  private lastAuditMs = -Infinity;

  constructor(private readonly options: PoolerSupervisorOptions) {
    this.paths = poolerPaths(options.nodeDir);
  }

  /** The running PgBouncer's PID, or null. */
  pid(): number | null {
    return this.running !== null && !this.running.exited ? this.running.pid : null;
  }

  /** Brings PgBouncer in line with `settings` (asynchronously; never throws). */
  reconcile(settings: PoolerSettings, isLeader: boolean): void {
    this.latest = { settings, isLeader };
    if (this.busy !== null) {
      this.again = true;
      return;
    }
    this.busy = (async () => {
      try {
        do {
          this.again = false;
          await this.reconcileOnce();
        } while (this.again && !this.stopping);
      } finally {
        this.busy = null;
      }
    })();
  }

  /**
   * New certificate files (`certs rotate`): a running PgBouncer re-reads its TLS files on RELOAD
   * (SIGHUP); new connections get the new certificate, open ones are kept.
   */
  async reloadTls(): Promise<void> {
    const current = this.running;
    if (current === null || current.exited) return;
    if (await reloadPgbouncer(current.pid, this.paths.iniFile)) this.options.log.info({ pid: current.pid }, 'pgbouncer reloaded for new certificates');
    else current.exited = true;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.busy?.catch(() => undefined);
    await this.stopProcess('agent stopping');
  }

  private note(message: string, fields: Record<string, unknown> = {}, level: 'info' | 'warn' | 'error' = 'info'): void {
    // Steady states are logged once, not every tick.
    const key = `${level}:${message}`;
    if (key === this.lastLogged) return;
    this.lastLogged = key;
    this.options.log[level](fields, message);
  }

  private async desired(settings: PoolerSettings): Promise<{ blocker: string | null; ini: string | null; auth: string | null }> {
    if (this.options.poolerPort === undefined) return { blocker: 'this node has no pooler port (created before pgpilot had a pooler)', ini: null, auth: null };
    const secrets = parseJsonOrNull(clusterSecretsSchema, await readFile(this.options.secretsFile, 'utf8').catch(() => null));
    if (secrets?.pooler === undefined) return { blocker: 'no pooler credentials in secrets.json yet (pgpilot pooler enable writes them)', ini: null, auth: null };
    if (this.authProblem === undefined) return { blocker: 'the auth schema and function have not been checked yet (postgres not reachable?)', ini: null, auth: null };
    if (this.authProblem !== null) return { blocker: `refusing an untrusted auth function: ${this.authProblem}`, ini: null, auth: null };
    const ini = renderPgbouncerIni({
      listenAddress: this.options.listenAddress,
      listenPort: this.options.poolerPort,
      serverHost: serverHostFor(this.options.listenAddress),
      serverPort: this.options.proxyPort,
      authUser: secrets.pooler.name,
      authFile: this.paths.authFile,
      authQuery: AUTH_QUERY,
      poolMode: settings.poolMode,
      defaultPoolSize: settings.defaultPoolSize,
      tls: this.options.tls,
    });
    return { blocker: null, ini, auth: renderAuthFile([{ user: secrets.pooler.name, password: secrets.pooler.password }]) };
  }

  private async reconcileOnce(): Promise<void> {
    const latest = this.latest;
    if (latest === null || this.stopping) return;
    const { settings, isLeader } = latest;
    if (settings.enabled) await this.auditIfDue();
    let want: { blocker: string | null; ini: string | null; auth: string | null };
    try {
      want = settings.enabled ? await this.desired(settings) : { blocker: null, ini: null, auth: null };
    } catch (error) {
      this.note('cannot render the pgbouncer config', { err: errorMessage(error) }, 'error');
      return;
    }
    const desiredFiles = want.ini === null || want.auth === null ? null : `${want.ini}\n${want.auth}`;
    const running = this.running !== null && !this.running.exited;
    const step = decidePoolerStep({
      enabled: settings.enabled,
      blocker: want.blocker,
      running,
      appliedFiles: running ? (this.running?.files ?? null) : null,
      desiredFiles,
      lastStartAttemptMs: this.lastStartAttemptMs,
      nowMs: this.options.clock.nowMs(),
    });
    try {
      switch (step.kind) {
        case 'none':
          break;
        case 'wait':
          if (step.reason !== 'restart back-off') this.note(`pooler enabled but not started: ${step.reason}`, {}, 'warn');
          break;
        case 'stop':
          await this.stopProcess(settings.enabled ? (want.blocker ?? 'not wanted') : 'pooler disabled');
          break;
        case 'start':
          await this.start(settings, want.ini ?? '', want.auth ?? '');
          break;
        case 'reload':
          await this.reload(settings, want.ini ?? '', want.auth ?? '');
          break;
      }
    } catch (error) {
      this.note('pgbouncer: could not apply the pooler settings', { err: errorMessage(error), step: step.kind }, 'error');
    }
    if (settings.enabled && want.blocker === null && isLeader) await this.authUpkeep();
  }

  private async writeFiles(ini: string, auth: string): Promise<void> {
    await ensurePostgresOwnedDir(this.paths.dir, 0o700);
    // Both are read by PgBouncer, which runs as the postgres OS user; only it (and root) may read them.
    await writePostgresPrivateFile(this.paths.authFile, auth);
    await writePostgresPrivateFile(this.paths.iniFile, ini);
  }

  private async start(settings: PoolerSettings, ini: string, auth: string): Promise<void> {
    this.lastStartAttemptMs = this.options.clock.nowMs();
    const port = this.options.poolerPort;
    if (port === undefined) return;
    await this.writeFiles(ini, auth);
    const binary = findPgbouncerBinary();
    const entry: Running = { pid: 0, files: `${ini}\n${auth}`, exited: false };
    const { pid } = await startPgbouncer({
      binary,
      iniFile: this.paths.iniFile,
      logFile: this.paths.logFile,
      pidFile: this.paths.pidFile,
      listenPort: port,
      clock: this.options.clock,
      onExit: (how) => {
        entry.exited = true;
        if (!this.stopping && this.running === entry) this.options.log.error({ how, logFile: this.paths.logFile }, 'pgbouncer exited; starting it again');
      },
    });
    entry.pid = pid;
    this.running = entry;
    this.lastLogged = '';
    this.options.log.info({ pid, port, poolMode: settings.poolMode, defaultPoolSize: settings.defaultPoolSize }, 'pgbouncer started');
  }

  private async reload(settings: PoolerSettings, ini: string, auth: string): Promise<void> {
    const current = this.running;
    if (current === null) return;
    await this.writeFiles(ini, auth);
    if (await reloadPgbouncer(current.pid, this.paths.iniFile)) {
      current.files = `${ini}\n${auth}`;
      this.options.log.info({ pid: current.pid, poolMode: settings.poolMode, defaultPoolSize: settings.defaultPoolSize }, 'pgbouncer reloaded');
    } else {
      current.exited = true;
    }
  }

  private async stopProcess(reason: string): Promise<void> {
    const current = this.running;
    if (current === null) return;
    this.running = null;
    if (!current.exited) {
      const how = await stopPgbouncer(current.pid, this.paths.iniFile, this.options.clock);
      this.options.log.info({ pid: current.pid, how, reason }, 'pgbouncer stopped');
    }
    await rm(this.paths.pidFile, { force: true }).catch(() => undefined);
  }

  /** Before every start (not running) and every AUTH_AUDIT_EVERY_MS: is every auth object the superuser's? */
  private async auditIfDue(): Promise<void> {
    const running = this.running !== null && !this.running.exited;
    const now = this.options.clock.nowMs();
    const startDue = !running && now - this.lastStartAttemptMs >= RESTART_BACKOFF_MS;
    if (!startDue && now - this.lastAuditMs < AUTH_AUDIT_EVERY_MS) return;
    this.lastAuditMs = now;
    let client: PgClient | null = null;
    try {
      client = await this.options.connect('postgres');
      const found = await auditLookupFunctions(client, (db) => this.options.connect(db), this.options.superuser);
      this.setAuthProblem(found === null ? null : `database ${found.database}: ${found.problem}`);
    } catch (error) {
      // Unknown is not trusted: a PgBouncer not running is not started on an old verdict; a running
      // one keeps its verdict until the next check.
      if (!running && this.authProblem === null) this.authProblem = undefined;
      this.note('could not check the pooler auth schema and function; will retry', { err: errorMessage(error) }, 'warn');
    } finally {
      await client?.end().catch(() => undefined);
    }
  }

  private setAuthProblem(problem: string | null): void {
    const previous = this.authProblem;
    this.authProblem = problem;
    if (problem === previous) return;
    if (problem === null) {
      if (previous !== undefined) this.options.log.info('the pooler auth schema and function are the superuser\'s again');
      return;
    }
    const message = `pooler refuses an untrusted auth function: ${problem}; PgBouncer is not started with it`;
    this.options.log.error({ problem }, message);
    this.options.onAuthRefused?.(message);
  }

  /** Leader only: CONNECT and the lookup function in every database (each once per process). */
  private async authUpkeep(): Promise<void> {
    const now = this.options.clock.nowMs();
    if (now - this.lastUpkeepMs < AUTH_UPKEEP_EVERY_MS) return;
    this.lastUpkeepMs = now;
    let client: PgClient | null = null;
    try {
      client = await this.options.connect('postgres');
      if (!(await poolerRoleExists(client))) return;
      for (const db of await connectableDatabases(client)) {
        if (this.upkept.has(db.oid)) continue;
        if (!db.poolerCanConnect) await grantConnect(client, db.name);
        const dbClient = await this.options.connect(db.name);
        try {
          const done = await ensureLookupFunction(dbClient, this.options.superuser, db.name);
          if (done.length > 0 || !db.poolerCanConnect) this.options.log.info({ database: db.name, done, grantedConnect: !db.poolerCanConnect, role: POOLER_ROLE }, 'pooler auth prepared in a database');
        } finally {
          await dbClient.end().catch(() => undefined);
        }
        this.upkept.add(db.oid);
      }
    } catch (error) {
      if (isPgpilotError(error) && error.code === 'POOLER_AUTH_UNTRUSTED') {
        this.setAuthProblem(error.message);
        return;
      }
      this.options.log.warn({ err: errorMessage(error) }, 'pooler auth upkeep failed; will retry');
      this.lastUpkeepMs = now - AUTH_UPKEEP_EVERY_MS + RESTART_BACKOFF_MS * 5;
    } finally {
      await client?.end().catch(() => undefined);
    }
  }
}
