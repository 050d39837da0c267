/**
 * Scenario harness: N agents (`HaLoop`s) over one `MemoryDcsStore`, a `FakeClock` and a
 * `FakePostgresWorld`, driven deterministically: a round ticks every running agent once, in a
 * fixed order, then advances the clock by a step and lets pending promises (long tasks, watch
 * deliveries) settle. Nothing here reads the wall clock or sleeps; waiting for a state is a
 * bounded number of rounds. Agents can be stopped the way the real agent stops (stop the loop,
 * stop postgres fast, release keys) and started again over the same fake data.
 */
import assert from 'node:assert/strict';
import { MemoryDcs, MemoryDcsStore } from '../../src/dcs/memory-dcs.js';
import { clusterKeys, type ClusterKeys } from '../../src/dcs/keys.js';
import type { Dcs } from '../../src/dcs/dcs.js';
import { freshAgentMemory, type AgentMemory } from '../../src/ha/agent-memory.js';
import { HaLoop } from '../../src/ha/loop.js';
import type { HaMetrics } from '../../src/state/ha-metrics.js';
import { parseMemberRecord, type MemberRecord } from '../../src/state/member-record.js';
import { parseHistory, type HistoryEntry } from '../../src/state/history.js';
import type { Tags } from '../../src/config/schema.js';
import { FakeClock } from '../../src/shared/clock.js';
import { silentLogger } from '../../src/shared/logger.js';
import { FakePostgresWorld, type FakePostgresNode, type FakePostgresWorldOptions } from '../fakes/fake-postgres-node.js';
import { FakeFenceGuard } from '../fakes/fake-fence-guard.js';
import type { PeerProbe } from '../../src/ha/failsafe.js';
import type { PeerPositionSource } from '../../src/ha/sync-set.js';

export const SIM_HOST = '127.0.0.1';

export interface SimAgent {
  name: string;
  /** This agent's client of the shared store (cut it off with `setReachable(false)`). */
  client: MemoryDcs;
  /** What the loop uses: `client`, or its wrapper from `wrapDcs`. */
  dcs: Dcs;
  pg: FakePostgresNode;
  memory: AgentMemory;
  loop: HaLoop;
  guard: FakeFenceGuard | null;
}

export interface SimClusterOptions {
  names?: readonly string[];
  world?: FakePostgresWorldOptions;
  tags?: Readonly<Record<string, Tags>>;
  /** Clock time per round. */
  stepMs?: number;
  /** Give every agent a fencing watchdog (as src/agent/compose.ts does); default: none. */
  watchdog?: boolean;
  /** Wraps each agent's DCS client (e.g. to simulate a slow network). */
  wrapDcs?: (name: string, client: MemoryDcs, clock: FakeClock) => Dcs;
  /** The HA metrics hook of each agent (default: none, the loop's no-op). */
  metrics?: (name: string) => HaMetrics;
}

/** Lets every queued promise continuation run (the fakes never wait on real I/O). */
export function flush(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

export class SimCluster {
  readonly clock = new FakeClock();
  readonly store = new MemoryDcsStore(this.clock);
  readonly keys: ClusterKeys = clusterKeys('demo');
  readonly world: FakePostgresWorld;
  readonly names: readonly string[];
  readonly stepMs: number;
  /** Running agents, in tick order. */
  agents: SimAgent[] = [];
  /** Nodes whose REST API nobody can reach (failsafe checks to them fail); see `setApiReachable`. */
  readonly apiCut = new Set<string>();
  private readonly options: SimClusterOptions;
  /** Sync mode: members whose agents do not answer `GET /wal-position` (a network cut). */
  readonly silentPeers = new Set<string>();
  /** Sync mode: a peer's `GET /wal-position`, answered by its running agent from the fake postgres. */
  readonly peerPositions: PeerPositionSource = {
    position: (peer) =>
      Promise.resolve(this.agents.some((a) => a.name === peer.name) && !this.silentPeers.has(peer.name) ? this.world.positionOf(peer.name) : null),
  };

  constructor(options: SimClusterOptions = {}) {
    this.options = options;
    this.names = options.names ?? ['node1', 'node2', 'node3'];
    this.stepMs = options.stepMs ?? 200;
    this.world = new FakePostgresWorld(this.clock, options.world ?? {});
  }

  /** Cuts off (or restores) the REST API of `name` for every other agent (the failsafe peer checks). */
  setApiReachable(name: string, reachable: boolean): void {
    if (reachable) this.apiCut.delete(name);
    else this.apiCut.add(name);
  }

  /**
   * The failsafe `PeerProbe` of one agent: a member answers through its own loop
   * (`HaLoop#answerFailsafe`, as REST `POST /failsafe` does) when its agent runs and its API is not cut.
   */
  peerProbeFor(from: string): PeerProbe {
    return {
      check: (peer, request) => {
        if (this.apiCut.has(peer.name) || this.apiCut.has(from)) return Promise.reject(new Error(`${peer.name}: API unreachable`));
        const agent = this.agents.find((a) => a.name === peer.name);
        if (agent === undefined) return Promise.reject(new Error(`${peer.name}: agent not running`));
        return Promise.resolve(agent.loop.answerFailsafe(request));
      },
    };
  }

  pgPortOf(name: string): number {
    return 5431 + this.names.indexOf(name);
  }

  /** Starts an agent for `name` (fresh memory, new DCS client, new postgres handle over the same data). */
  startAgent(name: string): SimAgent {
    assert.ok(this.names.includes(name), `unknown node ${name}`);
    assert.ok(!this.agents.some((a) => a.name === name), `${name} is already running`);
    const client = new MemoryDcs(this.store, { name });
    const pg = this.world.attach(name, { host: SIM_HOST, port: this.pgPortOf(name) });
    const memory = freshAgentMemory();
    const index = this.names.indexOf(name);
    const dcs = this.options.wrapDcs?.(name, client, this.clock) ?? client;
    const guard = this.options.watchdog === true ? new FakeFenceGuard(this.clock, this.world, name) : null;
    const loop = new HaLoop({
      node: name,
      host: SIM_HOST,
      pgPort: this.pgPortOf(name),
      apiUrl: `http://${SIM_HOST}:${8008 + index}`,
      proxyPort: null,
      tags: this.options.tags?.[name] ?? {},
      version: '0.0.0-test',
      agentPid: 100 + index,
      dcs,
      keys: this.keys,
      pg,
      clock: this.clock,
      log: silentLogger(),
      memory,
      peerProbe: this.peerProbeFor(name),
      ...(guard === null ? {} : { fenceGuard: guard }),
      ...(this.options.metrics === undefined ? {} : { metrics: this.options.metrics(name) }),
      peerPositions: this.peerPositions,
    });
    const agent: SimAgent = { name, client, dcs, pg, memory, loop, guard };
    this.agents.push(agent);
    return agent;
  }

  startAll(order: readonly string[] = this.names): SimAgent[] {
    return order.map((name) => this.startAgent(name));
  }

  /** The machine of `name` goes off: its agent stops for good (no timers), its postgres dies, its etcd client is cut. */
  async powerOff(name: string): Promise<void> {
    const agent = this.agent(name);
    await agent.loop.stop();
    agent.guard?.disarm();
    agent.client.setReachable(false);
    this.world.crash(name);
    await agent.pg.close();
    await agent.client.close();
    this.agents = this.agents.filter((a) => a !== agent);
  }

  agent(name: string): SimAgent {
    const agent = this.agents.find((a) => a.name === name);
    assert.ok(agent, `agent ${name} is not running`);
    return agent;
  }

  /** Graceful agent stop, in the order of src/agent/compose.ts: loop, postgres (fast), etcd keys. */
  async stopAgent(name: string): Promise<void> {
    const agent = this.agent(name);
    await agent.loop.stop();
    agent.guard?.disarm();
    await agent.pg.stop('fast');
    await agent.loop.releaseAll();
    await agent.pg.close();
    await agent.client.close();
    this.agents = this.agents.filter((a) => a !== agent);
  }

  /** One tick of every running agent (in order), then `stepMs` of clock time. */
  async round(): Promise<void> {
    for (const agent of [...this.agents]) await agent.loop.tick();
    await flush();
    this.clock.advance(this.stepMs);
    await flush();
  }

  /** Runs rounds until `condition` holds (checked before each round); fails after `maxRounds`. */
  async until(what: string, condition: () => boolean, maxRounds = 200): Promise<number> {
    for (let rounds = 0; rounds <= maxRounds; rounds += 1) {
      if (condition()) return rounds;
      await this.round();
    }
    return assert.fail(`not reached within ${maxRounds} rounds: ${what}\n${this.describe()}`);
  }

  leader(): string | null {
    return this.store.get(this.keys.leader);
  }

  member(name: string): MemberRecord | null {
    const text = this.store.get(this.keys.member(name));
    return text === null ? null : parseMemberRecord(text);
  }

  history(): HistoryEntry[] {
    return parseHistory(this.store.get(this.keys.history));
  }

  /** A running replica streaming from `upstream` (per its published record and the fake postgres). */
  isStreamingFrom(name: string, upstream: string): boolean {
    const record = this.member(name);
    const data = this.world.dataOf(name);
    return (
      record !== null &&
      record.role === 'replica' &&
      record.streaming &&
      record.following === upstream &&
      data?.running === true &&
      data.inRecovery &&
      data.upstream?.name === upstream
    );
  }

  /** Everything a failing assertion should show. */
  describe(): string {
    const lines = [`t=${this.clock.nowMs()} leader=${this.leader() ?? '-'}`];
    for (const name of this.names) {
      const d = this.world.dataOf(name);
      const agent = this.agents.find((a) => a.name === name);
      lines.push(
        `  ${name}: ${d === undefined ? 'no data' : `${d.running ? (d.inRecovery ? 'standby' : 'primary') : `stopped (${d.controlState})`} tl${d.timeline} ${this.world.lsnOf(name)} upstream=${d.upstream?.name ?? '-'}`}` +
          ` | ${agent === undefined ? 'agent stopped' : `decision: ${agent.loop.snapshot().decision?.summary ?? '-'}; error: ${agent.loop.snapshot().lastError ?? '-'}`}`,
      );
    }
    return lines.join('\n');
  }
}

/** Timings of the fake world used by the scenario suites (ms of fake clock). */
export const WORLD = { startupMs: 300, initializeMs: 1_000, cloneMs: 800 };

/** Three nodes over the default world, run until node1 leads and both others stream from it. */
export async function bootstrappedSim(): Promise<SimCluster> {
  const sim = new SimCluster({ world: WORLD });
  sim.startAll();
  await sim.until('node1 leads and both others stream from it', () =>
    sim.leader() === 'node1' && sim.isStreamingFrom('node2', 'node1') && sim.isStreamingFrom('node3', 'node1'),
  );
  return sim;
}
