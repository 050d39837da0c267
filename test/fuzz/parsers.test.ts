/**
 * Properties of every parser of an etcd value: whatever text a key holds (random JSON, random
 * strings and bytes, valid values with one field replaced), a parser never throws, and anything
 * it accepts validates again against its schema after a JSON round trip (an invalid value is never
 * accepted). Postgres parameters: nothing forbidden survives screening or rendering, and no value
 * breaks out of its line. Lists (events, history): one bad entry never hides the valid ones.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { z } from 'zod';
import { memberRecordSchema, parseMemberRecord } from '../../src/state/member-record.js';
import { parseStoredConfig } from '../../src/config/stored-config.js';
import { defaultDynamicConfig, dynamicConfigSchema } from '../../src/config/schema.js';
import { parseSyncSet } from '../../src/state/sync-record.js';
import { parseStandbyNames } from '../../src/ha/sync-set.js';
import { failoverIntentSchema, parseIntent } from '../../src/state/intent.js';
import { historyEntrySchema, parseHistory } from '../../src/state/history.js';
import { clusterEventSchema, parseEvents } from '../../src/state/events.js';
import { appAttachmentSchema, attachmentsIn } from '../../src/providers/local/app-attachments.js';
import { parseBackupId } from '../../src/backup/backup-record.js';
import { isLsn } from '../../src/shared/lsn.js';
import { clusterKeys } from '../../src/dcs/keys.js';
import { trustedMemberRecords, isKnownUrl, knownHostsFor } from '../../src/ha/member-trust.js';
import { forbiddenName, parameterVerdict, screenParameters, MANAGED_PARAMETERS } from '../../src/postgres/parameter-policy.js';
import { DEFAULT_POSTGRES_PARAMETERS, renderPostgresqlConf } from '../../src/postgres/conf.js';
import { refusalFor } from '../../src/postgres/settings-validation.js';
import { memberRecord } from '../builders/observation-builder.js';
import { etcdText, fuzzParams, mutated } from './fuzz-settings.js';

const keys = clusterKeys('demo');

/** Accepted values re-validate after a JSON round trip. */
function revalidates(schema: z.ZodType, value: unknown): void {
  const again = schema.safeParse(JSON.parse(JSON.stringify(value)));
  assert.ok(again.success, `accepted value does not re-validate: ${JSON.stringify(value)}`);
}

const validMember = fc.record({ name: fc.constantFrom('node1', 'node2'), timeline: fc.integer({ min: 1, max: 9 }) }).map((o) => memberRecord(o));
const validConfig = fc.constant(defaultDynamicConfig());
const validIntent = fc.record({ kind: fc.constantFrom('switchover', 'failover'), from: fc.option(fc.string()), to: fc.option(fc.string()), requestedAtMs: fc.integer() });
const validHistory = fc.record({ timeline: fc.integer(), lsn: fc.option(fc.constantFrom('0/3000060', '1/AB')), reason: fc.string(), at: fc.string(), newLeader: fc.string() });
const validEvent = fc.record({ at: fc.string(), kind: fc.constantFrom('promoted', 'some-future-kind'), node: fc.string(), message: fc.string(), timeline: fc.option(fc.integer()) });
const validApp = fc.record({ app: fc.constantFrom('shop', 'blog'), database: fc.constant('db'), user: fc.constant('u'), createdAt: fc.string() });

/** Names worth trying as parameters: forbidden ones (any case), preload lists, and random ones. */
const parameterName = fc.oneof(
  fc.constantFrom(...MANAGED_PARAMETERS, 'archive_cleanup_command', 'recovery_end_command', 'shared_preload_libraries', 'session_preload_libraries', 'local_preload_libraries', 'ssl_cert_file', 'ssl_passphrase_command', 'log_directory', 'dynamic_library_path', 'jit_provider', 'unix_socket_group', 'synchronous_standby_names', 'work_mem', 'cron.database_name', '__proto__', 'constructor'),
  fc.constantFrom('ARCHIVE_COMMAND', ' Port ', 'Shared_Preload_Libraries'),
  fc.string(),
);
const parameterValue = fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.double(), fc.integer(), fc.boolean(), fc.constantFrom('pg_stat_statements', '$libdir/pg_cron', '/tmp/x.so', 'pg_cron,evil', "a'b\\\nc"), fc.anything());

void describe('fuzz: etcd value parsers', () => {
  void it('member records: never throw; accepted records re-validate', () => {
    fc.assert(
      fc.property(etcdText(validMember), (text) => {
        const record = parseMemberRecord(text);
        if (record !== null) revalidates(memberRecordSchema, record);
      }),
      fuzzParams(),
    );
  });

  void it('dynamic config: never throws; accepted configs re-validate; unreadable says why', () => {
    fc.assert(
      fc.property(etcdText(validConfig), (text) => {
        const parsed = parseStoredConfig(text);
        if (parsed.kind === 'valid') revalidates(dynamicConfigSchema, parsed.config);
        else assert.ok(parsed.reason.length > 0 && parsed.reason.length <= 300);
      }),
      fuzzParams(),
    );
  });

  void it('sync set, intent, history, events, apps, backup ids, LSNs: never throw; accepted values re-validate', () => {
    const syncSchema = z.object({ leader: z.string().min(1), members: z.array(z.string().min(1)), quorum: z.number().int().min(0) });
    fc.assert(
      fc.property(etcdText(fc.oneof(validIntent, validHistory, validEvent, validApp, fc.array(validHistory), fc.array(validEvent))), (text) => {
        const sync = parseSyncSet(text);
        if (sync !== null) revalidates(syncSchema, sync);
        parseStandbyNames(text);
        const intent = parseIntent(text);
        if (intent !== null) revalidates(failoverIntentSchema, intent);
        for (const entry of parseHistory(text)) revalidates(historyEntrySchema, entry);
        for (const event of parseEvents(text)) revalidates(clusterEventSchema, event);
        for (const app of attachmentsIn(new Map([[keys.app('shop'), text]]), keys)) revalidates(appAttachmentSchema, app);
        parseBackupId(text);
        isLsn(text);
      }),
      fuzzParams(),
    );
  });

  void it('events and history: one malformed entry never hides the valid ones', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(validEvent.map((e) => ({ ok: true, e }) as const), fc.anything().map((e) => ({ ok: false, e }) as const)), { maxLength: 12 }), (entries) => {
        const valid = entries.filter((x) => x.ok).length;
        assert.ok(parseEvents(JSON.stringify(entries.map((x) => x.e))).length >= valid);
      }),
      fuzzParams(),
    );
    fc.assert(
      fc.property(fc.array(fc.oneof(validHistory, mutated(validHistory)), { maxLength: 12 }), (entries) => {
        const valid = entries.filter((e) => historyEntrySchema.safeParse(e).success).length;
        assert.equal(parseHistory(JSON.stringify(entries)).length, valid);
      }),
      fuzzParams(),
    );
  });

  void it('member records of a prefix read: never throw; only records under their own key on known hosts are trusted', () => {
    const hosts = knownHostsFor({ host: '127.0.0.1' });
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.oneof(fc.constantFrom('node1', 'node2', 'x/y', ''), fc.string()), fc.oneof(etcdText(validMember), validMember.map((m) => JSON.stringify({ ...m, apiUrl: 'http://evil:1' })))), { maxLength: 6 }), (pairs) => {
        const all = new Map(pairs.map(([name, text]) => [keys.member(name), text] as const));
        const { members } = trustedMemberRecords(all, keys, hosts);
        for (const m of members) {
          assert.ok(isKnownUrl(m.apiUrl, hosts), m.apiUrl);
          assert.equal(all.has(keys.member(m.name)), true);
        }
      }),
      fuzzParams(),
    );
  });
});

/** Settings lines `name = value` of a rendered postgresql.conf. */
function settingLines(conf: string): Array<[string, string]> {
  return conf
    .split('\n')
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => {
      const at = line.indexOf(' = ');
      assert.ok(at > 0, `not a setting line: ${JSON.stringify(line)}`);
      return [line.slice(0, at), line.slice(at + 3)];
    });
}

const RENDERED_BY_PGPILOT = new Set(['listen_addresses', 'port', 'unix_socket_directories', 'cluster_name', 'ssl', 'ssl_cert_file', 'ssl_key_file', 'ssl_ca_file', 'ssl_min_protocol_version']);
/** The TLS lines come from the typed input only: whatever etcd holds, they render these values. */
const TLS_INPUT = { certFile: '/t/node.crt', keyFile: '/t/node.key', caFile: '/t/ca.crt' };
const EXPECTED_TLS_LINES: Record<string, string> = { ssl: 'on', ssl_cert_file: `'${TLS_INPUT.certFile}'`, ssl_key_file: `'${TLS_INPUT.keyFile}'`, ssl_ca_file: `'${TLS_INPUT.caFile}'`, ssl_min_protocol_version: "'TLSv1.2'" };

void describe('fuzz: postgres parameters from etcd', () => {
  void it('screening keeps only allowed entries, the CLI refuses every dropped name, and rendering writes nothing forbidden', () => {
    fc.assert(
      fc.property(fc.dictionary(parameterName, parameterValue, { maxKeys: 8 }), (parameters) => {
        const screened = screenParameters(parameters);
        for (const [name, value] of Object.entries(screened.parameters)) assert.equal(parameterVerdict(name, value).kind, 'allowed', name);
        const forbiddenEntries = Object.entries(parameters).filter(([raw, value]) => parameterVerdict(raw, value).kind === 'forbidden');
        assert.equal(screened.rejected.length, forbiddenEntries.length);
        for (const [raw] of forbiddenEntries) {
          // The CLI refuses by the same list: a forbidden name is refused before any value check.
          const name = raw.trim().toLowerCase();
          if (forbiddenName(name) !== null) assert.notEqual(refusalFor(name, null, { memberCount: 3 }), null, name);
        }
        const conf = renderPostgresqlConf({ port: 5432, listenAddresses: '127.0.0.1', socketDir: '/tmp', clusterName: 'demo', nodeName: 'node1', tls: TLS_INPUT, parameters: parameters as Record<string, string> });
        const seen = new Set<string>();
        for (const [name, value] of settingLines(conf)) {
          assert.ok(!seen.has(name) || name === 'recovery_target_timeline', `${name} twice`);
          seen.add(name);
          if (Object.hasOwn(EXPECTED_TLS_LINES, name)) assert.equal(value, EXPECTED_TLS_LINES[name], `${name} rendered from etcd`);
          if (RENDERED_BY_PGPILOT.has(name)) continue;
          assert.ok(name in DEFAULT_POSTGRES_PARAMETERS || Object.hasOwn(screened.parameters, name), `forbidden ${name} rendered`);
          assert.equal(forbiddenName(name), null, `forbidden ${name} rendered`);
          assert.ok(!/\n/.test(value));
        }
      }),
      fuzzParams(),
    );
  });
});
