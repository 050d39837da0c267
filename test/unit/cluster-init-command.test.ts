/**
 * `pgpilot cluster init` argument handling in process (src/bin/cli.ts runCli with the real command
 * body): bad input is refused before anything is written, with one error line, a hint and exit 2;
 * missing required flags are commander errors (exit 2). No openssl runs here: every case fails in
 * planning. Also the printed next steps (IPv6 hosts in brackets for scp).
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { runCli } from '../../src/bin/cli.js';
import type { Output } from '../../src/cli/output.js';
import { nextSteps } from '../../src/cli/commands/cluster-init.js';
import { planClusterInit } from '../../src/multihost/plan-cluster-init.js';

async function cli(args: string[]): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const output: Output = { out: (t) => out.push(...t.split('\n')), err: (t) => err.push(...t.split('\n').filter((l) => l !== '')) };
  const code = await runCli(['node', 'pgpilot', 'cluster', 'init', ...args], { output, writeOut: (t) => out.push(t), writeErr: (t) => err.push(...t.split('\n').filter((l) => l !== '')) });
  return { code, out, err };
}

void describe('cluster init: refusals before any write', () => {
  const dir = path.join(tmpdir(), `pgpilot-unit-init-${process.pid}`);
  const cases: [string[], RegExp][] = [
    [['demo', '--hosts', 'node1=10.0.0.1,node2=10.0.0.1', '--out', dir], /same address/],
    [['demo', '--hosts', 'node1=host.example', '--out', dir], /not an IP address/],
    [['demo', '--hosts', 'node1=10.0.0.1', '--client-cidr', '10.0.0.1/24', '--out', dir], /host bits/],
    [['demo', '--hosts', 'node1=10.0.0.1', '--api-port', '0', '--out', dir], /--api-port 0 is not a port/],
    [['demo', '--hosts', 'node1=10.0.0.1', '--backup-store', 'relative/dir', '--out', dir], /backup store URL/],
  ];
  for (const [args, pattern] of cases) {
    void it(args.slice(1, -2).join(' '), async () => {
      const result = await cli(args);
      assert.equal(result.code, 2);
      assert.equal(result.err.length, 2, result.err.join(' | '));
      assert.match(result.err[0] ?? '', /^error: /);
      assert.match(result.err[0] ?? '', pattern);
      assert.match(result.err[1] ?? '', /^hint: /);
      assert.ok(!existsSync(dir), 'nothing written');
    });
  }

  void it('missing --hosts or --out, or a non-number port: commander refuses with exit 2', async () => {
    for (const args of [['demo', '--out', dir], ['demo', '--hosts', 'node1=10.0.0.1'], ['demo', '--hosts', 'node1=10.0.0.1', '--out', dir, '--pg-port', 'x']]) {
      const result = await cli(args);
      assert.equal(result.code, 2, args.join(' '));
      assert.ok(result.err.some((l) => l.startsWith('error:')), result.err.join(' | '));
      assert.ok(!existsSync(dir));
    }
  });
});

void describe('cluster init: next steps', () => {
  void it('scp to each host (IPv6 in brackets), node install/run, status --context', () => {
    const plan = planClusterInit({ cluster: 'prod', hosts: 'a=10.0.0.1,b=fd00::2', tokenSuffix: '00112233' });
    const steps = nextSteps(plan, {
      outDir: '/o',
      files: { caCert: '/o/prod.ca.crt', caKey: '/o/prod.ca.key', context: '/o/prod.context.json', bundles: [{ node: 'a', file: '/o/prod-a.bundle' }, { node: 'b', file: '/o/prod-b.bundle' }] },
    });
    assert.equal(steps[0], 'scp /o/prod-a.bundle 10.0.0.1:');
    assert.equal(steps[1], 'scp /o/prod-b.bundle [fd00::2]:');
    assert.ok(steps.some((s) => s.includes('pgpilot node install --bundle prod-a.bundle')));
    assert.ok(steps.some((s) => s.includes('pgpilot node run --bundle prod-a.bundle --data-dir /var/lib/pgpilot/prod')));
    assert.equal(steps.at(-1), 'pgpilot status prod --context /o/prod.context.json');
  });
});
