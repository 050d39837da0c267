/**
 * Pure renderers for the files pgpilot owns in a data directory: postgresql.conf, pg_hba.conf, a
 * libpq password file, and libpq conninfo strings. No I/O here, so every byte we hand to postgres
 * is unit-tested. Invariants: (1) values are always quoted the way the consumer parses them (a
 * value can never break out of its setting, line or field); (2) pg_hba.conf allows scram-sha-256
 * only — no trust, peer, ident, password or md5 line can be produced — and every TCP line is
 * `hostssl`: a connection without TLS matches only the closing `hostnossl ... reject` lines;
 * (2b) postgres always serves TLS with the node certificate (`ssl = on`); (3) settings that define a
 * node's identity (port, addresses, socket dir, cluster name, standby source) come from the typed
 * input and cannot be overridden through free-form `parameters`, so a config update cannot point
 * a node at another port or primary behind pgpilot's back.
 */
import { isIP } from 'node:net';
import { PgpilotError } from '../shared/errors.js';
import { MANAGED_PARAMETERS, screenParameters } from './parameter-policy.js';

export type ConfValue = string | number | boolean;

export interface StandbyConf {
  /** libpq conninfo of the upstream (render with `renderConninfo`). */
  primaryConninfo: string;
  primarySlotName: string;
}

export interface PostgresqlConfInput {
  port: number;
  listenAddresses: string;
  socketDir: string;
  clusterName: string;
  nodeName: string;
  /** Postgres parameters overriding pgpilot's defaults (names are case-insensitive). */
  parameters?: Record<string, ConfValue>;
  /** When given, the node follows `primaryConninfo`; the caller also writes standby.signal. */
  standby?: StandbyConf | null;
  /** WAL archiving: every member archives (`archive_mode = always`; src/backup/wal-archive.ts). */
  archive?: ArchiveConf | null;
  /** Archive recovery of a restored backup (the caller also writes recovery.signal). */
  recovery?: RecoveryConf | null;
  /** The node certificate postgres serves (`ssl = on`); required: pgpilot has no plain-text mode. */
  tls: PostgresTls;
}

export interface PostgresTls {
  certFile: string;
  keyFile: string;
  caFile: string;
}

export interface ArchiveConf {
  /** Shell command with %p / %f (render with `walCommand`). */
  command: string;
  /** `always`: standbys archive what they receive too (no gap after a failover); `on`: only a primary. */
  mode: 'always' | 'on';
  /** Force a segment switch after this long with WAL activity (bounds the data a restore can miss). */
  timeoutSeconds: number;
}

export interface RecoveryConf {
  restoreCommand: string;
  target: { kind: 'latest' } | { kind: 'time'; time: string } | { kind: 'lsn'; lsn: string };
}

/** Safe defaults for a streaming-replication member; `parameters` may override any of these. */
export const DEFAULT_POSTGRES_PARAMETERS: Readonly<Record<string, ConfValue>> = Object.freeze({
  max_connections: 100,
  shared_buffers: '128MB',
  password_encryption: 'scram-sha-256',
  wal_level: 'replica',
  hot_standby: true,
  max_wal_senders: 10,
  max_replication_slots: 10,
  wal_keep_size: '128MB',
  // A member that is down or far behind keeps WAL on the leader through its replication slot; past
  // this much the slot is invalidated (the member re-clones) instead of the leader's disk filling.
  max_slot_wal_keep_size: '1GB',
  // Needed by pg_rewind when a former primary rejoins (checksums also cover it; both is harmless).
  wal_log_hints: true,
  hot_standby_feedback: true,
  // A standby retries its upstream every second (default 5 s): after a failover or switchover it
  // finds the new leader, and the slot created for it at promotion, within a second.
  wal_retrieve_retry_interval: '1s',
  logging_collector: false,
  log_destination: 'stderr',
  log_line_prefix: '%m [%p] ',
  // initdb's own postgresql.conf is replaced by ours, so the locale-derived settings it wrote are
  // restated here: English messages (pgpilot matches some of them) and UTC timestamps.
  lc_messages: 'C',
  log_timezone: 'UTC',
  timezone: 'UTC',
});

/** Settings pgpilot derives from the typed input; `parameters` may not set them (src/postgres/parameter-policy.ts). */
export { MANAGED_PARAMETERS };

function invalid(message: string, hint?: string): PgpilotError {
  return new PgpilotError('INPUT_INVALID', message, hint === undefined ? {} : { hint });
}

/**
 * A value as postgresql.conf's lexer reads it: finite numbers and booleans bare, strings in single
 * quotes with `'` doubled and backslashes/newlines escaped (the GUC lexer treats `\` as an escape
 * inside quotes and does not allow a raw newline).
 */
export function quoteConfValue(value: ConfValue): string {
  if (typeof value === 'boolean') return value ? 'on' : 'off';
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw invalid(`configuration value ${String(value)} is not a finite number`);
    return String(value);
  }
  const escaped = value
    .replace(/\\/g, '\\\\')
    .replace(/'/g, "''")
    .replace(/\n/g, '\\n')
    .replace(/\r/g, '\\r');
  return `'${escaped}'`;
}

/** One line of comment text: control characters (a newline would end the comment) become spaces. */
function commentText(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f]/g, ' ');
}

export function renderPostgresqlConf(input: PostgresqlConfInput): string {
  if (!Number.isInteger(input.port) || input.port < 1 || input.port > 65535) {
    throw invalid(`port ${input.port} is out of range`);
  }
  const settings = new Map<string, ConfValue>(Object.entries(DEFAULT_POSTGRES_PARAMETERS));
  // The parameter policy again, at the last step: whatever a caller passes, a forbidden entry is
  // never written (callers screen first and report what they dropped).
  for (const [name, value] of Object.entries(screenParameters(input.parameters ?? {}).parameters)) settings.set(name, value);

  const lines: string[] = [
    '# postgresql.conf generated by pgpilot. Do not edit: pgpilot rewrites this file.',
    `# cluster ${commentText(input.clusterName)}, node ${commentText(input.nodeName)}.`,
    '# Change settings with `pgpilot config update` instead.',
    '',
    '# identity and connections',
    `listen_addresses = ${quoteConfValue(input.listenAddresses)}`,
    `port = ${quoteConfValue(input.port)}`,
    `unix_socket_directories = ${quoteConfValue(input.socketDir)}`,
    `cluster_name = ${quoteConfValue(input.clusterName)}`,
    '',
    '# TLS with the node certificate (pg_hba.conf accepts TCP connections only over TLS)',
    `ssl = ${quoteConfValue(true)}`,
    `ssl_cert_file = ${quoteConfValue(input.tls.certFile)}`,
    `ssl_key_file = ${quoteConfValue(input.tls.keyFile)}`,
    `ssl_ca_file = ${quoteConfValue(input.tls.caFile)}`,
    `ssl_min_protocol_version = ${quoteConfValue('TLSv1.2')}`,
    '',
    '# parameters (pgpilot defaults, then cluster overrides)',
  ];
  for (const [name, value] of settings) lines.push(`${name} = ${quoteConfValue(value)}`);

  if (input.archive) {
    lines.push(
      '',
      '# continuous WAL archive (pgpilot wal push)',
      `archive_mode = ${quoteConfValue(input.archive.mode)}`,
      `archive_command = ${quoteConfValue(input.archive.command)}`,
    );
    // A cluster override of archive_timeout (in the parameters above) wins over pgpilot's default.
    if (!settings.has('archive_timeout')) lines.push(`archive_timeout = ${quoteConfValue(`${input.archive.timeoutSeconds}s`)}`);
  }
  if (input.recovery) {
    const target = input.recovery.target;
    lines.push(
      '',
      '# archive recovery of a restored backup (pgpilot wal fetch); recovery.signal is present',
      `restore_command = ${quoteConfValue(input.recovery.restoreCommand)}`,
      `recovery_target_timeline = ${quoteConfValue('latest')}`,
    );
    if (target.kind === 'time') lines.push(`recovery_target_time = ${quoteConfValue(target.time)}`);
    if (target.kind === 'lsn') lines.push(`recovery_target_lsn = ${quoteConfValue(target.lsn)}`);
    // Promote at the target (or at the end of the archive): the restored node becomes the new
    // cluster's first leader on a timeline of its own.
    lines.push(`recovery_target_action = ${quoteConfValue('promote')}`);
  }
  if (input.standby) {
    lines.push(
      '',
      '# standby: follow the current primary (standby.signal is present in the data directory)',
      `primary_conninfo = ${quoteConfValue(input.standby.primaryConninfo)}`,
      `primary_slot_name = ${quoteConfValue(input.standby.primarySlotName)}`,
      `recovery_target_timeline = ${quoteConfValue('latest')}`,
    );
  }
  return `${lines.join('\n')}\n`;
}

export interface PgHbaInput {
  superuser: string;
  replicationUser: string;
  /** Networks allowed to connect, e.g. 127.0.0.1/32 and ::1/128. */
  cidrs: string[];
}

const HBA_KEYWORDS = new Set(['all', 'sameuser', 'samerole', 'samegroup', 'replication']);

/** A user name as a pg_hba.conf token: bare when plain, double-quoted otherwise. */
function hbaUser(name: string): string {
  // The hba lexer has no escape for `"` inside a quoted token, and a newline ends the line.
  // eslint-disable-next-line no-control-regex
  if (name.length === 0 || /["\u0000-\u001f\u007f]/.test(name)) {
    throw invalid(`role name ${JSON.stringify(name)} cannot be written to pg_hba.conf`);
  }
  if (/^[a-z_][a-z0-9_]*$/.test(name) && !HBA_KEYWORDS.has(name)) return name;
  return `"${name}"`;
}

function checkCidr(cidr: string): string {
  const [address, prefix, ...rest] = cidr.trim().split('/');
  const family = isIP(address ?? '');
  const maxPrefix = family === 4 ? 32 : 128;
  const prefixOk = prefix !== undefined && /^\d{1,3}$/.test(prefix) && Number(prefix) <= maxPrefix;
  if (family === 0 || !prefixOk || rest.length > 0) throw invalid(`"${cidr}" is not an address/prefix network`);
  return `${address}/${prefix}`;
}

/**
 * pg_hba.conf allowing every role over the local socket and, over TLS only (`hostssl`), the given
 * networks, and streaming replication for the replication user and the superuser (which
 * pg_basebackup-based backups use), all with scram-sha-256. A TCP connection without TLS, from
 * anywhere, matches an explicit `hostnossl ... reject` line; anything else not listed is rejected
 * by postgres (no matching line).
 */
export function renderPgHba(input: PgHbaInput): string {
  const replicationUsers = [...new Set([input.replicationUser, input.superuser])].map(hbaUser).join(',');
  const cidrs = [...new Set(input.cidrs.map(checkCidr))];
  const rows: Array<[string, string, string, string, string]> = [
    ['local', 'all', 'all', '', 'scram-sha-256'],
    ['local', 'replication', replicationUsers, '', 'scram-sha-256'],
  ];
  for (const cidr of cidrs) {
    rows.push(['hostssl', 'all', 'all', cidr, 'scram-sha-256']);
    rows.push(['hostssl', 'replication', replicationUsers, cidr, 'scram-sha-256']);
  }
  for (const anywhere of ['0.0.0.0/0', '::/0']) {
    rows.push(['hostnossl', 'all', 'all', anywhere, 'reject']);
    rows.push(['hostnossl', 'replication', 'all', anywhere, 'reject']);
  }
  const widths = [9, 12, Math.max(12, replicationUsers.length + 1), Math.max(20, ...cidrs.map((c) => c.length + 1))];
  const pad = (text: string, index: number): string => text.padEnd(widths[index] ?? 0);
  const lines = [
    '# pg_hba.conf generated by pgpilot. Do not edit: pgpilot rewrites this file.',
    '# scram-sha-256 only, TCP over TLS only; connections not matched below are rejected.',
    `${pad('# TYPE', 0)} ${pad('DATABASE', 1)} ${pad('USER', 2)} ${pad('ADDRESS', 3)} METHOD`,
    ...rows.map(([type, database, user, address, method]) =>
      `${pad(type, 0)} ${pad(database, 1)} ${pad(user, 2)} ${pad(address, 3)} ${method}`,
    ),
  ];
  return `${lines.join('\n')}\n`;
}

export interface PgpassEntry {
  host: string;
  port: number | '*';
  database: string;
  user: string;
  password: string;
}

function pgpassField(value: string): string {
  // libpq reads one entry per line; there is no escape for a line break.
  if (/[\r\n]/.test(value)) throw invalid('a password file field cannot contain a line break');
  return value.replace(/\\/g, '\\\\').replace(/:/g, '\\:');
}

/** A libpq password file (`host:port:database:user:password` per line); write it with mode 0600. */
export function renderPgpass(entries: PgpassEntry[]): string {
  return entries
    .map((entry) =>
      [entry.host, String(entry.port), entry.database, entry.user, entry.password].map(pgpassField).join(':'),
    )
    .map((line) => `${line}\n`)
    .join('');
}

const CONNINFO_KEY = /^[a-z_]+$/;
const CONNINFO_BARE_VALUE = /^[A-Za-z0-9_.\-/,:@+%]+$/;

/** One libpq conninfo value: bare when plainly safe, else single-quoted with `\` and `'` escaped. */
export function quoteConninfoValue(value: string | number): string {
  const text = String(value);
  if (CONNINFO_BARE_VALUE.test(text)) return text;
  return `'${text.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

/** A libpq `key=value ...` conninfo, in the fields' insertion order. */
export function renderConninfo(fields: Record<string, string | number>): string {
  return Object.entries(fields)
    .map(([key, value]) => {
      if (!CONNINFO_KEY.test(key)) throw invalid(`"${key}" is not a libpq connection keyword`);
      return `${key}=${quoteConninfoValue(value)}`;
    })
    .join(' ');
}

/** One word for /bin/sh: single-quoted, with `'` written as `'\''`. */
export function shellQuote(word: string): string {
  return `'${word.replace(/'/g, "'\\''")}'`;
}

/**
 * The archive_command / restore_command line running `node <entry> <args...>` (pure). Words are
 * shell-quoted and `%` is doubled (postgres expands `%p`, `%f`, `%%` in these commands); the
 * placeholders given in `placeholders` are appended unquoted, as postgres expects them.
 */
export function walCommand(node: string, entry: string, args: readonly string[], placeholders: readonly ('%p' | '%f')[]): string {
  const words = [node, entry, ...args].map((word) => shellQuote(word).replace(/%/g, '%%'));
  return [...words, ...placeholders].join(' ');
}
