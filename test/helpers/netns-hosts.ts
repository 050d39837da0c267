/**
 * Hosts for multi-host tests: Linux network namespaces joined by one bridge, the way the chaos
 * suite builds its network (chaos/lib/topology.ts), for any number of hosts.
 *
 *   <runId>-sw    the "switch": bridge br0 and one veth end per host
 *   <runId>-hN    host N, address <subnet>.(10+N)
 *   <runId>-c     the operator / client machine, <subnet>.100
 *
 * Invariants:
 * - Nothing is created in the root namespace: each veth pair is created inside its host namespace
 *   with its peer moved into the switch, so the root namespace's links, addresses and routes are
 *   never touched; the subnet exists only inside these namespaces.
 * - Every namespace name starts with NETNS_TEST_PREFIX, unique to these tests: only namespaces
 *   with it are ever deleted, and a leftover of a crashed run is found by it.
 * - Processes are stopped only by PID: those the test recorded, and those still inside one of the
 *   run's own namespaces (`ip netns pids`: nothing else can be in a namespace this run created).
 * - Partitions are nftables rules in a table of our own (`inet pgpmh`) inside the partitioned
 *   host's namespace; healing deletes that table. Loopback and the client's address are never
 *   filtered (the probe must still see whether an isolated node accepts writes).
 */
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { runCommand } from '../../src/shared/process-runner.js';
import { listNamespaces, namespacePids } from '../../chaos/lib/topology.js';

export { namespacePids };

export const NETNS_TEST_PREFIX = 'pgp-mh-';

export interface NetnsHost {
  name: string;
  ns: string;
  address: string;
}

export interface HostsTopology {
  runId: string;
  subnet: string;
  switchNs: string;
  client: NetnsHost;
  hosts: NetnsHost[];
}

/** Why these tests cannot run here (not root, no `ip netns`), or false. */
export function netnsSkipReason(): string | false {
  if (process.getuid?.() !== 0) return 'multi-host tests need root (network namespaces, nftables)';
  const probe = `${NETNS_TEST_PREFIX}probe${process.pid}`;
  const add = spawnSync('ip', ['netns', 'add', probe], { encoding: 'utf8' });
  if (add.error !== undefined || add.status !== 0) return `ip netns is not permitted here: ${add.error?.message ?? add.stderr.trim()}`;
  spawnSync('ip', ['netns', 'del', probe]);
  const nft = spawnSync('nft', ['--version'], { encoding: 'utf8' });
  if (nft.error !== undefined || nft.status !== 0) return 'nft (nftables) is missing (run scripts/setup.sh)';
  return false;
}

/** `prefix` is the first three octets of the /24, e.g. `10.214.8`. */
export function hostsTopology(runId: string, hostNames: readonly string[], prefix: string): HostsTopology {
  if (!runId.startsWith(NETNS_TEST_PREFIX)) throw new Error(`run id ${runId} must start with ${NETNS_TEST_PREFIX}`);
  if (hostNames.length > 80) throw new Error('at most 80 hosts');
  return {
    runId,
    subnet: `${prefix}.0/24`,
    switchNs: `${runId}-sw`,
    client: { name: 'client', ns: `${runId}-c`, address: `${prefix}.100` },
    hosts: hostNames.map((name, i) => ({ name, ns: `${runId}-h${i + 1}`, address: `${prefix}.${11 + i}` })),
  };
}

async function ip(args: string[]): Promise<void> {
  await runCommand('ip', args, { timeoutMs: 15_000 });
}

/** Creates the switch and the client namespace; `record` gets each namespace right after it exists. */
export async function createSwitchAndClient(topology: HostsTopology, record: (ns: string) => void): Promise<void> {
  await ip(['netns', 'add', topology.switchNs]);
  record(topology.switchNs);
  await ip(['-n', topology.switchNs, 'link', 'set', 'lo', 'up']);
  await ip(['-n', topology.switchNs, 'link', 'add', 'br0', 'type', 'bridge']);
  await ip(['-n', topology.switchNs, 'link', 'set', 'br0', 'up']);
  await plugHost(topology, topology.client, 'vc', record);
}

/** Creates one host namespace and plugs it into the switch. */
export async function createHost(topology: HostsTopology, host: NetnsHost, record: (ns: string) => void): Promise<void> {
  await plugHost(topology, host, `v${host.ns.slice(host.ns.lastIndexOf('-') + 1)}`, record);
}

async function plugHost(topology: HostsTopology, host: NetnsHost, port: string, record: (ns: string) => void): Promise<void> {
  await ip(['netns', 'add', host.ns]);
  record(host.ns);
  await ip(['-n', host.ns, 'link', 'set', 'lo', 'up']);
  await ip(['-n', host.ns, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', port, 'netns', topology.switchNs]);
  await ip(['-n', topology.switchNs, 'link', 'set', port, 'master', 'br0']);
  await ip(['-n', topology.switchNs, 'link', 'set', port, 'up']);
  await ip(['-n', host.ns, 'addr', 'add', `${host.address}/24`, 'dev', 'eth0']);
  await ip(['-n', host.ns, 'link', 'set', 'eth0', 'up']);
}

/** The host's network link up or down (a host that lost power is also gone from the network). */
export async function setHostLink(host: NetnsHost, state: 'up' | 'down'): Promise<void> {
  await ip(['-n', host.ns, 'link', 'set', 'eth0', state]);
}

/** SIGKILLs every process inside `ns` (a whole-host loss), until none is left (bounded: 10 s). */
export async function killEverythingIn(ns: string): Promise<number> {
  if (!ns.startsWith(NETNS_TEST_PREFIX)) throw new Error(`refusing to kill processes in ${ns}: not ours`);
  let killed = 0;
  for (let round = 0; round < 40; round += 1) {
    const pids = await namespacePids(ns);
    if (pids.length === 0) return killed;
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
        killed += 1;
      } catch {
        // gone meanwhile
      }
    }
    await sleep(250);
  }
  throw new Error(`processes in ${ns} did not go away within 10 s`);
}

/** Cuts `host` off from every other address of the subnet except the client's (both directions). */
export async function partitionHost(topology: HostsTopology, host: NetnsHost): Promise<void> {
  const rules = [
    'add table inet pgpmh',
    'add chain inet pgpmh input { type filter hook input priority 0; policy accept; }',
    'add chain inet pgpmh output { type filter hook output priority 0; policy accept; }',
    'add rule inet pgpmh input iifname "lo" accept',
    `add rule inet pgpmh input ip saddr ${topology.client.address} accept`,
    `add rule inet pgpmh input ip saddr ${topology.subnet} drop`,
    'add rule inet pgpmh output oifname "lo" accept',
    `add rule inet pgpmh output ip daddr ${topology.client.address} accept`,
    `add rule inet pgpmh output ip daddr ${topology.subnet} drop`,
  ];
  await runCommand('ip', ['netns', 'exec', host.ns, 'nft', '-f', '-'], { input: `${rules.join('\n')}\n`, timeoutMs: 15_000 });
}

export async function healHost(host: NetnsHost): Promise<void> {
  const result = await runCommand('ip', ['netns', 'exec', host.ns, 'nft', 'delete', 'table', 'inet', 'pgpmh'], { check: false, timeoutMs: 15_000 });
  if (result.exitCode !== 0 && !/No such file or directory|does not exist/i.test(result.stderr)) throw new Error(`nft delete table in ${host.ns} failed: ${result.stderr.trim()}`);
}

/**
 * Starts `command args` inside `ns`, detached, output appended to `outFile`. `ip netns exec`
 * execs in place, so the PID returned is the command's own.
 */
export function spawnInNamespace(ns: string, command: string, args: readonly string[], outFile: string, env: NodeJS.ProcessEnv = process.env): number {
  const fd = openSync(outFile, 'a', 0o600);
  try {
    const child = spawn('ip', ['netns', 'exec', ns, command, ...args], { detached: true, stdio: ['ignore', fd, fd], env });
    child.unref();
    if (child.pid === undefined) throw new Error(`could not start ${command} in ${ns}`);
    return child.pid;
  } finally {
    closeSync(fd);
  }
}

/** Runs a command inside `ns` to completion (bounded), returning its output and exit code. */
export async function runInNamespace(
  ns: string,
  command: string,
  args: readonly string[],
  options: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const result = await runCommand('ip', ['netns', 'exec', ns, command, ...args], { check: false, timeoutMs: options.timeoutMs ?? 120_000, ...(options.env === undefined ? {} : { env: options.env }) });
  return { exitCode: result.exitCode ?? 128, stdout: result.stdout, stderr: result.stderr };
}

/** Kills every process left in the run's namespaces, then deletes them. Never throws. */
export async function destroyTopology(runId: string, log: (line: string) => void): Promise<void> {
  if (!runId.startsWith(NETNS_TEST_PREFIX)) throw new Error(`refusing to clean ${runId}: not a multi-host test run`);
  const namespaces = (await listNamespaces().catch(() => [] as string[])).filter((ns) => ns.startsWith(`${runId}-`));
  for (const ns of namespaces) await killEverythingIn(ns).catch((error: unknown) => log(`cleanup: ${ns}: ${String(error)}`));
  for (const ns of namespaces) {
    const result = await runCommand('ip', ['netns', 'del', ns], { check: false, timeoutMs: 15_000 });
    if (result.exitCode !== 0) log(`cleanup: ip netns del ${ns}: ${result.stderr.trim()}`);
  }
}

/**
 * Run ids of earlier runs whose test process is gone (a crash, SIGKILL): their namespaces are found
 * by the prefix and the run id carries the PID of the process that made them (`<prefix><pid base 36>`).
 */
export async function leftoverRuns(): Promise<string[]> {
  const ids = new Set<string>();
  for (const ns of await listNamespaces()) {
    if (!ns.startsWith(NETNS_TEST_PREFIX)) continue;
    const runId = ns.slice(0, ns.lastIndexOf('-'));
    const pid = Number.parseInt(runId.slice(NETNS_TEST_PREFIX.length), 36);
    if (!Number.isInteger(pid) || pid <= 1) continue;
    let alive = true;
    try {
      process.kill(pid, 0);
    } catch {
      alive = false;
    }
    if (!alive || pid === process.pid) ids.add(runId);
  }
  return [...ids];
}

