import { test } from 'node:test';
import assert from 'node:assert/strict';
import { basebackupArgs, basebackupEnv } from '../../src/postgres/basebackup.js';
import { PgpilotError } from '../../src/shared/errors.js';

void test('basebackupArgs clones with streamed WAL, a fast checkpoint and no prompt', () => {
  assert.deepEqual(basebackupArgs({ dataDir: '/data/n2', host: '127.0.0.1', port: 5433, user: 'replicator' }), [
    '-D',
    '/data/n2',
    '-h',
    '127.0.0.1',
    '-p',
    '5433',
    '-U',
    'replicator',
    '--wal-method=stream',
    '--checkpoint=fast',
    '--no-password',
  ]);
});

void test('basebackupArgs never carries a password and rejects bad ports', () => {
  const args = basebackupArgs({ dataDir: '/d', host: 'h', port: 1, user: 'u' });
  assert.ok(!args.some((a) => /password=|^-W$|--password$/.test(a)));
  assert.throws(() => basebackupArgs({ dataDir: '/d', host: 'h', port: 70000, user: 'u' }), PgpilotError);
});

void test('basebackupEnv passes the password file, application name and verify-full TLS, nothing inherited from PG*', () => {
  const saved = process.env['PGPASSWORD'];
  process.env['PGPASSWORD'] = 'leak';
  try {
    const env = basebackupEnv({ passfile: '/x/pgpass', applicationName: 'node-2', caFile: '/x/tls/ca.crt' });
    assert.equal(env['PGPASSFILE'], '/x/pgpass');
    assert.equal(env['PGAPPNAME'], 'node-2');
    assert.equal(env['PGPASSWORD'], undefined);
    assert.equal(env['PGSSLMODE'], 'verify-full');
    assert.equal(env['PGSSLROOTCERT'], '/x/tls/ca.crt');
    assert.equal(basebackupEnv({ passfile: '/p', caFile: '/ca' })['PGAPPNAME'], undefined);
  } finally {
    if (saved === undefined) delete process.env['PGPASSWORD'];
    else process.env['PGPASSWORD'] = saved;
  }
});
