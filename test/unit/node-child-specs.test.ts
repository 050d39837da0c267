/** The children `node run --bundle` starts (src/node/node-run.ts): the etcd member's argv and the agent's. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { agentChildSpec, AGENT_STOP_GRACE_MS, etcdChildSpec } from '../../src/node/node-run.js';
import { nodeLayout } from '../../src/node/node-layout.js';
import { nodeBundle } from '../builders/bundle-builder.js';

function flagValue(argv: string[], flag: string): string | undefined {
  const index = argv.indexOf(flag);
  return index === -1 ? undefined : argv[index + 1];
}

void describe('node run child specs', () => {
  const layout = nodeLayout('/var/lib/pgpilot/demo-node2');

  void it('runs the etcd member of the bundle on the host address (and loopback) with its member certificate', () => {
    const bundle = nodeBundle({ node: 'node2' });
    const spec = etcdChildSpec(bundle, layout, '/usr/bin/etcd');
    assert.ok(spec !== null);
    assert.equal(spec.command, '/usr/bin/etcd');
    assert.equal(flagValue(spec.args, '--name'), 'node2');
    assert.equal(flagValue(spec.args, '--data-dir'), '/var/lib/pgpilot/demo-node2/etcd');
    assert.equal(flagValue(spec.args, '--listen-client-urls'), 'https://10.0.0.2:2379,https://127.0.0.1:2379');
    assert.equal(flagValue(spec.args, '--advertise-client-urls'), 'https://10.0.0.2:2379');
    assert.equal(flagValue(spec.args, '--listen-peer-urls'), 'https://10.0.0.2:2380');
    assert.equal(flagValue(spec.args, '--initial-cluster'), 'node1=https://10.0.0.1:2380,node2=https://10.0.0.2:2380,node3=https://10.0.0.3:2380');
    assert.equal(flagValue(spec.args, '--initial-cluster-state'), 'new');
    assert.equal(flagValue(spec.args, '--initial-cluster-token'), 'pgpilot-demo');
    assert.equal(flagValue(spec.args, '--cert-file'), '/var/lib/pgpilot/demo-node2/tls/etcd.crt');
    assert.equal(flagValue(spec.args, '--key-file'), '/var/lib/pgpilot/demo-node2/tls/etcd.key');
    assert.equal(flagValue(spec.args, '--trusted-ca-file'), '/var/lib/pgpilot/demo-node2/tls/ca.crt');
    assert.equal(spec.marker, '/var/lib/pgpilot/demo-node2/etcd');
    assert.ok(!spec.args.join(' ').includes('BEGIN'), 'no key material in argv');
  });

  void it('has no etcd child on a host without a member', () => {
    const bundle = nodeBundle({ nodes: [{ name: 'node1', host: '10.0.0.1', etcdMember: true }, { name: 'node4', host: '10.0.0.4', etcdMember: false }], node: 'node4' });
    assert.equal(etcdChildSpec(bundle, layout, '/usr/bin/etcd'), null);
  });

  void it('runs the agent with the materialized config, logging next to it', () => {
    const spec = agentChildSpec('/opt/pgpilot/dist/src/bin/cli.js', layout.agentConfigFile, layout.dataDir);
    assert.equal(spec.command, process.execPath);
    assert.deepEqual(spec.args, ['/opt/pgpilot/dist/src/bin/cli.js', 'agent', '--config', '/var/lib/pgpilot/demo-node2/agent.json']);
    assert.equal(spec.logFile, '/var/lib/pgpilot/demo-node2/agent.out');
    assert.equal(spec.marker, layout.agentConfigFile);
    assert.equal(spec.stopGraceMs, AGENT_STOP_GRACE_MS);
  });
});
