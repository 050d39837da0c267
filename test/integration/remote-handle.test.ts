/**
 * The remote ClusterHandle against real processes (no network namespace needed): a local cluster
 * is exported as an admin context (`pgpilot cluster context NAME --out FILE`), then managed through
 * it with PGPILOT_HOME pointing at an EMPTY home, so nothing can come from the cluster directory:
 * - `status --context FILE --json` shows the same leader, members and roles as the local status;
 *   `PGPILOT_CONTEXT=FILE pgpilot status NAME` too;
 * - `switchover --context FILE --to X --yes` moves the leader; `events --context` records it;
 * - `connect --context FILE` reaches the writable leader through the proxy ports (verify-full TLS);
 * - `config show --context` reads /config; `stop --context` is refused with LOCAL_ONLY (the
 *   cluster keeps running); a context for another name is refused with exit 2.
 * `after` destroys the cluster and removes every temporary directory, even on failure.
 */
import assert from 'node:assert/strict';
import { existsSync, statSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ClusterStatus } from '../../src/operations/cluster-status.js';
import type { ClusterEvent } from '../../src/state/events.js';
import { makeTempHome, removeTempHome, runCli, type CliResult } from '../helpers/cli.js';
import { waitUntil } from '../helpers/wait.js';

const NAME = 'rmt';

function ok(result: CliResult, what: string): CliResult {
  assert.equal(result.code, 0, `${what}: exit ${result.code}\n${result.stderr}\n${result.stdout}`);
  return result;
}

function roles(status: ClusterStatus): string[] {
  return status.members.map((m) => `${m.name}=${m.role}${m.streaming ? '+streaming' : ''}`);
}

void describe('managing a cluster through an admin context (--context / PGPILOT_CONTEXT)', { timeout: 600_000 }, () => {
  let home = '';
  let elsewhere = '';
  let contextFile = '';

  const local = async (): Promise<ClusterStatus> => JSON.parse(ok(await runCli(['status', NAME, '--json'], { home }), 'local status').stdout) as ClusterStatus;
  const remote = async (...args: string[]): Promise<CliResult> => runCli([...args], { home: elsewhere, timeoutMs: 180_000 });

  before(async () => {
    home = makeTempHome('remote-handle');
    elsewhere = makeTempHome('remote-handle-operator');
    contextFile = path.join(elsewhere, 'contexts', `${NAME}.context.json`);
    ok(await runCli(['create', NAME, '--nodes', '3'], { home, timeoutMs: 240_000 }), 'create');
  });

  after(async () => {
    if (existsSync(path.join(home, 'clusters', NAME))) await runCli(['destroy', NAME, '--yes'], { home, timeoutMs: 120_000 });
    await removeTempHome(home);
    await removeTempHome(elsewhere);
  });

  void it('exports the context 0600 and never over an existing file', async () => {
    await mkdir(path.dirname(contextFile), { recursive: true });
    const written = ok(await runCli(['cluster', 'context', NAME, '--out', contextFile, '--json'], { home }), 'cluster context');
    assert.equal((JSON.parse(written.stdout) as { contextFile: string }).contextFile, contextFile);
    assert.equal(statSync(contextFile).mode & 0o777, 0o600);
    assert.doesNotMatch(written.stdout, /BEGIN|password/i, 'the JSON summary carries no secret');
    const again = await runCli(['cluster', 'context', NAME, '--out', contextFile], { home });
    assert.equal(again.code, 2);
    assert.match(again.stderr, /already exists/);
  });

  void it('status through the context matches the local status (from an empty home)', async () => {
    const mine = await local();
    const result = ok(await remote('status', NAME, '--context', contextFile, '--json'), 'remote status');
    const theirs = JSON.parse(result.stdout) as ClusterStatus;
    assert.equal(theirs.leader, mine.leader);
    assert.equal(theirs.etcd, 'running');
    assert.deepEqual(roles(theirs), roles(mine));
    assert.deepEqual(
      theirs.members.map((m) => [m.name, m.port, m.proxyPort, m.apiUrl, m.pid, m.health.status]),
      mine.members.map((m) => [m.name, m.port, m.proxyPort, m.apiUrl, m.pid, m.health.status]),
      'same ports, REST URLs and agent PIDs (from the member records)',
    );
    assert.deepEqual(Object.keys(theirs).sort(), Object.keys(mine).sort(), 'the same status contract');
    assert.equal(theirs.tls?.caFile, path.join(path.dirname(contextFile), `${NAME}.ca.crt`), 'the CA file next to the context');
    assert.match(theirs.connectionString, /sslmode=verify-full/);

    const fromEnv = ok(await runCli(['status', NAME, '--json'], { home: elsewhere, env: { PGPILOT_CONTEXT: contextFile } }), 'PGPILOT_CONTEXT status');
    assert.equal((JSON.parse(fromEnv.stdout) as ClusterStatus).leader, mine.leader);
    // Without a context, the empty home has no such cluster: the status above came through the context.
    assert.notEqual((await remote('status', NAME, '--json')).code, 0);
  });

  void it('connect through the context reaches the writable leader over verify-full TLS', async () => {
    const result = ok(await remote('connect', NAME, '--context', contextFile, '--', '-tAc', 'SELECT pg_is_in_recovery()'), 'remote connect');
    assert.equal(result.stdout.trim(), 'f');
    const config = ok(await remote('config', 'show', NAME, '--context', contextFile, '--json'), 'remote config show');
    assert.equal((JSON.parse(config.stdout) as { synchronous: string }).synchronous, 'off');
  });

  void it('switchover through the context moves the leader, and events show it', async () => {
    const before = await local();
    const target = before.members.find((m) => m.name !== before.leader && m.role === 'replica' && m.streaming)?.name;
    assert.ok(target !== undefined, `a streaming replica in ${roles(before).join(' ')}`);
    ok(await remote('switchover', NAME, '--context', contextFile, '--to', target, '--yes'), 'remote switchover');
    await waitUntil(`${target} leads`, async () => (await local()).leader === target, 30_000);
    const events = JSON.parse(ok(await remote('events', NAME, '--context', contextFile, '--json'), 'remote events').stdout) as ClusterEvent[];
    assert.ok(events.some((e) => e.kind === 'switchover-requested' && e.message.includes(target)), 'switchover-requested recorded');
  });

  void it('stop through the context is refused with LOCAL_ONLY and a hint; the cluster keeps running', async () => {
    const result = await remote('stop', NAME, '--context', contextFile);
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /pgpilot stop works on a local cluster only/);
    assert.match(result.stderr, /hint: .*systemctl stop\/start pgpilot@rmt/);
    const viaEnv = await runCli(['stop', NAME], { home: elsewhere, env: { PGPILOT_CONTEXT: contextFile } });
    assert.notEqual(viaEnv.code, 0);
    assert.match(viaEnv.stderr, /local cluster only/);
    const mismatch = await remote('status', 'other', '--context', contextFile);
    assert.equal(mismatch.code, 2);
    assert.match(mismatch.stderr, /is for cluster rmt, not other/);
    assert.notEqual((await local()).leader, null, 'still running');
  });
});
