/**
 * The one module that knows the `etcd` binary (etcd-server 3.4): the argv of a member (alone, as
 * the local provider runs it, or one of a multi-host cluster's 3 or 5 members), starting it with its
 * output appended to a log file, and waiting until it answers `/health`. Invariants: etcd only ever
 * listens on the address and ports it is given (client and peer; no metrics or pprof listener of its
 * own; a member of a multi-host cluster also serves clients on loopback); both ports speak
 * TLS only and require a client certificate signed by the cluster CA (`--client-cert-auth`,
 * `--peer-client-cert-auth`), so nobody without one can read or write cluster state; a detached etcd
 * is unref'd so it outlives the CLI, and an attached one (tests) gets a parent-death signal so it
 * cannot outlive the process that started it. Stopping is done elsewhere, by recorded PID.
 */
import { spawn } from 'node:child_process';
import { constants as fsConstants, openSync, closeSync } from 'node:fs';
import { access } from 'node:fs/promises';
import path from 'node:path';
import type { Clock } from '../shared/clock.js';
import { PgpilotError, errorMessage } from '../shared/errors.js';
import { LOOPBACK_HOST, isPortFree, urlHost } from '../shared/ports.js';
import { atControlPlanePriority, boostSessionOf } from '../shared/priority.js';
import { httpsRequest, jsonBody, type HttpsTls } from '../shared/https-client.js';
import type { TlsFiles } from '../config/schema.js';

export interface EtcdArgsOptions {
  name: string;
  dataDir: string;
  clientPort: number;
  peerPort: number;
  host?: string;
  /** The member's server (and peer) certificate, and the CA every client certificate must chain to. */
  tls: TlsFiles;
  /**
   * A member of a multi-member cluster: `name=https://addr:peer,...` of every initial member
   * (default: this member alone), whether the cluster is new or this member joins an existing one,
   * and the cluster's token (default `pgpilot-<name>`).
   */
  initialCluster?: string;
  initialClusterState?: 'new' | 'existing';
  initialClusterToken?: string;
  /** Also serve clients on 127.0.0.1 (the agent on the same host may use it); default false. */
  listenOnLoopback?: boolean;
}

/** The member's arguments, and how to run it. */
export interface StartEtcdOptions extends EtcdArgsOptions {
  /** stdout and stderr are appended here. */
  logFile: string;
  /** true: own session, unref'd, survives the caller. false: dies with the caller (tests). */
  detached: boolean;
}

export interface WaitForEtcdOptions {
  /** Named in the hint of the TIMEOUT error. */
  logFile?: string;
  /** When given, waiting stops early if this process is gone. */
  pid?: number;
  pollMs?: number;
}

/** The CA and a client certificate to ask etcd's `/health` with (etcd requires one). */
export type EtcdClientTls = Required<HttpsTls>;

const DEFAULT_ETCD_PATH = '/usr/bin/etcd';
const SETPRIV_PATH = '/usr/bin/setpriv';
const ETCD_INSTALL_HINT = 'run scripts/setup.sh to install etcd-server';

/** `https://host:port`, with brackets around an IPv6 address (every etcd URL of pgpilot is TLS). */
export function clientUrl(host: string, port: number): string {
  return `https://${urlHost(host)}:${port}`;
}

/** The argv (without the binary) of a one-member etcd listening only on the given ports of `host`. */
export function etcdArgs(options: EtcdArgsOptions): string[] {
  const host = options.host ?? LOOPBACK_HOST;
  for (const [label, port] of [
    ['clientPort', options.clientPort],
    ['peerPort', options.peerPort],
  ] as const) {
    if (!Number.isInteger(port) || port < 1 || port > 65_535) {
      throw new PgpilotError('INPUT_INVALID', `etcd ${label} must be a TCP port, got ${port}`);
    }
  }
  if (options.clientPort === options.peerPort) {
    throw new PgpilotError('INPUT_INVALID', `etcd client and peer ports must differ (both ${options.clientPort})`);
  }
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(options.name)) {
    throw new PgpilotError('INPUT_INVALID', `etcd member name ${JSON.stringify(options.name)} is not a simple name`);
  }
  const client = clientUrl(host, options.clientPort);
  const peer = clientUrl(host, options.peerPort);
  const loopback = clientUrl(LOOPBACK_HOST, options.clientPort);
  const listenClient = options.listenOnLoopback === true && host !== LOOPBACK_HOST ? `${client},${loopback}` : client;
  const initialCluster = options.initialCluster ?? `${options.name}=${peer}`;
  if (!initialCluster.split(',').some((entry) => entry === `${options.name}=${peer}`)) {
    throw new PgpilotError('INPUT_INVALID', `the initial etcd cluster ${initialCluster} does not name this member (${options.name}=${peer})`);
  }
  return [
    '--name',
    options.name,
    '--data-dir',
    options.dataDir,
    '--listen-client-urls',
    listenClient,
    '--advertise-client-urls',
    client,
    '--listen-peer-urls',
    peer,
    '--initial-advertise-peer-urls',
    peer,
    '--initial-cluster',
    initialCluster,
    '--initial-cluster-state',
    options.initialClusterState ?? 'new',
    '--initial-cluster-token',
    options.initialClusterToken ?? `pgpilot-${options.name}`,
    // Keep the history bounded; watches only need recent revisions.
    '--auto-compaction-mode',
    'periodic',
    '--auto-compaction-retention',
    '1h',
    // Pre-vote (etcd 3.4's default is off): a member cut off by a partition keeps starting
    // elections and raising its term; without pre-vote it deposes the healthy leader the moment it
    // can talk again, leaving the cluster without a leader (every request stalls) for an election.
    '--pre-vote',
    // Agents ping every 2 s to find a member that died silently (src/dcs/etcd-dcs.ts
    // KEEPALIVE_TIME_MS); etcd's default minimum of 5 s would answer such pings with GOAWAY.
    '--grpc-keepalive-min-time',
    '1s',
    // TLS on both ports, and only clients (and peers) with a certificate of the cluster CA.
    '--cert-file',
    options.tls.certFile,
    '--key-file',
    options.tls.keyFile,
    '--trusted-ca-file',
    options.tls.caFile,
    '--client-cert-auth',
    '--peer-cert-file',
    options.tls.certFile,
    '--peer-key-file',
    options.tls.keyFile,
    '--peer-trusted-ca-file',
    options.tls.caFile,
    '--peer-client-cert-auth',
    '--logger',
    'zap',
    '--log-outputs',
    'stderr',
  ];
}

async function isExecutable(file: string): Promise<boolean> {
  try {
    await access(file, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** /usr/bin/etcd, else `etcd` found on PATH; null when neither exists. */
export async function findEtcdBinary(): Promise<string | null> {
  if (await isExecutable(DEFAULT_ETCD_PATH)) return DEFAULT_ETCD_PATH;
  for (const dir of (process.env['PATH'] ?? '').split(path.delimiter)) {
    if (dir.length === 0) continue;
    const candidate = path.join(dir, 'etcd');
    if (await isExecutable(candidate)) return candidate;
  }
  return null;
}

/**
 * Spawns etcd with its output appended to `logFile`; resolves once the process exists (use
 * `waitForEtcd` to know it serves). Throws BINARY_MISSING without etcd, PORT_BUSY when a port is taken.
 */
export async function startEtcd(options: StartEtcdOptions): Promise<{ pid: number }> {
  const binary = await findEtcdBinary();
  if (binary === null) {
    throw new PgpilotError('BINARY_MISSING', 'etcd was not found', { hint: ETCD_INSTALL_HINT });
  }
  const args = etcdArgs(options);
  const host = options.host ?? LOOPBACK_HOST;
  for (const port of [options.clientPort, options.peerPort]) {
    if (!(await isPortFree(port, host))) {
      throw new PgpilotError('PORT_BUSY', `port ${port} on ${host} is already in use; etcd cannot listen on it`, {
        hint: 'stop whatever listens there, or recreate the cluster so that new free ports are chosen',
      });
    }
  }
  // Attached (test) etcd: setpriv execs etcd in place (same PID) with a parent-death SIGTERM, so
  // a crashed or killed caller cannot leave it running.
  const useDeathSignal = !options.detached && (await isExecutable(SETPRIV_PATH));
  // etcd is control plane: it starts at raised CPU priority when we are root (src/shared/priority.ts).
  const prioritized = useDeathSignal
    ? atControlPlanePriority(SETPRIV_PATH, ['--pdeathsig', 'TERM', '--', binary, ...args])
    : atControlPlanePriority(binary, args);
  const command = prioritized.command;
  const argv = prioritized.args;

  const logFd = openSync(options.logFile, 'a');
  try {
    const child = spawn(command, argv, {
      stdio: ['ignore', logFd, logFd],
      detached: options.detached,
      env: process.env,
    });
    const pid = await new Promise<number>((resolve, reject) => {
      child.once('error', (error: NodeJS.ErrnoException) => {
        reject(
          error.code === 'ENOENT'
            ? new PgpilotError('BINARY_MISSING', 'etcd was not found', { hint: ETCD_INSTALL_HINT })
            : new PgpilotError('COMMAND_FAILED', `could not start etcd: ${errorMessage(error)}`, {
                hint: `see ${options.logFile}`,
                cause: error,
              }),
        );
      });
      child.once('spawn', () => {
        if (child.pid === undefined) reject(new PgpilotError('COMMAND_FAILED', 'etcd started without a PID'));
        else resolve(child.pid);
      });
    });
    if (options.detached) {
      child.unref();
      // Its own session: give that session the control plane's weight too.
      boostSessionOf(pid);
    }
    return { pid };
  } finally {
    // The child holds its own copy of the descriptor.
    closeSync(logFd);
  }
}

function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function isHealthy(endpoint: string, tls: EtcdClientTls, requestTimeoutMs: number): Promise<boolean> {
  try {
    const response = await httpsRequest(`${endpoint.replace(/\/+$/, '')}/health`, { timeoutMs: requestTimeoutMs, tls });
    if (!response.ok) return false;
    const body = jsonBody(response) as { health?: unknown } | null;
    return body?.health === 'true' || body?.health === true;
  } catch {
    return false;
  }
}

/**
 * Polls `endpoint/health` until etcd reports healthy. Throws TIMEOUT (hint: the log file) when
 * `timeoutMs` passes first, or COMMAND_FAILED as soon as the given `pid` has exited.
 */
export async function waitForEtcd(
  endpoint: string,
  tls: EtcdClientTls,
  clock: Clock,
  timeoutMs: number,
  options: WaitForEtcdOptions = {},
): Promise<void> {
  const pollMs = options.pollMs ?? 100;
  const deadlineMs = clock.nowMs() + timeoutMs;
  const hint = options.logFile === undefined ? 'see the etcd log' : `see ${options.logFile}`;
  for (;;) {
    const remainingMs = deadlineMs - clock.nowMs();
    if (await isHealthy(endpoint, tls, Math.max(100, Math.min(1_000, remainingMs)))) return;
    if (options.pid !== undefined && !processExists(options.pid)) {
      throw new PgpilotError('COMMAND_FAILED', `etcd (pid ${options.pid}) exited before it became healthy`, { hint });
    }
    if (clock.nowMs() >= deadlineMs) {
      throw new PgpilotError('TIMEOUT', `etcd at ${endpoint} was not healthy within ${timeoutMs} ms`, {
        hint,
        retryable: true,
      });
    }
    await clock.sleep(Math.min(pollMs, Math.max(0, deadlineMs - clock.nowMs())));
  }
}
