/**
 * "Never two leaders": short random fault sequences run through the scenario harness (three
 * agents over MemoryDcs, fake postgres and a FakeClock; test/scenarios/sim-cluster.ts): etcd cut
 * off from a node and back, postgres crashes, agents stopped and started, and the untrusted
 * values of issue 17 (a lease-less or unknown leader key, garbage /config, a forbidden
 * parameter). After every round at most one agent believes it holds the lead, and at most one
 * writable postgres belongs to an agent that believes it leads. Bounded: FUZZ_RUNS/20 sequences
 * of at most 40 steps each.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { defaultDynamicConfig } from '../../src/config/schema.js';
import { bootstrappedSim, type SimCluster } from '../scenarios/sim-cluster.js';
import { fuzzParams } from './fuzz-settings.js';

const NODES = ['node1', 'node2', 'node3'] as const;
type Fault =
  | { kind: 'rounds'; count: number }
  | { kind: 'cut' | 'heal' | 'crash' | 'stop' | 'start'; node: (typeof NODES)[number] }
  | { kind: 'ghost-leader' | 'leased-ghost' | 'garbage-config' | 'forbidden-parameter' | 'good-config' };

const node = fc.constantFrom(...NODES);
const fault: fc.Arbitrary<Fault> = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 1, max: 15 }).map((count) => ({ kind: 'rounds', count }) as const) },
  fc.record({ kind: fc.constantFrom('cut', 'heal', 'crash', 'stop', 'start'), node }) as fc.Arbitrary<Fault>,
  fc.constantFrom<Fault>({ kind: 'ghost-leader' }, { kind: 'leased-ghost' }, { kind: 'garbage-config' }, { kind: 'forbidden-parameter' }, { kind: 'good-config' }),
);

function checkOneLeader(sim: SimCluster, step: string): void {
  const holders = sim.agents.filter((a) => a.memory.holdsLeader).map((a) => a.name);
  assert.ok(holders.length <= 1, `two agents hold the lead (${holders.join(', ')}) after ${step}\n${sim.describe()}`);
  const writableLeaders = sim.agents.filter((a) => a.memory.holdsLeader && sim.world.isWritable(a.name));
  assert.ok(writableLeaders.length <= 1, `two writable leaders after ${step}\n${sim.describe()}`);
}

async function apply(sim: SimCluster, f: Fault): Promise<void> {
  const agent = (name: string) => sim.agents.find((a) => a.name === name);
  switch (f.kind) {
    case 'rounds':
      for (let i = 0; i < f.count; i += 1) {
        await sim.round();
        checkOneLeader(sim, `round ${i + 1} of ${f.count}`);
      }
      return;
    case 'cut':
      agent(f.node)?.client.setReachable(false);
      return;
    case 'heal':
      agent(f.node)?.client.setReachable(true);
      return;
    case 'crash':
      if (sim.world.isRunning(f.node)) sim.world.crash(f.node);
      return;
    case 'stop':
      if (agent(f.node) !== undefined) {
        agent(f.node)?.client.setReachable(true);
        await sim.stopAgent(f.node);
      }
      return;
    case 'start':
      if (agent(f.node) === undefined) sim.startAgent(f.node);
      return;
    case 'ghost-leader':
      sim.store.put(sim.keys.leader, 'ghost');
      return;
    case 'leased-ghost':
      sim.store.put(sim.keys.leader, 'node9', { leaseId: sim.store.grantLease(30) });
      return;
    case 'garbage-config':
      sim.store.put(sim.keys.config, '{"ttlSeconds": [');
      return;
    case 'forbidden-parameter':
      sim.store.put(sim.keys.config, JSON.stringify({ ...defaultDynamicConfig(), postgresql: { parameters: { archive_cleanup_command: 'sh -c evil', shared_preload_libraries: '/tmp/evil.so' } } }));
      return;
    case 'good-config':
      sim.store.put(sim.keys.config, JSON.stringify(defaultDynamicConfig()));
      return;
  }
}

void describe('fuzz: random faults in a simulated cluster', () => {
  void it('never two leaders', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fault, { minLength: 1, maxLength: 40 }), async (faults) => {
        const sim = await bootstrappedSim();
        try {
          for (const f of faults) await apply(sim, f);
          // Heal everything and let it settle: still never two leaders on the way.
          for (const name of NODES) {
            const a = sim.agents.find((x) => x.name === name);
            a?.client.setReachable(true);
          }
          await apply(sim, { kind: 'rounds', count: 30 });
        } finally {
          for (const a of [...sim.agents]) await a.loop.stop();
        }
      }),
      fuzzParams(1 / 20),
    );
  });
});
