/**
 * The PgBouncer files (src/pooler/pgbouncer-config.ts) and the pure parts around them: the ini
 * sends every database to the node's leader port with SCRAM auth through auth_query (never trust),
 * values cannot break out of their line, the auth file quotes correctly, the version parser reads
 * `pgbouncer --version`, the lookup function is SECURITY DEFINER with a pinned search_path and
 * respects VALID UNTIL, and the supervisor's step decision starts, reloads, stops and backs off.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { renderAuthFile, renderPgbouncerIni, serverHostFor, type PgbouncerConfigInput } from '../../src/pooler/pgbouncer-config.js';
import { parsePgbouncerVersion } from '../../src/pooler/pgbouncer-process.js';
import { AUTH_QUERY, LOOKUP_FUNCTION, POOLER_SCHEMA, lookupFunctionSql, lookupRepairs, lookupTrustProblem, untrustedLookupError, type LookupObjects } from '../../src/pooler/pooler-auth.js';
import { RESTART_BACKOFF_MS, decidePoolerStep, type PoolerStepInput } from '../../src/pooler/pooler-supervisor.js';
import { PgpilotError } from '../../src/shared/errors.js';

const base: PgbouncerConfigInput = {
  listenAddress: '127.0.0.1',
  listenPort: 41000,
  serverHost: '127.0.0.1',
  serverPort: 42000,
  authUser: 'pgpilot_pooler',
  authFile: '/var/lib/pgpilot/clusters/demo/nodes/node1/pgbouncer/userlist.txt',
  authQuery: AUTH_QUERY,
  poolMode: 'transaction',
  defaultPoolSize: 20,
  tls: {
    certFile: '/var/lib/pgpilot/clusters/demo/nodes/node1/tls/node.crt',
    keyFile: '/var/lib/pgpilot/clusters/demo/nodes/node1/tls/node.key',
    caFile: '/var/lib/pgpilot/clusters/demo/tls/ca.crt',
  },
};

/** `key = value` settings of one ini section. */
function section(ini: string, name: string): Map<string, string> {
  const settings = new Map<string, string>();
  let current = '';
  for (const line of ini.split('\n')) {
    const header = /^\[(.+)\]$/.exec(line);
    if (header?.[1] !== undefined) {
      current = header[1];
      continue;
    }
    const kv = /^([^;=\s][^=]*?)\s*=\s*(.*)$/.exec(line);
    if (current === name && kv?.[1] !== undefined) settings.set(kv[1], kv[2] ?? '');
  }
  return settings;
}

void describe('renderPgbouncerIni', () => {
  void it('sends every database to the leader port with the auth user, and authenticates with scram-sha-256 via auth_query', () => {
    const ini = renderPgbouncerIni(base);
    assert.equal(section(ini, 'databases').get('*'), 'host=127.0.0.1 port=42000 auth_user=pgpilot_pooler');
    const settings = section(ini, 'pgbouncer');
    assert.equal(settings.get('listen_addr'), '127.0.0.1');
    assert.equal(settings.get('listen_port'), '41000');
    assert.equal(settings.get('auth_type'), 'scram-sha-256');
    assert.equal(settings.get('auth_user'), 'pgpilot_pooler');
    assert.equal(settings.get('auth_query'), `SELECT usename, passwd FROM ${POOLER_SCHEMA}.${LOOKUP_FUNCTION}($1)`);
    assert.equal(settings.get('auth_file'), base.authFile);
    assert.equal(settings.get('pool_mode'), 'transaction');
    assert.equal(settings.get('default_pool_size'), '20');
    assert.equal(settings.get('unix_socket_dir'), '');
    assert.doesNotMatch(ini, /\btrust\b/);
  });

  void it('requires TLS from clients (node certificate) and verifies postgres against the cluster CA', () => {
    const settings = section(renderPgbouncerIni(base), 'pgbouncer');
    assert.equal(settings.get('client_tls_sslmode'), 'require');
    assert.equal(settings.get('client_tls_cert_file'), base.tls.certFile);
    assert.equal(settings.get('client_tls_key_file'), base.tls.keyFile);
    assert.equal(settings.get('client_tls_ca_file'), base.tls.caFile);
    assert.equal(settings.get('server_tls_sslmode'), 'verify-full');
    assert.equal(settings.get('server_tls_ca_file'), base.tls.caFile);
    assert.doesNotMatch(renderPgbouncerIni(base), /tls_sslmode\s*=\s*(disable|allow|prefer)\b/);
  });

  void it('renders session mode and the pool size as given', () => {
    const settings = section(renderPgbouncerIni({ ...base, poolMode: 'session', defaultPoolSize: 7, maxClientConn: 50 }), 'pgbouncer');
    assert.equal(settings.get('pool_mode'), 'session');
    assert.equal(settings.get('default_pool_size'), '7');
    assert.equal(settings.get('max_client_conn'), '50');
  });

  void it('refuses values that could break out of their line or field', () => {
    const bad: Array<Partial<PgbouncerConfigInput>> = [
      { serverHost: '127.0.0.1 port=1' },
      { listenAddress: '127.0.0.1\nauth_type = trust' },
      { authUser: 'x y' },
      { authFile: '/tmp/a\nauth_type = trust' },
      { authQuery: 'SELECT 1\n' },
      { listenPort: 0 },
      { serverPort: 70000 },
      { defaultPoolSize: 0 },
      { poolMode: 'statement' as PgbouncerConfigInput['poolMode'] },
      { tls: { ...base.tls, certFile: '/tmp/c\nclient_tls_sslmode = disable' } },
      { tls: { ...base.tls, caFile: '/tmp/ca\nserver_tls_sslmode = disable' } },
    ];
    for (const override of bad) {
      assert.throws(() => renderPgbouncerIni({ ...base, ...override }), (error: unknown) => error instanceof PgpilotError && error.code === 'CONFIG_INVALID', JSON.stringify(override));
    }
  });

  void it('dials loopback when the node listens on every address', () => {
    assert.equal(serverHostFor('0.0.0.0'), '127.0.0.1');
    assert.equal(serverHostFor('::'), '::1');
    assert.equal(serverHostFor('10.0.0.5'), '10.0.0.5');
  });
});

void describe('renderAuthFile', () => {
  void it('writes one quoted line per user, doubling double quotes', () => {
    assert.equal(renderAuthFile([{ user: 'pgpilot_pooler', password: 'abc"def' }]), '"pgpilot_pooler" "abc""def"\n');
  });

  void it('refuses a line break in a password', () => {
    assert.throws(() => renderAuthFile([{ user: 'u', password: 'a\nb' }]), /cannot write/);
  });
});

void describe('parsePgbouncerVersion', () => {
  void it('reads the version from `pgbouncer --version`', () => {
    assert.equal(parsePgbouncerVersion('PgBouncer 1.18.0\nlibevent 2.1.12-stable\nadns: c-ares 1.18.1\ntls: OpenSSL 3.0.11\n'), '1.18.0');
    assert.equal(parsePgbouncerVersion('something else'), null);
  });
});

void describe('lookupFunctionSql', () => {
  void it('is SECURITY DEFINER with a pinned search_path, returns only login roles, and honours VALID UNTIL', () => {
    const sql = lookupFunctionSql();
    assert.match(sql, /SECURITY DEFINER/);
    assert.match(sql, /SET search_path = pg_catalog/);
    assert.match(sql, /rolcanlogin/);
    assert.match(sql, /rolvaliduntil/);
    assert.match(sql, new RegExp(`FUNCTION ${POOLER_SCHEMA}\\.${LOOKUP_FUNCTION}\\(`));
  });
});

void describe('lookupTrustProblem and lookupRepairs (the auth schema and function are used only when ours)', () => {
  const ours: LookupObjects = { schemaOwner: 'postgres', functionOwner: 'postgres', securityDefiner: true, config: ['search_path=pg_catalog'], publicExecute: false };

  void it('trusts objects owned by the cluster superuser, and absent ones (pgpilot creates them)', () => {
    assert.equal(lookupTrustProblem(ours, 'postgres'), null);
    assert.equal(lookupTrustProblem({ ...ours, schemaOwner: null, functionOwner: null }, 'postgres'), null);
    assert.equal(lookupTrustProblem({ ...ours, functionOwner: null }, 'postgres'), null);
  });

  void it('refuses a schema or a function someone else owns', () => {
    assert.match(lookupTrustProblem({ ...ours, schemaOwner: 'mallory' }, 'postgres') ?? '', /schema pgpilot is owned by mallory, not by the cluster superuser postgres/);
    assert.match(lookupTrustProblem({ ...ours, functionOwner: 'mallory' }, 'postgres') ?? '', /function pgpilot\.pooler_lookup\(text\) is owned by mallory/);
    assert.match(lookupTrustProblem({ ...ours, schemaOwner: 'mallory', functionOwner: null }, 'postgres') ?? '', /schema/);
    // Another superuser name: the cluster's own decides, not "postgres".
    assert.match(lookupTrustProblem(ours, 'admin') ?? '', /owned by postgres, not by the cluster superuser admin/);
    const error = untrustedLookupError('shop', 'schema pgpilot is owned by mallory');
    assert.equal(error.code, 'POOLER_AUTH_UNTRUSTED');
    assert.match(error.message, /^database shop: schema pgpilot is owned by mallory; the pooler will not use it$/);
    assert.match(error.hint ?? '', /DROP SCHEMA pgpilot CASCADE in shop/);
  });

  void it('repairs our own function when the search_path pin, SECURITY DEFINER or the PUBLIC revoke is missing', () => {
    assert.deepEqual(lookupRepairs(ours), []);
    assert.deepEqual(lookupRepairs({ ...ours, config: [], publicExecute: true }), ['search-path', 'revoke-public']);
    assert.deepEqual(lookupRepairs({ ...ours, config: ['search_path=public, pg_catalog'] }), ['search-path']);
    assert.deepEqual(lookupRepairs({ ...ours, securityDefiner: false }), ['security-definer']);
    assert.deepEqual(lookupRepairs({ ...ours, functionOwner: null, publicExecute: true }), [], 'nothing to repair before it exists');
  });
});

void describe('decidePoolerStep', () => {
  const input = (overrides: Partial<PoolerStepInput>): PoolerStepInput => ({
    enabled: true,
    blocker: null,
    running: false,
    appliedFiles: null,
    desiredFiles: 'ini+auth',
    lastStartAttemptMs: -Infinity,
    nowMs: 100_000,
    ...overrides,
  });

  void it('starts when enabled and not running', () => {
    assert.deepEqual(decidePoolerStep(input({})), { kind: 'start' });
  });

  void it('backs off after a recent start attempt', () => {
    assert.equal(decidePoolerStep(input({ lastStartAttemptMs: 100_000 - RESTART_BACKOFF_MS + 1 })).kind, 'wait');
    assert.equal(decidePoolerStep(input({ lastStartAttemptMs: 100_000 - RESTART_BACKOFF_MS })).kind, 'start');
  });

  void it('reloads when the files changed, and does nothing when they did not', () => {
    assert.deepEqual(decidePoolerStep(input({ running: true, appliedFiles: 'old' })), { kind: 'reload' });
    assert.deepEqual(decidePoolerStep(input({ running: true, appliedFiles: 'ini+auth' })), { kind: 'none' });
  });

  void it('stops when disabled, and when it cannot run any more', () => {
    assert.deepEqual(decidePoolerStep(input({ enabled: false, running: true })), { kind: 'stop' });
    assert.deepEqual(decidePoolerStep(input({ enabled: false, running: false })), { kind: 'none' });
    assert.deepEqual(decidePoolerStep(input({ blocker: 'no port', running: true })), { kind: 'stop' });
    assert.deepEqual(decidePoolerStep(input({ blocker: 'no port', running: false })), { kind: 'wait', reason: 'no port' });
  });
});
