/**
 * A scenario driver shared by the election and outage simulations: rounds like SimCluster#round
 * (every agent ticks, long tasks settle, the fake clock steps), with the single-writer invariant
 * checked after every tick, after the tasks settle and after every clock step, plus any extra
 * per-step checks a test adds; a record of every decision for assertions on what nodes decided.
 */
import assert from 'node:assert/strict';
import { SimCluster, WORLD, flush, type SimClusterOptions } from './sim-cluster.js';

export interface TickRecord {
  atMs: number;
  node: string;
  summary: string;
  actions: string[];
}

/**
 * "Never two writable primaries at once": at most one fake postgres runs as a primary (out of
 * recovery, counted from its start, before it even accepts connections), and a primary that accepts
 * writes is the node named by the leader key (else a replica could be promoted beside it).
 */
export function assertSingleWriter(sim: SimCluster, when: string): void {
  const primaries = sim.names.filter((name) => {
    const d = sim.world.dataOf(name);
    return d !== undefined && d.running && !d.inRecovery;
  });
  if (primaries.length > 1) assert.fail(`two primaries at once (${primaries.join(', ')}) ${when}\n${sim.describe()}`);
  const leader = sim.leader();
  for (const name of primaries) {
    if (sim.world.isWritable(name) && leader !== name) {
      assert.fail(`${name} accepts writes while the leader key names ${leader ?? 'nobody'} ${when}\n${sim.describe()}`);
    }
  }
}

export class Driver {
  readonly ticks: TickRecord[] = [];
  /** Extra checks run wherever the single-writer invariant is checked. */
  readonly checks: Array<(when: string) => void> = [];

  constructor(readonly sim: SimCluster) {}

  check(when: string): void {
    assertSingleWriter(this.sim, when);
    for (const extra of this.checks) extra(when);
  }

  async round(): Promise<void> {
    const { sim } = this;
    for (const agent of [...sim.agents]) {
      await agent.loop.tick();
      const decision = agent.loop.snapshot().decision;
      this.ticks.push({ atMs: sim.clock.nowMs(), node: agent.name, summary: decision?.summary ?? '', actions: decision?.actions.map((a) => a.kind) ?? [] });
      this.check(`after ${agent.name}'s tick at t=${sim.clock.nowMs()}`);
    }
    await flush();
    this.check(`after the tasks of t=${sim.clock.nowMs()}`);
    sim.clock.advance(sim.stepMs);
    await flush();
    this.check(`after the clock reached t=${sim.clock.nowMs()}`);
  }

  async rounds(count: number): Promise<void> {
    for (let i = 0; i < count; i += 1) await this.round();
  }

  /** Rounds until `condition` holds (checked before each round); fails after `maxRounds`. */
  async until(what: string, condition: () => boolean, maxRounds = 200): Promise<number> {
    for (let rounds = 0; rounds <= maxRounds; rounds += 1) {
      if (condition()) return rounds;
      await this.round();
    }
    return assert.fail(`not reached within ${maxRounds} rounds: ${what}\n${this.sim.describe()}`);
  }

  /** Kinds of every action `node` decided (from `sinceMs` on). */
  actionsOf(node: string, sinceMs = 0): string[] {
    return this.ticks.filter((t) => t.node === node && t.atMs >= sinceMs).flatMap((t) => t.actions);
  }

  summariesOf(node: string, sinceMs = 0): string[] {
    return this.ticks.filter((t) => t.node === node && t.atMs >= sinceMs).map((t) => t.summary);
  }
}


export async function bootstrapped(options: SimClusterOptions = {}): Promise<{ sim: SimCluster; d: Driver }> {
  const sim = new SimCluster({ world: WORLD, ...options });
  const d = new Driver(sim);
  sim.startAll();
  await d.until('node1 leads and every other node streams from it', () =>
    sim.leader() === 'node1' && sim.names.filter((n) => n !== 'node1').every((n) => sim.isStreamingFrom(n, 'node1')),
  );
  return { sim, d };
}

/** Writes on the leader and waits until every running replica replayed it and the leader published it. */
export async function writeAndReplicate(d: Driver, leader: string, bytes: bigint): Promise<string> {
  const { sim } = d;
  const written = sim.world.write(leader, bytes);
  await d.until(`replicas replayed ${written} and ${leader} published it`, () =>
    sim.store.get(sim.keys.lastLsn) === written &&
    sim.agents.filter((a) => a.name !== leader).every((a) => sim.world.lsnOf(a.name) === written),
  );
  return written;
}
