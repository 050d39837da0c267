/**
 * `pgpilot watchdog [--etcd-endpoints URL,... --tls-ca F --tls-cert F --tls-key F]`: the fencing watchdog process
 * (src/agent/watchdog.ts), started and fed by the agent, never by a user. Reads `arm`/`disarm`/
 * `lease` lines on stdin and SIGKILLs the postmaster when the agent's lease deadline passes
 * without a heartbeat or the agent is gone; with etcd endpoints it then releases the agent's lease
 * over HTTPS with the node's client certificate (read once at start, so a later unreadable file
 * cannot stop the release).
 * Logs one `<ISO time> watchdog: <msg>` line per event to stdout (which the agent points at a log
 * file). Exits 0 once its input has ended and it is disarmed or has fired.
 */
import { parseArgs } from 'node:util';
import { runWatchdog } from '../../agent/watchdog.js';
import { revokeLeaseOverHttp } from '../../dcs/etcd-http-lease.js';
import { SystemClock } from '../../shared/clock.js';
import { errorMessage } from '../../shared/errors.js';
import { readTlsMaterial, type TlsMaterial } from '../../tls/tls-files.js';

export async function run(argv: readonly string[] = process.argv.slice(2)): Promise<number> {
  const clock = new SystemClock();
  const log = (line: string): void => {
    process.stdout.write(`${new Date(clock.nowMs()).toISOString()} watchdog: ${line}\n`);
  };
  const { values } = parseArgs({
    args: argv.filter((arg) => arg !== 'watchdog'),
    options: { 'etcd-endpoints': { type: 'string' }, 'tls-ca': { type: 'string' }, 'tls-cert': { type: 'string' }, 'tls-key': { type: 'string' } },
    strict: false,
  });
  const raw = values['etcd-endpoints'];
  const endpoints = typeof raw === 'string' ? raw.split(',').filter((e) => e.length > 0) : [];
  const [ca, cert, key] = [values['tls-ca'], values['tls-cert'], values['tls-key']];
  let tls: TlsMaterial | null = null;
  if (typeof ca === 'string' && typeof cert === 'string' && typeof key === 'string') {
    try {
      tls = readTlsMaterial({ caFile: ca, certFile: cert, keyFile: key });
    } catch (error) {
      log(`cannot read the TLS files (${errorMessage(error)}): leases will only expire by themselves`);
    }
  }
  const release = endpoints.length > 0 && tls !== null ? tls : null;
  log(`started (pid ${process.pid}, parent ${process.ppid}${release !== null ? `, etcd ${endpoints.join(',')}` : ''})`);
  await runWatchdog({
    input: process.stdin,
    clock,
    log,
    ...(release !== null ? { releaseLease: (leaseId: string) => revokeLeaseOverHttp(endpoints, leaseId, release) } : {}),
  });
  return 0;
}
