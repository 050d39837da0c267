/**
 * The fencing watchdog (src/agent/watchdog.ts) without processes: the line protocol round-trips and
 * rejects anything else, the verdict fires exactly at the deadline, and `runWatchdog` driven by a
 * FakeClock and a PassThrough input kills the postmaster exactly once when heartbeats stop, never
 * while they keep coming, never after a disarm, never a PID that no longer carries the data
 * directory in its command line, and fences at once when its input closes while armed (the agent
 * is gone); after a fence it releases the agent's lease only once every killed PID is proven gone.
 */
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import {
  formatArm,
  formatDisarm,
  formatLease,
  parseWatchdogCommand,
  runWatchdog,
  watchdogVerdict,
  type WatchdogState,
} from '../../src/agent/watchdog.js';
import { FakeClock } from '../../src/shared/clock.js';

const DATA_DIR = '/var/lib/pgpilot/clusters/demo/nodes/node1/pgdata';
const PID = 4242;
const POLL_MS = 100;

void describe('watchdog protocol', () => {
  void it('round-trips arm and disarm', () => {
    const line = formatArm(PID, 1_700_000_012_345, DATA_DIR);
    assert.equal(line, `arm ${PID} 1700000012345 ${DATA_DIR}\n`);
    assert.deepEqual(parseWatchdogCommand(line), { kind: 'arm', postmasterPid: PID, deadlineEpochMs: 1_700_000_012_345, dataDir: DATA_DIR });
    assert.equal(formatDisarm(), 'disarm\n');
    assert.deepEqual(parseWatchdogCommand(formatDisarm()), { kind: 'disarm' });
    assert.equal(formatLease('7587891234567890123'), 'lease 7587891234567890123\n');
    assert.deepEqual(parseWatchdogCommand(formatLease('42')), { kind: 'lease', leaseId: '42' });
  });

  void it('rejects lease ids etcd cannot have granted', () => {
    for (const bad of ['lease', 'lease 0', 'lease 012', 'lease -1', 'lease 1.5', 'lease 99999999999999999999', 'lease x']) {
      assert.equal(parseWatchdogCommand(bad), null, bad);
    }
    assert.throws(() => formatLease('0'), RangeError);
    assert.throws(() => formatLease('12 34'), RangeError);
  });

  void it('keeps a data directory with spaces whole and tolerates CRLF and surrounding blanks', () => {
    const dir = '/srv/my data/pg dir';
    assert.deepEqual(parseWatchdogCommand(formatArm(7, 5, dir)), { kind: 'arm', postmasterPid: 7, deadlineEpochMs: 5, dataDir: dir });
    assert.deepEqual(parseWatchdogCommand(`  arm 7 5 ${dir}\r\n`), { kind: 'arm', postmasterPid: 7, deadlineEpochMs: 5, dataDir: dir });
    assert.deepEqual(parseWatchdogCommand(' disarm \r\n'), { kind: 'disarm' });
  });

  void it('rejects every other line', () => {
    const bad = [
      '',
      'arm',
      'arm 12',
      'arm 12 34',
      'arm x 34 /d',
      'arm 12 x /d',
      'arm 12 -34 /d',
      'arm -12 34 /d',
      'arm 0 34 /d',
      'arm 1 34 /d',
      'arm 12.5 34 /d',
      'arm 12 34 relative/dir',
      'arm 12 99999999999999999999 /d',
      'arm12 34 /d',
      'disarm now',
      'DISARM',
      'fire',
      'ARM 12 34 /d',
    ];
    for (const line of bad) assert.equal(parseWatchdogCommand(line), null, JSON.stringify(line));
  });

  void it('refuses to format arguments no agent should send', () => {
    assert.throws(() => formatArm(0, 1, DATA_DIR), RangeError);
    assert.throws(() => formatArm(1, 1, DATA_DIR), RangeError);
    assert.throws(() => formatArm(12.5, 1, DATA_DIR), RangeError);
    assert.throws(() => formatArm(PID, Number.NaN, DATA_DIR), RangeError);
    assert.throws(() => formatArm(PID, -1, DATA_DIR), RangeError);
    assert.throws(() => formatArm(PID, 1, 'pgdata'), RangeError, 'a relative marker');
    assert.throws(() => formatArm(PID, 1, ''), RangeError, 'an empty marker would match anything');
    assert.throws(() => formatArm(PID, 1, '/a\ndisarm'), RangeError, 'a newline would inject a command');
  });
});

void describe('watchdogVerdict', () => {
  const armed: WatchdogState = { kind: 'armed', postmasterPid: PID, deadlineEpochMs: 10_000, dataDir: DATA_DIR };
  void it('is idle while disarmed, whatever the time', () => {
    for (const nowMs of [0, 10_000, Number.MAX_SAFE_INTEGER]) assert.equal(watchdogVerdict({ kind: 'disarmed' }, nowMs), 'idle');
  });
  void it('waits before the deadline and fires from the deadline on', () => {
    assert.equal(watchdogVerdict(armed, 0), 'waiting');
    assert.equal(watchdogVerdict(armed, 9_999), 'waiting');
    assert.equal(watchdogVerdict(armed, 10_000), 'fire');
    assert.equal(watchdogVerdict(armed, 10_001), 'fire');
  });
});

/** Lets queued I/O callbacks and microtasks run; bounded so a broken loop fails instead of hanging. */
async function until(what: string, condition: () => boolean): Promise<void> {
  for (let turn = 0; turn < 1_000; turn++) {
    if (condition()) return;
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  throw new Error(`never observed: ${what}`);
}

interface Harness {
  clock: FakeClock;
  input: PassThrough;
  kills: number[];
  logs: string[];
  ownershipChecks: Array<{ pid: number; marker: string }>;
  released: string[];
  goneChecks: Array<readonly number[]>;
  finished: () => boolean;
  done: Promise<void>;
  send(line: string): Promise<void>;
  /** Waits until the loop has handled everything due and sleeps again (or has ended). */
  settle(): Promise<void>;
  /** Moves the fake clock in poll-sized steps, letting the loop run after each one. */
  advance(totalMs: number): Promise<void>;
}

interface StartOptions {
  isOwned?: (pid: number, marker: string) => Promise<boolean>;
  /** PIDs the kill reports besides the postmaster (its backends). */
  backends?: number[];
  /** Whether the killed PIDs are gone; default: at once. */
  allGone?: (pids: readonly number[]) => Promise<boolean>;
  /** Revoke outcome; default: works. */
  releaseFails?: boolean;
  noRelease?: boolean;
}

function startWatchdog(options: StartOptions = {}): Harness {
  const clock = new FakeClock();
  const input = new PassThrough();
  const kills: number[] = [];
  const logs: string[] = [];
  const ownershipChecks: Array<{ pid: number; marker: string }> = [];
  const released: string[] = [];
  const goneChecks: Array<readonly number[]> = [];
  let ended = false;
  const done = runWatchdog({
    input,
    clock,
    log: (line) => logs.push(line),
    kill: (pid) => {
      kills.push(pid);
      return [pid, ...(options.backends ?? [])];
    },
    allGone: (pids) => {
      goneChecks.push(pids);
      return options.allGone ? options.allGone(pids) : Promise.resolve(true);
    },
    goneTimeoutMs: 1_000,
    ...(options.noRelease === true
      ? {}
      : {
          releaseLease: (leaseId: string) => {
            released.push(leaseId);
            return options.releaseFails === true ? Promise.reject(new Error('etcd down')) : Promise.resolve();
          },
        }),
    isOwned: (pid, marker) => {
      ownershipChecks.push({ pid, marker });
      return options.isOwned ? options.isOwned(pid, marker) : Promise.resolve(true);
    },
    pollMs: POLL_MS,
  }).then(() => {
    ended = true;
  });
  const harness: Harness = {
    clock,
    input,
    kills,
    logs,
    ownershipChecks,
    released,
    goneChecks,
    finished: () => ended,
    done,
    async send(line) {
      input.write(line);
      await until('the input to be consumed', () => input.readableLength === 0 && input.writableLength === 0);
      await harness.settle();
    },
    async settle() {
      await until('the loop to sleep again', () => ended || clock.pendingSleepers() > 0);
    },
    async advance(totalMs) {
      for (let movedMs = 0; movedMs < totalMs; movedMs += POLL_MS) {
        clock.advance(Math.min(POLL_MS, totalMs - movedMs));
        await harness.settle();
      }
    },
  };
  return harness;
}

void describe('runWatchdog', () => {
  void it('never fires while heartbeats keep moving the deadline', async () => {
    const w = startWatchdog();
    await w.settle();
    for (let beat = 0; beat < 10; beat++) {
      await w.send(formatArm(PID, w.clock.nowMs() + 1_000, DATA_DIR));
      await w.advance(500);
    }
    assert.deepEqual(w.kills, [], 'five seconds of heartbeats, well past the first deadline');
    assert.equal(w.logs.filter((l) => l.startsWith('armed')).length, 1, 'heartbeats for the same postmaster are silent');
    await w.send(formatDisarm());
    w.input.end();
    await w.done;
    assert.deepEqual(w.kills, []);
  });

  void it('kills exactly once, at the deadline, when heartbeats stop', async () => {
    const w = startWatchdog();
    const deadlineMs = w.clock.nowMs() + 1_000;
    await w.send(formatArm(PID, deadlineMs, DATA_DIR));
    await w.advance(900);
    assert.deepEqual(w.kills, [], 'not before the deadline');
    await w.advance(100);
    assert.equal(w.clock.nowMs(), deadlineMs);
    assert.deepEqual(w.kills, [PID], 'at the deadline');
    await w.advance(3_000);
    assert.deepEqual(w.kills, [PID], 'and only once');
    assert.deepEqual(w.ownershipChecks, [{ pid: PID, marker: DATA_DIR }], 'ownership checked right before the kill');
    assert.equal(w.logs.filter((l) => l.includes('SIGKILLed postmaster 4242')).length, 1, w.logs.join('\n'));
    assert.equal(w.finished(), false, 'keeps running while its input is open');
    w.input.end();
    await w.done;
  });

  void it('fires at a deadline that is already past when the arm arrives', async () => {
    const w = startWatchdog();
    await w.send(formatArm(PID, w.clock.nowMs() - 1, DATA_DIR));
    assert.deepEqual(w.kills, [PID]);
    w.input.end();
    await w.done;
  });

  void it('does not fire after a disarm', async () => {
    const w = startWatchdog();
    await w.send(formatArm(PID, w.clock.nowMs() + 1_000, DATA_DIR));
    await w.advance(500);
    await w.send(formatDisarm());
    await w.advance(3_000);
    assert.deepEqual(w.kills, []);
    assert.deepEqual(w.ownershipChecks, []);
    assert.ok(w.logs.some((l) => l.startsWith('disarmed')), w.logs.join('\n'));
    w.input.end();
    await w.done;
  });

  void it('fences at once when its input closes while armed (the agent is gone), releases the lease, then exits', async () => {
    const w = startWatchdog({ backends: [5001, 5002] });
    const deadlineMs = w.clock.nowMs() + 5_000;
    await w.send(formatLease('777'));
    await w.send(formatArm(PID, deadlineMs, DATA_DIR));
    w.input.end();
    await w.done;
    assert.deepEqual(w.kills, [PID], 'killed without waiting for the deadline');
    assert.ok(w.clock.nowMs() < deadlineMs);
    assert.deepEqual(w.goneChecks.at(-1), [PID, 5001, 5002], 'postmaster and backends proven gone first');
    assert.deepEqual(w.released, ['777']);
    assert.ok(w.logs.some((l) => l.includes('released lease 777')), w.logs.join('\n'));
  });

  void it('does not release the lease while a killed process still exists', async () => {
    const w = startWatchdog({ allGone: () => Promise.resolve(false) });
    await w.send(formatLease('777'));
    await w.send(formatArm(PID, w.clock.nowMs() + 5_000, DATA_DIR));
    w.input.end();
    await until('the kill', () => w.kills.length === 1);
    await w.advance(1_100);
    await w.done;
    assert.deepEqual(w.released, [], 'an unproven kill never releases the lease');
    assert.ok(w.logs.some((l) => l.includes('not releasing lease 777')), w.logs.join('\n'));
  });

  void it('releases after a deadline fence too, and survives a failing release', async () => {
    const w = startWatchdog({ releaseFails: true });
    await w.send(formatLease('9'));
    await w.send(formatArm(PID, w.clock.nowMs() + 1_000, DATA_DIR));
    await w.advance(1_000);
    assert.deepEqual(w.kills, [PID]);
    assert.deepEqual(w.released, ['9']);
    assert.ok(w.logs.some((l) => l.includes('could not release lease 9')), w.logs.join('\n'));
    assert.equal(w.finished(), false, 'keeps running while its input is open');
    w.input.end();
    await w.done;
  });

  void it('releases nothing without a lease line or without a release port', async () => {
    const noLease = startWatchdog();
    await noLease.send(formatArm(PID, noLease.clock.nowMs() + 5_000, DATA_DIR));
    noLease.input.end();
    await noLease.done;
    assert.deepEqual(noLease.kills, [PID]);
    assert.deepEqual(noLease.released, []);
    const noPort = startWatchdog({ noRelease: true });
    await noPort.send(formatLease('5'));
    await noPort.send(formatArm(PID, noPort.clock.nowMs() + 5_000, DATA_DIR));
    noPort.input.end();
    await noPort.done;
    assert.deepEqual(noPort.kills, [PID]);
    assert.deepEqual(noPort.goneChecks, [], 'nothing to wait for when nothing is released');
  });

  void it('releases the lease of a gone agent whose postmaster already died with it', async () => {
    const w = startWatchdog({ isOwned: () => Promise.resolve(false) });
    await w.send(formatLease('31'));
    await w.send(formatArm(PID, w.clock.nowMs() + 5_000, DATA_DIR));
    w.input.end();
    await w.done;
    assert.deepEqual(w.kills, [], 'nothing of ours left to kill');
    assert.deepEqual(w.released, ['31']);
  });

  void it('exits at once when its input closes while disarmed', async () => {
    const w = startWatchdog();
    await w.send(formatArm(PID, w.clock.nowMs() + 1_000, DATA_DIR));
    w.input.write('disarm'); // the last line may lack its newline
    w.input.end();
    await w.done;
    assert.deepEqual(w.kills, []);
  });

  void it('never kills a PID whose command line lacks the data directory', async () => {
    const w = startWatchdog({ isOwned: () => Promise.resolve(false) });
    await w.send(formatArm(PID, w.clock.nowMs() + 1_000, DATA_DIR));
    await w.advance(2_000);
    assert.deepEqual(w.kills, []);
    assert.deepEqual(w.ownershipChecks, [{ pid: PID, marker: DATA_DIR }], 'checked once, then disarmed');
    assert.ok(w.logs.some((l) => l.includes('nothing to kill')), w.logs.join('\n'));
    w.input.end();
    await w.done;
  });

  void it('lets a heartbeat that arrives during the ownership check win', async () => {
    let answer: (owned: boolean) => void = () => {};
    const w = startWatchdog({ isOwned: () => new Promise<boolean>((resolve) => (answer = resolve)) });
    const deadlineMs = w.clock.nowMs() + 1_000;
    await w.send(formatArm(PID, deadlineMs, DATA_DIR));
    w.clock.advance(1_000);
    await until('the ownership check to start', () => w.ownershipChecks.length === 1);
    w.input.write(formatArm(PID, deadlineMs + 1_000, DATA_DIR));
    await until('the heartbeat to be consumed', () => w.input.readableLength === 0 && w.input.writableLength === 0);
    answer(true);
    await w.settle();
    assert.deepEqual(w.kills, [], 'the renewed deadline has not passed');
    w.clock.advance(1_000);
    await until('the second ownership check to start', () => w.ownershipChecks.length === 2);
    answer(true);
    await w.settle();
    assert.deepEqual(w.kills, [PID], 'the renewed deadline passed without a heartbeat');
    w.input.end();
    await w.done;
  });

  void it('ignores unrecognised lines and keeps working', async () => {
    const w = startWatchdog();
    await w.send('hello\narm 1 2 /x\narm 12 34 relative\n');
    assert.equal(w.logs.filter((l) => l.startsWith('ignored')).length, 3, w.logs.join('\n'));
    await w.send(formatArm(PID, w.clock.nowMs() + 200, DATA_DIR));
    await w.advance(200);
    assert.deepEqual(w.kills, [PID]);
    w.input.end();
    await w.done;
  });
});
