/**
 * Reading processes from /proc for the benchmark: parent links (to find an agent's helper
 * processes), resident memory and CPU ticks (for the idle footprint), liveness. Read-only: nothing
 * here signals a process.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';

export interface ProcStat {
  pid: number;
  /** The kernel's command name (/proc/PID/comm, at most 15 characters). */
  comm: string;
  state: string;
  ppid: number;
  /** User and system CPU time in clock ticks (see clockTicksPerSecond). */
  utime: number;
  stime: number;
}

/** /proc/PID/stat, or null when the process is gone. The command name may contain spaces and ')'. */
export function readStat(pid: number): ProcStat | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open < 0 || close < open) return null;
  // Fields after the name: state(3) ppid(4) pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime(14) stime(15)
  const rest = text.slice(close + 2).split(' ');
  return {
    pid,
    comm: text.slice(open + 1, close),
    state: rest[0] ?? '?',
    ppid: Number(rest[1]),
    utime: Number(rest[11]),
    stime: Number(rest[12]),
  };
}

/** True while `pid` exists and is not a zombie. */
export function isAlive(pid: number): boolean {
  const stat = readStat(pid);
  return stat !== null && stat.state !== 'Z' && stat.state !== 'X';
}

export function readCmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
  } catch {
    return '';
  }
}

/** VmRSS in KiB, or null when the process is gone (kernel threads and zombies have none). */
export function rssKiB(pid: number): number | null {
  try {
    const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match === null ? null : Number(match[1]);
  } catch {
    return null;
  }
}

let ticks: number | null = null;

/** USER_HZ (`getconf CLK_TCK`), 100 on every usual Linux. */
export function clockTicksPerSecond(): number {
  if (ticks !== null) return ticks;
  try {
    const value = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8', timeout: 5_000 }).trim());
    ticks = Number.isFinite(value) && value > 0 ? value : 100;
  } catch {
    ticks = 100;
  }
  return ticks;
}

/** Every process's stat, one pass over /proc. */
export function allStats(): ProcStat[] {
  const stats: ProcStat[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readStat(Number(entry));
    if (stat !== null) stats.push(stat);
  }
  return stats;
}

/**
 * The descendants of `root` (not `root` itself), breadth first, leaving out every subtree whose
 * top process `skip` says to (e.g. a postmaster and its backends).
 */
export function descendants(root: number, skip: (stat: ProcStat) => boolean = () => false): ProcStat[] {
  const children = new Map<number, ProcStat[]>();
  for (const stat of allStats()) {
    const list = children.get(stat.ppid) ?? [];
    list.push(stat);
    children.set(stat.ppid, list);
  }
  const found: ProcStat[] = [];
  const queue = [root];
  const seen = new Set<number>([root]);
  while (queue.length > 0) {
    const pid = queue.shift() as number;
    for (const child of children.get(pid) ?? []) {
      if (seen.has(child.pid) || skip(child)) continue;
      seen.add(child.pid);
      found.push(child);
      queue.push(child.pid);
    }
  }
  return found;
}
