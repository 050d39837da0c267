/**
 * The chaos report: one JSON document per run (seed, mode, every fault with its timings, acked and
 * lost writes, split-brain episodes, convergence, versions) and one summary line. The verdict is
 * computed here, in one place: a run fails on any split-brain episode, on any fault after which
 * the cluster did not converge, and in sync mode on any lost acknowledged write. In async mode lost
 * writes are reported, not failed: asynchronous replication may lose acknowledged commits on failover.
 */
import type { SplitBrainEpisode } from './probe.js';

export interface FaultReport {
  index: number;
  kind: string;
  target: string;
  node: string | null;
  direction: string | null;
  holdMs: number;
  detail: string | null;
  healDetail: string | null;
  error: string | null;
  leaderBefore: string | null;
  leaderAfter: string | null;
  appliedAt: string | null;
  healedAt: string | null;
  converged: boolean;
  /** From the heal to the converged state. */
  convergenceMs: number | null;
  convergenceState: string;
  syncStandbyNames: string | null;
  ackedSoFar: number;
  newlyLost: number;
  lostSoFar: number;
}

export interface ChaosReport {
  kind: 'chaos';
  runId: string;
  seed: number;
  mode: 'sync' | 'async';
  faultsRequested: number;
  startedAt: string;
  endedAt: string;
  interrupted: boolean;
  fatalError: string | null;
  versions: Record<string, string>;
  settings: Record<string, unknown>;
  bootstrap: { converged: boolean; ms: number | null; leader: string | null; syncStandbyNames: string | null };
  faults: FaultReport[];
  workload: { writers: number; acked: number; unknown: number; connectFailures: number; lastError: string | null };
  lost: { count: number; ids: number[] };
  probe: { ok: number; refused: number; unknown: number; runs: number };
  splitBrain: { episodes: number; overlapMs: number; details: SplitBrainEpisode[] };
  converged: number;
  passed: boolean;
  failures: string[];
  summary: string;
  workDir: string;
}

export function verdict(report: Omit<ChaosReport, 'passed' | 'failures' | 'summary'>): { passed: boolean; failures: string[]; summary: string } {
  const failures: string[] = [];
  if (report.fatalError !== null) failures.push(`run error: ${report.fatalError}`);
  if (report.interrupted) failures.push('interrupted');
  if (!report.bootstrap.converged) failures.push('the cluster never converged after bootstrap');
  if (report.faults.length < report.faultsRequested) failures.push(`${report.faults.length} of ${report.faultsRequested} faults ran`);
  if (report.converged < report.faults.length) failures.push(`${report.faults.length - report.converged} fault(s) without convergence`);
  if (report.splitBrain.episodes > 0) failures.push(`${report.splitBrain.episodes} split-brain episode(s)`);
  if (report.mode === 'sync' && report.lost.count > 0) failures.push(`${report.lost.count} acknowledged write(s) lost in sync mode`);
  const summary =
    `chaos: ${report.faults.length} faults, seed ${report.seed}, mode ${report.mode}: acked ${report.workload.acked}, ` +
    `lost ${report.lost.count}, split-brain ${report.splitBrain.episodes}, converged ${report.converged}/${report.faults.length}`;
  return { passed: failures.length === 0, failures, summary };
}
