/**
 * The fencing watchdog (src/agent/watchdog.ts) without processes: the line protocol round-trips and
 * rejects anything else, the verdict fires exactly at the deadline, and `runWatchdog` driven by a
 * FakeClock and a PassThrough input kills the postmaster exactly once when heartbeats stop, never
 * while they keep coming, never after a disarm, never a PID that no longer carries the data
 * directory in its command line, and still fires when its input closes while armed.
 */
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import {
  formatArm,
  formatDisarm,
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
  finished: () => boolean;
  done: Promise<void>;
  send(line: string): Promise<void>;
  /** Waits until the loop has handled everything due and sleeps again (or has ended). */
  settle(): Promise<void>;
  /** Moves the fake clock in poll-sized steps, letting the loop run after each one. */
  advance(totalMs: number): Promise<void>;
}

function startWatchdog(options: { isOwned?: (pid: number, marker: string) => Promise<boolean> } = {}): Harness {
  const clock = new FakeClock();
  const input = new PassThrough();
  const kills: number[] = [];
  const logs: string[] = [];
  const ownershipChecks: Array<{ pid: number; marker: string }> = [];
  let ended = false;
  const done = runWatchdog({
    input,
    clock,
    log: (line) => logs.push(line),
    kill: (pid) => kills.push(pid),
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

  void it('still fires at the deadline when its input closes while armed, then exits', async () => {
    const w = startWatchdog();
    const deadlineMs = w.clock.nowMs() + 1_000;
    await w.send(formatArm(PID, deadlineMs, DATA_DIR));
    w.input.end();
    await until('the close to be noticed', () => w.logs.some((l) => l.startsWith('input closed while armed')));
    await w.settle();
    await w.advance(900);
    assert.deepEqual(w.kills, []);
    assert.equal(w.finished(), false, 'an input closed without a disarm does not drop the fence');
    await w.advance(100);
    await w.done;
    assert.deepEqual(w.kills, [PID]);
    assert.equal(w.clock.nowMs(), deadlineMs);
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
