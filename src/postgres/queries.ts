/**
 * The SQL pgpilot runs against its own postgres, as small typed functions over a node-postgres
 * Client. Invariants: every connection is TLS, verified against the cluster CA and the address
 * dialled (verify-full); every connection has a statement_timeout, so a wedged server cannot stall the
 * HA loop; LSNs leave here as canonical strings (shared/lsn.ts) and timelines as numbers; roles get
 * passwords only as SCRAM verifiers (the clear password never reaches the server or its logs);
 * identifiers are quoted by pg's escapeIdentifier and values travel as bind parameters; and the
 * slot and role helpers are idempotent and race-tolerant (the loop may call them every tick, on
 * several nodes).
 */
import { createHash } from 'node:crypto';
import pg from 'pg';
import { PgpilotError } from '../shared/errors.js';
import { redactSecrets } from '../shared/logger.js';
import { formatLsn, parseLsn } from '../shared/lsn.js';
import { scramSha256Verifier } from './scram.js';

export type PgClient = pg.Client;

export interface ConnectLocalOptions {
  host: string;
  port: number;
  user: string;
  password: string;
  database?: string;
  connectTimeoutMs: number;
  applicationName?: string;
  /** Server-side bound for each statement; default 10 s. */
  statementTimeoutMs?: number;
  /** PEM of the cluster CA: the server's certificate must chain to it and name `host`. */
  ca: string;
}

/** node-postgres' TLS options for verify-full against the cluster CA only. */
export function verifyFullSsl(ca: string): { ca: string; rejectUnauthorized: true } {
  return { ca, rejectUnauthorized: true };
}

const DEFAULT_STATEMENT_TIMEOUT_MS = 10_000;

/** SQLSTATE of a node-postgres error, if any. */
export function sqlState(error: unknown): string | undefined {
  if (typeof error === 'object' && error !== null && 'code' in error) {
    const code = error.code;
    return typeof code === 'string' ? code : undefined;
  }
  return undefined;
}

/** A connected client. Failure is POSTGRES_FAILED (retryable); the pg error stays as `cause` (see `sqlState`). */
export async function connectLocal(options: ConnectLocalOptions): Promise<PgClient> {
  const client = new pg.Client({
    host: options.host,
    port: options.port,
    user: options.user,
    password: options.password,
    database: options.database ?? 'postgres',
    application_name: options.applicationName ?? 'pgpilot',
    connectionTimeoutMillis: options.connectTimeoutMs,
    statement_timeout: options.statementTimeoutMs ?? DEFAULT_STATEMENT_TIMEOUT_MS,
    ssl: verifyFullSsl(options.ca),
  });
  // A server that goes away makes the idle client emit 'error'; without a listener that would
  // crash the process. The next query on the client fails and its caller handles that.
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (error) {
    await client.end().catch(() => undefined);
    throw new PgpilotError(
      'POSTGRES_FAILED',
      `could not connect to postgres at ${options.host}:${options.port} as ${options.user}: ${redactSecrets(error instanceof Error ? error.message : String(error))}`,
      { retryable: true, cause: error },
    );
  }
  return client;
}

function lsnOrNull(value: string | null | undefined): string | null {
  if (value === null || value === undefined) return null;
  return formatLsn(parseLsn(value));
}

function numberOrNull(value: number | string | null | undefined): number | null {
  if (value === null || value === undefined) return null;
  const n = Number(value);
  return Number.isFinite(n) ? n : null;
}

function stringOrNull(value: string | null | undefined): string | null {
  return value ?? null;
}

export interface NodeProbe {
  inRecovery: boolean;
  timeline: number;
  /** The primary's current write position (pg_current_wal_lsn); null on a replica. */
  currentLsn: string | null;
  receiveLsn: string | null;
  replayLsn: string | null;
  systemIdentifier: string;
  /** pg_stat_wal_receiver.status ('streaming', 'starting', ...); null when no receiver runs. */
  walReceiverStatus: string | null;
  walReceiverPrimaryHost: string | null;
  walReceiverPrimaryPort: number | null;
  /** pg_stat_archiver (the WAL archive, src/backup/wal-archive.ts). */
  archiver: ArchiverProbe;
}

export interface ArchiverProbe {
  archivedCount: number;
  failedCount: number;
  lastArchivedWal: string | null;
  lastArchivedAtMs: number | null;
  lastFailedWal: string | null;
  lastFailedAtMs: number | null;
}

interface ProbeRow {
  in_recovery: boolean;
  current_lsn: string | null;
  wal_file: string | null;
  receive_lsn: string | null;
  replay_lsn: string | null;
  system_identifier: string;
  checkpoint_timeline: number;
  wr_status: string | null;
  wr_received_tli: number | null;
  wr_sender_host: string | null;
  wr_sender_port: number | null;
  ar_archived_count: string | number;
  ar_failed_count: string | number;
  ar_last_archived_wal: string | null;
  ar_last_archived_ms: string | number | null;
  ar_last_failed_wal: string | null;
  ar_last_failed_ms: string | number | null;
}

// One statement, so every value comes from the same snapshot of the node. The CASEs keep
// pg_current_wal_lsn() (which errors during recovery) from running on a replica.
const PROBE_SQL = `
SELECT r.in_recovery,
       CASE WHEN r.in_recovery THEN NULL ELSE pg_current_wal_lsn()::text END AS current_lsn,
       CASE WHEN r.in_recovery THEN NULL ELSE pg_walfile_name(pg_current_wal_lsn()) END AS wal_file,
       pg_last_wal_receive_lsn()::text AS receive_lsn,
       pg_last_wal_replay_lsn()::text AS replay_lsn,
       (SELECT system_identifier::text FROM pg_control_system()) AS system_identifier,
       (SELECT timeline_id FROM pg_control_checkpoint()) AS checkpoint_timeline,
       w.status AS wr_status,
       w.received_tli AS wr_received_tli,
       w.sender_host AS wr_sender_host,
       w.sender_port AS wr_sender_port,
       a.archived_count AS ar_archived_count,
       a.failed_count AS ar_failed_count,
       a.last_archived_wal AS ar_last_archived_wal,
       (extract(epoch FROM a.last_archived_time) * 1000)::bigint AS ar_last_archived_ms,
       a.last_failed_wal AS ar_last_failed_wal,
       (extract(epoch FROM a.last_failed_time) * 1000)::bigint AS ar_last_failed_ms
  FROM (SELECT pg_is_in_recovery() AS in_recovery) AS r
  LEFT JOIN pg_stat_wal_receiver AS w ON true
  CROSS JOIN pg_stat_archiver AS a`;

/** Role, position and upstream of the node behind `client`. */
export async function probeNode(client: PgClient): Promise<NodeProbe> {
  const result = await client.query<ProbeRow>(PROBE_SQL);
  const row = result.rows[0];
  if (row === undefined) throw new PgpilotError('POSTGRES_FAILED', 'the node probe returned no row');
  let timeline: number;
  if (!row.in_recovery && row.wal_file !== null) {
    // A WAL file name starts with the timeline as 8 hex digits.
    timeline = Number.parseInt(row.wal_file.slice(0, 8), 16);
  } else {
    timeline = numberOrNull(row.wr_received_tli) ?? Number(row.checkpoint_timeline);
  }
  return {
    inRecovery: row.in_recovery,
    timeline,
    currentLsn: lsnOrNull(row.current_lsn),
    receiveLsn: lsnOrNull(row.receive_lsn),
    replayLsn: lsnOrNull(row.replay_lsn),
    systemIdentifier: row.system_identifier,
    walReceiverStatus: stringOrNull(row.wr_status),
    walReceiverPrimaryHost: stringOrNull(row.wr_sender_host),
    walReceiverPrimaryPort: numberOrNull(row.wr_sender_port),
    archiver: {
      archivedCount: Number(row.ar_archived_count),
      failedCount: Number(row.ar_failed_count),
      lastArchivedWal: stringOrNull(row.ar_last_archived_wal),
      lastArchivedAtMs: numberOrNull(row.ar_last_archived_ms),
      lastFailedWal: stringOrNull(row.ar_last_failed_wal),
      lastFailedAtMs: numberOrNull(row.ar_last_failed_ms),
    },
  };
}

export interface ReplicationRow {
  pid: number;
  applicationName: string;
  clientAddr: string | null;
  state: string | null;
  sentLsn: string | null;
  writeLsn: string | null;
  flushLsn: string | null;
  replayLsn: string | null;
  /** 'async' | 'potential' | 'sync' | 'quorum'. */
  syncState: string | null;
  /** pg_stat_replication.replay_lag in milliseconds; null when idle or unknown. */
  replayLagMs: number | null;
}

/** The walsenders of this node (one row per connected standby or backup), by application name. */
interface ReplicationQueryRow {
  pid: number;
  application_name: string | null;
  client_addr: string | null;
  state: string | null;
  sent_lsn: string | null;
  write_lsn: string | null;
  flush_lsn: string | null;
  replay_lsn: string | null;
  sync_state: string | null;
  replay_lag_ms: number | null;
}

export async function replicationStatus(client: PgClient): Promise<ReplicationRow[]> {
  const result = await client.query<ReplicationQueryRow>(`
    SELECT pid, application_name, host(client_addr) AS client_addr, state,
           sent_lsn::text AS sent_lsn, write_lsn::text AS write_lsn, flush_lsn::text AS flush_lsn,
           replay_lsn::text AS replay_lsn, sync_state,
           (EXTRACT(epoch FROM replay_lag) * 1000)::float8 AS replay_lag_ms
      FROM pg_stat_replication
     ORDER BY application_name, pid`);
  return result.rows.map((row) => ({
    pid: Number(row.pid),
    applicationName: row.application_name ?? '',
    clientAddr: stringOrNull(row.client_addr),
    state: stringOrNull(row.state),
    sentLsn: lsnOrNull(row.sent_lsn),
    writeLsn: lsnOrNull(row.write_lsn),
    flushLsn: lsnOrNull(row.flush_lsn),
    replayLsn: lsnOrNull(row.replay_lsn),
    syncState: stringOrNull(row.sync_state),
    replayLagMs: numberOrNull(row.replay_lag_ms),
  }));
}

export interface SlotRow {
  slotName: string;
  slotType: 'physical' | 'logical';
  active: boolean;
  restartLsn: string | null;
  /** 'reserved' | 'extended' | 'unreserved' | 'lost', or null. */
  walStatus: string | null;
}

interface SlotQueryRow {
  slot_name: string;
  slot_type: string;
  active: boolean;
  restart_lsn: string | null;
  wal_status: string | null;
}

export async function listSlots(client: PgClient): Promise<SlotRow[]> {
  const result = await client.query<SlotQueryRow>(`
    SELECT slot_name, slot_type, active, restart_lsn::text AS restart_lsn, wal_status
      FROM pg_replication_slots
     ORDER BY slot_name`);
  return result.rows.map((row) => ({
    slotName: row.slot_name,
    slotType: row.slot_type === 'logical' ? 'logical' : 'physical',
    active: row.active,
    restartLsn: lsnOrNull(row.restart_lsn),
    walStatus: stringOrNull(row.wal_status),
  }));
}

const SLOT_NAME = /^[a-z0-9_]{1,63}$/;

function checkSlotName(name: string): void {
  if (!SLOT_NAME.test(name)) {
    throw new PgpilotError('INPUT_INVALID', `"${name}" is not a valid replication slot name`, {
      hint: 'slot names use a-z, 0-9 and _ only, at most 63 characters (see slotNameFor)',
    });
  }
}

/** Creates the physical slot `name` (reserving WAL right away) unless it exists. */
export async function ensurePhysicalSlot(client: PgClient, name: string): Promise<'created' | 'exists'> {
  checkSlotName(name);
  const existing = await client.query<{ slot_type: string }>(
    'SELECT slot_type FROM pg_replication_slots WHERE slot_name = $1',
    [name],
  );
  const found = existing.rows[0];
  if (found !== undefined) {
    if (found.slot_type !== 'physical') {
      throw new PgpilotError('INPUT_INVALID', `replication slot ${name} exists but is ${found.slot_type}`, {
        hint: 'drop the logical slot or rename the node',
      });
    }
    return 'exists';
  }
  try {
    await client.query('SELECT pg_create_physical_replication_slot($1, true)', [name]);
    return 'created';
  } catch (error) {
    if (sqlState(error) === '42710') return 'exists'; // duplicate_object: created concurrently
    throw error;
  }
}

/** Drops the slot unless a walsender is using it right now. */
export async function dropSlotIfExists(client: PgClient, name: string): Promise<'dropped' | 'absent' | 'active'> {
  const existing = await client.query<{ active: boolean }>(
    'SELECT active FROM pg_replication_slots WHERE slot_name = $1',
    [name],
  );
  const found = existing.rows[0];
  if (found === undefined) return 'absent';
  if (found.active) return 'active';
  try {
    await client.query('SELECT pg_drop_replication_slot($1)', [name]);
    return 'dropped';
  } catch (error) {
    const state = sqlState(error);
    if (state === '42704') return 'absent'; // undefined_object: dropped concurrently
    if (state === '55006') return 'active'; // object_in_use: a standby connected meanwhile
    throw error;
  }
}

export interface RoleSpec {
  name: string;
  password: string;
  /** Default true. */
  login?: boolean;
  /** Created roles default to false; when altering, undefined leaves the attribute as it is. */
  replication?: boolean;
  /** Created roles default to false; when altering, undefined leaves the attribute as it is. */
  superuser?: boolean;
}

function roleOptions(spec: RoleSpec, creating: boolean, verifier: string, client: PgClient): string {
  const parts = [spec.login ?? true ? 'LOGIN' : 'NOLOGIN'];
  const replication = spec.replication ?? (creating ? false : undefined);
  const superuser = spec.superuser ?? (creating ? false : undefined);
  if (replication !== undefined) parts.push(replication ? 'REPLICATION' : 'NOREPLICATION');
  if (superuser !== undefined) parts.push(superuser ? 'SUPERUSER' : 'NOSUPERUSER');
  parts.push(`PASSWORD ${client.escapeLiteral(verifier)}`);
  return parts.join(' ');
}

/** Creates the role or brings an existing one to `spec` (password included). */
export async function ensureRole(client: PgClient, spec: RoleSpec): Promise<'created' | 'altered'> {
  if (spec.name.length === 0 || spec.name.length > 63) {
    throw new PgpilotError('INPUT_INVALID', `role name "${spec.name}" must have 1 to 63 characters`);
  }
  const verifier = scramSha256Verifier(spec.password);
  const identifier = client.escapeIdentifier(spec.name);
  const exists = await client.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [spec.name]);
  if (exists.rowCount === 0) {
    try {
      await client.query(`CREATE ROLE ${identifier} WITH ${roleOptions(spec, true, verifier, client)}`);
      return 'created';
    } catch (error) {
      if (sqlState(error) !== '42710') throw error; // duplicate_object: created concurrently
    }
  }
  await client.query(`ALTER ROLE ${identifier} WITH ${roleOptions(spec, false, verifier, client)}`);
  return 'altered';
}

/**
 * The replication slot name for a node (pure): lower-case, every character outside [a-z0-9_]
 * becomes `_`, at most 63 characters. Names longer than that end with a short hash of the full
 * name, so two long node names sharing a prefix do not share a slot.
 */
export function slotNameFor(nodeName: string): string {
  if (nodeName.length === 0) throw new PgpilotError('INPUT_INVALID', 'a node name is empty');
  const base = nodeName.toLowerCase().replace(/[^a-z0-9_]/g, '_');
  if (base.length <= 63) return base;
  const hash = createHash('sha256').update(nodeName, 'utf8').digest('hex').slice(0, 8);
  return `${base.slice(0, 54)}_${hash}`;
}
