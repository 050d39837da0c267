/**
 * The one shape both systems under benchmark (pgpilot and Patroni) are driven through, so that
 * every measurement in bench/run.ts is the same code for both. Implementations:
 * bench/lib/pgpilot-cluster.ts and bench/lib/patroni-cluster.ts.
 *
 * Invariant: an implementation only ever stops processes it started itself, by recorded PID, and
 * `destroy()` leaves nothing running and nothing on disk (unless PGPILOT_BENCH_KEEP=1).
 */

export interface Endpoint {
  host: string;
  port: number;
}

export interface BenchNode {
  name: string;
  /** postgres's own port. */
  pgPort: number;
  role: 'primary' | 'replica' | 'down';
  /** true for a replica whose WAL receiver streams from the current primary. */
  streaming: boolean;
  /** The HA agent process (pgpilot agent, patroni). */
  agentPid: number | null;
  postmasterPid: number | null;
}

export interface BenchCluster {
  readonly system: 'pgpilot' | 'patroni';
  /** 'default' or 'tuned' timing. */
  readonly profile: string;
  /** The timing settings in force (for the JSON report), e.g. { ttlSeconds, loopWaitMs } or { ttl, loop_wait, retry_timeout }. */
  readonly settings: Record<string, unknown>;
  /** Superuser credentials valid on every endpoint. */
  readonly user: string;
  readonly password: string;
  readonly database: string;
  /**
   * The CA file a client verifies the servers' certificates against (verify-full: pgpilot's
   * postgres accepts TLS connections only), or null when the system's postgres speaks plain text
   * (the Patroni cluster of bench/lib/patroni-cluster.ts).
   */
  readonly caFile: string | null;
  /**
   * Where a writing client connects, tried in order like libpq multi-host with
   * target_session_attrs=read-write (pgpilot: the nodes' leader-routing proxy ports; Patroni: the
   * postgres ports).
   */
  writeEndpoints(): Endpoint[];
  /** Current view of every node, read from the system's own API (REST / status). */
  nodes(): Promise<BenchNode[]>;
  /** Resolves when exactly one node is primary and every other node streams from it; throws after timeoutMs. */
  waitHealthy(timeoutMs: number): Promise<BenchNode[]>;
  /** Planned switchover from the current leader to any healthy replica; resolves when the system reports it done. */
  switchover(): Promise<void>;
  /**
   * Node-local processes of the HA system besides the agent and postgres, which a whole-host loss
   * kills too (pgpilot: the fencing watchdog). Absent or empty: the agent is all there is (Patroni).
   */
  sidecarPids?(node: BenchNode): number[];
  /**
   * The node's process supervisor, which would restart a killed agent (pgpilot: `pgpilot node
   * run`). An agent or host kill freezes it (SIGSTOP) before and SIGKILLs it after the other kills,
   * so the killed agent stays dead and no parent-death signal turns the crash into a clean stop.
   */
  supervisorPids?(node: BenchNode): number[];
  /** Starts again a node whose agent and postgres were killed (the node rejoins as a replica). */
  restartNode(name: string): Promise<void>;
  /** The system's own processes per node, for footprint: agent (and helper processes, labelled). */
  footprintPids(): Promise<Array<{ node: string; label: string; pid: number }>>;
  /** Stops everything started and removes the work directory. Idempotent. */
  destroy(): Promise<void>;
}

export interface CreateOptions {
  profile: 'default' | 'tuned';
  /** Progress lines go here (stderr). */
  log: (line: string) => void;
}

export interface Created {
  cluster: BenchCluster;
  /** From the first process start until every replica streams. */
  bootstrapMs: number;
}
