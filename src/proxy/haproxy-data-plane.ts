/**
 * HAProxy as the agent's data plane: the node's leader and replica ports are served by an HAProxy
 * process the agent starts (it dies with the agent) and drives through HAProxy's runtime API on a
 * unix socket. Bytes of established sessions never pass through the agent's event loop, so a busy
 * database cannot stall the HA loop through the proxy, and steady-state throughput is HAProxy's
 * (docs/routing.md has the measurements behind this choice).
 *
 * Layout of the generated configuration (pure, `renderDataPlaneConfig`):
 * - one `listen` section per port, with `slotCount` server slots `s1..sN` that start in
 *   maintenance at a placeholder address; the agent assigns a slot to a member (stable by name)
 *   with `set server ... addr` and turns it on or off with `set server ... state ready|maint`;
 * - a `backup` server `hold` pointing at the agent's built-in TCP router (src/proxy/tcp-router.ts)
 *   on a private loopback port. HAProxy uses it only while no slot is usable, i.e. while the agent
 *   routes nowhere (switchover or failover under way, no leader yet) or while the health check
 *   has just seen the routed postgres die. The router holds such connections and pipes them to the
 *   new leader once there is one, so clients see a pause instead of an error.
 *
 * Invariants:
 * - A slot is `ready` only for a member the agent's routing rules (src/proxy/routes.ts) name at
 *   that moment; every other slot is in `maint`. The desired state is recomputed from the agent's
 *   etcd view on every loop tick and on every watch event, and only differences are sent.
 * - After HAProxy (re)starts, nothing is assumed applied: the full desired state is sent again.
 * - Each usable slot is also health-checked by HAProxy itself (`option pgsql-check`: a startup
 *   packet, success on postgres's authentication request, which postgres closes without logging),
 *   every second, so a postgres that dies is left within about a second even before etcd shows it.
 *   A failed check never cuts established sessions (no `on-marked-down`).
 * - No HAProxy code runs as root (src/proxy/haproxy-process.ts): as root, HAProxy runs as the
 *   `haproxy` OS user. Its config file is written by the agent and handed to that user's group
 *   read-only (root:haproxy 0640, in the root-owned node directory, so HAProxy cannot change what
 *   the agent starts it with); its runtime socket is created by HAProxy in a directory only that
 *   user may write (`haproxy/` in the node directory, haproxy-owned 0700), and the agent, root,
 *   connects to it regardless of the socket's 0600 mode.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { chmod, chown, lstat, mkdir, rm, rmdir, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import type { Clock } from '../shared/clock.js';
import { errorMessage } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import { isOwnedProcessAlive, stopOwnedProcess } from '../shared/pid.js';
import { isRoot } from '../shared/process-runner.js';
import { bindPortsOf, checkHaproxyConfig, findHaproxyBinary, haproxyCommand, haproxyEnv, haproxyOsIds, HAPROXY_OS_USER } from './haproxy-process.js';

/** Server slots per port: more than the largest cluster the CLI creates (9 nodes) plus scaling room. */
export const DATA_PLANE_SLOTS = 16;
/** The user named in the health check's startup packet (it never authenticates). */
export const HEALTH_CHECK_USER = 'pgpilot_healthcheck';
/** Unix socket paths are limited to 107 bytes on Linux. */
const MAX_SOCKET_PATH = 100;
const RUNTIME_TIMEOUT_MS = 2_000;
const READY_TIMEOUT_MS = 10_000;

export type PortName = 'leader' | 'replica';

export interface DataPlaneLayout {
  listenHost: string;
  leaderPort: number;
  replicaPort: number;
  /** Ports of the agent's own hold routers (loopback). */
  leaderHoldPort: number;
  replicaHoldPort: number;
  socketPath: string;
  slotCount: number;
}

export interface ServerTarget {
  name: string;
  host: string;
  port: number;
}

/** For each port, the members that may take new connections now (empty: hold). */
export interface DesiredRoutes {
  leader: ServerTarget[];
  replica: ServerTarget[];
}

interface SlotState {
  host: string;
  port: number;
  ready: boolean;
}

export function sectionName(port: PortName): string {
  return `pgpilot_${port}`;
}

/** The HAProxy configuration of one agent's data plane (see the module comment). */
export function renderDataPlaneConfig(layout: DataPlaneLayout): string {
  const section = (port: PortName, bindPort: number, holdPort: number, balance: string): string[] => {
    const lines = [
      `listen ${sectionName(port)}`,
      `    bind ${layout.listenHost}:${bindPort}`,
      `    balance ${balance}`,
      `    option pgsql-check user ${HEALTH_CHECK_USER}`,
      '    default-server inter 1s fastinter 250ms downinter 1s rise 1 fall 1',
    ];
    for (let i = 1; i <= layout.slotCount; i += 1) lines.push(`    server s${i} 127.0.0.1:1 disabled check`);
    lines.push(`    server hold 127.0.0.1:${holdPort} backup`);
    return lines;
  };
  return [
    '# Generated by the pgpilot agent; driven through the runtime API socket below. Do not edit.',
    'global',
    '    maxconn 4096',
    `    stats socket ${layout.socketPath} mode 600 level admin`,
    '    stats timeout 10s',
    '',
    'defaults',
    '    mode tcp',
    '    timeout connect 2s',
    // Database sessions may idle for a long time; postgres and clients enforce their own limits.
    '    timeout client 24h',
    '    timeout server 24h',
    '    timeout check 2s',
    // A refused connection (the routed postgres just died) is retried after HAProxy's 1 s turn-around,
    // re-balanced each time (redispatch 1): by then the health check has marked the server down and
    // the retry lands on the hold router instead of failing the client.
    '    retries 3',
    '    option redispatch 1',
    '',
    ...section('leader', layout.leaderPort, layout.leaderHoldPort, 'first'),
    '',
    ...section('replica', layout.replicaPort, layout.replicaHoldPort, 'roundrobin'),
    '',
  ].join('\n');
}

/** Stable member → slot assignment: a member keeps its slot while it exists; slots are reused after. */
export class SlotMap {
  private readonly byName = new Map<string, number>();

  constructor(private readonly slotCount: number) {}

  slotOf(name: string): number | null {
    const existing = this.byName.get(name);
    if (existing !== undefined) return existing;
    const used = new Set(this.byName.values());
    for (let i = 1; i <= this.slotCount; i += 1) {
      if (!used.has(i)) {
        this.byName.set(name, i);
        return i;
      }
    }
    return null;
  }

  /** Frees the slots of members no longer known. */
  retain(names: ReadonlySet<string>): void {
    for (const name of [...this.byName.keys()]) if (!names.has(name)) this.byName.delete(name);
  }

  entries(): Array<[string, number]> {
    return [...this.byName.entries()];
  }
}

/**
 * Runtime API commands that move HAProxy from `applied` to `desired` for one port. `known` are
 * all members with their addresses (a slot keeps its member's address while in maintenance).
 * Order matters: new targets are made ready before old ones go to maintenance, so that a route
 * change never leaves a moment with no usable server (which would send connections to the hold
 * router needlessly).
 */
export function planPortCommands(
  port: PortName,
  slots: SlotMap,
  known: readonly ServerTarget[],
  desired: readonly ServerTarget[],
  applied: Map<number, SlotState>,
): string[] {
  const backend = sectionName(port);
  const readyNames = new Set(desired.map((t) => t.name));
  const enable: string[] = [];
  const disable: string[] = [];
  for (const target of known) {
    const slot = slots.slotOf(target.name);
    if (slot === null) continue;
    const want: SlotState = { host: target.host, port: target.port, ready: readyNames.has(target.name) };
    const have = applied.get(slot);
    const server = `${backend}/s${slot}`;
    const commands: string[] = [];
    if (have === undefined || have.host !== want.host || have.port !== want.port) {
      commands.push(`set server ${server} addr ${want.host} port ${want.port}`);
    }
    if (have?.ready !== want.ready || commands.length > 0) {
      // `health up` right away: the agent already knows this postgres runs; the check keeps
      // watching it from here on.
      if (want.ready) commands.push(`set server ${server} state ready`, `set server ${server} health up`);
      else commands.push(`set server ${server} state maint`);
    }
    applied.set(slot, want);
    (want.ready ? enable : disable).push(...commands);
  }
  // Slots whose member disappeared go to maintenance.
  const knownSlots = new Set(known.map((t) => slots.slotOf(t.name)));
  for (const [slot, state] of applied) {
    if (knownSlots.has(slot)) continue;
    if (state.ready) disable.push(`set server ${backend}/s${slot} state maint`);
    applied.delete(slot);
  }
  return [...enable, ...disable];
}

/** Sends commands (joined with `;`) to HAProxy's runtime API and returns its answer. */
export function sendRuntimeCommands(socketPath: string, commands: readonly string[], timeoutMs = RUNTIME_TIMEOUT_MS): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ path: socketPath });
    let answer = '';
    const timer = setTimeout(() => socket.destroy(new Error(`no answer from the HAProxy runtime API within ${timeoutMs} ms`)), timeoutMs);
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.end(`${commands.join(';')}\n`));
    socket.on('data', (chunk: string) => (answer += chunk));
    socket.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(answer);
    });
  });
}

/**
 * Lines of a runtime API answer that report a failure. Successful `set server ... state|health`
 * commands answer nothing; `set server ... addr` answers what it changed ("IP changed from ...",
 * "no need to change the addr, port changed from ...").
 */
export function runtimeErrors(answer: string): string[] {
  return answer
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.length > 0 && !/changed from|no need to change/.test(l));
}

export interface DataPlaneStats {
  /** Sessions open through HAProxy (both ports, excluding the hold server's). */
  open: number;
  /** Sessions accepted since HAProxy started (both ports). */
  total: number;
}

/** Parses `show stat` CSV: frontend-level current and total sessions of our two sections. */
export function parseShowStat(csv: string): DataPlaneStats {
  const lines = csv.split('\n');
  const header = (lines[0] ?? '').replace(/^# /, '').split(',');
  const col = (name: string): number => header.indexOf(name);
  const [pxname, svname, scur, stot] = [col('pxname'), col('svname'), col('scur'), col('stot')];
  let open = 0;
  let total = 0;
  for (const line of lines.slice(1)) {
    const fields = line.split(',');
    if (!(fields[pxname] ?? '').startsWith('pgpilot_') || fields[svname] !== 'FRONTEND') continue;
    open += Number(fields[scur] ?? 0) || 0;
    total += Number(fields[stot] ?? 0) || 0;
  }
  return { open, total };
}

export interface HaproxyDataPlaneOptions {
  layout: DataPlaneLayout;
  configFile: string;
  logFile: string;
  clock: Clock;
  log: Logger;
  binary?: string;
}

/**
 * The running data plane: starts HAProxy (restarting it when it exits while we run) and applies
 * desired routes. `apply` is serialised: a newer call waits for the running one and then sends the
 * latest state, so no stale state can be applied after a newer one.
 */
export class HaproxyDataPlane {
  private pid: number | null = null;
  private exited = true;
  private stopping = false;
  private readonly slots: SlotMap;
  private applied = new Map<PortName, Map<number, SlotState>>();
  private latest: { known: ServerTarget[]; desired: DesiredRoutes } | null = null;
  private applying: Promise<void> | null = null;
  private again = false;
  private lastStartAttemptMs = -Infinity;
  private stats: DataPlaneStats = { open: 0, total: 0 };

  constructor(readonly options: HaproxyDataPlaneOptions) {
    this.slots = new SlotMap(options.layout.slotCount);
  }

  /** Throws BINARY_MISSING when haproxy is not installed. */
  static findBinary(): string {
    return findHaproxyBinary();
  }

  processId(): number | null {
    return this.exited ? null : this.pid;
  }

  snapshot(): DataPlaneStats {
    return { ...this.stats };
  }

  async start(): Promise<void> {
    const { layout } = this.options;
    if (Buffer.byteLength(layout.socketPath) > MAX_SOCKET_PATH) {
      throw new Error(`the HAProxy socket path is too long for a unix socket: ${layout.socketPath}`);
    }
    await prepareSocketDir(path.dirname(layout.socketPath));
    await writeFile(this.options.configFile, renderDataPlaneConfig(layout), { mode: 0o600 });
    if (isRoot()) {
      // Readable by HAProxy (group haproxy), writable by root only.
      await chown(this.options.configFile, 0, (await haproxyOsIds()).gid);
      await chmod(this.options.configFile, 0o640);
    } else {
      await chmod(this.options.configFile, 0o600);
    }
    const check = await checkHaproxyConfig(this.options.configFile, this.options.binary === undefined ? {} : { binary: this.options.binary });
    if (check.kind === 'error') throw new Error(`haproxy rejects the generated data plane config: ${check.errorText}`);
    await this.spawnHaproxy();
  }

  /** Records the routes wanted now and sends the differences (also restarts a dead HAProxy). */
  apply(known: ServerTarget[], desired: DesiredRoutes): Promise<void> {
    this.latest = { known, desired };
    if (this.applying !== null) {
      this.again = true;
      return this.applying;
    }
    this.applying = (async () => {
      try {
        do {
          this.again = false;
          await this.applyLatest();
        } while (this.again && !this.stopping);
      } finally {
        this.applying = null;
      }
    })();
    return this.applying;
  }

  /** Refreshes the session counters (best effort, once per loop tick). */
  async refreshStats(): Promise<void> {
    if (this.exited) return;
    try {
      this.stats = parseShowStat(await sendRuntimeCommands(this.options.layout.socketPath, ['show stat']));
    } catch {
      // counters are informational; a missed refresh keeps the previous values
    }
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.applying?.catch(() => undefined);
    if (this.pid !== null && !this.exited) {
      await stopOwnedProcess({ pid: this.pid, marker: this.options.configFile }, this.options.clock, { signal: 'SIGTERM', graceMs: 3_000, pollMs: 25 });
      // Gone from /proc; the child's exit event may still be on its way.
      this.exited = true;
    }
    await rm(this.options.layout.socketPath, { force: true }).catch(() => undefined);
    // Its directory too when empty (in the temp dir it would otherwise accumulate); made again on start.
    await rmdir(path.dirname(this.options.layout.socketPath)).catch(() => undefined);
  }

  private async applyLatest(): Promise<void> {
    if (this.stopping || this.latest === null) return;
    if (this.exited) {
      // Restart at most every 2 s; a port taken by someone else must not spin.
      if (this.options.clock.nowMs() - this.lastStartAttemptMs < 2_000) return;
      this.options.log.warn('haproxy (data plane) is not running; starting it again');
      try {
        await this.spawnHaproxy();
      } catch (error) {
        this.options.log.error({ err: errorMessage(error) }, 'could not start haproxy (data plane)');
        return;
      }
    }
    const { known, desired } = this.latest;
    this.slots.retain(new Set(known.map((k) => k.name)));
    const commands: string[] = [];
    for (const port of ['leader', 'replica'] as const) {
      let applied = this.applied.get(port);
      if (applied === undefined) this.applied.set(port, (applied = new Map<number, SlotState>()));
      commands.push(...planPortCommands(port, this.slots, known, desired[port], applied));
    }
    if (commands.length === 0) return;
    try {
      const answer = await sendRuntimeCommands(this.options.layout.socketPath, commands);
      const errors = runtimeErrors(answer);
      if (errors.length > 0) {
        this.options.log.error({ errors, commands }, 'haproxy refused runtime commands; will resend the full state');
        this.applied.clear();
      } else {
        this.options.log.info({ leader: desired.leader.map((t) => t.name), replica: desired.replica.map((t) => t.name) }, 'data plane routes applied');
      }
    } catch (error) {
      this.options.log.warn({ err: errorMessage(error) }, 'could not reach the haproxy runtime API; will resend the full state');
      this.applied.clear();
    }
  }

  private async spawnHaproxy(): Promise<void> {
    const { clock, configFile, logFile, layout } = this.options;
    this.lastStartAttemptMs = clock.nowMs();
    const binary = this.options.binary ?? findHaproxyBinary();
    await rm(layout.socketPath, { force: true });
    const logFd = openSync(logFile, 'a', 0o600);
    const state: { exited: boolean } = { exited: false };
    try {
      // Data plane: the haproxy OS user when we are root, normal CPU priority, a session of its own
      // (src/shared/priority.ts), the scrubbed environment; still killed with the agent by the
      // parent-death signal.
      const wrapped = haproxyCommand(binary, ['-f', configFile, '-db']);
      const child = spawn(wrapped.command, wrapped.args, { stdio: ['ignore', logFd, logFd], detached: true, cwd: '/', env: haproxyEnv() });
      child.once('exit', (code, signal) => {
        state.exited = true;
        this.exited = true;
        if (!this.stopping) this.options.log.error({ code, signal }, 'haproxy (data plane) exited');
      });
      this.pid = await new Promise<number>((resolve, reject) => {
        child.once('error', reject);
        child.once('spawn', () => resolve(child.pid ?? -1));
      });
      this.exited = false;
    } finally {
      closeSync(logFd);
    }
    // Ready once the runtime socket answers and both ports listen (bind happens before the socket).
    const deadlineMs = clock.nowMs() + READY_TIMEOUT_MS;
    for (;;) {
      if (state.exited) throw new Error(`haproxy exited right after starting; see ${logFile}`);
      const answer = await sendRuntimeCommands(layout.socketPath, ['show info'], 500).catch(() => '');
      if (answer.includes('Pid:')) break;
      if (clock.nowMs() >= deadlineMs) {
        if (this.pid !== null) await stopOwnedProcess({ pid: this.pid, marker: configFile }, clock, { graceMs: 1_000 }).catch(() => undefined);
        throw new Error(`haproxy did not open its runtime socket within ${READY_TIMEOUT_MS} ms; see ${logFile}`);
      }
      await clock.sleep(25);
    }
    this.applied.clear();
    this.options.log.info({ pid: this.pid, ports: bindPortsOf(renderDataPlaneConfig(layout)) }, 'haproxy (data plane) started');
  }

  /** For tests: is the recorded HAProxy still alive? */
  async isAlive(): Promise<boolean> {
    return this.pid !== null && !this.exited && (await isOwnedProcessAlive({ pid: this.pid, marker: this.options.configFile }));
  }
}

/**
 * Default socket path: `haproxy/haproxy.sock` in the node directory, or, when that path is too long
 * for a unix socket, `pgpilot-<tag>/haproxy.sock` in the temp dir. Either directory is made by
 * `prepareSocketDir` when the data plane starts.
 */
export function dataPlaneSocketPath(nodeDir: string, tmpDir: string, uniqueTag: string): string {
  const preferred = path.join(nodeDir, 'haproxy', 'haproxy.sock');
  return Buffer.byteLength(preferred) <= MAX_SOCKET_PATH ? preferred : path.join(tmpDir, `pgpilot-${uniqueTag}`, 'haproxy.sock');
}

/**
 * The directory HAProxy creates its runtime socket in: a real directory (not a symlink), mode
 * 0700, owned by the user HAProxy runs as (the haproxy OS user when we are root, else ourselves).
 * One that already exists must be owned by us or by that user (in a shared temp dir someone else
 * could have made it first, to read or replace the socket): otherwise this refuses.
 */
export async function prepareSocketDir(dir: string): Promise<void> {
  await mkdir(dir, { mode: 0o700 }).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'EEXIST') throw error;
  });
  const info = await lstat(dir);
  const ownUid = typeof process.getuid === 'function' ? process.getuid() : -1;
  const owner = isRoot() ? await haproxyOsIds() : null;
  if (!info.isDirectory() || info.isSymbolicLink() || (info.uid !== ownUid && info.uid !== owner?.uid)) {
    throw new Error(`${dir} is not a directory of ours or of the ${HAPROXY_OS_USER} user (uid ${info.uid}); refusing to put the HAProxy runtime socket there`);
  }
  if (owner !== null) await chown(dir, owner.uid, owner.gid);
  await chmod(dir, 0o700);
}
