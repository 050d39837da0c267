/**
 * The fault catalogue. A plan is drawn up front from the seeded PRNG (kind, target rule, hold
 * time, partition direction), so one seed always gives the same sequence; which node the rule
 * names (the leader, or the first/second replica by name) is resolved when the fault is applied,
 * since elections depend on timing. Each fault is applied, held for its hold time, then healed:
 *
 *   kill-agent       SIGKILL the agent (postgres dies with it: parent-death signal); heal: start it again
 *   kill-postmaster  SIGKILL the postmaster; the agent must restart or replace it; heal: nothing to do
 *   stop-agent       SIGSTOP the agent (postgres keeps running: the watchdog must fence a leader); heal: SIGCONT
 *   partition        nftables in the host's namespace: both directions, or only incoming, or only outgoing; heal: delete the rules
 *   etcd-restart     SIGTERM etcd; heal: start it again on the same data directory
 *   disk-full        fill a replica's tmpfs volume (write until ENOSPC); heal: delete the file
 */
import { open, statfs, unlink } from 'node:fs/promises';
import { agentPid, postmasterPid, startAgentProcess, startEtcdProcess, stopEtcdProcess, type ChaosCluster } from './cluster.js';
import type { Prng } from './prng.js';
import { NODE_NAMES, healPartition, partition, type NodeName, type PartitionDirection } from './topology.js';

export const FAULT_KINDS = ['kill-agent', 'kill-postmaster', 'stop-agent', 'partition', 'etcd-restart', 'disk-full'] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];
export type TargetRule = 'leader' | 'replica-1' | 'replica-2' | 'etcd';

export interface PlannedFault {
  index: number;
  kind: FaultKind;
  target: TargetRule;
  holdMs: number;
  direction: PartitionDirection | null;
}

export function planFaults(prng: Prng, count: number, holdRangeMs: { min: number; max: number }): PlannedFault[] {
  const plan: PlannedFault[] = [];
  for (let index = 1; index <= count; index += 1) {
    const kind = prng.pick(FAULT_KINDS);
    const replica = prng.pick(['replica-1', 'replica-2'] as const);
    const onLeader = prng.next() < 0.5;
    const direction = prng.pick(['both', 'in', 'out'] as const);
    const holdMs = prng.int(holdRangeMs.min, holdRangeMs.max);
    const target: TargetRule = kind === 'etcd-restart' ? 'etcd' : kind === 'disk-full' ? replica : onLeader ? 'leader' : replica;
    plan.push({ index, kind, target, holdMs, direction: kind === 'partition' ? direction : null });
  }
  return plan;
}

/** The node a rule names, given the current leader (replicas ordered by name). */
export function resolveTarget(rule: TargetRule, leader: NodeName): NodeName | null {
  if (rule === 'etcd') return null;
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
    case 'etcd-restart': {
      const pid = cluster.etcdPid;
      await stopEtcdProcess(cluster);
      return {
        detail: `etcd stopped (pid ${pid ?? '?'})`,
        heal: async () => `etcd started again (pid ${await startEtcdProcess(cluster)})`,
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
          return `freed ${name}'s volume`;
        },
      };
    }
  }
}
