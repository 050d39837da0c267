/**
 * The chaos suite's network: Linux network namespaces joined by one bridge.
 *
 *   <runId>-sw     the "switch": a bridge br0 and one veth end per host
 *   <runId>-n1..n3 one host each: an etcd member, an agent and its postgres   10.213.7.11..13
 *   <runId>-c      the chaos runner itself (workload, probe, checks)          10.213.7.100
 *
 * Invariants:
 * - Nothing is created in the root namespace: each veth pair is created inside a host namespace
 *   (`ip -n NS link add eth0 type veth peer name vX netns SW`), so the root namespace's links,
 *   addresses and routes are never touched. The /24 exists only inside these namespaces.
 * - Every namespace name starts with CHAOS_PREFIX (`pgp-chaos-`), a prefix unique to this tool:
 *   leftovers of a crashed run are found by it and only namespaces with it are ever deleted.
 * - Partitions are nftables rules in a table of our own (`inet pgpchaos`) inside the partitioned
 *   host's namespace; healing deletes that table. Loopback and the runner's address are never
 *   filtered (the probe must still see whether an isolated node accepts writes: a minority-side client).
 *   A partitioned host loses its etcd member too (peer and client traffic), as a real host would.
 */
import { runCommand } from '../../src/shared/process-runner.js';

export const CHAOS_PREFIX = 'pgp-chaos-';
export const SUBNET = '10.213.7.0/24';
export const CLIENT_ADDRESS = '10.213.7.100';
export const NODE_NAMES = ['n1', 'n2', 'n3'] as const;
export type NodeName = (typeof NODE_NAMES)[number];

export function nodeAddress(node: NodeName): string {
  return `10.213.7.${11 + NODE_NAMES.indexOf(node)}`;
}

export interface Topology {
  runId: string;
  switchNs: string;
  clientNs: string;
  nodeNs: Record<NodeName, string>;
}

export function topologyFor(runId: string): Topology {
  if (!runId.startsWith(CHAOS_PREFIX)) throw new Error(`run id ${runId} must start with ${CHAOS_PREFIX}`);
  return {
    runId,
    switchNs: `${runId}-sw`,
    clientNs: `${runId}-c`,
    nodeNs: { n1: `${runId}-n1`, n2: `${runId}-n2`, n3: `${runId}-n3` },
  };
}

export function allNamespaces(topology: Topology): string[] {
  return [topology.switchNs, topology.clientNs, ...NODE_NAMES.map((n) => topology.nodeNs[n])];
}

async function ip(args: string[]): Promise<string> {
  return (await runCommand('ip', args, { timeoutMs: 15_000 })).stdout;
}

/** Namespaces that exist now (names only). */
export async function listNamespaces(): Promise<string[]> {
  const out = await ip(['netns', 'list']);
  return out
    .split('\n')
    .map((line) => line.trim().split(/\s+/)[0] ?? '')
    .filter((name) => name.length > 0);
}

/** PIDs of the processes inside a namespace (`ip netns pids`); empty when it is gone. */
export async function namespacePids(ns: string): Promise<number[]> {
  const result = await runCommand('ip', ['netns', 'pids', ns], { check: false, timeoutMs: 15_000 });
  if (result.exitCode !== 0) return [];
  return result.stdout
    .split('\n')
    .map((s) => Number.parseInt(s.trim(), 10))
    .filter((pid) => Number.isInteger(pid) && pid > 1 && pid !== process.pid);
}

/**
 * Creates the namespaces, the bridge and the veth pairs, and sets addresses and loopback up.
 * `record` is called with each namespace right after it exists (so a failure half-way cleans it).
 */
export async function createTopology(topology: Topology, record: (ns: string) => void): Promise<void> {
  for (const ns of allNamespaces(topology)) {
    await ip(['netns', 'add', ns]);
    record(ns);
    await ip(['-n', ns, 'link', 'set', 'lo', 'up']);
  }
  const sw = topology.switchNs;
  await ip(['-n', sw, 'link', 'add', 'br0', 'type', 'bridge']);
  await ip(['-n', sw, 'link', 'set', 'br0', 'up']);
  const hosts: Array<{ ns: string; address: string; port: string }> = [
    { ns: topology.clientNs, address: CLIENT_ADDRESS, port: 'vc' },
    ...NODE_NAMES.map((n) => ({ ns: topology.nodeNs[n], address: nodeAddress(n), port: `v${n}` })),
  ];
  for (const host of hosts) {
    await ip(['-n', host.ns, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', host.port, 'netns', sw]);
    await ip(['-n', sw, 'link', 'set', host.port, 'master', 'br0']);
    await ip(['-n', sw, 'link', 'set', host.port, 'up']);
    await ip(['-n', host.ns, 'addr', 'add', `${host.address}/24`, 'dev', 'eth0']);
    await ip(['-n', host.ns, 'link', 'set', 'eth0', 'up']);
  }
}

/** Deletes a namespace of ours (the veth ends inside go with it once no process is left in it). */
export async function deleteNamespace(ns: string): Promise<void> {
  if (!ns.startsWith(CHAOS_PREFIX)) throw new Error(`refusing to delete namespace ${ns}: not ours`);
  await runCommand('ip', ['netns', 'del', ns], { check: false, timeoutMs: 15_000 });
}

export type PartitionDirection = 'both' | 'in' | 'out';

/**
 * Cuts `ns` (address `own`) from every other address of the /24 except the runner's:
 * `in` drops what arrives, `out` drops what leaves, `both` does both.
 */
export async function partition(ns: string, direction: PartitionDirection): Promise<void> {
  const rules = [
    'add table inet pgpchaos',
    'add chain inet pgpchaos input { type filter hook input priority 0; policy accept; }',
    'add chain inet pgpchaos output { type filter hook output priority 0; policy accept; }',
  ];
  if (direction === 'both' || direction === 'in') {
    rules.push(`add rule inet pgpchaos input iifname "lo" accept`);
    rules.push(`add rule inet pgpchaos input ip saddr ${CLIENT_ADDRESS} accept`);
    rules.push(`add rule inet pgpchaos input ip saddr ${SUBNET} drop`);
  }
  if (direction === 'both' || direction === 'out') {
    rules.push(`add rule inet pgpchaos output oifname "lo" accept`);
    rules.push(`add rule inet pgpchaos output ip daddr ${CLIENT_ADDRESS} accept`);
    rules.push(`add rule inet pgpchaos output ip daddr ${SUBNET} drop`);
  }
  await runCommand('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], { input: `${rules.join('\n')}\n`, timeoutMs: 15_000 });
}

export async function healPartition(ns: string): Promise<void> {
  const result = await runCommand('ip', ['netns', 'exec', ns, 'nft', 'delete', 'table', 'inet', 'pgpchaos'], { check: false, timeoutMs: 15_000 });
  if (result.exitCode !== 0 && !/No such file or directory|does not exist/i.test(result.stderr)) {
    throw new Error(`nft delete table in ${ns} failed: ${result.stderr.trim()}`);
  }
}
