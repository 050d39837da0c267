/**
 * The fault catalogue. A plan is drawn up front from the seeded PRNG (kind, target rule, hold
 * time, partition direction), so one seed always gives the same sequence; which node the rule
 * names (the leader, or the first/second replica by name) is resolved when the fault is applied,
 * since elections depend on timing. Each fault is applied, held for its hold time, then healed:
 *
 *   kill-agent       SIGKILL the agent (postgres dies with it: parent-death signal); heal: start it again
 *   kill-postmaster  SIGKILL the postmaster; the agent must restart or replace it; heal: nothing to do
 *   stop-agent       SIGSTOP the agent (postgres keeps running: the watchdog must fence a leader); heal: SIGCONT
 *   partition        nftables in the host's namespace: both directions, or only incoming, or only outgoing;
 *                    the host's etcd member is cut off with it; heal: delete the rules
 *   etcd-member-restart  stop the etcd member of the leader's host or of a replica's host (SIGTERM, or
 *                    SIGKILL), the other two keep quorum; heal: start it again on its data dir
 *   disk-full        fill a replica host's tmpfs volume (write until ENOSPC): its postgres and its etcd
 *                    member share that disk; heal: delete the file, and start the host's etcd member
 *                    again if the full disk killed it (what `pgpilot node run` does for a crashed member)
 *
 * The PRNG draws the same five values for every fault whatever its kind, so a seed's sequence of
 * kinds, targets and hold times did not change when `etcd-restart` (the one etcd of the old
 * topology) became `etcd-member-restart`; the draw that gives a partition its direction gives an
 * etcd-member-restart its signal (both → SIGTERM, in/out → SIGKILL).
 */
import { open, statfs, unlink } from 'node:fs/promises';
import { agentPid, etcdMemberPid, isEtcdLeader, postmasterPid, restartEtcdMember, startAgentProcess, stopEtcdMember, type ChaosCluster } from './cluster.js';
import type { Prng } from './prng.js';
import { NODE_NAMES, healPartition, partition, type NodeName, type PartitionDirection } from './topology.js';

export const FAULT_KINDS = ['kill-agent', 'kill-postmaster', 'stop-agent', 'partition', 'etcd-member-restart', 'disk-full'] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];
export type TargetRule = 'leader' | 'replica-1' | 'replica-2';

export interface PlannedFault {
  index: number;
  kind: FaultKind;
  target: TargetRule;
  holdMs: number;
  direction: PartitionDirection | null;
  /** How an etcd-member-restart stops the member (null for other kinds). */
  signal: 'SIGTERM' | 'SIGKILL' | null;
}

export function planFaults(prng: Prng, count: number, holdRangeMs: { min: number; max: number }): PlannedFault[] {
  const plan: PlannedFault[] = [];
  for (let index = 1; index <= count; index += 1) {
    const kind = prng.pick(FAULT_KINDS);
    const replica = prng.pick(['replica-1', 'replica-2'] as const);
    const onLeader = prng.next() < 0.5;
    const direction = prng.pick(['both', 'in', 'out'] as const);
    const holdMs = prng.int(holdRangeMs.min, holdRangeMs.max);
    const target: TargetRule = kind === 'disk-full' ? replica : onLeader ? 'leader' : replica;
    plan.push({
      index,
      kind,
      target,
      holdMs,
      direction: kind === 'partition' ? direction : null,
      signal: kind === 'etcd-member-restart' ? (direction === 'both' ? 'SIGTERM' : 'SIGKILL') : null,
    });
  }
  return plan;
}

/** The node a rule names, given the current leader (replicas ordered by name). */
export function resolveTarget(rule: TargetRule, leader: NodeName): NodeName | null {
  if (rule === 'leader') return leader;
  const replicas = NODE_NAMES.filter((n) => n !== leader);
  return (rule === 'replica-1' ? replicas[0] : replicas[1]) ?? null;
}

export interface AppliedFault {
  /** What was done, for the report (PIDs, sizes). */
  detail: string;
  heal(): Promise<string>;
}

/**
 * Writes zeros to `file` until the filesystem says ENOSPC: 1 MiB blocks, then 4 KiB ones for the
 * rest. Bounded by the filesystem size. Returns the bytes written.
 */
async function fillUntilFull(file: string, sizeBytes: number): Promise<number> {
  const handle = await open(file, 'w');
  let written = 0;
  try {
    for (const blockBytes of [1_048_576, 4_096]) {
      const block = Buffer.alloc(blockBytes);
      const maxWrites = Math.ceil(sizeBytes / blockBytes) + 16;
      for (let i = 0; i < maxWrites; i += 1) {
        try {
          await handle.write(block, 0, blockBytes);
          written += blockBytes;
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code === 'ENOSPC') break;
          throw error;
        }
      }
    }
  } finally {
    await handle.close().catch(() => undefined);
  }
  return written;
}

function signal(pid: number, sig: NodeJS.Signals): void {
  process.kill(pid, sig);
}

export async function applyFault(cluster: ChaosCluster, fault: PlannedFault, node: NodeName | null): Promise<AppliedFault> {
  const need = (): NodeName => {
    if (node === null) throw new Error(`${fault.kind} needs a target node`);
    return node;
  };
  switch (fault.kind) {
    case 'kill-agent': {
      const name = need();
      const pid = await agentPid(cluster, name);
      if (pid === null) throw new Error(`${name}: no live agent to kill`);
      signal(pid, 'SIGKILL');
      return {
        detail: `SIGKILL agent ${name} (pid ${pid})`,
        heal: () => Promise.resolve(`agent ${name} started again (pid ${startAgentProcess(cluster, name)})`),
      };
    }
    case 'kill-postmaster': {
      const name = need();
      const pid = await postmasterPid(cluster, name);
      if (pid === null) throw new Error(`${name}: no live postmaster to kill`);
      signal(pid, 'SIGKILL');
      return { detail: `SIGKILL postmaster ${name} (pid ${pid})`, heal: () => Promise.resolve('nothing to do (the agent restarts postgres)') };
    }
    case 'stop-agent': {
      const name = need();
      const pid = await agentPid(cluster, name);
      if (pid === null) throw new Error(`${name}: no live agent to stop`);
      signal(pid, 'SIGSTOP');
      return {
        detail: `SIGSTOP agent ${name} (pid ${pid})`,
        heal: () => {
          signal(pid, 'SIGCONT');
          return Promise.resolve(`SIGCONT agent ${name} (pid ${pid})`);
        },
      };
    }
    case 'partition': {
      const name = need();
      const direction = fault.direction ?? 'both';
      const ns = cluster.topology.nodeNs[name];
      await partition(ns, direction);
      return {
        detail: `partition ${name} (${direction === 'both' ? 'both directions' : direction === 'in' ? 'incoming dropped' : 'outgoing dropped'})`,
        heal: async () => {
          await healPartition(ns);
          return `partition of ${name} removed`;
        },
      };
    }
    case 'etcd-member-restart': {
      const name = need();
      const sig = fault.signal ?? 'SIGTERM';
      const pid = await etcdMemberPid(cluster, name);
      if (pid === null) throw new Error(`${name}: no live etcd member to stop`);
      const wasLeader = await isEtcdLeader(cluster, name);
      const how = await stopEtcdMember(cluster, name, sig);
      const role = wasLeader === null ? 'role unknown' : wasLeader ? 'the etcd leader' : 'an etcd follower';
      return {
        detail: `${sig} etcd member ${name} (pid ${pid}, ${role}): ${how}`,
        heal: async () => `etcd member ${name} started again on its data dir (pid ${await restartEtcdMember(cluster, name)})`,
      };
    }
    case 'disk-full': {
      const name = need();
      const volume = cluster.layout.node(name).volumeDir;
      const file = cluster.layout.node(name).fillFile;
      const before = await statfs(volume);
      const written = await fillUntilFull(file, before.blocks * before.bsize);
      const after = await statfs(volume);
      return {
        detail: `filled ${name}'s volume: wrote ${Math.round(written / 1048576)} MiB, ${after.bavail * after.bsize} bytes left`,
        heal: async () => {
          await unlink(file).catch(() => undefined);
          // The host's etcd member shares the disk: if ENOSPC killed it, start it again, as the
          // host's supervisor (`pgpilot node run`) would.
          if ((await etcdMemberPid(cluster, name)) !== null) return `freed ${name}'s volume (its etcd member kept running)`;
          return `freed ${name}'s volume; its etcd member had exited, started again (pid ${await restartEtcdMember(cluster, name)})`;
        },
      };
    }
  }
}
