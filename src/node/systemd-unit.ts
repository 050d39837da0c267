/**
 * The systemd unit of a node (`pgpilot node install`), rendered as text (pure): its ExecStart is
 * exactly `pgpilot node run --bundle FILE --data-dir DIR`.
 *
 * Invariants:
 * - `KillMode=mixed`: `systemctl stop` sends SIGTERM to the supervisor only, which stops the agent
 *   (postgres cleanly) and then the etcd member; whatever is left after the supervisor exits, or
 *   after `TimeoutStopSec`, gets SIGKILL. `TimeoutStopSec` is longer than the agent's and the etcd
 *   member's stop graces together, so a clean stop is never cut short.
 * - Hardening leaves exactly what the node needs: switching to the postgres OS user with setpriv
 *   (CAP_SETUID, CAP_SETGID), handing files to it (CAP_CHOWN, CAP_FOWNER), reading its files and
 *   signalling its processes (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_KILL), raising the control
 *   plane's priority (CAP_SYS_NICE); the file system is read-only except the data directory (and a
 *   directory backup store when the bundle has one).
 * - Every path is quoted for systemd (spaces, quotes, `%` specifiers, `$` variables).
 */
import path from 'node:path';

export interface NodeUnitInput {
  cluster: string;
  node: string;
  /** The node binary and the absolute CLI entry (dist/src/bin/cli.js). */
  nodeBinary: string;
  cliEntry: string;
  bundleFile: string;
  dataDir: string;
  /** Further writable directories (a directory backup store). */
  extraWritablePaths?: readonly string[];
  /** Stop graces of the children, to size TimeoutStopSec. */
  agentStopGraceMs: number;
  etcdStopGraceMs: number;
}

export const UNIT_RESTART_SEC = 5;
export const UNIT_LIMIT_NOFILE = 65_536;
export const UNIT_CAPABILITIES = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_DAC_READ_SEARCH',
  'CAP_FOWNER',
  'CAP_KILL',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SYS_NICE',
] as const;

/** `pgpilot@<cluster>-<node>.service`. */
export function nodeUnitName(cluster: string, node: string): string {
  return `pgpilot@${cluster}-${node}.service`;
}

/** One ExecStart word: quoted when needed; `%` and `$` escaped (systemd.service "Command lines"). */
export function systemdWord(word: string): string {
  const escaped = word.replace(/%/g, '%%').replace(/\$/g, '$$$$');
  if (/^[A-Za-z0-9_@%$+=:,./-]+$/.test(escaped) && escaped.length > 0) return escaped;
  return `"${escaped.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

/** A path in a path-list setting (ReadWritePaths=): spaces must be quoted too; `%` escaped. */
function systemdPath(file: string): string {
  const escaped = file.replace(/%/g, '%%');
  return /\s|"/.test(escaped) ? `"${escaped.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"` : escaped;
}

export function renderNodeUnit(input: NodeUnitInput): string {
  const exec = [input.nodeBinary, input.cliEntry, 'node', 'run', '--bundle', input.bundleFile, '--data-dir', input.dataDir].map(systemdWord).join(' ');
  const stopSec = Math.ceil((input.agentStopGraceMs + input.etcdStopGraceMs) / 1000) + 20;
  const writable = [...new Set([path.resolve(input.dataDir), ...(input.extraWritablePaths ?? []).map((p) => path.resolve(p))])].map(systemdPath).join(' ');
  const lines = [
    '# Written by pgpilot node install. Rewrite it with pgpilot node install rather than editing it.',
    '[Unit]',
    `Description=pgpilot node ${input.node} of cluster ${input.cluster} (etcd member, HA agent, PostgreSQL)`,
    'Wants=network-online.target',
    'After=network-online.target',
    // The supervisor restarts crashed children itself; systemd restarts the supervisor, forever.
    'StartLimitIntervalSec=0',
    '',
    '[Service]',
    'Type=simple',
    `ExecStart=${exec}`,
    'Restart=always',
    `RestartSec=${UNIT_RESTART_SEC}`,
    'KillMode=mixed',
    'KillSignal=SIGTERM',
    `TimeoutStopSec=${stopSec}`,
    `LimitNOFILE=${UNIT_LIMIT_NOFILE}`,
    `SyslogIdentifier=pgpilot-${input.cluster}-${input.node}`,
    'WorkingDirectory=/',
    // Hardening that still lets setpriv switch to the postgres OS user and the control plane raise its priority.
    'ProtectSystem=strict',
    `ReadWritePaths=${writable}`,
    'ProtectHome=yes',
    'PrivateTmp=yes',
    'PrivateDevices=yes',
    'ProtectKernelTunables=yes',
    'ProtectKernelModules=yes',
    'ProtectKernelLogs=yes',
    'ProtectControlGroups=yes',
    'ProtectClock=yes',
    'ProtectHostname=yes',
    'RestrictSUIDSGID=yes',
    'RestrictRealtime=yes',
    'RestrictNamespaces=yes',
    'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK',
    'LockPersonality=yes',
    'NoNewPrivileges=yes',
    'SystemCallArchitectures=native',
    `CapabilityBoundingSet=${UNIT_CAPABILITIES.join(' ')}`,
    '',
    '[Install]',
    'WantedBy=multi-user.target',
    '',
  ];
  return lines.join('\n');
}
