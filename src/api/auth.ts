/**
 * Authentication of mutating REST calls: `Authorization: Bearer <cluster API token>` (the token
 * lives in secrets.json, mode 0600). Compared in constant time; the token is never logged.
 */
import { timingSafeEqual } from 'node:crypto';

export function isAuthorized(header: string | undefined, token: string): boolean {
  if (header === undefined) return false;
  const match = /^Bearer\s+(\S+)$/i.exec(header.trim());
  if (match === null) return false;
  const given = Buffer.from(match[1] ?? '', 'utf8');
  const expected = Buffer.from(token, 'utf8');
  return given.length === expected.length && timingSafeEqual(given, expected);
}
