/**
 * `pgpilot watchdog`: the fencing watchdog process (src/agent/watchdog.ts), started and fed by the
 * agent, never by a user. Reads `arm`/`disarm` lines on stdin and SIGKILLs the postmaster when the
 * agent's lease deadline passes without a heartbeat; logs one `<ISO time> watchdog: <msg>` line per
 * event to stdout (which the agent points at a log file). Exits 0 once its input has ended and it is
 * disarmed or has fired.
 */
import { runWatchdog } from '../../agent/watchdog.js';
import { SystemClock } from '../../shared/clock.js';

export async function run(): Promise<number> {
  const clock = new SystemClock();
  const log = (line: string): void => {
    process.stdout.write(`${new Date(clock.nowMs()).toISOString()} watchdog: ${line}\n`);
  };
  log(`started (pid ${process.pid}, parent ${process.ppid})`);
  await runWatchdog({ input: process.stdin, clock, log });
  return 0;
}
