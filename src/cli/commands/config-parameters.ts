/**
 * Postgres parameters of a cluster, changed through etcd: the one path that `config update --set`,
 * `extensions enable` and `scale vm` share. Three steps, nothing changed before the last:
 * 1. prepare: read `pg_settings` on the leader and check every value (type, unit, range, enum;
 *    src/postgres/settings-validation.ts), check user-settable values with the server's own check
 *    hooks (`set_config` in a rolled-back transaction) and preload libraries on every running
 *    member (a missing one would stop postgres from starting), refuse what pgpilot manages, and
 *    plan what applying takes (reload, or a rolling restart in an order standbys accept);
 * 2. confirm: a rolling restart needs --yes or a "y" at a terminal;
 * 3. apply: store `postgresql.parameters` in /config with a compare-and-set (every agent renders
 *    postgresql.conf from it at each start, so members started later get it too), then ask each
 *    agent to reload (POST /reload) or restart (POST /restart, one member at a time, with a
 *    switchover), and check with pg_settings on every member that it shows the new value.
 * If the first member restarted does not come back with the new values, the previous config is
 * written back (that member then starts with it) and the command fails saying so.
 */
import { callAgent, type AgentAuth } from '../../api/agent-client.js';
import { storedConfigOrThrow } from '../../config/stored-config.js';
import { askOnTerminal } from '../confirm.js';
import { clusterKeys } from '../../dcs/keys.js';
import { dynamicConfigSchema, type DynamicConfig, type ClusterSecrets } from '../../config/schema.js';
import { DEFAULT_POSTGRES_PARAMETERS, type ConfValue } from '../../postgres/conf.js';
import pg from 'pg';
import { verifyFullSsl, type PgClient } from '../../postgres/queries.js';
import {
  SETTINGS_SQL,
  describePlan,
  needsRestart,
  planApply,
  refusalFor,
  settingMatches,
  toSettingRow,
  unknownParameterMessage,
  validateSetting,
  type ApplyPlan,
  type ParameterChange,
  type SettingCheck,
  type SettingRow,
} from '../../postgres/settings-validation.js';
import { PRELOAD_SETTINGS } from '../../postgres/parameter-policy.js';
import { extensionFacts, gucPrefixOf, libraryInstalled, libraryName, parseLibraryList, installAdvice, packageIsGuess } from '../../postgres/extensions.js';
import type { OperationDeps } from '../../operations/operation-deps.js';
import type { ClusterHandle } from '../../cluster/cluster-handle.js';
import { openClusterHandle } from '../../cluster/open-cluster-handle.js';
import type { ClusterStatus, MemberStatus } from '../../operations/cluster-status.js';
import { PgpilotError, errorMessage } from '../../shared/errors.js';
import { withAppContext } from '../../operations/app-context.js';
import { printJson, renderTable, type Output } from '../output.js';
import { applyConfigUpdates, type ConfigChange, type ConfigUpdates } from './config.js';
import { restartMember } from '../../operations/rolling-restart.js';
import { switchover } from '../../operations/switchover.js';

const CONNECT_TIMEOUT_MS = 5_000;
const QUERY_TIMEOUT_MS = 10_000;
/** How long a member may take to show a reloaded value (postgres handles SIGHUP asynchronously). */
const RELOAD_VISIBLE_TIMEOUT_MS = 15_000;
const POLL_MS = 200;

/** pgpilot's own settings, settable with --set too (camelCase as in `config show`). */
const PGPILOT_KEYS: Readonly<Record<keyof ConfigUpdates, 'string' | 'boolean' | 'integer'>> = {
  synchronous: 'string',
  synchronousStrict: 'boolean',
  synchronousNodeCount: 'integer',
  ttlSeconds: 'integer',
  loopWaitMs: 'integer',
  maximumLagOnFailoverBytes: 'integer',
  failsafe: 'boolean',
};

export interface ParameterRequest {
  home: string;
  name: string;
  /** `--context FILE` (else PGPILOT_CONTEXT, else the local cluster). */
  context?: string | undefined;
  /** `key=value` pairs in the order given (a later one for the same key wins). */
  set: ReadonlyArray<readonly [string, string]>;
  /** Parameters whose override is removed (the pgpilot default, else postgres' own, applies again). */
  reset: readonly string[];
  /** Typed pgpilot settings from the other `config update` flags. */
  pgpilot?: ConfigUpdates;
}

export interface ApplyOptions {
  yes: boolean;
  dryRun: boolean;
  json: boolean;
  timeoutSeconds: number;
}

/** One requested parameter, changed or not (the plan table shows both). */
export interface PlannedParameter {
  name: string;
  context: string;
  /** As SHOW prints it on the leader now (null: an unknown placeholder of a library not loaded yet). */
  current: string | null;
  /** As stored (null: override removed). */
  next: string | null;
  /** Differs on at least one running member. */
  changed: boolean;
  needsRestart: boolean;
}

export interface Prepared {
  /** How the cluster is reached (local or through a context). */
  handle: ClusterHandle;
  cluster: string;
  secrets: ClusterSecrets;
  ca: string;
  storedRaw: string | null;
  current: DynamicConfig;
  next: DynamicConfig;
  pgpilotChanges: ConfigChange[];
  parameters: PlannedParameter[];
  plan: ApplyPlan;
  /** Per parameter: what every member must show afterwards (null: cannot be checked beforehand). */
  expected: Map<string, Extract<SettingCheck, { kind: 'valid' }> | null>;
  warnings: string[];
}

/** `key=value` (the first `=` splits; the value may contain more). */
export function parseSetPair(text: string): [string, string] {
  const at = text.indexOf('=');
  if (at <= 0) {
    throw new PgpilotError('INPUT_INVALID', `--set ${text}: expected key=value`, { hint: 'e.g. --set max_connections=200 --set work_mem=16MB', exitCode: 2 });
  }
  return [text.slice(0, at).trim(), text.slice(at + 1)];
}

function parsePgpilotValue(key: keyof ConfigUpdates, value: string): string | number | boolean {
  const text = value.trim();
  switch (PGPILOT_KEYS[key]) {
    case 'boolean': {
      const lower = text.toLowerCase();
      if (['true', 'on', 'yes', '1'].includes(lower)) return true;
      if (['false', 'off', 'no', '0'].includes(lower)) return false;
      return text; // the schema reports it
    }
    case 'integer':
      return /^-?\d+$/.test(text) ? Number(text) : text;
    case 'string':
      return text;
  }
}

/** Splits --set pairs into pgpilot's own settings and postgres parameters (lower-cased names). */
export function splitSetPairs(pairs: ReadonlyArray<readonly [string, string]>): { pgpilot: ConfigUpdates; postgres: Map<string, string> } {
  const pgpilot: Record<string, unknown> = {};
  const postgres = new Map<string, string>();
  for (const [key, value] of pairs) {
    if (key in PGPILOT_KEYS) pgpilot[key] = parsePgpilotValue(key as keyof ConfigUpdates, value);
    else postgres.set(key.toLowerCase(), value);
  }
  return { pgpilot, postgres };
}

function running(status: ClusterStatus): MemberStatus[] {
  return status.members.filter((m) => m.role === 'primary' || m.role === 'replica');
}

/**
 * A superuser connection to `member` WITHOUT session settings of its own (no statement_timeout in
 * the startup packet, unlike connectLocal): what it shows for a user-settable parameter is what the
 * server's configuration gives every new session, which is what is checked here. Each query is
 * bounded on the client side instead.
 */
async function connectMember(member: MemberStatus, secrets: ClusterSecrets, ca: string): Promise<PgClient> {
  const client = new pg.Client({
    ssl: verifyFullSsl(ca),
    host: member.host,
    port: member.port,
    user: secrets.superuser.name,
    password: secrets.superuser.password,
    database: 'postgres',
    application_name: 'pgpilot-cli',
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    query_timeout: QUERY_TIMEOUT_MS,
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (error) {
    await client.end().catch(() => undefined);
    throw new PgpilotError('POSTGRES_FAILED', `could not connect to ${member.name}: ${errorMessage(error)}`, { retryable: true, cause: error });
  }
  return client;
}

async function readRows(client: PgClient, names?: readonly string[]): Promise<Map<string, SettingRow & { shown: string }>> {
  const sql =
    names === undefined
      ? `SELECT s.*, current_setting(s.name) AS shown FROM (${SETTINGS_SQL}) s`
      : `SELECT s.*, current_setting(s.name) AS shown FROM (${SETTINGS_SQL}) s WHERE lower(s.name) = ANY($1::text[])`;
  const result = await client.query<Parameters<typeof toSettingRow>[0] & { shown: string }>(sql, names === undefined ? [] : [names]);
  // Keyed by the lower-case name: pg_settings spells a few in mixed case (TimeZone, DateStyle).
  return new Map(result.rows.map((raw) => [raw.name.toLowerCase(), { ...toSettingRow(raw), shown: raw.shown }]));
}

/** Runs `fn` on every running member with a superuser connection (null when it cannot connect). */
async function onEveryMember<T>(members: readonly MemberStatus[], secrets: ClusterSecrets, ca: string, fn: (client: PgClient, member: MemberStatus) => Promise<T>): Promise<Map<string, T | null>> {
  const results = new Map<string, T | null>();
  for (const member of members) {
    let client: PgClient | null = null;
    try {
      client = await connectMember(member, secrets, ca);
      results.set(member.name, await fn(client, member));
    } catch {
      results.set(member.name, null);
    } finally {
      await client?.end().catch(() => undefined);
    }
  }
  return results;
}

/** The server's own check of a user-settable value (check hooks: time zones, search_path syntax, ...). */
async function serverAccepts(client: PgClient, name: string, value: ConfValue): Promise<string | null> {
  const text = typeof value === 'boolean' ? (value ? 'on' : 'off') : String(value);
  try {
    await client.query('BEGIN');
    await client.query('SELECT set_config($1, $2, true)', [name, text]);
    return null;
  } catch (error) {
    return errorMessage(error);
  } finally {
    await client.query('ROLLBACK').catch(() => undefined);
  }
}

/** Steps 1 of 3: read, check and plan. Changes nothing. */
export async function prepareChanges(request: ParameterRequest): Promise<Prepared> {
  const { pgpilot: fromSet, postgres } = splitSetPairs(request.set);
  const resets = request.reset.map((r) => r.trim().toLowerCase());
  for (const name of resets) {
    if (postgres.has(name)) throw new PgpilotError('INPUT_INVALID', `${name} is both set and reset`, { hint: 'use one of --set and --reset per parameter', exitCode: 2 });
  }
  return withAppContext(await openClusterHandle(request), async (ctx) => {
    const key = ctx.keys.config;
    const storedRaw = await ctx.dcs.get(key);
    const current = storedConfigOrThrow(storedRaw, ctx.cluster);
    const { next: withPgpilot, changes: pgpilotChanges } = applyConfigUpdates(current, { ...fromSet, ...request.pgpilot });
    // The leader's settings as every new session gets them (ctx.client has session settings of its own).
    const leaderClient = await connectMember(ctx.leader, ctx.secrets, ctx.ca);
    const rows = await readRows(leaderClient).finally(() => leaderClient.end().catch(() => undefined));
    const known = [...rows.values()].map((r) => r.name);
    const members = running(ctx.status);
    const problems: string[] = [];
    const warnings: string[] = [];
    const checks = new Map<string, Extract<SettingCheck, { kind: 'valid' }> | null>();
    const overrides: Record<string, ConfValue> = { ...current.postgresql.parameters };

    // The preload list as it will be, to accept settings of a library that is being added now.
    const preloadAfter = postgres.get('shared_preload_libraries') ?? rows.get('shared_preload_libraries')?.setting ?? '';
    const preloadNow = new Set(parseLibraryList(rows.get('shared_preload_libraries')?.setting ?? '').map(libraryName));
    const addedPrefixes = new Set(parseLibraryList(preloadAfter).map(libraryName).filter((l) => !preloadNow.has(l)).map(gucPrefixOf));

    for (const [name, value] of postgres) {
      const row = rows.get(name);
      const managed = refusalFor(name, null, { memberCount: ctx.handle.nodes.length });
      if (managed !== null) {
        problems.push(managed);
        continue;
      }
      if (row === undefined) {
        const prefix = name.includes('.') ? name.slice(0, name.indexOf('.')) : null;
        if (prefix !== null && addedPrefixes.has(prefix)) {
          // A setting of a library loaded only after the restart: postgres checks it then.
          warnings.push(`${name} belongs to a library that is preloaded by this change: postgres checks its value only at the restart`);
          checks.set(name, { kind: 'valid', name, confValue: value.trim(), setting: value.trim(), numeric: null });
          overrides[name] = value.trim();
          continue;
        }
        problems.push(unknownParameterMessage(name, known));
        continue;
      }
      const check = validateSetting(row, value);
      if (check.kind === 'invalid') {
        problems.push(check.message);
        continue;
      }
      const refused = refusalFor(name, check, { memberCount: ctx.handle.nodes.length });
      if (refused !== null) {
        problems.push(refused);
        continue;
      }
      if (row.context === 'user' || row.context === 'superuser') {
        const rejected = await serverAccepts(ctx.client, name, check.confValue);
        if (rejected !== null) {
          problems.push(`${name}: postgres rejects "${value}": ${rejected}`);
          continue;
        }
      }
      checks.set(name, check);
      overrides[name] = check.confValue;
    }

    for (const name of resets) {
      if (!(name in current.postgresql.parameters)) {
        warnings.push(`${name} has no override to reset`);
        continue;
      }
      delete overrides[name];
      const row = rows.get(name);
      const fallback = DEFAULT_POSTGRES_PARAMETERS[name];
      if (row === undefined) {
        checks.set(name, null);
        continue;
      }
      const text = fallback === undefined ? (row.bootVal ?? '') : typeof fallback === 'boolean' ? (fallback ? 'on' : 'off') : String(fallback);
      const check = validateSetting(row, text);
      checks.set(name, check.kind === 'valid' ? check : null);
    }

    // Libraries to preload must exist on every member, or its postgres would not start.
    for (const name of [...checks.keys()].filter((n) => PRELOAD_SETTINGS.has(n))) {
      const check = checks.get(name);
      if (check === null || check === undefined) continue;
      const libraries = parseLibraryList(check.setting);
      const missing = await onEveryMember(members, ctx.secrets, ctx.ca, async (client) => {
        const absent: string[] = [];
        for (const lib of libraries) if (!(await libraryInstalled(client, lib))) absent.push(libraryName(lib));
        return absent;
      });
      const byLibrary = new Map<string, string[]>();
      for (const [node, absent] of missing) {
        if (absent === null) warnings.push(`could not check the libraries on ${node}`);
        for (const lib of absent ?? []) byLibrary.set(lib, [...(byLibrary.get(lib) ?? []), node]);
      }
      for (const [lib, nodes] of byLibrary) {
        const facts = extensionFacts(lib, Math.floor(Number(rows.get('server_version_num')?.setting ?? '150000') / 10_000));
        problems.push(`${name}: library ${lib} is not installed on ${nodes.join(', ')} (postgres would not start); ${installAdvice(facts, packageIsGuess(lib))}`);
      }
    }

    if (problems.length > 0) {
      throw new PgpilotError('INPUT_INVALID', problems.join('; '), { hint: 'nothing was changed', exitCode: 2 });
    }

    // What every running member shows now, for the names involved: a change that every member
    // already shows needs no reload or restart (a re-run after an interrupted rollout only
    // touches the members still behind).
    const names = [...checks.keys()];
    const live = await onEveryMember(members, ctx.secrets, ctx.ca, (client) => readRows(client, names));
    for (const [node, rowsOfNode] of live) if (rowsOfNode === null) warnings.push(`could not read the settings of ${node}; it is treated as not up to date`);
    const parameters: PlannedParameter[] = [];
    const changes: ParameterChange[] = [];
    for (const name of names) {
      const check = checks.get(name) ?? null;
      const row = rows.get(name);
      const context = row?.context ?? 'postmaster';
      const changed =
        check === null ||
        [...live.values()].some((memberRows) => {
          const memberRow = memberRows?.get(name);
          return memberRow === undefined || !settingMatches(memberRow, check);
        });
      const stored = overrides[name];
      const entry: PlannedParameter = {
        name,
        context,
        current: row?.shown ?? null,
        next: stored === undefined ? null : String(stored),
        changed,
        needsRestart: needsRestart(context),
      };
      parameters.push(entry);
      if (!changed) continue;
      const leaderNumeric = row !== undefined && (row.vartype === 'integer' || row.vartype === 'real') ? Number(row.setting) : null;
      changes.push({
        name,
        context,
        from: entry.current,
        to: entry.next,
        fromNumeric: leaderNumeric,
        toNumeric: check?.numeric ?? null,
        needsRestart: entry.needsRestart,
      });
    }
    const plan = planApply(changes);
    if (plan.kind === 'conflict') throw new PgpilotError('INPUT_INVALID', plan.message, { hint: 'nothing was changed', exitCode: 2 });
    const next = dynamicConfigSchema.parse({ ...withPgpilot, postgresql: { ...withPgpilot.postgresql, parameters: overrides } });
    return {
      handle: ctx.handle,
      cluster: ctx.cluster,
      secrets: ctx.secrets,
      ca: ctx.ca,
      storedRaw,
      current,
      next,
      pgpilotChanges,
      parameters,
      plan,
      expected: checks,
      warnings,
    };
  });
}

function emptyAsQuotes(value: string): string {
  return value === '' ? "''" : value;
}

/** The plan as a table: SETTING, CURRENT, NEW, APPLY. */
export function renderPlan(prepared: Prepared): string {
  const rows = [
    ...prepared.pgpilotChanges.map((c) => [c.key, JSON.stringify(c.from), JSON.stringify(c.to), 'pgpilot setting (agents read it next loop)']),
    ...prepared.parameters.map((p) => [
      p.name,
      p.current === null ? '(not set)' : emptyAsQuotes(p.current),
      p.next === null ? '(default)' : emptyAsQuotes(p.next),
      !p.changed ? 'unchanged' : p.needsRestart ? 'restart' : 'reload',
    ]),
  ];
  return renderTable(['SETTING', 'CURRENT', 'NEW', 'APPLY'], rows);
}

function askYesNo(question: string): Promise<boolean> {
  return askOnTerminal(`${question} [y/N] `, (answer) => /^y(es)?$/i.test(answer));
}

export interface MemberSettings {
  name: string;
  role: string;
  /** Parameter -> value as SHOW prints it (null: not readable). */
  settings: Record<string, string | null>;
}

export interface ParameterOutcome {
  cluster: string;
  dryRun: boolean;
  applied: boolean;
  plan: ApplyPlan;
  changes: Array<{ key: string; from: unknown; to: unknown; apply: string }>;
  warnings: string[];
  members: MemberSettings[];
}

function outcomeOf(prepared: Prepared, dryRun: boolean, applied: boolean, members: MemberSettings[]): ParameterOutcome {
  return {
    cluster: prepared.cluster,
    dryRun,
    applied,
    plan: prepared.plan,
    changes: [
      ...prepared.pgpilotChanges.map((c) => ({ key: c.key, from: c.from, to: c.to, apply: 'pgpilot' })),
      ...prepared.parameters.map((p) => ({ key: p.name, from: p.current, to: p.next, apply: !p.changed ? 'unchanged' : p.needsRestart ? 'restart' : 'reload' })),
    ],
    warnings: prepared.warnings,
    members,
  };
}

/** Which expected values `member` does not show yet (names with what it shows and why). */
async function mismatchesOn(member: MemberStatus, prepared: Prepared): Promise<string[] | null> {
  const names = [...prepared.expected.keys()];
  let client: PgClient | null = null;
  try {
    client = await connectMember(member, prepared.secrets, prepared.ca);
    const rows = await readRows(client, names);
    const wrong: string[] = [];
    for (const [name, expected] of prepared.expected) {
      if (expected === null) continue;
      const row = rows.get(name);
      if (row !== undefined && settingMatches(row, expected)) continue;
      const why =
        row === undefined
          ? 'unknown to this server'
          : row.sourcefile?.endsWith('postgresql.auto.conf') === true
            ? `overridden by ALTER SYSTEM in postgresql.auto.conf (run ALTER SYSTEM RESET ${name} there)`
            : row.pendingRestart
              ? 'waiting for a restart'
              : `shows ${row.shown}`;
      wrong.push(`${name} ${why}`);
    }
    return wrong;
  } catch {
    return null;
  } finally {
    await client?.end().catch(() => undefined);
  }
}

/** Waits (bounded) until `member` shows every expected value; the remaining differences otherwise. */
async function waitMatches(member: MemberStatus, prepared: Prepared, deps: OperationDeps, timeoutMs: number): Promise<string[]> {
  const deadlineMs = deps.clock.nowMs() + timeoutMs;
  for (;;) {
    const wrong = await mismatchesOn(member, prepared);
    if (wrong !== null && wrong.length === 0) return [];
    if (deps.clock.nowMs() >= deadlineMs) return wrong ?? ['postgres did not accept a connection'];
    await deps.clock.sleep(POLL_MS);
  }
}

async function postToAgent(member: MemberStatus, route: string, auth: AgentAuth): Promise<{ ok: boolean; detail: string }> {
  try {
    const response = await callAgent(member.apiUrl, route, { method: 'POST', token: auth.token, ca: auth.ca, timeoutMs: 30_000 });
    return { ok: response.ok, detail: `HTTP ${response.status} ${response.text.slice(0, 200)}` };
  } catch (error) {
    return { ok: false, detail: errorMessage(error) };
  }
}

/** Writes `prepared.next` over the value read at prepare time; a concurrent change is refused. */
async function store(prepared: Prepared, from: string | null, value: string): Promise<void> {
  const { dcs } = await prepared.handle.openDcs();
  const key = clusterKeys(prepared.cluster).config;
  try {
    const written = from === null ? await dcs.createIfAbsent(key, value) : await dcs.replaceIfEquals(key, from, value);
    if (!written) {
      throw new PgpilotError('INPUT_INVALID', `the config of ${prepared.cluster} changed while it was being updated`, {
        hint: 'run the command again',
        retryable: true,
        exitCode: 2,
      });
    }
  } finally {
    await dcs.close().catch(() => undefined);
  }
}

function nodeLog(prepared: Prepared, node: string): string {
  return prepared.handle.local?.manifest.nodes.find((n) => n.name === node)?.postgresLogFile ?? `${node}'s postgres.log`;
}

/**
 * Steps 2 and 3: confirm (when a restart is needed), store, apply, verify. Prints the plan and the
 * result unless `json` (then the caller prints the returned outcome).
 */
export async function applyPrepared(prepared: Prepared, options: ApplyOptions, deps: OperationDeps, output: Output): Promise<ParameterOutcome> {
  const anything = prepared.pgpilotChanges.length > 0 || prepared.parameters.some((p) => p.changed) || JSON.stringify(prepared.current) !== JSON.stringify(prepared.next);
  if (!options.json) {
    if (prepared.pgpilotChanges.length + prepared.parameters.length > 0) output.out(renderPlan(prepared));
    for (const warning of prepared.warnings) output.err(`warning: ${warning}`);
    if (prepared.plan.kind !== 'nothing') output.out(`plan: ${describePlan(prepared.plan)}`);
  }
  if (options.dryRun || !anything) {
    if (!options.json) output.out(options.dryRun ? 'dry run: nothing was changed' : 'nothing changed (the cluster already has these values)');
    return outcomeOf(prepared, options.dryRun, false, []);
  }
  if (prepared.plan.kind === 'rolling-restart' && !options.yes) {
    const ok = await askYesNo(`This restarts postgres on every member of ${prepared.cluster}, one at a time${prepared.plan.order === 'replicas-first' ? ', with a switchover' : ', the leader first (a short write outage)'}. Go on?`);
    if (!ok) {
      throw new PgpilotError('CONFIRMATION_REQUIRED', `applying this needs a rolling restart of ${prepared.cluster}; nothing was changed`, {
        hint: 'run it again with --yes (or --dry-run to only see the plan)',
        exitCode: 2,
      });
    }
  }
  const nextRaw = JSON.stringify(prepared.next);
  await store(prepared, prepared.storedRaw, nextRaw);
  deps.progress(`stored in etcd: members started from now on use the new settings`);
  const token: AgentAuth = { token: prepared.secrets.apiToken, ca: prepared.ca };
  switch (prepared.plan.kind) {
    case 'nothing':
      break;
    case 'reload':
      await applyByReload(prepared, deps, token);
      break;
    case 'rolling-restart':
      await applyByRollingRestart(prepared, prepared.plan.order, options, deps, nextRaw);
      break;
    case 'conflict':
      throw new PgpilotError('INTERNAL', 'a conflicting plan reached apply');
  }
  const members = await memberSettings(prepared);
  const outcome = outcomeOf(prepared, false, true, members);
  if (!options.json && prepared.expected.size > 0) {
    const names = [...prepared.expected.keys()];
    output.out(renderTable(['NODE', 'ROLE', ...names], members.map((m) => [m.name, m.role, ...names.map((n) => m.settings[n] ?? '?')])));
  }
  return outcome;
}

async function memberSettings(prepared: Prepared): Promise<MemberSettings[]> {
  const status = await prepared.handle.status().catch(() => null);
  const names = [...prepared.expected.keys()];
  if (status === null) return [];
  const rows = await onEveryMember(running(status), prepared.secrets, prepared.ca, (client) => readRows(client, names));
  return running(status).map((m) => ({
    name: m.name,
    role: m.name === status.leader ? 'leader' : m.role,
    settings: Object.fromEntries(names.map((n) => [n, rows.get(m.name)?.get(n)?.shown ?? null])),
  }));
}

async function applyByReload(prepared: Prepared, deps: OperationDeps, token: AgentAuth): Promise<void> {
  const status = await prepared.handle.status();
  const failures: string[] = [];
  for (const m of status.members.filter((x) => x.role !== 'primary' && x.role !== 'replica')) {
    deps.progress(`${m.name} is not running (${m.role}): it gets the new settings when it starts`);
  }
  for (const member of running(status)) {
    const answer = await postToAgent(member, '/reload', token);
    if (!answer.ok) {
      failures.push(`${member.name}: the agent did not reload (${answer.detail})`);
      continue;
    }
    const wrong = await waitMatches(member, prepared, deps, RELOAD_VISIBLE_TIMEOUT_MS);
    if (wrong.length > 0) failures.push(`${member.name}: ${wrong.join(', ')}`);
    else deps.progress(`${member.name}: reloaded`);
  }
  if (failures.length > 0) {
    throw new PgpilotError('SETTING_NOT_APPLIED', `the new settings are stored but not in effect everywhere: ${failures.join('; ')}`, {
      hint: `run the same command again, or pgpilot restart ${prepared.cluster} --node NODE`,
      retryable: true,
    });
  }
}

/**
 * Restarts every running member one at a time, checking after each that it shows the new values.
 * `replicas-first`: replicas, then a switchover to one of them (the former leader comes back as a
 * standby, normally already on the new config), then the former leader if it still differs.
 * `leader-first` (a standby-minimum setting goes down): the leader restarts in place, then the
 * replicas. If the FIRST member fails, the previous config is written back (that member's agent
 * starts it with the old values again) before failing.
 */
async function applyByRollingRestart(prepared: Prepared, order: 'replicas-first' | 'leader-first', options: ApplyOptions, deps: OperationDeps, nextRaw: string): Promise<void> {
  let status = await prepared.handle.status();
  const oldLeader = status.leader;
  const leader = status.members.find((m) => m.name === oldLeader && m.role === 'primary');
  if (leader === undefined) throw new PgpilotError('CLUSTER_NOT_RUNNING', `${prepared.cluster} has no leader now`, { hint: 'retry after the failover completes', retryable: true });
  const replicas = status.members.filter((m) => m.role === 'replica');
  for (const m of status.members.filter((x) => x.role !== 'primary' && x.role !== 'replica')) {
    deps.progress(`${m.name} is not running (${m.role}): it gets the new settings when it starts`);
  }
  let restarted = 0;
  const step = async (member: MemberStatus): Promise<void> => {
    const first = restarted === 0;
    restarted += 1;
    let problem: string | null = null;
    try {
      await restartMember(prepared.handle, member, options.timeoutSeconds, deps);
      const wrong = await waitMatches(member, prepared, deps, RELOAD_VISIBLE_TIMEOUT_MS);
      if (wrong.length > 0) problem = wrong.join(', ');
    } catch (error) {
      problem = errorMessage(error);
    }
    if (problem === null) return;
    if (first) {
      const previous = prepared.storedRaw ?? JSON.stringify(prepared.current);
      await store(prepared, nextRaw, previous).catch(() => undefined);
      throw new PgpilotError('SETTING_NOT_APPLIED', `${member.name} did not come back with the new settings (${problem}); the previous settings were written back to etcd and ${member.name} starts with them again`, {
        hint: `read ${nodeLog(prepared, member.name)}; nothing else was restarted`,
      });
    }
    throw new PgpilotError('SETTING_NOT_APPLIED', `${member.name} did not come back with the new settings (${problem}); the new settings stay stored in etcd`, {
      hint: `read ${nodeLog(prepared, member.name)}; then run the same command again (members already up to date are skipped)`,
    });
  };
  if (order === 'leader-first') {
    await step(leader);
    for (const replica of replicas) await step(replica);
    return;
  }
  for (const replica of replicas) await step(replica);
  if (replicas.length === 0) {
    deps.progress('single node: the leader restarts in place (a short outage)');
    await step(leader);
    return;
  }
  await switchover(prepared.handle, { kind: 'switchover', yes: false, timeoutSeconds: options.timeoutSeconds }, deps);
  status = await prepared.handle.status();
  const former = status.members.find((m) => m.name === oldLeader);
  if (former === undefined || former.role !== 'replica') {
    deps.progress(`${oldLeader ?? 'the former leader'} is not running as a replica yet: it gets the new settings when it starts`);
    return;
  }
  // The former leader restarted as a standby when it stepped down, from the stored config.
  const wrong = await mismatchesOn(former, prepared);
  if (wrong !== null && wrong.length === 0) {
    deps.progress(`${former.name}: already runs with the new settings (restarted as a standby at the switchover)`);
    return;
  }
  await step(former);
}

/** `config update NAME --set k=v ... [--reset k ...]` (with the typed flags as `pgpilot`). */
export async function runParameterUpdate(
  request: ParameterRequest,
  options: ApplyOptions,
  deps: OperationDeps,
  output: Output,
): Promise<number> {
  const prepared = await prepareChanges(request);
  const outcome = await applyPrepared(prepared, options, deps, output);
  if (options.json) printJson(output, outcome);
  return 0;
}
