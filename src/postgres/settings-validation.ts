/**
 * Pure checks of postgres parameter values against the server's own description of each setting
 * (`pg_settings`: type, unit, range, enum values, context), done before anything is stored, so a
 * value that postgres would reject, or that would stop a member from starting, never reaches etcd.
 * Also: which settings pgpilot manages itself (refused), what applying a change takes (a reload,
 * or a rolling restart in an order that standbys accept), and whether a member shows a value.
 *
 * Values are parsed the way postgres parses them (guc.c parse_int/parse_real/parse_bool, units
 * case-sensitive: B kB MB GB TB, us ms s min h d), then stored in a canonical form: a bare
 * number in the base unit when no unit was given, `<number><unit>` otherwise, `true`/`false` for
 * booleans and the lower-case spelling for enums, so what postgres reads back is exactly what was
 * checked (no octal or hex surprises).
 */
import { DEFAULT_POSTGRES_PARAMETERS, type ConfValue } from './conf.js';
import { forbiddenName, parameterVerdict } from './parameter-policy.js';

/** One row of `pg_settings`, as read by `SETTINGS_SQL`. */
export interface SettingRow {
  name: string;
  /** Current value, in the base unit for numbers (`setting` column). */
  setting: string;
  unit: string | null;
  vartype: 'bool' | 'integer' | 'real' | 'string' | 'enum';
  context: string;
  minVal: string | null;
  maxVal: string | null;
  enumvals: string[] | null;
  bootVal: string | null;
  pendingRestart: boolean;
  /** The file the current value came from (null when not from a file, or not visible). */
  sourcefile: string | null;
}

/** `pg_settings` as `SettingRow` columns (superuser: sourcefile is visible). */
export const SETTINGS_SQL = `SELECT name, setting, unit, vartype, context, min_val, max_val, enumvals, boot_val, pending_restart, sourcefile
  FROM pg_settings ORDER BY name`;

interface RawSettingRow {
  name: string;
  setting: string | null;
  unit: string | null;
  vartype: string;
  context: string;
  min_val: string | null;
  max_val: string | null;
  enumvals: string[] | null;
  boot_val: string | null;
  pending_restart: boolean;
  sourcefile: string | null;
}

const VARTYPES = new Set(['bool', 'integer', 'real', 'string', 'enum']);

/** A `SETTINGS_SQL` result row as a `SettingRow` (pure; tested on recorded rows). */
export function toSettingRow(raw: RawSettingRow): SettingRow {
  return {
    name: raw.name,
    setting: raw.setting ?? '',
    unit: raw.unit,
    vartype: (VARTYPES.has(raw.vartype) ? raw.vartype : 'string') as SettingRow['vartype'],
    context: raw.context,
    minVal: raw.min_val,
    maxVal: raw.max_val,
    enumvals: raw.enumvals,
    bootVal: raw.boot_val,
    pendingRestart: raw.pending_restart,
    sourcefile: raw.sourcefile,
  };
}

export type SettingCheck =
  | {
      kind: 'valid';
      name: string;
      /** What goes into postgresql.conf (and etcd). */
      confValue: ConfValue;
      /** The value as `pg_settings.setting` will show it (base unit for numbers). */
      setting: string;
      /** Numeric value in the base unit (integer/real), else null. */
      numeric: number | null;
    }
  | { kind: 'invalid'; name: string; message: string };

const MEMORY_UNITS: Readonly<Record<string, number>> = { B: 1, kB: 1024, MB: 1024 ** 2, GB: 1024 ** 3, TB: 1024 ** 4 };
const TIME_UNITS: Readonly<Record<string, number>> = { us: 0.001, ms: 1, s: 1000, min: 60_000, h: 3_600_000, d: 86_400_000 };
const MEMORY_HINT = 'valid units are B, kB, MB, GB and TB (case-sensitive)';
const TIME_HINT = 'valid units are us, ms, s, min, h and d';

/** A base unit of pg_settings (`8kB`, `kB`, `MB`, `ms`, `s`, `min`) as a size in bytes or ms. */
function baseUnit(unit: string | null): { kind: 'memory' | 'time'; size: number } | null {
  if (unit === null || unit === '') return null;
  const match = /^(\d+)?\s*([A-Za-z]+)$/.exec(unit);
  if (match === null) return null;
  const factor = match[1] === undefined ? 1 : Number(match[1]);
  const name = match[2] ?? '';
  if (name in MEMORY_UNITS) return { kind: 'memory', size: factor * (MEMORY_UNITS[name] ?? 1) };
  if (name in TIME_UNITS) return { kind: 'time', size: factor * (TIME_UNITS[name] ?? 1) };
  return null;
}

/** A plain decimal number (no hex, no octal: "010" is ten here but eight to postgres, so it is refused). */
const NUMBER_WITH_UNIT = /^(-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?|-?\.\d+)\s*([A-Za-z]+)?$/;

/** Text of a base-unit amount in the largest unit that divides it exactly (`16` 8kB -> `128kB`). */
export function formatAmount(baseValue: number, unit: string | null): string {
  const base = baseUnit(unit);
  if (base === null || baseValue <= 0 || !Number.isInteger(baseValue)) return String(baseValue);
  const total = baseValue * base.size;
  const table = base.kind === 'memory' ? MEMORY_UNITS : TIME_UNITS;
  const names = Object.keys(table).reverse();
  for (const name of names) {
    const size = table[name] ?? 1;
    if (size >= 1 && total % size === 0) return `${total / size}${name}`;
  }
  return `${baseValue}${unit ?? ''}`;
}

/** "between 1 and 262143" for a numeric row (units spelled out). */
export function rangeText(row: SettingRow): string {
  const min = row.minVal === null ? null : Number(row.minVal);
  const max = row.maxVal === null ? null : Number(row.maxVal);
  const fmt = (n: number): string => (row.vartype === 'integer' ? formatAmount(n, row.unit) : formatReal(n, row.unit));
  if (min === null || max === null || !Number.isFinite(min) || !Number.isFinite(max)) return 'in its valid range';
  return `between ${fmt(min)} and ${fmt(max)}`;
}

function formatReal(n: number, unit: string | null): string {
  if (n >= 1e300) return 'any larger value';
  return unit === null ? String(n) : `${n}${unit}`;
}

const BOOL_WORDS: Readonly<Record<string, boolean>> = {
  on: true,
  off: false,
  true: true,
  false: false,
  yes: true,
  no: false,
  t: true,
  f: false,
  y: true,
  n: false,
  '1': true,
  '0': false,
};

function invalid(name: string, message: string): SettingCheck {
  return { kind: 'invalid', name, message };
}

/**
 * Checks `value` (as typed on the command line) for `row`'s type, unit and range. The message of
 * an invalid value names the parameter and what is allowed, e.g. "max_connections must be between
 * 1 and 262143".
 */
export function validateSetting(row: SettingRow, value: string): SettingCheck {
  const name = row.name;
  const text = value.trim();
  if (row.context === 'internal') return invalid(name, `${name} is fixed when postgres is built or initialized and cannot be changed`);
  switch (row.vartype) {
    case 'bool': {
      const parsed = BOOL_WORDS[text.toLowerCase()];
      if (parsed === undefined) return invalid(name, `${name} must be on or off (got "${value}")`);
      return { kind: 'valid', name, confValue: parsed, setting: parsed ? 'on' : 'off', numeric: null };
    }
    case 'enum': {
      const options = row.enumvals ?? [];
      const found = options.find((o) => o.toLowerCase() === text.toLowerCase());
      if (found === undefined) return invalid(name, `${name} must be one of ${options.join(', ')} (got "${value}")`);
      return { kind: 'valid', name, confValue: found, setting: found, numeric: null };
    }
    case 'string':
      // eslint-disable-next-line no-control-regex
      if (/[\u0000]/.test(value)) return invalid(name, `${name} cannot contain a NUL character`);
      return { kind: 'valid', name, confValue: text, setting: text, numeric: null };
    case 'integer':
    case 'real':
      return validateNumber(row, text, value);
  }
}

function validateNumber(row: SettingRow, text: string, original: string): SettingCheck {
  const name = row.name;
  const base = baseUnit(row.unit);
  const match = NUMBER_WITH_UNIT.exec(text);
  const what = row.vartype === 'integer' ? 'a whole number' : 'a number';
  const unitHint = base === null ? '' : ` with an optional unit (${base.kind === 'memory' ? MEMORY_HINT : TIME_HINT}; without one: ${row.unit ?? ''})`;
  if (match === null) return invalid(name, `${name} must be ${what}${unitHint} (got "${original}"); it must be ${rangeText(row)}`);
  const amount = Number(match[1]);
  const unit = match[2];
  let baseValue = amount;
  if (unit !== undefined) {
    if (base === null) return invalid(name, `${name} takes a plain number without a unit (got "${original}"); it must be ${rangeText(row)}`);
    const table = base.kind === 'memory' ? MEMORY_UNITS : TIME_UNITS;
    const size = table[unit];
    if (size === undefined) return invalid(name, `${name}: unknown unit "${unit}": ${base.kind === 'memory' ? MEMORY_HINT : TIME_HINT}`);
    baseValue = (amount * size) / base.size;
  }
  if (row.vartype === 'integer') {
    // postgres rounds a converted (or fractional) value to the nearest whole base unit.
    baseValue = Math.round(baseValue);
    if (!Number.isSafeInteger(baseValue) || Math.abs(baseValue) > 2_147_483_647) {
      return invalid(name, `${name} must be ${rangeText(row)} (got "${original}")`);
    }
  }
  const min = row.minVal === null ? -Infinity : Number(row.minVal);
  const max = row.maxVal === null ? Infinity : Number(row.maxVal);
  if (!Number.isFinite(baseValue) || baseValue < min || baseValue > max) {
    return invalid(name, `${name} must be ${rangeText(row)} (got "${original}")`);
  }
  // Without a unit an integer is stored already rounded, exactly as postgres will read it.
  const confValue: ConfValue = unit !== undefined ? `${amount}${unit}` : row.vartype === 'integer' ? baseValue : amount;
  return { kind: 'valid', name, confValue, setting: String(baseValue), numeric: baseValue };
}

/** Whether `row` (read from a member) shows the value `expected` was checked to be. */
export function settingMatches(row: SettingRow, expected: Extract<SettingCheck, { kind: 'valid' }>): boolean {
  if (expected.numeric !== null) {
    const actual = Number(row.setting);
    if (!Number.isFinite(actual)) return false;
    // pg_settings prints reals with 6 significant digits.
    const tolerance = row.vartype === 'real' ? Math.max(1e-9, Math.abs(expected.numeric) * 1e-5) : 0;
    return Math.abs(actual - expected.numeric) <= tolerance;
  }
  if (row.vartype === 'bool' || row.vartype === 'enum') return row.setting.toLowerCase() === expected.setting.toLowerCase();
  return row.setting === expected.setting;
}

/** Levenshtein distance (small strings only: parameter names). */
function distance(a: string, b: string): number {
  const previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i += 1) {
    let diagonal = previous[0] ?? 0;
    previous[0] = i;
    for (let j = 1; j <= b.length; j += 1) {
      const above = previous[j] ?? 0;
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      previous[j] = Math.min(above + 1, (previous[j - 1] ?? 0) + 1, diagonal + cost);
      diagonal = above;
    }
  }
  return previous[b.length] ?? 0;
}

/** Up to three known names close to `name` (edit distance, then containment). */
export function suggestParameters(name: string, known: readonly string[]): string[] {
  const lower = name.toLowerCase();
  const limit = Math.max(2, Math.floor(lower.length / 4));
  const scored = known
    .map((k) => ({ k, d: distance(lower, k.toLowerCase()) }))
    .filter(({ k, d }) => d <= limit || (lower.length >= 4 && k.toLowerCase().includes(lower)))
    .sort((a, b) => a.d - b.d || a.k.localeCompare(b.k));
  return scored.slice(0, 3).map(({ k }) => k);
}

export function unknownParameterMessage(name: string, known: readonly string[]): string {
  const suggestions = suggestParameters(name, known);
  return suggestions.length === 0
    ? `${name}: unknown parameter (see SELECT name FROM pg_settings)`
    : `${name}: unknown parameter; did you mean ${suggestions.join(', ')}?`;
}

/**
 * Why pgpilot refuses to let `name` be set to `check`'s value, or null. By name and for preload
 * lists, the agent's own policy (src/postgres/parameter-policy.ts: identity, files, replication
 * source, archiving, recovery, TLS, the synchronous set, code to load) — the same list every agent
 * applies when it renders postgresql.conf from etcd. Beyond it, by value, the settings pgpilot
 * relies on: streaming replicas that accept reads, pg_rewind, SCRAM passwords, the postgres.log it
 * points at, and a WAL sender and slot for every member.
 */
export function refusalFor(name: string, check: SettingCheck | null, context: { memberCount: number }): string | null {
  const lower = name.toLowerCase();
  const byName = forbiddenName(lower);
  if (byName !== null) return byName;
  if (check !== null && check.kind === 'valid') {
    const verdict = parameterVerdict(lower, check.confValue);
    if (verdict.kind === 'forbidden') return verdict.reason;
  }
  if (check === null || check.kind !== 'valid') return null;
  const v = check.setting.toLowerCase();
  const required: Record<string, () => string | null> = {
    wal_level: () => (v === 'replica' || v === 'logical' ? null : 'wal_level must be replica or logical: streaming replicas need it'),
    hot_standby: () => (v === 'on' ? null : 'hot_standby must stay on: pgpilot checks and routes to replicas through read-only connections'),
    wal_log_hints: () => (v === 'on' ? null : 'wal_log_hints must stay on: a former leader rejoins with pg_rewind'),
    password_encryption: () => (v === 'scram-sha-256' ? null : 'password_encryption must stay scram-sha-256: pg_hba.conf accepts SCRAM only'),
    logging_collector: () => (v === 'off' ? null : "logging_collector must stay off: postgres logs to each node's postgres.log"),
    max_wal_senders: () =>
      (check.numeric ?? 0) >= context.memberCount + 2 ? null : `max_wal_senders must be at least ${context.memberCount + 2} (one per member, plus two for backups and clones)`,
    max_replication_slots: () =>
      (check.numeric ?? 0) >= context.memberCount + 1 ? null : `max_replication_slots must be at least ${context.memberCount + 1} (one per member, plus one spare)`,
  };
  return required[lower]?.() ?? null;
}

/**
 * Settings that a hot standby needs at least as high as its primary's (PostgreSQL checks them at
 * standby start-up against the values the primary logged in its WAL, and pauses replay when a
 * primary raises one above the standby's). Raising one: standbys first, primary last. Lowering
 * one: primary first (its lower value reaches the WAL), then the standbys.
 */
export const STANDBY_MINIMUM_PARAMETERS: ReadonlySet<string> = new Set([
  'max_connections',
  'max_worker_processes',
  'max_wal_senders',
  'max_prepared_transactions',
  'max_locks_per_transaction',
]);

export interface ParameterChange {
  name: string;
  context: string;
  /** Current value as SHOW prints it on the leader (null: not set / unknown placeholder). */
  from: string | null;
  /** New value as stored (null: the override is removed and the default applies). */
  to: string | null;
  /** Numbers in the base unit, when both are known (to tell a raise from a lowering). */
  fromNumeric: number | null;
  toNumeric: number | null;
  needsRestart: boolean;
}

export type ApplyPlan =
  | { kind: 'nothing' }
  | { kind: 'reload' }
  | { kind: 'rolling-restart'; order: 'replicas-first' | 'leader-first'; because: string[] }
  | { kind: 'conflict'; message: string };

/** Contexts a reload takes effect for (`backend`/`superuser-backend`: new sessions). */
const RELOADABLE_CONTEXTS = new Set(['sighup', 'superuser', 'user', 'superuser-backend', 'backend']);

export function needsRestart(context: string): boolean {
  return !RELOADABLE_CONTEXTS.has(context);
}

/**
 * What applying `changes` takes. Only `postmaster` settings need a restart; the order keeps every
 * standby at or above its primary for STANDBY_MINIMUM_PARAMETERS: raising them restarts the
 * replicas first, then switches over and restarts the former leader; lowering one restarts the
 * leader in place first (a short write outage), then the replicas. Raising one while lowering
 * another cannot keep the rule in any order: refused (apply them in two updates).
 */
export function planApply(changes: readonly ParameterChange[]): ApplyPlan {
  if (changes.length === 0) return { kind: 'nothing' };
  const restarting = changes.filter((c) => c.needsRestart);
  if (restarting.length === 0) return { kind: 'reload' };
  const constrained = restarting.filter((c) => STANDBY_MINIMUM_PARAMETERS.has(c.name) && c.fromNumeric !== null && c.toNumeric !== null);
  const lowered = constrained.filter((c) => (c.toNumeric ?? 0) < (c.fromNumeric ?? 0)).map((c) => c.name);
  const raised = constrained.filter((c) => (c.toNumeric ?? 0) > (c.fromNumeric ?? 0)).map((c) => c.name);
  const because = restarting.map((c) => c.name);
  if (lowered.length > 0 && raised.length > 0) {
    return {
      kind: 'conflict',
      message: `${raised.join(', ')} would go up while ${lowered.join(', ')} would go down: standbys need these at least as high as the primary's, and no restart order keeps that for both; apply the increase and the decrease in two updates`,
    };
  }
  return { kind: 'rolling-restart', order: lowered.length > 0 ? 'leader-first' : 'replicas-first', because };
}

export function describePlan(plan: ApplyPlan): string {
  switch (plan.kind) {
    case 'nothing':
      return 'nothing to apply';
    case 'reload':
      return 'every member rewrites postgresql.conf and reloads (no restart)';
    case 'conflict':
      return plan.message;
    case 'rolling-restart': {
      const verb = plan.because.length === 1 ? 'needs' : 'need';
      return plan.order === 'replicas-first'
        ? `${plan.because.join(', ')} ${verb} a restart of every member (rolling: replicas, switchover, leader)`
        : `${plan.because.join(', ')} ${verb} a restart of every member (rolling, leader first: lowering ${[...STANDBY_MINIMUM_PARAMETERS].filter((p) => plan.because.includes(p)).join(', ')} must reach the primary before its standbys; the leader restarts in place, a short write outage, then the replicas)`;
    }
  }
}

/** pgpilot's defaults merged with the cluster's overrides, sorted by name, each marked (`config show`). */
export function effectiveParameters(overrides: Readonly<Record<string, ConfValue>>): Array<{ name: string; value: ConfValue; source: 'default' | 'override' }> {
  const names = [...new Set([...Object.keys(DEFAULT_POSTGRES_PARAMETERS), ...Object.keys(overrides)])].sort();
  return names.map((name) => {
    const override = overrides[name];
    return override !== undefined ? { name, value: override, source: 'override' as const } : { name, value: DEFAULT_POSTGRES_PARAMETERS[name] ?? '', source: 'default' as const };
  });
}
