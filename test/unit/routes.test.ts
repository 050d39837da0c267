/**
 * Replica routing (src/proxy/routes.ts): a member tagged `noloadbalance` is never a target of the
 * replica port, in the one-connection router (`replicaRoute`) or in the load balancer's sets
 * (`desiredRoutes`); when it is the only streaming replica, reads go to the leader.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { desiredRoutes, readableReplicas, replicaRoute } from '../../src/proxy/routes.js';
import { DEFAULT_NOW_MS, memberRecord, primaryRecord, reachable } from '../builders/observation-builder.js';

const MIB = 16 * 1024 * 1024;

function view(tags: { node2?: object; node3?: object }) {
  return reachable({
    leader: 'node1',
    members: [
      primaryRecord({ name: 'node1' }),
      memberRecord({ name: 'node2', following: 'node1', tags: tags.node2 ?? {} }),
      memberRecord({ name: 'node3', following: 'node1', tags: tags.node3 ?? {} }),
    ],
  });
}

void describe('replica routing and noloadbalance', () => {
  void it('both streaming replicas serve reads without tags', () => {
    assert.deepEqual(readableReplicas(view({}), MIB).map((m) => m.name), ['node2', 'node3']);
    assert.deepEqual(desiredRoutes(view({}), DEFAULT_NOW_MS, MIB).replica.map((t) => t.name), ['node2', 'node3']);
  });

  void it('a noloadbalance replica is never picked, whatever the turn', () => {
    const v = view({ node2: { noloadbalance: true } });
    for (let turn = 0; turn < 6; turn += 1) {
      const route = replicaRoute(v, DEFAULT_NOW_MS, MIB, turn);
      assert.equal(route.kind === 'route' ? route.name : null, 'node3', `turn ${turn}`);
    }
    assert.deepEqual(desiredRoutes(v, DEFAULT_NOW_MS, MIB).replica.map((t) => t.name), ['node3']);
  });

  void it('with every replica noloadbalance, reads go to the leader', () => {
    const v = view({ node2: { noloadbalance: true }, node3: { noloadbalance: true } });
    const route = replicaRoute(v, DEFAULT_NOW_MS, MIB, 0);
    assert.equal(route.kind === 'route' ? route.name : null, 'node1');
    assert.deepEqual(desiredRoutes(v, DEFAULT_NOW_MS, MIB).replica.map((t) => t.name), ['node1']);
  });

  void it('noloadbalance: false is an ordinary replica', () => {
    assert.deepEqual(readableReplicas(view({ node2: { noloadbalance: false } }), MIB).map((m) => m.name), ['node2', 'node3']);
  });
});
