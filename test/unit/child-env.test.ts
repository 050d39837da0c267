/**
 * The data-plane environment (src/shared/child-env.ts `scrubbedEnv`) and its users: only PATH,
 * TZ, the locale and HOME of the child's user pass, pgpilot's own variables win over inherited
 * ones, and nothing of the operator's (AWS_*, PG*, tokens) reaches postgres, HAProxy or PgBouncer.
 * Also the HAProxy argv: as root through setpriv to the haproxy OS user, never as root.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { childHome, homeFromPasswdLine, isPassedThrough, osUserHome, scrubbedEnv } from '../../src/shared/child-env.js';
import { postgresEnv } from '../../src/postgres/initdb.js';
import { basebackupEnv } from '../../src/postgres/basebackup.js';
import { haproxyCommand, haproxyEnv, HAPROXY_OS_USER } from '../../src/proxy/haproxy-process.js';

const OPERATOR_ENV: NodeJS.ProcessEnv = {
  PATH: '/opt/bin:/usr/bin',
  HOME: '/root',
  TZ: 'Europe/Paris',
  LANG: 'de_DE.UTF-8',
  LC_ALL: 'de_DE.UTF-8',
  LC_MESSAGES: 'de_DE.UTF-8',
  AWS_ACCESS_KEY_ID: 'AKIA-operator',
  AWS_SECRET_ACCESS_KEY: 'operator-secret',
  AWS_SESSION_TOKEN: 'operator-session',
  PGPASSWORD: 'operator-pg-password',
  PGHOST: 'prod.example.com',
  PGSSLMODE: 'disable',
  PGPILOT_HOME: '/srv/pgpilot',
  GITHUB_TOKEN: 'ghp-operator',
  SSH_AUTH_SOCK: '/tmp/ssh-agent.sock',
  NODE_OPTIONS: '--require /tmp/evil.js',
  LD_PRELOAD: '/tmp/evil.so',
};

void describe('scrubbedEnv', () => {
  void it('keeps only PATH, TZ and the locale of the caller, and HOME as given', () => {
    const env = scrubbedEnv({}, { from: OPERATOR_ENV, home: '/var/lib/postgresql' });
    assert.deepEqual(env, {
      PATH: '/opt/bin:/usr/bin',
      TZ: 'Europe/Paris',
      LANG: 'de_DE.UTF-8',
      LC_ALL: 'de_DE.UTF-8',
      LC_MESSAGES: 'de_DE.UTF-8',
      HOME: '/var/lib/postgresql',
    });
  });

  void it('lets pgpilot variables win over inherited ones', () => {
    const env = scrubbedEnv({ LC_ALL: 'C', PGPASSFILE: '/run/x/pgpass', PATH: '/usr/lib/postgresql/15/bin:/usr/bin' }, { from: OPERATOR_ENV });
    assert.equal(env['LC_ALL'], 'C');
    assert.equal(env['PGPASSFILE'], '/run/x/pgpass');
    assert.equal(env['PATH'], '/usr/lib/postgresql/15/bin:/usr/bin');
    assert.equal(env['HOME'], undefined, 'no HOME unless the child user is known');
  });

  void it('drops the locale on request, and falls back to a standard PATH', () => {
    assert.deepEqual(scrubbedEnv({}, { from: { LANG: 'de_DE.UTF-8', LC_CTYPE: 'de_DE.UTF-8' }, inheritLocale: false }), { PATH: '/usr/local/bin:/usr/bin:/bin' });
    assert.equal(isPassedThrough('LC_NUMERIC', true), true);
    assert.equal(isPassedThrough('LC_NUMERIC', false), false);
    for (const name of ['AWS_ACCESS_KEY_ID', 'PGPASSWORD', 'PGHOST', 'HOME', 'LD_PRELOAD', 'NODE_OPTIONS', 'XLC_ALL']) assert.equal(isPassedThrough(name, true), false, name);
  });

  void it('reads a home from a passwd line', () => {
    assert.equal(homeFromPasswdLine('haproxy:x:105:108::/var/lib/haproxy:/usr/sbin/nologin\n'), '/var/lib/haproxy');
    assert.equal(homeFromPasswdLine('odd:x:1:1::'), null);
    assert.equal(homeFromPasswdLine(''), null);
    assert.equal(osUserHome('pgpilot-no-such-user-0123'), '/');
  });

  void it('gives the child its own user home: root\'s never reaches postgres or haproxy', () => {
    const root = typeof process.getuid === 'function' && process.getuid() === 0;
    if (root) {
      assert.notEqual(childHome('postgres', OPERATOR_ENV), '/root');
      assert.equal(childHome('postgres', OPERATOR_ENV), osUserHome('postgres'));
    } else {
      assert.equal(childHome('postgres', OPERATOR_ENV), '/root', 'not root: the child runs as us, with our HOME');
    }
  });
});

void describe('the environments of postgres, its tools, HAProxy and PgBouncer', () => {
  /** Runs `fn` with the operator's secrets in process.env, restoring it afterwards. */
  function withOperatorEnv<T>(fn: () => T): T {
    const saved = { ...process.env };
    Object.assign(process.env, OPERATOR_ENV);
    try {
      return fn();
    } finally {
      for (const key of Object.keys(process.env)) if (!(key in saved)) Reflect.deleteProperty(process.env, key);
      Object.assign(process.env, saved);
    }
  }
  const secretValues = Object.entries(OPERATOR_ENV)
    .filter(([name]) => !isPassedThrough(name, true))
    .map(([, value]) => value ?? '');

  void it('carry none of the operator variables, only what pgpilot sets', () => {
    const envs = withOperatorEnv(() => ({
      postgres: postgresEnv(),
      controldata: postgresEnv({ LC_ALL: 'C', LANG: 'C' }),
      basebackup: basebackupEnv({ passfile: '/tmp/x/pgpass', applicationName: 'node2', caFile: '/tmp/x/ca.crt' }),
      haproxy: haproxyEnv(),
    }));
    for (const [name, env] of Object.entries(envs)) {
      for (const key of Object.keys(env)) assert.ok(!key.startsWith('AWS_'), `${name} gets ${key}`);
      const values = Object.values(env).join('\n');
      for (const secret of secretValues) assert.ok(!values.includes(secret), `${name} gets an operator value (${secret.slice(0, 8)}...)`);
      assert.notEqual(env['HOME'], '/root', `${name} gets root's HOME`);
      assert.equal(env['PATH'], OPERATOR_ENV['PATH']);
    }
    // Postgres programs get a fixed locale (their output is parsed), not the operator's.
    assert.equal(envs.postgres['LANG'], 'C.UTF-8');
    assert.equal(envs.postgres['LC_ALL'], undefined);
    assert.equal(envs.controldata['LC_ALL'], 'C');
    // pgpilot's own libpq settings are there: the passfile it wrote, not the operator's PGPASSWORD.
    assert.equal(envs.basebackup['PGPASSFILE'], '/tmp/x/pgpass');
    assert.equal(envs.basebackup['PGSSLMODE'], 'verify-full');
    assert.equal(envs.basebackup['PGSSLROOTCERT'], '/tmp/x/ca.crt');
    assert.equal(envs.basebackup['PGPASSWORD'], undefined);
    assert.equal(envs.basebackup['PGHOST'], undefined);
  });
});

void describe('haproxyCommand', () => {
  void it('as root, switches to the haproxy OS user before exec, with a parent-death signal', () => {
    const { command, args } = haproxyCommand('/usr/sbin/haproxy', ['-f', '/x/haproxy.cfg', '-db'], true);
    const argv = [command, ...args];
    const setpriv = argv.indexOf('setpriv');
    assert.ok(setpriv >= 0, argv.join(' '));
    const tail = argv.slice(setpriv);
    assert.deepEqual(tail, ['setpriv', '--reuid', HAPROXY_OS_USER, '--regid', HAPROXY_OS_USER, '--init-groups', '--pdeathsig', 'KILL', '--', '/usr/sbin/haproxy', '-f', '/x/haproxy.cfg', '-db']);
  });

  void it('not as root, only adds the parent-death signal', () => {
    const { command, args } = haproxyCommand('/usr/sbin/haproxy', ['-c', '-f', 'f'], false);
    const argv = [command, ...args];
    assert.ok(!argv.includes('--reuid'));
    assert.deepEqual(argv.slice(argv.indexOf('setpriv')), ['setpriv', '--pdeathsig', 'KILL', '--', '/usr/sbin/haproxy', '-c', '-f', 'f']);
  });
});
