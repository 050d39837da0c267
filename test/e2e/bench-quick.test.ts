/**
 * The benchmark end to end, as a smoke test: `node dist/bench/run.js --quick` (pgpilot and Patroni
 * tuned, one failover / crash / switchover each, short pgbench, idle and saturation windows) in a
 * child process, then its JSON report: every pgpilot number is there and plausible, Patroni tuned
 * bootstrapped and failed over, and nothing the run started is still running (the footprint PIDs
 * recorded in the report are gone). Patroni is required: scripts/setup.sh installs it.
 *
 * The child is bounded: SIGINT at 8 minutes (the bench destroys its clusters on SIGINT), SIGKILL
 * if it has not exited 60 s later.
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { runBounded, type BoundedRunResult } from '../helpers/run-bounded.js';
import { isPidAlive, waitUntil } from '../helpers/wait.js';

const RUN_TIMEOUT_MS = 8 * 60_000;
const KILL_GRACE_MS = 60_000;


function runBench(args: string[]): Promise<BoundedRunResult> {
  return runBounded('dist/bench/run.js', args, { timeoutMs: RUN_TIMEOUT_MS, killGraceMs: KILL_GRACE_MS, env: { ...process.env, PGPILOT_BENCH_KEEP: '' } });
}

interface FootprintProcess {
  node: string;
  label: string;
  pid: number;
}

interface SystemReport {
  system: string;
  profile: string;
  bootstrapMs: number | null;
  failover: { samplesMs: number[] };
  switchover: { failedAttempts: unknown };
  pgbench?: { targets: Record<string, { medianTps: number | null }> } | null;
  footprint: { processes: FootprintProcess[] } | null;
  saturation?: { leaderChanges: unknown } | null;
  errors: Array<{ measurement: string; message: string }>;
}

interface BenchReport {
  kind: string;
  quick: boolean;
  systems: SystemReport[];
}

void describe('npm run bench -- --quick', { timeout: RUN_TIMEOUT_MS + KILL_GRACE_MS + 120_000 }, () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'pgpilot-bench-test-'));
  const out = path.join(dir, 'bench.json');

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  void it('measures pgpilot and Patroni tuned, and leaves nothing running', async () => {
    const run = await runBench(['--quick', '--out', out]);
    const tail = `${run.stderr.split('\n').slice(-40).join('\n')}\n${run.stdout}`;
    assert.equal(run.timedOut, false, `the quick bench did not finish within ${RUN_TIMEOUT_MS / 60_000} min:\n${tail}`);
    assert.equal(run.code, 0, `bench exited ${run.code ?? run.signal}:\n${tail}`);

    const report = JSON.parse(await readFile(out, 'utf8')) as BenchReport;
    assert.equal(report.kind, 'bench');
    assert.equal(report.quick, true);

    const pgpilot = report.systems.find((s) => s.system === 'pgpilot' && s.profile === 'default');
    assert.ok(pgpilot, 'no pgpilot entry in the report');
    // Only the external-HAProxy reference target may fail (reported, see bench/run.ts).
    assert.deepEqual(
      pgpilot.errors.filter((e) => e.measurement !== 'pgbench haproxy'),
      [],
      'pgpilot measurements failed',
    );
    const failover = pgpilot.failover.samplesMs[0];
    assert.ok(typeof failover === 'number' && Number.isFinite(failover) && failover > 0 && failover < 60_000, `pgpilot failover sample: ${String(failover)}`);
    assert.equal(typeof pgpilot.switchover.failedAttempts, 'number', 'pgpilot switchover failedAttempts');
    for (const target of ['direct', 'proxy']) {
      const tps = pgpilot.pgbench?.targets[target]?.medianTps;
      assert.ok(typeof tps === 'number' && tps > 0, `pgpilot pgbench ${target}: ${String(tps)}`);
    }
    const external = pgpilot.pgbench?.targets['haproxy']?.medianTps;
    assert.ok(
      (typeof external === 'number' && external > 0) || pgpilot.errors.some((e) => e.measurement === 'pgbench haproxy'),
      `pgpilot pgbench haproxy: neither a number nor a recorded error (${String(external)})`,
    );
    assert.ok(pgpilot.footprint?.processes.some((p) => p.label === 'agent'), 'pgpilot footprint has no agent');
    assert.ok(pgpilot.footprint?.processes.some((p) => p.label === 'supervisor'), 'pgpilot footprint has no node supervisor (pgpilot node run)');
    assert.equal(typeof pgpilot.saturation?.leaderChanges, 'number', 'pgpilot saturation leaderChanges');

    const tuned = report.systems.find((s) => s.system === 'patroni' && s.profile === 'tuned');
    assert.ok(tuned, 'no Patroni tuned entry in the report');
    assert.ok(typeof tuned.bootstrapMs === 'number' && tuned.bootstrapMs > 0, `Patroni tuned bootstrapMs: ${String(tuned.bootstrapMs)} (errors: ${JSON.stringify(tuned.errors)})`);
    const patroniFailover = tuned.failover.samplesMs[0];
    assert.ok(
      typeof patroniFailover === 'number' && Number.isFinite(patroniFailover) && patroniFailover > 0,
      `Patroni tuned failover sample: ${String(patroniFailover)} (errors: ${JSON.stringify(tuned.errors)})`,
    );

    const pids = report.systems.flatMap((s) => (s.footprint?.processes ?? []).map((p) => ({ ...p, system: `${s.system} ${s.profile}` })));
    assert.ok(pids.length > 0, 'no footprint PIDs recorded');
    await waitUntil(
      () => `the footprint processes to be gone: ${pids.filter((p) => isPidAlive(p.pid)).map((p) => `${p.system} ${p.node}/${p.label} ${p.pid}`).join(', ')}`,
      () => Promise.resolve(pids.every((p) => !isPidAlive(p.pid))),
      10_000,
      200,
    );
  });
});
