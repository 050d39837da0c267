/**
 * Point releases. `pgpilot image show NAME [--bin-dir DIR] [--json]`: per member, the PostgreSQL
 * version it runs (`server_version`, and since when) and the version installed in its configured
 * bin dir (`postgres --version`), plus that of `--bin-dir`. `pgpilot image update NAME
 * [--bin-dir DIR] [--yes]`: a rolling restart onto the binaries of DIR (default: the configured
 * one, e.g. after `apt-get upgrade postgresql-15`): replicas first, one at a time, each waited for
 * until it streams again; then a planned switchover; then the former leader. A different major
 * version is refused (that needs pg_upgrade, not a restart).
 *
 * How the new binaries are picked up: the agent reads `binDir` from its agent.json when it starts
 * and uses it for every postgres program; so the bin dir is recorded in cluster.json and every
 * agent.json first, then each node's agent is restarted by PID (postgres, its child, stops cleanly
 * with it and starts again from the new binaries). Events `image-update-started`,
 * `image-update-completed` (or `image-update-failed`) record the procedure.
 */
import { refuseRemote } from '../../cluster/require-local.js';
import { clusterCaPem } from '../../providers/local/local-tls.js';
import { confirmYes } from '../confirm.js';
import { access, constants } from 'node:fs/promises';
import path from 'node:path';
import { clusterKeys } from '../../dcs/keys.js';
import { recordEvent, type EventKind } from '../../state/events.js';
import { pgBinary } from '../../postgres/bin-dir.js';
import { connectLocal } from '../../postgres/queries.js';
import { clusterStatus, openClusterDcs, restartNodeAgent, validateClusterName, type ProviderDeps } from '../../providers/local/local-provider.js';
import type { ClusterStatus, MemberStatus } from '../../operations/cluster-status.js';
import { readAgentConfig, readManifest, readSecrets, writeAgentConfig, writeManifest } from '../../providers/local/cluster-store.js';
import type { ClusterManifest } from '../../config/schema.js';
import { PgpilotError, errorMessage } from '../../shared/errors.js';
import { runCommand } from '../../shared/process-runner.js';
import { printJson, renderTable, type Output } from '../output.js';
import * as switchover from './switchover.js';

export interface PostgresVersion {
  /** `15.14` */
  version: string;
  major: number;
}

/** `postgres (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)` -> 15.14 / 15 (pure); null when unrecognised. */
export function parsePostgresVersion(text: string): PostgresVersion | null {
  const match = /\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?/.exec(text);
  if (match?.[1] === undefined) return null;
  const major = Number.parseInt(match[1], 10);
  return { version: match[2] === undefined ? String(major) : `${major}.${match[2]}`, major };
}

/** `server_version_num` 150014 -> 15.14 / 15 (pure). */
export function versionFromNum(num: number): PostgresVersion {
  const major = Math.floor(num / 10000);
  return { version: `${major}.${num % 10000}`, major };
}

/** The version of `<binDir>/postgres`, or null when it cannot be run. */
export async function installedVersion(binDir: string): Promise<PostgresVersion | null> {
  const binary = pgBinary(binDir, 'postgres');
  try {
    await access(binary, constants.X_OK);
    const result = await runCommand(binary, ['--version'], { timeoutMs: 10_000, check: false });
    return result.exitCode === 0 ? parsePostgresVersion(result.stdout) : null;
  } catch {
    return null;
  }
}

export interface MemberImage {
  name: string;
  role: MemberStatus['role'];
  binDir: string;
  installed: string | null;
  running: string | null;
  /** When the running postmaster started (ISO 8601), null when not reachable. */
  runningSince: string | null;
  /** The running version differs from the installed one, or the node's bin dir from the cluster's: a restart would change it. */
  restartPending: boolean;
}

export interface ImageReport {
  cluster: string;
  binDir: string;
  installed: string | null;
  members: MemberImage[];
  /** With --bin-dir: that directory and its version. */
  candidate?: { binDir: string; installed: string | null };
}

async function runningVersion(member: MemberStatus, password: string, user: string, ca: string): Promise<{ version: PostgresVersion; since: string } | null> {
  if (member.role !== 'primary' && member.role !== 'replica') return null;
  try {
    const client = await connectLocal({ ca, host: member.host, port: member.port, user, password, connectTimeoutMs: 3_000, applicationName: 'pgpilot-image' });
    try {
      const result = await client.query<{ num: string; since: Date }>("SELECT current_setting('server_version_num') AS num, pg_postmaster_start_time() AS since");
      const row = result.rows[0];
      if (row === undefined) return null;
      return { version: versionFromNum(Number.parseInt(row.num, 10)), since: new Date(row.since).toISOString() };
    } finally {
      await client.end().catch(() => undefined);
    }
  } catch {
    return null;
  }
}

export async function imageReport(home: string, name: string, candidateBinDir?: string): Promise<{ report: ImageReport; status: ClusterStatus; manifest: ClusterManifest }> {
  const manifest = await readManifest(home, validateClusterName(name));
  const secrets = readSecrets(manifest.secretsFile);
  const status = await clusterStatus(home, manifest.name);
  const clusterInstalled = await installedVersion(manifest.binDir);
  const members: MemberImage[] = [];
  for (const node of manifest.nodes) {
    const member = status.members.find((m) => m.name === node.name);
    let binDir = manifest.binDir;
    try {
      binDir = readAgentConfig(node.configFile).binDir;
    } catch {
      // an unreadable agent.json: show the cluster's bin dir
    }
    const installed = binDir === manifest.binDir ? clusterInstalled : await installedVersion(binDir);
    const running = member === undefined ? null : await runningVersion(member, secrets.superuser.password, secrets.superuser.name, clusterCaPem(manifest));
    members.push({
      name: node.name,
      role: member?.role ?? 'unknown',
      binDir,
      installed: installed?.version ?? null,
      running: running?.version.version ?? null,
      runningSince: running?.since ?? null,
      restartPending: binDir !== manifest.binDir || (running !== null && installed !== null && running.version.version !== installed.version),
    });
  }
  const report: ImageReport = { cluster: manifest.name, binDir: manifest.binDir, installed: clusterInstalled?.version ?? null, members };
  if (candidateBinDir !== undefined) {
    const dir = path.resolve(candidateBinDir);
    report.candidate = { binDir: dir, installed: (await installedVersion(dir))?.version ?? null };
  }
  return { report, status, manifest };
}

export function renderImageReport(report: ImageReport): string {
  const lines = [`cluster ${report.cluster}: bin dir ${report.binDir} (PostgreSQL ${report.installed ?? 'not found'})`, ''];
  lines.push(
    renderTable(
      ['NODE', 'ROLE', 'RUNNING', 'SINCE', 'INSTALLED', 'BIN DIR', 'RESTART PENDING'],
      report.members.map((m) => [m.name, m.role, m.running ?? '-', m.runningSince ?? '-', m.installed ?? 'not found', m.binDir, m.restartPending ? 'yes' : 'no']),
    ),
  );
  if (report.candidate !== undefined) lines.push('', `--bin-dir ${report.candidate.binDir}: PostgreSQL ${report.candidate.installed ?? 'not found'}`);
  return lines.join('\n');
}

export async function runShow(options: { home: string; name: string; context?: string | undefined; binDir?: string; json: boolean }, output: Output): Promise<number> {
  await refuseRemote(options, 'pgpilot image show');
  const { report } = await imageReport(options.home, options.name, options.binDir);
  if (options.json) printJson(output, report);
  else output.out(renderImageReport(report));
  return 0;
}

export interface ImageUpdateOptions {
  home: string;
  name: string;
  context?: string | undefined;
  binDir?: string;
  yes: boolean;
  json: boolean;
  timeoutSeconds: number;
}

/** Refuses a target whose major version differs from what the members run (pure). */
export function checkSameMajor(target: PostgresVersion, running: ReadonlyArray<{ name: string; major: number }>, targetDir: string): void {
  const other = running.find((r) => r.major !== target.major);
  if (other !== undefined) {
    throw new PgpilotError('MAJOR_VERSION_MISMATCH', `${targetDir} holds PostgreSQL ${target.version} (major ${target.major}) but ${other.name} runs major ${other.major}: pg_upgrade is needed for a major upgrade`, {
      hint: 'image update only moves between point releases of one major version; point --bin-dir at binaries of the running major version',
      exitCode: 2,
    });
  }
}

async function event(manifest: ClusterManifest, kind: EventKind, message: string, deps: ProviderDeps): Promise<void> {
  const { dcs } = await openClusterDcs(manifest);
  try {
    await recordEvent(dcs, clusterKeys(manifest.name), { at: new Date(deps.clock.nowMs()).toISOString(), kind, node: '-', message, timeline: null });
  } finally {
    await dcs.close().catch(() => undefined);
  }
}

/** Records `binDir` in cluster.json and in every agent.json (read afresh, other settings kept). */
async function recordBinDir(manifest: ClusterManifest, binDir: string): Promise<ClusterManifest> {
  for (const node of manifest.nodes) await writeAgentConfig(node.configFile, { ...readAgentConfig(node.configFile), binDir });
  const next = { ...manifest, binDir };
  await writeManifest(next);
  return next;
}

/** Restarts one node's agent and waits until it runs again in `role` (a replica: streaming) under the new agent. */
async function restartAndWait(options: ImageUpdateOptions, deps: ProviderDeps, node: string, role: 'primary' | 'replica'): Promise<ClusterStatus> {
  deps.progress(`${node}: restarting its agent onto the new binaries (${role})`);
  const pid = await restartNodeAgent(options.home, options.name, node, deps);
  const deadlineMs = deps.clock.nowMs() + options.timeoutSeconds * 1000;
  for (;;) {
    const status = await clusterStatus(options.home, options.name);
    const member = status.members.find((m) => m.name === node);
    const back = member !== undefined && member.pid === pid && member.postgresPid !== null && (role === 'primary' ? member.role === 'primary' && member.name === status.leader : member.role === 'replica' && member.streaming);
    if (back) {
      deps.progress(`${node}: back (${member.role}${member.streaming ? ', streaming' : ''})`);
      return status;
    }
    if (member !== undefined && member.pid === null) {
      throw new PgpilotError('CLUSTER_START_FAILED', `the agent of ${node} exited after the restart`, { hint: `read ${node}'s agent.log and postgres.log; pgpilot events ${options.name}` });
    }
    if (deps.clock.nowMs() >= deadlineMs) {
      throw new PgpilotError('TIMEOUT', `${node} did not come back within ${options.timeoutSeconds} s`, {
        hint: `read ${node}'s postgres.log and agent.log; pgpilot events ${options.name}`,
        retryable: true,
      });
    }
    await deps.clock.sleep(250);
  }
}

export async function runUpdate(options: ImageUpdateOptions, deps: ProviderDeps, output: Output): Promise<number> {
  await refuseRemote(options, 'pgpilot image update');
  const name = validateClusterName(options.name);
  const before = await imageReport(options.home, name);
  const manifest = before.manifest;
  const targetDir = path.resolve(options.binDir ?? manifest.binDir);
  const target = await installedVersion(targetDir);
  if (target === null) {
    throw new PgpilotError('MAJOR_VERSION_MISMATCH', `no runnable postgres in ${targetDir} (postgres --version failed)`, {
      hint: 'point --bin-dir at a PostgreSQL bin directory (e.g. /usr/lib/postgresql/15/bin)',
      exitCode: 2,
    });
  }
  const status = before.status;
  if (status.leader === null || !status.members.some((m) => m.name === status.leader && m.role === 'primary')) {
    throw new PgpilotError('CLUSTER_NOT_RUNNING', `cluster ${name} has no running leader`, { hint: `start it with: pgpilot start ${name}` });
  }
  const notRunning = status.members.filter((m) => m.role !== 'primary' && m.role !== 'replica').map((m) => m.name);
  if (notRunning.length > 0) {
    throw new PgpilotError('CLUSTER_NOT_RUNNING', `${notRunning.join(', ')} of ${name} ${notRunning.length === 1 ? 'is' : 'are'} not running; a rolling update needs every member`, {
      hint: `start it with: pgpilot start ${name}, or remove the node with: pgpilot scale count ${name} N --node ${notRunning.join(',')}`,
    });
  }
  const running = before.report.members.flatMap((m) => (m.running === null ? [] : [{ name: m.name, major: Number.parseInt(m.running.split('.')[0] ?? '0', 10) }]));
  checkSameMajor(target, running, targetDir);
  const from = `${manifest.binDir} (${before.report.installed ?? '?'}; running ${[...new Set(before.report.members.map((m) => m.running ?? '?'))].join(', ')})`;
  const to = `${targetDir} (${target.version})`;
  if (!options.yes && !(await confirmYes(`This restarts every node of ${name} onto ${to}, replicas first, with one switchover.`))) {
    throw new PgpilotError('CONFIRMATION_REQUIRED', `refusing to restart ${name} onto new binaries without confirmation`, {
      hint: `run: pgpilot image update ${name}${options.binDir === undefined ? '' : ` --bin-dir ${targetDir}`} --yes`,
      exitCode: 2,
    });
  }
  const oldLeader = status.leader;
  await event(manifest, 'image-update-started', `rolling update from ${from} to ${to}`, deps);
  deps.progress(`image update of ${name}: ${from} -> ${to}`);
  try {
    await recordBinDir(manifest, targetDir);
    const replicas = status.members.filter((m) => m.role === 'replica').map((m) => m.name);
    for (const replica of replicas) await restartAndWait(options, deps, replica, 'replica');
    if (replicas.length === 0) {
      deps.progress('single node: the leader restarts in place (a short outage)');
      await restartAndWait(options, deps, oldLeader, 'primary');
    } else {
      await switchover.run({ home: options.home, name, kind: 'switchover', yes: false, json: false, timeoutSeconds: options.timeoutSeconds }, deps, {
        out: (line) => deps.progress(line),
        err: (line) => deps.progress(line),
      });
      await restartAndWait(options, deps, oldLeader, 'replica');
    }
  } catch (error) {
    await event(manifest, 'image-update-failed', `rolling update to ${to} stopped: ${errorMessage(error)}`, deps).catch(() => undefined);
    throw error;
  }
  const after = await imageReport(options.home, name);
  const stale = after.report.members.filter((m) => m.running !== target.version).map((m) => `${m.name} (${m.running ?? 'not running'})`);
  if (stale.length > 0) {
    await event(manifest, 'image-update-failed', `after the rolling update ${stale.join(', ')} do not run ${target.version}`, deps);
    throw new PgpilotError('COMMAND_FAILED', `after the rolling update ${stale.join(', ')} do not run PostgreSQL ${target.version}`, { hint: `pgpilot image show ${name}` });
  }
  await event(manifest, 'image-update-completed', `every member runs ${target.version} from ${targetDir}; leader ${after.status.leader ?? '?'}`, deps);
  if (options.json) printJson(output, { cluster: name, binDir: targetDir, version: target.version, leaderBefore: oldLeader, leaderAfter: after.status.leader, members: after.report.members });
  else output.out(`image update of ${name} done: every member runs PostgreSQL ${target.version} from ${targetDir}; ${after.status.leader ?? 'no'} leads (was ${oldLeader})`);
  return 0;
}
