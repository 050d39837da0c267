/**
 * A TLS identity as the processes use it: the cluster CA plus a certificate and its key, read from
 * their PEM files. Clients verify the peer against the CA only (never the system store: only the
 * cluster CA may vouch for a member), and hostnames/IPs against the certificate's SANs.
 */
import { readFileSync } from 'node:fs';
import type { TlsFiles } from '../config/schema.js';
import { PgpilotError } from '../shared/errors.js';

export interface TlsMaterial {
  ca: string;
  cert: string;
  key: string;
}

/** One PEM file; TLS_MISSING (with the file) when it cannot be read. */
function readPem(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    throw new PgpilotError('TLS_MISSING', `cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`, {
      hint: 'the cluster certificates are missing or unreadable; `pgpilot certs rotate NAME` writes new node and client certificates',
      cause: error,
    });
  }
}

/** The PEM contents of `files`; TLS_MISSING (with the file) when one cannot be read. */
export function readTlsMaterial(files: TlsFiles): TlsMaterial {
  return { ca: readPem(files.caFile), cert: readPem(files.certFile), key: readPem(files.keyFile) };
}

/** Just the CA (a client that authenticates with a password, not a certificate). */
export function readCaFile(caFile: string): string {
  return readPem(caFile);
}
