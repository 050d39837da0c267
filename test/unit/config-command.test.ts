/**
 * `pgpilot config update` (src/cli/commands/config.ts `applyConfigUpdates`): merging flags over the
 * stored config, validation of the whole result with flag names in the message, the change list;
 * and sync mode in `status` (src/operations/cluster-status.ts, src/cli/commands/status.ts):
 * the published set, `sync` per member, only when the current leader published it; and the
 * switchover check that refuses a target outside the set in sync mode.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { applyConfigUpdates } from '../../src/cli/commands/config.js';
import { describeSync, renderStatus } from '../../src/cli/commands/status.js';
import { validateTarget } from '../../src/operations/switchover.js';
import { defaultDynamicConfig } from '../../src/config/schema.js';
import { buildClusterStatus, type StatusInputs } from '../../src/operations/cluster-status.js';
import { isPgpilotError } from '../../src/shared/errors.js';
import { clusterManifest, clusterSecrets } from '../builders/manifest-builder.js';
import { memberRecord, primaryRecord } from '../builders/observation-builder.js';
import { localTopology } from '../../src/providers/local/local-topology.js';

void describe('config update: applyConfigUpdates', () => {
  void it('merges, validates and lists the changes', () => {
    const { next, changes } = applyConfigUpdates(defaultDynamicConfig(), { synchronous: 'quorum', synchronousNodeCount: 2, synchronousStrict: true });
    assert.equal(next.synchronous, 'quorum');
    assert.equal(next.synchronousNodeCount, 2);
    assert.equal(next.synchronousStrict, true);
    assert.deepEqual(
      changes.map((c) => c.key),
      ['synchronous', 'synchronousStrict', 'synchronousNodeCount'],
    );
    assert.equal(next.ttlSeconds, defaultDynamicConfig().ttlSeconds, 'other settings unchanged');
  });
  void it('no change when the values are already set', () => {
    assert.deepEqual(applyConfigUpdates(defaultDynamicConfig(), { synchronous: 'off', failsafe: false }).changes, []);
  });
  void it('refuses invalid values with the flag name, and cross-field rules', () => {
    const expectInvalid = (updates: Parameters<typeof applyConfigUpdates>[1], pattern: RegExp): void => {
      assert.throws(
        () => applyConfigUpdates(defaultDynamicConfig(), updates),
        (error: unknown) => isPgpilotError(error) && error.code === 'CONFIG_INVALID' && pattern.test(error.message) && error.exitCode === 2,
      );
    };
    expectInvalid({ synchronous: 'sometimes' }, /--synchronous/);
    expectInvalid({ synchronousNodeCount: 0 }, /--synchronous-node-count/);
    expectInvalid({ loopWaitMs: 4000 }, /--loop-wait-ms: loopWaitMs must be less than half of ttlSeconds/);
    expectInvalid({ ttlSeconds: 1 }, /--ttl-seconds/);
  });
});

void describe('status: sync mode', () => {
  const inputs = (overrides: Partial<StatusInputs> = {}): StatusInputs => ({
    topology: localTopology(clusterManifest({ nodes: 3 })),
    secrets: clusterSecrets(),
    etcd: 'running',
    leader: 'node1',
    members: [primaryRecord({ name: 'node1' }), memberRecord({ name: 'node2', following: 'node1' }), memberRecord({ name: 'node3', following: 'node1' })],
    syncMode: 'quorum',
    aliveAgents: new Map([
      ['node1', 1001],
      ['node2', 1002],
      ['node3', 1003],
    ]),
    synchronous: { strict: true, nodeCount: 1, set: { leader: 'node1', members: ['node2'], quorum: 1 } },
    ...overrides,
  });
  void it('reports the published set and marks its members', () => {
    const status = buildClusterStatus(inputs());
    assert.deepEqual(status.synchronous, { mode: 'quorum', strict: true, nodeCount: 1, quorum: 1, members: ['node2'] });
    assert.deepEqual(
      status.members.map((m) => [m.name, m.sync]),
      [
        ['node1', false],
        ['node2', true],
        ['node3', false],
      ],
    );
    assert.equal(describeSync(status), 'quorum: ANY 1 of node2, strict');
    assert.match(renderStatus(status, { showPasswords: false }), /node2 +replica \(sync\)/);
  });
  void it('a set published by an earlier leader is not the current one', () => {
    const status = buildClusterStatus(inputs({ synchronous: { strict: false, nodeCount: 1, set: { leader: 'node3', members: ['node1', 'node2'], quorum: 1 } } }));
    assert.deepEqual(status.synchronous?.members, []);
    assert.ok(status.members.every((m) => m.sync === false));
    assert.match(describeSync(status), /no synchronous replica published/);
  });
  void it('sync off: the old fields, `sync` false everywhere', () => {
    const status = buildClusterStatus(inputs({ syncMode: 'off', synchronous: undefined }));
    assert.equal(status.syncMode, 'off');
    assert.equal(describeSync(status), 'off');
  });
  void it('switchover: a target outside the set is refused in sync mode; without --to, a set member is needed', () => {
    const status = buildClusterStatus(inputs());
    assert.throws(() => validateTarget(status, 'switchover', 'node3', 16 * 1024 * 1024), /not in the synchronous set \(node2\)/);
    assert.doesNotThrow(() => validateTarget(status, 'switchover', 'node2', 16 * 1024 * 1024));
    assert.doesNotThrow(() => validateTarget(status, 'switchover', undefined, 16 * 1024 * 1024));
    const none = buildClusterStatus(inputs({ synchronous: { strict: false, nodeCount: 1, set: { leader: 'node1', members: [], quorum: 0 } } }));
    assert.throws(() => validateTarget(none, 'switchover', undefined, 16 * 1024 * 1024), /no streaming replica/);
  });
});
