/**
 * PostgreSQL SCRAM-SHA-256 verifiers (RFC 5802/7677, the format of pg_authid.rolpassword), so that
 * CREATE/ALTER ROLE carries `PASSWORD 'SCRAM-SHA-256$...'` and a clear-text password never travels
 * to the server or lands in its logs. Invariant: the verifier is exactly what the server would
 * store for the same password, for every password we accept. Clients (libpq, node-postgres) apply
 * SASLprep before hashing; for ASCII passwords that is the identity, and for a non-ASCII password
 * whose SASLprep mapping is also the identity the result is the same whatever each client does
 * about prohibited characters. Passwords that SASLprep would rewrite (non-ASCII spaces, NFKC
 * changes) are rejected, because clients disagree on them and a role could become unusable.
 */
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import { PgpilotError } from '../shared/errors.js';

export const SCRAM_DEFAULT_ITERATIONS = 4096;
export const SCRAM_DEFAULT_SALT_BYTES = 16;
const SCRAM_KEY_BYTES = 32;

// RFC 3454 table C.1.2 (non-ASCII spaces, mapped to U+0020) and table B.1 (mapped to nothing).
const NON_ASCII_SPACE = /[\u00A0\u1680\u2000-\u200B\u202F\u205F\u3000]/;
// eslint-disable-next-line no-misleading-character-class
const MAPPED_TO_NOTHING = /[\u00AD\u034F\u1806\u180B\u180C\u180D\u200C\u200D\u2060\uFE00-\uFE0F\uFEFF]/;

export interface ScramOptions {
  salt?: Buffer;
  iterations?: number;
}

function checkPassword(password: string): void {
  if (password.length === 0) throw new PgpilotError('INPUT_INVALID', 'the password is empty');
  // eslint-disable-next-line no-control-regex
  if (/^[\u0000-\u007f]*$/.test(password)) return;
  if (NON_ASCII_SPACE.test(password) || MAPPED_TO_NOTHING.test(password) || password.normalize('NFKC') !== password) {
    throw new PgpilotError('INPUT_INVALID', 'the password contains characters that SCRAM clients normalize differently', {
      hint: 'use a password in Unicode NFKC form without special spaces or invisible characters',
    });
  }
}

function hmac(key: Buffer, text: string): Buffer {
  return createHmac('sha256', key).update(text, 'utf8').digest();
}

/** `SCRAM-SHA-256$<iterations>:<salt b64>$<StoredKey b64>:<ServerKey b64>` for `password`. */
export function scramSha256Verifier(password: string, options: ScramOptions = {}): string {
  checkPassword(password);
  const iterations = options.iterations ?? SCRAM_DEFAULT_ITERATIONS;
  if (!Number.isInteger(iterations) || iterations < 1) {
    throw new PgpilotError('INPUT_INVALID', `SCRAM iteration count ${iterations} is invalid`);
  }
  const salt = options.salt ?? randomBytes(SCRAM_DEFAULT_SALT_BYTES);
  if (salt.length === 0) throw new PgpilotError('INPUT_INVALID', 'the SCRAM salt is empty');
  const saltedPassword = pbkdf2Sync(Buffer.from(password, 'utf8'), salt, iterations, SCRAM_KEY_BYTES, 'sha256');
  const clientKey = hmac(saltedPassword, 'Client Key');
  const storedKey = createHash('sha256').update(clientKey).digest();
  const serverKey = hmac(saltedPassword, 'Server Key');
  return `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
}

/** True when `text` has the shape of a SCRAM-SHA-256 verifier (it is never a clear password then). */
export function isScramVerifier(text: string): boolean {
  return /^SCRAM-SHA-256\$\d+:[A-Za-z0-9+/]+={0,2}\$[A-Za-z0-9+/]{43}=:[A-Za-z0-9+/]{43}=$/.test(text);
}
