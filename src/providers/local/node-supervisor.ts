/**
 * One supervisor per local node: the local provider runs each node's agent under
 * `pgpilot node run --config <agent.json> --agent-pid-file <agent.pid>` (src/node/node-run.ts), the
 * same supervisor code a host of a multi-host cluster runs under systemd. An agent that dies is
 * restarted by its supervisor (backoff 1 s doubling to 30 s); killing a node's supervisor, agent,
 * watchdog and postmaster together is a host loss.
 *
 * PID files, all in the node directory:
 * - `node-run.pid` the supervisor (written and removed by the supervisor itself); its command line
 *   is recognised by `--agent-pid-file <agent.pid>`, which only that node's supervisor carries;
 * - `node-run.children.json` the supervisor's children (its own bookkeeping);
 * - `agent.pid` the current agent (written by the supervisor when it starts one, removed when it
 *   exits; `status --json`'s `pid`), recognised by the agent's config path as before.
 *
 * Invariants:
 * - Every signal goes to a recorded PID whose command line still carries its marker (pid.ts).
 * - Stopping a node stops its supervisor first (it stops the agent, which stops postgres
 *   cleanly), then, bounded, whatever agent is still running: one started by an older pgpilot
 *   without a supervisor, or one whose supervisor was SIGKILLed after its grace (the agent then
 *   got its parent-death SIGTERM and is shutting down).
 * - The supervisor starts detached (its own session) and without a parent-death signal: it must
 *   outlive the CLI command that started it. Its output goes to `node-run.out`.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import path from 'node:path';
import type { NodeManifest } from '../../config/schema.js';
import { runFilesIn } from '../../node/node-run.js';
import type { Clock } from '../../shared/clock.js';
import { PgpilotError } from '../../shared/errors.js';
import { isOwnedProcessAlive, isPidRunning, stopOwnedProcess } from '../../shared/pid.js';
import { atControlPlanePriority } from '../../shared/priority.js';
import { readPidFile } from './cluster-store.js';

/** How long a new supervisor may take to start the node's agent (node start-up, config parse). */
export const SUPERVISOR_START_TIMEOUT_MS = 20_000;
/** Beyond the agent's own grace: the supervisor's time to notice the exit and remove its files. */
const SUPERVISOR_EXTRA_GRACE_MS = 5_000;

type NodeFiles = Pick<NodeManifest, 'name' | 'nodeDir' | 'pidFile' | 'configFile' | 'logFile'>;

export function supervisorPidFileOf(node: Pick<NodeManifest, 'nodeDir'>): string {
  return runFilesIn(node.nodeDir).supervisorPidFile;
}

export function supervisorOutFileOf(node: Pick<NodeManifest, 'nodeDir'>): string {
  return path.join(node.nodeDir, 'node-run.out');
}

/** What only this node's supervisor has in its command line. */
export function supervisorMarkerOf(node: Pick<NodeManifest, 'pidFile'>): string {
  return `--agent-pid-file ${node.pidFile}`;
}

async function liveOwned(pidFile: string, marker: string): Promise<number | null> {
  const pid = await readPidFile(pidFile).catch(() => null);
  if (pid === null) return null;
  return (await isOwnedProcessAlive({ pid, marker })) ? pid : null;
}

/** The node's running supervisor, by recorded PID and marker. */
export function liveSupervisor(node: Pick<NodeManifest, 'nodeDir' | 'pidFile'>): Promise<number | null> {
  return liveOwned(supervisorPidFileOf(node), supervisorMarkerOf(node));
}

/** The node's running agent, by recorded PID and marker. */
export function liveAgent(node: Pick<NodeManifest, 'pidFile' | 'configFile'>): Promise<number | null> {
  return liveOwned(node.pidFile, node.configFile);
}

/**
 * Starts the node's supervisor and waits (bounded) until it has started the agent. Returns both
 * PIDs; CLUSTER_START_FAILED when the supervisor exits first or no agent appears in time.
 */
export async function startNodeSupervisor(cliEntry: string, node: NodeFiles, clock: Clock): Promise<{ supervisorPid: number; agentPid: number }> {
  const outFile = supervisorOutFileOf(node);
  const fd = openSync(outFile, 'a', 0o600);
  let pid: number;
  try {
    // Control plane: raised priority when we are root (the supervisor's children inherit it; the
    // agent starts postgres and HAProxy back at normal priority; src/shared/priority.ts).
    const prioritized = atControlPlanePriority(process.execPath, [cliEntry, 'node', 'run', '--config', node.configFile, '--agent-pid-file', node.pidFile]);
    const child = spawn(prioritized.command, prioritized.args, { detached: true, stdio: ['ignore', fd, fd], cwd: node.nodeDir, env: { ...process.env } });
    child.unref();
    if (child.pid === undefined) throw new PgpilotError('COMMAND_FAILED', `could not start the supervisor of ${node.name}`, { hint: `read ${outFile}` });
    pid = child.pid;
  } finally {
    closeSync(fd);
  }
  const deadlineMs = clock.nowMs() + SUPERVISOR_START_TIMEOUT_MS;
  for (;;) {
    const agentPid = await liveAgent(node);
    if (agentPid !== null) return { supervisorPid: pid, agentPid };
    if (!(await isPidRunning(pid))) {
      throw new PgpilotError('CLUSTER_START_FAILED', `the supervisor of ${node.name} exited before starting its agent`, { hint: `read ${outFile}` });
    }
    if (clock.nowMs() >= deadlineMs) {
      throw new PgpilotError('CLUSTER_START_FAILED', `the supervisor of ${node.name} started no agent within ${SUPERVISOR_START_TIMEOUT_MS / 1000} s`, {
        hint: `read ${outFile} and ${path.join(node.nodeDir, 'agent.out')}`,
        retryable: true,
      });
    }
    await clock.sleep(100);
  }
}

export type NodeStopOutcome = 'not-running' | 'stopped' | 'killed';

/**
 * Stops the node: SIGTERM to its supervisor (which stops the agent with the agent's grace), then
 * SIGTERM to any agent still running (no supervisor: an older pgpilot started it), each SIGKILLed
 * after `graceMs`. Bounded: at most about 2 x (graceMs + 10 s).
 */
export async function stopNodeProcesses(node: NodeFiles, clock: Clock, graceMs: number): Promise<NodeStopOutcome> {
  let outcome: NodeStopOutcome = 'not-running';
  const supervisor = await liveSupervisor(node);
  if (supervisor !== null) {
    outcome = await stopOwnedProcess({ pid: supervisor, marker: supervisorMarkerOf(node) }, clock, { signal: 'SIGTERM', graceMs: graceMs + SUPERVISOR_EXTRA_GRACE_MS });
  }
  const agent = await liveAgent(node);
  if (agent !== null) {
    const how = await stopOwnedProcess({ pid: agent, marker: node.configFile }, clock, { signal: 'SIGTERM', graceMs });
    if (how === 'killed' || outcome === 'not-running') outcome = how;
  }
  return outcome;
}
