/**
 * Directory creation without `mkdir({ recursive: true })`, which on Node 20 never settles for
 * some paths (for example under /proc, where the kernel answers ENOENT for every component). We
 * create one component at a time from the nearest existing ancestor, so every failure surfaces as
 * an ordinary error code. Bounded by the depth of the path.
 */
import { mkdir, stat } from 'node:fs/promises';
import path from 'node:path';

export async function makeDirectories(dir: string, mode = 0o755): Promise<void> {
  const absolute = path.resolve(dir);
  const missing: string[] = [];
  let current = absolute;
  for (;;) {
    try {
      const info = await stat(current);
      if (!info.isDirectory()) {
        const error = new Error(`ENOTDIR: not a directory, mkdir '${current}'`) as NodeJS.ErrnoException;
        error.code = 'ENOTDIR';
        throw error;
      }
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      missing.push(current);
      const parent = path.dirname(current);
      if (parent === current) break;
      current = parent;
    }
  }
  for (const component of missing.reverse()) {
    try {
      await mkdir(component, { mode });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
  }
}
