/**
 * The HA loop's metrics hook: counters of events only the loop sees (lease renewals and their
 * failures, leader changes, promotions by reason, tick duration). The loop and executor call it;
 * the agent injects an implementation backed by prom-client (src/metrics/agent-metrics.ts), so
 * src/ha/ stays free of any metrics library. It lives in src/state/ (not src/ha/) so that
 * src/metrics/ implements it without importing src/ha/ (module boundaries, docs/architecture.md).
 * Optional: absent, the no-op below is used (scenario simulations). Implementations must be cheap and must never throw (they run inside a tick).
 */

export interface HaMetrics {
  /** A lease keep-alive succeeded. */
  leaseRenewed(): void;
  /** A lease keep-alive failed: the lease was gone, or etcd did not answer. */
  leaseRenewalFailed(): void;
  /** The leader key now names another node than the last leader this agent saw. */
  leaderChanged(): void;
  /** This node was promoted to primary: by a planned switchover, else a failover (forced or automatic). */
  promoted(reason: 'failover' | 'switchover'): void;
  /** One observe -> decide -> execute -> publish pass took this long. */
  tickFinished(durationSeconds: number): void;
}

export const noopHaMetrics: HaMetrics = {
  leaseRenewed: () => undefined,
  leaseRenewalFailed: () => undefined,
  leaderChanged: () => undefined,
  promoted: () => undefined,
  tickFinished: () => undefined,
};
