/**
 * App workflows end to end through bin/pgpilot with real PostgreSQL 15 and etcd, on one shared
 * 3-node cluster: two apps attached, each DATABASE_URL used with node-postgres through one node's
 * leader proxy port, kept working across a switchover with a reconnect, and unable to open the
 * other app's database (42501); the env file (0600); attaching twice refused; status listing the
 * apps; `connect --user`; users and db commands; detach leaving no role, `--drop-database` refused
 * without `--yes` (exit 2, nothing changed); and `import` from a second, standalone postgres started
 * here (initdb as the postgres OS user, scram, a free loopback port, stopped by its PID in `after`):
 * every table copied with equal row counts (a non-public schema, sequences, an odd table name),
 * into a new database and into an attached app's database (the app then owns the tables); an
 * unreachable source or a wrong password creates nothing; a target with tables is refused.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import type { ClusterStatus } from '../../src/operations/cluster-status.js';
import { findPgBinDir } from '../../src/postgres/bin-dir.js';
import { ensurePostgresOwnedDir, runInitdb } from '../../src/postgres/initdb.js';
import { Postmaster } from '../../src/postgres/postmaster.js';
import { findFreePorts, LOOPBACK_HOST } from '../../src/shared/ports.js';
import { makeTempHome, PGPILOT_BIN, removeTempHome, runCli, type CliResult } from '../helpers/cli.js';
import { clusterCaFile, clusterStatusOf, leaderOf, pgClientOptions, withNode } from '../helpers/cluster.js';
import { verifyFullSsl } from '../../src/postgres/queries.js';
import { waitUntil } from '../helpers/wait.js';

const NAME = 'apps';
const SOURCE_PASSWORD = 'src-Pw:with@odd/chars';
const SOURCE_DB = 'legacy';

interface AppUrl {
  user: string;
  password: string;
  hosts: Array<{ host: string; port: number }>;
  database: string;
  /** The URL's sslrootcert (the cluster CA file); the URL asks for sslmode=verify-full. */
  caFile: string;
}

/** Splits a multi-host DATABASE_URL (node-postgres takes one host, so tests pick one of them). */
function parseAppUrl(url: string): AppUrl {
  const match = /^postgresql:\/\/([^:]+):([^@]+)@([^/]+)\/([^?]+)\?target_session_attrs=read-write&sslmode=verify-full&sslrootcert=([^&]+)$/.exec(url);
  assert.ok(match, url);
  const [, user = '', password = '', hosts = '', database = '', caFile = ''] = match;
  return {
    user: decodeURIComponent(user),
    password: decodeURIComponent(password),
    hosts: hosts.split(',').map((h) => ({ host: h.split(':')[0] ?? '', port: Number(h.split(':')[1]) })),
    database: decodeURIComponent(database),
    caFile: decodeURIComponent(caFile),
  };
}

/** A node-postgres client for `url`, through its `index`-th leader proxy port, optionally to another database (TLS, verify-full). */
async function appClient(url: AppUrl, options: { index?: number; database?: string } = {}): Promise<pg.Client> {
  const target = url.hosts[options.index ?? 0];
  assert.ok(target);
  const client = new pg.Client({
    host: target.host,
    port: target.port,
    user: url.user,
    password: url.password,
    database: options.database ?? url.database,
    connectionTimeoutMillis: 30_000,
    ssl: verifyFullSsl(readFileSync(url.caFile, 'utf8')),
  });
  client.on('error', () => undefined);
  await client.connect();
  return client;
}

async function sqlStateOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    return (error as { code?: string }).code ?? `no code: ${String(error)}`;
  }
  return 'no error';
}

function urlFromStdout(result: CliResult): string {
  const line = result.stdout.split('\n').find((l) => l.startsWith('DATABASE_URL='));
  assert.ok(line, result.stdout + result.stderr);
  return line.slice('DATABASE_URL='.length);
}

/** bin/pgpilot with extra environment and stdin text (runCli gives neither). */
function runCliWith(args: readonly string[], options: { home: string; env?: Record<string, string>; input?: string }): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = execFile(
      PGPILOT_BIN,
      [...args],
      { env: { ...process.env, PGPILOT_HOME: options.home, ...options.env }, timeout: 120_000, killSignal: 'SIGKILL' },
      (error, stdout, stderr) => resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : 1, stdout, stderr }),
    );
    child.stdin?.end(options.input ?? '');
  });
}

void describe('app workflows through bin/pgpilot', () => {
  let home = '';
  let sourceRoot = '';
  let sourcePort = 0;
  const source = new Postmaster();
  const statusNow = (): Promise<ClusterStatus> => clusterStatusOf(home, NAME);
  const superuserQuery = async <T extends pg.QueryResultRow>(sql: string, database = 'postgres', params: unknown[] = []): Promise<T[]> => {
    const status = await statusNow();
    const leader = leaderOf(status);
    if (database === 'postgres') return withNode(status, leader, async (client) => (await client.query<T>(sql, params)).rows);
    const other = new pg.Client(pgClientOptions(status, leader, { database, connectionTimeoutMillis: 5_000 }));
    other.on('error', () => undefined);
    await other.connect();
    try {
      return (await other.query<T>(sql, params)).rows;
    } finally {
      await other.end().catch(() => undefined);
    }
  };
  const sourceUrl = (database = SOURCE_DB, password = SOURCE_PASSWORD, port = sourcePort) =>
    `postgresql://postgres:${encodeURIComponent(password)}@${LOOPBACK_HOST}:${port}/${database}`;
  const sourceQuery = async (sql: string, database = SOURCE_DB): Promise<pg.QueryResult<Record<string, unknown>>> => {
    const client = new pg.Client({ host: LOOPBACK_HOST, port: sourcePort, user: 'postgres', password: SOURCE_PASSWORD, database, connectionTimeoutMillis: 5_000 });
    client.on('error', () => undefined);
    await client.connect();
    try {
      return await client.query<Record<string, unknown>>(sql);
    } finally {
      await client.end().catch(() => undefined);
    }
  };
  const databaseExists = async (database: string) => (await superuserQuery('SELECT 1 FROM pg_database WHERE datname = $1', 'postgres', [database])).length === 1;
  const roleExists = async (role: string) => (await superuserQuery('SELECT 1 FROM pg_roles WHERE rolname = $1', 'postgres', [role])).length === 1;
  const urls = new Map<string, string>();

  before(async () => {
    home = makeTempHome('apps');
    sourceRoot = await mkdtemp(path.join(home, 'source-'));
    const created = await runCli(['create', NAME, '--json', '--show-secrets'], { home });
    assert.equal(created.code, 0, created.stderr);

    // The standalone source postgres: initdb as the postgres OS user (when root), scram, loopback.
    const binDir = await findPgBinDir();
    const dataDir = path.join(sourceRoot, 'data');
    const socketDir = path.join(sourceRoot, 'sock');
    await ensurePostgresOwnedDir(sourceRoot, 0o755);
    await ensurePostgresOwnedDir(socketDir, 0o755);
    await runInitdb({ binDir, dataDir, superuser: 'postgres', superuserPassword: SOURCE_PASSWORD });
    [sourcePort = 0] = await findFreePorts(1);
    await source.start({
      binDir,
      dataDir,
      logFile: path.join(sourceRoot, 'postgres.log'),
      extraArgs: ['-c', `port=${sourcePort}`, '-c', `listen_addresses=${LOOPBACK_HOST}`, '-c', `unix_socket_directories=${socketDir}`, '-c', 'max_connections=30'],
    });
    await waitUntil('the source postgres to accept connections', async () => (await sourceQuery('SELECT 1', 'postgres')).rowCount === 1, 30_000);
    await sourceQuery(`CREATE DATABASE ${SOURCE_DB}`, 'postgres');
    await sourceQuery(`
      CREATE SCHEMA sales;
      CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL);
      INSERT INTO customers (name) SELECT 'customer ' || g FROM generate_series(1, 500) g;
      CREATE TABLE sales.orders (id bigserial PRIMARY KEY, customer_id int NOT NULL REFERENCES customers, amount numeric(10,2));
      INSERT INTO sales.orders (customer_id, amount) SELECT 1 + g % 500, g / 7.0 FROM generate_series(1, 2000) g;
      CREATE INDEX ON sales.orders (customer_id);
      CREATE TABLE events (id bigint GENERATED ALWAYS AS IDENTITY, payload jsonb);
      INSERT INTO events (payload) SELECT jsonb_build_object('n', g) FROM generate_series(1, 10000) g;
      CREATE TABLE empty_table (x int);
      CREATE TABLE "Mixed Case" (v text);
      INSERT INTO "Mixed Case" VALUES ('a'), ('b'), ('c');
      CREATE VIEW big_orders AS SELECT * FROM sales.orders WHERE amount > 100;`);
  });

  after(async () => {
    if (process.env['PGPILOT_TEST_KEEP'] === '1') return;
    if (existsSync(path.join(home, 'clusters', NAME))) await runCli(['destroy', NAME, '--yes'], { home });
    await source.stop('fast', 30_000);
    await rm(sourceRoot, { recursive: true, force: true });
    await removeTempHome(home);
  });

  void it('attaches two apps with private databases, an env file, and refuses a second attach', async () => {
    const shop = await runCli(['attach', NAME, '--app', 'shop'], { home });
    assert.equal(shop.code, 0, shop.stderr);
    assert.match(shop.stderr, /shown only now/);
    urls.set('shop', urlFromStdout(shop));

    const envFile = path.join(home, 'blog.env');
    const blog = await runCli(['attach', NAME, '--app', 'blog', '--database-name', 'blog_prod', '--user', 'blog_web', '--env-file', envFile, '--json'], { home });
    assert.equal(blog.code, 0, blog.stderr);
    const blogJson = JSON.parse(blog.stdout) as { app: string; database: string; user: string; databaseUrl: string };
    assert.deepEqual([blogJson.app, blogJson.database, blogJson.user], ['blog', 'blog_prod', 'blog_web']);
    urls.set('blog', blogJson.databaseUrl);
    assert.equal((await stat(envFile)).mode & 0o777, 0o600);
    assert.equal(await readFile(envFile, 'utf8'), `DATABASE_URL=${blogJson.databaseUrl}\n`);
    // An env file that exists (or a symlink) is refused before anything is attached: nothing lost.
    const taken = await runCli(['attach', NAME, '--app', 'wiki', '--env-file', envFile], { home });
    assert.equal(taken.code, 2, taken.stderr);
    assert.match(taken.stderr, /error: .*blog\.env already exists; pgpilot never overwrites an env file/);
    assert.match(taken.stderr, /hint: .*nothing was attached/);
    assert.equal(taken.stdout, '', 'no URL printed');
    assert.equal(await readFile(envFile, 'utf8'), `DATABASE_URL=${blogJson.databaseUrl}\n`, 'the existing env file is unchanged');

    const status = await statusNow();
    assert.equal(parseAppUrl(blogJson.databaseUrl).hosts.length, status.members.length, 'one leader proxy port per node');
    assert.equal(parseAppUrl(blogJson.databaseUrl).caFile, clusterCaFile(home, NAME), 'sslrootcert is the cluster CA');
    // The single-host form of the URL works with node-postgres as is (it reads sslrootcert itself).
    const first = parseAppUrl(blogJson.databaseUrl).hosts[0];
    assert.ok(first);
    const single = new pg.Client({ connectionString: blogJson.databaseUrl.replace(/@[^/]+\//, `@${first.host}:${first.port}/`), connectionTimeoutMillis: 30_000 });
    single.on('error', () => undefined);
    await single.connect();
    try {
      assert.equal((await single.query<{ ssl: boolean }>('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()')).rows[0]?.ssl, true);
    } finally {
      await single.end().catch(() => undefined);
    }
    assert.deepEqual(status.apps, [
      { app: 'blog', database: 'blog_prod', user: 'blog_web' },
      { app: 'shop', database: 'shop', user: 'shop' },
    ]);
    const text = await runCli(['status', NAME], { home });
    assert.match(text.stdout, /attached apps: +blog \(database blog_prod, user blog_web\), shop \(database shop, user shop\)/);

    const again = await runCli(['attach', NAME, '--app', 'shop'], { home });
    assert.equal(again.code, 2, again.stderr);
    assert.match(again.stderr, /error: app shop is already attached/);
    assert.match(again.stderr, /hint: .*pgpilot detach apps --app shop/);
    assert.equal(again.stdout, '', 'no second URL');

    // Private databases, owner-only public schema; the password is stored nowhere in etcd.
    const acl = await superuserQuery<{ datname: string; public_connect: boolean; owner: string }>(
      "SELECT datname, has_database_privilege('public', oid, 'CONNECT') AS public_connect, pg_get_userbyid(datdba) AS owner FROM pg_database WHERE datname IN ('shop', 'blog_prod') ORDER BY 1",
    );
    assert.deepEqual(acl, [
      { datname: 'blog_prod', public_connect: false, owner: 'blog_web' },
      { datname: 'shop', public_connect: false, owner: 'shop' },
    ]);
    const schema = await superuserQuery<{ create: boolean }>("SELECT has_schema_privilege('blog_web', 'public', 'CREATE') AS create", 'shop');
    assert.deepEqual(schema, [{ create: false }]);
  });

  void it('gives each app a working DATABASE_URL that cannot open the other app\'s database, across a switchover', async () => {
    const shopUrl = parseAppUrl(urls.get('shop') ?? '');
    const blogUrl = parseAppUrl(urls.get('blog') ?? '');
    for (const [url, label] of [[shopUrl, 'shop'], [blogUrl, 'blog']] as const) {
      const client = await appClient(url);
      try {
        await client.query('CREATE TABLE items (id serial PRIMARY KEY, label text)');
        await client.query('INSERT INTO items (label) SELECT $1 || g FROM generate_series(1, 10) g', [label]);
      } finally {
        await client.end();
      }
    }
    assert.equal(await sqlStateOf(appClient(shopUrl, { database: 'blog_prod' })), '42501', 'shop cannot connect to blog_prod');
    assert.equal(await sqlStateOf(appClient(blogUrl, { database: 'shop' })), '42501', 'blog cannot connect to shop');

    const before = leaderOf(await statusNow());
    const held = await appClient(shopUrl, { index: 1 });
    const switched = await runCli(['switchover', NAME], { home });
    assert.equal(switched.code, 0, switched.stderr);
    const afterSwitch = leaderOf(await statusNow());
    assert.notEqual(afterSwitch.name, before.name);
    await held.end().catch(() => undefined);

    for (const [url, label] of [[shopUrl, 'shop'], [blogUrl, 'blog']] as const) {
      const client = await appClient(url, { index: 2 });
      try {
        await client.query('INSERT INTO items (label) VALUES ($1)', [`${label}-after`]);
        const rows = await client.query<{ n: string }>('SELECT count(*)::text AS n FROM items');
        assert.equal(rows.rows[0]?.n, '11', `${label}: every row kept, writable on the new leader`);
      } finally {
        await client.end();
      }
    }
    assert.equal(await sqlStateOf(appClient(shopUrl, { database: 'blog_prod', index: 2 })), '42501');
  });

  void it('connect --user opens psql as an app user (password from PGPASSWORD)', async () => {
    const shopUrl = parseAppUrl(urls.get('shop') ?? '');
    const result = await runCliWith(['connect', NAME, '--user', 'shop', '-d', 'shop', '--', '-XAtc', 'select current_user, count(*) from items'], {
      home,
      env: { PGPASSWORD: shopUrl.password },
    });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout.trim(), 'shop|11');
  });

  void it('manages users and databases', async () => {
    const created = await runCli(['users', 'create', NAME, 'analyst', '--json'], { home });
    assert.equal(created.code, 0, created.stderr);
    const analyst = JSON.parse(created.stdout) as { user: string; password: string };
    const status = await statusNow();
    const proxy = { host: status.members[0]?.host ?? '', port: status.members[0]?.proxyPort ?? 0 };
    const analystUrl: AppUrl = { user: 'analyst', password: analyst.password, hosts: [proxy], database: 'postgres', caFile: clusterCaFile(home, NAME) };
    const client = await appClient(analystUrl);
    assert.equal((await client.query<{ u: string }>('SELECT current_user AS u')).rows[0]?.u, 'analyst');
    await client.end();
    assert.equal(await sqlStateOf(appClient(analystUrl, { database: 'shop' })), '42501', 'a plain user cannot open an app database');

    const duplicate = await runCli(['users', 'create', NAME, 'analyst'], { home });
    assert.equal(duplicate.code, 2, duplicate.stderr);
    const reserved = await runCli(['users', 'create', NAME, 'replicator'], { home });
    assert.equal(reserved.code, 2, reserved.stderr);
    assert.match(reserved.stderr, /reserved/);
    const noStdin = await runCli(['users', 'create', NAME, 'reporter', '--password-stdin'], { home });
    assert.equal(noStdin.code, 2, noStdin.stderr);
    const piped = await runCliWith(['users', 'create', NAME, 'reporter', '--password-stdin'], { home, input: 'Rep0rter-pw\n' });
    assert.equal(piped.code, 0, piped.stderr);
    assert.doesNotMatch(piped.stdout, /Rep0rter-pw/, 'a supplied password is not echoed');
    const reporter = await appClient({ user: 'reporter', password: 'Rep0rter-pw', hosts: [proxy], database: 'postgres', caFile: clusterCaFile(home, NAME) });
    await reporter.end();

    const dbCreated = await runCli(['db', 'create', NAME, 'reports', '--owner', 'analyst'], { home });
    assert.equal(dbCreated.code, 0, dbCreated.stderr);
    const reports = await appClient({ ...analystUrl, database: 'reports' });
    await reports.query('CREATE TABLE r (x int)');
    await reports.end();
    assert.equal(await sqlStateOf(appClient({ user: 'reporter', password: 'Rep0rter-pw', hosts: [proxy], database: 'reports', caFile: clusterCaFile(home, NAME) })), '42501');

    const dbs = await runCli(['db', 'list', NAME, '--json'], { home });
    assert.equal(dbs.code, 0, dbs.stderr);
    const list = JSON.parse(dbs.stdout) as Array<{ name: string; owner: string; publicConnect: boolean; app: string | null }>;
    const reportsRow = list.find((d) => d.name === 'reports');
    assert.deepEqual([reportsRow?.owner, reportsRow?.publicConnect, reportsRow?.app], ['analyst', false, null]);
    assert.equal(list.find((d) => d.name === 'shop')?.app, 'shop');
    assert.ok(!list.some((d) => d.name.startsWith('template')));

    const users = await runCli(['users', 'list', NAME, '--json'], { home });
    assert.equal(users.code, 0, users.stderr);
    const userList = JSON.parse(users.stdout) as Array<{ name: string; app: string | null; managed: boolean; superuser: boolean }>;
    assert.equal(userList.find((u) => u.name === 'blog_web')?.app, 'blog');
    assert.equal(userList.find((u) => u.name === 'postgres')?.managed, true);
    assert.ok(!userList.some((u) => u.name.startsWith('pg_')));

    const appUser = await runCli(['users', 'delete', NAME, 'shop', '--yes'], { home });
    assert.equal(appUser.code, 2, appUser.stderr);
    assert.match(appUser.stderr, /pgpilot detach apps --app shop/);
    const unconfirmed = await runCli(['users', 'delete', NAME, 'analyst'], { home });
    assert.equal(unconfirmed.code, 2, unconfirmed.stderr);
    assert.ok(await roleExists('analyst'));
    for (const user of ['analyst', 'reporter']) {
      const deleted = await runCli(['users', 'delete', NAME, user, '--yes'], { home });
      assert.equal(deleted.code, 0, deleted.stderr);
      assert.equal(await roleExists(user), false, user);
    }
    assert.deepEqual(await superuserQuery('SELECT pg_get_userbyid(datdba) AS owner FROM pg_database WHERE datname = $1', 'postgres', ['reports']), [{ owner: 'postgres' }]);
  });

  void it('imports a whole database with equal row counts, and leaves the target untouched when the source is unreachable', async () => {
    const unreachablePort = (await findFreePorts(1))[0] ?? 1;
    const unreachable = await runCli(['import', NAME, '--source', sourceUrl(SOURCE_DB, SOURCE_PASSWORD, unreachablePort), '--database', 'never'], { home });
    assert.equal(unreachable.code, 1, unreachable.stderr);
    assert.match(unreachable.stderr, /error: cannot reach the source/);
    assert.match(unreachable.stderr, /nothing was imported or created/);
    assert.doesNotMatch(unreachable.stderr, new RegExp(SOURCE_PASSWORD.replace(/[/]/g, '\\/')));
    const badPassword = await runCli(['import', NAME, '--source', sourceUrl(SOURCE_DB, 'wrong-password'), '--database', 'never'], { home });
    assert.notEqual(badPassword.code, 0);
    assert.match(badPassword.stderr, /check the user and password/);
    assert.equal(await databaseExists('never'), false);

    const imported = await runCli(['import', NAME, '--source', sourceUrl(), '--jobs', '2', '--json'], { home });
    assert.equal(imported.code, 0, imported.stderr);
    assert.match(imported.stderr, /restoring table sales\.orders/);
    assert.match(imported.stderr, /dumping table public\.events/);
    const result = JSON.parse(imported.stdout) as { database: string; tables: Array<{ table: string; rows: number }>; owner: string };
    assert.equal(result.database, SOURCE_DB);
    assert.equal(result.owner, 'postgres');

    // Our own count, table by table, on both sides.
    const tablesSql = `SELECT n.nspname || '.' || c.relname AS t, format('%I.%I', n.nspname, c.relname) AS q
                         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                        WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast' ORDER BY 1`;
    const sourceTables = (await sourceQuery(tablesSql)).rows as unknown as Array<{ t: string; q: string }>;
    assert.deepEqual(sourceTables.map((t) => t.t), ['public.Mixed Case', 'public.customers', 'public.empty_table', 'public.events', 'sales.orders']);
    const expected: Record<string, number> = {};
    for (const table of sourceTables) expected[table.t] = Number((await sourceQuery(`SELECT count(*) AS n FROM ${table.q}`)).rows[0]?.n);
    const actual: Record<string, number> = {};
    for (const table of await superuserQuery<{ t: string; q: string }>(tablesSql, SOURCE_DB)) {
      actual[table.t] = Number((await superuserQuery<{ n: string }>(`SELECT count(*) AS n FROM ${table.q}`, SOURCE_DB))[0]?.n);
    }
    assert.deepEqual(actual, expected);
    assert.deepEqual(expected, { 'public.Mixed Case': 3, 'public.customers': 500, 'public.empty_table': 0, 'public.events': 10000, 'sales.orders': 2000 });
    assert.deepEqual(Object.fromEntries(result.tables.map((t) => [t.table, t.rows])), expected);
    const sequence = await superuserQuery<{ id: number }>("INSERT INTO customers (name) VALUES ('new') RETURNING id", SOURCE_DB);
    assert.equal(sequence[0]?.id, 501, 'sequences carried over');
    assert.equal((await superuserQuery<{ n: string }>('SELECT count(*) AS n FROM big_orders', SOURCE_DB)).length, 1, 'views too');

    const again = await runCli(['import', NAME, '--source', sourceUrl()], { home });
    assert.equal(again.code, 2, again.stderr);
    assert.match(again.stderr, /already has 5 table\(s\)/);
    assert.equal((await superuserQuery<{ n: string }>('SELECT count(*)::text AS n FROM customers', SOURCE_DB))[0]?.n, '501', 'the refused import changed nothing');
  });

  void it('imports into an attached app database, owned by the app', async () => {
    const attached = await runCli(['attach', NAME, '--app', 'legacy-app'], { home });
    assert.equal(attached.code, 0, attached.stderr);
    const url = parseAppUrl(urlFromStdout(attached));
    assert.equal(url.database, 'legacy_app');
    const imported = await runCli(['import', NAME, '--source', sourceUrl(), '--database', 'legacy_app'], { home });
    assert.equal(imported.code, 0, imported.stderr);
    assert.match(imported.stdout, /imported 5 table\(s\), 12503 row\(s\) into legacy_app \(owner legacy_app\)/);
    const client = await appClient(url);
    try {
      const owners = await client.query<{ owner: string }>("SELECT DISTINCT tableowner AS owner FROM pg_tables WHERE schemaname IN ('public', 'sales')");
      assert.deepEqual(owners.rows, [{ owner: 'legacy_app' }]);
      await client.query("INSERT INTO sales.orders (customer_id, amount) VALUES (1, 1)");
    } finally {
      await client.end();
    }
  });

  void it('detaches: no role left behind, --drop-database needs --yes', async () => {
    const blog = await runCli(['detach', NAME, '--app', 'blog'], { home });
    assert.equal(blog.code, 0, blog.stderr);
    assert.equal(await roleExists('blog_web'), false);
    assert.equal(await databaseExists('blog_prod'), true, 'the data is kept without --drop-database');
    assert.equal(await sqlStateOf(appClient(parseAppUrl(urls.get('blog') ?? ''))), '28P01', 'the old URL no longer authenticates');

    const refused = await runCli(['detach', NAME, '--app', 'shop', '--drop-database'], { home });
    assert.equal(refused.code, 2, refused.stderr);
    assert.match(refused.stderr, /hint: add --yes/);
    assert.equal(await databaseExists('shop'), true);
    assert.equal(await roleExists('shop'), true);
    assert.ok((await statusNow()).apps?.some((a) => a.app === 'shop'), 'still attached');

    const held = await appClient(parseAppUrl(urls.get('shop') ?? ''));
    const dropped = await runCli(['detach', NAME, '--app', 'shop', '--drop-database', '--yes', '--json'], { home });
    assert.equal(dropped.code, 0, dropped.stderr);
    await held.end().catch(() => undefined);
    assert.equal(await databaseExists('shop'), false);
    assert.equal(await roleExists('shop'), false);
    assert.equal(await roleExists('legacy_app'), true);
    const detachAgain = await runCli(['detach', NAME, '--app', 'shop'], { home });
    assert.equal(detachAgain.code, 2, detachAgain.stderr);
    assert.deepEqual((await statusNow()).apps, [{ app: 'legacy-app', database: 'legacy_app', user: 'legacy_app' }]);
  });
});
