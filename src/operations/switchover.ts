/**
 * Switchover and failover on any ClusterHandle (shared by the CLI and, later, the REST API):
 * `switchover` is planned (the target catches up first, nothing committed is lost), `failover`
 * forced (no catch-up wait). Both only validate, write an intent to etcd and wait for the agents
 * to carry it out, reporting progress; only agents change roles. Bad targets change nothing, and
 * an intent that is not carried out in time is withdrawn (compare-and-delete on its value).
 */
import type { ClusterHandle } from '../cluster/cluster-handle.js';
import { clusterKeys } from '../dcs/keys.js';
import { recordEvent } from '../state/events.js';
import { INTENT_TIMEOUT_MS, type FailoverIntent } from '../state/intent.js';
import type { ClusterStatus } from './cluster-status.js';
import type { OperationDeps } from './operation-deps.js';
import { PgpilotError } from '../shared/errors.js';

export interface SwitchoverRequest {
  kind: 'switchover' | 'failover';
  /** The node that should lead; undefined: the best replica (the agents choose). */
  to?: string | undefined;
  /** A forced failover needs it (CONFIRMATION_REQUIRED otherwise). */
  yes: boolean;
  timeoutSeconds: number;
}

export interface SwitchoverResult {
  before: ClusterStatus;
  /** The settled status after the hand-over (followers streaming, or the deadline passed). */
  status: ClusterStatus;
  tookMs: number;
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
async function waitForFollowers(handle: ClusterHandle, deps: OperationDeps, before: ClusterStatus, moved: ClusterStatus): Promise<ClusterStatus> {
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
      deps.progress(`warning: not streaming yet after ${FOLLOWERS_TIMEOUT_MS / 1000} s: ${waiting.join(', ')} (see pgpilot status ${handle.name})`);
      return status;
    }
    await deps.clock.sleep(200);
    status = await handle.status();
  }
}

const FOLLOWERS_TIMEOUT_MS = 30_000;

export async function switchover(handle: ClusterHandle, request: SwitchoverRequest, deps: OperationDeps): Promise<SwitchoverResult> {
  const name = handle.name;
  if (request.kind === 'failover' && !request.yes) {
    throw new PgpilotError('CONFIRMATION_REQUIRED', 'a forced failover may lose transactions the new leader has not received', {
      hint: `prefer: pgpilot switchover ${name}; or confirm with: pgpilot failover ${name}${request.to === undefined ? '' : ` --to ${request.to}`} --yes`,
      exitCode: 2,
    });
  }
  const before = await handle.status();
  if (before.etcd !== 'running') {
    throw new PgpilotError('CLUSTER_NOT_RUNNING', `cluster ${name} is not running`, {
      hint: handle.kind === 'local' ? `start it with: pgpilot start ${name}` : `its etcd is unreachable from here; check the hosts (systemctl status pgpilot@${name})`,
    });
  }
  const { dcs, config } = await handle.openDcs();
  const keys = clusterKeys(name);
  try {
    validateTarget(before, request.kind, request.to, config.maximumLagOnFailoverBytes);
    const startedMs = deps.clock.nowMs();
    const intent: FailoverIntent = { kind: request.kind, from: before.leader, to: request.to ?? null, requestedAtMs: startedMs };
    if (!(await dcs.createIfAbsent(keys.failover, JSON.stringify(intent)))) {
      throw new PgpilotError('INPUT_INVALID', `a switchover or failover of ${name} is already in progress`, {
        hint: 'wait for it to finish (pgpilot events), then try again',
        exitCode: 2,
      });
    }
    await recordEvent(dcs, keys, {
      at: new Date(startedMs).toISOString(),
      kind: request.kind === 'switchover' ? 'switchover-requested' : 'failover-requested',
      node: before.leader ?? '-',
      message: `${request.kind} requested from ${before.leader ?? 'no leader'} to ${request.to ?? 'the best replica'}`,
      timeline: before.timeline,
    });
    deps.progress(`${request.kind}: ${before.leader ?? 'no leader'} -> ${request.to ?? 'best replica'} requested`);
    const deadlineMs = startedMs + Math.min(request.timeoutSeconds * 1000, INTENT_TIMEOUT_MS);
    let status = before;
    let lastLine = '';
    for (;;) {
      status = await handle.status();
      const line = status.members.map((m) => `${m.name}=${m.role}${m.name === status.leader ? '*' : ''}`).join(' ');
      if (line !== lastLine) {
        deps.progress(`  ${line}`);
        lastLine = line;
      }
      const leader = status.members.find((m) => m.name === status.leader);
      const moved = leader !== undefined && leader.role === 'primary' && leader.name !== before.leader && (request.to === undefined || leader.name === request.to);
      if (moved) break;
      if (deps.clock.nowMs() >= deadlineMs) {
        await dcs.deleteIfEquals(keys.failover, JSON.stringify(intent)).catch(() => undefined);
        throw new PgpilotError('TIMEOUT', `${request.kind} did not complete within ${Math.round((deadlineMs - startedMs) / 1000)} s; the intent was withdrawn`, {
          hint: `see pgpilot events ${name} and the agent logs`,
          retryable: true,
        });
      }
      await deps.clock.sleep(100);
    }
    const tookMs = deps.clock.nowMs() - startedMs;
    deps.progress(`${status.leader ?? '?'} leads (timeline ${status.timeline ?? '?'}) after ${tookMs} ms`);
    status = await waitForFollowers(handle, deps, before, status);
    return { before, status, tookMs };
  } finally {
    await dcs.close().catch(() => undefined);
  }
}
