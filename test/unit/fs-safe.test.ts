/**
 * `makeDirectories` (src/shared/fs-safe.ts): creates missing components one at a time with the
 * requested mode, is idempotent, and turns every failure into an ordinary rejected promise with
 * the errno code, including the /proc case where `mkdir({ recursive: true })` never settles on
 * Node 20 (checked against a deadline so a regression fails instead of hanging the suite).
 * `createPrivateFile` / `writePrivateFile`: a new file with exactly the mode asked for, never an
 * existing one and never through a symlink.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { createPrivateFile, makeDirectories, writePrivateFile } from '../../src/shared/fs-safe.js';

/** Settles like `promise`, or rejects with a timeout error after `ms` (the timer is always cleared). */
async function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

function hasCode(code: string): (error: unknown) => boolean {
  return (error: unknown) => {
    assert.equal((error as NodeJS.ErrnoException).code, code, String(error));
    return true;
  };
}

void describe('makeDirectories', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'pgpilot-fs-safe-test-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  void it('creates nested directories with the requested mode', async () => {
    const target = path.join(dir, 'a', 'b', 'c');
    await withDeadline(makeDirectories(target, 0o700), 5_000, 'makeDirectories');
    for (const component of [path.join(dir, 'a'), path.join(dir, 'a', 'b'), target]) {
      const info = statSync(component);
      assert.ok(info.isDirectory(), component);
      assert.equal(info.mode & 0o777, 0o700, `${component} mode`);
    }
  });

  void it('is idempotent and leaves existing directories as they are', async () => {
    const target = path.join(dir, 'again', 'x');
    await makeDirectories(target);
    await makeDirectories(target);
    await makeDirectories(path.join(dir, 'again'));
    assert.ok(statSync(target).isDirectory());
  });

  void it('resolves relative paths against the working directory', async () => {
    const relative = path.relative(process.cwd(), path.join(dir, 'rel', 'y'));
    await makeDirectories(relative);
    assert.ok(statSync(path.join(dir, 'rel', 'y')).isDirectory());
  });

  void it('rejects with ENOTDIR when a component is a file', async () => {
    const file = path.join(dir, 'plain-file');
    writeFileSync(file, 'x');
    await assert.rejects(withDeadline(makeDirectories(path.join(file, 'sub', 'dir')), 5_000, 'makeDirectories'), hasCode('ENOTDIR'));
    await assert.rejects(withDeadline(makeDirectories(file), 5_000, 'makeDirectories'), hasCode('ENOTDIR'));
  });

  void it('rejects quickly with ENOENT under /proc instead of hanging', async () => {
    await assert.rejects(withDeadline(makeDirectories('/proc/nonexistent/pgpilot/x'), 5_000, 'makeDirectories under /proc'), hasCode('ENOENT'));
  });
});

void describe('createPrivateFile and writePrivateFile', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'pgpilot-private-file-test-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  void it('creates a new file with exactly the mode, whatever the umask', async () => {
    const previous = process.umask(0o000);
    try {
      const file = path.join(dir, 'secret');
      await writePrivateFile(file, 'pw\n');
      assert.equal(statSync(file).mode & 0o777, 0o600);
      assert.equal(readFileSync(file, 'utf8'), 'pw\n');
      const group = path.join(dir, 'group-readable');
      await (await createPrivateFile(group, 0o640)).close();
      assert.equal(statSync(group).mode & 0o777, 0o640);
    } finally {
      process.umask(previous);
    }
  });

  void it('refuses an existing file (EEXIST) and leaves it as it was', async () => {
    const file = path.join(dir, 'taken');
    writeFileSync(file, 'keep me');
    await assert.rejects(writePrivateFile(file, 'overwritten?'), hasCode('EEXIST'));
    assert.equal(readFileSync(file, 'utf8'), 'keep me');
  });

  void it('refuses a symlink, to a file or dangling, and writes nothing through it', async () => {
    const target = path.join(dir, 'target');
    writeFileSync(target, 'original');
    const link = path.join(dir, 'link');
    symlinkSync(target, link);
    await assert.rejects(writePrivateFile(link, 'through the link?'), (error: unknown) => ['EEXIST', 'ELOOP'].includes((error as NodeJS.ErrnoException).code ?? ''));
    assert.equal(readFileSync(target, 'utf8'), 'original');
    const dangling = path.join(dir, 'dangling');
    symlinkSync(path.join(dir, 'would-be-created'), dangling);
    await assert.rejects(writePrivateFile(dangling, 'x'), (error: unknown) => ['EEXIST', 'ELOOP'].includes((error as NodeJS.ErrnoException).code ?? ''));
    assert.equal(existsSync(path.join(dir, 'would-be-created')), false);
  });
});
