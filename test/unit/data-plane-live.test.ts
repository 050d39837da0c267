/**
 * The HAProxy data plane (src/proxy/haproxy-data-plane.ts) with the real /usr/sbin/haproxy, on
 * free loopback ports in a temp dir. Two fake "postgres" members (node:net) answer a client by
 * writing their own name and closing, and answer HAProxy's pgsql-check (a startup packet naming
 * the health check user) with AuthenticationOk; two fake hold routers write `hold` / `hold-replica`.
 * Checked: routes follow apply() (leader a → b → hold, replica round-robin over a and b); a
 * member that dies is left for the hold server once the health check sees it, and an identical
 * apply afterwards does not bring it back; a SIGKILLed HAProxy is started again by apply() and
 * routes again; stop() leaves no haproxy process. Every wait polls observed state with a deadline.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import {
  DATA_PLANE_SLOTS,
  HEALTH_CHECK_USER,
  HaproxyDataPlane,
  sectionName,
  sendRuntimeCommands,
  type DesiredRoutes,
  type PortName,
  type ServerTarget,
} from '../../src/proxy/haproxy-data-plane.js';
import { SystemClock } from '../../src/shared/clock.js';
import { isOwnedProcessAlive } from '../../src/shared/pid.js';
import { LOOPBACK_HOST, findFreePorts } from '../../src/shared/ports.js';
import { isPidAlive, waitUntil } from '../helpers/wait.js';

const HAPROXY = '/usr/sbin/haproxy';
/** PostgreSQL AuthenticationOk: 'R', int32 length 8, int32 0. */
const AUTH_OK = Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 0]);
/** A fake member waits this long for a health check's startup packet before treating the peer as a client. */
const CLIENT_GRACE_MS = 100;

interface FakeServer {
  name: string;
  port: number;
  /** Health checks answered (startup packets naming the health check user). */
  checks: number;
  close(): Promise<void>;
}

/** A TCP server on a free loopback port; `member` servers also answer pgsql-check. */
async function startFake(name: string, kind: 'member' | 'hold'): Promise<FakeServer> {
  const sockets = new Set<net.Socket>();
  const fake: FakeServer = { name, port: 0, checks: 0, close: () => Promise.resolve() };
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    if (kind === 'hold') {
      socket.end(name);
      return;
    }
    // HAProxy's check sends its startup packet right after connecting; a test client sends nothing.
    const timer = setTimeout(() => socket.end(name), CLIENT_GRACE_MS);
    socket.once('data', (data: Buffer) => {
      clearTimeout(timer);
      if (data.includes(HEALTH_CHECK_USER)) {
        fake.checks += 1;
        socket.end(AUTH_OK);
      } else {
        socket.end(name);
      }
    });
    socket.on('close', () => clearTimeout(timer));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: LOOPBACK_HOST, port: 0 }, () => resolve());
  });
  const address = server.address();
  fake.port = typeof address === 'object' && address !== null ? address.port : 0;
  let closed: Promise<void> | null = null;
  fake.close = () => {
    closed ??= new Promise<void>((resolve) => {
      server.close(() => resolve());
      for (const socket of sockets) socket.destroy();
    });
    return closed;
  };
  return fake;
}

/** Connects, reads until the peer closes: what the routed server wrote, or `error:CODE`. */
function probe(port: number, timeoutMs = 6_000): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: LOOPBACK_HOST, port });
    let data = '';
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(`timeout:${data}`);
    }, timeoutMs);
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (data += chunk));
    socket.on('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve(`error:${error.code ?? error.message}`);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(data);
    });
  });
}

async function probeMany(port: number, count: number): Promise<string[]> {
  const answers: string[] = [];
  for (let i = 0; i < count; i += 1) answers.push(await probe(port));
  return answers;
}

/** HAProxy's status (UP, DOWN, MAINT...) of the slot pointing at `port` in one section, from `show stat`. */
async function slotStatus(socketPath: string, section: PortName, port: number): Promise<string | null> {
  const lines = (await sendRuntimeCommands(socketPath, ['show stat'])).split('\n');
  const header = (lines[0] ?? '').replace(/^# /, '').split(',');
  const [pxname, svname, status, addr] = ['pxname', 'svname', 'status', 'addr'].map((name) => header.indexOf(name));
  for (const line of lines.slice(1)) {
    const fields = line.split(',');
    if (fields[pxname ?? -1] !== sectionName(section) || !/^s\d+$/.test(fields[svname ?? -1] ?? '')) continue;
    if (fields[addr ?? -1] === `${LOOPBACK_HOST}:${port}`) return fields[status ?? -1] ?? null;
  }
  return null;
}

const target = (fake: FakeServer): ServerTarget => ({ name: fake.name, host: LOOPBACK_HOST, port: fake.port });

void describe('HaproxyDataPlane with the real haproxy', () => {
  let dir = '';
  let plane: HaproxyDataPlane | null = null;
  let leaderPort = 0;
  let replicaPort = 0;
  let a: FakeServer;
  let b: FakeServer;
  const fakes: FakeServer[] = [];
  const logs: Array<{ level: number; msg: string }> = [];
  const pids: number[] = [];

  const known = (): ServerTarget[] => [target(a), target(b)];
  const routes = (leader: FakeServer[], replica: FakeServer[]): DesiredRoutes => ({ leader: leader.map(target), replica: replica.map(target) });
  const running = (): HaproxyDataPlane => {
    assert.ok(plane !== null, 'the data plane was not started');
    return plane;
  };
  // As in a node directory: the socket in a subdirectory of its own (made haproxy-owned by start()).
  const socketPath = (): string => path.join(dir, 'haproxy', 'haproxy.sock');
  /** The tail of HAProxy's own log, for failure messages. */
  const haproxyLog = (): string => {
    try {
      return readFileSync(path.join(dir, 'haproxy.log'), 'utf8').split('\n').slice(-8).join('\n');
    } catch {
      return '(no haproxy log)';
    }
  };

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'pgpilot-data-plane-live-'));
    // Traversable like a node directory: as root, HAProxy runs as the haproxy OS user.
    await chmod(dir, 0o755);
    a = await startFake('a', 'member');
    b = await startFake('b', 'member');
    const leaderHold = await startFake('hold', 'hold');
    const replicaHold = await startFake('hold-replica', 'hold');
    fakes.push(a, b, leaderHold, replicaHold);
    [leaderPort = 0, replicaPort = 0] = await findFreePorts(2);
    const log = pino({ level: 'info' }, { write: (line: string) => void logs.push(JSON.parse(line) as { level: number; msg: string }) });
    plane = new HaproxyDataPlane({
      layout: {
        listenHost: LOOPBACK_HOST,
        leaderPort,
        replicaPort,
        leaderHoldPort: leaderHold.port,
        replicaHoldPort: replicaHold.port,
        socketPath: socketPath(),
        slotCount: DATA_PLANE_SLOTS,
      },
      configFile: path.join(dir, 'haproxy.cfg'),
      logFile: path.join(dir, 'haproxy.log'),
      clock: new SystemClock(),
      log,
      binary: HAPROXY,
    });
    await plane.start();
    const pid = plane.processId();
    if (pid !== null) pids.push(pid);
  });

  after(async () => {
    try {
      await plane?.stop();
    } finally {
      // Belt and braces: never leave an haproxy we started behind, even if stop() failed.
      for (const pid of pids) {
        // Only a PID that still runs our config file: a recorded PID can be reused.
        if (!(await isOwnedProcessAlive({ pid, marker: path.join(dir, 'haproxy.cfg') }))) continue;
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      await Promise.all(fakes.map((f) => f.close()));
      if (dir !== '') await rm(dir, { recursive: true, force: true });
    }
  });

  void it('starts haproxy, which holds both ports while nothing is routed', async () => {
    const p = running();
    assert.ok(p.processId() !== null);
    assert.equal(await p.isAlive(), true);
    assert.equal(await probe(leaderPort), 'hold');
    assert.equal(await probe(replicaPort), 'hold-replica');
  });

  void it('routes the leader port to the member apply() names, and moves with it', async () => {
    const p = running();
    await p.apply(known(), routes([a], []));
    assert.deepEqual(await probeMany(leaderPort, 3), ['a', 'a', 'a'], haproxyLog());
    assert.equal(await probe(replicaPort), 'hold-replica');
    await p.apply(known(), routes([b], []));
    assert.deepEqual(await probeMany(leaderPort, 3), ['b', 'b', 'b'], haproxyLog());
  });

  void it('sends leader connections to the hold server when no member is routed', async () => {
    await running().apply(known(), routes([], []));
    assert.deepEqual(await probeMany(leaderPort, 2), ['hold', 'hold']);
  });

  void it('spreads replica connections over every routed replica', async () => {
    await running().apply(known(), routes([a], [a, b]));
    const answers = await probeMany(replicaPort, 6);
    assert.deepEqual([...new Set(answers)].sort(), ['a', 'b'], answers.join(','));
    assert.equal(await probe(leaderPort), 'a');
  });

  void it('health-checks the routed members with pgsql-check as the health check user', async () => {
    await waitUntil(`health checks to reach both members (a: ${a.checks}, b: ${b.checks})`, () => Promise.resolve(a.checks > 0 && b.checks > 0), 5_000, 50);
  });

  void it('leaves a member whose postgres died for the hold server once the health check sees it', async () => {
    const p = running();
    await a.close();
    await waitUntil(() => `leader connections to reach hold after a died\n${haproxyLog()}`, async () => (await probe(leaderPort)) === 'hold', 8_000, 100);
    assert.equal(await slotStatus(socketPath(), 'leader', a.port), 'DOWN');
    assert.deepEqual(new Set(await probeMany(replicaPort, 4)), new Set(['b']));
    // The agent re-applies the same routes every tick: that must not force the dead member up
    // again (a resent `health up` would; redispatch would hide it from clients, so look at HAProxy).
    await p.apply(known(), routes([a], [a, b]));
    assert.equal(await slotStatus(socketPath(), 'leader', a.port), 'DOWN');
    assert.equal(await slotStatus(socketPath(), 'replica', a.port), 'DOWN');
    assert.equal(await slotStatus(socketPath(), 'replica', b.port), 'UP');
    assert.deepEqual(await probeMany(leaderPort, 2), ['hold', 'hold']);
  });

  void it('starts a SIGKILLed haproxy again on the next apply() and routes again', async () => {
    const p = running();
    const oldPid = p.processId();
    assert.ok(oldPid !== null);
    process.kill(oldPid, 'SIGKILL');
    await waitUntil('the data plane to notice haproxy exited', () => Promise.resolve(p.processId() === null && !isPidAlive(oldPid)), 5_000, 25);
    assert.equal(await p.isAlive(), false);
    // apply() restarts at most every 2 s after the last start attempt: poll apply + probe.
    await waitUntil(
      () => `haproxy to be started again and route the leader port to b\n${haproxyLog()}`,
      async () => {
        await p.apply(known(), routes([b], [b]));
        return (await probe(leaderPort, 2_000)) === 'b';
      },
      10_000,
      100,
    );
    const newPid = p.processId();
    assert.ok(newPid !== null && newPid !== oldPid, `new pid ${newPid ?? 'null'} (old ${oldPid})`);
    pids.push(newPid);
    assert.equal(await p.isAlive(), true);
    assert.deepEqual(await probeMany(replicaPort, 2), ['b', 'b']);
    assert.ok(logs.some((l) => l.msg === 'haproxy (data plane) exited'));
  });

  void it('stop() leaves no haproxy process and closes the ports', async () => {
    const p = running();
    const pid = p.processId();
    assert.ok(pid !== null);
    await p.stop();
    assert.equal(isPidAlive(pid), false, `haproxy ${pid} still runs after stop()`);
    // stop() returns once /proc shows the process gone; the child's exit event may land a moment later.
    await waitUntil('processId() to forget the stopped haproxy', () => Promise.resolve(p.processId() === null), 2_000, 10);
    assert.equal(await p.isAlive(), false);
    assert.equal(existsSync(socketPath()), false);
    // Seen once: a connect right after the exit was reset rather than refused; the port must be closed for good.
    await waitUntil('the leader port to refuse connections', async () => (await probe(leaderPort)) === 'error:ECONNREFUSED', 2_000, 50);
    // A late apply() after stop() starts nothing.
    await p.apply(known(), routes([b], [b]));
    assert.equal(p.processId(), null);
  });

  void it('never logged a refused runtime command', () => {
    const refused = logs.filter((l) => l.msg.includes('refused runtime commands'));
    assert.deepEqual(refused, []);
  });
});
