/**
 * The split-brain probe: every `intervalMs`, for each host directly (its own postgres, not a
 * proxy), one INSERT into chaos_probe recording the node's name, on a kept connection (re-opened
 * with a short timeout after any error). Each attempt is an observation of that node:
 *
 *   ok        the INSERT committed: the node accepted a write at some instant in [startMs, endMs]
 *   refused   the node provably did not accept writes then (standby/read-only, connection refused,
 *             shutting down or starting up)
 *   unknown   timeout or reset: proves nothing either way
 *
 * `analyzeSplitBrain` (pure) turns observations into accepting runs per node: consecutive `ok`s not
 * interrupted by a `refused`, spanning [first ok start, last ok end]. Two runs on different nodes
 * that overlap in time are a split-brain episode: both nodes accepted writes in one window. A write
 * on an old primary after the new primary's first write is caught this way too, because the old
 * node's run stretches from its earlier writes to that late one unless the probe saw it refuse in between.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import type { HarnessCredentials } from './chaos-tls.js';
import { closeClient, connect, errorText, nowMs, provesNotWritable } from './pg-client.js';
import { NODE_NAMES, nodeAddress, type NodeName } from './topology.js';

export const PROBE_TABLE_SQL = 'CREATE TABLE IF NOT EXISTS chaos_probe (id bigserial PRIMARY KEY, node text NOT NULL, server_addr inet, at timestamptz NOT NULL DEFAULT clock_timestamp())';

export interface Observation {
  node: string;
  kind: 'ok' | 'refused' | 'unknown';
  startMs: number;
  endMs: number;
}

export interface AcceptingRun {
  node: string;
  startMs: number;
  endMs: number;
  writes: number;
}

export interface SplitBrainEpisode {
  a: AcceptingRun;
  b: AcceptingRun;
  overlapStartMs: number;
  overlapEndMs: number;
}

export interface SplitBrainAnalysis {
  runs: AcceptingRun[];
  episodes: SplitBrainEpisode[];
  overlapMs: number;
}

export function acceptingRuns(observations: readonly Observation[]): AcceptingRun[] {
  const byNode = new Map<string, Observation[]>();
  for (const o of observations) byNode.set(o.node, [...(byNode.get(o.node) ?? []), o]);
  const runs: AcceptingRun[] = [];
  for (const [node, list] of byNode) {
    const sorted = [...list].sort((x, y) => x.startMs - y.startMs);
    let current: AcceptingRun | null = null;
    for (const o of sorted) {
      if (o.kind === 'ok') {
        if (current === null) current = { node, startMs: o.startMs, endMs: o.endMs, writes: 1 };
        else {
          current.endMs = Math.max(current.endMs, o.endMs);
          current.writes += 1;
        }
      } else if (o.kind === 'refused' && current !== null) {
        runs.push(current);
        current = null;
      }
    }
    if (current !== null) runs.push(current);
  }
  return runs.sort((x, y) => x.startMs - y.startMs);
}

export function analyzeSplitBrain(observations: readonly Observation[]): SplitBrainAnalysis {
  const runs = acceptingRuns(observations);
  const episodes: SplitBrainEpisode[] = [];
  for (let i = 0; i < runs.length; i += 1) {
    for (let j = i + 1; j < runs.length; j += 1) {
      const a = runs[i] as AcceptingRun;
      const b = runs[j] as AcceptingRun;
      if (a.node === b.node) continue;
      const overlapStartMs = Math.max(a.startMs, b.startMs);
      const overlapEndMs = Math.min(a.endMs, b.endMs);
      if (overlapStartMs <= overlapEndMs) episodes.push({ a, b, overlapStartMs, overlapEndMs });
    }
  }
  return { runs, episodes, overlapMs: episodes.reduce((sum, e) => sum + (e.overlapEndMs - e.overlapStartMs), 0) };
}

export interface ProbeOptions {
  intervalMs: number;
  connectTimeoutMs: number;
  queryTimeoutMs: number;
}

export class SplitBrainProbe {
  readonly observations: Observation[] = [];
  private readonly clients = new Map<NodeName, pg.Client>();
  private readonly busy = new Set<NodeName>();
  private readonly inFlight = new Set<Promise<void>>();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly credentials: HarnessCredentials,
    private readonly options: ProbeOptions,
  ) {}

  start(): void {
    this.timer = setInterval(() => {
      for (const node of NODE_NAMES) {
        // One attempt per node at a time: a hanging node must not pile up attempts.
        if (this.busy.has(node)) continue;
        this.busy.add(node);
        const attempt = this.probe(node).finally(() => {
          this.busy.delete(node);
          this.inFlight.delete(attempt);
        });
        this.inFlight.add(attempt);
      }
    }, this.options.intervalMs);
  }

  async stop(): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    await Promise.race([Promise.allSettled([...this.inFlight]), sleep(this.options.connectTimeoutMs + this.options.queryTimeoutMs + 2_000)]);
    for (const client of this.clients.values()) await closeClient(client);
    this.clients.clear();
  }

  counts(): Record<Observation['kind'], number> {
    const counts = { ok: 0, refused: 0, unknown: 0 };
    for (const o of this.observations) counts[o.kind] += 1;
    return counts;
  }

  private async probe(node: NodeName): Promise<void> {
    let client = this.clients.get(node) ?? null;
    if (client === null) {
      const startMs = nowMs();
      try {
        client = await connect(nodeAddress(node), this.credentials, {
          connectTimeoutMs: this.options.connectTimeoutMs,
          queryTimeoutMs: this.options.queryTimeoutMs,
          applicationName: 'chaos-probe',
        });
        this.clients.set(node, client);
      } catch (error) {
        this.observations.push({ node, kind: provesNotWritable(error) ? 'refused' : 'unknown', startMs, endMs: nowMs() });
        return;
      }
    }
    const startMs = nowMs();
    try {
      await client.query('INSERT INTO chaos_probe (node, server_addr) VALUES ($1, inet_server_addr())', [node]);
      this.observations.push({ node, kind: 'ok', startMs, endMs: nowMs() });
    } catch (error) {
      this.observations.push({ node, kind: provesNotWritable(error) ? 'refused' : 'unknown', startMs, endMs: nowMs() });
      this.lastErrors.set(node, errorText(error));
      // A standby answering "read-only" keeps its session; anything else opens a new one next time.
      if ((error as { code?: unknown }).code !== '25006') {
        this.clients.delete(node);
        await closeClient(client);
      }
    }
  }

  readonly lastErrors = new Map<NodeName, string>();
}
