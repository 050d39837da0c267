/** `pgpilot events NAME [--json] [--limit N] [--context FILE]`: the cluster's event log, oldest first. */
import { clusterKeys } from '../../dcs/keys.js';
import { parseEvents } from '../../state/events.js';
import { openClusterHandle } from '../../cluster/open-cluster-handle.js';
import { printJson, renderTable, type Output } from '../output.js';

export async function run(options: { home: string; name: string; context?: string | undefined; json: boolean; limit: number }, output: Output): Promise<number> {
  const handle = await openClusterHandle(options);
  const { dcs } = await handle.openDcs();
  try {
    const events = parseEvents(await dcs.get(clusterKeys(handle.name).events)).slice(-options.limit);
    if (options.json) printJson(output, events);
    else if (events.length === 0) output.out('no events yet');
    else output.out(renderTable(['TIME', 'NODE', 'EVENT', 'TL', 'DETAIL'], events.map((e) => [e.at, e.node, e.kind, e.timeline === null ? '-' : String(e.timeline), e.message])));
    return 0;
  } finally {
    await dcs.close().catch(() => undefined);
  }
}
