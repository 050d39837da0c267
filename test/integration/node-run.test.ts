/**
 * `pgpilot node run --bundle F --data-dir D` as the systemd unit runs it, on loopback: a one-node
 * bundle with its own etcd member (real certificates of a fresh CA, test/builders/bundle-builder.ts)
 * and free ports. The node becomes the leader (REST /primary over HTTPS with the CA); its agent,
 * SIGKILLed by the PID the supervisor recorded, is restarted and the node is primary again; SIGTERM
 * to the supervisor ends it with exit code 0 and nothing it started (etcd, agent, watchdog,
 * postmaster) is left. Every process is found by its command line naming this test's own temp
 * directory; `after` SIGKILLs whatever of those is left and removes the directory, even on failure.
 * Run under flock /work/heavy.lock (starts etcd and postgres).
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmod, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { openSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { httpsRequest } from '../../src/shared/https-client.js';
import { readCmdline } from '../../src/shared/pid.js';
import { findFreePorts } from '../../src/shared/ports.js';
import { nodeLayout } from '../../src/node/node-layout.js';
import { realNodeBundles, type RealBundles } from '../builders/bundle-builder.js';
import { isPidAlive, waitUntil } from '../helpers/wait.js';

const CLI_ENTRY = fileURLToPath(new URL('../../src/bin/cli.js', import.meta.url));

let root = '';
let bundles: RealBundles | null = null;
let supervisor: ChildProcess | null = null;
const seen = new Set<number>();

/** PIDs of live processes whose command line names `marker` (our temp directory). */
async function processesNaming(marker: string): Promise<Map<number, string>> {
  const found = new Map<number, string>();
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    const cmdline = await readCmdline(pid);
    if (cmdline !== null && cmdline.includes(marker) && isPidAlive(pid)) found.set(pid, cmdline);
  }
  for (const pid of found.keys()) seen.add(pid);
  return found;
}

async function childrenOf(file: string): Promise<Record<string, { pid: number }>> {
  try {
    return (JSON.parse(await readFile(file, 'utf8')) as { children: Record<string, { pid: number }> }).children;
  } catch {
    return {};
  }
}

after(async () => {
  if (supervisor?.pid !== undefined && isPidAlive(supervisor.pid)) supervisor.kill('SIGKILL');
  if (root !== '') {
    for (const pid of [...(await processesNaming(root)).keys(), ...seen]) {
      const cmdline = await readCmdline(pid);
      if (cmdline !== null && cmdline.includes(root)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
    await waitUntil('every test process gone', async () => (await processesNaming(root)).size === 0, 15_000).catch(() => undefined);
    await rm(root, { recursive: true, force: true });
  }
  await bundles?.cleanup();
});

void test('node run: leader, agent restarted after kill -9, clean stop on SIGTERM', { timeout: 300_000 }, async () => {
  root = await mkdtemp(path.join(tmpdir(), 'pgpilot-node-run-'));
  // The postgres OS user must reach the data directory.
  await chmod(root, 0o755);
  const [pgPort, proxyPort, replicaProxyPort, poolerPort, apiPort, etcdClientPort, etcdPeerPort] = (await findFreePorts(7)) as [number, number, number, number, number, number, number];
  bundles = await realNodeBundles({
    cluster: 'nrun',
    nodes: [{ name: 'node1', host: '127.0.0.1', etcdMember: true }],
    ports: { pgPort, proxyPort, replicaProxyPort, poolerPort, apiPort, etcdClientPort, etcdPeerPort },
    clientCidrs: ['127.0.0.1/32'],
  });
  const bundle = bundles.bundles.get('node1');
  assert.ok(bundle !== undefined);
  const bundleFile = path.join(root, 'nrun-node1.bundle');
  await writeFile(bundleFile, JSON.stringify(bundle), { mode: 0o600 });
  const dataDir = path.join(root, 'nrun-node1');
  const layout = nodeLayout(dataDir);
  const logFile = path.join(root, 'node-run.log');
  const startSupervisor = (): { child: ChildProcess; exited: Promise<{ code: number | null; signal: string | null }> } => {
    const log = openSync(logFile, 'a');
    try {
      // A parent-death signal: a crashed test run cannot leave the supervisor behind.
      const child = spawn('setpriv', ['--pdeathsig', 'TERM', '--', process.execPath, CLI_ENTRY, 'node', 'run', '--bundle', bundleFile, '--data-dir', dataDir], { stdio: ['ignore', log, log] });
      supervisor = child;
      return { child, exited: new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal }))) };
    } finally {
      closeSync(log);
    }
  };
  const first = startSupervisor();
  const exited = first.exited;
  const logTail = async (): Promise<string> => (await readFile(logFile, 'utf8').catch(() => '')).slice(-3_000);
  const isPrimary = async (): Promise<boolean> => {
    const response = await httpsRequest(`https://127.0.0.1:${apiPort}/primary`, { timeoutMs: 2_000, tls: { ca: bundle.tls.caPem } });
    return response.status === 200;
  };

  await waitUntil('the node to become primary', isPrimary, 180_000, 500).catch(async (error: unknown) => {
    throw new Error(`${(error as Error).message}\n${await logTail()}`);
  });
  assert.equal(Number((await readFile(layout.supervisorPidFile, 'utf8')).trim()), first.child.pid, 'node-run.pid names the supervisor');
  const before = await childrenOf(layout.childrenFile);
  const etcdPid = before['etcd']?.pid;
  const agentPid = before['agent']?.pid;
  assert.ok(etcdPid !== undefined && agentPid !== undefined, JSON.stringify(before));
  const running = await processesNaming(root);
  assert.ok(running.has(etcdPid) && running.has(agentPid), [...running.values()].join('\n'));
  const postmasterPid = Number((await readFile(path.join(layout.pgDataDir, 'postmaster.pid'), 'utf8')).split('\n')[0]);
  assert.ok(running.has(postmasterPid), 'the postmaster runs from the data directory');
  assert.ok([...running.values()].some((c) => c.includes(' watchdog')), 'the agent\'s watchdog runs');

  // kill -9 the agent by its recorded PID: the supervisor starts a new one and the node leads again.
  process.kill(agentPid, 'SIGKILL');
  const newAgent = await waitUntil(
    'a new agent',
    async () => {
      const pid = (await childrenOf(layout.childrenFile))['agent']?.pid;
      return pid !== undefined && pid !== agentPid && isPidAlive(pid) ? pid : null;
    },
    60_000,
  );
  assert.ok(!isPidAlive(agentPid));
  await waitUntil('the node to be primary again after the agent restart', isPrimary, 120_000, 500);
  assert.equal((await childrenOf(layout.childrenFile))['etcd']?.pid, etcdPid, 'etcd was not restarted');
  assert.match(await readFile(logFile, 'utf8'), /agent killed by SIGKILL unexpectedly/);
  const beforeStop = await processesNaming(root);
  assert.ok(beforeStop.has(newAgent));

  // SIGTERM: agent (postgres cleanly), then etcd, then exit 0; nothing left.
  first.child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const result = await Promise.race([exited, new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), 120_000)))]);
  clearTimeout(timer);
  assert.deepEqual(result, { code: 0, signal: null }, await logTail());
  let left = new Map<number, string>();
  await waitUntil(
    () => `every process of the node to be gone: ${[...left.values()].join(' | ')}`,
    async () => {
      left = await processesNaming(root);
      return left.size === 0;
    },
    20_000,
  );
  for (const pid of [etcdPid, newAgent, ...beforeStop.keys()]) assert.ok(!isPidAlive(pid), `pid ${pid} is gone`);
  assert.match(await readFile(logFile, 'utf8'), /stopping agent[\s\S]*stopping etcd[\s\S]*exiting with code 0/);
  await assert.rejects(readFile(layout.supervisorPidFile), { code: 'ENOENT' });
  assert.match(await readFile(layout.postgresLogFile, 'utf8'), /database system is shut down/, 'postgres was shut down cleanly');

  // A second start on the same data directory (node.json matches; pgdata and etcd data kept):
  // SIGKILL of the supervisor leaves nothing behind either (parent-death signals).
  const second = startSupervisor();
  await waitUntil('the node to become primary after a restart of node run', isPrimary, 120_000, 500);
  assert.ok((await processesNaming(root)).size >= 4, 'etcd, agent, watchdog and postmaster run again');
  // A second supervisor on the same data directory is refused before it rewrites anything.
  const agentJsonBefore = await readFile(layout.agentConfigFile, 'utf8');
  const refused = spawnSync(process.execPath, [CLI_ENTRY, 'node', 'run', '--bundle', bundleFile, '--data-dir', dataDir], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(refused.status, 2, refused.stderr);
  assert.match(refused.stderr, /a node supervisor already runs here/);
  assert.equal(await readFile(layout.agentConfigFile, 'utf8'), agentJsonBefore);
  second.child.kill('SIGKILL');
  assert.deepEqual(await second.exited, { code: null, signal: 'SIGKILL' });
  await waitUntil(
    () => `every process to be gone after SIGKILL of the supervisor: ${[...left.values()].join(' | ')}`,
    async () => {
      left = await processesNaming(root);
      return left.size === 0;
    },
    90_000,
  );
});
