/**
 * The chaos suite end to end, as a smoke test: `node dist/chaos/run.js --faults 5` (fixed seed,
 * short holds) in a child process, then its JSON report: 5 faults ran, each converged, the probe
 * saw writes and no split-brain, the workload got acknowledged writes, and nothing of the run is
 * left (namespaces, the processes it recorded, tmpfs mounts). Seed 490 draws five different kinds:
 * kill-agent of the leader, etcd-member-restart of the leader's host (SIGTERM), disk-full of a
 * replica host (which also starves its etcd member), partition of the leader (incoming), and
 * stop-agent of the leader.
 *
 * Mode: sync (synchronous: quorum), so a lost acknowledged write fails the run, as does any
 * split-brain episode or a fault after which the cluster did not converge. Needs root and
 * `ip netns`: skipped, saying why, without them.
 * The child is bounded: SIGINT at 5 minutes (the runner cleans up on SIGINT), SIGKILL 60 s later.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { runBounded, type BoundedRunResult } from '../helpers/run-bounded.js';
import { isPidAlive } from '../helpers/wait.js';

const RUN_TIMEOUT_MS = 5 * 60_000;
const KILL_GRACE_MS = 60_000;

function skipReason(): string | false {
  if (process.getuid?.() !== 0) return 'the chaos suite needs root (network namespaces, nftables, tmpfs mounts)';
  const probe = `pgp-chaos-testprobe${process.pid}`;
  const add = spawnSync('ip', ['netns', 'add', probe], { encoding: 'utf8' });
  if (add.error !== undefined || add.status !== 0) return `ip netns is not permitted here: ${add.error?.message ?? add.stderr.trim()}`;
  spawnSync('ip', ['netns', 'del', probe]);
  return false;
}


function runChaos(args: string[]): Promise<BoundedRunResult> {
  return runBounded('dist/chaos/run.js', args, { timeoutMs: RUN_TIMEOUT_MS, killGraceMs: KILL_GRACE_MS });
}

interface Report {
  kind: string;
  runId: string;
  seed: number;
  mode: string;
  faults: Array<{ kind: string; converged: boolean; error: string | null }>;
  workload: { acked: number };
  lost: { count: number };
  probe: { ok: number };
  splitBrain: { episodes: number };
  converged: number;
  passed: boolean;
  failures: string[];
  summary: string;
  workDir: string;
}

const reason = skipReason();

void describe('npm run chaos -- --faults 5 (smoke)', { timeout: RUN_TIMEOUT_MS + KILL_GRACE_MS + 60_000 }, () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'pgpilot-chaos-test-'));
  // postgres runs as the postgres OS user: the run's home below must be reachable by it.
  chmodSync(dir, 0o755);
  const out = path.join(dir, 'chaos.json');

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  void it('runs 5 faults, converges after each, sees no split-brain, and leaves nothing behind', { skip: reason }, async () => {
    const run = await runChaos(['--faults', '5', '--seed', '490', '--mode', 'sync', '--hold-min-ms', '2000', '--hold-max-ms', '6000', '--converge-timeout-s', '60', '--out', out, '--home', path.join(dir, 'home'), '--remove-work-dir']);
    const tail = `${run.stderr.split('\n').slice(-40).join('\n')}\n${run.stdout}`;
    assert.equal(run.timedOut, false, `the chaos smoke did not finish within ${RUN_TIMEOUT_MS / 60_000} min:\n${tail}`);

    const report = JSON.parse(await readFile(out, 'utf8')) as Report;
    assert.equal(report.kind, 'chaos');
    assert.equal(report.seed, 490);
    assert.equal(report.mode, 'sync');
    assert.equal(report.lost.count, 0, `acknowledged writes lost in sync mode:\n${tail}`);
    assert.match(run.stdout, /^chaos: 5 faults, seed 490, mode sync: acked \d+, lost \d+, split-brain \d+, converged \d+\/5$/m, tail);
    assert.equal(report.faults.length, 5, tail);
    assert.deepEqual(report.faults.filter((f) => f.error !== null), [], 'faults that could not be applied or healed');
    assert.deepEqual(
      report.faults.map((f) => f.kind),
      ['kill-agent', 'etcd-member-restart', 'disk-full', 'partition', 'stop-agent'],
      'the fault plan of seed 490',
    );
    assert.equal(report.converged, 5, `faults without convergence:\n${tail}`);
    assert.equal(report.splitBrain.episodes, 0, `split-brain episodes:\n${tail}`);
    assert.ok(report.workload.acked > 100, `acknowledged writes: ${report.workload.acked}`);
    assert.ok(report.probe.ok > 50, `successful probe writes: ${report.probe.ok}`);
    assert.equal(run.code, 0, `chaos exited ${run.code ?? run.signal} (${report.failures.join('; ')}):\n${tail}`);

    // Nothing of the run is left: its namespaces, mounts, or the processes it recorded.
    const namespaces = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout;
    assert.ok(!namespaces.includes(report.runId), `namespaces of ${report.runId} left:\n${namespaces}`);
    const mounts = readFileSync('/proc/self/mounts', 'utf8');
    assert.ok(!mounts.includes(report.runId), `mounts of ${report.runId} left`);
    assert.match(run.stderr, /cleanup done: no namespace, mount or process of this run is left/);
    const pidLines = [...run.stderr.matchAll(/\(pid (\d+)/g)].map((m) => Number(m[1]));
    assert.ok(pidLines.length >= 4, 'the run printed the PIDs it started');
    assert.deepEqual(pidLines.filter((pid) => isPidAlive(pid)), [], 'processes of the run still alive');
  });
});
