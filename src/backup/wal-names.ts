/**
 * PostgreSQL WAL file names, as they appear in pg_wal/ and in the WAL archive. A segment file is
 * named `TTTTTTTTXXXXXXXXYYYYYYYY`: the timeline, then the segment number split into the "log id"
 * (XX) and the segment within it (YY), each 8 upper-case hex digits. With the default 16 MiB
 * segments there are 0x100000000 / 16 MiB = 256 segments per log id, so YY is 00..FF; the byte
 * position (LSN) where a segment starts is `segmentNumber * segmentSizeBytes`. Besides segments the
 * archive holds `<segment>.partial` (the last, incomplete segment of a timeline a promotion left
 * behind), `TTTTTTTT.history` (timeline history) and `<segment>.XXXXXXXX.backup` (the backup
 * history file written by pg_backup_stop; XXXXXXXX is the start LSN's offset in that segment).
 * Names are matched exactly as postgres writes them (upper-case hex, nothing else), so a name from
 * the outside (restore_command's %f) that parses here is safe to join onto an archive path.
 * Segment numbers are JS numbers: the largest is 2^64 / 1 MiB (the smallest segment size) = 2^44,
 * well below 2^53, so they are exact.
 */
import { formatLsn, parseLsn } from '../shared/lsn.js';

/** PostgreSQL's default wal_segment_size (initdb --wal-segsize=16). */
export const DEFAULT_WAL_SEGMENT_SIZE_BYTES = 16 * 1024 * 1024;

export type WalFileName =
  | { kind: 'segment'; timeline: number; segmentNumber: number; name: string }
  | { kind: 'partial'; timeline: number; segmentNumber: number; name: string }
  | { kind: 'history'; timeline: number; name: string }
  | {
      kind: 'backup-label';
      timeline: number;
      segmentNumber: number;
      /** Byte offset of the backup's start LSN inside the segment. */
      offsetBytes: number;
      /** The backup's start LSN (segment start + offset), as postgres prints it. */
      startLsn: string;
      name: string;
    };

const SEGMENT = /^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$/;
const PARTIAL = /^([0-9A-F]{24})\.partial$/;
const HISTORY = /^([0-9A-F]{8})\.history$/;
const BACKUP_LABEL = /^([0-9A-F]{24})\.([0-9A-F]{8})\.backup$/;

const MIN_SEGMENT_SIZE_BYTES = 1024 * 1024;
const MAX_SEGMENT_SIZE_BYTES = 1024 * 1024 * 1024;
const LSN_SPACE = 0x1_0000_0000;

/** Postgres accepts powers of two from 1 MiB to 1 GiB (IsValidWalSegSize); anything else is a bug. */
function checkSegmentSize(segmentSizeBytes: number): void {
  const valid =
    Number.isInteger(segmentSizeBytes) &&
    segmentSizeBytes >= MIN_SEGMENT_SIZE_BYTES &&
    segmentSizeBytes <= MAX_SEGMENT_SIZE_BYTES &&
    (segmentSizeBytes & (segmentSizeBytes - 1)) === 0;
  if (!valid) throw new Error(`not a WAL segment size: ${segmentSizeBytes}`);
}

function segmentsPerLogId(segmentSizeBytes: number): number {
  checkSegmentSize(segmentSizeBytes);
  return LSN_SPACE / segmentSizeBytes;
}

function hex8(value: number): string {
  return value.toString(16).toUpperCase().padStart(8, '0');
}

/** Timeline 0 is InvalidTimeLineID: postgres never names a file after it. */
function parseTimeline(hex: string): number | null {
  const timeline = Number.parseInt(hex, 16);
  return timeline === 0 ? null : timeline;
}

/** Timeline and segment number of a 24-hex-digit segment name, or null when YY is out of range. */
function parseSegmentPart(text: string, segmentSizeBytes: number): { timeline: number; segmentNumber: number } | null {
  const match = SEGMENT.exec(text);
  if (!match) return null;
  const timeline = parseTimeline(match[1]!);
  const logId = Number.parseInt(match[2]!, 16);
  const segmentInLogId = Number.parseInt(match[3]!, 16);
  const perLogId = segmentsPerLogId(segmentSizeBytes);
  if (timeline === null || segmentInLogId >= perLogId) return null;
  return { timeline, segmentNumber: logId * perLogId + segmentInLogId };
}

/**
 * Classifies a WAL archive file name; null for anything else (including lower-case hex, paths,
 * and segment names whose in-log-id part does not exist at this segment size).
 */
export function parseWalFileName(name: string, segmentSizeBytes = DEFAULT_WAL_SEGMENT_SIZE_BYTES): WalFileName | null {
  const segment = parseSegmentPart(name, segmentSizeBytes);
  if (segment) return { kind: 'segment', ...segment, name };

  const partial = PARTIAL.exec(name);
  if (partial) {
    const part = parseSegmentPart(partial[1]!, segmentSizeBytes);
    return part ? { kind: 'partial', ...part, name } : null;
  }

  const history = HISTORY.exec(name);
  if (history) {
    const timeline = parseTimeline(history[1]!);
    return timeline === null ? null : { kind: 'history', timeline, name };
  }

  const label = BACKUP_LABEL.exec(name);
  if (label) {
    const part = parseSegmentPart(label[1]!, segmentSizeBytes);
    const offsetBytes = Number.parseInt(label[2]!, 16);
    if (!part || offsetBytes >= segmentSizeBytes) return null;
    const startLsn = formatLsn(BigInt(part.segmentNumber) * BigInt(segmentSizeBytes) + BigInt(offsetBytes));
    return { kind: 'backup-label', ...part, offsetBytes, startLsn, name };
  }
  return null;
}

/** The name of the segment file on `timeline` that holds the byte at `lsn` (e.g. 1, '0/3000028' -> 000000010000000000000003). */
export function segmentNameFor(timeline: number, lsn: string, segmentSizeBytes = DEFAULT_WAL_SEGMENT_SIZE_BYTES): string {
  if (!Number.isInteger(timeline) || timeline < 1 || timeline > 0xffffffff) throw new Error(`not a timeline: ${timeline}`);
  const perLogId = segmentsPerLogId(segmentSizeBytes);
  const segmentNumber = Number(parseLsn(lsn) / BigInt(segmentSizeBytes));
  return `${hex8(timeline)}${hex8(Math.floor(segmentNumber / perLogId))}${hex8(segmentNumber % perLogId)}`;
}

/** Segment number of a segment, .partial or .backup name; throws on anything else (incl. .history). */
function segmentNumberOf(name: string, segmentSizeBytes: number): number {
  const parsed = parseWalFileName(name, segmentSizeBytes);
  if (parsed === null || parsed.kind === 'history') throw new Error(`not a WAL segment name: ${JSON.stringify(name)}`);
  return parsed.segmentNumber;
}

/** LSN of the first byte of the segment (`000000010000000000000003` -> '0/3000000'). */
export function segmentStartLsn(name: string, segmentSizeBytes = DEFAULT_WAL_SEGMENT_SIZE_BYTES): string {
  return formatLsn(BigInt(segmentNumberOf(name, segmentSizeBytes)) * BigInt(segmentSizeBytes));
}

/**
 * LSN just past the segment's last byte, i.e. the next segment's start (exclusive end:
 * `000000010000000000000003` -> '0/4000000'). Throws for the very last segment of the 64-bit
 * space, whose end is not a representable LSN.
 */
export function segmentEndLsn(name: string, segmentSizeBytes = DEFAULT_WAL_SEGMENT_SIZE_BYTES): string {
  return formatLsn((BigInt(segmentNumberOf(name, segmentSizeBytes)) + 1n) * BigInt(segmentSizeBytes));
}

/**
 * Whether `name` may be requested from the archive (wal-fetch / restore_command %f): exactly one
 * of the four file-name forms above. The explicit separator and '..' checks are redundant with the
 * exact patterns and stay as a second guard: this is what keeps a request inside the archive.
 */
export function isValidWalRequestName(name: string, segmentSizeBytes = DEFAULT_WAL_SEGMENT_SIZE_BYTES): boolean {
  if (typeof name !== 'string' || name.includes('/') || name.includes('\\') || name.includes('..') || name.includes('\0')) return false;
  return parseWalFileName(name, segmentSizeBytes) !== null;
}
