/**
 * Killing the processes of one node of a local cluster the way tests and benchmarks need, now that
 * each node's agent runs under a supervisor (`pgpilot node run`) that restarts it:
 *
 * - `killAgentForGood`: an agent crash that stays a crash. The supervisor is frozen (SIGSTOP: it
 *   cannot act, and a stopped parent sends no parent-death signal), the agent SIGKILLed, then the
 *   supervisor SIGKILLed: nothing restarts the agent until `pgpilot start`. The agent's own
 *   children behave as after any agent kill -9 (the postmaster dies by its parent-death signal, the
 *   fencing watchdog survives and acts).
 * - `killNodeLikeHostLoss`: every process of the node frozen, then SIGKILLed (supervisor, agent
 *   and all the agent's descendants: watchdog, postmaster and backends, pooler): a machine that died.
 *
 * Every PID is read from the node's PID files (node-run.pid, agent.pid) and checked by its
 * command line before any signal; descendants are found by parent PID under /proc. Nothing is
 * found by name.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { isPidAlive, waitUntil } from './wait.js';

export interface LocalNodePids {
  supervisor: number | null;
  agent: number | null;
  /** Every descendant of the agent (watchdog, postmaster and its backends, ...). */
  descendants: number[];
}

function nodeDirOf(home: string, cluster: string, node: string): string {
  return path.join(home, 'clusters', cluster, 'nodes', node);
}

function cmdlineOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
  } catch {
    return '';
  }
}

function pidIn(file: string, marker: string): number | null {
  try {
    const pid = Number.parseInt(readFileSync(file, 'utf8').trim(), 10);
    return Number.isInteger(pid) && pid > 1 && isPidAlive(pid) && cmdlineOf(pid).includes(marker) ? pid : null;
  } catch {
    return null;
  }
}

function parentOf(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number.parseInt(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1] ?? '', 10);
  } catch {
    return null;
  }
}

function descendantsOf(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid <= 1) continue;
    const parent = parentOf(pid);
    if (parent === null) continue;
    children.set(parent, [...(children.get(parent) ?? []), pid]);
  }
  const found: number[] = [];
  const queue = [root];
  for (let i = 0; i < queue.length && i < 10_000; i += 1) {
    for (const child of children.get(queue[i] ?? -1) ?? []) {
      found.push(child);
      queue.push(child);
    }
  }
  return found;
}

/** The node's supervisor, agent and the agent's descendants, by recorded PID and command line. */
export function localNodePids(home: string, cluster: string, node: string): LocalNodePids {
  const dir = nodeDirOf(home, cluster, node);
  const agentPidFile = path.join(dir, 'agent.pid');
  const supervisor = pidIn(path.join(dir, 'node-run.pid'), `--agent-pid-file ${agentPidFile}`);
  const agent = pidIn(agentPidFile, path.join(dir, 'agent.json'));
  return { supervisor, agent, descendants: agent === null ? [] : descendantsOf(agent) };
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
  }
}

/**
 * SIGKILLs the node's agent (`agentPid`, checked to be the node's recorded agent) so that it stays
 * dead: its supervisor is frozen first and SIGKILLed right after. Resolves when both are gone.
 */
export async function killAgentForGood(home: string, cluster: string, node: string, agentPid: number | null): Promise<void> {
  const pids = localNodePids(home, cluster, node);
  if (pids.agent === null || pids.agent !== agentPid) throw new Error(`${node}: agent ${agentPid ?? 'none'} is not the node's running agent (${pids.agent ?? 'none'})`);
  if (pids.supervisor !== null) signal(pids.supervisor, 'SIGSTOP');
  signal(pids.agent, 'SIGKILL');
  if (pids.supervisor !== null) signal(pids.supervisor, 'SIGKILL');
  const gone = [pids.agent, ...(pids.supervisor === null ? [] : [pids.supervisor])];
  await waitUntil(`${node}: agent and supervisor to be gone`, () => Promise.resolve(gone.every((p) => !isPidAlive(p))), 15_000, 50);
}

/**
 * A host loss of one node: supervisor, agent and every descendant of the agent frozen, then
 * SIGKILLed. Returns the PIDs killed; resolves when they are all gone.
 */
export async function killNodeLikeHostLoss(home: string, cluster: string, node: string): Promise<number[]> {
  const first = localNodePids(home, cluster, node);
  const top = [first.supervisor, first.agent].filter((p): p is number => p !== null);
  for (const pid of top) signal(pid, 'SIGSTOP');
  // Frozen, nothing forks any more: the descendants read now are all of them.
  const all = [...top, ...(first.agent === null ? [] : descendantsOf(first.agent))];
  for (const pid of all) signal(pid, 'SIGSTOP');
  for (const pid of all) signal(pid, 'SIGKILL');
  await waitUntil(`${node}: every process to be gone`, () => Promise.resolve(all.every((p) => !isPidAlive(p))), 30_000, 50);
  return all;
}

/**
 * A graceful stop of the node that stays stopped: SIGTERM to its supervisor, which stops the agent
 * (postgres stops cleanly with it) and exits. Resolves when both are gone.
 */
export async function stopNodeSupervisor(home: string, cluster: string, node: string): Promise<void> {
  const pids = localNodePids(home, cluster, node);
  if (pids.supervisor === null) throw new Error(`${node}: no running supervisor`);
  signal(pids.supervisor, 'SIGTERM');
  const gone = [pids.supervisor, ...(pids.agent === null ? [] : [pids.agent])];
  await waitUntil(`${node}: supervisor and agent to stop`, () => Promise.resolve(gone.every((p) => !isPidAlive(p))), 75_000, 100);
}
