/**
 * The HAProxy configuration renderer (src/proxy/haproxy-config.ts): every node in the write and
 * the read section with the right health-check URI and ports, fast checks, session shutdown on
 * the write side, bad input refused with INPUT_INVALID; the real `haproxy -c` accepts what it
 * renders for 1 and 3 nodes (no network: -c binds nothing). Also the pure parsers of
 * src/proxy/haproxy-process.ts and the `haproxy-config` command on a manifest in a temp home.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync } from 'node:fs';
import { chmod, copyFile, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { renderHaproxyConfig, type HaproxyConfigInput, type HaproxyNode } from '../../src/proxy/haproxy-config.js';
import { bindPortsOf, checkHaproxyConfig, parseHaproxyCheckOutput, parseListeningPorts } from '../../src/proxy/haproxy-process.js';
import { run } from '../../src/cli/commands/haproxy-config.js';
import type { Output } from '../../src/cli/output.js';
import { PgpilotError } from '../../src/shared/errors.js';
import { clusterManifest } from '../builders/manifest-builder.js';
import { section, servers } from '../helpers/haproxy-sections.js';
import { makeTestPki, type TestPki } from '../helpers/test-pki.js';

function nodes(count: number): HaproxyNode[] {
  return Array.from({ length: count }, (_, i) => ({ name: `node${i + 1}`, host: '127.0.0.1', pgPort: 25432 + i, apiPort: 28008 + i }));
}

const scratch = mkdtempSync(path.join(tmpdir(), 'pgpilot-haproxy-unit-'));
// haproxy -c runs as the haproxy OS user when we are root and loads the CA file named in the config.
chmodSync(scratch, 0o755);
/** A real CA certificate (the checks verify the agents against it; haproxy -c loads it). */
const CA_FILE = path.join(scratch, 'ca.crt');
const CHECK_TLS = `check-ssl verify required ca-file ${CA_FILE}`;
let pki: TestPki | null = null;
before(async () => {
  pki = await makeTestPki('haproxy-unit');
  await copyFile(pki.caFile, CA_FILE);
  await chmod(CA_FILE, 0o644);
});
after(async () => {
  await pki?.cleanup();
  await rm(scratch, { recursive: true, force: true });
});

function input(overrides: Partial<HaproxyConfigInput> = {}): HaproxyConfigInput {
  return { cluster: 'demo', bindHost: '127.0.0.1', primaryPort: 25000, replicaPort: 25001, nodes: nodes(3), caFile: CA_FILE, ...overrides };
}

function assertInputInvalid(fn: () => unknown, message: RegExp): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof PgpilotError, String(error));
    assert.equal(error.code, 'INPUT_INVALID');
    assert.equal(error.exitCode, 2);
    assert.match(error.message, message);
    assert.ok(error.hint !== undefined && error.hint.length > 0);
    return true;
  });
}

function captureOutput(): Output & { stdout: string[]; stderr: string[] } {
  const stdout: string[] = [];
  const stderr: string[] = [];
  return { stdout, stderr, out: (t) => stdout.push(t), err: (t) => stderr.push(t) };
}

void describe('renderHaproxyConfig', () => {
  void it('routes writes to every node behind GET /primary, with sessions cut when a node is marked down', () => {
    const config = renderHaproxyConfig(input());
    const primary = section(config, 'demo-primary');
    assert.ok(primary.includes('bind 127.0.0.1:25000'));
    assert.ok(primary.includes('option httpchk'));
    assert.ok(primary.includes('http-check send meth GET uri /primary'));
    assert.ok(primary.includes('http-check expect status 200'));
    assert.deepEqual(servers(primary), [
      `server node1 127.0.0.1:25432 check port 28008 ${CHECK_TLS} on-marked-down shutdown-sessions`,
      `server node2 127.0.0.1:25433 check port 28009 ${CHECK_TLS} on-marked-down shutdown-sessions`,
      `server node3 127.0.0.1:25434 check port 28010 ${CHECK_TLS} on-marked-down shutdown-sessions`,
    ]);
    assert.ok(!primary.some((l) => l.includes('/replica')));
  });

  void it('routes reads to every node behind GET /replica, with every node as a primary-tracking backup', () => {
    const config = renderHaproxyConfig(input());
    const replicas = section(config, 'demo-replicas');
    assert.ok(replicas.includes('bind 127.0.0.1:25001'));
    assert.ok(replicas.includes('http-check send meth GET uri /replica'));
    assert.ok(replicas.includes('http-check expect status 200'));
    const list = servers(replicas);
    for (const [i, node] of nodes(3).entries()) {
      assert.ok(list.includes(`server ${node.name} 127.0.0.1:${25432 + i} check port ${28008 + i} ${CHECK_TLS} on-marked-down shutdown-sessions on-marked-up shutdown-backup-sessions`), list.join('\n'));
      assert.ok(list.includes(`server ${node.name}-as-primary 127.0.0.1:${25432 + i} backup track demo-primary/${node.name} on-marked-down shutdown-sessions`), list.join('\n'));
    }
    assert.equal(list.length, 6, 'no node missing, none extra');
  });

  void it('uses TCP mode, fast checks, long client/server timeouts, maxconn and a header naming the regenerate command', () => {
    const config = renderHaproxyConfig(input({ regenerateCommand: 'pgpilot haproxy-config demo --port 25000 --replica-port 25001 --output /etc/x.cfg' }));
    const lines = config.split('\n').map((l) => l.trim());
    assert.match(config, /^# HAProxy configuration for the pgpilot cluster demo, generated by pgpilot/);
    assert.ok(lines.includes('#   pgpilot haproxy-config demo --port 25000 --replica-port 25001 --output /etc/x.cfg'));
    for (const expected of ['mode tcp', 'timeout connect 5s', 'timeout client 30m', 'timeout server 30m', 'maxconn 1000', 'option tcpka', 'noreuseport']) {
      assert.ok(lines.includes(expected), `missing "${expected}"`);
    }
    // Writes: down on the first failed check, up only after two good ones inter + a prompt answer apart;
    // a check may take 2 s (a saturated host answers slowly, and one late answer cuts every session).
    assert.ok(lines.includes('timeout check 2000ms'));
    assert.ok(section(config, 'demo-primary').includes('default-server inter 500ms fastinter 1000ms downinter 500ms fall 1 rise 2'));
    assert.ok(section(config, 'demo-replicas').includes('default-server inter 500ms fastinter 250ms downinter 500ms fall 2 rise 1'));
    assert.ok(config.endsWith('\n'));
    assert.ok(!lines.includes('daemon'), 'never daemonizes by itself');
    const tuned = renderHaproxyConfig(input({ checkIntervalMs: 400, maxConnections: 200 })).split('\n').map((l) => l.trim());
    assert.ok(tuned.includes('default-server inter 400ms fastinter 800ms downinter 400ms fall 1 rise 2'));
    assert.ok(tuned.includes('default-server inter 400ms fastinter 200ms downinter 400ms fall 2 rise 1'));
    assert.ok(tuned.includes('timeout check 2000ms'), 'the check timeout does not shrink with the interval');
    assert.ok(tuned.includes('maxconn 200'));
    assert.ok(tuned.some((l) => l.startsWith('#   pgpilot haproxy-config demo --port 25000 --replica-port 25001')), 'default regenerate command');
  });

  void it('is pure: the same input renders the same text', () => {
    assert.equal(renderHaproxyConfig(input()), renderHaproxyConfig(input()));
  });

  void it('adds a stats page only when asked, and brackets IPv6 addresses', () => {
    assert.ok(!renderHaproxyConfig(input()).includes('stats enable'));
    const withStats = renderHaproxyConfig(input({ statsPort: 25002 }));
    const stats = section(withStats, 'demo-stats');
    assert.ok(stats.includes('bind 127.0.0.1:25002'));
    assert.ok(stats.includes('stats enable'));
    const v6 = renderHaproxyConfig(input({ bindHost: '::1', nodes: [{ name: 'node1', host: '::1', pgPort: 25432, apiPort: 28008 }] }));
    assert.ok(section(v6, 'demo-primary').includes('bind [::1]:25000'));
    assert.ok(servers(section(v6, 'demo-primary'))[0]?.startsWith('server node1 [::1]:25432 check port 28008'));
  });

  void it('refuses bad input with INPUT_INVALID', () => {
    const cases: Array<[Partial<HaproxyConfigInput>, RegExp]> = [
      [{ cluster: 'Bad Name' }, /invalid cluster name/],
      [{ cluster: 'x'.repeat(40) }, /invalid cluster name/],
      [{ nodes: [] }, /no nodes/],
      [{ primaryPort: 0 }, /invalid write port/],
      [{ replicaPort: 70000 }, /invalid read port/],
      [{ primaryPort: 25000.5 }, /invalid write port/],
      [{ statsPort: -1 }, /invalid stats port/],
      [{ replicaPort: 25000 }, /must differ/],
      [{ statsPort: 25001 }, /must differ/],
      [{ bindHost: 'a b' }, /invalid bind address/],
      [{ bindHost: '127.0.0.1\nlisten evil' }, /invalid bind address/],
      [{ primaryPort: 25432 }, /already node node1's postgres or API port/],
      [{ bindHost: '0.0.0.0', replicaPort: 28010 }, /already node node3's/],
      [{ nodes: [...nodes(2), { name: 'node1', host: '127.0.0.1', pgPort: 1, apiPort: 2 }] }, /node node1 is listed twice/],
      [{ nodes: [{ name: 'node 1', host: '127.0.0.1', pgPort: 1, apiPort: 2 }] }, /invalid node name/],
      [{ nodes: [{ name: 'node1', host: 'db#1', pgPort: 1, apiPort: 2 }] }, /invalid host of node node1/],
      [{ nodes: [{ name: 'node1', host: '127.0.0.1', pgPort: 0, apiPort: 2 }] }, /invalid postgres port of node node1/],
      [{ nodes: [{ name: 'node1', host: '127.0.0.1', pgPort: 1, apiPort: 65536 }] }, /invalid API port of node node1/],
      [{ nodes: [{ name: 'node1', host: '127.0.0.1', pgPort: 7, apiPort: 7 }] }, /used twice/],
      [{ nodes: [...nodes(1), { name: 'node2', host: '127.0.0.1', pgPort: 25432, apiPort: 3 }] }, /used twice \(node node2\)/],
      [{ checkIntervalMs: 0 }, /invalid check interval/],
      [{ maxConnections: 0 }, /invalid connection limit/],
      [{ regenerateCommand: 'pgpilot\nglobal' }, /one line/],
      [{ caFile: '/tmp/a b/ca.crt' }, /CA file/],
      [{ caFile: 'relative/ca.crt' }, /CA file/],
      [{ caFile: '/tmp/ca.crt\nglobal' }, /CA file/],
    ];
    for (const [overrides, message] of cases) assertInputInvalid(() => renderHaproxyConfig(input(overrides)), message);
  });
});

void describe('haproxy -c accepts the rendered config (real binary)', () => {
  for (const count of [1, 3]) {
    void it(`for a ${count}-node cluster`, async () => {
      const file = path.join(scratch, `check-${count}.cfg`);
      await writeFile(file, renderHaproxyConfig(input({ nodes: nodes(count), statsPort: 25002 })));
      const result = await checkHaproxyConfig(file);
      assert.equal(result.kind, 'ok', result.kind === 'error' ? result.errorText : '');
    });
  }

  void it('and reports the error text of a broken one', async () => {
    const file = path.join(scratch, 'broken.cfg');
    await writeFile(file, `${renderHaproxyConfig(input())}    server bad 127.0.0.1:1 track nosuch/node1\n`);
    const result = await checkHaproxyConfig(file);
    assert.equal(result.kind, 'error');
    assert.match(result.kind === 'error' ? result.errorText : '', /nosuch/);
    assert.doesNotMatch(result.kind === 'error' ? result.errorText : '', /NOTICE/);
  });
});

void describe('haproxy-process parsers', () => {
  void it('bindPortsOf lists the bind ports of a config', () => {
    assert.deepEqual(bindPortsOf(renderHaproxyConfig(input({ statsPort: 25002 }))), [25000, 25001, 25002]);
    assert.deepEqual(bindPortsOf('listen x\n    bind [::1]:5000\n    bind *:6000 ssl\n'), [5000, 6000]);
  });

  void it('parseListeningPorts keeps LISTEN sockets owned by the process', () => {
    const table = [
      '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode',
      '   0: 0100007F:61A8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0000000000000000 100 0 0 10 0',
      '   1: 0100007F:61A9 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 222 1 0000000000000000 100 0 0 10 0',
      '   2: 0100007F:61AA 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 111 1 0000000000000000 20 4 30 10 -1',
      '',
    ].join('\n');
    assert.deepEqual(parseListeningPorts(table, new Set(['111'])), [25000]);
    assert.deepEqual(parseListeningPorts(table, new Set(['111', '222'])), [25000, 25001]);
  });

  void it('parseHaproxyCheckOutput drops the version banner', () => {
    const text = '[NOTICE]   (1) : haproxy version is 2.6.12\n[NOTICE]   (1) : path to executable is /usr/sbin/haproxy\n[ALERT]    (1) : config : bad\n';
    assert.equal(parseHaproxyCheckOutput(text), '[ALERT]    (1) : config : bad');
  });
});

void describe('pgpilot haproxy-config (run)', () => {
  const home = path.join(scratch, 'home');
  const clusterDir = path.join(home, 'clusters', 'demo');
  const manifest = clusterManifest({ name: 'demo', nodes: 3, clusterDir });
  before(async () => {
    await mkdir(path.join(clusterDir, 'tls'), { recursive: true });
    await writeFile(path.join(clusterDir, 'cluster.json'), JSON.stringify(manifest));
    await copyFile(CA_FILE, path.join(clusterDir, 'tls', 'ca.crt'));
  });

  void it('prints the config on stdout and the chosen free ports on stderr', async () => {
    const output = captureOutput();
    assert.equal(await run({ home, name: 'demo' }, output), 0);
    const config = output.stdout.join('\n');
    for (const node of manifest.nodes) {
      assert.ok(config.includes(`server ${node.name} 127.0.0.1:${node.pgPort} check port ${node.apiPort} check-ssl verify required ca-file ${clusterDir}/tls/ca.crt`));
    }
    const picked = output.stderr.join('\n');
    const writePort = Number(/picked free port (\d+) for writes/.exec(picked)?.[1]);
    const readPort = Number(/picked free port (\d+) for reads/.exec(picked)?.[1]);
    assert.ok(writePort > 0 && readPort > 0 && writePort !== readPort, picked);
    assert.ok(section(config, 'demo-primary').includes(`bind 127.0.0.1:${writePort}`));
    assert.ok(section(config, 'demo-replicas').includes(`bind 127.0.0.1:${readPort}`));
  });

  void it('writes --output atomically with mode 0644, checked, and says how to run it', async () => {
    const file = path.join(scratch, 'out', 'demo.cfg');
    await mkdir(path.dirname(file), { recursive: true });
    const output = captureOutput();
    assert.equal(await run({ home, name: 'demo', port: 25100, replicaPort: 25101, output: file }, output), 0);
    const text = await readFile(file, 'utf8');
    assert.ok(section(text, 'demo-primary').includes('bind 127.0.0.1:25100'));
    assert.ok(section(text, 'demo-replicas').includes('bind 127.0.0.1:25101'));
    assert.ok(text.includes(`#   pgpilot haproxy-config demo --port 25100 --replica-port 25101 --output ${file} --home ${home}`));
    assert.equal((await stat(file)).mode & 0o777, 0o644);
    const said = output.stdout.join('\n');
    assert.match(said, new RegExp(`run it with: haproxy -f ${file}`));
    assert.match(said, /checked with: haproxy -c -f/);
    assert.doesNotMatch(said, /picked free port/);
    assert.equal(output.stderr.length, 0);
  });

  void it('refuses bad ports, unknown clusters and unwritable files', async () => {
    const node1 = manifest.nodes[0];
    assert.ok(node1);
    await assert.rejects(run({ home, name: 'demo', port: node1.pgPort }, captureOutput()), (e: unknown) => e instanceof PgpilotError && e.code === 'INPUT_INVALID' && /already used by a node/.test(e.message));
    await assert.rejects(run({ home, name: 'demo', port: 0 }, captureOutput()), (e: unknown) => e instanceof PgpilotError && e.code === 'INPUT_INVALID' && /--port must be/.test(e.message));
    await assert.rejects(run({ home, name: 'demo', port: 25200, replicaPort: 25200 }, captureOutput()), (e: unknown) => e instanceof PgpilotError && e.code === 'INPUT_INVALID');
    await assert.rejects(run({ home, name: 'nosuch' }, captureOutput()), (e: unknown) => e instanceof PgpilotError && e.code === 'CLUSTER_NOT_FOUND');
    await assert.rejects(
      run({ home, name: 'demo', output: path.join(scratch, 'no', 'such', 'dir', 'x.cfg') }, captureOutput()),
      (e: unknown) => e instanceof PgpilotError && e.code === 'INPUT_INVALID' && /cannot write/.test(e.message),
    );
  });
});
