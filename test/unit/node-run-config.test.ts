/**
 * `node run --config AGENT_JSON` (src/node/node-run.ts) with a fake process port: only the agent is
 * supervised, the PID files live in the agent's node directory and are removed at the end, and a
 * second supervisor on the same directory is refused (NODE_ALREADY_RUNNING).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { runFilesIn, runNodeFromAgentConfig } from '../../src/node/node-run.js';
import type { ChildExit, ChildHandle, ChildSpec, ProcessPort } from '../../src/node/supervisor.js';
import { SystemClock } from '../../src/shared/clock.js';
import { PgpilotError } from '../../src/shared/errors.js';
import { isPidAlive, waitUntil } from '../helpers/wait.js';

function agentConfig(nodeDir: string): Record<string, unknown> {
  return {
    cluster: 'demo',
    node: 'node1',
    host: '127.0.0.1',
    listenAddress: '127.0.0.1',
    pgPort: 15432,
    apiPort: 18008,
    proxyPort: 16432,
    replicaProxyPort: 17432,
    nodeDir,
    dataDir: path.join(nodeDir, 'pgdata'),
    logFile: path.join(nodeDir, 'agent.log'),
    postgresLogFile: path.join(nodeDir, 'postgres.log'),
    binDir: '/usr/lib/postgresql/15/bin',
    secretsFile: path.join(nodeDir, 'secrets.json'),
    etcdEndpoints: ['https://127.0.0.1:12379'],
    tls: { caFile: '/x/ca.crt', certFile: '/x/node.crt', keyFile: '/x/node.key' },
  };
}

void describe('node run --config', () => {
  void it('supervises only the agent, with its PID files in the node directory', async () => {
    const nodeDir = await mkdtemp(path.join(tmpdir(), 'pgpilot-node-config-'));
    try {
      const configFile = path.join(nodeDir, 'agent.json');
      await writeFile(configFile, JSON.stringify(agentConfig(nodeDir)));
      const specs: ChildSpec[] = [];
      let exit: (e: ChildExit) => void = () => {};
      const processes: ProcessPort = {
        spawn(spec: ChildSpec): Promise<ChildHandle> {
          specs.push(spec);
          return Promise.resolve({ pid: 4242, exited: new Promise<ChildExit>((resolve) => (exit = resolve)) });
        },
        kill: () => exit({ code: 0, signal: null }),
      };
      let stop: (signal: string) => void = () => {};
      const files = runFilesIn(nodeDir);
      const agentPidFile = path.join(nodeDir, 'agent.pid');
      const done = runNodeFromAgentConfig({ configFile, agentPidFile }, { clock: new SystemClock(), cliEntry: '/opt/pgpilot/cli.js', log: () => {}, processes, onStopSignal: (h) => ((stop = h), () => {}) });
      const recorded = await waitUntil('the agent PID recorded', async () => (existsSync(files.childrenFile) ? (JSON.parse(await readFile(files.childrenFile, 'utf8')) as { children: Record<string, { pid: number; marker: string }> }) : null), 5_000, 20);
      assert.deepEqual(recorded.children, { agent: { pid: 4242, marker: configFile } });
      assert.equal(Number((await readFile(files.supervisorPidFile, 'utf8')).trim()), process.pid);
      assert.equal((await readFile(agentPidFile, 'utf8')).trim(), '4242', '--agent-pid-file keeps the agent PID');
      assert.deepEqual(
        specs.map((s) => [s.name, s.args]),
        [['agent', ['/opt/pgpilot/cli.js', 'agent', '--config', configFile]]],
      );
      stop('SIGTERM');
      assert.equal(await done, 0);
      assert.ok(!existsSync(files.childrenFile) && !existsSync(files.supervisorPidFile), 'PID files removed');
      assert.ok(!existsSync(agentPidFile), 'the agent PID file goes with the agent');
    } finally {
      await rm(nodeDir, { recursive: true, force: true });
    }
  });

  void it('refuses a second supervisor on the same directory', async () => {
    const nodeDir = await mkdtemp(path.join(tmpdir(), 'pgpilot-node-config-'));
    // A live process whose command line reads like a supervisor's.
    const other = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30000)', 'node run'], { stdio: 'ignore' });
    try {
      await waitUntil('the stand-in to run', () => Promise.resolve(other.pid !== undefined && isPidAlive(other.pid)), 5_000, 20);
      const configFile = path.join(nodeDir, 'agent.json');
      await writeFile(configFile, JSON.stringify(agentConfig(nodeDir)));
      await writeFile(runFilesIn(nodeDir).supervisorPidFile, `${other.pid}\n`);
      const processes: ProcessPort = { spawn: () => Promise.reject(new Error('must not spawn')), kill: () => {} };
      await assert.rejects(
        runNodeFromAgentConfig({ configFile }, { clock: new SystemClock(), cliEntry: '/x', log: () => {}, processes, onStopSignal: () => () => {} }),
        (error: unknown) => error instanceof PgpilotError && error.code === 'NODE_ALREADY_RUNNING',
      );
    } finally {
      other.kill('SIGKILL');
      await rm(nodeDir, { recursive: true, force: true });
    }
  });
});
