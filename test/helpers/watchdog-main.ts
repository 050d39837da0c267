/**
 * Test entry for the fencing watchdog: runs the same `run()` as `pgpilot watchdog`, so integration
 * tests can spawn it through `WatchdogClient.start({ cliEntry: <this file's .js> })` without the CLI
 * wiring. Reads `--etcd-endpoints` from its arguments (the client passes `watchdog [--etcd-endpoints ...]`).
 */
import { run } from '../../src/cli/commands/watchdog.js';

process.exitCode = await run();
