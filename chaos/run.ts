/**
 * `npm run chaos -- [--faults N] [--seed S] [--mode sync|async] [--out FILE]`: the chaos suite.
 *
 * Two processes. The outer one (root namespace) checks the machine, removes leftovers of crashed
 * runs (namespaces `pgp-chaos-*` whose runner is gone), creates the namespaces, bridge, veths and
 * tmpfs volumes, records them, makes the run's CA and certificates (lib/chaos-tls.ts), and starts
 * the inner one inside the runner's namespace with `ip netns exec` (the /24 exists only inside the
 * namespaces, so the workload and the checks must run there). The inner one starts the etcd
 * members (one per host) and the agents, runs the workload, the probe and the
 * faults, and writes the report. Whatever happens (error, SIGINT, SIGTERM, a crashed inner
 * process), the outer one then stops every recorded process and removes mounts and namespaces.
 */
import { quietIpServernameWarning } from '../src/shared/warnings.js';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { findPgBinDir } from '../src/postgres/bin-dir.js';
import { findEtcdBinary } from '../src/etcd/etcd-server.js';
import { runCommand, isRoot } from '../src/shared/process-runner.js';
import { PGPILOT_VERSION } from '../src/shared/version.js';
import { ACKED_TABLE_SQL, Workload } from './lib/workload.js';
import { PROBE_TABLE_SQL, SplitBrainProbe, analyzeSplitBrain } from './lib/probe.js';
import { applyFault, planFaults, resolveTarget, type AppliedFault } from './lib/faults.js';
import { checkAckedRows, createTables, waitForConvergence } from './lib/checker.js';
import { provisionChaosTls } from './lib/chaos-tls.js';
import { agentPid, newChaosCluster, prepareDirectories, startCluster, stopCluster } from './lib/cluster.js';
import { CHAOS_HOME, runLayout } from './lib/layout.js';
import { mulberry32, randomSeed } from './lib/prng.js';
import { verdict, type ChaosReport, type FaultReport } from './lib/report.js';
import { PidRecord, cleanupRun, findLeftoverRuns, writeOuterState, type OuterState } from './lib/resources.js';
import { CHAOS_PREFIX, NODE_NAMES, allNamespaces, createTopology, listNamespaces, topologyFor, type NodeName } from './lib/topology.js';
import { nowMs } from './lib/pg-client.js';

/**
 * Size of each host's tmpfs volume (its disk). Room for postgres' own WAL budget (max_wal_size
 * 1 GB), the WAL a dead member's slot may keep (max_slot_wal_keep_size 1 GB, overlapping it), one
 * data directory moved aside by a re-clone, and the host's etcd member (WAL segments of 64 MB
 * preallocated, its bbolt file, snapshots: a few hundred MB at most in a run); tmpfs takes memory
 * only as it fills (the disk-full fault fills one volume at a time).
 */
const CHAOS_VOLUME_SIZE = '2560M';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO_ROOT = path.resolve(HERE, '..', '..');
const CLI_ENTRY = path.join(REPO_ROOT, 'dist', 'src', 'bin', 'cli.js');

const HELP = `usage: npm run chaos -- [options]

Runs a 3-host pgpilot cluster in Linux network namespaces (each host: an etcd member, an agent
and its postgres), a workload of
concurrent writers and a split-brain probe, and injects faults drawn from a seeded PRNG. After each
fault heals it checks: all members converge to streaming, every acknowledged write is on the
leader (sync mode: any loss fails), and no two nodes accepted writes at the same time.
Needs root, iproute2 (ip netns) and nftables. Progress goes to stderr; the summary line to stdout.

options:
  --faults N            number of faults (default 10)
  --seed S              PRNG seed (default: random, printed); the same seed gives the same fault plan
  --mode sync|async     synchronous: quorum, or asynchronous replication (default sync)
  --out FILE            JSON report (default chaos/results/<stamp>-<mode>-seed<S>.json)
  --hold-min-ms MS      shortest time a fault is held before healing (default 3000)
  --hold-max-ms MS      longest time a fault is held (default 12000)
  --converge-timeout-s S  how long to wait for convergence after a heal (default 90)
  --writers N           concurrent writers (default 4)
  --home DIR            where runs keep their files (default ${CHAOS_HOME})
  --remove-work-dir     delete the run's directory (logs) at the end (default: kept)
  -h, --help            this text

exit code: 0 when every fault converged, no split-brain was seen and (sync mode) no acknowledged
write was lost; 1 otherwise; 2 for bad usage or a machine that cannot run it.
`;

interface Options {
  faults: number;
  seed: number;
  mode: 'sync' | 'async';
  out: string | null;
  holdMinMs: number;
  holdMaxMs: number;
  convergeTimeoutMs: number;
  writers: number;
  home: string;
  removeWorkDir: boolean;
  inner: boolean;
  runId: string | null;
}

class UsageError extends Error {}

function positiveInt(name: string, value: string | undefined, fallback: number, min = 1): number {
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value) || Number(value) < min) throw new UsageError(`${name} must be a whole number >= ${min}`);
  return Number(value);
}

function parseOptions(argv: string[]): Options | 'help' {
  const { values } = parseArgs({
    args: argv,
    options: {
      faults: { type: 'string' },
      seed: { type: 'string' },
      mode: { type: 'string' },
      out: { type: 'string' },
      'hold-min-ms': { type: 'string' },
      'hold-max-ms': { type: 'string' },
      'converge-timeout-s': { type: 'string' },
      writers: { type: 'string' },
      home: { type: 'string' },
      'remove-work-dir': { type: 'boolean' },
      inner: { type: 'boolean' },
      'run-id': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help === true) return 'help';
  const mode = values.mode ?? 'sync';
  if (mode !== 'sync' && mode !== 'async') throw new UsageError('--mode must be sync or async');
  const holdMinMs = positiveInt('--hold-min-ms', values['hold-min-ms'], 3_000, 0);
  const holdMaxMs = positiveInt('--hold-max-ms', values['hold-max-ms'], 12_000, 0);
  if (holdMaxMs < holdMinMs) throw new UsageError('--hold-max-ms must be >= --hold-min-ms');
  const runId = values['run-id'] ?? null;
  if (runId !== null && !new RegExp(`^${CHAOS_PREFIX}[0-9a-f]{6}$`).test(runId)) throw new UsageError('bad --run-id');
  return {
    faults: positiveInt('--faults', values.faults, 10, 0),
    seed: positiveInt('--seed', values.seed, randomSeed(), 0),
    mode,
    out: values.out ?? null,
    holdMinMs,
    holdMaxMs,
    convergeTimeoutMs: positiveInt('--converge-timeout-s', values['converge-timeout-s'], 90) * 1000,
    writers: positiveInt('--writers', values.writers, 4),
    home: path.resolve(values.home ?? CHAOS_HOME),
    removeWorkDir: values['remove-work-dir'] === true,
    inner: values.inner === true,
    runId,
  };
}

function progress(line: string): void {
  process.stderr.write(`chaos: ${new Date().toISOString().slice(11, 23)} ${line}\n`);
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

// ---------------------------------------------------------------------------------------------
// Outer process (root namespace)

async function machineProblem(): Promise<string | null> {
  if (!isRoot()) return 'the chaos suite needs root (network namespaces, nftables, tmpfs mounts)';
  for (const [binary, pkg] of [
    ['ip', 'iproute2'],
    ['nft', 'nftables'],
    ['fallocate', 'util-linux'],
  ] as const) {
    const found = await runCommand('sh', ['-c', `command -v ${binary}`], { check: false, timeoutMs: 5_000 });
    if (found.exitCode !== 0) return `${binary} is missing (Debian package ${pkg}; run scripts/setup.sh)`;
  }
  if ((await findEtcdBinary()) === null) return 'etcd is missing (run scripts/setup.sh)';
  try {
    await findPgBinDir();
  } catch {
    return 'PostgreSQL 15 is missing (run scripts/setup.sh)';
  }
  return null;
}

async function outer(options: Options, argv: string[]): Promise<number> {
  const problem = await machineProblem();
  if (problem !== null) {
    process.stderr.write(`chaos: error: ${problem}\n`);
    return 2;
  }
  for (const leftover of await findLeftoverRuns(options.home)) {
    progress(`removing leftovers of an earlier run: ${leftover}`);
    await cleanupRun(options.home, leftover, progress);
  }
  const runId = `${CHAOS_PREFIX}${randomBytes(3).toString('hex')}`;
  const topology = topologyFor(runId);
  const layout = runLayout(options.home, runId);
  mkdirSync(layout.runDir, { recursive: true });
  const state: OuterState = { runId, outerPid: process.pid, namespaces: [], mounts: [] };
  writeOuterState(layout.stateFile, state);
  progress(`run ${runId}, seed ${options.seed}, mode ${options.mode}, ${options.faults} faults; files in ${layout.runDir}`);

  let child: ReturnType<typeof spawn> | null = null;
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals): void => {
    signals += 1;
    progress(`${sig}: stopping the run${signals > 1 ? ' now' : ''}, then cleaning up`);
    if (child !== null && child.exitCode === null) child.kill(signals > 1 ? 'SIGKILL' : 'SIGTERM');
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  let code = 1;
  try {
    await createTopology(topology, (ns) => {
      state.namespaces.push(ns);
      writeOuterState(layout.stateFile, state);
    });
    progress(`namespaces up: ${allNamespaces(topology).join(' ')}`);
    await prepareDirectories(layout, CHAOS_VOLUME_SIZE, (dir) => {
      state.mounts.push(dir);
      writeOuterState(layout.stateFile, state);
    });
    const leaves = await provisionChaosTls(layout);
    progress(`TLS: a CA for this run and ${leaves} certificates in ${layout.tlsDir} (node keys owned by postgres)`);
    if (signals > 0) return 1;
    const innerArgs = [...argv.filter((a) => a !== '--remove-work-dir'), '--inner', '--run-id', runId, '--seed', String(options.seed), '--home', options.home];
    child = spawn('ip', ['netns', 'exec', topology.clientNs, process.execPath, fileURLToPath(import.meta.url), ...innerArgs], {
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    const spawned = child;
    code = await new Promise<number>((resolve) => {
      spawned.once('error', (error) => {
        progress(`could not start the runner: ${error.message}`);
        resolve(1);
      });
      spawned.once('close', (exitCode, signal) => resolve(exitCode ?? (signal === null ? 1 : 1)));
    });
  } catch (error) {
    progress(`error: ${errorMessage(error)}`);
    code = 1;
  } finally {
    progress('cleaning up: processes, tmpfs volumes, namespaces');
    await cleanupRun(options.home, runId, progress);
    const left = (await listNamespaces().catch(() => [] as string[])).filter((ns) => ns.startsWith(`${runId}-`));
    if (left.length > 0) {
      progress(`cleanup incomplete: namespaces left: ${left.join(' ')}`);
      code = code === 0 ? 1 : code;
    } else progress('cleanup done: no namespace, mount or process of this run is left');
    if (options.removeWorkDir) await runCommand('rm', ['-rf', '--one-file-system', layout.runDir], { check: false, timeoutMs: 60_000 });
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  return code;
}

// ---------------------------------------------------------------------------------------------
// Inner process (runner namespace)

async function versions(): Promise<Record<string, string>> {
  const first = async (command: string, args: string[]): Promise<string> => {
    const result = await runCommand(command, args, { check: false, timeoutMs: 10_000 }).catch(() => null);
    return (result?.stdout ?? '').split('\n')[0]?.trim() ?? '';
  };
  const binDir = await findPgBinDir();
  return {
    pgpilot: PGPILOT_VERSION,
    node: process.version,
    postgres: await first(path.join(binDir, 'postgres'), ['--version']),
    etcd: await first((await findEtcdBinary()) ?? 'etcd', ['--version']),
    kernel: await first('uname', ['-r']),
  };
}

async function inner(options: Options): Promise<number> {
  const runId = options.runId;
  if (runId === null) throw new UsageError('--inner needs --run-id');
  const topology = topologyFor(runId);
  const layout = runLayout(options.home, runId);
  const pids = new PidRecord(layout.pidsFile);
  const cluster = newChaosCluster(topology, layout, CLI_ENTRY, pids);
  let stopping = false;
  const onSignal = (): void => {
    stopping = true;
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const stop = (): boolean => stopping;
  const pause = async (ms: number): Promise<void> => {
    const until = nowMs() + ms;
    while (!stopping && nowMs() < until) await sleep(Math.min(200, Math.max(0, until - nowMs())));
  };

  const startedAt = new Date().toISOString();
  const plan = planFaults(mulberry32(options.seed), options.faults, { min: options.holdMinMs, max: options.holdMaxMs });
  const faults: FaultReport[] = [];
  const lostIds = new Set<number>();
  let fatalError: string | null = null;
  let bootstrap: ChaosReport['bootstrap'] = { converged: false, ms: null, leader: null, syncStandbyNames: null };
  const workload = new Workload(cluster.credentials, { writers: options.writers, paceMs: 40, connectTimeoutMs: 1_000, queryTimeoutMs: 5_000 });
  const probe = new SplitBrainProbe(cluster.credentials, { intervalMs: 100, connectTimeoutMs: 500, queryTimeoutMs: 2_000 });
  let workloadStarted = false;
  let converged = 0;

  try {
    const t0 = nowMs();
    await startCluster(cluster, options.mode, progress);
    // An agent that exits during bootstrap (bad config, unreachable directory) ends the wait at once.
    const dead: { agent: NodeName | null } = { agent: null };
    const watchAgents = setInterval(() => {
      void Promise.all(NODE_NAMES.map(async (name) => ((await agentPid(cluster, name)) === null ? name : null))).then((gone) => {
        const first = gone.find((n) => n !== null);
        if (first !== undefined && first !== null) dead.agent = first;
      });
    }, 1_000);
    const boot = await waitForConvergence(cluster, 180_000, () => stopping || dead.agent !== null).finally(() => clearInterval(watchAgents));
    if (dead.agent !== null) throw new Error(`the agent of ${dead.agent} exited during bootstrap (see ${layout.node(dead.agent).logFile} and agent.out)`);
    bootstrap = { converged: boot.converged, ms: boot.converged ? Math.round(nowMs() - t0) : null, leader: boot.leader, syncStandbyNames: boot.syncStandbyNames };
    if (!boot.converged || boot.leader === null) throw new Error(`the cluster did not converge after bootstrap: ${boot.last}`);
    progress(`bootstrap: converged in ${((nowMs() - t0) / 1000).toFixed(1)} s, leader ${boot.leader}, synchronous_standby_names '${boot.syncStandbyNames ?? ''}'`);
    await createTables(boot.leader, cluster.credentials, [ACKED_TABLE_SQL, PROBE_TABLE_SQL], 30_000);
    // The tables must have reached the replicas before probing them (a standby without the table errors differently).
    await waitForConvergence(cluster, 30_000, stop);
    workload.start();
    probe.start();
    workloadStarted = true;
    await pause(2_000);
    let leader: NodeName = boot.leader;

    for (const fault of plan) {
      if (stopping) break;
      const node = resolveTarget(fault.target, leader);
      const entry: FaultReport = {
        index: fault.index,
        kind: fault.kind,
        target: fault.target,
        node,
        direction: fault.direction,
        holdMs: fault.holdMs,
        detail: null,
        healDetail: null,
        error: null,
        leaderBefore: leader,
        leaderAfter: null,
        appliedAt: null,
        healedAt: null,
        converged: false,
        convergenceMs: null,
        convergenceState: '',
        syncStandbyNames: null,
        ackedSoFar: 0,
        newlyLost: 0,
        lostSoFar: lostIds.size,
      };
      faults.push(entry);
      const label = `[${fault.index}/${plan.length}] ${fault.kind} ${fault.target}${node === null ? '' : ` (${node})`}`;
      let applied: AppliedFault | null = null;
      try {
        applied = await applyFault(cluster, fault, node);
        entry.appliedAt = new Date().toISOString();
        entry.detail = applied.detail;
        progress(`${label}: applied: ${applied.detail}; holding ${(fault.holdMs / 1000).toFixed(1)} s`);
      } catch (error) {
        entry.error = `apply: ${errorMessage(error)}`;
        progress(`${label}: could not apply: ${errorMessage(error)}`);
      }
      if (applied !== null) {
        await pause(fault.holdMs);
        try {
          entry.healDetail = await applied.heal();
          entry.healedAt = new Date().toISOString();
          progress(`${label}: healed: ${entry.healDetail}`);
        } catch (error) {
          entry.error = `heal: ${errorMessage(error)}`;
          progress(`${label}: heal failed: ${errorMessage(error)}`);
        }
      }
      const healedMs = nowMs();
      const result = await waitForConvergence(cluster, options.convergeTimeoutMs, stop);
      entry.converged = result.converged;
      entry.convergenceState = result.last;
      entry.syncStandbyNames = result.syncStandbyNames;
      if (!result.converged || result.leader === null) {
        progress(`${label}: ${stopping ? 'interrupted before convergence' : `NOT converged within ${Math.round(options.convergeTimeoutMs / 1000)} s`}: ${result.last}`);
        break;
      }
      converged += 1;
      entry.convergenceMs = Math.round(nowMs() - healedMs);
      entry.leaderAfter = result.leader;
      leader = result.leader;
      try {
        const check = await checkAckedRows(leader, cluster.credentials, workload.acked);
        let newlyLost = 0;
        for (const row of check.missing) {
          if (!lostIds.has(row.id)) {
            lostIds.add(row.id);
            newlyLost += 1;
          }
        }
        entry.ackedSoFar = check.checkedAcked;
        entry.newlyLost = newlyLost;
        entry.lostSoFar = lostIds.size;
      } catch (error) {
        entry.error = `${entry.error === null ? '' : `${entry.error}; `}ack check: ${errorMessage(error)}`;
      }
      const sb = analyzeSplitBrain(probe.observations);
      progress(
        `${label}: converged in ${(entry.convergenceMs / 1000).toFixed(1)} s, leader ${leader}; acked ${entry.ackedSoFar}, lost ${entry.lostSoFar} (+${entry.newlyLost}), split-brain episodes so far ${sb.episodes.length}`,
      );
      await pause(1_000);
    }
  } catch (error) {
    fatalError = errorMessage(error);
    progress(`error: ${fatalError}`);
  }

  if (workloadStarted) {
    await workload.stop();
    await probe.stop();
    // Final check: rows acknowledged after the last fault's check count too.
    if (!stopping && fatalError === null) {
      const last = await waitForConvergence(cluster, 30_000, stop);
      if (last.converged && last.leader !== null) {
        try {
          const check = await checkAckedRows(last.leader, cluster.credentials, workload.acked);
          for (const row of check.missing) lostIds.add(row.id);
        } catch (error) {
          progress(`final ack check failed: ${errorMessage(error)}`);
        }
      }
    }
  }
  progress('stopping the cluster');
  await stopCluster(cluster, progress).catch((error: unknown) => progress(`stopping: ${errorMessage(error)}`));

  const sb = analyzeSplitBrain(probe.observations);
  const counts = probe.counts();
  const base: Omit<ChaosReport, 'passed' | 'failures' | 'summary'> = {
    kind: 'chaos',
    runId,
    seed: options.seed,
    mode: options.mode,
    faultsRequested: options.faults,
    startedAt,
    endedAt: new Date().toISOString(),
    interrupted: stopping,
    fatalError,
    versions: await versions().catch(() => ({})),
    settings: {
      writers: options.writers,
      holdMinMs: options.holdMinMs,
      holdMaxMs: options.holdMaxMs,
      convergeTimeoutMs: options.convergeTimeoutMs,
      probeIntervalMs: 100,
      dynamicConfig: { synchronous: options.mode === 'sync' ? 'quorum' : 'off' },
    },
    bootstrap,
    faults,
    workload: { writers: options.writers, acked: workload.acked.length, unknown: workload.unknown, connectFailures: workload.connectFailures, lastError: workload.lastError },
    lost: { count: lostIds.size, ids: [...lostIds].sort((a, b) => a - b).slice(0, 1000) },
    probe: { ...counts, runs: sb.runs.length },
    splitBrain: { episodes: sb.episodes.length, overlapMs: Math.round(sb.overlapMs), details: sb.episodes.slice(0, 50) },
    converged,
    workDir: layout.runDir,
  };
  const report: ChaosReport = { ...base, ...verdict(base) };
  const stamp = startedAt.replace(/[:.]/g, '-');
  const out = options.out ?? path.join(REPO_ROOT, 'chaos', 'results', `${stamp}-${options.mode}-seed${options.seed}.json`);
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(report, null, 2)}\n`);
  progress(`report: ${out}`);
  for (const failure of report.failures) progress(`FAILED: ${failure}`);
  process.stdout.write(`${report.summary}\n`);
  return report.passed ? 0 : 1;
}

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  let options: Options | 'help';
  try {
    options = parseOptions(argv);
  } catch (error) {
    process.stderr.write(`chaos: error: ${errorMessage(error)}\n${HELP}`);
    return 2;
  }
  if (options === 'help') {
    process.stdout.write(HELP);
    return 0;
  }
  return options.inner ? inner(options) : outer(options, argv);
}

quietIpServernameWarning();
main().then(
  (code) => {
    process.exitCode = code;
    // The inner process may keep client sockets (etcd, postgres) half-closed: end it explicitly.
    if (process.argv.includes('--inner')) setTimeout(() => process.exit(code), 200).unref();
  },
  (error: unknown) => {
    process.stderr.write(`chaos: error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = error instanceof UsageError ? 2 : 1;
  },
);
