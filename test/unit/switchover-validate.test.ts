/**
 * `validateTarget` (src/operations/switchover.ts), the CLI's check before it writes a
 * switchover/failover intent: each refusal is a PgpilotError with the right code, a hint and
 * exit code 2 for bad input (no leader to switch over from; unknown node; target already leads;
 * target tagged nofailover; target not a running replica; for a switchover only, a target not
 * streaming or lagging beyond the limit or of unknown lag; no streaming candidate when --to is
 * omitted), while good targets, and for a failover a lagging or non-streaming replica, pass.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { validateTarget } from '../../src/operations/switchover.js';
import type { ClusterStatus, MemberStatus } from '../../src/operations/cluster-status.js';
import { PgpilotError, type ErrorCode } from '../../src/shared/errors.js';

const MAX_LAG = 16 * 1024 * 1024;

function member(overrides: Partial<MemberStatus> & { name: string }): MemberStatus {
  const index = Number(/\d+$/.exec(overrides.name)?.[0] ?? '1');
  return {
    role: 'replica',
    state: 'running',
    host: '127.0.0.1',
    port: 15431 + index,
    proxyPort: 16431 + index,
    replicaProxyPort: 17431 + index,
    proxy: null,
    apiUrl: `http://127.0.0.1:${18007 + index}`,
    pid: 1000 + index,
    postgresPid: 2000 + index,
    timeline: 1,
    lsn: '0/3000000',
    lagBytes: 0,
    lagSeconds: 0,
    streaming: true,
    tags: {},
    health: { status: 'ok', summary: 'streaming, 0 B behind' },
    ...overrides,
  };
}

/** node1 leads; node2 and node3 are streaming replicas with no lag, unless overridden. */
function status(overrides: { leader?: string | null; members?: Array<Partial<MemberStatus> & { name: string }> } = {}): ClusterStatus {
  const base: Record<string, Partial<MemberStatus> & { name: string }> = {
    node1: { name: 'node1', role: 'primary', streaming: false, lagBytes: 0 },
    node2: { name: 'node2' },
    node3: { name: 'node3' },
  };
  for (const o of overrides.members ?? []) base[o.name] = { ...base[o.name], ...o };
  const leader = overrides.leader === undefined ? 'node1' : overrides.leader;
  return {
    cluster: 'demo',
    leader,
    timeline: leader === null ? null : 1,
    syncMode: 'off',
    etcd: 'running',
    members: Object.values(base).map(member),
    connectionString: 'postgresql://postgres:****@127.0.0.1:15432/postgres',
    replicaConnectionString: 'postgresql://postgres:****@127.0.0.1:15432/postgres',
  };
}

function refusal(fn: () => void, code: ErrorCode, message: RegExp): PgpilotError {
  let caught: unknown = null;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof PgpilotError, `expected a PgpilotError ${code}, got ${String(caught)}`);
  assert.equal(caught.code, code);
  assert.match(caught.message, message);
  assert.ok(caught.hint !== undefined && caught.hint.length > 0, 'a refusal always says what to do next');
  return caught;
}

void describe('validateTarget refusals', () => {
  void it('a switchover needs a leader to switch over from', () => {
    const error = refusal(() => validateTarget(status({ leader: null }), 'switchover', 'node2', MAX_LAG), 'CLUSTER_NOT_RUNNING', /no leader/);
    assert.match(error.hint ?? '', /pgpilot failover demo --to NODE --yes/);
  });

  void it('an unknown --to node is NODE_NOT_FOUND, and the hint lists the nodes', () => {
    for (const kind of ['switchover', 'failover'] as const) {
      const error = refusal(() => validateTarget(status(), kind, 'node9', MAX_LAG), 'NODE_NOT_FOUND', /node9/);
      assert.equal(error.exitCode, 2);
      assert.match(error.hint ?? '', /node1, node2, node3/);
    }
  });

  void it('the target may not be the current leader', () => {
    for (const kind of ['switchover', 'failover'] as const) {
      const error = refusal(() => validateTarget(status(), kind, 'node1', MAX_LAG), 'INPUT_INVALID', /already the leader/);
      assert.equal(error.exitCode, 2);
    }
  });

  void it('a target tagged nofailover may not lead, for a switchover or a failover', () => {
    const s = status({ members: [{ name: 'node2', tags: { nofailover: true } }] });
    for (const kind of ['switchover', 'failover'] as const) {
      const error = refusal(() => validateTarget(s, kind, 'node2', MAX_LAG), 'INPUT_INVALID', /nofailover/);
      assert.equal(error.exitCode, 2);
    }
  });

  void it('the target must be a running replica (not stopped, not unknown, not a stray primary)', () => {
    const cases: Array<Partial<MemberStatus>> = [
      { role: 'stopped', state: 'stopped', streaming: false, lagBytes: null },
      { role: 'unknown', state: 'agent running, not reporting', streaming: false, lagBytes: null },
      { role: 'primary', state: 'running', streaming: false },
    ];
    for (const overrides of cases) {
      const s = status({ members: [{ name: 'node2', ...overrides }] });
      for (const kind of ['switchover', 'failover'] as const) {
        const error = refusal(() => validateTarget(s, kind, 'node2', MAX_LAG), 'INPUT_INVALID', /not a running replica/);
        assert.equal(error.exitCode, 2);
        assert.match(error.message, new RegExp(overrides.role ?? ''));
      }
    }
  });

  void it('a switchover target must be streaming', () => {
    const s = status({ members: [{ name: 'node2', streaming: false, state: 'running, not streaming' }] });
    const error = refusal(() => validateTarget(s, 'switchover', 'node2', MAX_LAG), 'INPUT_INVALID', /not streaming within the lag limit/);
    assert.equal(error.exitCode, 2);
    assert.match(error.hint ?? '', /pgpilot failover/);
  });

  void it('a switchover target must be within the lag limit (inclusive) and of known lag', () => {
    const over = status({ members: [{ name: 'node2', lagBytes: MAX_LAG + 1 }] });
    const error = refusal(() => validateTarget(over, 'switchover', 'node2', MAX_LAG), 'INPUT_INVALID', new RegExp(`lag ${MAX_LAG + 1} bytes, limit ${MAX_LAG}`));
    assert.equal(error.exitCode, 2);
    const unknown = status({ members: [{ name: 'node2', lagBytes: null }] });
    refusal(() => validateTarget(unknown, 'switchover', 'node2', MAX_LAG), 'INPUT_INVALID', /lag unknown bytes/);
    const at = status({ members: [{ name: 'node2', lagBytes: MAX_LAG }] });
    assert.doesNotThrow(() => validateTarget(at, 'switchover', 'node2', MAX_LAG));
  });

  void it('with --to omitted, some replica must be streaming and allowed to lead', () => {
    const none = status({
      members: [
        { name: 'node2', streaming: false },
        { name: 'node3', tags: { nofailover: true } },
      ],
    });
    for (const kind of ['switchover', 'failover'] as const) {
      const error = refusal(() => validateTarget(none, kind, undefined, MAX_LAG), 'INPUT_INVALID', /no streaming replica/);
      assert.equal(error.exitCode, 2);
    }
    const stopped = status({
      members: [
        { name: 'node2', role: 'stopped', streaming: false },
        { name: 'node3', role: 'stopped', streaming: false },
      ],
    });
    refusal(() => validateTarget(stopped, 'switchover', undefined, MAX_LAG), 'INPUT_INVALID', /no streaming replica/);
  });

  void it('the missing leader is reported before anything about the target', () => {
    refusal(() => validateTarget(status({ leader: null }), 'switchover', 'node9', MAX_LAG), 'CLUSTER_NOT_RUNNING', /no leader/);
  });
});

void describe('validateTarget acceptance', () => {
  void it('accepts a streaming replica within the lag limit, for a switchover and a failover', () => {
    for (const kind of ['switchover', 'failover'] as const) {
      assert.doesNotThrow(() => validateTarget(status(), kind, 'node2', MAX_LAG));
      assert.doesNotThrow(() => validateTarget(status(), kind, 'node3', MAX_LAG));
    }
  });

  void it('accepts --to omitted when one replica streams and may lead', () => {
    const s = status({ members: [{ name: 'node2', streaming: false }] });
    assert.doesNotThrow(() => validateTarget(s, 'switchover', undefined, MAX_LAG));
    assert.doesNotThrow(() => validateTarget(s, 'failover', undefined, MAX_LAG));
  });

  void it('a forced failover accepts a lagging, unknown-lag or non-streaming replica', () => {
    const cases: Array<Partial<MemberStatus>> = [{ lagBytes: MAX_LAG * 10 }, { lagBytes: null }, { streaming: false, state: 'running, not streaming' }];
    for (const overrides of cases) {
      const s = status({ members: [{ name: 'node2', ...overrides }] });
      assert.doesNotThrow(() => validateTarget(s, 'failover', 'node2', MAX_LAG), JSON.stringify(overrides));
    }
  });

  void it('a failover needs no current leader', () => {
    const s = status({ leader: null, members: [{ name: 'node1', role: 'stopped', state: 'stopped', streaming: false, lagBytes: null }] });
    assert.doesNotThrow(() => validateTarget(s, 'failover', 'node2', MAX_LAG));
    assert.doesNotThrow(() => validateTarget(s, 'failover', undefined, MAX_LAG));
  });
});
