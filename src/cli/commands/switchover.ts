/**
 * `pgpilot switchover NAME [--to NODE]` (planned: the target catches up first, nothing committed
 * is lost) and `pgpilot failover NAME [--to NODE] --yes` (forced: no catch-up wait). Both only
 * validate, write an intent to etcd and wait for the agents to carry it out, printing progress;
 * only agents change roles. Bad targets change nothing.
 */
import { clusterKeys } from '../../dcs/keys.js';
import { recordEvent } from '../../state/events.js';
import { INTENT_TIMEOUT_MS, type FailoverIntent } from '../../state/intent.js';
import { clusterStatus, openClusterDcs, validateClusterName, type ProviderDeps } from '../../providers/local/local-provider.js';
import { withoutSecrets, type ClusterStatus } from '../../providers/local/cluster-status.js';
import { readManifest } from '../../providers/local/cluster-store.js';
import { PgpilotError } from '../../shared/errors.js';
import { printJson, type Output } from '../output.js';

export interface SwitchoverOptions {
  home: string;
  name: string;
  to?: string;
  kind: 'switchover' | 'failover';
  yes: boolean;
  json: boolean;
  timeoutSeconds: number;
}

export function validateTarget(status: ClusterStatus, kind: 'switchover' | 'failover', to: string | undefined, maxLagBytes: number): void {
  const nodes = status.members.map((m) => m.name).join(', ');
  const syncMode = status.synchronous?.mode === 'quorum';
  if (kind === 'switchover' && status.leader === null) {
    throw new PgpilotError('CLUSTER_NOT_RUNNING', `cluster ${status.cluster} has no leader to switch over from`, {
      hint: `with no leader, force one with: pgpilot failover ${status.cluster} --to NODE --yes`,
    });
  }
  if (to === undefined) {
    const candidates = status.members.filter(
      (m) =>
        m.role === 'replica' &&
        m.streaming &&
        m.tags.nofailover !== true &&
        (!syncMode || m.sync === true) &&
        (kind === 'failover' || (m.lagBytes !== null && m.lagBytes <= maxLagBytes)),
    );
    if (candidates.length === 0) {
      throw new PgpilotError('INPUT_INVALID', `no streaming replica of ${status.cluster} can take over`, {
        hint: 'wait until a replica streams (pgpilot status), or add nodes',
        exitCode: 2,
      });
    }
    return;
  }
  const target = status.members.find((m) => m.name === to);
  if (target === undefined) {
    throw new PgpilotError('NODE_NOT_FOUND', `no node ${to} in cluster ${status.cluster}`, { hint: `nodes: ${nodes}`, exitCode: 2 });
  }
  if (to === status.leader) {
    throw new PgpilotError('INPUT_INVALID', `${to} is already the leader`, { hint: 'choose a replica with --to, or omit --to', exitCode: 2 });
  }
  if (target.tags.nofailover === true) {
    throw new PgpilotError('INPUT_INVALID', `${to} is tagged nofailover and may not lead`, { hint: 'choose another node with --to', exitCode: 2 });
  }
  // Sync mode: only a member of the published synchronous set may lead (src/ha/sync-set.ts); the
  // agents refuse such an intent too.
  if (syncMode && target.sync !== true) {
    const members = status.synchronous?.members ?? [];
    throw new PgpilotError('INPUT_INVALID', `${to} is not in the synchronous set (${members.join(', ') || 'empty'}) and may not lead in sync mode`, {
      hint: `choose one of the synchronous replicas, wait until ${to} joins the set (pgpilot status), or turn sync mode off: pgpilot config update ${status.cluster} --synchronous off`,
      exitCode: 2,
    });
  }
  if (target.role !== 'replica') {
    throw new PgpilotError('INPUT_INVALID', `${to} is not a running replica (${target.role}, ${target.state})`, {
      hint: 'choose a streaming replica (pgpilot status)',
      exitCode: 2,
    });
  }
  if (kind === 'switchover' && (!target.streaming || target.lagBytes === null || target.lagBytes > maxLagBytes)) {
    throw new PgpilotError('INPUT_INVALID', `${to} is not streaming within the lag limit (lag ${target.lagBytes ?? 'unknown'} bytes, limit ${maxLagBytes})`, {
      hint: 'wait for it to catch up, choose another node, or force with: pgpilot failover --to NODE --yes',
      exitCode: 2,
    });
  }
}

/**
 * After the hand-over, waits (bounded) until every member that ran before streams from the new
 * leader, so that the command returns a settled cluster and a second switchover can follow at once.
 * Not converging in time is reported, not an error: the new leader already serves writes.
 */
async function waitForFollowers(options: SwitchoverOptions, deps: ProviderDeps, before: ClusterStatus, moved: ClusterStatus): Promise<ClusterStatus> {
  const expected = before.members.filter((m) => m.role === 'primary' || m.role === 'replica').map((m) => m.name);
  const deadlineMs = deps.clock.nowMs() + FOLLOWERS_TIMEOUT_MS;
  let status = moved;
  for (;;) {
    const waiting = expected.filter((name) => {
      const member = status.members.find((m) => m.name === name);
      return name !== status.leader && !(member?.role === 'replica' && member.streaming && member.timeline === status.timeline);
    });
    if (waiting.length === 0) return status;
    if (deps.clock.nowMs() >= deadlineMs) {
      deps.progress(`warning: not streaming yet after ${FOLLOWERS_TIMEOUT_MS / 1000} s: ${waiting.join(', ')} (see pgpilot status ${options.name})`);
      return status;
    }
    await deps.clock.sleep(200);
    status = await clusterStatus(options.home, options.name);
  }
}

const FOLLOWERS_TIMEOUT_MS = 30_000;

export async function run(options: SwitchoverOptions, deps: ProviderDeps, output: Output): Promise<number> {
  const name = validateClusterName(options.name);
  const manifest = await readManifest(options.home, name);
  if (options.kind === 'failover' && !options.yes) {
    throw new PgpilotError('CONFIRMATION_REQUIRED', 'a forced failover may lose transactions the new leader has not received', {
      hint: `prefer: pgpilot switchover ${name}; or confirm with: pgpilot failover ${name}${options.to === undefined ? '' : ` --to ${options.to}`} --yes`,
      exitCode: 2,
    });
  }
  const before = await clusterStatus(options.home, name);
  if (before.etcd !== 'running') {
    throw new PgpilotError('CLUSTER_NOT_RUNNING', `cluster ${name} is not running`, { hint: `start it with: pgpilot start ${name}` });
  }
  const { dcs, config } = await openClusterDcs(manifest);
  const keys = clusterKeys(name);
  try {
    validateTarget(before, options.kind, options.to, config.maximumLagOnFailoverBytes);
    const startedMs = deps.clock.nowMs();
    const intent: FailoverIntent = { kind: options.kind, from: before.leader, to: options.to ?? null, requestedAtMs: startedMs };
    if (!(await dcs.createIfAbsent(keys.failover, JSON.stringify(intent)))) {
      throw new PgpilotError('INPUT_INVALID', `a switchover or failover of ${name} is already in progress`, {
        hint: 'wait for it to finish (pgpilot events), then try again',
        exitCode: 2,
      });
    }
    await recordEvent(dcs, keys, {
      at: new Date(startedMs).toISOString(),
      kind: options.kind === 'switchover' ? 'switchover-requested' : 'failover-requested',
      node: before.leader ?? '-',
      message: `${options.kind} requested from ${before.leader ?? 'no leader'} to ${options.to ?? 'the best replica'}`,
      timeline: before.timeline,
    });
    deps.progress(`${options.kind}: ${before.leader ?? 'no leader'} -> ${options.to ?? 'best replica'} requested`);
    const deadlineMs = startedMs + Math.min(options.timeoutSeconds * 1000, INTENT_TIMEOUT_MS);
    let status = before;
    let lastLine = '';
    for (;;) {
      status = await clusterStatus(options.home, name);
      const line = status.members.map((m) => `${m.name}=${m.role}${m.name === status.leader ? '*' : ''}`).join(' ');
      if (line !== lastLine) {
        deps.progress(`  ${line}`);
        lastLine = line;
      }
      const leader = status.members.find((m) => m.name === status.leader);
      const moved = leader !== undefined && leader.role === 'primary' && leader.name !== before.leader && (options.to === undefined || leader.name === options.to);
      if (moved) break;
      if (deps.clock.nowMs() >= deadlineMs) {
        await dcs.deleteIfEquals(keys.failover, JSON.stringify(intent)).catch(() => undefined);
        throw new PgpilotError('TIMEOUT', `${options.kind} did not complete within ${Math.round((deadlineMs - startedMs) / 1000)} s; the intent was withdrawn`, {
          hint: `see pgpilot events ${name} and the agent logs`,
          retryable: true,
        });
      }
      await deps.clock.sleep(100);
    }
    const tookMs = deps.clock.nowMs() - startedMs;
    deps.progress(`${status.leader ?? '?'} leads (timeline ${status.timeline ?? '?'}) after ${tookMs} ms`);
    status = await waitForFollowers(options, deps, before, status);
    if (options.json) printJson(output, { ...withoutSecrets(status), tookMs });
    else output.out(`${options.kind} done: ${before.leader ?? 'no leader'} -> ${status.leader ?? '?'} in ${(tookMs / 1000).toFixed(1)} s (timeline ${status.timeline ?? '?'})`);
    return 0;
  } finally {
    await dcs.close().catch(() => undefined);
  }
}
