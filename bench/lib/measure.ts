/**
 * The measurements of bench/run.ts, written once against the BenchCluster shape so that pgpilot
 * and Patroni go through the same code:
 *
 * - WriteProbe: the client's view. Every `intervalMs` a NEW connection attempt starts (attempts
 *   overlap, at most `maxInFlight` at once) and tries the write endpoints in order the way libpq
 *   does with several hosts and target_session_attrs=read-write: connect, `SHOW
 *   transaction_read_only` must say off (else the next endpoint), then one INSERT. Each attempt is
 *   recorded (monotonic start/end, ok, error, and the port of the postgres that took the row).
 * - unplanned failover (agent + postmaster of the leader SIGKILLed), postgres crash (postmaster
 *   only), planned switchover: times from the probe's records.
 * - pgbench select-only direct / leader proxy / external HAProxy (pgpilot only).
 * - idle footprint of the HA processes (RSS, CPU) from /proc.
 * - saturation: pgbench TPC-B straight at the leader while the roles are polled every second.
 *
 * Every wait has a deadline; every helper stops what it started (probe in finally, pgbench and
 * HAProxy killed on error). Times are performance.now() milliseconds.
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { verifyFullSsl } from '../../src/postgres/queries.js';
import type { BenchCluster, BenchNode, Endpoint } from './bench-cluster.js';
import { pgbenchInit, pgbenchRun, tpsOf, type PgTarget } from './pgbench.js';
import { clockTicksPerSecond, isAlive, readStat, rssKiB } from './proc.js';
import { max, median, round } from './stats.js';
import type { PgpilotBenchCluster } from './pgpilot-cluster.js';

export type Log = (line: string) => void;

const now = (): number => performance.now();

/**
 * Aborted by an interrupted run (SIGINT/SIGTERM in bench/run.ts): waits end at their next poll and
 * no process is signalled any more, while the run destroys its clusters.
 */
export const benchAbort = new AbortController();

function throwIfAborted(): void {
  if (benchAbort.signal.aborted) throw new Error('interrupted');
}

/** `promise`, or a rejection as soon as the run is interrupted (the operation itself is bounded and ends on its own). */
export function abortable<T>(promise: Promise<T>): Promise<T> {
  if (benchAbort.signal.aborted) {
    promise.catch(() => undefined);
    return Promise.reject(new Error('interrupted'));
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(new Error('interrupted'));
    benchAbort.signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        benchAbort.signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        benchAbort.signal.removeEventListener('abort', onAbort);
        reject(error instanceof Error ? error : new Error(String(error)));
      },
    );
  });
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Polls `probe` every `pollMs` until it gives a value; throws after `timeoutMs`. */
export async function waitFor<T>(what: string | (() => string), probe: () => T | null | undefined | Promise<T | null | undefined>, timeoutMs: number, pollMs = 50): Promise<T> {
  const deadline = now() + timeoutMs;
  let lastError: unknown = null;
  for (;;) {
    throwIfAborted();
    try {
      const value = await probe();
      if (value !== null && value !== undefined) return value;
    } catch (error) {
      lastError = error;
    }
    if (now() >= deadline) {
      const detail = lastError === null ? '' : ` (last error: ${messageOf(lastError)})`;
      throw new Error(`timed out after ${Math.round(timeoutMs / 1000)} s waiting for ${typeof what === 'string' ? what : what()}${detail}`);
    }
    await sleep(pollMs);
  }
}

/** Resolves with `promise`, or rejects after `ms` (the promise itself goes on; use for reads only). */
async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------------------------
// The write probe

export interface Attempt {
  startedMs: number;
  endedMs: number;
  ok: boolean;
  error: string | null;
  /** inet_server_port() of the postgres that committed the row (tells which node led). */
  serverPort: number | null;
}

export interface WriteProbeOptions {
  intervalMs?: number;
  maxInFlight?: number;
  connectTimeoutMs?: number;
  queryTimeoutMs?: number;
}

interface Credentials {
  user: string;
  password: string;
  database: string;
  /** PEM of the CA to verify the server against (verify-full), or null for a plain-text server. */
  ca: string | null;
}

/** Ends a client without trusting end() to settle (it may not after a failed connect). */
async function closeClient(client: pg.Client): Promise<void> {
  await Promise.race([client.end().catch(() => undefined), sleep(1_000)]);
  (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
}

type EndpointOutcome = { kind: 'ok'; serverPort: number | null } | { kind: 'next'; error: string } | { kind: 'failed'; error: string };

/**
 * One endpoint the libpq way: connection or read-only check failing means "try the next host";
 * once a read-write session is established, the statement's own failure fails the attempt.
 */
async function tryEndpoint(endpoint: Endpoint, creds: Credentials, options: Required<WriteProbeOptions>, sql: string): Promise<EndpointOutcome> {
  const client = new pg.Client({
    host: endpoint.host,
    port: endpoint.port,
    user: creds.user,
    password: creds.password,
    database: creds.database,
    ...(creds.ca === null ? {} : { ssl: verifyFullSsl(creds.ca) }),
    connectionTimeoutMillis: options.connectTimeoutMs,
    query_timeout: options.queryTimeoutMs,
    statement_timeout: options.queryTimeoutMs,
    application_name: 'bench-probe',
  });
  // A server that dies under an idle client makes it emit 'error'; the attempt already knows.
  client.on('error', () => undefined);
  try {
    try {
      await client.connect();
    } catch (error) {
      return { kind: 'next', error: `${endpoint.port}: connect: ${messageOf(error)}` };
    }
    try {
      const ro = await client.query<{ transaction_read_only: string }>('SHOW transaction_read_only');
      if (ro.rows[0]?.transaction_read_only !== 'off') return { kind: 'next', error: `${endpoint.port}: read-only` };
    } catch (error) {
      return { kind: 'next', error: `${endpoint.port}: read-only check: ${messageOf(error)}` };
    }
    try {
      const result = await client.query<{ port: number | null }>(sql);
      const port = result.rows[0]?.port;
      return { kind: 'ok', serverPort: port === null || port === undefined ? null : Number(port) };
    } catch (error) {
      return { kind: 'failed', error: `${endpoint.port}: ${messageOf(error)}` };
    }
  } finally {
    await closeClient(client);
  }
}

async function writeOnce(endpoints: readonly Endpoint[], creds: Credentials, options: Required<WriteProbeOptions>, sql: string): Promise<Omit<Attempt, 'startedMs' | 'endedMs'>> {
  const errors: string[] = [];
  for (const endpoint of endpoints) {
    const outcome = await tryEndpoint(endpoint, creds, options, sql);
    if (outcome.kind === 'ok') return { ok: true, error: null, serverPort: outcome.serverPort };
    errors.push(outcome.error);
    if (outcome.kind === 'failed') break;
  }
  return { ok: false, error: errors.join('; ') || 'no endpoint', serverPort: null };
}

const INSERT_SQL = 'INSERT INTO bench_probe(at) VALUES (now()) RETURNING inet_server_port() AS port';
const CREATE_SQL = 'CREATE TABLE IF NOT EXISTS bench_probe (id bigserial PRIMARY KEY, at timestamptz NOT NULL)';

export class WriteProbe {
  readonly attempts: Attempt[] = [];
  /** Ticks at which no attempt started because `maxInFlight` were already running. */
  skipped = 0;
  private readonly options: Required<WriteProbeOptions>;
  private readonly endpoints: Endpoint[];
  private readonly creds: Credentials;
  private readonly pending = new Set<Promise<void>>();
  private timer: NodeJS.Timeout | null = null;

  constructor(cluster: BenchCluster, options: WriteProbeOptions = {}) {
    this.options = { intervalMs: 100, maxInFlight: 50, connectTimeoutMs: 1_000, queryTimeoutMs: 2_000, ...options };
    this.endpoints = cluster.writeEndpoints();
    this.creds = { user: cluster.user, password: cluster.password, database: cluster.database, ca: cluster.caFile === null ? null : readFileSync(cluster.caFile, 'utf8') };
  }

  /** Creates the probe table (bounded retries), then starts an attempt every intervalMs. */
  async start(): Promise<void> {
    let last = '';
    await waitFor(
      () => `the probe table to be created (${last})`,
      async () => {
        const result = await writeOnce(this.endpoints, this.creds, this.options, CREATE_SQL);
        last = result.error ?? '';
        return result.ok ? true : null;
      },
      60_000,
      250,
    );
    this.timer = setInterval(() => this.tick(), this.options.intervalMs);
  }

  private tick(): void {
    if (benchAbort.signal.aborted) return;
    if (this.pending.size >= this.options.maxInFlight) {
      this.skipped += 1;
      return;
    }
    const startedMs = now();
    const attempt = writeOnce(this.endpoints, this.creds, this.options, INSERT_SQL)
      .catch((error: unknown) => ({ ok: false, error: messageOf(error), serverPort: null }))
      .then((result) => {
        this.attempts.push({ startedMs, endedMs: now(), ...result });
      })
      .finally(() => {
        this.pending.delete(attempt);
      });
    this.pending.add(attempt);
  }

  commits(sinceMs = Number.NEGATIVE_INFINITY): number {
    return this.attempts.filter((a) => a.ok && a.startedMs >= sinceMs).length;
  }

  /** The earliest-ending successful attempt that started at or after `sinceMs` (attempts are appended as they end). */
  firstSuccessSince(sinceMs: number): Attempt | null {
    return this.attempts.find((a) => a.ok && a.startedMs >= sinceMs) ?? null;
  }

  async waitForCommits(count: number, timeoutMs: number, sinceMs = Number.NEGATIVE_INFINITY): Promise<void> {
    await waitFor(
      () => `${count} probe commits (have ${this.commits(sinceMs)}; last error: ${this.attempts.at(-1)?.error ?? '-'})`,
      () => (this.commits(sinceMs) >= count ? true : null),
      timeoutMs,
    );
  }

  /** Stops starting attempts and waits (bounded) for those in flight. */
  async stop(): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    await Promise.race([Promise.allSettled([...this.pending]), sleep(30_000)]);
  }
}

// ---------------------------------------------------------------------------------------------
// Failover, crash, switchover

function leaderOf(nodes: readonly BenchNode[]): BenchNode {
  const leader = nodes.find((n) => n.role === 'primary');
  if (leader === undefined) throw new Error('no primary');
  return leader;
}

function nodeByPort(nodes: readonly BenchNode[], port: number | null): string | null {
  return nodes.find((n) => n.pgPort === port)?.name ?? null;
}

/** The leader's agent and postmaster PIDs, each checked to be alive (and the postmaster to be postgres) before any signal. */
/**
 * What a kill takes down: 'postgres' the postmaster alone; 'agent' the HA agent process with its
 * postmaster (an agent crash: node-local helpers such as pgpilot's watchdog survive and may act);
 * 'host' everything of the HA system on the node at once (agent, its sidecars, postmaster), as a
 * machine that dies would: only the lease TTL can end the old lead then.
 */
export type KillScope = 'postgres' | 'agent' | 'host';

function killablePids(cluster: BenchCluster, leader: BenchNode, scope: KillScope): { agentPid: number | null; sidecarPids: number[]; postmasterPid: number; supervisorPids: number[] } {
  const postmasterPid = leader.postmasterPid;
  if (postmasterPid === null || !isAlive(postmasterPid) || readStat(postmasterPid)?.comm !== 'postgres') {
    throw new Error(`${leader.name}: no live postmaster PID to kill (reported ${postmasterPid ?? 'none'})`);
  }
  if (scope === 'postgres') return { agentPid: null, sidecarPids: [], postmasterPid, supervisorPids: [] };
  const agentPid = leader.agentPid;
  if (agentPid === null || !isAlive(agentPid)) throw new Error(`${leader.name}: no live agent PID to kill (reported ${agentPid ?? 'none'})`);
  const sidecarPids = scope === 'host' ? (cluster.sidecarPids?.(leader) ?? []) : [];
  return { agentPid, sidecarPids, postmasterPid, supervisorPids: cluster.supervisorPids?.(leader) ?? [] };
}

export interface OutageSample {
  /** From the kill until the end of the first successful write attempt that started after it. */
  ms: number;
  /** Attempts that failed between the kill and that first success. */
  failedAttempts: number;
  oldLeader: string;
  newLeader: string | null;
  errorsSeen: string[];
  /** Probe ticks skipped during the run because maxInFlight attempts were already running. */
  probeTicksSkipped: number;
}

function outageOf(probe: WriteProbe, t0: number, recovered: Attempt, nodes: readonly BenchNode[], oldLeader: string): OutageSample {
  const failed = probe.attempts.filter((a) => !a.ok && a.endedMs >= t0 && a.startedMs <= recovered.startedMs);
  const errorsSeen = [...new Set(failed.map((a) => (a.error ?? '').replace(/\d{4,5}: /g, 'PORT: ').slice(0, 160)))].slice(0, 5);
  return {
    ms: round(recovered.endedMs - t0, 1),
    failedAttempts: failed.length,
    oldLeader,
    newLeader: nodeByPort(nodes, recovered.serverPort),
    errorsSeen,
    probeTicksSkipped: probe.skipped,
  };
}

const HEALTHY_TIMEOUT_MS = 180_000;
const REJOIN_TIMEOUT_MS = 300_000;

async function killAndMeasure(cluster: BenchCluster, scope: KillScope, deadlineMs: number, log: Log, onKilled: (node: string) => void): Promise<OutageSample> {
  await abortable(cluster.waitHealthy(HEALTHY_TIMEOUT_MS));
  const probe = new WriteProbe(cluster);
  await probe.start();
  try {
    await probe.waitForCommits(5, 30_000);
    const nodes = await cluster.nodes();
    const leader = leaderOf(nodes);
    const { agentPid, sidecarPids, postmasterPid, supervisorPids } = killablePids(cluster, leader, scope);
    throwIfAborted();
    // The supervisor frozen first: it can neither restart the agent nor, dying, send it a
    // parent-death signal; it is killed last, once the agent is already dead.
    for (const pid of supervisorPids) process.kill(pid, 'SIGSTOP');
    // Sidecars first, so none of them sees the agent die and acts on it (a host loss leaves no one).
    for (const pid of sidecarPids) process.kill(pid, 'SIGKILL');
    if (agentPid !== null) process.kill(agentPid, 'SIGKILL');
    process.kill(postmasterPid, 'SIGKILL');
    for (const pid of supervisorPids) process.kill(pid, 'SIGKILL');
    const t0 = now();
    onKilled(leader.name);
    const sidecars = sidecarPids.length === 0 ? '' : `sidecars ${sidecarPids.join(',')} + `;
    const supervisors = supervisorPids.length === 0 ? '' : `supervisor ${supervisorPids.join(',')} + `;
    log(`  killed ${leader.name}: ${supervisors}${sidecars}${agentPid === null ? '' : `agent ${agentPid} + `}postmaster ${postmasterPid}`);
    const recovered = await waitFor(
      () => `a successful write after killing ${leader.name}'s ${scope === 'postgres' ? 'postgres' : scope === 'agent' ? 'agent and postgres' : 'HA processes and postgres'} (last error: ${probe.attempts.at(-1)?.error ?? '-'})`,
      () => probe.firstSuccessSince(t0),
      deadlineMs,
    );
    const sample = outageOf(probe, t0, recovered, nodes, leader.name);
    log(`  writes back after ${Math.round(sample.ms)} ms on ${sample.newLeader ?? '?'} (${sample.failedAttempts} failed attempts)`);
    return sample;
  } finally {
    await probe.stop();
  }
}

export interface FailoverSample extends OutageSample {
  /** From the start of the restart until the cluster is healthy again (null when it did not get there). */
  rejoinMs: number | null;
  /** Why the killed node did not rejoin (the failover time above is still valid); null when it did. */
  rejoinError: string | null;
}

/**
 * Leader agent + postmaster SIGKILLed together; then the killed node is started again and rejoins.
 * A failover that was measured but whose node did not rejoin returns the sample with rejoinError
 * set (the caller records that as a failure of its own); no failover at all throws.
 */
export async function measureUnplannedFailover(
  cluster: BenchCluster,
  log: Log,
  deadlineMs = 120_000,
  scope: Exclude<KillScope, 'postgres'> = 'agent',
): Promise<FailoverSample> {
  let killed: string | null = null;
  let sample: OutageSample | null = null;
  let failure: unknown = null;
  try {
    sample = await killAndMeasure(cluster, scope, deadlineMs, log, (node) => {
      killed = node;
    });
  } catch (error) {
    failure = error;
  }
  // The killed node is started again whether or not the measurement succeeded.
  const restart = killed as string | null;
  let rejoinMs: number | null = null;
  let rejoinError: string | null = null;
  if (restart !== null && !benchAbort.signal.aborted) {
    const t = now();
    try {
      await abortable(cluster.restartNode(restart));
      await abortable(cluster.waitHealthy(REJOIN_TIMEOUT_MS));
      rejoinMs = round(now() - t, 1);
      log(`  ${restart} rejoined; cluster healthy again after ${Math.round(rejoinMs)} ms`);
    } catch (error) {
      rejoinError = `after the failover, ${restart} did not rejoin: ${messageOf(error)}`;
    }
  }
  if (failure !== null || sample === null) {
    const message = messageOf(failure ?? 'no sample');
    throw new Error(rejoinError === null ? message : `${message}; ${rejoinError}`);
  }
  return { ...sample, rejoinMs, rejoinError };
}

export interface CrashSample extends OutageSample {
  sameLeader: boolean;
  /** Why the cluster did not become healthy again afterwards (the recovery time above is still valid); null when it did. */
  rejoinError: string | null;
}

/** Only the leader's postmaster SIGKILLed; the HA agent stays and handles it (restart or failover). */
export async function measurePostgresCrash(cluster: BenchCluster, log: Log, deadlineMs = 120_000): Promise<CrashSample> {
  let sample: OutageSample | null = null;
  let failure: unknown = null;
  try {
    sample = await killAndMeasure(cluster, 'postgres', deadlineMs, log, () => undefined);
  } catch (error) {
    failure = error;
  }
  let rejoinError: string | null = null;
  try {
    await abortable(cluster.waitHealthy(REJOIN_TIMEOUT_MS));
  } catch (error) {
    rejoinError = `after the postgres crash the cluster did not become healthy: ${messageOf(error)}`;
  }
  if (failure !== null || sample === null) {
    const message = messageOf(failure ?? 'no sample');
    throw new Error(rejoinError === null ? message : `${message}; ${rejoinError}`);
  }
  return { ...sample, sameLeader: sample.newLeader === sample.oldLeader, rejoinError };
}

export interface SwitchoverSample {
  /** Longest gap between the end times of consecutive successful attempts in [start - 1 s, 5th commit on the new leader]. */
  unavailableMs: number;
  failedAttempts: number;
  switchoverCommandMs: number;
  oldLeader: string;
  newLeader: string;
  commitsInWindow: number;
  probeTicksSkipped: number;
}

export async function measureSwitchover(cluster: BenchCluster, log: Log, deadlineMs = 120_000): Promise<SwitchoverSample> {
  const before = await abortable(cluster.waitHealthy(HEALTHY_TIMEOUT_MS));
  const oldLeader = leaderOf(before);
  const probe = new WriteProbe(cluster);
  await probe.start();
  let sample: SwitchoverSample;
  try {
    await probe.waitForCommits(5, 30_000);
    const startMs = now();
    await abortable(cluster.switchover());
    const commandMs = now() - startMs;
    const newLeader = await waitFor(
      `a primary other than ${oldLeader.name}`,
      async () => (await cluster.nodes()).find((n) => n.role === 'primary' && n.name !== oldLeader.name) ?? null,
      deadlineMs,
      100,
    );
    const onNew = (): Attempt[] => probe.attempts.filter((a) => a.ok && a.startedMs >= startMs && a.serverPort === newLeader.pgPort);
    await waitFor(() => `5 commits on ${newLeader.name} (have ${onNew().length})`, () => (onNew().length >= 5 ? true : null), deadlineMs);
    const windowStart = startMs - 1_000;
    const windowEnd = (onNew()[4] as Attempt).endedMs;
    const inWindow = probe.attempts.filter((a) => a.endedMs >= windowStart && a.endedMs <= windowEnd);
    const ends = inWindow
      .filter((a) => a.ok)
      .map((a) => a.endedMs)
      .sort((a, b) => a - b);
    let gap = 0;
    for (let i = 1; i < ends.length; i += 1) gap = Math.max(gap, (ends[i] as number) - (ends[i - 1] as number));
    sample = {
      unavailableMs: round(gap, 1),
      failedAttempts: inWindow.filter((a) => !a.ok).length,
      switchoverCommandMs: round(commandMs, 1),
      oldLeader: oldLeader.name,
      newLeader: newLeader.name,
      commitsInWindow: ends.length,
      probeTicksSkipped: probe.skipped,
    };
    log(`  ${oldLeader.name} -> ${newLeader.name}: longest write gap ${Math.round(gap)} ms, ${sample.failedAttempts} failed attempts, command ${Math.round(commandMs)} ms`);
  } finally {
    await probe.stop();
  }
  await abortable(cluster.waitHealthy(REJOIN_TIMEOUT_MS));
  return sample;
}

// ---------------------------------------------------------------------------------------------
// pgbench

const initialized = new WeakSet<BenchCluster>();

function leaderTarget(cluster: BenchCluster, leader: BenchNode, port = leader.pgPort): PgTarget {
  return { host: '127.0.0.1', port, user: cluster.user, password: cluster.password, database: cluster.database, caFile: cluster.caFile };
}

/** `pgbench -i -s 10` on the leader, once per cluster. */
async function ensurePgbenchTables(cluster: BenchCluster, leader: BenchNode, log: Log): Promise<void> {
  if (initialized.has(cluster)) return;
  log('  pgbench -i -s 10');
  await pgbenchInit(leaderTarget(cluster, leader), 10);
  initialized.add(cluster);
}

export interface PgbenchTargetResult {
  port: number;
  samples: number[];
  /** Median of the successful runs; null when none succeeded. */
  medianTps: number | null;
  failedRuns: string[];
}

export interface PgbenchResult {
  seconds: number;
  rounds: number;
  clients: number;
  scale: number;
  targets: Record<string, PgbenchTargetResult>;
}

/** pgbench -S direct / through the leader's proxy port / through an external HAProxy, alternating rounds. */
export async function measurePgbench(cluster: PgpilotBenchCluster, options: { seconds: number; rounds: number; clients?: number }, log: Log): Promise<PgbenchResult> {
  const clients = options.clients ?? 8;
  const nodes = await abortable(cluster.waitHealthy(HEALTHY_TIMEOUT_MS));
  const leader = leaderOf(nodes);
  await ensurePgbenchTables(cluster, leader, log);
  const leaderIndex = nodes.findIndex((n) => n.name === leader.name);
  const proxyPort = cluster.writeEndpoints()[leaderIndex]?.port;
  if (proxyPort === undefined) throw new Error(`no proxy port for ${leader.name}`);
  const haproxy = await cluster.startExternalHaproxy();
  try {
    const targets: Array<{ label: string; port: number }> = [
      { label: 'direct', port: leader.pgPort },
      { label: 'proxy', port: proxyPort },
      { label: 'haproxy', port: haproxy.port },
    ];
    const results: Record<string, PgbenchTargetResult> = {};
    for (const t of targets) results[t.label] = { port: t.port, samples: [], medianTps: null, failedRuns: [] };
    for (let r = 0; r < options.rounds; r += 1) {
      for (const t of targets) {
        const entry = results[t.label] as PgbenchTargetResult;
        try {
          const tps = tpsOf(await pgbenchRun(leaderTarget(cluster, leader, t.port), { seconds: options.seconds, clients, jobs: 2, selectOnly: true }));
          entry.samples.push(round(tps, 1));
          log(`  pgbench -S round ${r + 1}/${options.rounds} ${t.label}: ${Math.round(tps)} tps`);
        } catch (error) {
          entry.failedRuns.push(messageOf(error));
          log(`  pgbench -S round ${r + 1}/${options.rounds} ${t.label}: FAILED (${messageOf(error)})`);
        }
      }
    }
    for (const entry of Object.values(results)) entry.medianTps = entry.samples.length === 0 ? null : round(median(entry.samples), 1);
    return { seconds: options.seconds, rounds: options.rounds, clients, scale: 10, targets: results };
  } finally {
    await haproxy.stop().catch(() => undefined);
  }
}

// ---------------------------------------------------------------------------------------------
// Idle footprint

export interface FootprintProcess {
  node: string;
  label: string;
  pid: number;
  /** VmRSS at the end of the window (KiB); null when the process exited during it. */
  rssKiB: number | null;
  rssMaxKiB: number | null;
  cpuPercent: number | null;
}

export interface FootprintResult {
  seconds: number;
  nodes: number;
  processes: FootprintProcess[];
  /** Per label: process count, summed RSS (MiB, at the end) and CPU % (of one core). */
  byLabel: Record<string, { count: number; rssMiB: number; cpuPercent: number }>;
  /** Every HA process of a node together, averaged over the nodes. */
  perNode: { rssMiB: number; cpuPercent: number };
}

function cpuTicks(pid: number): number | null {
  const stat = readStat(pid);
  return stat === null ? null : stat.utime + stat.stime;
}

export async function measureIdleFootprint(cluster: BenchCluster, seconds: number, log: Log): Promise<FootprintResult> {
  const nodes = await abortable(cluster.waitHealthy(HEALTHY_TIMEOUT_MS));
  const pids = await cluster.footprintPids();
  if (pids.length === 0) throw new Error('no footprint processes found');
  const hz = clockTicksPerSecond();
  const startTicks = new Map(pids.map((p) => [p.pid, cpuTicks(p.pid)]));
  const maxRss = new Map<number, number>();
  const sample = (): void => {
    for (const p of pids) {
      const rss = rssKiB(p.pid);
      if (rss !== null) maxRss.set(p.pid, Math.max(maxRss.get(p.pid) ?? 0, rss));
    }
  };
  const t0 = now();
  sample();
  for (let i = 1; i <= seconds; i += 1) {
    const wait = t0 + i * 1_000 - now();
    if (wait > 0) await sleep(wait);
    throwIfAborted();
    sample();
  }
  const wallS = (now() - t0) / 1_000;
  const processes = pids.map((p): FootprintProcess => {
    const start = startTicks.get(p.pid) ?? null;
    const end = cpuTicks(p.pid);
    const alive = isAlive(p.pid) && start !== null && end !== null;
    return {
      ...p,
      rssKiB: alive ? rssKiB(p.pid) : null,
      rssMaxKiB: alive ? (maxRss.get(p.pid) ?? null) : null,
      cpuPercent: alive ? round(((end - start) / hz / wallS) * 100, 2) : null,
    };
  });
  const gone = processes.filter((p) => p.rssKiB === null);
  if (gone.length > 0) throw new Error(`footprint processes exited during the window: ${gone.map((p) => `${p.node}/${p.label} ${p.pid}`).join(', ')}`);
  const byLabel: FootprintResult['byLabel'] = {};
  for (const p of processes) {
    const entry = byLabel[p.label] ?? { count: 0, rssMiB: 0, cpuPercent: 0 };
    entry.count += 1;
    entry.rssMiB = round(entry.rssMiB + (p.rssKiB ?? 0) / 1024, 1);
    entry.cpuPercent = round(entry.cpuPercent + (p.cpuPercent ?? 0), 2);
    byLabel[p.label] = entry;
  }
  const nodeCount = nodes.length;
  const perNode = {
    rssMiB: round(processes.reduce((s, p) => s + (p.rssKiB ?? 0), 0) / 1024 / nodeCount, 1),
    cpuPercent: round(processes.reduce((s, p) => s + (p.cpuPercent ?? 0), 0) / nodeCount, 2),
  };
  log(`  idle ${seconds} s: ${processes.length} processes, per node ${perNode.rssMiB} MiB RSS, ${perNode.cpuPercent} % CPU`);
  return { seconds, nodes: nodeCount, processes, byLabel, perNode };
}

// ---------------------------------------------------------------------------------------------
// Saturation

/**
 * One 'the agent event loop stalled' line. An agent reports the longest event-loop delay of the
 * last ~10 s, so a line logged less than 10 s after the run started may be about time before it.
 */
export interface StallLine {
  node: string;
  at: string;
  maxMs: number | null;
  p99Ms: number | null;
  partlyBeforeRun: boolean;
}

export interface SaturationResult {
  seconds: number;
  clients: number;
  /** null when pgbench did not finish cleanly (see pgbenchError). */
  tps: number | null;
  pgbenchError: string | null;
  leader: string;
  /** null when the roles could not be polled even once (pgbench ended within the first second). */
  leaderChanges: number | null;
  pollsWithoutPrimary: number | null;
  polls: number;
  failedPolls: number;
  leadersSeen: string[];
  /** 'the agent event loop stalled' lines the agents logged during the run (pgpilot only). */
  eventLoopStalls: StallLine[] | null;
}

const STALL_MESSAGE = 'the agent event loop stalled';

/** The agents report event-loop stalls once per this period (src/agent/compose.ts). */
const STALL_REPORT_PERIOD_MS = 10_000;

async function readStalls(files: Array<{ node: string; file: string }>, sinceEpochMs: number, untilEpochMs: number): Promise<StallLine[]> {
  const lines: StallLine[] = [];
  for (const { node, file } of files) {
    const text = await readFile(file, 'utf8').catch(() => '');
    for (const line of text.split('\n')) {
      if (!line.includes(STALL_MESSAGE)) continue;
      try {
        const entry = JSON.parse(line) as { time?: number | string; maxMs?: number; p99Ms?: number };
        const at = typeof entry.time === 'number' ? entry.time : Date.parse(String(entry.time));
        if (!(at >= sinceEpochMs && at <= untilEpochMs)) continue;
        lines.push({ node, at: new Date(at).toISOString(), maxMs: entry.maxMs ?? null, p99Ms: entry.p99Ms ?? null, partlyBeforeRun: at < sinceEpochMs + STALL_REPORT_PERIOD_MS });
      } catch {
        // not a JSON log line
      }
    }
  }
  return lines;
}

/**
 * pgbench TPC-B (writes) with 16 clients straight at the leader's postgres for `seconds`, while
 * the roles are polled every second: does the HA layer keep its leader on a saturated machine?
 */
export async function measureSaturation(
  cluster: BenchCluster,
  seconds: number,
  log: Log,
  options: { agentLogFiles?: () => Promise<Array<{ node: string; file: string }>> } = {},
): Promise<SaturationResult> {
  const clients = 16;
  const nodes = await abortable(cluster.waitHealthy(HEALTHY_TIMEOUT_MS));
  const leader = leaderOf(nodes);
  await ensurePgbenchTables(cluster, leader, log);
  const sinceEpochMs = Date.now();
  log(`  pgbench TPC-B -c ${clients} -j 2 -T ${seconds} on ${leader.name}'s postgres`);
  let finished = false;
  const bench = pgbenchRun(leaderTarget(cluster, leader), { seconds, clients, jobs: 2, selectOnly: false }).finally(() => {
    finished = true;
  });
  let current = leader.name;
  let leaderChanges = 0;
  let pollsWithoutPrimary = 0;
  let polls = 0;
  let failedPolls = 0;
  const leadersSeen = new Set<string>([leader.name]);
  const t0 = now();
  // Bounded: pgbench ends by itself after `seconds` (and is killed at seconds + 120 s).
  for (let i = 1; !finished && i <= seconds + 180; i += 1) {
    const wait = t0 + i * 1_000 - now();
    if (wait > 0) await sleep(wait);
    if (finished || benchAbort.signal.aborted) break;
    polls += 1;
    try {
      const seen = await withTimeout(cluster.nodes(), 5_000, 'reading the roles');
      const primary = seen.find((n) => n.role === 'primary');
      if (primary === undefined) pollsWithoutPrimary += 1;
      else if (primary.name !== current) {
        leaderChanges += 1;
        log(`  leader changed under load: ${current} -> ${primary.name}`);
        current = primary.name;
        leadersSeen.add(primary.name);
      }
    } catch {
      failedPolls += 1;
    }
  }
  const result = await bench;
  let tps: number | null = null;
  let pgbenchError: string | null = null;
  try {
    tps = round(tpsOf(result), 1);
  } catch (error) {
    pgbenchError = messageOf(error);
  }
  let eventLoopStalls: StallLine[] | null = null;
  if (options.agentLogFiles !== undefined) {
    // A stall in the last seconds of the run is reported up to one report period later.
    const endEpochMs = Date.now();
    await sleep(STALL_REPORT_PERIOD_MS + 1_500);
    eventLoopStalls = await readStalls(await options.agentLogFiles(), sinceEpochMs, endEpochMs + STALL_REPORT_PERIOD_MS + 1_500);
  }
  log(
    `  saturation: ${tps === null ? `pgbench failed (${pgbenchError ?? '?'})` : `${Math.round(tps)} tps`}, ${polls - failedPolls > 0 ? `${leaderChanges} leader changes, ${pollsWithoutPrimary}/${polls} polls without primary` : 'roles never polled'}` +
      (eventLoopStalls === null ? '' : `, ${eventLoopStalls.length} event-loop stall lines (max ${max(eventLoopStalls.map((s) => s.maxMs ?? 0)) || 0} ms)`),
  );
  await abortable(cluster.waitHealthy(REJOIN_TIMEOUT_MS));
  const polled = polls - failedPolls > 0;
  return {
    seconds,
    clients,
    tps,
    pgbenchError,
    leader: leader.name,
    leaderChanges: polled ? leaderChanges : null,
    pollsWithoutPrimary: polled ? pollsWithoutPrimary : null,
    polls,
    failedPolls,
    leadersSeen: [...leadersSeen],
    eventLoopStalls,
  };
}
