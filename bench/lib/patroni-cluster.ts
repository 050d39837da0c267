/**
 * The Patroni side of the benchmark: Debian's Patroni 3.0.2 (`apt-get install patroni`) driven
 * through the `BenchCluster` shape of bench/lib/bench-cluster.ts.
 *
 * One run = one private etcd 3.4 (v3 API, loopback, free ports, TLS with client certificates of a
 * CA of the run) + `nodes` Patroni members (patroni-node1..N), each with its own postgres port and
 * REST port on 127.0.0.1, all under a fresh temporary work directory. Patroni runs as the `postgres` OS user through `setpriv ... --pdeathsig
 * KILL`, so a Patroni process dies with the bench process. Postgres itself is double-forked by
 * Patroni (own session, reparented to PID 1), so pdeathsig does not reach it: `destroy()` stops it
 * by the PID in postmaster.pid (only after /proc shows it is postgres on that node's data dir),
 * and a synchronous process 'exit' hook does the same if the bench exits without `destroy()`.
 *
 * Everything observable is read from Patroni's own REST API (3.0.2 shapes):
 *   GET /patroni  -> { state: 'running' | 'starting' | 'stopped' | ..., role: 'master' | 'replica',
 *                      replication?: [{ application_name, state: 'streaming', ... }] (on the primary),
 *                      cluster_unlocked?: true }
 *   GET /config   -> the dynamic configuration stored in the DCS (keys not set are Patroni defaults)
 * A 3.0.2 replica reports only state 'running' (the per-member 'streaming' state came in later
 * Patroni versions), so "streaming" is read from the primary's `replication` list: an entry whose
 * application_name is the member name with state 'streaming'.
 *
 * Only processes started here are ever signalled, by recorded PID, re-checked against
 * /proc/PID/cmdline first.
 */
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { BenchCluster, BenchNode, CreateOptions, Created, Endpoint } from './bench-cluster.js';
import { SystemClock } from '../../src/shared/clock.js';
import { findFreePorts, LOOPBACK_HOST } from '../../src/shared/ports.js';
import { isOwnedProcessAlive, isPidRunning, readCmdline, stopOwnedProcess } from '../../src/shared/pid.js';
import { asPostgresUser, POSTGRES_OS_USER, runCommand } from '../../src/shared/process-runner.js';
import { clientUrl, startEtcd, waitForEtcd } from '../../src/etcd/etcd-server.js';
import { givePostgres } from '../../src/postgres/initdb.js';
import { ensureCa, issueLeaf, LEAF_VALID_DAYS } from '../../src/tls/cluster-pki.js';
import { readTlsMaterial, type TlsMaterial } from '../../src/tls/tls-files.js';
import { httpsRequest, jsonBody } from '../../src/shared/https-client.js';
import { WaitAbortedError, waitUntil } from '../../test/helpers/wait.js';

const PATRONI_BIN = '/usr/bin/patroni';
const PG_BIN_DIR = '/usr/lib/postgresql/15/bin';
const SUPERUSER = 'postgres';
const REPLICATION_USER = 'replicator';
const REST_USER = 'bench';
const DATABASE = 'postgres';

/** Patroni 3.0.2's built-in defaults (patroni/config.py), used for keys GET /config does not list. */
const PATRONI_DEFAULTS = { ttl: 30, loop_wait: 10, retry_timeout: 10, maximum_lag_on_failover: 1_048_576 } as const;
/**
 * As close to pgpilot's timing (lease 6 s, loop 1 s) as Patroni's rule loop_wait + 2 * retry_timeout
 * <= ttl allows. Patroni 3.0.2 neither refuses nor clamps these (no range validation before 3.1):
 * they are applied as given (read back from GET /config and from the etcd lease grant).
 */
const TUNED_DCS = { ttl: 6, loop_wait: 1, retry_timeout: 2 } as const;

const POLL_MS = 100;
const REST_TIMEOUT_MS = 1_000;
const STOP_GRACE_MS = 30_000;

interface PatroniNode {
  name: string;
  dir: string;
  dataDir: string;
  configFile: string;
  logFile: string;
  pgPort: number;
  restPort: number;
  /** The patroni process (setpriv execs it, so the spawned PID is patroni's). */
  patroniPid: number | null;
}

/** GET /patroni, the subset used here (Patroni 3.0.2). */
interface PatroniStatus {
  state?: string;
  role?: string;
  cluster_unlocked?: boolean;
  replication?: Array<{ application_name?: string; state?: string; usename?: string }>;
}

export type PatroniCreateOptions = CreateOptions & { nodes?: number; workDir?: string };

/**
 * The etcd of a Patroni run speaks TLS with client certificates only (pgpilot's etcdArgs has no
 * plain-text mode), with a CA of its own under WORK/tls: etcd's server and peer certificate
 * (127.0.0.1), Patroni's client certificate (its key owned by the postgres OS user, which runs
 * Patroni), and the bench's own client certificate (etcd /health, lease queries). Patroni's
 * postgres itself stays as Patroni sets it up (plain text on loopback).
 */
interface PatroniTlsFiles {
  dir: string;
  caFile: string;
  caKeyFile: string;
  etcd: { certFile: string; keyFile: string };
  patroni: { certFile: string; keyFile: string };
  bench: { certFile: string; keyFile: string };
}

function patroniTlsFiles(workDir: string): PatroniTlsFiles {
  const dir = path.join(workDir, 'tls');
  const pair = (name: string): { certFile: string; keyFile: string } => ({ certFile: path.join(dir, `${name}.crt`), keyFile: path.join(dir, `${name}.key`) });
  return { dir, caFile: path.join(dir, 'ca.crt'), caKeyFile: path.join(dir, 'ca.key'), etcd: pair('etcd'), patroni: pair('patroni'), bench: pair('bench') };
}

async function provisionPatroniTls(files: PatroniTlsFiles): Promise<void> {
  await mkdir(files.dir, { recursive: true });
  await chmod(files.dir, 0o755);
  const ca = await ensureCa({ caFile: files.caFile, caKeyFile: files.caKeyFile }, 'patroni-bench');
  const request = (commonName: string, usage: 'server-and-client' | 'client', ipAddresses: string[]) => ({ commonName, ipAddresses, dnsNames: [], usage, validDays: LEAF_VALID_DAYS });
  await issueLeaf(ca, { ...files.etcd, request: request('etcd', 'server-and-client', [LOOPBACK_HOST]) });
  await issueLeaf(ca, { ...files.patroni, request: request('patroni', 'client', []), chown: givePostgres });
  await issueLeaf(ca, { ...files.bench, request: request('bench', 'client', []) });
}

function benchEtcdTls(files: PatroniTlsFiles): TlsMaterial {
  return readTlsMaterial({ caFile: files.caFile, ...files.bench });
}

// ---------------------------------------------------------------------------------------------
// small helpers

function elapsedMs(since: number): number {
  return Math.round(performance.now() - since);
}

async function restRequest(
  port: number,
  urlPath: string,
  init: { method?: string; body?: unknown; auth?: { user: string; password: string }; timeoutMs?: number } = {},
): Promise<{ status: number; text: string }> {
  const headers: Record<string, string> = {};
  if (init.body !== undefined) headers['content-type'] = 'application/json';
  if (init.auth !== undefined) {
    headers['authorization'] = `Basic ${Buffer.from(`${init.auth.user}:${init.auth.password}`).toString('base64')}`;
  }
  const response = await fetch(`http://${LOOPBACK_HOST}:${port}${urlPath}`, {
    method: init.method ?? 'GET',
    headers,
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
    signal: AbortSignal.timeout(init.timeoutMs ?? REST_TIMEOUT_MS),
  });
  return { status: response.status, text: await response.text() };
}

/** GET a JSON document from a Patroni REST API; null when it does not answer (or not with JSON). */
async function restGetJson<T>(port: number, urlPath: string): Promise<T | null> {
  try {
    const { text } = await restRequest(port, urlPath);
    return JSON.parse(text) as T;
  } catch {
    return null;
  }
}

function tail(file: string, lines = 15): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

function parsePidFileSync(file: string): number | null {
  try {
    const pid = Number(readFileSync(file, 'utf8').split('\n')[0]?.trim());
    return Number.isInteger(pid) && pid > 1 ? pid : null;
  } catch {
    return null;
  }
}

/** True when argv is a postgres postmaster whose -D is `dataDir`. */
function isPostmasterArgv(argv: string[], dataDir: string): boolean {
  const program = argv[0] ?? '';
  if (path.basename(program) !== 'postgres') return false;
  for (let i = 1; i < argv.length; i += 1) {
    const arg = argv[i] ?? '';
    if (arg === '-D' && argv[i + 1] === dataDir) return true;
    if (arg === `-D${dataDir}` || arg === `--pgdata=${dataDir}`) return true;
  }
  return false;
}

function argvOfSync(pid: number): string[] | null {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((part) => part.length > 0);
  } catch {
    return null;
  }
}

/** The live postmaster of `dataDir` (PID from postmaster.pid, proven by /proc/PID/cmdline), else null. */
async function livePostmaster(dataDir: string): Promise<number | null> {
  let pid: number | null = null;
  try {
    pid = Number((await readFile(path.join(dataDir, 'postmaster.pid'), 'utf8')).split('\n')[0]?.trim());
  } catch {
    return null;
  }
  if (!Number.isInteger(pid) || pid <= 1) return null;
  const argv = argvOfSync(pid);
  if (argv === null || !isPostmasterArgv(argv, dataDir)) return null;
  return (await isPidRunning(pid)) ? pid : null;
}

function randomSecret(): string {
  return randomBytes(18).toString('base64url');
}

/** `patroni --version` -> "3.0.2". */
export function patroniVersion(): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(PATRONI_BIN, ['--version'], { timeout: 30_000 }, (error, stdout, stderr) => {
      if (error !== null) {
        reject(new Error(`${PATRONI_BIN} --version failed: ${stderr.trim() || error.message} (apt-get install -y patroni)`));
        return;
      }
      const match = /(\d+\.\d+\.\d+)/.exec(`${stdout} ${stderr}`);
      if (match?.[1] === undefined) reject(new Error(`no version in: ${stdout.trim()}`));
      else resolve(match[1]);
    });
  });
}

// ---------------------------------------------------------------------------------------------
// configuration

interface Secrets {
  superuser: string;
  replication: string;
  rest: string;
}

function patroniConfig(node: PatroniNode, scope: string, etcdPort: number, tls: PatroniTlsFiles, profile: 'default' | 'tuned', secrets: Secrets): unknown {
  const rewindAndSlots = {
    use_pg_rewind: true,
    use_slots: true,
    remove_data_directory_on_rewind_failure: true,
  };
  return {
    scope,
    namespace: '/pgpilot-bench/',
    name: node.name,
    log: { level: 'INFO' },
    restapi: {
      listen: `${LOOPBACK_HOST}:${node.restPort}`,
      connect_address: `${LOOPBACK_HOST}:${node.restPort}`,
      // Unsafe methods (POST/PUT/PATCH/DELETE) need Basic auth; GETs stay open.
      authentication: { username: REST_USER, password: secrets.rest },
    },
    // etcd 3.4 serves only the v3 API (v2 is off by default): Patroni's etcd3 module.
    // TLS with a client certificate (etcd runs with --client-cert-auth).
    etcd3: { hosts: `${LOOPBACK_HOST}:${etcdPort}`, protocol: 'https', cacert: tls.caFile, cert: tls.patroni.certFile, key: tls.patroni.keyFile },
    bootstrap: {
      dcs: {
        ...(profile === 'tuned' ? TUNED_DCS : {}),
        postgresql: {
          ...rewindAndSlots,
          parameters: { password_encryption: 'scram-sha-256' },
        },
      },
      initdb: [{ auth: 'scram-sha-256' }, 'data-checksums', { encoding: 'UTF8' }, { locale: 'C.UTF-8' }],
    },
    postgresql: {
      listen: `${LOOPBACK_HOST}:${node.pgPort}`,
      connect_address: `${LOOPBACK_HOST}:${node.pgPort}`,
      data_dir: node.dataDir,
      bin_dir: PG_BIN_DIR,
      pgpass: path.join(node.dir, 'pgpass'),
      ...rewindAndSlots,
      authentication: {
        superuser: { username: SUPERUSER, password: secrets.superuser },
        replication: { username: REPLICATION_USER, password: secrets.replication },
      },
      parameters: {
        password_encryption: 'scram-sha-256',
        // Sockets in the node's own directory, never the system's /var/run/postgresql.
        unix_socket_directories: path.join(node.dir, 'run'),
        logging_collector: 'on',
        log_directory: path.join(node.dir, 'pglog'),
        log_filename: 'postgresql.log',
      },
      pg_hba: [
        `local all ${SUPERUSER} scram-sha-256`,
        `host all all ${LOOPBACK_HOST}/32 scram-sha-256`,
        `host replication ${REPLICATION_USER} ${LOOPBACK_HOST}/32 scram-sha-256`,
      ],
    },
    // No /dev/watchdog for an unprivileged bench; pgpilot does not use one either.
    watchdog: { mode: 'off' },
    tags: { nofailover: false, noloadbalance: false, clonefrom: false, nosync: false },
  };
}

// ---------------------------------------------------------------------------------------------
// the cluster

class PatroniBenchCluster implements BenchCluster {
  readonly system = 'patroni' as const;
  readonly user = SUPERUSER;
  readonly database = DATABASE;
  /** Patroni's postgres is plain text (as Patroni sets it up); only its etcd speaks TLS. */
  readonly caFile = null;
  settings: Record<string, unknown> = {};

  private etcdPid: number | null = null;
  private destroyed: Promise<void> | null = null;
  private readonly exitHook = (): void => this.killEverythingSync();

  constructor(
    readonly profile: 'default' | 'tuned',
    readonly password: string,
    private readonly restPassword: string,
    readonly workDir: string,
    readonly etcdDataDir: string,
    readonly etcdPort: number,
    private readonly tls: PatroniTlsFiles,
    private readonly members: PatroniNode[],
    private readonly log: (line: string) => void,
  ) {
    process.on('exit', this.exitHook);
  }

  setEtcdPid(pid: number): void {
    this.etcdPid = pid;
  }

  writeEndpoints(): Endpoint[] {
    return this.members.map((node) => ({ host: LOOPBACK_HOST, port: node.pgPort }));
  }

  private node(name: string): PatroniNode {
    const node = this.members.find((candidate) => candidate.name === name);
    if (node === undefined) throw new Error(`no Patroni node named ${name}`);
    return node;
  }

  private async patroniAlive(node: PatroniNode): Promise<boolean> {
    return node.patroniPid !== null && (await isOwnedProcessAlive({ pid: node.patroniPid, marker: node.configFile }));
  }

  /** Spawns the node's patroni as the postgres OS user; resolves with its PID once it has exec'd. */
  async spawnPatroni(node: PatroniNode): Promise<number> {
    const { command, args } = asPostgresUser(PATRONI_BIN, [node.configFile]);
    const logFd = openSync(node.logFile, 'a');
    let pid: number;
    try {
      const child = spawn(command, args, {
        cwd: node.dir,
        stdio: ['ignore', logFd, logFd],
        env: {
          PATH: process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin',
          HOME: node.dir,
          LANG: 'C.UTF-8',
          LC_ALL: 'C.UTF-8',
          PYTHONDONTWRITEBYTECODE: '1',
        },
      });
      pid = await new Promise<number>((resolve, reject) => {
        child.once('error', reject);
        child.once('spawn', () => (child.pid === undefined ? reject(new Error('patroni started without a PID')) : resolve(child.pid)));
      });
      // pdeathsig ties it to us; do not keep the event loop alive for it.
      child.unref();
    } finally {
      closeSync(logFd);
    }
    node.patroniPid = pid;
    // setpriv execs patroni in place: the same PID must soon show patroni with this config.
    await waitUntil(`${node.name}: pid ${pid} to exec patroni`, async () => {
      const cmdline = await readCmdline(pid);
      if (cmdline === null) throw new WaitAbortedError(`${node.name}: patroni (pid ${pid}) exited at once:\n${tail(node.logFile)}`);
      return cmdline.includes(PATRONI_BIN) && cmdline.includes(node.configFile) && !cmdline.startsWith('setpriv');
    }, 10_000, 20);
    return pid;
  }

  async nodes(): Promise<BenchNode[]> {
    const statuses = await Promise.all(this.members.map((node) => restGetJson<PatroniStatus>(node.restPort, '/patroni')));
    const roles = statuses.map((status): BenchNode['role'] => {
      if (status === null || status.state !== 'running') return 'down';
      if ((status.role === 'master' || status.role === 'primary') && status.cluster_unlocked !== true) return 'primary';
      if (status.role === 'replica') return 'replica';
      return 'down';
    });
    const primaryIndexes = roles.flatMap((role, index) => (role === 'primary' ? [index] : []));
    const primaryStatus = primaryIndexes.length === 1 ? statuses[primaryIndexes[0] ?? -1] : null;
    const streamingNames = new Set(
      (primaryStatus?.replication ?? []).filter((entry) => entry.state === 'streaming').map((entry) => entry.application_name),
    );
    return Promise.all(
      this.members.map(async (node, index): Promise<BenchNode> => {
        const role = roles[index] ?? 'down';
        return {
          name: node.name,
          pgPort: node.pgPort,
          role,
          streaming: role === 'replica' && streamingNames.has(node.name),
          agentPid: (await this.patroniAlive(node)) ? node.patroniPid : null,
          postmasterPid: await livePostmaster(node.dataDir),
        };
      }),
    );
  }

  private static isHealthy(view: BenchNode[]): boolean {
    const primaries = view.filter((node) => node.role === 'primary');
    return primaries.length === 1 && view.every((node) => node.role === 'primary' || (node.role === 'replica' && node.streaming));
  }

  private describe(view: BenchNode[]): string {
    return view.map((node) => `${node.name}=${node.role}${node.streaming ? '(streaming)' : ''}`).join(' ');
  }

  async waitHealthy(timeoutMs: number, failIfAgentDies = false): Promise<BenchNode[]> {
    let last: BenchNode[] = [];
    try {
      return await waitUntil('one primary with every replica streaming', async () => {
        if (failIfAgentDies) {
          for (const node of this.members) {
            if (!(await this.patroniAlive(node))) {
              throw new WaitAbortedError(`${node.name}: patroni (pid ${node.patroniPid}) exited; log tail:\n${tail(node.logFile)}`);
            }
          }
        }
        last = await this.nodes();
        return PatroniBenchCluster.isHealthy(last) ? last : null;
      }, timeoutMs, POLL_MS);
    } catch (error) {
      if (error instanceof WaitAbortedError) throw error;
      throw new Error(`${(error as Error).message}; last view: ${this.describe(last)}`);
    }
  }

  /** Reads back the timing settings in force: GET /config (DCS), Patroni defaults for unset keys, etcd lease grants. */
  async readSettings(): Promise<Record<string, unknown>> {
    const config = await waitUntil('GET /config', async () => {
      for (const node of this.members) {
        const body = await restGetJson<Record<string, unknown>>(node.restPort, '/config');
        if (body !== null) return body;
      }
      return null;
    }, 10_000, POLL_MS);
    const settings: Record<string, unknown> = {};
    const fromDefaults: string[] = [];
    for (const key of Object.keys(PATRONI_DEFAULTS) as Array<keyof typeof PATRONI_DEFAULTS>) {
      if (typeof config[key] === 'number') settings[key] = config[key];
      else {
        settings[key] = PATRONI_DEFAULTS[key];
        fromDefaults.push(key);
      }
    }
    settings['source'] = fromDefaults.length === 0 ? 'GET /config' : `GET /config; Patroni built-in defaults for ${fromDefaults.join(', ')} (not set in the DCS)`;
    // The TTL Patroni really asks etcd for: each member's lease.
    const grants = await this.leaseGrantedTtls().catch(() => []);
    if (grants.length > 0) settings['etcd_lease_granted_ttl'] = [...new Set(grants)].length === 1 ? grants[0] : grants;
    return settings;
  }

  private async leaseGrantedTtls(): Promise<number[]> {
    const base = clientUrl(LOOPBACK_HOST, this.etcdPort);
    const tls = benchEtcdTls(this.tls);
    const post = async (url: string, body: unknown): Promise<unknown> => {
      const response = await httpsRequest(`${base}${url}`, { method: 'POST', body: JSON.stringify(body), timeoutMs: 2_000, tls });
      if (!response.ok) throw new Error(`etcd ${url}: HTTP ${response.status}`);
      return jsonBody(response);
    };
    const list = (await post('/v3/lease/leases', {})) as { leases?: Array<{ ID?: string }> };
    const ttls: number[] = [];
    for (const lease of list.leases ?? []) {
      if (lease.ID === undefined) continue;
      // Only leases that still hold keys: a member's first lease (granted with the default 30 s
      // before it read the DCS config) lingers unused until it expires.
      const info = (await post('/v3/lease/timetolive', { ID: lease.ID, keys: true })) as { grantedTTL?: string | number; keys?: unknown[] };
      if (info.grantedTTL !== undefined && (info.keys ?? []).length > 0) ttls.push(Number(info.grantedTTL));
    }
    return ttls;
  }

  private switchoverTimeoutMs(): number {
    const ttl = typeof this.settings['ttl'] === 'number' ? this.settings['ttl'] : PATRONI_DEFAULTS.ttl;
    const loopWait = typeof this.settings['loop_wait'] === 'number' ? this.settings['loop_wait'] : PATRONI_DEFAULTS.loop_wait;
    return Math.max(60_000, (3 * ttl + 3 * loopWait) * 1_000);
  }

  async switchover(): Promise<void> {
    const view = await this.nodes();
    const leader = view.find((node) => node.role === 'primary');
    const candidate = view.find((node) => node.role === 'replica' && node.streaming);
    if (leader === undefined || candidate === undefined) {
      throw new Error(`switchover needs a primary and a streaming replica; view: ${this.describe(view)}`);
    }
    const leaderNode = this.node(leader.name);
    this.log(`patroni: switchover ${leader.name} -> ${candidate.name}`);
    // Patroni answers the POST only after its own 1 s-granular poll of the DCS; we resolve as soon
    // as the REST API shows the new primary, and fail early if the POST reports a failure.
    let postOutcome: { status: number; text: string } | Error | null = null;
    const post = restRequest(leaderNode.restPort, '/switchover', {
      method: 'POST',
      body: { leader: leader.name, candidate: candidate.name },
      auth: { user: REST_USER, password: this.restPassword },
      timeoutMs: this.switchoverTimeoutMs(),
    }).then(
      (result) => {
        postOutcome = result;
      },
      (error: unknown) => {
        postOutcome = error instanceof Error ? error : new Error(String(error));
      },
    );
    let last: BenchNode[] = [];
    try {
      await waitUntil(`a primary other than ${leader.name}`, async () => {
        const outcome = postOutcome;
        if (outcome instanceof Error) throw new WaitAbortedError(`POST /switchover failed: ${outcome.message}`);
        if (outcome !== null && outcome.status !== 200) {
          throw new WaitAbortedError(`POST /switchover answered ${outcome.status}: ${outcome.text.trim()}`);
        }
        last = await this.nodes();
        const primaries = last.filter((node) => node.role === 'primary');
        return primaries.length === 1 && primaries[0]?.name !== leader.name;
      }, this.switchoverTimeoutMs(), POLL_MS);
    } catch (error) {
      await post;
      if (error instanceof WaitAbortedError) throw error;
      throw new Error(`${(error as Error).message}; last view: ${this.describe(last)}`);
    }
    // Let the POST finish in the background; its outcome no longer matters once the REST API shows it.
    void post;
  }

  async restartNode(name: string): Promise<void> {
    const node = this.node(name);
    if (await this.patroniAlive(node)) throw new Error(`${name}: patroni (pid ${node.patroniPid}) is still running`);
    this.log(`patroni: restarting ${name}`);
    const pid = await this.spawnPatroni(node);
    // Up = its REST API answers (rejoining as a replica, with pg_rewind when needed, follows).
    await waitUntil(`${name}: patroni REST API on port ${node.restPort}`, async () => {
      if (!(await isOwnedProcessAlive({ pid, marker: node.configFile }))) {
        throw new WaitAbortedError(`${name}: patroni (pid ${pid}) exited; log tail:\n${tail(node.logFile)}`);
      }
      return (await restGetJson<PatroniStatus>(node.restPort, '/patroni')) !== null;
    }, 60_000, POLL_MS);
  }

  async footprintPids(): Promise<Array<{ node: string; label: string; pid: number }>> {
    const result: Array<{ node: string; label: string; pid: number }> = [];
    for (const node of this.members) {
      if (node.patroniPid !== null && (await this.patroniAlive(node))) result.push({ node: node.name, label: 'patroni', pid: node.patroniPid });
    }
    return result;
  }

  destroy(): Promise<void> {
    this.destroyed ??= this.doDestroy();
    return this.destroyed;
  }

  private async doDestroy(): Promise<void> {
    const clock = new SystemClock();
    this.log('patroni: destroying the cluster');
    // Patroni stops its postgres on SIGTERM; all members at once.
    await Promise.all(
      this.members.map(async (node) => {
        if (node.patroniPid === null) return;
        const how = await stopOwnedProcess({ pid: node.patroniPid, marker: node.configFile }, clock, { graceMs: STOP_GRACE_MS });
        if (how === 'killed') this.log(`patroni: ${node.name} patroni (pid ${node.patroniPid}) needed SIGKILL`);
      }),
    );
    // Postmasters left over (patroni killed, or it did not stop postgres): only a proven one.
    await Promise.all(
      this.members.map(async (node) => {
        const pid = await livePostmaster(node.dataDir);
        if (pid === null) return;
        this.log(`patroni: stopping leftover postmaster ${pid} of ${node.name}`);
        await stopOwnedProcess({ pid, marker: node.dataDir }, clock, { signal: 'SIGQUIT', graceMs: 10_000 });
      }),
    );
    if (this.etcdPid !== null) {
      await stopOwnedProcess({ pid: this.etcdPid, marker: this.etcdDataDir }, clock, { graceMs: 10_000 });
    }
    process.off('exit', this.exitHook);
    if (process.env['PGPILOT_BENCH_KEEP'] === '1') this.log(`patroni: keeping ${this.workDir} (PGPILOT_BENCH_KEEP=1)`);
    else await rm(this.workDir, { recursive: true, force: true });
  }

  /** Last resort on process exit without destroy(): synchronous SIGKILL of what is provably ours. */
  private killEverythingSync(): void {
    const kill = (pid: number): void => {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    };
    for (const node of this.members) {
      if (node.patroniPid !== null && (argvOfSync(node.patroniPid) ?? []).includes(node.configFile)) kill(node.patroniPid);
      const postmaster = parsePidFileSync(path.join(node.dataDir, 'postmaster.pid'));
      if (postmaster !== null && isPostmasterArgv(argvOfSync(postmaster) ?? [], node.dataDir)) kill(postmaster);
    }
    if (this.etcdPid !== null && (argvOfSync(this.etcdPid) ?? []).includes(this.etcdDataDir)) kill(this.etcdPid);
  }
}

// ---------------------------------------------------------------------------------------------

export async function createPatroniCluster(options: PatroniCreateOptions): Promise<Created> {
  const count = options.nodes ?? 3;
  if (!Number.isInteger(count) || count < 1 || count > 9) throw new Error(`nodes must be 1..9, got ${count}`);
  if (!existsSync(PATRONI_BIN)) throw new Error(`${PATRONI_BIN} is missing: apt-get install -y patroni`);
  if (!existsSync(path.join(PG_BIN_DIR, 'postgres'))) throw new Error(`${PG_BIN_DIR}/postgres is missing`);

  const workDir = options.workDir ?? (await mkdtemp(path.join(os.tmpdir(), 'pgpilot-bench-patroni-')));
  await mkdir(workDir, { recursive: true });
  // The postgres user must traverse into its node directories; nothing else in here is for it.
  await chmod(workDir, 0o711);

  const ports = await findFreePorts(2 + 2 * count);
  const [etcdClientPort, etcdPeerPort] = [ports[0] ?? 0, ports[1] ?? 0];
  const scope = `bench-${randomBytes(4).toString('hex')}`;
  const secrets: Secrets = { superuser: randomSecret(), replication: randomSecret(), rest: randomSecret() };
  const members: PatroniNode[] = Array.from({ length: count }, (_, index) => {
    const name = `patroni-node${index + 1}`;
    const dir = path.join(workDir, name);
    return {
      name,
      dir,
      dataDir: path.join(dir, 'data'),
      configFile: path.join(dir, 'patroni.yml'),
      logFile: path.join(dir, 'patroni.log'),
      pgPort: ports[2 + 2 * index] ?? 0,
      restPort: ports[3 + 2 * index] ?? 0,
      patroniPid: null,
    };
  });
  const etcdDataDir = path.join(workDir, 'etcd');
  const tls = patroniTlsFiles(workDir);
  const cluster = new PatroniBenchCluster(
    options.profile,
    secrets.superuser,
    secrets.rest,
    workDir,
    etcdDataDir,
    etcdClientPort,
    tls,
    members,
    options.log,
  );

  try {
    options.log(`patroni: work dir ${workDir}, scope ${scope}, profile ${options.profile}`);
    await provisionPatroniTls(tls);
    const etcdLog = path.join(workDir, 'etcd.log');
    const etcd = await startEtcd({
      name: 'bench-etcd',
      dataDir: etcdDataDir,
      clientPort: etcdClientPort,
      peerPort: etcdPeerPort,
      logFile: etcdLog,
      detached: false,
      tls: { caFile: tls.caFile, ...tls.etcd },
    });
    cluster.setEtcdPid(etcd.pid);
    await waitForEtcd(clientUrl(LOOPBACK_HOST, etcdClientPort), benchEtcdTls(tls), new SystemClock(), 30_000, { pid: etcd.pid, logFile: etcdLog });
    options.log(`patroni: etcd (pid ${etcd.pid}) serves on ${LOOPBACK_HOST}:${etcdClientPort}`);

    for (const node of members) {
      await mkdir(node.dataDir, { recursive: true, mode: 0o700 });
      await mkdir(path.join(node.dir, 'run'), { recursive: true, mode: 0o700 });
      await mkdir(path.join(node.dir, 'pglog'), { recursive: true, mode: 0o700 });
      await writeFile(node.configFile, `${JSON.stringify(patroniConfig(node, scope, etcdClientPort, tls, options.profile, secrets), null, 2)}\n`, {
        mode: 0o600,
      });
      await writeFile(node.logFile, '', { mode: 0o600 });
      await runCommand('chown', ['-R', `${POSTGRES_OS_USER}:${POSTGRES_OS_USER}`, node.dir]);
      await chmod(node.dir, 0o700);
      await chmod(node.dataDir, 0o700);
      await chmod(node.configFile, 0o600);
    }

    options.log(`patroni: bootstrapping ${count} node${count === 1 ? '' : 's'}...`);
    const started = performance.now();
    for (const node of members) {
      const pid = await cluster.spawnPatroni(node);
      options.log(`patroni: ${node.name} patroni pid ${pid}, postgres ${LOOPBACK_HOST}:${node.pgPort}, REST ${LOOPBACK_HOST}:${node.restPort}`);
    }
    const bootstrapTimeoutMs = options.profile === 'tuned' ? 120_000 : 240_000;
    const view = await cluster.waitHealthy(bootstrapTimeoutMs, true);
    const bootstrapMs = elapsedMs(started);
    options.log(`patroni: healthy after ${bootstrapMs} ms: ${view.map((node) => `${node.name}=${node.role}`).join(' ')}`);

    cluster.settings = await cluster.readSettings();
    options.log(`patroni: settings in force ${JSON.stringify(cluster.settings)}`);
    return { cluster, bootstrapMs };
  } catch (error) {
    options.log(`patroni: create failed, cleaning up (${(error as Error).message.split('\n')[0]})`);
    await cluster.destroy().catch((cleanupError: unknown) => options.log(`patroni: cleanup failed: ${String(cleanupError)}`));
    throw error;
  }
}
