/**
 * The fencing watchdog as a real process: `WatchdogClient.start` spawns it from the test entry
 * test/helpers/watchdog-main.ts, which runs the same code as `pgpilot watchdog`. A harmless victim
 * process whose command line carries a unique marker directory stands in for the postmaster:
 * heartbeats keep it alive past the first deadline, it is SIGKILLed once they stop, and a disarm
 * spares it. Stand-in agents show the two fences that release the lease (recorded by a fake etcd
 * gateway that, like pgpilot's etcd, speaks HTTPS only and requires a client certificate of its CA,
 * from test/helpers/test-pki.ts): a frozen agent (at the deadline) and an agent killed with -9 (at
 * once; the watchdog then exits); a watchdog with a certificate of another CA cannot release. `after` kills every process we started by PID and removes the temp dir, even when a step
 * fails.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import https from 'node:https';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { WatchdogClient } from '../../src/agent/watchdog.js';
import { SystemClock } from '../../src/shared/clock.js';
import { isPidAlive, waitUntil } from '../helpers/wait.js';
import type { TlsFiles } from '../../src/config/schema.js';
import { makeTestPki, type TestPki } from '../helpers/test-pki.js';

const WATCHDOG_ENTRY = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'helpers', 'watchdog-main.js');
const HEARTBEAT_MS = 300;
const DEADLINE_AHEAD_MS = 1_500;
const STAND_IN_HEARTBEAT_MS = 200;
const STAND_IN_DEADLINE_AHEAD_MS = 2_000;

const LEASE_ID = '7001234567';

const clock = new SystemClock();
const standIns: ChildProcess[] = [];
const standInWatchdogs: number[] = [];
let root = '';
let logFile = '';
let pki: TestPki | null = null;
let otherPki: TestPki | null = null;
let client: WatchdogClient | null = null;
const clientErrors: string[] = [];
const victims: Victim[] = [];

interface Victim {
  child: ChildProcess;
  pid: number;
  marker: string;
  exit: Promise<{ signal: NodeJS.Signals | null; code: number | null; atMs: number }>;
}

/** A process that does nothing until killed, with `marker` (a directory) in its command line. */
async function startVictim(name: string): Promise<Victim> {
  const marker = path.join(root, `victim-${name}-pgdata`);
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)', marker], { stdio: 'ignore' });
  const exit = new Promise<{ signal: NodeJS.Signals | null; code: number | null; atMs: number }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal, atMs: clock.nowMs() }));
  });
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', reject);
  });
  const pid = child.pid;
  assert.ok(pid !== undefined);
  const victim: Victim = { child, pid, marker, exit };
  victims.push(victim);
  // Wait until the command line shows the marker (it is node's argv as soon as exec happened).
  await waitUntil('the victim to show its marker', async () => (await readFile(`/proc/${pid}/cmdline`, 'utf8')).includes(marker), 5_000, 20);
  return victim;
}

function hasExited(victim: Victim): boolean {
  return victim.child.exitCode !== null || victim.child.signalCode !== null;
}

before(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'pgpilot-watchdog-'));
  logFile = path.join(root, 'watchdog.log');
  pki = await makeTestPki('watchdog');
  otherPki = await makeTestPki('watchdog-other');
  client = await WatchdogClient.start({ cliEntry: WATCHDOG_ENTRY, logFile, onError: (message) => clientErrors.push(message) });
});

after(async () => {
  for (const agent of standIns) {
    if (agent.exitCode === null && agent.signalCode === null) {
      agent.kill('SIGCONT');
      agent.kill('SIGKILL');
    }
  }
  // Only by PID, and only while it still runs our watchdog entry.
  for (const pid of standInWatchdogs) {
    if ((await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).includes(WATCHDOG_ENTRY)) process.kill(pid, 'SIGKILL');
  }
  for (const victim of victims) {
    if (!hasExited(victim)) victim.child.kill('SIGKILL');
    await victim.exit;
  }
  const watchdogPid = client?.pid ?? -1;
  if (client !== null) await client.stop(5_000);
  if (watchdogPid > 0) assert.equal(isPidAlive(watchdogPid), false, 'watchdog still running after stop');
  await rm(root, { recursive: true, force: true });
  await pki?.cleanup();
  await otherPki?.cleanup();
});

void test('the watchdog runs as a separate child process', async () => {
  assert.ok(client !== null);
  assert.equal(client.alive(), true);
  assert.notEqual(client.pid, process.pid);
  const pid = client.pid;
  const cmdline = await waitUntil('the watchdog to exec node', async () => {
    const text = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0').join(' ');
    return text.includes(WATCHDOG_ENTRY) && text.startsWith(process.execPath) ? text : null;
  }, 5_000, 20);
  assert.ok(cmdline.startsWith(process.execPath), cmdline);
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const [, ppid, , sid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  assert.equal(Number(ppid), process.pid, 'a direct child of the agent');
  assert.equal(Number(sid), pid, 'in its own session');
});

void test('heartbeats keep the victim alive; once they stop it is SIGKILLed at the deadline', async () => {
  assert.ok(client !== null);
  const victim = await startVictim('fired');
  const firstDeadlineMs = clock.nowMs() + DEADLINE_AHEAD_MS;
  assert.equal(client.arm(victim.pid, firstDeadlineMs, victim.marker), true);
  let lastDeadlineMs = firstDeadlineMs;
  let nextBeatMs = clock.nowMs() + HEARTBEAT_MS;
  // Heartbeat like an agent loop until well past the first deadline; the victim must stay alive.
  while (clock.nowMs() < firstDeadlineMs + 500) {
    assert.equal(hasExited(victim), false, 'killed although heartbeats kept coming');
    if (clock.nowMs() >= nextBeatMs) {
      lastDeadlineMs = clock.nowMs() + DEADLINE_AHEAD_MS;
      assert.equal(client.arm(victim.pid, lastDeadlineMs, victim.marker), true);
      nextBeatMs = clock.nowMs() + HEARTBEAT_MS;
    }
    await clock.sleep(20);
  }
  assert.ok(isPidAlive(victim.pid));
  // Heartbeats stop: the victim dies by SIGKILL, not before the last deadline.
  await waitUntil('the victim to be killed', () => Promise.resolve(hasExited(victim)), lastDeadlineMs - clock.nowMs() + 5_000, 20);
  const exit = await victim.exit;
  assert.equal(exit.signal, 'SIGKILL');
  assert.ok(exit.atMs >= lastDeadlineMs, `killed ${lastDeadlineMs - exit.atMs} ms before the deadline`);
  assert.ok(exit.atMs < lastDeadlineMs + 2_000, `killed ${exit.atMs - lastDeadlineMs} ms after the deadline`);
  const log = await waitUntil('the fire to be logged', async () => {
    const text = await readFile(logFile, 'utf8');
    return text.includes(`SIGKILLed postmaster ${victim.pid}`) ? text : null;
  }, 5_000, 20);
  assert.match(log, /^\d{4}-\d\d-\d\dT[\d:.]+Z watchdog: started/m);
  assert.equal(client.alive(), true, 'the watchdog keeps running (disarmed) after firing');
});

void test('a disarm spares the victim past the old deadline', async () => {
  assert.ok(client !== null);
  const victim = await startVictim('disarmed');
  const deadlineMs = clock.nowMs() + 1_000;
  assert.equal(client.arm(victim.pid, deadlineMs, victim.marker), true);
  assert.equal(client.disarm(), true);
  // Bounded watch: the victim must stay alive for ~2.5 s, well past the deadline it was armed with.
  while (clock.nowMs() < deadlineMs + 1_500) {
    assert.equal(hasExited(victim), false, 'killed after a disarm');
    await clock.sleep(50);
  }
  assert.equal(hasExited(victim), false, 'killed after a disarm');
  victim.child.kill('SIGKILL');
  assert.equal((await victim.exit).signal, 'SIGKILL');
});

void test('a PID whose command line lacks the marker is never killed', async () => {
  assert.ok(client !== null);
  const victim = await startVictim('other');
  const deadlineMs = clock.nowMs() + 300;
  client.arm(victim.pid, deadlineMs, path.join(root, 'some-other-pgdata'));
  await waitUntil('the watchdog to refuse', async () => (await readFile(logFile, 'utf8')).includes(`pid ${victim.pid} no longer runs`), 5_000, 20);
  assert.equal(hasExited(victim), false);
  victim.child.kill('SIGKILL');
  await victim.exit;
});

/**
 * Stands in for etcd's JSON gateway: HTTPS with a certificate of the test CA, and only clients with
 * a certificate of that CA get through the handshake (`--client-cert-auth`); records every lease
 * revoke it is sent.
 */
async function startFakeEtcd(): Promise<{ endpoint: string; revoked: string[]; refusedHandshakes: () => number; close: () => Promise<void> }> {
  assert.ok(pki !== null);
  const revoked: string[] = [];
  let refused = 0;
  const sockets = new Set<Socket>();
  const tlsOptions = { cert: pki.server.material.cert, key: pki.server.material.key, ca: pki.ca, requestCert: true, rejectUnauthorized: true };
  const server = https.createServer(tlsOptions, (req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (body += chunk));
    req.on('end', () => {
      if (req.method === 'POST' && req.url === '/v3/lease/revoke') revoked.push(String((JSON.parse(body) as { ID?: unknown }).ID));
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  server.on('tlsClientError', () => (refused += 1));
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  assert.ok(address !== null && typeof address === 'object');
  return {
    endpoint: `https://127.0.0.1:${address.port}`,
    revoked,
    refusedHandshakes: () => refused,
    close: () => {
      for (const socket of sockets) socket.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

interface StandIn {
  agent: ChildProcess;
  exit: Promise<void>;
  watchdogPid: number;
  log: string;
}

/** A stand-in agent: starts its own watchdog (with `endpoint` as etcd and `tls` as its client identity) and heartbeats it from a timer, like the HA loop. */
async function startStandInAgent(name: string, victim: Victim, deadlineAheadMs: number, endpoint: string, tls?: TlsFiles): Promise<StandIn> {
  assert.ok(pki !== null);
  const etcdTls = tls ?? pki.client.files;
  const agentModule = new URL('../../src/agent/watchdog.js', import.meta.url).href;
  const script = [
    `import { WatchdogClient } from ${JSON.stringify(agentModule)};`,
    'const [entry, log, victimPid, marker, etcd, tls] = process.argv.slice(1);',
    'const client = await WatchdogClient.start({ cliEntry: entry, logFile: log, etcdEndpoints: [etcd], etcdTls: JSON.parse(tls) });',
    'process.stdout.write(`${client.pid}\\n`);',
    `const beat = () => client.arm(Number(victimPid), Date.now() + ${deadlineAheadMs}, marker, '${LEASE_ID}');`,
    `beat(); setInterval(beat, ${STAND_IN_HEARTBEAT_MS});`,
  ].join('\n');
  const log = path.join(root, `${name}-watchdog.log`);
  const agent = spawn(process.execPath, ['--input-type=module', '-e', script, WATCHDOG_ENTRY, log, String(victim.pid), victim.marker, endpoint, JSON.stringify(etcdTls)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  standIns.push(agent);
  const exit = new Promise<void>((resolve) => agent.once('exit', () => resolve()));
  let out = '';
  agent.stdout?.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  const watchdogPid = await waitUntil('the stand-in agent to start its watchdog', () => Promise.resolve(/^\d+\n/.test(out) && Number(out.trim())), 10_000, 20);
  standInWatchdogs.push(watchdogPid);
  await waitUntil('the first heartbeat', async () => (await readFile(log, 'utf8').catch(() => '')).includes(`armed for postmaster ${victim.pid}`), 10_000, 20);
  return { agent, exit, watchdogPid, log };
}

void test('a frozen agent cannot stop the fence; the lease is released once the postmaster is gone', async () => {
  const etcd = await startFakeEtcd();
  try {
    const victim = await startVictim('frozen-agent');
    const standIn = await startStandInAgent('frozen', victim, STAND_IN_DEADLINE_AHEAD_MS, etcd.endpoint);
    assert.equal(hasExited(victim), false);
    const frozenAtMs = clock.nowMs();
    assert.ok(standIn.agent.kill('SIGSTOP'));
    // The last heartbeat promised at most STAND_IN_DEADLINE_AHEAD_MS from now.
    await waitUntil("the frozen agent's postmaster to be killed", () => Promise.resolve(hasExited(victim)), STAND_IN_DEADLINE_AHEAD_MS + 5_000, 20);
    const exit = await victim.exit;
    assert.equal(exit.signal, 'SIGKILL');
    const afterMs = exit.atMs - frozenAtMs;
    assert.ok(afterMs >= STAND_IN_DEADLINE_AHEAD_MS - STAND_IN_HEARTBEAT_MS - 100, `killed ${afterMs} ms after the freeze: before the deadline`);
    assert.ok(afterMs <= STAND_IN_DEADLINE_AHEAD_MS + 1_000, `killed ${afterMs} ms after the freeze`);
    await waitUntil('the lease to be released', () => Promise.resolve(etcd.revoked.length > 0), 5_000, 20);
    assert.deepEqual(etcd.revoked, [LEASE_ID]);
    assert.ok(isPidAlive(standIn.watchdogPid), 'the watchdog outlives the fire while its agent lives');
    assert.ok(standIn.agent.kill('SIGCONT'));
    assert.ok(standIn.agent.kill('SIGKILL'));
    await standIn.exit;
  } finally {
    await etcd.close();
  }
});

void test('an agent killed with -9: its watchdog fences at once, releases the lease, and exits', async () => {
  const etcd = await startFakeEtcd();
  try {
    const victim = await startVictim('killed-agent');
    // A deadline far ahead: only the agent's death can explain an early kill.
    const standIn = await startStandInAgent('killed', victim, 20_000, etcd.endpoint);
    const killedAtMs = clock.nowMs();
    assert.ok(standIn.agent.kill('SIGKILL'));
    await standIn.exit;
    await waitUntil('the postmaster stand-in to be killed', () => Promise.resolve(hasExited(victim)), 5_000, 10);
    const exit = await victim.exit;
    assert.equal(exit.signal, 'SIGKILL');
    assert.ok(exit.atMs - killedAtMs < 2_000, `fenced ${exit.atMs - killedAtMs} ms after the agent died`);
    await waitUntil('the watchdog to exit', () => Promise.resolve(!isPidAlive(standIn.watchdogPid)), 5_000, 10);
    assert.deepEqual(etcd.revoked, [LEASE_ID], 'released once, after the kill');
    const log = await readFile(standIn.log, 'utf8');
    assert.match(log, /the agent is gone: SIGKILLed postmaster/);
    assert.match(log, new RegExp(`released lease ${LEASE_ID}`));
  } finally {
    await etcd.close();
  }
});

void test('a watchdog with a client certificate of another CA fences but cannot release the lease', async () => {
  assert.ok(otherPki !== null && pki !== null);
  const etcd = await startFakeEtcd();
  try {
    const victim = await startVictim('foreign-cert');
    // Another CA's client certificate, while trusting the right CA for the server.
    const foreign: TlsFiles = { ...otherPki.client.files, caFile: pki.caFile };
    const standIn = await startStandInAgent('foreign', victim, 20_000, etcd.endpoint, foreign);
    assert.ok(standIn.agent.kill('SIGKILL'));
    await standIn.exit;
    await waitUntil('the postmaster stand-in to be killed', () => Promise.resolve(hasExited(victim)), 5_000, 10);
    await waitUntil('the watchdog to give up on the release', async () => /could not release lease/.test(await readFile(standIn.log, 'utf8')), 10_000, 20);
    assert.deepEqual(etcd.revoked, [], 'etcd never accepted the revoke');
    assert.ok(etcd.refusedHandshakes() > 0, 'the handshake was refused');
    await waitUntil('the watchdog to exit', () => Promise.resolve(!isPidAlive(standIn.watchdogPid)), 5_000, 10);
  } finally {
    await etcd.close();
  }
});

void test('stop ends the watchdog without a kill and writes after it never throw', async () => {
  assert.ok(client !== null);
  const pid = client.pid;
  assert.equal(await client.stop(5_000), 'exited');
  assert.equal(isPidAlive(pid), false);
  assert.equal(client.alive(), false);
  assert.equal(client.arm(process.pid, clock.nowMs() + 1_000, root), false, 'refused, not thrown');
  assert.equal(client.disarm(), false);
  assert.ok((await readFile(logFile, 'utf8')).includes('input closed and disarmed: exiting'));
  assert.deepEqual(clientErrors, [], 'a stop we asked for is not reported as an error');
});
