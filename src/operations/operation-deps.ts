/**
 * What a cluster operation (src/operations/) needs besides the ClusterHandle: the injected clock
 * (every wait is bounded and stepped with it) and a sink for human progress lines (the CLI prints
 * them on stderr; the REST API may log them). `ProviderDeps` of the local provider is one.
 */
import type { Clock } from '../shared/clock.js';

export interface OperationDeps {
  clock: Clock;
  progress(line: string): void;
}
