/**
 * Entry of the fencing watchdog process the agent spawns (src/agent/watchdog.ts). Deliberately
 * separate from the CLI entry: it loads only the watchdog and its few imports, so the process that
 * must outlive a frozen agent stays small (about half the resident memory of the full CLI).
 * Reads `--etcd-endpoints` from its arguments (the client passes `watchdog [--etcd-endpoints ...]`).
 */
import { run } from '../cli/commands/watchdog.js';
import { boostControlPlane } from '../shared/priority.js';

// It runs in a session of its own: give that session the control plane's weight (the nice value
// itself is inherited from the agent).
boostControlPlane();

process.exitCode = await run();
