/**
 * Lenient parsing of JSON values read from etcd: text that is missing, not JSON, or not of the
 * schema's shape yields null instead of an exception, so one malformed value written by a buggy or
 * older agent can never crash a reader (it is treated as absent).
 */
import type { z } from 'zod';

export function parseJsonOrNull<T>(schema: z.ZodType<T>, text: string | null | undefined): T | null {
  if (text === null || text === undefined) return null;
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return null;
  }
  const result = schema.safeParse(raw);
  return result.success ? result.data : null;
}
