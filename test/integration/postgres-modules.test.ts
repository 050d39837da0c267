/**
 * The postgres modules against real PostgreSQL 15: initdb, our postgresql.conf / pg_hba.conf, the
 * Postmaster supervisor, SCRAM roles, slots, pg_basebackup, a streaming replica, pg_controldata,
 * and shutdown (clean and escalated). Postgres serves TLS with a certificate of a throwaway CA
 * (test/helpers/test-pki.ts); every client, pg_basebackup and the standby's walreceiver verify it
 * (verify-full), and a plain-text or wrongly-trusting client is refused. Everything lives in one
 * temp dir on free loopback ports; `after` stops whatever we started by PID and removes the dir
 * and the PKI, even when a step fails.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdtemp, readdir, readlink, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { findPgBinDir } from '../../src/postgres/bin-dir.js';
import { givePostgres, runInitdb, ensurePostgresOwnedDir, writePostgresPrivateFile } from '../../src/postgres/initdb.js';
import { renderConninfo, renderPgHba, renderPgpass, renderPostgresqlConf } from '../../src/postgres/conf.js';
import { Postmaster, removeStalePidFile, type PostmasterExit } from '../../src/postgres/postmaster.js';
import {
  connectLocal,
  dropSlotIfExists,
  ensurePhysicalSlot,
  ensureRole,
  listSlots,
  probeNode,
  replicationStatus,
  slotNameFor,
  sqlState,
  verifyFullSsl,
} from '../../src/postgres/queries.js';
import { runBasebackup } from '../../src/postgres/basebackup.js';
import { readControldata } from '../../src/postgres/controldata.js';
import { findFreePorts, LOOPBACK_HOST } from '../../src/shared/ports.js';
import { PgpilotError } from '../../src/shared/errors.js';
import { makeTestPki, type TestPki } from '../helpers/test-pki.js';

const SUPERUSER = 'postgres';
const SUPERUSER_PASSWORD = 'su-Pw:with\\odd chars';
const REPLICATOR = 'replicator';
const REPLICATOR_PASSWORD = "repl-'pw'-1";
const REPLICA_NODE = 'node-2';
const STEP_TIMEOUT_MS = 30_000;

let root = '';
let binDir = '';
let pki: TestPki | null = null;

/** The CA, certificate and key postgres serves (the key handed to the postgres OS user). */
function serverTls(): { caFile: string; certFile: string; keyFile: string } {
  assert.ok(pki !== null);
  return pki.server.files;
}

function caPem(): string {
  assert.ok(pki !== null);
  return pki.ca;
}
let primaryPort = 0;
let replicaPort = 0;
const primary = new Postmaster();
const replica = new Postmaster();
const clients = new Set<pg.Client>();

const dirs = () => ({
  primaryData: path.join(root, 'primary'),
  replicaData: path.join(root, 'replica'),
  primarySock: path.join(root, 'sock-primary'),
  replicaSock: path.join(root, 'sock-replica'),
  passfile: path.join(root, 'secrets', 'pgpass'),
});

/** Polls `probe` until it returns a truthy value; fails with the last error after the deadline. */
async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | null | undefined | false>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown = null;
  for (;;) {
    try {
      const value = await probe();
      if (value) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}${lastError instanceof Error ? `: ${lastError.message}` : ''}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function connect(port: number, user = SUPERUSER, password = SUPERUSER_PASSWORD): Promise<pg.Client> {
  const client = await connectLocal({ host: LOOPBACK_HOST, port, user, password, connectTimeoutMs: 5_000, ca: caPem() });
  clients.add(client);
  return client;
}

async function closeClient(client: pg.Client): Promise<void> {
  clients.delete(client);
  await client.end().catch(() => undefined);
}

async function waitConnectable(port: number): Promise<pg.Client> {
  return waitFor(`postgres on port ${port} to accept connections`, STEP_TIMEOUT_MS, () => connect(port));
}

/** PIDs of live processes working inside our temp dir (postmasters and backends chdir to their data dir). */
async function ourPostgresPids(): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cwd = await readlink(`/proc/${entry}/cwd`);
      if (root !== '' && cwd.startsWith(`${root}/`)) pids.push(Number(entry));
    } catch {
      // gone, or a zombie
    }
  }
  return pids;
}

async function writeNodeConf(options: {
  dataDir: string;
  port: number;
  socketDir: string;
  nodeName: string;
  standby: { primaryConninfo: string; primarySlotName: string } | null;
}): Promise<void> {
  const conf = renderPostgresqlConf({
    port: options.port,
    listenAddresses: LOOPBACK_HOST,
    socketDir: options.socketDir,
    clusterName: 'itest',
    nodeName: options.nodeName,
    parameters: { shared_buffers: '32MB', max_connections: 20 },
    standby: options.standby,
    tls: serverTls(),
  });
  await writePostgresPrivateFile(path.join(options.dataDir, 'postgresql.conf'), conf);
  const hba = renderPgHba({ superuser: SUPERUSER, replicationUser: REPLICATOR, cidrs: ['127.0.0.1/32', '::1/128'] });
  await writePostgresPrivateFile(path.join(options.dataDir, 'pg_hba.conf'), hba);
  if (options.standby) await writePostgresPrivateFile(path.join(options.dataDir, 'standby.signal'), '');
}

before(async () => {
  binDir = await findPgBinDir();
  root = await mkdtemp(path.join(tmpdir(), 'pgpilot-pgmod-'));
  // mkdtemp makes 0700; the postgres user must be able to traverse it.
  await chmod(root, 0o755);
  [primaryPort, replicaPort] = (await findFreePorts(2)) as [number, number];
  pki = await makeTestPki('pgmod');
  // postgres refuses a key it cannot read or that others can: 0600, owned by the postgres user.
  await givePostgres(pki.server.files.keyFile);
  const d = dirs();
  await ensurePostgresOwnedDir(d.primarySock, 0o755);
  await ensurePostgresOwnedDir(d.replicaSock, 0o755);
  await ensurePostgresOwnedDir(path.dirname(d.passfile), 0o700);
});

after(async () => {
  for (const client of [...clients]) await closeClient(client);
  for (const postmaster of [primary, replica]) {
    if (postmaster.isRunning()) await postmaster.stop('immediate', 10_000);
  }
  if (root !== '') await rm(root, { recursive: true, force: true });
  await pki?.cleanup();
});

void test('initdb creates a checksummed, postgres-owned data directory and refuses a non-empty one', async () => {
  const d = dirs();
  await runInitdb({ binDir, dataDir: d.primaryData, superuser: SUPERUSER, superuserPassword: SUPERUSER_PASSWORD });
  assert.ok(existsSync(path.join(d.primaryData, 'PG_VERSION')));
  const control = await readControldata(binDir, d.primaryData);
  assert.equal(control.dataChecksumVersion, 1);
  assert.equal(control.clusterState, 'shut down');
  // No password file left behind in the temp area.
  const leftovers = (await readdir(tmpdir())).filter((name) => name.startsWith('pgpilot-initdb-'));
  assert.deepEqual(leftovers, []);
  await assert.rejects(
    runInitdb({ binDir, dataDir: d.primaryData, superuser: SUPERUSER, superuserPassword: SUPERUSER_PASSWORD }),
    (error: unknown) => error instanceof PgpilotError && error.code === 'INPUT_INVALID',
  );
});

void test('the primary starts under our conf and accepts scram logins only with the right password', async () => {
  const d = dirs();
  await writeNodeConf({ dataDir: d.primaryData, port: primaryPort, socketDir: d.primarySock, nodeName: 'node-1', standby: null });
  const pid = await primary.start({ binDir, dataDir: d.primaryData, logFile: path.join(root, 'primary.log') });
  assert.equal(primary.pid, pid);
  assert.ok(primary.isRunning());
  const client = await waitConnectable(primaryPort);
  const auth = await client.query<{ setting: string }>("SELECT setting FROM pg_settings WHERE name = 'password_encryption'");
  assert.equal(auth.rows[0]?.setting, 'scram-sha-256');
  const methods = await client.query<{ auth_method: string }>('SELECT DISTINCT auth_method FROM pg_hba_file_rules ORDER BY 1');
  assert.deepEqual(methods.rows.map((r) => r.auth_method), ['reject', 'scram-sha-256']);
  const ssl = await client.query<{ ssl: boolean; version: string }>('SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()');
  assert.equal(ssl.rows[0]?.ssl, true, 'this very connection is TLS');
  assert.match(ssl.rows[0]?.version ?? '', /^TLSv1\.[23]$/);
  assert.equal((await client.query<{ ssl: string }>('SHOW ssl')).rows[0]?.ssl, 'on');

  await assert.rejects(connect(primaryPort, SUPERUSER, 'wrong-password'), (error: unknown) => {
    assert.ok(error instanceof PgpilotError && error.code === 'POSTGRES_FAILED');
    assert.equal(sqlState(error.cause), '28P01'); // invalid_password: scram was asked, not trust
    assert.ok(!error.message.includes('wrong-password'));
    return true;
  });
});

void test('the primary refuses plain-text TCP, and a client that trusts another CA refuses the primary', async () => {
  // Plain text with the right password: pg_hba's hostnossl ... reject line answers.
  const plain = new pg.Client({ host: LOOPBACK_HOST, port: primaryPort, user: SUPERUSER, password: SUPERUSER_PASSWORD, database: 'postgres', ssl: false, connectionTimeoutMillis: 5_000 });
  plain.on('error', () => undefined);
  await assert.rejects(plain.connect(), (error: unknown) => {
    assert.equal(sqlState(error), '28000', String(error)); // invalid_authorization_specification
    assert.match(String(error), /no encryption|reject/);
    return true;
  });
  await plain.end().catch(() => undefined);
  // TLS, but verified against another CA: the client refuses the server before any password is sent.
  const other = await makeTestPki('pgmod-other');
  try {
    const wary = new pg.Client({ host: LOOPBACK_HOST, port: primaryPort, user: SUPERUSER, password: SUPERUSER_PASSWORD, database: 'postgres', ssl: verifyFullSsl(other.ca), connectionTimeoutMillis: 5_000 });
    wary.on('error', () => undefined);
    await assert.rejects(wary.connect(), /certificate/i);
    await wary.end().catch(() => undefined);
  } finally {
    await other.cleanup();
  }
});

void test('ensureRole stores a SCRAM verifier the server accepts, idempotently', async () => {
  const client = await connect(primaryPort);
  assert.equal(await ensureRole(client, { name: REPLICATOR, password: 'first-password', replication: true }), 'created');
  assert.equal(await ensureRole(client, { name: REPLICATOR, password: REPLICATOR_PASSWORD, replication: true }), 'altered');
  const stored = await client.query<{ rolpassword: string; rolreplication: boolean; rolsuper: boolean; rolcanlogin: boolean }>(
    'SELECT rolpassword, rolreplication, rolsuper, rolcanlogin FROM pg_authid WHERE rolname = $1',
    [REPLICATOR],
  );
  const row = stored.rows[0];
  assert.ok(row);
  assert.match(row.rolpassword, /^SCRAM-SHA-256\$4096:/);
  assert.ok(row.rolreplication && row.rolcanlogin && !row.rolsuper);

  const asReplicator = await connect(primaryPort, REPLICATOR, REPLICATOR_PASSWORD);
  const who = await asReplicator.query<{ u: string }>('SELECT current_user AS u');
  assert.equal(who.rows[0]?.u, REPLICATOR);
  await closeClient(asReplicator);
  await assert.rejects(connect(primaryPort, REPLICATOR, 'first-password'), (error: unknown) => {
    return error instanceof PgpilotError && sqlState(error.cause) === '28P01';
  });
});

void test('slots are created once, listed, and not dropped while inactive checks pass', async () => {
  const client = await connect(primaryPort);
  const slot = slotNameFor(REPLICA_NODE);
  assert.equal(slot, 'node_2');
  assert.equal(await ensurePhysicalSlot(client, slot), 'created');
  assert.equal(await ensurePhysicalSlot(client, slot), 'exists');
  assert.equal(await ensurePhysicalSlot(client, 'scratch_slot'), 'created');
  const slots = await listSlots(client);
  const ours = slots.find((s) => s.slotName === slot);
  assert.ok(ours);
  assert.equal(ours.slotType, 'physical');
  assert.equal(ours.active, false);
  assert.ok(ours.restartLsn !== null, 'immediately_reserve keeps WAL from creation on');
  assert.equal(await dropSlotIfExists(client, 'scratch_slot'), 'dropped');
  assert.equal(await dropSlotIfExists(client, 'scratch_slot'), 'absent');
  await assert.rejects(ensurePhysicalSlot(client, 'Bad-Name'), PgpilotError);
});

void test('pg_basebackup clones the primary with a password file and refuses a non-empty target', async () => {
  const d = dirs();
  const pgpass = renderPgpass([
    { host: LOOPBACK_HOST, port: primaryPort, database: 'replication', user: REPLICATOR, password: REPLICATOR_PASSWORD },
    { host: LOOPBACK_HOST, port: primaryPort, database: '*', user: REPLICATOR, password: REPLICATOR_PASSWORD },
  ]);
  await writePostgresPrivateFile(d.passfile, pgpass);

  await assert.rejects(
    runBasebackup({ binDir, dataDir: d.primaryData, host: LOOPBACK_HOST, port: primaryPort, user: REPLICATOR, passfile: d.passfile, caFile: serverTls().caFile }),
    (error: unknown) => error instanceof PgpilotError && error.code === 'INPUT_INVALID',
  );
  // A failing clone (no password file entry for this user) leaves no directory behind.
  const failedDir = path.join(root, 'failed-clone');
  await assert.rejects(
    runBasebackup({ binDir, dataDir: failedDir, host: LOOPBACK_HOST, port: primaryPort, user: 'nobody', passfile: d.passfile, caFile: serverTls().caFile }),
    (error: unknown) => error instanceof PgpilotError && error.code === 'POSTGRES_FAILED',
  );
  assert.equal(existsSync(failedDir), false);

  await runBasebackup({
    binDir,
    dataDir: d.replicaData,
    host: LOOPBACK_HOST,
    port: primaryPort,
    user: REPLICATOR,
    passfile: d.passfile,
    applicationName: REPLICA_NODE,
    caFile: serverTls().caFile,
  });
  assert.ok(existsSync(path.join(d.replicaData, 'PG_VERSION')));
});

void test('the clone streams from the primary as a hot standby', async () => {
  const d = dirs();
  const primaryConninfo = renderConninfo({
    host: LOOPBACK_HOST,
    port: primaryPort,
    user: REPLICATOR,
    passfile: d.passfile,
    application_name: REPLICA_NODE,
    sslmode: 'verify-full',
    sslrootcert: serverTls().caFile,
  });
  await writeNodeConf({
    dataDir: d.replicaData,
    port: replicaPort,
    socketDir: d.replicaSock,
    nodeName: REPLICA_NODE,
    standby: { primaryConninfo, primarySlotName: slotNameFor(REPLICA_NODE) },
  });
  await replica.start({ binDir, dataDir: d.replicaData, logFile: path.join(root, 'replica.log') });
  const replicaClient = await waitConnectable(replicaPort);
  const primaryClient = await connect(primaryPort);
  await primaryClient.query('CREATE TABLE probe_table (x integer)');
  await primaryClient.query('INSERT INTO probe_table VALUES (42)');

  await waitFor('the row to reach the replica', STEP_TIMEOUT_MS, async () => {
    const result = await replicaClient.query<{ x: number }>('SELECT x FROM probe_table');
    return result.rows[0]?.x === 42;
  });
  const probe = await waitFor('the replica to report streaming', STEP_TIMEOUT_MS, async () => {
    const p = await probeNode(replicaClient);
    return p.inRecovery && p.walReceiverStatus === 'streaming' ? p : null;
  });
  const primaryProbe = await probeNode(primaryClient);
  assert.equal(primaryProbe.inRecovery, false);
  assert.equal(primaryProbe.timeline, 1);
  assert.match(primaryProbe.currentLsn ?? '', /^[0-9A-F]+\/[0-9A-F]+$/);
  assert.equal(primaryProbe.walReceiverStatus, null);
  assert.equal(probe.timeline, 1);
  assert.equal(probe.currentLsn, null);
  assert.ok(probe.receiveLsn !== null && probe.replayLsn !== null);
  assert.equal(probe.systemIdentifier, primaryProbe.systemIdentifier);
  assert.equal(probe.walReceiverPrimaryHost, LOOPBACK_HOST);
  assert.equal(probe.walReceiverPrimaryPort, primaryPort);

  const senders = await waitFor('pg_stat_replication to show the standby streaming', STEP_TIMEOUT_MS, async () => {
    const rows = await replicationStatus(primaryClient);
    return rows.some((r) => r.applicationName === REPLICA_NODE && r.state === 'streaming') ? rows : null;
  });
  const sender = senders.find((r) => r.applicationName === REPLICA_NODE);
  assert.ok(sender);
  assert.equal(sender.clientAddr, LOOPBACK_HOST);
  assert.equal(sender.syncState, 'async');
  assert.ok(sender.sentLsn !== null);
  // The walreceiver's connection is TLS.
  const walSsl = await primaryClient.query<{ ssl: boolean }>(
    "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_replication r USING (pid) WHERE r.application_name = $1",
    [REPLICA_NODE],
  );
  assert.equal(walSsl.rows[0]?.ssl, true);
  assert.equal(await dropSlotIfExists(primaryClient, slotNameFor(REPLICA_NODE)), 'active');
  assert.equal((await listSlots(primaryClient)).find((s) => s.slotName === 'node_2')?.active, true);

  const primaryControl = await readControldata(binDir, d.primaryData);
  const replicaControl = await readControldata(binDir, d.replicaData);
  assert.equal(primaryControl.clusterState, 'in production');
  assert.equal(replicaControl.clusterState, 'in archive recovery');
  assert.equal(primaryControl.systemIdentifier, primaryProbe.systemIdentifier);
  assert.equal(replicaControl.systemIdentifier, primaryProbe.systemIdentifier);
  assert.equal(replicaControl.timeline, 1);
});

void test('both postmasters stop cleanly with fast shutdown and leave no process behind', async () => {
  for (const client of [...clients]) await closeClient(client);
  const exits: PostmasterExit[] = [];
  primary.onExit((exit) => exits.push(exit));
  const primaryPid = primary.pid;
  assert.ok(primaryPid !== null);
  assert.equal(await replica.stop('fast', STEP_TIMEOUT_MS), true);
  assert.equal(await primary.stop('fast', STEP_TIMEOUT_MS), true);
  assert.equal(primary.isRunning(), false);
  assert.equal(primary.pid, null);
  assert.equal(exits.length, 1);
  assert.equal(exits[0]?.code, 0);
  assert.equal(primary.lastExit?.code, 0);
  assert.equal(await replica.stop('fast', 1_000), true, 'stopping a stopped postmaster is a no-op');
  assert.equal(replica.reload(), false);
  assert.deepEqual(await ourPostgresPids(), []);
  assert.equal((await readControldata(binDir, dirs().primaryData)).clusterState, 'shut down');
  assert.equal((await readControldata(binDir, dirs().replicaData)).clusterState, 'shut down in recovery');
});

void test('a stale postmaster.pid naming a reused PID does not block the start', async () => {
  const d = dirs();
  // Our own (live, non-postgres) PID stands in for a reused number; postgres alone would refuse.
  await writePostgresPrivateFile(
    path.join(d.primaryData, 'postmaster.pid'),
    `${process.pid}\n${d.primaryData}\n0\n${primaryPort}\n${d.primarySock}\n127.0.0.1\n0 0\nready\n`,
  );
  await primary.start({ binDir, dataDir: d.primaryData, logFile: path.join(root, 'primary.log') });
  const client = await waitConnectable(primaryPort);
  assert.equal((await client.query<{ x: number }>('SELECT x FROM probe_table')).rows[0]?.x, 42);
  assert.equal(primary.reload(), true);
  assert.equal(await removeStalePidFile(d.primaryData), 'in-use');
  await assert.rejects(
    new Postmaster().start({ binDir, dataDir: d.primaryData, logFile: path.join(root, 'second.log') }),
    (error: unknown) => error instanceof PgpilotError && error.code === 'POSTGRES_FAILED',
  );
  assert.equal(await removeStalePidFile(d.replicaData), 'absent');
});

void test('a smart shutdown blocked by a client escalates to SIGKILL of the postmaster and its children', async () => {
  const d = dirs();
  assert.ok(clients.size > 0, 'an open session keeps a smart shutdown waiting');
  const pid = primary.pid;
  assert.ok(pid !== null);
  assert.equal(await primary.stop('smart', 1_000), false);
  assert.equal(primary.lastExit?.signal, 'SIGKILL');
  await waitFor('the orphaned backends to go', 10_000, async () => (await ourPostgresPids()).length === 0);
  for (const client of [...clients]) await closeClient(client);
  // The killed postmaster left its pid file; nothing works in the data dir any more, so it is stale.
  assert.equal(await removeStalePidFile(d.primaryData), 'removed');
  await primary.start({ binDir, dataDir: d.primaryData, logFile: path.join(root, 'primary.log') });
  const client = await waitConnectable(primaryPort);
  assert.equal((await client.query<{ x: number }>('SELECT x FROM probe_table')).rows[0]?.x, 42);
  await closeClient(client);
  assert.equal(await primary.stop('fast', STEP_TIMEOUT_MS), true);
  assert.deepEqual(await ourPostgresPids(), []);
});

void test('a postmaster that cannot start reports its exit to listeners', async () => {
  const postmaster = new Postmaster();
  const exited = new Promise<PostmasterExit>((resolve) => postmaster.onExit(resolve));
  const before = Date.now();
  await postmaster.start({ binDir, dataDir: path.join(root, 'no-such-dir'), logFile: path.join(root, 'broken.log') });
  const exit = await waitFor('the broken postmaster to exit', STEP_TIMEOUT_MS, async () => {
    const result = await Promise.race([exited, new Promise<null>((resolve) => setTimeout(() => resolve(null), 100))]);
    return result;
  });
  assert.notEqual(exit.code, 0);
  assert.ok(exit.atMs >= before);
  assert.equal(postmaster.isRunning(), false);
  assert.equal(postmaster.pid, null);
});
