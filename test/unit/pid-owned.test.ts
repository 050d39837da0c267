/**
 * Process ownership (src/shared/pid.ts): `isOwnedProcessAlive` is true for a live PID whose
 * command line contains the marker (this test process, a child we spawned), false for a wrong
 * marker, for PIDs 0, 1, negative, fractional or beyond pid_max, and false once a child we
 * spawned has exited (polled with a deadline, never a fixed sleep). Spawns only short-lived
 * `node -e` children of this process and signals only those, by their own handle.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { isOwnedProcessAlive, readCmdline } from '../../src/shared/pid.js';
import { waitUntil } from '../helpers/wait.js';

const children: ChildProcess[] = [];

after(() => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

/** A marker that is surely in this process's command line: the test file's own name. */
const SELF_MARKER = path.basename(process.argv[1] ?? '');

function spawnNode(script: string, marker: string): ChildProcess {
  // Extra arguments after `-e script` land in the child's argv, so the marker is in its cmdline.
  const child = spawn(process.execPath, ['-e', script, marker], { stdio: 'ignore' });
  children.push(child);
  return child;
}

function exited(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
}

void describe('isOwnedProcessAlive', () => {
  void it('is true for this process with a marker from its own argv', async () => {
    assert.ok(SELF_MARKER.length > 0);
    assert.equal(await isOwnedProcessAlive({ pid: process.pid, marker: SELF_MARKER }), true);
    const cmdline = await readCmdline(process.pid);
    assert.ok(cmdline?.includes(SELF_MARKER), `cmdline ${cmdline ?? 'null'} contains ${SELF_MARKER}`);
  });

  void it('is false for this process with a marker not in its command line', async () => {
    assert.equal(await isOwnedProcessAlive({ pid: process.pid, marker: `/no/such/marker/${randomUUID()}` }), false);
  });

  void it('is false for PID 0, 1, negative, fractional and non-finite PIDs, whatever the marker', async () => {
    for (const pid of [0, 1, -1, -process.pid, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      assert.equal(await isOwnedProcessAlive({ pid, marker: '' }), false, String(pid));
      assert.equal(await isOwnedProcessAlive({ pid, marker: SELF_MARKER }), false, String(pid));
    }
  });

  void it('is false for a PID above pid_max (no such process)', async () => {
    const pidMax = Number(readFileSync('/proc/sys/kernel/pid_max', 'utf8').trim());
    assert.equal(await isOwnedProcessAlive({ pid: pidMax + 1, marker: '' }), false);
  });

  void it('tracks a spawned child: true while it runs, false once it has exited', async () => {
    const marker = `pgpilot-pid-test-${randomUUID()}`;
    const child = spawnNode('setInterval(() => {}, 1000)', marker);
    const pid = child.pid;
    assert.ok(pid !== undefined);
    await waitUntil('the child to show its marker', () => isOwnedProcessAlive({ pid, marker }), 10_000, 20);
    assert.equal(await isOwnedProcessAlive({ pid, marker: `${marker}-other` }), false);
    child.kill('SIGTERM');
    await exited(child);
    await waitUntil('the child to be gone', async () => !(await isOwnedProcessAlive({ pid, marker })), 10_000, 20);
  });

  void it('is false for a short-lived child (node -e "") after it exits', async () => {
    const marker = `pgpilot-pid-test-${randomUUID()}`;
    const child = spawnNode('', marker);
    const pid = child.pid;
    assert.ok(pid !== undefined);
    await exited(child);
    assert.equal(child.exitCode, 0);
    await waitUntil('the exited child to read as not alive', async () => !(await isOwnedProcessAlive({ pid, marker })), 10_000, 20);
    assert.equal(await readCmdline(pid).then((c) => c?.includes(marker) ?? false), false);
  });
});
