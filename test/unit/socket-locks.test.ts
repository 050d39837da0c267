/**
 * removeStaleSocketLocks: a socket lock left by a dead (or zombie) postmaster is removed with its
 * socket; a lock whose PID runs is kept; other files are never touched.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { removeStaleSocketLocks } from '../../src/postgres/postmaster.js';

void describe('removeStaleSocketLocks', () => {
  let dir = '';
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'pgpilot-socklock-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  void it('removes the lock and socket of a PID that does not run, keeps a running one and other files', async () => {
    // 99999999 is above any pid_max: no process can have it.
    await writeFile(path.join(dir, '.s.PGSQL.5433.lock'), '99999999\n/tmp/x/pgdata\n');
    await writeFile(path.join(dir, '.s.PGSQL.5433'), '');
    await writeFile(path.join(dir, '.s.PGSQL.5434.lock'), `${process.pid}\n/tmp/y/pgdata\n`);
    await writeFile(path.join(dir, '.s.PGSQL.5434'), '');
    await writeFile(path.join(dir, 'other.lock'), '99999999\n');
    await writeFile(path.join(dir, '.s.PGSQL.5435.lock'), 'garbage\n');
    assert.deepEqual((await removeStaleSocketLocks(dir)).sort(), ['.s.PGSQL.5433.lock', '.s.PGSQL.5435.lock']);
    assert.deepEqual((await readdir(dir)).sort(), ['.s.PGSQL.5434', '.s.PGSQL.5434.lock', 'other.lock']);
  });

  void it('is a no-op for a missing directory', async () => {
    assert.deepEqual(await removeStaleSocketLocks(path.join(dir, 'missing')), []);
  });
});
