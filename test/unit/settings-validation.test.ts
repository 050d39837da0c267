/**
 * src/postgres/settings-validation.ts on pg_settings rows recorded from PostgreSQL 15 (the columns
 * SETTINGS_SQL reads): type, unit and range checks with the messages users see, the canonical
 * value stored, refusal of what pgpilot manages, the restart plan and its order for the settings
 * a standby needs at least as high as its primary's, and "did you mean".
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  describePlan,
  effectiveParameters,
  formatAmount,
  needsRestart,
  planApply,
  refusalFor,
  settingMatches,
  suggestParameters,
  toSettingRow,
  unknownParameterMessage,
  validateSetting,
  type ParameterChange,
  type SettingCheck,
  type SettingRow,
} from '../../src/postgres/settings-validation.js';
import { parseSetPair, splitSetPairs } from '../../src/cli/commands/config-parameters.js';
import { isPgpilotError } from '../../src/shared/errors.js';

/** `name|setting|vartype|unit|min_val|max_val|enumvals|context|boot_val` as psql -At printed it. */
const RECORDED = `
application_name|psql|string|||||user|
checkpoint_timeout|300|integer|s|30|86400||sighup|300
DateStyle|ISO, MDY|string|||||user|ISO, MDY
effective_cache_size|524288|integer|8kB|1|2147483647||user|524288
jit|on|bool|||||user|on
log_min_duration_statement|-1|integer|ms|-1|2147483647||superuser|-1
log_statement|none|enum||||{none,ddl,mod,all}|superuser|none
max_connections|100|integer||1|262143||postmaster|100
max_wal_senders|10|integer||0|262143||postmaster|10
random_page_cost|4|real||0|1.79769e+308||user|4
geqo_selection_bias|2|real||1.5|2||user|2
search_path|"$user", public|string|||||user|"$user", public
shared_buffers|16384|integer|8kB|16|1073741823||postmaster|16384
statement_timeout|0|integer|ms|0|2147483647||user|0
temp_file_limit|-1|integer|kB|-1|2147483647||superuser|-1
wal_level|replica|enum||||{minimal,replica,logical}|postmaster|replica
work_mem|4096|integer|kB|64|2147483647||user|4096
max_wal_size|1024|integer|MB|2|2147483647||sighup|1024
block_size|8192|integer||8192|8192||internal|8192
hot_standby|on|bool|||||postmaster|on
`;

const ROWS = new Map<string, SettingRow>(
  RECORDED.trim()
    .split('\n')
    .map((line) => {
      const [name, setting, vartype, unit, min, max, enumvals, context, boot] = line.split('|');
      const row = toSettingRow({
        name: name ?? '',
        setting: setting ?? '',
        vartype: vartype ?? 'string',
        unit: unit === '' ? null : (unit ?? null),
        min_val: min === '' ? null : (min ?? null),
        max_val: max === '' ? null : (max ?? null),
        enumvals: enumvals === '' || enumvals === undefined ? null : enumvals.replace(/[{}]/g, '').split(','),
        context: context ?? '',
        boot_val: boot ?? null,
        pending_restart: false,
        sourcefile: null,
      });
      return [row.name, row] as const;
    }),
);

function row(name: string): SettingRow {
  const found = ROWS.get(name);
  assert.ok(found, `no recorded row ${name}`);
  return found;
}

function valid(name: string, value: string): Extract<SettingCheck, { kind: 'valid' }> {
  const check = validateSetting(row(name), value);
  assert.equal(check.kind, 'valid', check.kind === 'invalid' ? check.message : '');
  return check;
}

function invalidMessage(name: string, value: string): string {
  const check = validateSetting(row(name), value);
  assert.equal(check.kind, 'invalid', `${name}=${value} was accepted`);
  return check.kind === 'invalid' ? check.message : '';
}

void describe('validateSetting', () => {
  void it('integers without a unit: range in the message, stored as a number', () => {
    const ok = valid('max_connections', '150');
    assert.equal(ok.confValue, 150);
    assert.equal(ok.setting, '150');
    assert.equal(invalidMessage('max_connections', '999999'), 'max_connections must be between 1 and 262143 (got "999999")');
    assert.match(invalidMessage('max_connections', '0'), /between 1 and 262143/);
    assert.match(invalidMessage('max_connections', '150MB'), /takes a plain number without a unit/);
    assert.match(invalidMessage('max_connections', 'many'), /must be a whole number/);
    // "010" is octal to postgres (8): refused rather than stored with another meaning.
    assert.match(invalidMessage('max_connections', '010'), /must be a whole number/);
    assert.match(invalidMessage('max_connections', '0x10'), /must be a whole number/);
    // A fraction is rounded the way postgres rounds it, and stored rounded.
    assert.equal(valid('max_connections', '150.4').confValue, 150);
  });

  void it('memory: base units kB and 8kB, suffixes converted, ranges in readable units', () => {
    const work = valid('work_mem', '16MB');
    assert.equal(work.confValue, '16MB');
    assert.equal(work.numeric, 16384);
    assert.equal(valid('work_mem', '65536').numeric, 65536, 'no unit: the base unit (kB)');
    assert.equal(valid('work_mem', '1.5GB').numeric, 1572864);
    const shared = valid('shared_buffers', '256MB');
    assert.equal(shared.numeric, 32768, '256MB in 8kB pages');
    assert.equal(shared.setting, '32768');
    assert.equal(invalidMessage('shared_buffers', '64kB'), 'shared_buffers must be between 128kB and 8589934584kB (got "64kB")');
    assert.match(invalidMessage('work_mem', '16mb'), /unknown unit "mb": valid units are B, kB, MB, GB and TB \(case-sensitive\)/);
    assert.match(invalidMessage('work_mem', '16s'), /unknown unit "s"/);
    assert.equal(valid('max_wal_size', '2GB').numeric, 2048);
    assert.equal(valid('effective_cache_size', '768MB').numeric, 98304);
    assert.equal(valid('temp_file_limit', '-1').numeric, -1);
  });

  void it('time: ms and s base units, min/h/d suffixes', () => {
    assert.equal(valid('statement_timeout', '5min').numeric, 300_000);
    assert.equal(valid('statement_timeout', '500ms').confValue, '500ms');
    assert.equal(valid('log_min_duration_statement', '-1').numeric, -1);
    assert.equal(valid('checkpoint_timeout', '15min').numeric, 900);
    assert.equal(valid('checkpoint_timeout', '1h').numeric, 3600);
    assert.equal(invalidMessage('checkpoint_timeout', '10s'), 'checkpoint_timeout must be between 30s and 1d (got "10s")');
    assert.match(invalidMessage('statement_timeout', '5MB'), /valid units are us, ms, s, min, h and d/);
  });

  void it('reals, bools, enums and strings', () => {
    assert.equal(valid('random_page_cost', '1.1').numeric, 1.1);
    assert.equal(valid('random_page_cost', '1.1').confValue, 1.1);
    assert.equal(invalidMessage('geqo_selection_bias', '3'), 'geqo_selection_bias must be between 1.5 and 2 (got "3")');
    assert.match(invalidMessage('random_page_cost', '-1'), /random_page_cost must be between 0 and any larger value/);
    assert.equal(valid('jit', 'off').confValue, false);
    assert.equal(valid('jit', 'YES').setting, 'on');
    assert.match(invalidMessage('jit', 'maybe'), /jit must be on or off/);
    assert.equal(valid('log_statement', 'DDL').confValue, 'ddl');
    assert.equal(invalidMessage('log_statement', 'everything'), 'log_statement must be one of none, ddl, mod, all (got "everything")');
    assert.equal(valid('search_path', ' "$user", public, extensions ').confValue, '"$user", public, extensions');
    assert.equal(valid('application_name', '').confValue, '');
  });

  void it('internal settings cannot be changed', () => {
    assert.match(invalidMessage('block_size', '8192'), /fixed when postgres is built or initialized/);
  });
});

void describe('settingMatches', () => {
  void it('compares in base units, reals with pg_settings precision, words case-insensitively', () => {
    assert.equal(settingMatches({ ...row('shared_buffers'), setting: '32768' }, valid('shared_buffers', '256MB')), true);
    assert.equal(settingMatches(row('shared_buffers'), valid('shared_buffers', '256MB')), false);
    assert.equal(settingMatches({ ...row('random_page_cost'), setting: '1.1' }, valid('random_page_cost', '1.1')), true);
    assert.equal(settingMatches({ ...row('random_page_cost'), setting: '0.333333' }, valid('random_page_cost', '0.3333333333')), true);
    assert.equal(settingMatches(row('jit'), valid('jit', 'true')), true);
    assert.equal(settingMatches(row('log_statement'), valid('log_statement', 'None')), true);
  });
});

void describe('formatAmount', () => {
  void it('uses the largest unit that divides exactly', () => {
    assert.equal(formatAmount(16, '8kB'), '128kB');
    assert.equal(formatAmount(131072, '8kB'), '1GB');
    assert.equal(formatAmount(86400, 's'), '1d');
    assert.equal(formatAmount(90, 's'), '90s');
    assert.equal(formatAmount(-1, 'ms'), '-1');
    assert.equal(formatAmount(262143, null), '262143');
  });
});

void describe('refusalFor', () => {
  const ctx = { memberCount: 3 };
  void it('refuses what pgpilot manages: identity, replication source, archiving, recovery, sync set', () => {
    for (const name of ['port', 'listen_addresses', 'primary_conninfo', 'primary_slot_name', 'cluster_name', 'data_directory', 'recovery_target_time']) {
      assert.match(refusalFor(name, null, ctx) ?? '', /managed by pgpilot/, name);
    }
    for (const name of ['archive_mode', 'archive_command', 'archive_timeout', 'restore_command', 'archive_cleanup_command']) {
      assert.ok(refusalFor(name, null, ctx) !== null, name);
    }
    assert.match(refusalFor('archive_timeout', null, ctx) ?? '', /backup config/);
    assert.match(refusalFor('synchronous_standby_names', null, ctx) ?? '', /--synchronous/);
    assert.equal(refusalFor('work_mem', null, ctx), null);
    assert.equal(refusalFor('recovery_min_apply_delay', null, ctx), null, 'a standby delay is the user’s choice');
  });
  void it('keeps what pgpilot relies on', () => {
    assert.match(refusalFor('wal_level', valid('wal_level', 'minimal'), ctx) ?? '', /replica or logical/);
    assert.equal(refusalFor('wal_level', valid('wal_level', 'logical'), ctx), null);
    assert.match(refusalFor('hot_standby', valid('hot_standby', 'off'), ctx) ?? '', /must stay on/);
    assert.match(refusalFor('max_wal_senders', valid('max_wal_senders', '4'), ctx) ?? '', /at least 5/);
    assert.equal(refusalFor('max_wal_senders', valid('max_wal_senders', '5'), ctx), null);
  });
});

void describe('did you mean', () => {
  const known = [...ROWS.keys()];
  void it('suggests close names', () => {
    assert.deepEqual(suggestParameters('max_conections', known), ['max_connections']);
    assert.equal(unknownParameterMessage('max_conections', known), 'max_conections: unknown parameter; did you mean max_connections?');
    assert.ok(suggestParameters('datestyle', known).includes('DateStyle'));
    assert.match(unknownParameterMessage('zzzzzz', known), /unknown parameter \(see SELECT name FROM pg_settings\)/);
  });
});

void describe('planApply', () => {
  const change = (name: string, from: number, to: number, context = 'postmaster'): ParameterChange => ({
    name,
    context,
    from: String(from),
    to: String(to),
    fromNumeric: from,
    toNumeric: to,
    needsRestart: needsRestart(context),
  });
  void it('reload for sighup/user/superuser/backend contexts', () => {
    assert.deepEqual(planApply([]), { kind: 'nothing' });
    assert.deepEqual(planApply([change('work_mem', 4096, 16384, 'user'), change('max_wal_size', 1024, 2048, 'sighup'), change('log_connections', 0, 1, 'superuser-backend')]), {
      kind: 'reload',
    });
  });
  void it('raising a standby-minimum setting: replicas first, then switchover', () => {
    const plan = planApply([change('max_connections', 100, 150)]);
    assert.deepEqual(plan, { kind: 'rolling-restart', order: 'replicas-first', because: ['max_connections'] });
    assert.equal(describePlan(plan), 'max_connections needs a restart of every member (rolling: replicas, switchover, leader)');
  });
  void it('lowering one: the leader first', () => {
    const plan = planApply([change('max_connections', 150, 100), change('shared_buffers', 16384, 32768)]);
    assert.equal(plan.kind, 'rolling-restart');
    assert.equal(plan.kind === 'rolling-restart' ? plan.order : null, 'leader-first');
    assert.match(describePlan(plan), /leader first: lowering max_connections must reach the primary before its standbys/);
  });
  void it('other postmaster settings, either way: replicas first', () => {
    assert.deepEqual(planApply([change('shared_buffers', 32768, 16384)]), { kind: 'rolling-restart', order: 'replicas-first', because: ['shared_buffers'] });
  });
  void it('raising one while lowering another is refused', () => {
    const plan = planApply([change('max_connections', 100, 150), change('max_worker_processes', 8, 4)]);
    assert.equal(plan.kind, 'conflict');
    assert.match(plan.kind === 'conflict' ? plan.message : '', /max_connections would go up while max_worker_processes would go down/);
  });
});

void describe('effectiveParameters', () => {
  void it('merges overrides over pgpilot defaults, marked', () => {
    const list = effectiveParameters({ max_connections: 200, work_mem: '16MB' });
    assert.deepEqual(list.find((p) => p.name === 'max_connections'), { name: 'max_connections', value: 200, source: 'override' });
    assert.deepEqual(list.find((p) => p.name === 'work_mem'), { name: 'work_mem', value: '16MB', source: 'override' });
    assert.deepEqual(list.find((p) => p.name === 'wal_level'), { name: 'wal_level', value: 'replica', source: 'default' });
    assert.deepEqual(list.map((p) => p.name), [...list.map((p) => p.name)].sort());
  });
});

void describe('config update --set parsing', () => {
  void it('splits key=value at the first =, and pgpilot settings from postgres parameters', () => {
    assert.deepEqual(parseSetPair('search_path="$user", public'), ['search_path', '"$user", public']);
    assert.deepEqual(parseSetPair('application_name=a=b'), ['application_name', 'a=b']);
    assert.throws(() => parseSetPair('work_mem'), (e: unknown) => isPgpilotError(e) && e.exitCode === 2 && /expected key=value/.test(e.message));
    assert.throws(() => parseSetPair('=1'), /expected key=value/);
    const { pgpilot, postgres } = splitSetPairs([
      ['ttlSeconds', '10'],
      ['failsafe', 'on'],
      ['synchronous', 'quorum'],
      ['Work_Mem', '16MB'],
      ['TimeZone', 'UTC'],
    ]);
    assert.deepEqual(pgpilot, { ttlSeconds: 10, failsafe: true, synchronous: 'quorum' });
    assert.deepEqual([...postgres], [
      ['work_mem', '16MB'],
      ['timezone', 'UTC'],
    ]);
  });
});
