/**
 * An in-memory `PostgresNode` (src/ha/postgres-node.ts) for scenario simulations. A shared
 * `FakePostgresWorld` holds every node's "data directory" (system identifier, timeline and its
 * history of switch points, WAL position as a bigint, running/stopped, in recovery, upstream,
 * how it was last shut down) and the "network" (upstreams are resolved by host:port, as libpq
 * would). Each agent gets a `FakePostgresNode` handle over its node's data; a restarted agent
 * gets a new handle over the same data, as a new process over the same data directory.
 *
 * Observable behaviour kept faithful to LocalPostgresNode / PostgreSQL 15:
 * - `observe` reports no-data / stopped (pg_controldata: cluster state, clean primary shutdown =
 *   "shut down", timeline, checkpoint LSN) / starting (until `startupMs` of clock time passed
 *   since `start`; `sinceMs` is when this handle's first probe failed, reset by `start` and by a
 *   successful probe) / running (replica: replayed LSN, receive LSN, WAL receiver status).
 * - A running standby streams only from a running upstream of the same system whose history
 *   contains its position: same timeline and not ahead, or a later timeline that forked at or
 *   after its position (recovery_target_timeline = latest). When it can stream, each `observe`
 *   catches it up to the upstream's position and timeline; otherwise its WAL receiver is down.
 *   After a `follow` to another upstream it streams only once `walReceiverConnectMs` has passed.
 * - Only a running primary accepts writes (`FakePostgresWorld#write`), which advance its LSN.
 * - Synchronous replication: `synchronousStandbyNames` (ALTER SYSTEM: kept across restarts as
 *   primary, cleared by a start as standby, as LocalPostgresNode does); `commit` sends WAL to the
 *   streaming standbys and is acknowledged only when `ANY k` of the named ones have it;
 *   `pauseReceiver` cuts a standby's WAL receiver; `positionOf` is a peer's `GET /wal-position`.
 * - `promote` starts a new timeline (own + 1) recording the switch point; `start('primary')` on a
 *   standby's data ends recovery without a timeline switch (no standby.signal).
 * - `stop('fast')` of a primary writes a shutdown checkpoint (reported as the stopped node's LSN)
 *   and streams it to its standbys before exiting ("shut down"; a standby: "shut down in
 *   recovery"); `stop('immediate')` leaves "in production" / "in archive recovery" and the last
 *   checkpoint as it was. `wasPrimary` follows LocalPostgresNode's classification of the state.
 * - `rejoin` is pg_rewind: not needed / rewound to the fork point / impossible (the data
 *   directory is moved aside, never deleted), then a start as the upstream's standby.
 *   Stopping a stopped postgres is a no-op. `crash` simulates an unexpected exit and notifies the
 *   `onUnexpectedExit` listeners of the attached handle.
 * - `failStarts` injects start failures (the postmaster exits during start-up).
 * - `initialize` runs initdb (counted), starts as primary and waits until ready; `cloneFrom`
 *   refuses an existing data directory or an unreachable upstream, copies the upstream's data,
 *   and starts as its standby. Both may take `initializeMs` / `cloneMs` of clock time.
 * Every call is recorded in `world.events` with the clock time, for assertions.
 */
import type { ReplicationEntry } from '../../src/state/member-record.js';
import type { LocalPostgres } from '../../src/state/agent-snapshot.js';
import type { PostgresNode, SynchronousState, UpstreamAddress } from '../../src/ha/postgres-node.js';
import type { Clock } from '../../src/shared/clock.js';
import { PgpilotError } from '../../src/shared/errors.js';
import { formatLsn } from '../../src/shared/lsn.js';
import { parseStandbyNames } from '../../src/ha/sync-set.js';

export type ControlState = 'shut down' | 'shut down in recovery' | 'in production' | 'in archive recovery';

export interface TimelineSwitch {
  /** The timeline that began here. */
  timeline: number;
  /** Its parent timeline ended at this position. */
  switchLsn: bigint;
}

/** One node's data directory and postmaster state. */
export interface FakeNodeData {
  systemIdentifier: string;
  timeline: number;
  history: TimelineSwitch[];
  /** End of WAL: primary: write position; standby: replayed position. */
  lsn: bigint;
  /** pg_controldata "Latest checkpoint location" (what a stopped node reports). */
  checkpointLsn: bigint;
  receiveLsn: bigint | null;
  running: boolean;
  readyAtMs: number;
  pid: number | null;
  inRecovery: boolean;
  upstream: UpstreamAddress | null;
  /** pg_controldata "Database cluster state" (meaningful while stopped). */
  controlState: ControlState;
  /** A standby's WAL receiver cannot connect before this time (after a `follow`, see `walReceiverConnectMs`). */
  receiverReadyAtMs: number;
  slots: Set<string>;
  /** synchronous_standby_names as ALTER SYSTEM left it (postgresql.auto.conf survives restarts; cleared by a start as standby). */
  synchronousStandbyNames?: string;
  /** The WAL receiver is cut off from its upstream (`pauseReceiver`): it neither streams nor confirms. */
  receiverPaused?: boolean;
}

export type FakeEventKind =
  | 'initdb'
  | 'clone'
  | 'start'
  | 'stop'
  | 'promote'
  | 'follow'
  | 'crash'
  | 'write'
  | 'checkpoint'
  | 'drain'
  | 'rewind'
  | 'moved-aside'
  | 'sync-standbys'
  | 'commit';

/** A commit a client saw acknowledged (`FakePostgresWorld#commit`). */
export interface AcknowledgedCommit {
  node: string;
  timeline: number;
  lsn: string;
}

export interface FakeEvent {
  atMs: number;
  node: string;
  kind: FakeEventKind;
  detail: string;
}

export interface FakePostgresWorldOptions {
  /** Clock time between `start` and the postmaster accepting connections. */
  startupMs?: number;
  /** Clock time initdb takes. */
  initializeMs?: number;
  /** Clock time pg_basebackup takes. */
  cloneMs?: number;
  /**
   * Clock time a standby's WAL receiver needs after `follow` points it at a new upstream before it
   * streams (walreceiver restart, then up to wal_retrieve_retry_interval, 5 s by default). Default 0.
   */
  walReceiverConnectMs?: number;
}

const INITIAL_LSN = 0x1000000n;
/** Size of a shutdown checkpoint record: a fast stop of a primary ends its WAL just after it. */
export const SHUTDOWN_CHECKPOINT_BYTES = 0x28n;
/** pg_controldata states of a data directory that was a primary (as LocalPostgresNode classifies them). */
const PRIMARY_STATES: ReadonlySet<ControlState> = new Set<ControlState>(['shut down', 'in production']);

/** pg_stat_replication.sync_state of standby `name` under the primary's synchronous_standby_names. */
function syncStateOf(primary: FakeNodeData, name: string): string {
  const config = parseStandbyNames(primary.synchronousStandbyNames ?? '');
  return config !== null && config.names.includes(name) ? 'quorum' : 'async';
}

/** Runs `fn` now; its result or exception becomes the promise's outcome (like an async call). */
function settle<T>(fn: () => T): Promise<T> {
  return new Promise<T>((resolve) => resolve(fn()));
}

export class FakePostgresWorld {
  readonly events: FakeEvent[] = [];
  /** Every commit a client saw acknowledged, in order (`commit`). */
  readonly acknowledged: AcknowledgedCommit[] = [];
  private readonly data = new Map<string, FakeNodeData>();
  private readonly addresses = new Map<string, string>();
  private readonly handles = new Map<string, FakePostgresNode>();
  /** Data directories moved aside by a failed rewind (never deleted), by path. */
  readonly asideData = new Map<string, FakeNodeData>();
  /** WAL a node no longer has (removed below this LSN, as checkpoints recycle segments), by node. */
  readonly walRemovedBefore = new Map<string, bigint>();
  private nextPid = 30_000;
  private readonly failingStarts = new Map<string, number>();
  private nextSystemId = 7_400_000_000_000_000_001n;

  constructor(
    readonly clock: Clock,
    readonly options: FakePostgresWorldOptions = {},
  ) {}

  /** A handle for `name` listening at host:port, over whatever data that node already has. */
  attach(name: string, address: { host: string; port: number }): FakePostgresNode {
    const key = `${address.host}:${address.port}`;
    const owner = this.addresses.get(key);
    if (owner !== undefined && owner !== name) throw new Error(`fake world: ${key} already belongs to ${owner}`);
    this.addresses.set(key, name);
    this.handles.get(name)?.detach();
    const handle = new FakePostgresNode(this, name);
    this.handles.set(name, handle);
    return handle;
  }

  /** The node's data directory, or undefined when it has none (read-only view for assertions). */
  dataOf(name: string): Readonly<FakeNodeData> | undefined {
    return this.data.get(name);
  }

  /** A node's current LSN as postgres prints it. */
  lsnOf(name: string): string {
    return formatLsn(this.mustData(name).lsn);
  }

  isRunning(name: string): boolean {
    return this.data.get(name)?.running === true;
  }

  /** True when `name` would accept a write right now (running, ready, not in recovery). */
  isWritable(name: string): boolean {
    const d = this.data.get(name);
    return d !== undefined && d.running && this.clock.nowMs() >= d.readyAtMs && !d.inRecovery;
  }

  /** A client commits `bytes` of WAL on `name`; throws like postgres on a standby or a down node. */
  write(name: string, bytes = 8192n): string {
    const d = this.data.get(name);
    if (d === undefined || !d.running || this.clock.nowMs() < d.readyAtMs) {
      throw new PgpilotError('POSTGRES_FAILED', `${name}: connection refused`);
    }
    if (d.inRecovery) throw new PgpilotError('POSTGRES_FAILED', `${name}: cannot execute INSERT in a read-only transaction`);
    d.lsn += bytes;
    this.record(name, 'write', formatLsn(d.lsn));
    return formatLsn(d.lsn);
  }

  /**
   * A client commits `bytes` on primary `name` with synchronous_commit = on: the WAL is sent to
   * every standby streaming from it (walsenders), and the commit is acknowledged when
   * synchronous_standby_names is empty or when `quorum` of its named standbys have flushed it
   * (`ANY quorum (...)` semantics). An acknowledged commit is recorded in `acknowledged`; one that
   * is not stays waiting (the fake client gives up on it: it was never acknowledged).
   */
  commit(name: string, bytes = 8192n): { lsn: string; acknowledged: boolean } {
    const lsn = this.write(name, bytes);
    const d = this.mustData(name);
    const standbys = this.standbysOf(name);
    for (const standby of standbys) this.catchUp(standby.data);
    const config = parseStandbyNames(d.synchronousStandbyNames ?? '');
    let acknowledged: boolean;
    if (config === null) acknowledged = false;
    else if (config.names.length === 0) acknowledged = true;
    else acknowledged = standbys.filter((s) => config.names.includes(s.name) && s.data.lsn >= d.lsn).length >= config.quorum;
    this.record(name, 'commit', `${lsn} ${acknowledged ? 'acknowledged' : 'waiting'}`);
    if (acknowledged) this.acknowledged.push({ node: name, timeline: d.timeline, lsn });
    return { lsn, acknowledged };
  }

  /** Cuts (or restores) the WAL receiver of standby `name`: it stops streaming, as on a network cut. */
  pauseReceiver(name: string, paused = true): void {
    this.mustData(name).receiverPaused = paused;
  }

  /**
   * What `GET /wal-position` of `name`'s agent answers: its live timeline and max(receive, replay)
   * LSN; null when postgres does not run (the agent answers 503) or no agent runs there.
   */
  positionOf(name: string): { name: string; timeline: number; lsn: string } | null {
    const d = this.data.get(name);
    if (d === undefined || !d.running || this.clock.nowMs() < d.readyAtMs) return null;
    this.catchUp(d);
    const lsn = d.receiveLsn !== null && d.receiveLsn > d.lsn ? d.receiveLsn : d.lsn;
    return { name, timeline: d.timeline, lsn: formatLsn(lsn) };
  }

  /** The postmaster dies without being asked to (OOM kill, crash). */
  crash(name: string): void {
    const d = this.mustData(name);
    if (!d.running) return;
    this.halt(d, d.inRecovery ? 'in archive recovery' : 'in production');
    this.record(name, 'crash', '');
    this.handles.get(name)?.notifyUnexpectedExit();
  }

  /** The next `times` starts of `name` fail (the postmaster exits at once, e.g. a broken config or full disk). */
  failStarts(name: string, times = Number.POSITIVE_INFINITY): void {
    this.failingStarts.set(name, times);
  }

  /** Consumes one injected start failure of `name`; true when this start must fail. */
  takeStartFailure(name: string): boolean {
    const left = this.failingStarts.get(name) ?? 0;
    if (left <= 0) return false;
    this.failingStarts.set(name, left - 1);
    return true;
  }

  count(kind: FakeEventKind, node?: string): number {
    return this.events.filter((e) => e.kind === kind && (node === undefined || e.node === node)).length;
  }

  eventsOf(node: string, kind?: FakeEventKind): FakeEvent[] {
    return this.events.filter((e) => e.node === node && (kind === undefined || e.kind === kind));
  }

  // ----- used by FakePostgresNode -----

  record(node: string, kind: FakeEventKind, detail: string): void {
    this.events.push({ atMs: this.clock.nowMs(), node, kind, detail });
  }

  has(name: string): boolean {
    return this.data.has(name);
  }

  mustData(name: string): FakeNodeData {
    const d = this.data.get(name);
    if (d === undefined) throw new PgpilotError('POSTGRES_FAILED', `${name}: no data directory`);
    return d;
  }

  createData(name: string, data: Omit<FakeNodeData, 'running' | 'readyAtMs' | 'pid' | 'slots' | 'checkpointLsn' | 'receiverReadyAtMs'>): FakeNodeData {
    const created: FakeNodeData = { ...data, checkpointLsn: data.lsn, running: false, readyAtMs: 0, pid: null, slots: new Set(), receiverReadyAtMs: 0 };
    this.data.set(name, created);
    return created;
  }

  newSystemIdentifier(): string {
    const id = this.nextSystemId;
    this.nextSystemId += 1n;
    return String(id);
  }

  newPid(): number {
    this.nextPid += 1;
    return this.nextPid;
  }

  /** The node listening at an address, if any. */
  nodeAt(address: UpstreamAddress): string | null {
    return this.addresses.get(`${address.host}:${address.port}`) ?? null;
  }

  /** Data of a running, ready postgres at `address` (what a TCP connection would reach). */
  reachableAt(address: UpstreamAddress): { name: string; data: FakeNodeData } | null {
    const name = this.nodeAt(address);
    if (name === null) return null;
    const d = this.data.get(name);
    if (d === undefined || !d.running || this.clock.nowMs() < d.readyAtMs) return null;
    return { name, data: d };
  }

  /** Whether standby `d` can stream from upstream `up` (same system, `d`'s position is on `up`'s history). */
  canStream(d: FakeNodeData, up: FakeNodeData): boolean {
    if (up.systemIdentifier !== d.systemIdentifier) return false;
    const upName = [...this.data].find(([, data]) => data === up)?.[0];
    const removedBefore = upName === undefined ? undefined : this.walRemovedBefore.get(upName);
    if (removedBefore !== undefined && d.lsn < removedBefore) return false;
    if (up.timeline === d.timeline) return d.lsn <= up.lsn;
    if (up.timeline < d.timeline) return false;
    const fork = up.history.find((s) => s.timeline === d.timeline + 1);
    return fork !== undefined && d.lsn <= fork.switchLsn;
  }

  /** Moves a running standby forward to its upstream, as its WAL receiver and startup process would. */
  catchUp(d: FakeNodeData): boolean {
    if (!d.running || !d.inRecovery || d.upstream === null || this.clock.nowMs() < d.receiverReadyAtMs || d.receiverPaused === true) return false;
    const up = this.reachableAt(d.upstream);
    if (up === null || up.data === d || !this.canStream(d, up.data)) return false;
    d.lsn = up.data.lsn;
    d.receiveLsn = up.data.lsn;
    d.timeline = up.data.timeline;
    d.history = up.data.history.map((s) => ({ ...s }));
    return true;
  }

  /** Running standbys currently streaming from `name`. */
  standbysOf(name: string): Array<{ name: string; data: FakeNodeData }> {
    const result: Array<{ name: string; data: FakeNodeData }> = [];
    for (const [other, d] of this.data) {
      if (other === name || !d.running || !d.inRecovery || d.upstream === null || this.clock.nowMs() < d.receiverReadyAtMs || d.receiverPaused === true) continue;
      const up = this.reachableAt(d.upstream);
      if (up?.name === name && this.canStream(d, up.data)) result.push({ name: other, data: d });
    }
    return result;
  }

  /** Moves `name`'s data directory aside (as a failed rewind does); returns its new path. */
  moveAside(name: string): string {
    const d = this.mustData(name);
    const aside = `/fake/${name}/pgdata.diverged-${this.asideData.size + 1}`;
    this.asideData.set(aside, d);
    this.data.delete(name);
    this.record(name, 'moved-aside', aside);
    return aside;
  }

  halt(d: FakeNodeData, state: ControlState): void {
    d.running = false;
    d.pid = null;
    d.controlState = state;
    d.receiveLsn = null;
  }
}

export class FakePostgresNode implements PostgresNode {
  private readonly listeners: Array<() => void> = [];
  private attached = true;
  /** As LocalPostgresNode: when a probe of the running postmaster first failed (null: last probe answered). */
  private probeFailingSinceMs: number | null = null;

  constructor(
    private readonly world: FakePostgresWorld,
    readonly name: string,
  ) {}

  observe(): Promise<LocalPostgres> {
    const w = this.world;
    if (!w.has(this.name)) return Promise.resolve({ kind: 'no-data' });
    const d = w.mustData(this.name);
    if (!d.running) {
      return Promise.resolve({
        kind: 'stopped',
        clusterState: d.controlState,
        cleanShutdownPrimary: d.controlState === 'shut down',
        wasPrimary: PRIMARY_STATES.has(d.controlState),
        timeline: d.timeline,
        lsn: formatLsn(d.checkpointLsn),
        systemIdentifier: d.systemIdentifier,
        crashed: false,
      });
    }
    if (w.clock.nowMs() < d.readyAtMs) {
      this.probeFailingSinceMs ??= w.clock.nowMs();
      return Promise.resolve({ kind: 'starting', pid: d.pid ?? 0, sinceMs: this.probeFailingSinceMs });
    }
    this.probeFailingSinceMs = null;
    const streaming = w.catchUp(d);
    return Promise.resolve({
      kind: 'running',
      pid: d.pid ?? 0,
      inRecovery: d.inRecovery,
      timeline: d.timeline,
      lsn: formatLsn(d.lsn),
      receiveLsn: d.inRecovery && d.receiveLsn !== null ? formatLsn(d.receiveLsn) : null,
      walReceiverStatus: d.inRecovery && streaming ? 'streaming' : null,
      systemIdentifier: d.systemIdentifier,
    });
  }

  async initialize(): Promise<{ systemIdentifier: string }> {
    const w = this.world;
    if (w.has(this.name)) throw new PgpilotError('POSTGRES_FAILED', `initdb: ${this.name}: data directory exists and is not empty`);
    w.record(this.name, 'initdb', '');
    await this.elapse(w.options.initializeMs);
    const systemIdentifier = w.newSystemIdentifier();
    w.createData(this.name, {
      systemIdentifier,
      timeline: 1,
      history: [],
      lsn: INITIAL_LSN,
      receiveLsn: null,
      inRecovery: false,
      upstream: null,
      controlState: 'shut down',
    });
    await this.start('primary', null);
    await this.elapse(w.options.startupMs);
    return { systemIdentifier };
  }

  async cloneFrom(upstream: UpstreamAddress): Promise<void> {
    const w = this.world;
    if (w.has(this.name)) throw new PgpilotError('COMMAND_FAILED', `pg_basebackup: ${this.name}: data directory exists and is not empty`);
    if (w.reachableAt(upstream) === null) throw new PgpilotError('COMMAND_FAILED', `pg_basebackup: could not connect to ${upstream.host}:${upstream.port}`);
    await this.elapse(w.options.cloneMs);
    // The copy is consistent as of the end of the backup.
    const source = w.reachableAt(upstream);
    if (source === null) throw new PgpilotError('COMMAND_FAILED', `pg_basebackup: ${upstream.name} went away during the backup`);
    w.createData(this.name, {
      systemIdentifier: source.data.systemIdentifier,
      timeline: source.data.timeline,
      history: source.data.history.map((s) => ({ ...s })),
      lsn: source.data.lsn,
      receiveLsn: null,
      inRecovery: true,
      upstream,
      controlState: 'in archive recovery',
    });
    w.record(this.name, 'clone', source.name);
    await this.start('standby', upstream);
  }

  start(mode: 'primary' | 'standby', upstream: UpstreamAddress | null): Promise<void> {
    const w = this.world;
    const d = w.mustData(this.name);
    if (d.running) return Promise.reject(new PgpilotError('POSTGRES_FAILED', `postgres is already running (pid ${d.pid ?? '?'})`));
    if (w.takeStartFailure(this.name)) {
      w.record(this.name, 'start', `${mode} failed`);
      return Promise.reject(new PgpilotError('POSTGRES_FAILED', `${this.name}: postgres exited during start-up`));
    }
    this.probeFailingSinceMs = null;
    d.running = true;
    d.pid = w.newPid();
    d.readyAtMs = w.clock.nowMs() + (w.options.startupMs ?? 0);
    d.inRecovery = mode === 'standby';
    d.upstream = mode === 'standby' ? upstream : null;
    // As LocalPostgresNode: a standby starts without synchronous_standby_names; a primary keeps its own.
    if (mode === 'standby') d.synchronousStandbyNames = '';
    d.receiveLsn = null;
    w.record(this.name, 'start', `${mode}${upstream === null ? '' : ` of ${upstream.name}`}`);
    return Promise.resolve();
  }

  stop(mode: 'fast' | 'immediate'): Promise<void> {
    const w = this.world;
    if (!w.has(this.name)) return Promise.resolve();
    const d = w.mustData(this.name);
    if (!d.running) return Promise.resolve();
    if (mode === 'fast') {
      if (!d.inRecovery) {
        // Shutdown checkpoint; walsenders send WAL up to and including it before the postmaster exits.
        d.checkpointLsn = d.lsn;
        d.lsn += SHUTDOWN_CHECKPOINT_BYTES;
        for (const standby of w.standbysOf(this.name)) w.catchUp(standby.data);
      } else {
        d.checkpointLsn = d.lsn; // restartpoint
      }
    }
    const state: ControlState =
      mode === 'fast' ? (d.inRecovery ? 'shut down in recovery' : 'shut down') : d.inRecovery ? 'in archive recovery' : 'in production';
    w.halt(d, state);
    w.record(this.name, 'stop', mode);
    return Promise.resolve();
  }

  /** The fake has no client sessions: nothing to drain (the real one polls pg_stat_activity). */
  drainClients(_timeoutMs: number): Promise<number> {
    this.world.record(this.name, 'drain', '0');
    return Promise.resolve(0);
  }

  checkpoint(): Promise<void> {
    return settle(() => {
      const d = this.world.mustData(this.name);
      if (!d.running || this.world.clock.nowMs() < d.readyAtMs) throw new PgpilotError('POSTGRES_FAILED', `${this.name}: postgres is not running`);
      if (!d.inRecovery) d.checkpointLsn = d.lsn;
      this.world.record(this.name, 'checkpoint', formatLsn(d.lsn));
    });
  }

  /**
   * pg_rewind from `upstream`, then start as its standby. "No rewind required" when this data's
   * position is already on the upstream's history; rewound (back to the fork point) when the
   * upstream forked a later timeline before our end of WAL; any failure (upstream unreachable,
   * another system, no common history) moves the data aside, as LocalPostgresNode does.
   */
  async rejoin(upstream: UpstreamAddress): Promise<{ kind: 'rewound' | 'not-needed' } | { kind: 'moved-aside'; path: string }> {
    const w = this.world;
    const d = w.mustData(this.name);
    if (d.running) throw new PgpilotError('POSTGRES_FAILED', 'pg_rewind: target server must be shut down cleanly');
    const source = w.reachableAt(upstream);
    let outcome: 'rewound' | 'not-needed' | 'impossible' = 'impossible';
    if (source !== null && source.data.systemIdentifier === d.systemIdentifier) {
      if (w.canStream(d, source.data)) {
        outcome = 'not-needed';
      } else {
        const fork = source.data.history.find((s) => s.timeline === d.timeline + 1);
        if (fork !== undefined && source.data.timeline > d.timeline) {
          d.lsn = fork.switchLsn;
          d.checkpointLsn = fork.switchLsn;
          outcome = 'rewound';
        }
      }
    }
    if (outcome === 'impossible') return { kind: 'moved-aside', path: w.moveAside(this.name) };
    w.record(this.name, 'rewind', `${outcome} from ${upstream.name}`);
    await this.start('standby', upstream);
    return { kind: outcome };
  }

  promote(): Promise<void> {
    const w = this.world;
    const d = w.mustData(this.name);
    if (!d.running || w.clock.nowMs() < d.readyAtMs) return Promise.reject(new PgpilotError('POSTGRES_FAILED', `${this.name}: postgres is not running`));
    if (!d.inRecovery) return Promise.reject(new PgpilotError('POSTGRES_FAILED', `${this.name}: server is not in standby mode`));
    d.timeline += 1;
    d.history = [...d.history, { timeline: d.timeline, switchLsn: d.lsn }];
    d.inRecovery = false;
    d.upstream = null;
    d.receiveLsn = null;
    w.record(this.name, 'promote', `timeline ${d.timeline} at ${formatLsn(d.lsn)}`);
    return Promise.resolve();
  }

  follow(upstream: UpstreamAddress | null): Promise<void> {
    const w = this.world;
    const d = w.mustData(this.name);
    if (!d.running) return Promise.reject(new PgpilotError('POSTGRES_FAILED', 'postgres is not running; cannot reload'));
    // primary_conninfo only matters in recovery, as with the real configuration reload.
    if (d.inRecovery) {
      if (upstream?.name !== d.upstream?.name) d.receiverReadyAtMs = w.clock.nowMs() + (w.options.walReceiverConnectMs ?? 0);
      d.upstream = upstream;
    }
    w.record(this.name, 'follow', upstream?.name ?? 'none');
    return Promise.resolve();
  }

  oldestWalLsn(): Promise<string | null> {
    return settle(() => {
      this.runningPrimaryData('oldestWalLsn');
      const removedBefore = this.world.walRemovedBefore.get(this.name);
      return removedBefore === undefined ? null : formatLsn(removedBefore);
    });
  }

  moveDataAside(): Promise<string> {
    return settle(() => {
      const d = this.world.mustData(this.name);
      if (d.running) throw new PgpilotError('POSTGRES_FAILED', `${this.name}: cannot move a running data directory`);
      return this.world.moveAside(this.name);
    });
  }

  syncSlots(memberNames: readonly string[]): Promise<void> {
    return settle(() => {
      const d = this.runningPrimaryData('syncSlots');
      for (const name of memberNames) d.slots.add(name);
    });
  }

  replicationStatus(): Promise<ReplicationEntry[]> {
    const w = this.world;
    const d = w.mustData(this.name);
    if (!d.running) return Promise.reject(new PgpilotError('POSTGRES_FAILED', `${this.name}: postgres is not running`));
    return Promise.resolve(
      w.standbysOf(this.name).map(({ name, data }) => ({
        applicationName: name,
        state: 'streaming',
        replayLsn: formatLsn(data.lsn),
        lagBytes: Number(d.lsn > data.lsn ? d.lsn - data.lsn : 0n),
        syncState: syncStateOf(d, name),
      })),
    );
  }

  synchronousState(): Promise<SynchronousState> {
    return settle(() => {
      const d = this.runningPrimaryData('synchronousState');
      return {
        standbyNames: d.synchronousStandbyNames ?? '',
        currentLsn: formatLsn(d.lsn),
        standbys: this.world.standbysOf(this.name).map(({ name, data }) => ({
          name,
          state: 'streaming',
          syncState: syncStateOf(d, name),
          flushLsn: formatLsn(data.lsn),
        })),
      };
    });
  }

  setSynchronousStandbyNames(value: string): Promise<void> {
    return settle(() => {
      const d = this.runningPrimaryData('setSynchronousStandbyNames');
      d.synchronousStandbyNames = value;
      this.world.record(this.name, 'sync-standbys', value);
    });
  }

  postmasterPid(): number | null {
    return this.world.dataOf(this.name)?.pid ?? null;
  }

  onUnexpectedExit(listener: () => void): void {
    this.listeners.push(listener);
  }

  close(): Promise<void> {
    this.detach();
    return Promise.resolve();
  }

  /** Called by the world when this node crashes; only the attached handle's listeners hear it. */
  notifyUnexpectedExit(): void {
    if (!this.attached) return;
    for (const listener of this.listeners) listener();
  }

  detach(): void {
    this.attached = false;
    this.listeners.length = 0;
  }

  private runningPrimaryData(what: string): FakeNodeData {
    const d = this.world.mustData(this.name);
    if (!d.running || this.world.clock.nowMs() < d.readyAtMs) throw new PgpilotError('POSTGRES_FAILED', `${what}: ${this.name}: postgres is not running`);
    if (d.inRecovery) throw new PgpilotError('POSTGRES_FAILED', `${what}: ${this.name}: recovery is in progress`);
    return d;
  }

  private async elapse(ms: number | undefined): Promise<void> {
    if (ms !== undefined && ms > 0) await this.world.clock.sleep(ms);
  }
}
