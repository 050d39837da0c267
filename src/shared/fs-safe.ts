/**
 * File system helpers with safety properties the plain calls lack.
 *
 * `makeDirectories`: directory creation without `mkdir({ recursive: true })`, which on Node 20
 * never settles for some paths (for example under /proc, where the kernel answers ENOENT for every
 * component). We create one component at a time from the nearest existing ancestor, so every
 * failure surfaces as an ordinary error code. Bounded by the depth of the path.
 *
 * `createPrivateFile`: a new file for a secret, at a path a user named (e.g. `attach --env-file`).
 * Invariants: the file is created by this call or not at all (O_CREAT | O_EXCL: an existing file
 * is never truncated or overwritten, so nothing of the user's is lost), a symbolic link there,
 * dangling or not, is refused rather than followed (O_EXCL alone refuses it; O_NOFOLLOW says so
 * explicitly), and the mode is exactly `mode` (fchmod after open: the umask can only narrow it, but
 * we do not rely on the caller's umask either way), so the secret is never readable by others.
 */
import { constants } from 'node:fs';
import { mkdir, open, stat, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';

/**
 * Creates `file` (never an existing one, never through a symlink) with exactly `mode`, and returns
 * its open handle for writing. Rejects with the errno code: EEXIST when anything is at the path
 * (including a symlink), ELOOP for a symlink on systems that report it so, ENOENT/EACCES as usual.
 */
export async function createPrivateFile(file: string, mode = 0o600): Promise<FileHandle> {
  const handle = await open(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, mode);
  try {
    await handle.chmod(mode);
  } catch (error) {
    await handle.close().catch(() => undefined);
    await unlink(file).catch(() => undefined);
    throw error;
  }
  return handle;
}

/** `createPrivateFile`, then `content` written and synced; a failed write removes the new file. */
export async function writePrivateFile(file: string, content: string, mode = 0o600): Promise<void> {
  const handle = await createPrivateFile(file, mode);
  try {
    await handle.writeFile(content);
    await handle.sync();
  } catch (error) {
    await handle.close().catch(() => undefined);
    await unlink(file).catch(() => undefined);
    throw error;
  }
  await handle.close();
}

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
