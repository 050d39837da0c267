/**
 * HAProxy as the external load balancer of a real 3-node cluster (PostgreSQL 15 + etcd, created
 * through bin/pgpilot): the config comes from the `haproxy-config` command (its `run()`, called
 * directly), HAProxy is started by src/proxy/haproxy-process.ts as our child, and node-postgres
 * connects through it. The write port reaches the leader, the read port a replica; after
 * `pgpilot switchover` a new connection through the write port reaches the new leader and
 * accepts an INSERT; with no replica left, reads fall back to the primary. Also the process
 * module alone: start, listen, refuse a busy port, stop by PID.
 * Everything is waited for with deadlines, and stopped by PID in `after`, even on failure.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import type { MemberStatus } from '../../src/operations/cluster-status.js';
import { run as haproxyConfig } from '../../src/cli/commands/haproxy-config.js';
import type { Output } from '../../src/cli/output.js';
import { renderHaproxyConfig } from '../../src/proxy/haproxy-config.js';
import { startHaproxy, stopHaproxy } from '../../src/proxy/haproxy-process.js';
import { PgpilotError } from '../../src/shared/errors.js';
import { findFreePorts } from '../../src/shared/ports.js';
import { isPidAlive, waitUntil } from '../helpers/wait.js';
import { stopNodeSupervisor } from '../helpers/local-node.js';
import { makeTestPki, type TestPki } from '../helpers/test-pki.js';
import { makeTempHome, removeTempHome, runCli } from '../helpers/cli.js';
import { clusterCaFile, leaderOf, parseStatusJson, pgAccess, pgClientOptions, waitConverged, type PgAccess } from '../helpers/cluster.js';

const NAME = 'hap';

interface Landing {
  inRecovery: boolean;
  serverPort: number;
}

/** A new connection through HAProxy on `port`: where it landed, and optionally a write. */
async function throughProxy(port: number, access: PgAccess, sql?: string): Promise<Landing> {
  // TLS passes through HAProxy (TCP mode) to postgres: verify-full against the cluster CA.
  const client = new pg.Client(pgClientOptions(access, { host: '127.0.0.1', port }));
  client.on('error', () => undefined);
  await client.connect();
  try {
    await client.query("SET statement_timeout = '2s'");
    const row = (await client.query<{ r: boolean; p: number }>('SELECT pg_is_in_recovery() AS r, inet_server_port() AS p')).rows[0];
    assert.ok(row);
    if (sql !== undefined) await client.query(sql);
    return { inRecovery: row.r, serverPort: row.p };
  } finally {
    await client.end().catch(() => undefined);
  }
}

function captureOutput(): Output & { lines: string[] } {
  const lines: string[] = [];
  return { lines, out: (t) => lines.push(t), err: (t) => lines.push(t) };
}

/** The port of the `bind` line of section `listen NAME` in a config. */
function bindPortOf(config: string, section: string): number {
  const match = new RegExp(`^listen ${section}\\n\\s+bind 127\\.0\\.0\\.1:(\\d+)$`, 'm').exec(config);
  assert.ok(match?.[1], `no bind line for ${section}`);
  return Number.parseInt(match[1], 10);
}

void describe('haproxy process (start, listen, stop by PID)', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'pgpilot-haproxy-proc-'));
  // As root HAProxy runs as the haproxy OS user, which must reach the config file.
  chmodSync(dir, 0o755);
  const started: number[] = [];
  // Its health checks verify the agents' certificates: it loads a (real) CA file at start.
  let pki: TestPki | null = null;
  before(async () => {
    pki = await makeTestPki('haproxy-proc');
  });
  after(async () => {
    await pki?.cleanup();
    for (const pid of started) await stopHaproxy(pid);
    await rm(dir, { recursive: true, force: true });
  });

  void it('listens on every bind port once started, refuses a second copy on busy ports, stops by PID', async () => {
    const [writePort, readPort, statsPort, pgPort, apiPort] = (await findFreePorts(5)) as [number, number, number, number, number];
    const configFile = path.join(dir, 'haproxy.cfg');
    const pidFile = path.join(dir, 'haproxy.pid');
    const logFile = path.join(dir, 'haproxy.log');
    // The node behind it does not exist: HAProxy must still start and report it down.
    await writeFile(
      configFile,
      renderHaproxyConfig({ cluster: 'lonely', bindHost: '127.0.0.1', primaryPort: writePort, replicaPort: readPort, statsPort, nodes: [{ name: 'node1', host: '127.0.0.1', pgPort, apiPort }], caFile: pki?.caFile ?? '/missing-ca.crt' }),
    );
    const { pid } = await startHaproxy({ configFile, pidFile, logFile });
    started.push(pid);
    assert.ok(isPidAlive(pid));
    // No HAProxy code runs as root: real and effective uid are the haproxy user's when we are root.
    const uids = /^Uid:\s+(\d+)\s+(\d+)/m.exec(await readFile(`/proc/${pid}/status`, 'utf8'));
    assert.ok(uids !== null);
    assert.notEqual(Number(uids[1]), 0, 'haproxy real uid is root');
    assert.notEqual(Number(uids[2]), 0, 'haproxy effective uid is root');
    assert.equal((await readFile(pidFile, 'utf8')).trim(), String(pid));
    const stats = await fetch(`http://127.0.0.1:${statsPort}/;csv`);
    assert.equal(stats.status, 200);
    await stats.text();
    // The only node fails its check: HAProxy says so in its log (stdout/stderr go to the file).
    await waitUntil('haproxy to log node1 down', async () => /lonely-primary\/node1 is DOWN/.test(await readFile(logFile, 'utf8')), 10_000, 100);

    await assert.rejects(
      startHaproxy({ configFile, pidFile: path.join(dir, 'second.pid'), logFile: path.join(dir, 'second.log') }),
      (e: unknown) => e instanceof PgpilotError && e.code === 'COMMAND_FAILED' && /stopped right after starting/.test(e.message),
    );

    assert.equal(await stopHaproxy(pid), 'stopped');
    assert.equal(isPidAlive(pid), false);
    assert.equal(await stopHaproxy(pid), 'not-running');
  });
});

void describe('HAProxy in front of a 3-node cluster', () => {
  let home = '';
  let haproxyPid: number | null = null;
  let configText = '';
  let access: PgAccess = { password: '', ca: '' };

  before(async () => {
    home = makeTempHome('haproxy');
    const created = await runCli(['create', NAME, '--json', '--show-secrets'], { home });
    assert.equal(created.code, 0, created.stderr);
    const status = parseStatusJson(home, created.stdout);
    access = pgAccess(status);
    const configFile = path.join(home, 'haproxy.cfg');
    const output = captureOutput();
    assert.equal(await haproxyConfig({ home, name: NAME, output: configFile }, output), 0, output.lines.join('\n'));
    assert.ok(output.lines.some((l) => l.includes(`run it with: haproxy -f ${configFile}`)), output.lines.join('\n'));
    configText = await readFile(configFile, 'utf8');
    haproxyPid = (await startHaproxy({ configFile, pidFile: path.join(home, 'haproxy.pid'), logFile: path.join(home, 'haproxy.log') })).pid;
  });

  after(async () => {
    if (haproxyPid !== null) await stopHaproxy(haproxyPid).catch(() => undefined);
    if (process.env['PGPILOT_TEST_KEEP'] === '1') return; // leave the cluster for a post-mortem
    if (home !== '') {
      await runCli(['destroy', NAME, '--yes'], { home });
      await removeTempHome(home);
    }
  });

  void it('health-checks the agents over HTTPS, verifying them against the cluster CA', () => {
    // The agents' REST API is HTTPS only: a plain-text check would mark every server down.
    const serverLines = configText.split('\n').map((l) => l.trim()).filter((l) => l.startsWith('server '));
    assert.ok(serverLines.length >= 6, configText);
    // Servers that run a check of their own; the read port's backups track the write port's checks.
    const checking = serverLines.filter((l) => / check /.test(l));
    assert.equal(checking.length + serverLines.filter((l) => / track /.test(l)).length, serverLines.length, configText);
    assert.ok(checking.length >= 6, configText);
    for (const line of checking) {
      assert.match(line, /\bcheck-ssl\b/, line);
      assert.match(line, /\bverify required\b/, line);
      assert.ok(line.includes(`ca-file ${clusterCaFile(home, NAME)}`), line);
    }
  });

  void it('the write port reaches the leader and the read port a replica', async () => {
    const status = await waitConverged(home, NAME, null);
    const leader = leaderOf(status);
    const replicaPorts = status.members.filter((m) => m.role === 'replica').map((m) => m.port);
    const writePort = bindPortOf(configText, `${NAME}-primary`);
    const readPort = bindPortOf(configText, `${NAME}-replicas`);
    // Right after HAProxy starts, servers count as up until their first check: wait for the checks.
    const written = await waitUntil(
      'the write port to land on the leader',
      async () => {
        const landing = await throughProxy(writePort, access, 'CREATE TABLE IF NOT EXISTS through_haproxy (id int, via text)');
        return !landing.inRecovery && landing.serverPort === leader.port ? landing : null;
      },
      20_000,
      200,
    );
    assert.equal(written.serverPort, leader.port);
    const read = await waitUntil(
      'the read port to land on a replica',
      async () => {
        const landing = await throughProxy(readPort, access);
        return landing.inRecovery ? landing : null;
      },
      20_000,
      200,
    );
    assert.ok(replicaPorts.includes(read.serverPort), `${read.serverPort} is not a replica port (${replicaPorts.join(', ')})`);
    // Every new connection lands on the leader once checks settled, never on a replica.
    for (let i = 0; i < 10; i += 1) {
      const landing = await throughProxy(writePort, access);
      assert.deepEqual(landing, { inRecovery: false, serverPort: leader.port });
    }
  });

  void it('after a switchover, new connections through the write port reach the new leader and accept writes', async (t) => {
    const before = await waitConverged(home, NAME, null);
    const old = leaderOf(before);
    const writePort = bindPortOf(configText, `${NAME}-primary`);
    // A client opening a new connection through the write port every 50 ms during the switchover.
    const landings: Array<{ atMs: number; landing: Landing | null }> = [];
    let probing = true;
    const prober = (async () => {
      while (probing) {
        const atMs = Date.now();
        landings.push({ atMs, landing: await throughProxy(writePort, access).catch(() => null) });
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })();
    const startedMs = Date.now();
    let leader: MemberStatus;
    try {
      const result = await runCli(['switchover', NAME], { home });
      assert.equal(result.code, 0, result.stderr);
      leader = leaderOf(await waitConverged(home, NAME, old.name));
      assert.notEqual(leader.name, old.name);
      await waitUntil(
        'a write through HAProxy on the new leader',
        async () => {
          const landing = await throughProxy(writePort, access, `INSERT INTO through_haproxy VALUES (1, '${leader.name}')`);
          return !landing.inRecovery && landing.serverPort === leader.port ? landing : null;
        },
        30_000,
        100,
      );
      t.diagnostic(`write through HAProxy on ${leader.name} ${Date.now() - startedMs} ms after the switchover started`);
      // Let the prober see the new leader too, several times, before judging its history.
      await waitUntil(
        'the prober to reach the new leader five times',
        () => Promise.resolve(landings.filter((l) => l.landing?.serverPort === leader.port).length >= 5),
        10_000,
        50,
      );
    } finally {
      probing = false;
      await prober;
    }
    // Once a new connection reached the new leader, none reached another node again.
    const firstNew = landings.findIndex((l) => l.landing?.serverPort === leader.port);
    assert.ok(firstNew >= 0, 'the prober reached the new leader');
    for (const { landing } of landings.slice(firstNew)) {
      if (landing !== null) assert.deepEqual(landing, { inRecovery: false, serverPort: leader.port });
    }
    const lastOld = landings.slice(0, firstNew).filter((l) => l.landing?.serverPort === old.port && l.landing.inRecovery === false).at(-1);
    const readOnly = landings.filter((l) => l.landing?.inRecovery === true).length;
    const failed = landings.filter((l) => l.landing === null).length;
    t.diagnostic(
      `write-port gap ${lastOld === undefined ? '?' : (landings[firstNew]?.atMs ?? 0) - lastOld.atMs} ms, ${failed} failed and ${readOnly} read-only landings out of ${landings.length} connections`,
    );
    // And it stays so.
    for (let i = 0; i < 10; i += 1) assert.equal((await throughProxy(writePort, access)).serverPort, leader.port);
  });

  void it('with no replica up, the read port falls back to the primary', async () => {
    const status = await waitConverged(home, NAME, null);
    const leader = leaderOf(status);
    const readPort = bindPortOf(configText, `${NAME}-replicas`);
    // A graceful stop of both replica nodes: SIGTERM to each supervisor, which stops its agent
    // (postgres stops with it) and does not restart it.
    const replicas = status.members.filter((m) => m.role === 'replica');
    assert.equal(replicas.length, 2);
    await Promise.all(replicas.map((replica) => stopNodeSupervisor(home, NAME, replica.name)));
    for (const replica of replicas) assert.equal(isPidAlive(replica.pid ?? -1), false, `agent ${replica.name} exited`);
    const landing = await waitUntil(
      'the read port to land on the primary',
      async () => {
        const l = await throughProxy(readPort, access);
        return !l.inRecovery ? l : null;
      },
      20_000,
      200,
    );
    assert.equal(landing.serverPort, leader.port);
  });
});
