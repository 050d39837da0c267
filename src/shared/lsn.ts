/**
 * PostgreSQL log sequence numbers. Postgres prints an LSN as two hex halves `X/Y` of a 64-bit
 * position; we carry it as a bigint internally and as the canonical string on the wire. All
 * arithmetic is exact (bigint), since byte positions exceed 2^53 on long-lived clusters.
 */

const LSN_PATTERN = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;

export function isLsn(text: string): boolean {
  return LSN_PATTERN.test(text.trim());
}

/** Parses `16/B374D848` into its byte position; throws on anything else. */
export function parseLsn(text: string): bigint {
  const match = LSN_PATTERN.exec(text.trim());
  if (!match) throw new Error(`not an LSN: ${JSON.stringify(text)}`);
  return (BigInt(`0x${match[1]}`) << 32n) | BigInt(`0x${match[2]}`);
}

/** Formats a byte position the way postgres does (upper-case hex, no padding). */
export function formatLsn(position: bigint): string {
  if (position < 0n || position > 0xffffffffffffffffn) throw new Error(`LSN out of range: ${position}`);
  const high = position >> 32n;
  const low = position & 0xffffffffn;
  return `${high.toString(16).toUpperCase()}/${low.toString(16).toUpperCase()}`;
}

/** Bytes from `behind` to `ahead`, never negative (a replica ahead of a stale leader LSN is 0 behind). */
export function lsnDiffBytes(ahead: string, behind: string): number {
  const diff = parseLsn(ahead) - parseLsn(behind);
  return diff <= 0n ? 0 : Number(diff);
}

/** -1, 0 or 1 as `a` is before, equal to or after `b`. */
export function compareLsn(a: string, b: string): number {
  const pa = parseLsn(a);
  const pb = parseLsn(b);
  return pa === pb ? 0 : pa < pb ? -1 : 1;
}

/** The later of the given LSNs, ignoring null/undefined; null when none is given. */
export function maxLsn(...values: Array<string | null | undefined>): string | null {
  let best: string | null = null;
  for (const value of values) {
    if (value == null) continue;
    if (best === null || compareLsn(value, best) > 0) best = value;
  }
  return best;
}
