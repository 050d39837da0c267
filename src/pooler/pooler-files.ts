/**
 * Where a node's PgBouncer keeps its files, under `<nodeDir>/pgbouncer/` (0700, owned by the
 * postgres OS user when we are root): `pgbouncer.ini`, `userlist.txt` (the auth file, 0600),
 * `pgbouncer.log` (its stderr) and `pgbouncer.pid` (written by the agent that started it). The
 * PID only counts while /proc/PID/cmdline still names this node's ini file (src/shared/pid.ts).
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { isOwnedProcessAlive } from '../shared/pid.js';

export interface PoolerPaths {
  dir: string;
  iniFile: string;
  authFile: string;
  logFile: string;
  pidFile: string;
}

export function poolerPaths(nodeDir: string): PoolerPaths {
  const dir = path.join(nodeDir, 'pgbouncer');
  return {
    dir,
    iniFile: path.join(dir, 'pgbouncer.ini'),
    authFile: path.join(dir, 'userlist.txt'),
    logFile: path.join(dir, 'pgbouncer.log'),
    pidFile: path.join(dir, 'pgbouncer.pid'),
  };
}

/** The PID of this node's running PgBouncer, or null. */
export async function livePoolerPid(nodeDir: string): Promise<number | null> {
  const paths = poolerPaths(nodeDir);
  let pid: number;
  try {
    pid = Number.parseInt((await readFile(paths.pidFile, 'utf8')).trim(), 10);
  } catch {
    return null;
  }
  if (!Number.isInteger(pid) || pid <= 1) return null;
  return (await isOwnedProcessAlive({ pid, marker: paths.iniFile })) ? pid : null;
}

/** Running PgBouncers by node name. */
export async function livePoolerPids(nodes: ReadonlyArray<{ name: string; nodeDir: string }>): Promise<Map<string, number>> {
  const alive = new Map<string, number>();
  for (const node of nodes) {
    const pid = await livePoolerPid(node.nodeDir);
    if (pid !== null) alive.set(node.name, pid);
  }
  return alive;
}
