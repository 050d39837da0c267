/**
 * Pure planner of the memory- and CPU-dependent postgres settings for a machine size (`pgpilot
 * scale vm NAME --memory 4GB --cpus 2`). The rules are the usual ones (PGTune, the PostgreSQL
 * wiki "Tuning Your PostgreSQL Server"), for a dedicated database machine:
 * - shared_buffers: 25 % of RAM; effective_cache_size: 75 % of RAM (the planner's guess of what the
 *   OS cache plus shared buffers hold; nothing is allocated);
 * - maintenance_work_mem: RAM/16, at least 16MB, at most 2GB (VACUUM, CREATE INDEX);
 * - work_mem: (RAM - shared_buffers) / (max_connections * 3), between 4MB and 2GB: each connection may
 *   run a few sorts or hashes at once, so this bounds the total instead of trusting the default;
 * - max_connections: kept as given (default 100);
 * - max_worker_processes: the CPU count, at least 8 (postgres' default, leaves room for other
 *   background workers); max_parallel_workers: the CPU count; per gather and for maintenance:
 *   half the CPUs, at least 1.
 * Sizes are rounded down to whole MB. No I/O: the CLI shows the plan and applies it through the
 * same path as `config update` (validated against pg_settings, rolling restart when needed).
 */
import type { ConfValue } from './conf.js';
import { PgpilotError } from '../shared/errors.js';

export const MIB = 1024 * 1024;
export const GIB = 1024 * MIB;
/** Below this a plan makes no sense for postgres plus the agent. */
export const MIN_VM_MEMORY_BYTES = 256 * MIB;
export const MAX_VM_CPUS = 1024;
export const DEFAULT_MAX_CONNECTIONS = 100;

export interface VmSize {
  memoryBytes: number;
  cpus: number;
  /** Keep this (the current value); default 100. */
  maxConnections?: number;
}

/** Setting name -> value for postgresql.conf, in a fixed order. */
export type VmSettings = Record<string, ConfValue>;

const SIZE = /^(\d+(?:\.\d+)?)\s*(B|K|KB|KIB|M|MB|MIB|G|GB|GIB|T|TB|TIB)?$/i;
const SIZE_FACTORS: Readonly<Record<string, number>> = { B: 1, K: 1024, M: MIB, G: GIB, T: 1024 * GIB };

/** "4GB", "512MB", "4G", "1.5GiB", "1073741824" -> bytes (binary units: 1GB = 1024 MB, as postgres counts). */
export function parseSizeBytes(text: string): number {
  const match = SIZE.exec(text.trim());
  if (match === null) {
    throw new PgpilotError('INPUT_INVALID', `"${text}" is not a size`, { hint: 'e.g. 4GB, 512MB, 16G', exitCode: 2 });
  }
  const unit = (match[2] ?? 'B').toUpperCase().charAt(0);
  return Math.floor(Number(match[1]) * (SIZE_FACTORS[unit] ?? 1));
}

/** Bytes as postgres writes memory: whole MB (or GB when exact). */
export function formatMegabytes(bytes: number): string {
  const mb = Math.floor(bytes / MIB);
  return mb >= 1024 && mb % 1024 === 0 ? `${mb / 1024}GB` : `${mb}MB`;
}

function wholeMb(bytes: number): number {
  return Math.floor(bytes / MIB) * MIB;
}

export function planVmSettings(size: VmSize): VmSettings {
  const { memoryBytes, cpus } = size;
  if (!Number.isFinite(memoryBytes) || memoryBytes < MIN_VM_MEMORY_BYTES) {
    throw new PgpilotError('INPUT_INVALID', `--memory must be at least ${formatMegabytes(MIN_VM_MEMORY_BYTES)}`, { hint: 'e.g. --memory 4GB', exitCode: 2 });
  }
  if (!Number.isInteger(cpus) || cpus < 1 || cpus > MAX_VM_CPUS) {
    throw new PgpilotError('INPUT_INVALID', `--cpus must be a whole number between 1 and ${MAX_VM_CPUS}`, { hint: 'e.g. --cpus 2', exitCode: 2 });
  }
  const maxConnections = size.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  if (!Number.isInteger(maxConnections) || maxConnections < 1) {
    throw new PgpilotError('INPUT_INVALID', '--max-connections must be a positive whole number', { exitCode: 2 });
  }
  const sharedBuffers = wholeMb(memoryBytes / 4);
  const effectiveCache = wholeMb((memoryBytes * 3) / 4);
  const maintenance = Math.min(2 * GIB, Math.max(16 * MIB, wholeMb(memoryBytes / 16)));
  const workMem = Math.max(4 * MIB, wholeMb((memoryBytes - sharedBuffers) / (maxConnections * 3)));
  const half = Math.max(1, Math.floor(cpus / 2));
  return {
    shared_buffers: formatMegabytes(sharedBuffers),
    effective_cache_size: formatMegabytes(effectiveCache),
    maintenance_work_mem: formatMegabytes(maintenance),
    work_mem: formatMegabytes(Math.min(workMem, 2 * GIB)),
    max_connections: maxConnections,
    max_worker_processes: Math.max(8, cpus),
    max_parallel_workers: cpus,
    max_parallel_workers_per_gather: half,
    max_parallel_maintenance_workers: half,
  };
}
