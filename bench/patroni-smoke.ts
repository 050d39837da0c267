/**
 * Smoke test of bench/lib/patroni-cluster.ts against the real Debian Patroni: bootstrap, one
 * planned switchover, a hard failover (kill -9 of the leader's patroni and postmaster), the killed
 * node rejoining, then destroy (always, in `finally`).
 *
 *   npx tsc -p tsconfig.json && node dist/bench/patroni-smoke.js --profile tuned|default [--nodes 3]
 *
 * Prints the timings and a JSON summary on stdout; progress on stderr.
 */
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import pg from 'pg';
import type { BenchCluster, BenchNode } from './lib/bench-cluster.js';
import { createPatroniCluster, patroniVersion } from './lib/patroni-cluster.js';
import { isPidAlive, waitUntil } from '../test/helpers/wait.js';

function log(line: string): void {
  process.stderr.write(`${new Date().toISOString()} ${line}\n`);
}

function show(view: BenchNode[]): string {
  return view
    .map((node) => `  ${node.name} pg:${node.pgPort} ${node.role}${node.streaming ? ' streaming' : ''} patroni:${node.agentPid ?? '-'} postmaster:${node.postmasterPid ?? '-'}`)
    .join('\n');
}

/** Superuser SQL on the current primary through the write endpoints (libpq-style: first read-write). */
async function checkPrimarySql(cluster: BenchCluster): Promise<Record<string, unknown>> {
  for (const endpoint of cluster.writeEndpoints()) {
    const client = new pg.Client({ ...endpoint, user: cluster.user, password: cluster.password, database: cluster.database, connectionTimeoutMillis: 3_000 });
    try {
      await client.connect();
      const row = (
        await client.query<{ in_recovery: boolean; checksums: string; enc: string; trust_rules: string }>(
          `SELECT pg_is_in_recovery() AS in_recovery, current_setting('data_checksums') AS checksums,
                  current_setting('password_encryption') AS enc,
                  (SELECT count(*) FROM pg_hba_file_rules WHERE auth_method <> 'scram-sha-256')::text AS trust_rules`,
        )
      ).rows[0];
      if (row === undefined || row.in_recovery) continue;
      return { port: endpoint.port, data_checksums: row.checksums, password_encryption: row.enc, non_scram_hba_rules: Number(row.trust_rules) };
    } catch {
      // not reachable / not the primary: next endpoint
    } finally {
      await client.end().catch(() => undefined);
    }
  }
  throw new Error('no read-write endpoint answered');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      profile: { type: 'string', default: 'tuned' },
      nodes: { type: 'string', default: '3' },
    },
  });
  const profile = values.profile;
  if (profile !== 'tuned' && profile !== 'default') throw new Error(`--profile must be tuned or default, got ${profile}`);
  const version = await patroniVersion();
  log(`patroni ${version}, profile ${profile}`);

  const created = await createPatroniCluster({ profile, log, nodes: Number(values.nodes) });
  const cluster = created.cluster;
  const summary: Record<string, unknown> = { system: cluster.system, patroniVersion: version, profile, bootstrapMs: created.bootstrapMs, settings: cluster.settings };
  const onSignal = (signal: NodeJS.Signals): void => {
    log(`${signal}: destroying`);
    void cluster.destroy().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    console.log(`bootstrapMs: ${created.bootstrapMs}`);
    console.log(`settings: ${JSON.stringify(cluster.settings)}`);
    console.log(`nodes:\n${show(await cluster.nodes())}`);
    console.log(`sql on primary: ${JSON.stringify(await checkPrimarySql(cluster))}`);

    // Planned switchover.
    let started = performance.now();
    await cluster.switchover();
    const switchoverMs = Math.round(performance.now() - started);
    console.log(`switchover: ${switchoverMs} ms`);
    const afterSwitchover = await cluster.waitHealthy(120_000);
    const switchoverHealthyMs = Math.round(performance.now() - started);
    console.log(`healthy again after switchover: ${switchoverHealthyMs} ms\n${show(afterSwitchover)}`);

    // Hard failover: kill -9 the leader's patroni and its postmaster.
    const leader = afterSwitchover.find((node) => node.role === 'primary');
    if (leader === undefined || leader.agentPid === null || leader.postmasterPid === null) throw new Error('no primary with known PIDs');
    log(`kill -9 ${leader.name}: patroni ${leader.agentPid}, postmaster ${leader.postmasterPid}`);
    started = performance.now();
    process.kill(leader.agentPid, 'SIGKILL');
    process.kill(leader.postmasterPid, 'SIGKILL');
    const newPrimary = await waitUntil(
      `a primary other than ${leader.name}`,
      async () => (await cluster.nodes()).find((node) => node.role === 'primary' && node.name !== leader.name),
      180_000,
      100,
    );
    const failoverMs = Math.round(performance.now() - started);
    console.log(`failover: ${failoverMs} ms (new primary ${newPrimary.name})`);
    console.log(`sql on primary: ${JSON.stringify(await checkPrimarySql(cluster))}`);

    // Postgres children die with their postmaster; wait (bounded) until the killed ones are gone.
    await waitUntil(`${leader.name}'s patroni and postmaster gone`, () => Promise.resolve(!isPidAlive(leader.agentPid ?? 0) && !isPidAlive(leader.postmasterPid ?? 0)), 10_000, 50);

    started = performance.now();
    await cluster.restartNode(leader.name);
    const rejoined = await cluster.waitHealthy(180_000);
    const rejoinMs = Math.round(performance.now() - started);
    console.log(`${leader.name} rejoined, healthy after ${rejoinMs} ms\n${show(rejoined)}`);

    const footprint = await cluster.footprintPids();
    console.log(`footprintPids: ${JSON.stringify(footprint)}`);
    Object.assign(summary, { switchoverMs, switchoverHealthyMs, failoverMs, rejoinMs, footprint });
    console.log(JSON.stringify(summary));
  } finally {
    await cluster.destroy();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

main().catch((error: unknown) => {
  log(`failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
  process.exitCode = 1;
});
