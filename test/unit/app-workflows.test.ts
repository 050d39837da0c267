/**
 * The pure parts of the app workflows (attach, detach, users, db, import): name validation and the
 * reserved names, SQL builders (SCRAM verifiers only, quoting, private databases, role cleanup),
 * DATABASE_URL and env-file building, attachment records in a DCS (create-if-absent), source URL
 * parsing and pg_dump / pg_restore argv (never a password), the progress parser on lines
 * PostgreSQL 15 prints, row-count comparison, confirmation checks, and the commands' registration
 * (help with examples; refusals that need no cluster exit 2 before touching anything).
 */
import assert from 'node:assert/strict';
import { lstat, mkdtemp, readFile, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { Command } from 'commander';
import {
  compareCounts,
  createDatabaseSql,
  createRoleSql,
  defaultAppNames,
  dropDatabaseSql,
  generatePassword,
  privateDatabaseSql,
  qualifiedName,
  releaseRoleSql,
  validateName,
} from '../../src/postgres/app-queries.js';
import { isScramVerifier, scramSha256Verifier } from '../../src/postgres/scram.js';
import {
  appDatabaseUrl,
  attachmentsIn,
  listAttachments,
  readAttachment,
  removeAttachment,
  reserveAttachment,
  createEnvFile,
  envFileContent,
} from '../../src/providers/local/app-attachments.js';
import { clusterKeys } from '../../src/dcs/keys.js';
import { MemoryDcs, MemoryDcsStore } from '../../src/dcs/memory-dcs.js';
import { FakeClock } from '../../src/shared/clock.js';
import { parseDumpRestoreLine, parseSourceUrl, pgDumpArgs, pgRestoreArgs } from '../../src/postgres/dump-restore.js';
import { checkDetachConfirmation } from '../../src/cli/commands/detach.js';
import { passwordFromStdin } from '../../src/cli/commands/users.js';
import { checkImportLimits, describeMismatches } from '../../src/cli/commands/import.js';
import { describeApps } from '../../src/cli/commands/status.js';
import { contextOption, examples, homeOption, makeWrap, parseInteger } from '../../src/cli/program-helpers.js';
import { registerAppCommands } from '../../src/cli/register-app-commands.js';
import type { Output } from '../../src/cli/output.js';
import { PgpilotError, isPgpilotError } from '../../src/shared/errors.js';
import type { ClusterStatus } from '../../src/operations/cluster-status.js';

function thrown(fn: () => unknown): PgpilotError {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof PgpilotError, `expected a PgpilotError, got ${String(error)}`);
    return error;
  }
  assert.fail('expected an error');
}

void describe('validateName', () => {
  void it('accepts lower-case names with digits, _ and -', () => {
    for (const name of ['shop', 'blog_api', 'my-app2', 'a', 'x'.repeat(63)]) assert.equal(validateName('app', name), name);
  });

  void it('rejects other forms with INPUT_INVALID, exit 2 and a hint', () => {
    for (const name of ['', 'Shop', '1app', '_x', 'a b', 'a;drop', 'é', 'x'.repeat(64), 'a"b']) {
      const error = thrown(() => validateName('app', name));
      assert.equal(error.code, 'INPUT_INVALID', name);
      assert.equal(error.exitCode, 2);
      assert.match(error.hint ?? '', /lower-case/);
    }
  });

  void it('rejects pg_ and pgpilot prefixes and the reserved roles and databases', () => {
    for (const name of ['pg_monitor', 'pg_x', 'pgpilot', 'pgpilot_agent', 'postgres', 'replicator', 'public']) {
      assert.equal(thrown(() => validateName('user', name)).exitCode, 2, name);
    }
    for (const name of ['postgres', 'template0', 'template1']) assert.equal(thrown(() => validateName('database', name)).exitCode, 2, name);
    assert.equal(validateName('database', 'replicator'), 'replicator', 'a database may share a role name');
    assert.equal(thrown(() => validateName('user', 'admin_su', ['admin_su'])).code, 'INPUT_INVALID', "the cluster's own role names from secrets.json");
  });

  void it('derives the default database and user from the app name', () => {
    assert.deepEqual(defaultAppNames('my-shop'), { database: 'my_shop', user: 'my_shop' });
  });
});

void describe('SQL builders', () => {
  void it('creates roles with a SCRAM verifier only, never a clear password, and no extra privileges', () => {
    const password = generatePassword();
    assert.match(password, /^[A-Za-z0-9_-]{32}$/);
    const sql = createRoleSql('shop', scramSha256Verifier(password), { superuser: false });
    assert.ok(!sql.includes(password));
    const verifier = /PASSWORD '([^']+)'/.exec(sql)?.[1] ?? '';
    assert.ok(isScramVerifier(verifier), verifier);
    assert.match(sql, /^CREATE ROLE "shop" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION INHERIT PASSWORD 'SCRAM-SHA-256\$/);
    assert.match(createRoleSql('admin', scramSha256Verifier('x'), { superuser: true }), / SUPERUSER /);
    assert.equal(thrown(() => createRoleSql('shop', password, { superuser: false })).code, 'INTERNAL', 'a clear password is refused');
  });

  void it('quotes identifiers', () => {
    assert.equal(createDatabaseSql('we"ird', 'o"wner'), 'CREATE DATABASE "we""ird" OWNER "o""wner"');
    assert.equal(createDatabaseSql('reports', null), 'CREATE DATABASE "reports"');
    assert.equal(qualifiedName({ schema: 'Sales', name: 'order"s' }), '"Sales"."order""s"');
    assert.equal(dropDatabaseSql('shop'), 'DROP DATABASE IF EXISTS "shop" WITH (FORCE)');
  });

  void it('makes a database private to its owner', () => {
    assert.deepEqual(privateDatabaseSql('shop', 'shop_user'), [
      'REVOKE CONNECT, TEMPORARY ON DATABASE "shop" FROM PUBLIC',
      'GRANT CONNECT, TEMPORARY ON DATABASE "shop" TO "shop_user"',
    ]);
    assert.deepEqual(privateDatabaseSql('reports', null), ['REVOKE CONNECT, TEMPORARY ON DATABASE "reports" FROM PUBLIC']);
  });

  void it('hands owned objects to the superuser before dropping the privileges', () => {
    assert.deepEqual(releaseRoleSql('shop', 'postgres'), ['REASSIGN OWNED BY "shop" TO "postgres"', 'DROP OWNED BY "shop"']);
  });
});

void describe('row count comparison', () => {
  void it('reports differing counts and tables on one side only, sorted', () => {
    const source = new Map([['public.a', 3], ['public.b', 0], ['sales.c', 10]]);
    const target = new Map([['public.a', 3], ['public.b', 1], ['public.z', 0]]);
    const mismatches = compareCounts(source, target);
    assert.deepEqual(mismatches, [
      { table: 'public.b', source: 0, target: 1 },
      { table: 'public.z', source: null, target: 0 },
      { table: 'sales.c', source: 10, target: null },
    ]);
    assert.equal(describeMismatches(mismatches), 'public.b (source 0, target 1), public.z (source missing, target 0), sales.c (source 10, target missing)');
    assert.deepEqual(compareCounts(source, new Map(source)), []);
  });

  void it('shortens long lists', () => {
    const many = Array.from({ length: 12 }, (_, i) => ({ table: `public.t${i}`, source: 1, target: 0 }));
    assert.match(describeMismatches(many), /and 2 more$/);
  });
});

void describe('DATABASE_URL and env files', () => {
  const manifest = {
    nodes: [
      { host: '127.0.0.1', proxyPort: 41001 },
      { host: '127.0.0.1', proxyPort: 41002 },
    ],
    caFile: '/var/lib/pgpilot/clusters/shop/tls/ca.crt',
  } as unknown as Parameters<typeof appDatabaseUrl>[0];

  void it('lists every node leader proxy port, encodes the password, asks for a writable session and verify-full TLS', () => {
    assert.equal(
      appDatabaseUrl(manifest, 'shop', 'p@ss/w:rd', 'shop'),
      'postgresql://shop:p%40ss%2Fw%3Ard@127.0.0.1:41001,127.0.0.1:41002/shop?target_session_attrs=read-write&sslmode=verify-full&sslrootcert=/var/lib/pgpilot/clusters/shop/tls/ca.crt',
    );
  });

  void it('renders the env file as one KEY=value line and refuses what would break it', () => {
    assert.equal(envFileContent('DATABASE_URL', 'postgresql://u:p@h:1/d'), 'DATABASE_URL=postgresql://u:p@h:1/d\n');
    assert.throws(() => envFileContent('DATABASE_URL', 'a\nb'));
    assert.throws(() => envFileContent('1BAD', 'x'));
  });

  void it('creates the env file new with mode 0600, and refuses an existing file or a symlink without touching it', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'pgpilot-env-'));
    const previousUmask = process.umask(0);
    try {
      const fresh = path.join(dir, 'new.env');
      const handle = await createEnvFile(fresh);
      await handle.writeFile(envFileContent('DATABASE_URL', 'x'));
      await handle.close();
      assert.equal((await stat(fresh)).mode & 0o777, 0o600, 'exactly 0600 even with umask 0');
      assert.equal(await readFile(fresh, 'utf8'), 'DATABASE_URL=x\n');

      const refusal = (file: string, message: RegExp) => (error: unknown) => {
        assert.ok(isPgpilotError(error), String(error));
        assert.equal(error.code, 'INPUT_INVALID');
        assert.equal(error.exitCode, 2);
        assert.match(error.message, message);
        assert.match(error.hint ?? '', /nothing was attached/);
        assert.ok(error.message.includes(file));
        return true;
      };
      const existing = path.join(dir, '.env');
      await writeFile(existing, 'OTHER=1\n', { mode: 0o644 });
      await assert.rejects(createEnvFile(existing), refusal(existing, /already exists; pgpilot never overwrites/));
      assert.equal(await readFile(existing, 'utf8'), 'OTHER=1\n', 'content kept');
      assert.equal((await stat(existing)).mode & 0o777, 0o644, 'mode kept');

      const target = path.join(dir, 'victim');
      await writeFile(target, 'precious\n');
      const link = path.join(dir, 'link.env');
      await symlink(target, link);
      await assert.rejects(createEnvFile(link), refusal(link, /already exists \(a symbolic link\)/));
      assert.equal(await readFile(target, 'utf8'), 'precious\n', 'the link target is untouched');
      const dangling = path.join(dir, 'dangling.env');
      await symlink(path.join(dir, 'nowhere'), dangling);
      await assert.rejects(createEnvFile(dangling), refusal(dangling, /symbolic link/));
      assert.equal(await readlink(dangling), path.join(dir, 'nowhere'));
      await assert.rejects(lstat(path.join(dir, 'nowhere')), /ENOENT/, 'nothing created through the dangling link');

      await assert.rejects(createEnvFile(path.join(dir, 'no-such-dir', '.env')), refusal(path.join(dir, 'no-such-dir', '.env'), /cannot create the env file .*ENOENT/));
    } finally {
      process.umask(previousUmask);
      await rm(dir, { recursive: true, force: true });
    }
  });
});

void describe('attachment records', () => {
  const keys = clusterKeys('demo');

  void it('are created only once, read back, listed and removed', async () => {
    const dcs = new MemoryDcs(new MemoryDcsStore(new FakeClock()));
    const record = { app: 'shop', database: 'shop', user: 'shop', createdAt: '2024-01-01T00:00:00.000Z' };
    assert.equal(await reserveAttachment(dcs, keys, record), true);
    assert.equal(await reserveAttachment(dcs, keys, { ...record, database: 'other' }), false, 'an app is attached at most once');
    assert.deepEqual(await readAttachment(dcs, keys, 'shop'), record);
    await reserveAttachment(dcs, keys, { ...record, app: 'blog', database: 'blog', user: 'blog' });
    assert.deepEqual((await listAttachments(dcs, keys)).map((a) => a.app), ['blog', 'shop']);
    assert.ok(!(await dcs.get(keys.app('shop')))?.includes('password'));
    await removeAttachment(dcs, keys, 'shop');
    assert.equal(await readAttachment(dcs, keys, 'shop'), null);
  });

  void it('skips malformed values and records under the wrong key', () => {
    const all = new Map([
      [keys.app('a'), JSON.stringify({ app: 'a', database: 'a', user: 'a', createdAt: 'x' })],
      [keys.app('b'), 'not json'],
      [keys.app('c'), JSON.stringify({ app: 'other', database: 'c', user: 'c', createdAt: 'x' })],
      [keys.leader, 'node1'],
    ]);
    assert.deepEqual(attachmentsIn(all, keys).map((a) => a.app), ['a']);
  });

  void it('show in the status text', () => {
    const status = { apps: [{ app: 'shop', database: 'shop', user: 'shop' }] } as unknown as ClusterStatus;
    assert.equal(describeApps(status), 'shop (database shop, user shop)');
    assert.equal(describeApps({ apps: [] } as unknown as ClusterStatus), 'none');
  });
});

void describe('import: source URL and argv', () => {
  void it('takes the password out of the URL', () => {
    const source = parseSourceUrl('postgresql://app%40x:s3cr%2Ft@db.example:6543/shop?sslmode=require');
    assert.equal(source.password, 's3cr/t');
    assert.equal(source.user, 'app@x');
    assert.equal(source.host, 'db.example');
    assert.equal(source.port, 6543);
    assert.equal(source.database, 'shop');
    assert.equal(source.urlWithoutPassword, 'postgresql://app%40x@db.example:6543/shop?sslmode=require');
    const plain = parseSourceUrl('postgres://me@127.0.0.1/');
    assert.equal(plain.port, 5432);
    assert.equal(plain.password, null);
    assert.equal(plain.database, null);
  });

  void it('refuses what is not a single-host URL', () => {
    for (const text of ['host=x dbname=y', 'mysql://a@b/c', 'postgresql://u:p@h1:1,h2:2/db', 'postgresql:///db']) {
      const error = thrown(() => parseSourceUrl(text));
      assert.equal(error.exitCode, 2, text);
      assert.ok(!error.message.includes(':p@'), 'no password in the message');
    }
  });

  void it('puts no password in the pg_dump / pg_restore argv', () => {
    const source = parseSourceUrl('postgresql://app:topsecret@127.0.0.1:5999/shop');
    const dump = pgDumpArgs({ sourceUrl: source.urlWithoutPassword, dumpDir: '/tmp/d', jobs: 4, snapshot: '00000003-0000001B-1' });
    assert.deepEqual(dump, [
      '--format=directory',
      '--jobs=4',
      '--file=/tmp/d',
      '--snapshot=00000003-0000001B-1',
      '--verbose',
      '--no-password',
      '--dbname=postgresql://app@127.0.0.1:5999/shop',
    ]);
    const restore = pgRestoreArgs({ targetUrl: 'postgresql://postgres@127.0.0.1:1/shop', dumpDir: '/tmp/d', jobs: 2, role: 'shop', clean: true });
    assert.ok([...dump, ...restore].every((arg) => !arg.includes('topsecret')));
    assert.ok(restore.includes('--role=shop') && restore.includes('--clean') && restore.includes('--if-exists') && restore.includes('--no-owner'));
    assert.equal(restore.at(-1), '/tmp/d');
    const plain = pgRestoreArgs({ targetUrl: 'postgresql://postgres@127.0.0.1:1/shop', dumpDir: '/tmp/d', jobs: 2, role: null, clean: false });
    assert.ok(!plain.some((a) => a.startsWith('--role') || a === '--clean'));
  });

  void it('parses progress and errors from the verbose output of PostgreSQL 15', () => {
    assert.deepEqual(parseDumpRestoreLine('pg_dump: dumping contents of table "sales.orders"'), { kind: 'table', program: 'pg_dump', table: 'sales.orders' });
    assert.deepEqual(parseDumpRestoreLine('pg_restore: processing data for table "public.customers"'), { kind: 'table', program: 'pg_restore', table: 'public.customers' });
    assert.deepEqual(parseDumpRestoreLine('pg_restore: error: could not execute query: ERROR:  role "x" does not exist'), {
      kind: 'error',
      program: 'pg_restore',
      message: 'could not execute query: ERROR:  role "x" does not exist',
    });
    assert.deepEqual(parseDumpRestoreLine('pg_dump: error: connection to server at "h" failed: password=abc'), {
      kind: 'error',
      program: 'pg_dump',
      message: 'connection to server at "h" failed: password=[redacted]',
    });
    for (const other of ['pg_dump: reading extensions', 'pg_restore: finished item 3345 TABLE DATA customers', 'pg_restore: creating TABLE "public.customers"', '']) {
      assert.deepEqual(parseDumpRestoreLine(other), { kind: 'other' }, other);
    }
  });

  void it('checks --jobs and --timeout', () => {
    assert.doesNotThrow(() => checkImportLimits({ jobs: 2, timeoutSeconds: 60 }));
    for (const bad of [{ jobs: 0, timeoutSeconds: 60 }, { jobs: 17, timeoutSeconds: 60 }, { jobs: 2, timeoutSeconds: 0 }]) {
      assert.equal(thrown(() => checkImportLimits(bad)).exitCode, 2);
    }
  });
});

void describe('confirmations and stdin', () => {
  void it('refuses --drop-database without --yes', () => {
    const error = thrown(() => checkDetachConfirmation({ name: 'demo', app: 'shop', dropDatabase: true, yes: false }));
    assert.equal(error.code, 'CONFIRMATION_REQUIRED');
    assert.equal(error.exitCode, 2);
    assert.match(error.hint ?? '', /--drop-database --yes/);
    assert.doesNotThrow(() => checkDetachConfirmation({ name: 'demo', app: 'shop', dropDatabase: true, yes: true }));
    assert.doesNotThrow(() => checkDetachConfirmation({ name: 'demo', app: 'shop', dropDatabase: false, yes: false }));
  });

  void it('reads one password line from stdin', () => {
    assert.equal(passwordFromStdin('s3cret\n'), 's3cret');
    assert.equal(passwordFromStdin('s3cret\r\n'), 's3cret');
    assert.equal(passwordFromStdin('with space'), 'with space');
    assert.equal(thrown(() => passwordFromStdin('\n')).exitCode, 2);
    assert.equal(thrown(() => passwordFromStdin('a\nb\n')).exitCode, 2);
  });
});

void describe('registerAppCommands', () => {
  function program(): { program: Command; codes: number[]; stdout: string[]; stderr: string[] } {
    const codes: number[] = [];
    const stdout: string[] = [];
    const stderr: string[] = [];
    const output: Output = { out: (t) => stdout.push(t), err: (t) => stderr.push(t) };
    const root = new Command('pgpilot').exitOverride().configureOutput({ writeOut: (t) => stdout.push(t), writeErr: (t) => stderr.push(t) });
    registerAppCommands(root, { wrap: makeWrap((code) => codes.push(code), output), homeOption, contextOption, examples, output, parseInteger });
    return { program: root, codes, stdout, stderr };
  }

  void it('registers every command with examples in its help', () => {
    const { program: root } = program();
    const names = ['attach', 'detach', 'users list', 'users create', 'users delete', 'db list', 'db create', 'import'];
    for (const name of names) {
      const command = name.split(' ').reduce<Command | undefined>((parent, part) => parent?.commands.find((c) => c.name() === part), root);
      assert.ok(command, name);
      let help = '';
      command.configureOutput({ writeOut: (t) => (help += t) });
      command.outputHelp();
      assert.match(help, /Examples:\n {2}\$ pgpilot /, name);
    }
  });

  void it('refuses --drop-database without --yes before touching any cluster (exit 2)', async () => {
    const { program: root, codes, stderr } = program();
    await root.parseAsync(['detach', 'no-such-cluster', '--app', 'shop', '--drop-database', '--home', '/nonexistent'], { from: 'user' });
    assert.deepEqual(codes, [2]);
    assert.match(stderr.join('\n'), /error: --drop-database deletes the database of shop/);
    assert.match(stderr.join('\n'), /hint: add --yes/);
  });

  void it('refuses users delete without --yes and bad app names (exit 2)', async () => {
    const { program: root, codes } = program();
    await root.parseAsync(['users', 'delete', 'demo', 'analyst', '--home', '/nonexistent'], { from: 'user' });
    await root.parseAsync(['attach', 'demo', '--app', 'Bad Name', '--home', '/nonexistent'], { from: 'user' });
    await root.parseAsync(['import', 'demo', '--source', 'host=x', '--home', '/nonexistent'], { from: 'user' });
    assert.deepEqual(codes, [2, 2, 2]);
  });
});
