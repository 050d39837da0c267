/**
 * What every part of the HA loop works with (observer, publisher, executor): this node's name, the
 * DCS and its keys, the local postgres, the clock, the logger and the agent's memory.
 */
import type { Logger } from '../shared/logger.js';
import type { Clock } from '../shared/clock.js';
import type { Dcs } from '../dcs/dcs.js';
import type { ClusterKeys } from '../dcs/keys.js';
import type { AgentMemory } from './agent-memory.js';
import type { PostgresNode } from './postgres-node.js';

export interface HaPartDeps {
  node: string;
  dcs: Dcs;
  keys: ClusterKeys;
  pg: PostgresNode;
  clock: Clock;
  log: Logger;
  memory: AgentMemory;
}
