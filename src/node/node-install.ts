/**
 * `pgpilot node install --bundle FILE`: puts a node under systemd. Copies the bundle to
 * `/etc/pgpilot/<cluster>-<node>.bundle` (0600; with `--unit-dir DIR`, into DIR, so tests never
 * write /etc), creates the data directory (the unit's only writable path), writes
 * `pgpilot@<cluster>-<node>.service` (src/node/systemd-unit.ts) into /etc/systemd/system (or DIR),
 * then `systemctl daemon-reload` and `systemctl enable --now` when systemd runs this machine and
 * the unit went to the system unit directory; otherwise it says how to start it.
 *
 * Invariants: the bundle is validated before anything is written; every file is written
 * atomically (temp + rename) with its final mode; nothing is started with --no-start.
 */
import { existsSync } from 'node:fs';
import { chmod, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseNodeBundle } from '../multihost/bundle.js';
import { PgpilotError, errorMessage } from '../shared/errors.js';
import { makeDirectories } from '../shared/fs-safe.js';
import { runCommand } from '../shared/process-runner.js';
import { defaultNodeDataDir } from './node-layout.js';
import { AGENT_STOP_GRACE_MS, ETCD_STOP_GRACE_MS } from './node-run.js';
import { nodeUnitName, renderNodeUnit } from './systemd-unit.js';

export const SYSTEM_UNIT_DIR = '/etc/systemd/system';
export const SYSTEM_BUNDLE_DIR = '/etc/pgpilot';

export interface InstallOptions {
  bundleFile: string;
  dataDir?: string;
  unitDir?: string;
  noStart: boolean;
  /** The node binary and CLI entry the unit runs. */
  nodeBinary: string;
  cliEntry: string;
}

export interface InstallResult {
  unitName: string;
  unitFile: string;
  bundleFile: string;
  dataDir: string;
  /** `started`: enabled and started; `written`: files only (why in `reason`). */
  outcome: 'started' | 'written';
  reason: string | null;
  /** The commands that start it by hand (when not started). */
  startCommands: string[];
}

async function writeAtomic(file: string, content: string, mode: number): Promise<void> {
  const temp = `${file}.tmp-${process.pid}`;
  await writeFile(temp, content, { mode });
  await chmod(temp, mode);
  await rename(temp, file);
}

/** A directory store's root (the unit must let the node write there); null for S3 or none. */
export function directoryStoreRoot(url: string | undefined): string | null {
  if (url === undefined) return null;
  if (url.startsWith('/')) return url;
  if (url.startsWith('file://')) return decodeURIComponent(url.slice('file://'.length));
  return null;
}

export function systemdRuns(): boolean {
  return existsSync('/run/systemd/system');
}

export async function installNode(options: InstallOptions): Promise<InstallResult> {
  let text: string;
  try {
    text = await readFile(options.bundleFile, 'utf8');
  } catch (error) {
    throw new PgpilotError('BUNDLE_INVALID', `cannot read the node bundle ${options.bundleFile}: ${(error as NodeJS.ErrnoException).code ?? errorMessage(error)}`, {
      hint: 'check the path; cluster init writes DIR/<cluster>-<node>.bundle',
      exitCode: 2,
      cause: error,
    });
  }
  const bundle = parseNodeBundle(text, options.bundleFile);
  const unitDir = path.resolve(options.unitDir ?? SYSTEM_UNIT_DIR);
  const bundleDir = options.unitDir === undefined ? SYSTEM_BUNDLE_DIR : unitDir;
  const dataDir = path.resolve(options.dataDir ?? defaultNodeDataDir(bundle.cluster, bundle.node));
  const unitName = nodeUnitName(bundle.cluster, bundle.node);
  const unitFile = path.join(unitDir, unitName);
  const installedBundle = path.join(bundleDir, `${bundle.cluster}-${bundle.node}.bundle`);
  const storeRoot = directoryStoreRoot(bundle.backupStore?.url);
  try {
    await makeDirectories(bundleDir, 0o755);
    await makeDirectories(unitDir, 0o755);
    if (path.resolve(options.bundleFile) !== installedBundle) await writeAtomic(installedBundle, text, 0o600);
    else await chmod(installedBundle, 0o600);
    // ProtectSystem=strict: the data directory must exist for ReadWritePaths= to apply.
    await makeDirectories(dataDir, 0o755);
    const unit = renderNodeUnit({
      cluster: bundle.cluster,
      node: bundle.node,
      nodeBinary: options.nodeBinary,
      cliEntry: path.resolve(options.cliEntry),
      bundleFile: installedBundle,
      dataDir,
      ...(storeRoot === null ? {} : { extraWritablePaths: [storeRoot] }),
      agentStopGraceMs: AGENT_STOP_GRACE_MS,
      etcdStopGraceMs: ETCD_STOP_GRACE_MS,
    });
    await writeAtomic(unitFile, unit, 0o644);
  } catch (error) {
    if (error instanceof PgpilotError) throw error;
    throw new PgpilotError('COMMAND_FAILED', `cannot install the unit: ${(error as NodeJS.ErrnoException).code ?? errorMessage(error)}`, {
      hint: options.unitDir === undefined ? 'run node install as root (it writes /etc/systemd/system and /etc/pgpilot)' : 'check that --unit-dir and --data-dir are writable',
      exitCode: 2,
      cause: error,
    });
  }
  const startCommands = ['systemctl daemon-reload', `systemctl enable --now ${unitName}`];
  const base = { unitName, unitFile, bundleFile: installedBundle, dataDir, startCommands };
  if (options.noStart) return { ...base, outcome: 'written', reason: '--no-start' };
  if (options.unitDir !== undefined && unitDir !== SYSTEM_UNIT_DIR) return { ...base, outcome: 'written', reason: `the unit is in ${unitDir}, not in ${SYSTEM_UNIT_DIR}` };
  if (!systemdRuns()) return { ...base, outcome: 'written', reason: 'systemd does not run this machine (no /run/systemd/system)' };
  await runCommand('systemctl', ['daemon-reload'], { timeoutMs: 60_000 });
  await runCommand('systemctl', ['enable', '--now', unitName], { timeoutMs: 120_000 });
  return { ...base, outcome: 'started', reason: null, startCommands: [] };
}
