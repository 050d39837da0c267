/**
 * src/postgres/vm-tuning.ts: the settings planned for a machine size (the usual 25 % / 75 % /
 * RAM/16 / per-connection work_mem rules and the CPU-bound worker counts), size parsing, and the
 * limits refused before anything is read.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GIB, MIB, formatMegabytes, parseSizeBytes, planVmSettings } from '../../src/postgres/vm-tuning.js';
import { isPgpilotError } from '../../src/shared/errors.js';

void describe('parseSizeBytes', () => {
  void it('reads binary sizes with or without B / iB', () => {
    assert.equal(parseSizeBytes('4GB'), 4 * GIB);
    assert.equal(parseSizeBytes('4G'), 4 * GIB);
    assert.equal(parseSizeBytes('4gib'), 4 * GIB);
    assert.equal(parseSizeBytes('512MB'), 512 * MIB);
    assert.equal(parseSizeBytes('1.5GB'), 1.5 * GIB);
    assert.equal(parseSizeBytes('1048576'), MIB);
    assert.equal(parseSizeBytes(' 2 TB '), 2048 * GIB);
  });
  void it('refuses what is not a size', () => {
    for (const text of ['', 'lots', '4 GBs', '-1GB', '4PB']) {
      assert.throws(() => parseSizeBytes(text), (e: unknown) => isPgpilotError(e) && e.code === 'INPUT_INVALID' && e.exitCode === 2, text);
    }
  });
});

void describe('formatMegabytes', () => {
  void it('whole MB, GB when exact', () => {
    assert.equal(formatMegabytes(256 * MIB), '256MB');
    assert.equal(formatMegabytes(2 * GIB), '2GB');
    assert.equal(formatMegabytes(1536 * MIB), '1536MB');
    assert.equal(formatMegabytes(10.7 * MIB), '10MB');
  });
});

void describe('planVmSettings', () => {
  void it('4GB, 2 CPUs, 100 connections', () => {
    assert.deepEqual(planVmSettings({ memoryBytes: 4 * GIB, cpus: 2 }), {
      shared_buffers: '1GB',
      effective_cache_size: '3GB',
      maintenance_work_mem: '256MB',
      // (4096 - 1024) MB / (100 * 3) = 10.24 MB
      work_mem: '10MB',
      max_connections: 100,
      max_worker_processes: 8,
      max_parallel_workers: 2,
      max_parallel_workers_per_gather: 1,
      max_parallel_maintenance_workers: 1,
    });
  });
  void it('64GB, 16 CPUs, 400 connections: maintenance_work_mem capped at 2GB, workers follow the CPUs', () => {
    const plan = planVmSettings({ memoryBytes: 64 * GIB, cpus: 16, maxConnections: 400 });
    assert.equal(plan['shared_buffers'], '16GB');
    assert.equal(plan['effective_cache_size'], '48GB');
    assert.equal(plan['maintenance_work_mem'], '2GB');
    assert.equal(plan['work_mem'], '40MB'); // 49152 MB / 1200
    assert.equal(plan['max_connections'], 400);
    assert.equal(plan['max_worker_processes'], 16);
    assert.equal(plan['max_parallel_workers'], 16);
    assert.equal(plan['max_parallel_workers_per_gather'], 8);
    assert.equal(plan['max_parallel_maintenance_workers'], 8);
  });
  void it('small machines: work_mem and maintenance_work_mem have floors', () => {
    const plan = planVmSettings({ memoryBytes: 256 * MIB, cpus: 1, maxConnections: 500 });
    assert.equal(plan['shared_buffers'], '64MB');
    assert.equal(plan['effective_cache_size'], '192MB');
    assert.equal(plan['maintenance_work_mem'], '16MB');
    assert.equal(plan['work_mem'], '4MB');
    assert.equal(plan['max_parallel_workers_per_gather'], 1);
  });
  void it('huge machines: work_mem at most 2GB', () => {
    assert.equal(planVmSettings({ memoryBytes: 4096 * GIB, cpus: 64, maxConnections: 10 })['work_mem'], '2GB');
  });
  void it('refuses sizes that make no sense', () => {
    const refused = (size: Parameters<typeof planVmSettings>[0], pattern: RegExp): void => {
      assert.throws(() => planVmSettings(size), (e: unknown) => isPgpilotError(e) && e.exitCode === 2 && pattern.test(e.message));
    };
    refused({ memoryBytes: 255 * MIB, cpus: 2 }, /--memory must be at least 256MB/);
    refused({ memoryBytes: 4 * GIB, cpus: 0 }, /--cpus must be a whole number between 1 and 1024/);
    refused({ memoryBytes: 4 * GIB, cpus: 1.5 }, /--cpus/);
    refused({ memoryBytes: 4 * GIB, cpus: 2, maxConnections: 0 }, /--max-connections/);
  });
});
