/**
 * The one allow/deny policy for postgres parameters that come from etcd (`postgresql.parameters`
 * in /config). Anyone who can write etcd can write there, so the agent applies this policy itself
 * each time it renders postgresql.conf (src/agent/compose.ts, and again inside
 * `renderPostgresqlConf`), and the CLI's refusals (settings-validation.ts `refusalFor`) start from
 * it: one list, two callers.
 *
 * Invariant: nothing that can run code, load a library, move a file, change an address or port,
 * or change what pgpilot manages itself (identity, replication source, archiving, recovery, TLS,
 * the synchronous set) is ever rendered from etcd, neither into a file nor as a `-c` option. The
 * only exception is a preload list made solely of libraries of the extensions pgpilot knows
 * (`KNOWN_PRELOAD_LIBRARIES`, what `extensions enable` writes). A forbidden entry is dropped (the
 * rest of the config applies) and reported by the caller; a name that is not a postgres
 * parameter name, or a value postgresql.conf cannot hold safely, is forbidden too.
 */
import { KNOWN_PRELOAD_LIBRARIES, libraryName, parseLibraryList } from './extensions.js';
import type { ConfValue } from './conf.js';

/** Settings pgpilot derives from the typed input (node identity, files, replication source, archive, recovery). */
export const MANAGED_PARAMETERS: ReadonlySet<string> = new Set([
  'port',
  'listen_addresses',
  'unix_socket_directories',
  'cluster_name',
  'primary_conninfo',
  'primary_slot_name',
  'recovery_target_timeline',
  'recovery_target',
  'recovery_target_time',
  'recovery_target_lsn',
  'recovery_target_xid',
  'recovery_target_name',
  'recovery_target_action',
  'recovery_target_inclusive',
  'restore_command',
  'archive_mode',
  'archive_command',
  'archive_library',
  'data_directory',
  'config_file',
  'hba_file',
  'ident_file',
  'include',
  'include_if_exists',
  'include_dir',
]);

/** Archiving and recovery settings outside MANAGED_PARAMETERS that the WAL archive (backup config) owns too. */
const BACKUP_OWNED: ReadonlySet<string> = new Set(['archive_timeout', 'archive_cleanup_command', 'recovery_end_command', 'promote_trigger_file']);

/** Settings that name a file or directory, load code, or run a command: never from etcd. */
const FILES_AND_CODE: ReadonlySet<string> = new Set([
  'external_pid_file',
  'log_directory',
  'log_filename',
  'krb_server_keyfile',
  'dynamic_library_path',
  'jit_provider',
  'stats_temp_directory',
  'data_directory_mode',
]);

export const PRELOAD_SETTINGS: ReadonlySet<string> = new Set(['shared_preload_libraries', 'session_preload_libraries', 'local_preload_libraries']);

const PARAMETER_NAME = /^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$/;
/** Longest value rendered (a real setting is far shorter; a huge one is an attack or a bug). */
const MAX_VALUE_LENGTH = 4_096;

export type ParameterVerdict = { kind: 'allowed'; name: string } | { kind: 'forbidden'; name: string; reason: string };

/** The lower-case parameter name, or null when `raw` is not a postgres parameter name. */
export function parameterName(raw: string): string | null {
  const lower = raw.trim().toLowerCase();
  return PARAMETER_NAME.test(lower) ? lower : null;
}

/** Why `name` (lower-case) may never be set from etcd, whatever its value; null: the name is settable. */
export function forbiddenName(name: string): string | null {
  if (MANAGED_PARAMETERS.has(name) || name.startsWith('primary_') || name.startsWith('recovery_target') || name.startsWith('include')) {
    return `${name} is managed by pgpilot (node identity, replication source or recovery) and cannot be set`;
  }
  if (name.startsWith('archive_') || name.startsWith('restore_') || BACKUP_OWNED.has(name)) {
    return `${name} is managed by pgpilot's WAL archive; change the backup settings with pgpilot backup config`;
  }
  if (name === 'synchronous_standby_names') {
    return 'synchronous_standby_names is managed by pgpilot in sync mode; use pgpilot config update NAME --synchronous quorum|off';
  }
  if (name.startsWith('ssl')) return `${name} is managed by pgpilot (TLS files and settings) and cannot be set`;
  if (name.startsWith('unix_socket_')) return `${name} is managed by pgpilot (the node's socket) and cannot be set`;
  if (FILES_AND_CODE.has(name)) return `${name} names a file, a directory or code to load: pgpilot never sets it from the cluster config`;
  return null;
}

/** A preload list is allowed only when every library in it is a known extension's (what `extensions enable` writes). */
function preloadRefusal(name: string, value: ConfValue): string | null {
  if (typeof value !== 'string') return `${name} must be a list of library names`;
  const unknown = parseLibraryList(value).filter((entry) => {
    const bare = libraryName(entry);
    // `$libdir/name` and `name` load the same library; a path or anything else is refused.
    return !KNOWN_PRELOAD_LIBRARIES.has(bare) || !(entry === bare || entry === `$libdir/${bare}`);
  });
  if (unknown.length === 0) return null;
  return `${name}: ${unknown.join(', ')} ${unknown.length === 1 ? 'is not a library' : 'are not libraries'} of a known extension (pgpilot extensions enable preloads ${[...KNOWN_PRELOAD_LIBRARIES].sort().join(', ')})`;
}

function valueRefusal(name: string, value: unknown): string | null {
  if (typeof value === 'boolean') return null;
  if (typeof value === 'number') return Number.isFinite(value) ? null : `${name}: ${String(value)} is not a finite number`;
  if (typeof value !== 'string') return `${name}: a value must be a string, a number or a boolean`;
  if (value.length > MAX_VALUE_LENGTH) return `${name}: the value is longer than ${MAX_VALUE_LENGTH} characters`;
  // eslint-disable-next-line no-control-regex
  if (/[\u0000]/.test(value)) return `${name}: the value contains a NUL character`;
  return null;
}

/** The verdict for one entry of `postgresql.parameters` as read from etcd (or typed on the CLI). */
export function parameterVerdict(rawName: string, value: unknown): ParameterVerdict {
  const name = parameterName(rawName);
  if (name === null) return { kind: 'forbidden', name: rawName, reason: `${JSON.stringify(rawName.slice(0, 80))} is not a valid postgres parameter name` };
  const byName = forbiddenName(name);
  if (byName !== null) return { kind: 'forbidden', name, reason: byName };
  const byValue = valueRefusal(name, value);
  if (byValue !== null) return { kind: 'forbidden', name, reason: byValue };
  if (PRELOAD_SETTINGS.has(name)) {
    const preload = preloadRefusal(name, value as ConfValue);
    if (preload !== null) return { kind: 'forbidden', name, reason: preload };
  }
  return { kind: 'allowed', name };
}

export interface RejectedParameter {
  name: string;
  reason: string;
}

export interface ScreenedParameters {
  /** The allowed entries, by lower-case name (a later spelling of the same name wins). */
  parameters: Record<string, ConfValue>;
  /** Every dropped entry, in input order. */
  rejected: RejectedParameter[];
}

/** Splits parameters read from etcd into what may be rendered and what is dropped (with why). */
export function screenParameters(parameters: Readonly<Record<string, unknown>>): ScreenedParameters {
  // A Map, then fromEntries: a key such as `__proto__` stays a plain entry, never a prototype.
  const allowed = new Map<string, ConfValue>();
  const rejected: RejectedParameter[] = [];
  for (const [rawName, value] of Object.entries(parameters)) {
    const verdict = parameterVerdict(rawName, value);
    if (verdict.kind === 'forbidden') rejected.push({ name: verdict.name, reason: verdict.reason });
    else allowed.set(verdict.name, value as ConfValue);
  }
  return { parameters: Object.fromEntries(allowed), rejected };
}
