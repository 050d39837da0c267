/**
 * `pgpilot watchdog [--etcd-endpoints URL,...]`: the fencing watchdog process
 * (src/agent/watchdog.ts), started and fed by the agent, never by a user. Reads `arm`/`disarm`/
 * `lease` lines on stdin and SIGKILLs the postmaster when the agent's lease deadline passes
 * without a heartbeat or the agent is gone; with etcd endpoints it then releases the agent's lease.
 * Logs one `<ISO time> watchdog: <msg>` line per event to stdout (which the agent points at a log
 * file). Exits 0 once its input has ended and it is disarmed or has fired.
 */
import { parseArgs } from 'node:util';
import { runWatchdog } from '../../agent/watchdog.js';
import { revokeLeaseOverHttp } from '../../dcs/etcd-http-lease.js';
import { SystemClock } from '../../shared/clock.js';

export async function run(argv: readonly string[] = process.argv.slice(2)): Promise<number> {
  const clock = new SystemClock();
  const log = (line: string): void => {
    process.stdout.write(`${new Date(clock.nowMs()).toISOString()} watchdog: ${line}\n`);
  };
  const { values } = parseArgs({
    args: argv.filter((arg) => arg !== 'watchdog'),
    options: { 'etcd-endpoints': { type: 'string' } },
    strict: false,
  });
  const raw = values['etcd-endpoints'];
  const endpoints = typeof raw === 'string' ? raw.split(',').filter((e) => e.length > 0) : [];
  log(`started (pid ${process.pid}, parent ${process.ppid}${endpoints.length > 0 ? `, etcd ${endpoints.join(',')}` : ''})`);
  await runWatchdog({
    input: process.stdin,
    clock,
    log,
    ...(endpoints.length > 0 ? { releaseLease: (leaseId: string) => revokeLeaseOverHttp(endpoints, leaseId) } : {}),
  });
  return 0;
}
