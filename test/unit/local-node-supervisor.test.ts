/**
 * The local provider's node stop (src/providers/local/node-supervisor.ts), with stand-in processes
 * (short-lived `node -e` children of this test, recognised by the same command-line markers as a
 * real supervisor and agent): the supervisor is stopped first and an agent without a supervisor
 * (an older pgpilot) is stopped directly; a PID file naming a process without the marker is never
 * signalled; an agent ignoring SIGTERM is SIGKILLed after the grace. Everything is bounded and
 * the children are SIGKILLed by handle in `after`.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { liveAgent, liveSupervisor, stopNodeProcesses, supervisorMarkerOf, supervisorPidFileOf } from '../../src/providers/local/node-supervisor.js';
import { SystemClock } from '../../src/shared/clock.js';

const systemClock = new SystemClock();
import { isPidAlive, waitUntil } from '../helpers/wait.js';

const children: ChildProcess[] = [];
const dirs: string[] = [];

after(() => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function nodeFiles(): { name: string; nodeDir: string; pidFile: string; configFile: string; logFile: string } {
  const nodeDir = mkdtempSync(path.join(os.tmpdir(), 'pgpilot-node-sup-'));
  dirs.push(nodeDir);
  return { name: 'node1', nodeDir, pidFile: path.join(nodeDir, 'agent.pid'), configFile: path.join(nodeDir, 'agent.json'), logFile: path.join(nodeDir, 'agent.log') };
}

/** A process whose command line carries `args` (after `-e script`); resolves once its script runs. */
async function standIn(script: string, args: string[]): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['-e', `${script}; process.stdout.write('ready\\n')`, ...args], { stdio: ['ignore', 'pipe', 'ignore'] });
  children.push(child);
  await new Promise<void>((resolve, reject) => {
    child.stdout?.once('data', () => resolve());
    child.once('error', reject);
    child.once('exit', () => reject(new Error('the stand-in exited')));
  });
  return child;
}

const IDLE = 'setInterval(() => {}, 1000)';
const IGNORES_TERM = "process.on('SIGTERM', () => {}); setInterval(() => {}, 1000)";

void describe('local node stop (supervisor first, then any agent left)', () => {
  void it('stops a supervisor and an unsupervised agent, each by recorded PID and marker', async () => {
    const node = nodeFiles();
    const supervisor = await standIn(IDLE, ['node', 'run', ...supervisorMarkerOf(node).split(' ')]);
    const agent = await standIn(IDLE, ['agent', '--config', node.configFile]);
    writeFileSync(supervisorPidFileOf(node), `${supervisor.pid ?? ''}\n`);
    writeFileSync(node.pidFile, `${agent.pid ?? ''}\n`);
    await waitUntil('both stand-ins recognised', async () => (await liveSupervisor(node)) === supervisor.pid && (await liveAgent(node)) === agent.pid, 5_000, 50);
    assert.equal(await stopNodeProcesses(node, systemClock, 5_000), 'stopped');
    await waitUntil('both gone', () => Promise.resolve(!isPidAlive(supervisor.pid ?? -1) && !isPidAlive(agent.pid ?? -1)), 5_000, 50);
    assert.equal(await stopNodeProcesses(node, systemClock, 5_000), 'not-running');
  });

  void it('never signals a PID whose command line lacks the marker', async () => {
    const node = nodeFiles();
    const stranger = await standIn(IDLE, ['something', 'else']);
    writeFileSync(supervisorPidFileOf(node), `${stranger.pid ?? ''}\n`);
    writeFileSync(node.pidFile, `${stranger.pid ?? ''}\n`);
    assert.equal(await stopNodeProcesses(node, systemClock, 1_000), 'not-running');
    assert.ok(isPidAlive(stranger.pid ?? -1), 'the unrelated process still runs');
  });

  void it('SIGKILLs an agent that ignores SIGTERM after the grace', async () => {
    const node = nodeFiles();
    const agent = await standIn(IGNORES_TERM, ['agent', '--config', node.configFile]);
    writeFileSync(node.pidFile, `${agent.pid ?? ''}\n`);
    await waitUntil('the stand-in recognised', async () => (await liveAgent(node)) === agent.pid, 5_000, 50);
    assert.equal(await stopNodeProcesses(node, systemClock, 500), 'killed');
    assert.equal(isPidAlive(agent.pid ?? -1), false);
  });
});
