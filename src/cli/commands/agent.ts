/**
 * `pgpilot agent --config FILE`: runs one node agent in the foreground until SIGTERM/SIGINT,
 * then stops postgres cleanly and releases its etcd keys before exiting.
 */
import { startAgent } from '../../agent/compose.js';
import { agentConfigSchema } from '../../config/schema.js';
import { loadJsonFile } from '../../config/load.js';

export async function run(options: { configFile: string }): Promise<number> {
  const config = loadJsonFile(agentConfigSchema, options.configFile);
  // The watchdog is started from the same CLI entry point as this agent.
  const agent = await startAgent(config, { cliEntry: process.argv[1] ?? '', configFile: options.configFile });
  const onSignal = (): void => {
    void agent.stop();
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  await agent.done;
  await agent.stop();
  return 0;
}
