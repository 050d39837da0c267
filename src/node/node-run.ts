/**
 * `pgpilot node run`: one supervisor process per node (src/node/supervisor.ts), in two forms:
 *
 * - `--bundle FILE --data-dir DIR` (a host of a multi-host cluster; the systemd unit's ExecStart):
 *   materializes the bundle into DIR (src/node/materialize-bundle.ts), then supervises the etcd
 *   member (when the host runs one) and the agent;
 * - `--config AGENT_JSON` (a node of a local cluster, already set up by the local provider):
 *   supervises only that agent; nothing is written except the supervisor's PID files in the
 *   agent's node directory.
 *
 * Invariants:
 * - One supervisor per directory: `node-run.pid` names a live supervisor -> NODE_ALREADY_RUNNING.
 * - Children a previous supervisor recorded (`node-run.children.json`) that still run — it was
 *   SIGKILLed and a child missed its parent-death signal — are stopped by recorded PID and
 *   command-line marker before anything starts; nothing is ever found by name.
 * - Both PID files are removed when the supervisor ends.
 */
import { readFile, rm, writeFile, rename } from 'node:fs/promises';
import path from 'node:path';
import { agentConfigSchema, type AgentConfig } from '../config/schema.js';
import { loadJsonFile } from '../config/load.js';
import { findEtcdBinary, etcdArgs } from '../etcd/etcd-server.js';
import { readNodeBundle, type NodeBundle } from '../multihost/bundle.js';
import type { Clock } from '../shared/clock.js';
import { PgpilotError } from '../shared/errors.js';
import { isOwnedProcessAlive, stopOwnedProcess } from '../shared/pid.js';
import { materializeBundle } from './materialize-bundle.js';
import type { NodeLayout } from './node-layout.js';
import { realProcessPort, Supervisor, type ChildSpec, type LogLevel, type ProcessPort } from './supervisor.js';
import type { SupervisorTiming } from './supervisor-decide.js';

/** How long the agent may take to stop postgres and release its keys before SIGKILL. */
export const AGENT_STOP_GRACE_MS = 60_000;
export const ETCD_STOP_GRACE_MS = 10_000;
/** What identifies a supervisor's command line (with its PID file inside the directory it runs). */
export const SUPERVISOR_MARKER = 'node run';

export interface NodeRunDeps {
  clock: Clock;
  /** The compiled CLI entry the agent is started with (dist/src/bin/cli.js). */
  cliEntry: string;
  log: (level: LogLevel, message: string) => void;
  processes?: ProcessPort;
  timing?: SupervisorTiming;
  /** Registers the stop signals; returns how to unregister. Default: SIGTERM and SIGINT of this process. */
  onStopSignal?: (handler: (signal: string) => void) => () => void;
}

/** Where a supervisor keeps its PID files. */
export interface RunFiles {
  supervisorPidFile: string;
  childrenFile: string;
  /**
   * Optional plain PID files per child (e.g. `{ agent: nodes/node1/agent.pid }` for the local
   * provider, whose status and stop read that file): written when the child starts, removed when it exits.
   */
  childPidFiles?: Record<string, string>;
}

export function runFilesIn(dir: string): RunFiles {
  return { supervisorPidFile: path.join(dir, 'node-run.pid'), childrenFile: path.join(dir, 'node-run.children.json') };
}

/** The agent as a supervised child. */
export function agentChildSpec(cliEntry: string, configFile: string, nodeDir: string): ChildSpec {
  return {
    name: 'agent',
    command: process.execPath,
    args: [cliEntry, 'agent', '--config', configFile],
    logFile: path.join(nodeDir, 'agent.out'),
    cwd: nodeDir,
    stopGraceMs: AGENT_STOP_GRACE_MS,
    marker: configFile,
  };
}

/** The bundle's etcd member as a supervised child (null when this host runs none). */
export function etcdChildSpec(bundle: NodeBundle, layout: NodeLayout, etcdBinary: string): ChildSpec | null {
  const member = bundle.etcdMember;
  if (member === null) return null;
  return {
    name: 'etcd',
    command: etcdBinary,
    args: etcdArgs({
      name: member.name,
      dataDir: layout.etcdDataDir,
      clientPort: bundle.ports.etcdClientPort,
      peerPort: bundle.ports.etcdPeerPort,
      host: bundle.host,
      tls: { caFile: layout.caFile, certFile: layout.etcdCertFile, keyFile: layout.etcdKeyFile },
      initialCluster: member.initialCluster,
      initialClusterState: member.initialClusterState,
      initialClusterToken: member.initialClusterToken,
      listenOnLoopback: true,
    }),
    logFile: layout.etcdLogFile,
    cwd: layout.dataDir,
    stopGraceMs: ETCD_STOP_GRACE_MS,
    marker: layout.etcdDataDir,
  };
}

async function readPid(file: string): Promise<number | null> {
  try {
    const pid = Number.parseInt((await readFile(file, 'utf8')).trim(), 10);
    return Number.isInteger(pid) && pid > 1 ? pid : null;
  } catch {
    return null;
  }
}

async function writeAtomic(file: string, content: string, mode: number): Promise<void> {
  const temp = `${file}.tmp-${process.pid}`;
  await writeFile(temp, content, { mode });
  await rename(temp, file);
}

interface RecordedChildren {
  supervisorPid: number;
  children: Record<string, { pid: number; marker: string }>;
}

/** NODE_ALREADY_RUNNING when `node-run.pid` names a live supervisor other than this process. */
export async function refuseRunningSupervisor(files: RunFiles): Promise<void> {
  const running = await readPid(files.supervisorPidFile);
  if (running !== null && running !== process.pid && (await isOwnedProcessAlive({ pid: running, marker: SUPERVISOR_MARKER }))) {
    throw new PgpilotError('NODE_ALREADY_RUNNING', `a node supervisor already runs here (pid ${running}, ${files.supervisorPidFile})`, {
      hint: 'stop it first (systemctl stop pgpilot@CLUSTER-NODE, or kill -TERM that PID), or use another --data-dir',
      exitCode: 2,
    });
  }
}

/** Refuses a second supervisor; stops what a dead one left behind (by recorded PID and marker). */
async function claimRunFiles(files: RunFiles, deps: NodeRunDeps): Promise<void> {
  await refuseRunningSupervisor(files);
  let recorded: RecordedChildren | null = null;
  try {
    recorded = JSON.parse(await readFile(files.childrenFile, 'utf8')) as RecordedChildren;
  } catch {
    recorded = null;
  }
  // The agent first (it stops postgres), then etcd.
  const leftovers = Object.entries(recorded?.children ?? {}).sort(([a], [b]) => (a === 'agent' ? -1 : b === 'agent' ? 1 : 0));
  for (const [name, child] of leftovers) {
    if (typeof child?.pid !== 'number' || typeof child.marker !== 'string') continue;
    const how = await stopOwnedProcess({ pid: child.pid, marker: child.marker }, deps.clock, { signal: 'SIGTERM', graceMs: name === 'agent' ? AGENT_STOP_GRACE_MS : ETCD_STOP_GRACE_MS });
    if (how !== 'not-running') deps.log('warn', `stopped ${name} (pid ${child.pid}) left running by a previous supervisor (${how})`);
  }
  await writeAtomic(files.supervisorPidFile, `${process.pid}\n`, 0o644);
}

function defaultStopSignals(handler: (signal: string) => void): () => void {
  const onTerm = (): void => handler('SIGTERM');
  const onInt = (): void => handler('SIGINT');
  process.on('SIGTERM', onTerm);
  process.on('SIGINT', onInt);
  return () => {
    process.off('SIGTERM', onTerm);
    process.off('SIGINT', onInt);
  };
}

/** Supervises `specs` with the PID files in `files` until a stop signal; resolves with the exit code. */
export async function superviseChildren(specs: readonly ChildSpec[], files: RunFiles, deps: NodeRunDeps): Promise<number> {
  await claimRunFiles(files, deps);
  const markers = new Map(specs.map((s) => [s.name, s.marker]));
  const supervisor = new Supervisor(
    specs,
    {
      clock: deps.clock,
      processes: deps.processes ?? realProcessPort(),
      log: deps.log,
      onPidsChanged: async (pids) => {
        const children: RecordedChildren['children'] = {};
        for (const [name, pid] of Object.entries(pids)) if (pid !== null) children[name] = { pid, marker: markers.get(name) ?? '' };
        await writeAtomic(files.childrenFile, `${JSON.stringify({ supervisorPid: process.pid, children } satisfies RecordedChildren)}\n`, 0o644);
        for (const [name, file] of Object.entries(files.childPidFiles ?? {})) {
          const pid = pids[name];
          if (pid === undefined) continue;
          if (pid === null) await rm(file, { force: true });
          else await writeAtomic(file, `${pid}\n`, 0o644);
        }
      },
    },
    deps.timing,
  );
  const unregister = (deps.onStopSignal ?? defaultStopSignals)((signal) => supervisor.signal(signal));
  try {
    deps.log('info', `supervisor ${process.pid}: starting ${specs.map((s) => s.name).join(' and ')}`);
    return await supervisor.run();
  } finally {
    unregister();
    await rm(files.childrenFile, { force: true });
    await rm(files.supervisorPidFile, { force: true });
  }
}

export interface BundleRunOptions {
  bundleFile: string;
  dataDir: string;
  binDir?: string;
}

/** `node run --bundle FILE --data-dir DIR`. */
export async function runNodeFromBundle(options: BundleRunOptions, deps: NodeRunDeps): Promise<number> {
  const bundle = await readNodeBundle(options.bundleFile);
  let etcdBinary: string | null = null;
  if (bundle.etcdMember !== null) {
    etcdBinary = await findEtcdBinary();
    if (etcdBinary === null) throw new PgpilotError('BINARY_MISSING', 'etcd was not found (this host runs an etcd member)', { hint: 'install etcd-server (scripts/setup.sh)', exitCode: 2 });
  }
  // Before anything is rewritten: a running node keeps its files.
  const runFiles = runFilesIn(path.resolve(options.dataDir));
  await refuseRunningSupervisor(runFiles);
  const node = await materializeBundle(bundle, options.dataDir, { nowIso: new Date(deps.clock.nowMs()).toISOString(), ...(options.binDir === undefined ? {} : { binDir: options.binDir }) });
  deps.log('info', `node ${bundle.node} of cluster ${bundle.cluster} at ${bundle.host}: files written to ${node.layout.dataDir}${node.fresh ? ' (new data directory)' : ''}`);
  const specs: ChildSpec[] = [];
  const etcd = etcdBinary === null ? null : etcdChildSpec(bundle, node.layout, etcdBinary);
  if (etcd !== null) specs.push(etcd);
  specs.push(agentChildSpec(deps.cliEntry, node.layout.agentConfigFile, node.layout.dataDir));
  return superviseChildren(specs, { supervisorPidFile: node.layout.supervisorPidFile, childrenFile: node.layout.childrenFile }, deps);
}

/**
 * `node run --config AGENT_JSON [--agent-pid-file FILE]`: only the agent of an existing (local)
 * node; with `agentPidFile`, the current agent's PID is also kept in that file.
 */
export async function runNodeFromAgentConfig(options: { configFile: string; agentPidFile?: string }, deps: NodeRunDeps): Promise<number> {
  const configFile = path.resolve(options.configFile);
  const config: AgentConfig = loadJsonFile(agentConfigSchema, configFile);
  deps.log('info', `node ${config.node} of cluster ${config.cluster}: supervising its agent (${configFile})`);
  const files: RunFiles = { ...runFilesIn(config.nodeDir), ...(options.agentPidFile === undefined ? {} : { childPidFiles: { agent: path.resolve(options.agentPidFile) } }) };
  return superviseChildren([agentChildSpec(deps.cliEntry, configFile, config.nodeDir)], files, deps);
}
