/**
 * Where the `wal` entry point (src/bin/wal.ts) is, next to the module that builds archive_command
 * and restore_command. It is a separate, small entry so that postgres' archiver starts a process
 * that loads only the WAL archive and its store, not the whole CLI.
 */
import { fileURLToPath } from 'node:url';
import { walCommand } from '../postgres/conf.js';

export function walEntryPath(): string {
  return fileURLToPath(new URL('../bin/wal.js', import.meta.url));
}

/** archive_command for a member: `wal push` of `%p` into the cluster's store. */
export function archiveCommandFor(storeConfigFile: string, cluster: string): string {
  return walCommand(process.execPath, walEntryPath(), ['push', '--store-config', storeConfigFile, '--cluster', cluster], ['%p']);
}

/** restore_command reading the archive of cluster `cluster` from the store in `storeConfigFile`. */
export function restoreCommandFor(storeConfigFile: string, cluster: string): string {
  return walCommand(process.execPath, walEntryPath(), ['fetch', '--store-config', storeConfigFile, '--cluster', cluster], ['%f', '%p']);
}
