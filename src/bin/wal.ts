/**
 * Entry of `wal push` / `wal fetch`, the commands postgres runs as archive_command and
 * restore_command (as the postgres OS user, once per WAL file). Deliberately separate from the CLI
 * entry: it loads only the WAL archive and its store, so starting it costs little.
 *
 *   wal.js push  --store-config FILE --cluster NAME <%p>
 *   wal.js fetch --store-config FILE --cluster NAME <%f> <%p>
 *
 * Exit codes are postgres' protocol: push 0 = archived (postgres may recycle the file), non-zero =
 * retry later. fetch 0 = restored, 1 = no such file (the ordinary end of the archive), 255 = the
 * store failed or the file is damaged: postgres treats an exit status above 125 as fatal and stops
 * recovery, instead of taking "store unreachable" for "end of WAL" and promoting early.
 */
import { parseArgs } from 'node:util';
import { isPgpilotError, errorMessage } from '../shared/errors.js';
import { openObjectStore, readStoreConfigFile } from '../backup/store-config.js';
import { WalArchive } from '../backup/wal-archive.js';

const FETCH_FATAL_EXIT = 255;

function say(line: string): void {
  process.stderr.write(`pgpilot wal: ${line}\n`);
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: { 'store-config': { type: 'string' }, cluster: { type: 'string' } },
    allowPositionals: true,
    strict: true,
  });
  const [verb, ...rest] = positionals;
  const storeConfigFile = values['store-config'];
  const cluster = values.cluster;
  if ((verb !== 'push' && verb !== 'fetch') || storeConfigFile === undefined || cluster === undefined) {
    say('usage: wal.js push|fetch --store-config FILE --cluster NAME <%p> | <%f> <%p>');
    return 2;
  }
  const store = openObjectStore(await readStoreConfigFile(storeConfigFile));
  try {
    const archive = new WalArchive(store, cluster);
    if (verb === 'push') {
      const [filePath] = rest;
      if (filePath === undefined || rest.length !== 1) {
        say('push takes one path (%p)');
        return 2;
      }
      const result = await archive.push(filePath);
      if (result.kind === 'conflict') {
        say(`WARNING: ${result.key} is already archived with different content; this copy was kept at ${result.keptAt} and the archived one is unchanged`);
      }
      return 0;
    }
    const [fileName, destPath] = rest;
    if (fileName === undefined || destPath === undefined || rest.length !== 2) {
      say('fetch takes a WAL file name (%f) and a destination path (%p)');
      return 2;
    }
    const result = await archive.fetch(fileName, destPath);
    return result.kind === 'restored' ? 0 : 1;
  } finally {
    await store.close().catch(() => undefined);
  }
}

const verb = process.argv[2];
try {
  process.exitCode = await main(process.argv.slice(2));
} catch (error) {
  say(`${verb ?? 'wal'} failed: ${errorMessage(error)}${isPgpilotError(error) && error.hint !== undefined ? ` (${error.hint})` : ''}`);
  process.exitCode = verb === 'fetch' ? FETCH_FATAL_EXIT : 1;
}
